"""`tracing-bench report`: one offline HTML page, opened in headless Chromium.

Chromium (Debian's ``chromium`` package) is installed by ``make test`` when missing (the
Makefile's ``browser`` step, as root where the package manager is there); where it could not be
installed the browser tests are skipped, with the reason. No test installs anything.

How the page is checked: a test copy gets one inline script, allowed by its sha256 in the
page's own Content-Security-Policy (everything else in the policy stays: ``img-src data:``
only, no other sources), that writes every image's ``naturalWidth``/``naturalHeight`` into the
DOM on ``load``; ``chromium --headless --dump-dom`` prints that DOM and, with
``--enable-logging=stderr``, every console message (``CONSOLE``) on stderr. The page has no
scripts of its own, so any console message -- an error, a blocked external asset, a broken
image -- fails the test.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fake_traces import PYTHIA, write_trace_tables
from tracing_bench.cli import main
from tracing_bench.report.html import CSP, build_report

PROBE = """
window.addEventListener('load', function () {
  var out = document.createElement('pre');
  out.id = 'tb-images';
  out.textContent = JSON.stringify(Array.prototype.map.call(document.images, function (i) {
    return {alt: i.alt, complete: i.complete, w: i.naturalWidth, h: i.naturalHeight,
            shown: i.getBoundingClientRect().width};
  }));
  document.body.appendChild(out);
});
"""


# -------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="session")
def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        pytest.skip(
            "headless Chromium is not installed: `make test` installs Debian's chromium package when it "
            "can (as root, with the system package manager); or install it yourself"
        )
    return exe


_CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]


def _open(
    chromium: str,
    page: Path,
    tmp_path: Path,
    *,
    script: str = PROBE,
    pre_id: str = "tb-images",
    window: str = "1280,2000",
) -> tuple[Any, list[str]]:
    """Load a copy of ``page`` with a probe script; (the JSON it writes into <pre id=pre_id>, console lines)."""
    text = page.read_text(encoding="utf-8")
    digest = base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    assert CSP in text, "the report must carry its Content-Security-Policy"
    text = text.replace(CSP, f"{CSP}; script-src 'sha256-{digest}'")
    text = text.replace("</body>", f"<script>{script}</script></body>")
    copy = tmp_path / f"probe_{pre_id}_{page.name}"
    copy.write_text(text, encoding="utf-8")
    proc = subprocess.run(
        [
            chromium,
            *_CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'chromium-profile'}",
            "--enable-logging=stderr",
            "--v=0",
            f"--window-size={window}",
            "--virtual-time-budget=10000",
            "--dump-dom",
            copy.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    m = re.search(rf'<pre id="{pre_id}">(.*?)</pre>', proc.stdout, re.S)
    assert m, f"the probe did not run (exit {proc.returncode}): {proc.stderr[-1500:]}"
    import html

    found = json.loads(html.unescape(m.group(1)))
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    return found, console


def _sweep_dir(root: Path) -> Path:
    root.mkdir(parents=True)
    cols = "model,revision,vector,vector_sha256,layer,alpha,task,metric,score,stderr,delta,ppl,ppl_increase,admissible"
    with open(root / "sweep.csv", "w", newline="") as f:
        w = csv.DictWriter(f, cols.split(","))
        w.writeheader()
        w.writerow(
            {
                "model": "local/tiny",
                "revision": "",
                "vector": "none",
                "vector_sha256": "",
                "layer": "",
                "alpha": 0.0,
                "task": "trust_fairness",
                "metric": "acc",
                "score": 0.5,
                "stderr": 0.05,
                "delta": "",
                "ppl": 10.0,
                "ppl_increase": 0.0,
                "admissible": True,
            }
        )
        for layer in (1, 2):
            for alpha in (-4.0, -2.0, 2.0, 4.0):
                inc = abs(alpha) * 0.03 * layer
                w.writerow(
                    {
                        "model": "local/tiny",
                        "revision": "",
                        "vector": f"v{layer}.pt",
                        "vector_sha256": "ab" * 32,
                        "layer": layer,
                        "alpha": alpha,
                        "task": "trust_fairness",
                        "metric": "acc",
                        "score": 0.5 + 0.02 * alpha,
                        "stderr": 0.05,
                        "delta": 0.02 * alpha,
                        "ppl": 10 * (1 + inc),
                        "ppl_increase": inc,
                        "admissible": inc <= 0.1,
                    }
                )
    best = {
        "metric": "acc",
        "layer": 1,
        "alpha": 2.0,
        "vector": "v1.pt",
        "vector_sha256": "ab" * 32,
        "score": 0.54,
        "delta": 0.04,
        "stderr": 0.05,
        "ppl": 10.6,
        "ppl_increase": 0.06,
        "improves": True,
        "side_effects": {},
        "chosen_on": "logodds",
        "logodds": _logodds(),
    }
    (root / "best.json").write_text(
        json.dumps(
            {
                "best": {"trust_fairness": best},
                "settings": {
                    "model": "local/tiny",
                    "max_ppl_increase": 0.1,
                    "baseline_ppl": 10.0,
                    "package_version": "0.1.0",
                },
            }
        )
    )
    return root


def _logodds() -> dict:
    """best.json's paired per-document change and steerability (3 documents, each raised 0.5 to 0.7 nats)."""
    from tracing_bench.steering.effects import paired_change, steerability

    base, steered = {0: 0.0, 1: 0.0, 2: 0.0}, {0: 0.5, 1: 0.6, 2: 0.7}
    return {
        "change": paired_change(base, steered).as_dict(),
        "steerability": steerability({0.0: base, 2.0: steered}).as_dict(),
    }


