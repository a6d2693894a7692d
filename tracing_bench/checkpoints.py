"""Checkpoints and checkpoint series: naming, step numbers, revisions and the hub cache.

A checkpoint is a Hugging Face model id or a local folder plus an optional revision (a branch,
tag or commit of the hub repository). A *series* is an ordered list of checkpoints, given either
as ``--model ID --revisions r1,r2,...`` or as a folder with one sub-folder per checkpoint.

Revision lists (:func:`parse_revisions`) are comma-separated items; each item is a revision name
or one of these shorthands:

* ``ckpt_000:ckpt_359:10``: LLM360 Amber style ``ckpt_NNN``, every 10th from 0 to 359
  (zero padding taken from the first endpoint; the stride defaults to 1);
* ``step1000:step143000:1000``: Pythia style ``stepN``, every 1000th step;
* ``pythia-log``: Pythia's log-spaced early checkpoints ``step0,step1,step2,step4,...,step512``;
* ``step1000-tokens4B:step10000-tokens42B:1000`` (or ``step1000-tokens*:step10000-tokens*:1000``):
  OLMo style ``stepN-tokensMB``. The token counts cannot be computed from the step reliably, so
  such a range is resolved against the revisions the repository has (the local Hugging Face
  cache when offline, the hub's branch list otherwise): every ``stepN-tokens...`` revision with
  ``A <= N <= B`` and ``(N - A) % stride == 0``.

The *step* of a checkpoint (:func:`parse_step`) is the integer in its revision or folder name:
``ckpt_179`` -> 179, ``step1000`` -> 1000, ``step1000-tokens4B`` -> 1000, ``checkpoint-250`` ->
250, ``iter_0005000`` -> 5000, a name that is only digits -> that number; otherwise ``None``.

Loading a checkpoint and finding its decoder blocks: :mod:`tracing_bench.loading`. Hub cache
downloads of a series can be deleted after use (:func:`delete_from_hf_cache`).

>>> series = resolve_series("EleutherAI/pythia-160m", "pythia-log,step1000:step3000:1000")
>>> [c.label for c in series][:3]
['step0', 'step1', 'step2']
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from tracing_bench.errors import TracingBenchError

#: The Pythia log-spaced early revisions.
PYTHIA_LOG: tuple[str, ...] = tuple(["step0"] + [f"step{2**i}" for i in range(10)])

_STEP_RE = re.compile(r"(?:^|[^a-z])(?:ckpt|step|checkpoint|iter|global[_-]?step)[_-]?(\d+)", re.IGNORECASE)
_RANGE_END_RE = re.compile(r"^(ckpt_|step)(\d+)(-tokens(?:\d+[KMBT]?|\*))?$")
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def parse_step(name: str | None) -> int | None:
    """The step number in a revision or folder name, or ``None``.

    Args:
        name: a revision (``ckpt_179``, ``step1000``, ``step1000-tokens4B``) or folder name
            (``checkpoint-250``, ``step10``, ``0005000``).

    Returns:
        The integer, or ``None`` when the name carries no step.

    >>> parse_step("step1000-tokens4B")
    1000
    """
    if not name:
        return None
    if name.isdigit():
        return int(name)
    m = _STEP_RE.search(name)
    return int(m.group(1)) if m else None


def _is_folder_spec(model: str) -> bool:
    """True when ``model`` names a local folder (exists, or cannot be a hub repo id)."""
    if os.path.isdir(os.path.expanduser(model)):
        return True
    return not _REPO_ID_RE.match(model) or model.startswith((".", "~", "/")) or model.count("/") > 1


@dataclass(frozen=True)
class Checkpoint:
    """One checkpoint: a hub model id or local folder, and an optional revision.

    Attributes:
        model: Hugging Face model id (``LLM360/Amber``) or path of a folder holding
            ``config.json`` and weights.
        revision: branch, tag or commit of a hub repository (``ckpt_179``, ``step1000``);
            ``None`` for the default branch or a local folder.
    """

    model: str
    revision: str | None = None

    @property
    def is_local(self) -> bool:
        """Whether the checkpoint is a local folder (never deleted by ``--delete-checkpoints``)."""
        return _is_folder_spec(self.model)

    @property
    def step(self) -> int | None:
        """The step number parsed from the revision, else from the folder name."""
        if self.revision:
            return parse_step(self.revision)
        if self.is_local:
            return parse_step(Path(self.model).name)
        return None

    @property
    def label(self) -> str:
        """A short human name: the revision, else the folder name, else the model id."""
        if self.revision:
            return self.revision
        if self.is_local:
            return Path(self.model).name
        return self.model

    def resolved_commit(self) -> str | None:
        """The hub commit this revision resolves to in the local cache, or ``None``.

        ``None`` for local folders and for revisions not (yet) downloaded.
        """
        if self.is_local:
            return None
        return _cached_commit(self.model, self.revision)


# ------------------------------------------------------------------------------ revisions
def parse_revisions(spec: str, *, model: str | None = None) -> list[str]:
    """Expand a comma-separated revision list with range shorthands (see the module docstring).

    Args:
        spec: e.g. ``"ckpt_000:ckpt_359:10"``, ``"pythia-log,step1000:step143000:1000"``,
            ``"step1000-tokens4B:step5000-tokens21B:1000"``, ``"main"``.
        model: the hub model id; needed only for OLMo ``stepN-tokens`` ranges, which are
            resolved against the repository's revisions.

    Returns:
        Revision names in the given order, duplicates removed.

    Raises:
        TracingBenchError: malformed range (one line naming the item and the valid forms).
    """
    out: list[str] = []
    items = [s.strip() for s in spec.split(",")]
    if not any(items):
        raise TracingBenchError(
            f"--revisions {spec!r} is empty: give a comma list of revisions, e.g. step1000,step2000 "
            "or ckpt_000:ckpt_359:10"
        )
    for item in items:
        if not item:
            continue
        if item == "pythia-log":
            out.extend(PYTHIA_LOG)
        elif ":" in item:
            out.extend(_expand_range(item, model))
        else:
            out.append(item)
    return list(dict.fromkeys(out))


_RANGE_HELP = (
    "valid ranges: ckpt_000:ckpt_359:10 (Amber), step1000:step143000:1000 (Pythia), "
    "step1000-tokens4B:step9000-tokens38B:1000 (OLMo), or pythia-log"
)


def _expand_range(item: str, model: str | None) -> list[str]:
    parts = item.split(":")
    if len(parts) not in (2, 3):
        raise TracingBenchError(f"revision range {item!r} is malformed: use START:END[:STRIDE]; {_RANGE_HELP}")
    m1, m2 = _RANGE_END_RE.match(parts[0]), _RANGE_END_RE.match(parts[1])
    if not m1 or not m2:
        raise TracingBenchError(
            f"revision range {item!r} has an endpoint that is not ckpt_N, stepN or stepN-tokensX; {_RANGE_HELP}"
        )
    if m1.group(1) != m2.group(1) or bool(m1.group(3)) != bool(m2.group(3)):
        raise TracingBenchError(f"revision range {item!r} mixes naming styles: both ends must be alike; {_RANGE_HELP}")
    try:
        stride = int(parts[2]) if len(parts) == 3 else 1
    except ValueError:
        stride = 0
    if stride <= 0:
        raise TracingBenchError(
            f"revision range {item!r} has stride {parts[2]!r}: the stride must be a positive integer"
        )
    start, end = int(m1.group(2)), int(m2.group(2))
    if start > end:
        raise TracingBenchError(
            f"revision range {item!r} runs backwards: the start ({start}) must not exceed the end ({end})"
        )
    if m1.group(3):  # OLMo: resolve against the repository's revisions
        if model is None:
            raise TracingBenchError(f"revision range {item!r} (OLMo stepN-tokens) needs --model to list its revisions")
        available = list_revisions(model)
        found = sorted(
            (int(m.group(1)), r)
            for r in available
            if (m := re.fullmatch(r"step(\d+)-tokens\w+", r))
            and start <= int(m.group(1)) <= end
            and (int(m.group(1)) - start) % stride == 0
        )
        if not found:
            raise TracingBenchError(
                f"revision range {item!r} matches none of the {len(available)} revisions known for {model} "
                f"(local cache or hub); list them with huggingface_hub.list_repo_refs or give names explicitly"
            )
        return [r for _, r in found]
    if m1.group(1) == "ckpt_":
        width = len(m1.group(2))
        return [f"ckpt_{n:0{width}d}" for n in range(start, end + 1, stride)]
    return [f"step{n}" for n in range(start, end + 1, stride)]


def _hub_cache_dir() -> Path:
    # lazy: huggingface_hub loads on first use, so importing checkpoints stays light
    import huggingface_hub.constants as c

    return Path(c.HF_HUB_CACHE)


def _repo_cache(model: str) -> Path:
    return _hub_cache_dir() / ("models--" + model.replace("/", "--"))


def cached_revisions(model: str) -> list[str]:
    """Revisions of a hub model present in the local Hugging Face cache (names under ``refs/``)."""
    refs = _repo_cache(model) / "refs"
    if not refs.is_dir():
        return []
    return sorted(p.relative_to(refs).as_posix() for p in refs.rglob("*") if p.is_file())


def list_revisions(model: str) -> list[str]:
    """Revisions of a hub model: the hub's branches and tags when online, else the local cache's."""
    # lazy: huggingface_hub loads on first use, so importing checkpoints stays light
    import huggingface_hub.constants as c

    if not c.HF_HUB_OFFLINE:
        try:
            from huggingface_hub import list_repo_refs

            refs = list_repo_refs(model)
            return sorted({b.name for b in refs.branches} | {t.name for t in refs.tags})
        except Exception:
            pass
    return cached_revisions(model)


def _cached_commit(model: str, revision: str | None) -> str | None:
    rev = revision or "main"
    if re.fullmatch(r"[0-9a-f]{40}", rev):
        return rev
    ref = _repo_cache(model) / "refs" / rev
    try:
        commit = ref.read_text().strip()
    except OSError:
        return None
    return commit if re.fullmatch(r"[0-9a-f]{40}", commit) else None


# --------------------------------------------------------------------------------- series
def _folder_series(folder: Path) -> list[Checkpoint]:
    subs = [p for p in sorted(folder.iterdir()) if p.is_dir() and (p / "config.json").is_file()]
    if not subs:
        raise TracingBenchError(
            f"checkpoint folder {folder} has no config.json and no sub-folders holding one: give a model "
            "folder (saved with save_pretrained) or a folder of such checkpoint folders"
        )
    unnumbered = [p.name for p in subs if parse_step(p.name) is None]
    if unnumbered:
        raise TracingBenchError(
            f"checkpoint sub-folders {', '.join(unnumbered[:5])} of {folder} carry no step number, so the series "
            "cannot be ordered: name them like step100, ckpt_010 or checkpoint-250"
        )
    subs.sort(key=lambda p: (parse_step(p.name), p.name))
    return [Checkpoint(str(p.resolve())) for p in subs]


def resolve_series(model: str, revisions: str | list[str] | None = None) -> list[Checkpoint]:
    """The ordered checkpoints of a series.

    Args:
        model: hub model id, a model folder, or a folder of checkpoint sub-folders (each with
            ``config.json``; ordered by the step number in the sub-folder name).
        revisions: comma list / list of revisions with shorthands (:func:`parse_revisions`);
            only for hub ids. ``None``: the default branch (or the folder's checkpoints).

    Returns:
        A list of :class:`Checkpoint`.

    Raises:
        TracingBenchError: missing folder, revisions given for a folder, an empty revision list
            (``--revisions ""``), malformed ranges.
    """
    text = (
        None
        if revisions is None
        else (revisions if isinstance(revisions, str) else ",".join(str(r) for r in revisions))
    )
    if text is not None and not text.replace(",", "").strip():
        raise TracingBenchError(
            f"--revisions {text!r} names no revision: give revisions such as step1000,step2000 or "
            "ckpt_000:ckpt_359:10, or leave --revisions out (the default branch, or a folder's checkpoints)"
        )
    if _is_folder_spec(model):
        folder = Path(model).expanduser()
        if not folder.is_dir():
            raise TracingBenchError(
                f"checkpoint folder {model} does not exist: give an existing folder or a Hugging Face model id "
                "like EleutherAI/pythia-160m"
            )
        if text:
            raise TracingBenchError(
                f"--revisions applies to hub model ids, but {model} is a local folder: drop --revisions "
                "(a folder of sub-folders step0, step10, ... is a series by itself)"
            )
        if (folder / "config.json").is_file():
            return [Checkpoint(str(folder.resolve()))]
        return _folder_series(folder)
    if text is None:
        return [Checkpoint(model)]
    revs = parse_revisions(text, model=model)
    return [Checkpoint(model, r) for r in revs]


def delete_from_hf_cache(ckpt: Checkpoint, commit: str | None = None) -> bool:
    """Delete one hub revision (its snapshot and the blobs no other revision uses) from the HF cache.

    Args:
        ckpt: a hub checkpoint (a local folder is refused).
        commit: its commit hash if known (else read from the cache's refs).

    Returns:
        True when something was deleted.

    Raises:
        TracingBenchError: for a local folder.
    """
    if ckpt.is_local:
        raise TracingBenchError(
            f"--delete-checkpoints only removes Hugging Face cache downloads, and {ckpt.model} is a local folder: "
            "refusing to delete it; drop --delete-checkpoints"
        )
    # lazy: huggingface_hub loads on first use, so importing checkpoints stays light
    from huggingface_hub import scan_cache_dir

    commit = commit or ckpt.resolved_commit()
    if not commit:
        return False
    try:
        info = scan_cache_dir(_hub_cache_dir())
    except Exception:
        return False
    for repo in info.repos:
        if repo.repo_id == ckpt.model and repo.repo_type == "model":
            if any(r.commit_hash == commit for r in repo.revisions):
                info.delete_revisions(commit).execute()
                return True
    return False
