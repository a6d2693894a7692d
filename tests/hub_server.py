"""A local Hugging Face hub for tests: the subset of the hub's HTTP API that ``huggingface_hub`` uses here.

:class:`LocalHub` serves model repositories built from local folders (one folder per revision)
on ``127.0.0.1`` (a :class:`http.server.ThreadingHTTPServer` on a free port, in a daemon thread).
Point ``HF_ENDPOINT`` at :attr:`LocalHub.url` (in a subprocess's environment, or by patching
``huggingface_hub.constants``) and the real client runs unchanged against it:

* ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{rev}``: model info (``sha``,
  ``siblings`` with sizes), as ``model_info`` / ``repo_info`` read it;
* ``GET /api/models/{repo}/refs``: branches (one per revision), as ``list_repo_refs`` reads it;
* ``GET /api/models/{repo}/tree/{rev}[/{path}]``: the file listing ``snapshot_download`` reads;
* ``HEAD`` / ``GET /{repo}/resolve/{rev}/{file}``: the file, with ``ETag``, ``X-Repo-Commit``,
  ``Content-Length``, ``Accept-Ranges`` and ``Range`` requests (``206``, which the client uses to
  resume a cut download); a missing file, revision or repository answers ``404`` with the
  ``X-Error-Code`` the client turns into its own error types.

Faults, so that tests can exercise the client's failure paths: :attr:`LocalHub.throttle`
(bytes per second for files matching a pattern), :meth:`LocalHub.cut_once` (close the connection
after N bytes of a file, once), :attr:`LocalHub.fail` (answer every file request of a revision
with a status code), :attr:`LocalHub.flaky` (answer the next N file downloads (``GET``) of a
revision with ``500``, then serve them: the client does not retry that within one call).
:attr:`LocalHub.log` records each request (method, path, status, Range).
Used by ``tests/conftest.py`` (fixture ``local_hub``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

CHUNK = 64 * 1024


@dataclass
class Revision:
    """One revision of a repository: its commit and its files (name -> bytes on disk)."""

    name: str
    commit: str
    files: dict[str, Path]


@dataclass
class LocalHub:
    """A local hub (see the module docstring). Use as a context manager, or :meth:`start` / :meth:`stop`."""

    repos: dict[str, dict[str, Revision]] = field(default_factory=dict)
    throttle: dict[str, float] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)
    flaky: dict[str, int] = field(default_factory=dict)
    log: list[tuple[str, str, int, str | None]] = field(default_factory=list)
    cuts: dict[tuple[str, str], int] = field(default_factory=dict)
    _server: ThreadingHTTPServer | None = None
    _etags: dict[Path, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ------------------------------------------------------------------ content
    def add_revision(self, repo: str, revision: str, folder: str | Path) -> str:
        """Serve the files of ``folder`` as ``repo@revision``; returns its (made-up, stable) commit."""
        folder = Path(folder)
        commit = hashlib.sha1(f"{repo}@{revision}".encode()).hexdigest()
        files = {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}
        self.repos.setdefault(repo, {})[revision] = Revision(revision, commit, files)
        return commit

    def cut_once(self, revision: str, filename: str, after: int) -> None:
        """The next GET of ``filename`` at ``revision`` sends ``after`` bytes, then closes the connection."""
        self.cuts[(revision, filename)] = after

    def etag(self, path: Path) -> str:
        with self._lock:
            if path not in self._etags:
                self._etags[path] = hashlib.sha256(path.read_bytes()).hexdigest()
            return self._etags[path]

    def revision(self, repo: str, rev: str) -> Revision | None:
        revs = self.repos.get(repo, {})
        if rev in revs:
            return revs[rev]
        return next((r for r in revs.values() if r.commit == rev), None)

    def requests(self, method: str | None = None, contains: str = "") -> list[tuple[str, str, int, str | None]]:
        """The logged requests of a method whose path contains ``contains``."""
        return [r for r in list(self.log) if (method is None or r[0] == method) and contains in r[1]]

    # ------------------------------------------------------------------ server
    @property
    def url(self) -> str:
        assert self._server is not None, "start() the hub first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> LocalHub:
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, name="local-hub", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> LocalHub:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    hub: LocalHub

    def log_message(self, format: str, *args: Any) -> None:
        pass

    # -------------------------------------------------------------- replies
    def _send(
        self,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        content_type: str = "application/json",
    ) -> None:
        self.hub.log.append((self.command, self.path, status, self.headers.get("Range")))
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, obj: Any, status: int = 200) -> None:
        self._send(status, json.dumps(obj).encode())

    def _error(self, status: int, code: str, extra: dict[str, str] | None = None) -> None:
        self._send(
            status,
            json.dumps({"error": code}).encode(),
            {"X-Error-Code": code, "X-Error-Message": code, **(extra or {})},
        )

    # -------------------------------------------------------------- routes
    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        hub = self.hub
        if path.startswith("/api/models/"):
            rest = path[len("/api/models/") :]
            for repo in sorted(hub.repos, key=len, reverse=True):
                if rest == repo or rest.startswith(repo + "/"):
                    return self._api(repo, rest[len(repo) :].lstrip("/"))
            return self._error(404, "RepoNotFound")
        if "/resolve/" in path:
            repo, _, tail = path.lstrip("/").partition("/resolve/")
            rev, _, filename = tail.partition("/")
            return self._resolve(repo, rev, filename)
        return self._error(404, "RepoNotFound")

    def _api(self, repo: str, rest: str) -> None:
        hub = self.hub
        revs = hub.repos[repo]
        if rest == "refs":
            return self._json(
                {
                    "branches": [
                        {"name": r.name, "ref": f"refs/heads/{r.name}", "targetCommit": r.commit} for r in revs.values()
                    ],
                    "converts": [],
                    "tags": [],
                    "pullRequests": [],
                }
            )
        what, _, tail = rest.partition("/")
        if what in ("", "revision"):
            rev_name = tail or "main"
            rev = hub.revision(repo, rev_name)
            if rev is None:
                return self._error(404, "RevisionNotFound")
            siblings = [{"rfilename": name, "size": p.stat().st_size} for name, p in rev.files.items()]
            return self._json({"id": repo, "modelId": repo, "sha": rev.commit, "private": False, "siblings": siblings})
        if what == "tree":
            rev_name, _, sub = tail.partition("/")
            rev = hub.revision(repo, rev_name)
            if rev is None:
                return self._error(404, "RevisionNotFound")
            entries = [
                {"type": "file", "path": name, "size": p.stat().st_size, "oid": hashlib.sha1(name.encode()).hexdigest()}
                for name, p in rev.files.items()
                if not sub or name.startswith(sub.rstrip("/") + "/")
            ]
            if sub and not entries:
                return self._error(404, "EntryNotFound", {"X-Repo-Commit": rev.commit})
            return self._json(entries)
        return self._error(404, "EntryNotFound")

    def _resolve(self, repo: str, rev_name: str, filename: str) -> None:
        hub = self.hub
        if repo not in hub.repos:
            return self._error(404, "RepoNotFound")
        rev = hub.revision(repo, rev_name)
        if rev is None:
            return self._error(404, "RevisionNotFound")
        status = hub.fail.get(rev.name)
        with hub._lock:
            if not status and self.command == "GET" and hub.flaky.get(rev.name, 0) > 0:
                hub.flaky[rev.name] -= 1
                status = 500
        if status:
            return self._error(
                status, "EntryNotFound" if status == 404 else "ServerError", {"X-Repo-Commit": rev.commit}
            )
        path = rev.files.get(filename)
        if path is None:
            return self._error(404, "EntryNotFound", {"X-Repo-Commit": rev.commit})
        size = path.stat().st_size
        start, end = 0, size - 1
        status = 200
        rng = self.headers.get("Range")
        if rng and rng.startswith("bytes="):
            a, _, b = rng[len("bytes=") :].partition("-")
            start, end, status = int(a or 0), int(b) if b else size - 1, 206
        headers = {"ETag": f'"{hub.etag(path)}"', "X-Repo-Commit": rev.commit, "Accept-Ranges": "bytes"}
        if status == 206:
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        hub.log.append((self.command, self.path, status, rng))
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        if self.command == "HEAD":
            return
        with hub._lock:
            cut = hub.cuts.pop((rev.name, filename), None)
        rate = next((bps for pattern, bps in hub.throttle.items() if fnmatch.fnmatch(filename, pattern)), None)
        sent, began = 0, time.perf_counter()
        with open(path, "rb") as f:
            f.seek(start)
            left = end - start + 1
            while left > 0:
                n = min(CHUNK, left) if cut is None else min(CHUNK, left, cut - sent)
                if n <= 0:  # the cut: drop the connection mid-body
                    self.wfile.flush()
                    self.close_connection = True
                    return
                chunk = f.read(n)
                self.wfile.write(chunk)
                sent += len(chunk)
                left -= len(chunk)
                if rate:
                    ahead = began + sent / rate - time.perf_counter()
                    if ahead > 0:
                        time.sleep(ahead)