def _correlate_dir(root: Path) -> Path:
    root.mkdir(parents=True)
    with open(root / "correlate.csv", "w", newline="") as f:
        w = csv.DictWriter(f, "model,revision,step,dimension,layer,probe_acc,benefit".split(","))
        w.writeheader()
        for s in (1, 2, 4):
            w.writerow(
                {
                    "model": "local/tiny",
                    "revision": f"step{s}",
                    "step": s,
                    "dimension": "fairness",
                    "layer": 1,
                    "probe_acc": 0.5 + s / 20,
                    "benefit": s / 100,
                }
            )
    (root / "correlate.json").write_text(
        json.dumps({"pearson_r": 0.97, "ci95": [0.2, 1.0], "n": 3, "dataset_md5": "d" * 32, "package_version": "0.1.0"})
    )
    return root


def _findings_json(folder: Path) -> dict:
    """findings.json for the PYTHIA tables: fairness learned, reliability not; fairness block 0 turns at step2."""
    import numpy as np

    from tracing_bench.compare.findings import build_findings, write_findings
    from tracing_bench.files import pack_bits

    n = 100
    base = np.arange(n) < 50
    up = base | (np.arange(n) >= 80)  # +30 statements right

    class D:
        def __init__(self, name):
            self.name, self.md5 = name, "m" * 32

    def part(i, c, dim):
        r, s = PYTHIA[i]
        ixt = [1.0, 2.0, 3.0, 2.5, 2.0, 1.5][i]
        return {
            "probes": [
                {"layer": lay, "probe": "logistic", "val_acc": 0.5 + 0.01 * lay, "test_correct": pack_bits(c)}
                for lay in range(3)
            ],
            "mi": [
                {"layer": lay, "i_xt": ixt * (lay + 1), "step": s, "revision": r, "model": "local/tiny"}
                for lay in range(3)
            ],
            "mi_noise": {
                "k": 3,
                "m": 50,
                "seeds": [1, 2, 3],
                "method": "test",
                "i_xt": {
                    str(lay): [
                        ixt * (lay + 1) + e * (0.01 if dim == "fairness" else 2.0) for e in (-1, 0, 1.5 * (i % 2) - 0.5)
                    ]
                    for lay in range(3)
                },
            },
            "test_statements": {"n": n, "sha256": "s", "split": "test"},
        }

    ckpts = [{"model": "local/tiny", "revision": r, "step": s, "label": r} for r, s in PYTHIA]
    parts = {}
    for dim in ("fairness", "reliability"):
        parts[dim] = []
        for i in range(len(PYTHIA)):
            parts[dim].append(part(i, up if (dim == "fairness" and i == len(PYTHIA) - 1) else base, dim))
    findings = build_findings(ckpts, [D("fairness"), D("reliability")], parts)
    write_findings(findings, folder / "findings.json")
    return findings


@pytest.fixture(scope="module")
def full_report(tmp_path_factory, lm_eval_results) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("report")
    write_trace_tables(root / "trace", PYTHIA)
    _findings_json(root / "trace")
    (root / "trace" / "trace.json").write_text(
        json.dumps(
            {
                "tool": "tracing-bench trace",
                "package_version": "0.1.0",
                "settings": {"pooling": "last", "protocol": "paper"},
                "checkpoints": [
                    {"model": "local/tiny", "revision": r, "step": s, "resolved_commit": "c" * 40} for r, s in PYTHIA
                ],
                "datasets": [{"name": "fairness", "md5": "m" * 32}],
            }
        )
    )
    _sweep_dir(root / "sweep")
    _correlate_dir(root / "correlate")
    res = CliRunner().invoke(
        main,
        [
            "report",
            str(root),
            str(lm_eval_results["base"]),
            str(lm_eval_results["steered"]),
            "--out",
            str(root / "out" / "report.html"),
        ],
    )
    assert res.exit_code == 0, res.output
    return root, root / "out" / "report.html"


# ------------------------------------------------------------------------------- the page
def test_report_is_self_contained_with_every_section(full_report, lm_eval_results):
    _, page = full_report
    text = page.read_text(encoding="utf-8")
    for heading in (
        "<h2>Trace</h2>",
        "Turn of I(T;X)",
        "<h2>Steering sweep</h2>",
        "<h2>Probe accuracy vs steering benefit</h2>",
        "<h2>Leaderboard</h2>",
    ):
        assert heading in text
    assert not re.search(r'(src|href)="(?!data:)', text), "every asset must be embedded"
    assert "<script" not in text and "http://" not in text and "https://" not in text
    srcs = re.findall(r'<img src="data:image/png;base64,([^"]+)"', text)
    # 2 dims x (curves + heatmap + MI) + sweep scores + ppl + correlate + radar
    assert len(srcs) == 10
    assert all(base64.b64decode(s)[:8] == b"\x89PNG\r\n\x1a\n" for s in srcs)
    # provenance: dataset md5, resolved commit, package version, lm-eval results file, steering setting
    assert "m" * 32 in text and "c" * 40 in text and "Provenance: leaderboard" in text
    assert str(next(lm_eval_results["steered"].rglob("results_*.json"))) in text
    assert "worse.pt#" in text and "alpha=40" in text
    from tracing_bench.dimensions import load_dimension

    assert f"trust_fairness: {load_dimension('fairness').md5}" in text  # the dataset behind the leaderboard
    assert "admissible while perplexity rises at most 10%" in text
    findings = json.loads((page.parent.parent / "trace" / "findings.json").read_text())
    series = {(e["dimension"], e["layer"]): e for e in findings["mi_turns"]["series"]}
    assert series[("fairness", 0)]["turn"] == 2 and series[("reliability", 0)]["turn"] is None  # beyond noise only
    assert re.search(r"<td>fairness</td><td>0</td><td>turn at step 2 \(rise \+2 from step 0, noise sd", text)
    assert "<td>reliability</td><td>0</td><td>no turn detected</td>" in text


def test_findings_section_opens_the_page_and_provenance_is_folded(full_report):
    _, page = full_report
    text = page.read_text(encoding="utf-8")
    body = text.split("<body>", 1)[1]
    assert body.index("<section id='findings'>") < body.index("<h2>Trace</h2>") < body.index("<h2>Leaderboard</h2>")
    findings = body.split("<section id='findings'>", 1)[1].split("</section>", 1)[0]
    from tracing_bench.compare.findings import dimension_title

    fair, rel = dimension_title("fairness"), dimension_title("reliability")
    assert f"<b>{fair}</b>: <span class='yes'>learned (p=" in findings  # from findings.json, with p and interval
    assert f"<b>{rel}</b>: <span class='no'>within noise (p=" in findings
    assert "Where I(T;X) turns" in findings and "block 0: turn at step 2" in findings
    assert "What steering did" in findings and "trust_fairness</b>: alpha 2 at block 1" in findings
    assert re.search(
        r"trust_fairness</b>: alpha 2 at block 1: acc 0\.500 → 0\.540, <span class='no'>\+0\.040 "
        r"\[-0\.099, \+0\.179\], within noise",
        findings,
    )  # stderr 0.05 on both sides
    # what it was chosen on: the paired per-document change in the trustworthy log-odds, with its t interval
    claim = _logodds()["change"]["claim"]
    assert claim.startswith("+0.600 nats [+0.352, +0.848], 0% of 3 documents the wrong way")
    assert (
        f"trustworthy log-odds, paired per document (what the setting was chosen on): <span class='yes'>{claim}"
        in findings
    )
    assert "Checkpoints on the trust tasks" not in findings  # base and steered are one checkpoint
    assert "<details open" not in text and text.count("<summary>Provenance:") == 4
    trace_prov = body.split("<summary>Provenance: trace", 1)[1].split("</details>", 1)[0]
    # one row per distinct setting, not one per checkpoint x dimension (6 x 2 here, twice)
    table_rows = trace_prov.split("<p>trace.json")[0].count("<tr><td>")  # body rows, headers not counted
    assert table_rows <= 10, table_rows
    for rev, _ in PYTHIA:
        assert f"local/tiny@{rev}" in trace_prov  # complete: every checkpoint is still named


def test_sections_absent_without_their_data(tmp_path):
    write_trace_tables(tmp_path / "t", PYTHIA[:3], dims=("fairness",), mi=False)
    out = build_report([tmp_path / "t"], tmp_path / "r.html")
    text = out.read_text()
    assert "<h2>Trace</h2>" in text and "trace run without --mi" in text
    for absent in ("Leaderboard", "Steering sweep", "steering benefit", "Turn of I(T;X)"):
        assert absent not in text
    assert len(re.findall(r"<img ", text)) == 2


def test_every_value_is_escaped(tmp_path):
    """Names from the files reach the page as text: the templates autoescape (no markup, no script gets in)."""
    from fake_results import five, results_json, write_results

    hostile = "<script>alert('x')</script>&<b>"
    write_results(tmp_path / "r" / "a", results_json(five(0.6), model=hostile, revision="step1"))
    write_results(tmp_path / "r" / "b", results_json(five(0.7), model=hostile, revision="step2"))
    text = build_report([tmp_path / "r"], tmp_path / "r.html", title="a <i>title</i>").read_text()
    assert "<script" not in text and hostile not in text and "<i>" not in text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&lt;b&gt;" in text  # the model column and labels
    assert "<title>a &lt;i&gt;title&lt;/i&gt;</title>" in text
    assert f'content="{CSP}"' in text  # the policy itself is the one constant written as it is


def test_nothing_to_report_and_missing_dir_exit_2(tmp_path):
    res = CliRunner().invoke(main, ["report", str(tmp_path), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "nothing to report" in res.output
    res = CliRunner().invoke(main, ["report", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html")])
    assert res.exit_code == 2 and "does not exist" in res.output
    assert not (tmp_path / "r.html").exists()


# ------------------------------------------------------------------------------ in Chromium
def test_every_figure_renders_and_console_is_clean(chromium, full_report, tmp_path):
    _, page = full_report
    images, console = _open(chromium, page, tmp_path)
    assert len(images) == 10
    for img in images:
        assert img["complete"] and img["w"] > 0 and img["h"] > 0 and img["shown"] > 0, img
    assert console == [], console


def test_the_browser_check_catches_errors(chromium, tmp_path):
    """Negative control: a broken image, an external asset (blocked by the CSP) and a script error are all seen."""
    page = tmp_path / "bad.html"
    page.write_text(
        f'<!DOCTYPE html><html><head><meta http-equiv="Content-Security-Policy" content="{CSP}"></head><body>'
        '<img src="data:image/png;base64,AAAA" alt="broken"><img src="https://example.invalid/x.png" alt="external">'
        "<script>undefinedFunction()</script></body></html>"
    )
    images, console = _open(chromium, page, tmp_path)
    assert [i["w"] for i in images] == [0, 0]
    assert any("Content Security Policy" in line for line in console), console


FIRST_SCREEN = """
window.addEventListener('load', function () {
  var f = document.getElementById('findings');
  var li = f ? f.querySelector('li') : null;
  var r = f ? f.getBoundingClientRect() : null;
  var out = document.createElement('pre');
  out.id = 'tb-first-screen';
  out.textContent = JSON.stringify({found: !!f, top: r && r.top, bottom: r && r.bottom, left: r && r.left,
    right: r && r.right, innerWidth: window.innerWidth, innerHeight: window.innerHeight,
    firstClaim: li ? li.textContent : null, firstClaimBottom: li ? li.getBoundingClientRect().bottom : null});
  document.body.appendChild(out);
});
"""


def test_first_screen_shows_the_findings(chromium, full_report, tmp_path):
    """The report's first 1280x800 screen, in headless Chromium: the findings section is in it, and visible."""
    import numpy as np
    from matplotlib.image import imread

    _, page = full_report
    box, console = _open(chromium, page, tmp_path, script=FIRST_SCREEN, pre_id="tb-first-screen", window="1280,800")
    assert console == [], console
    # headless Chromium's viewport is the window less its (invisible) browser frame: 1280 x about 660
    assert box["found"] and box["innerWidth"] == 1280 and box["innerHeight"] >= 600, box
    assert 0 <= box["top"] < box["innerHeight"] / 2, box  # the section starts in the upper half of the first screen
    assert box["firstClaimBottom"] <= box["innerHeight"], box  # and its first claim is on it, whole
    from tracing_bench.compare.findings import dimension_title

    assert box["firstClaim"].startswith(f"{dimension_title('fairness')}: learned (p="), box
    shot = tmp_path / "first_screen.png"
    proc = subprocess.run(
        [
            chromium,
            *_CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'chromium-shot'}",
            "--window-size=1280,800",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shot.is_file(), proc.stderr[-1500:]
    img = imread(shot)[..., :3]
    assert img.shape[1] == 1280 and img.shape[0] >= box["innerHeight"], img.shape
    assert img.std() > 0.05 and (img.min(-1) < 0.5).mean() > 0.005  # not blank: text is drawn
    # the section's background (#f7f9fc) fills the rows the DOM says it occupies
    top, bottom = int(box["top"]) + 2, min(img.shape[0], int(box["bottom"])) - 2
    rows = img[top:bottom, int(box["left"]) + 2 : int(box["right"]) - 2]
    tint = np.all(np.abs(rows * 255 - np.array([247, 249, 252])) <= 2, axis=-1)
    assert tint.mean() > 0.5, tint.mean()


def test_checkpoint_lines_say_when_a_run_gives_one_answer(tmp_path):
    from fake_results import five, results_json, write_answer_samples, write_results

    for rev, answers in (("step1", [[" 0"]] * 20), ("step2", [[" 0"]] * 11 + [[" 1"]] * 9)):
        write_results(tmp_path / "r" / rev, results_json(five(0.6), model="m", revision=rev))
        write_answer_samples(tmp_path / "r" / rev, "trust_toxicity", answers)
    text = build_report([tmp_path / "r"], tmp_path / "r.html").read_text()
    items = dict(re.findall(r"<li><b>(trust_\w+)</b>(.*?)</li>", text, flags=re.S))
    assert len(items) == 5
    noted = {task: body.split("<span class='src'>")[1] for task, body in items.items() if "one answer" in body}
    assert list(noted) == ["trust_toxicity"]  # the only task with a sample log
    assert noted["trust_toxicity"].startswith("one answer: m@step1 &#39; 0&#39; to 100% of 20 prompts;")
    assert "m@step2" not in noted["trust_toxicity"]  # 55% is not one answer
