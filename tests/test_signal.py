"""Signal-to-noise of each metric over a checkpoint series, against numpy by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from click.testing import CliRunner

from fake_results import results_json, write_results
from tracing_bench.cli import main
from tracing_bench.compare.leaderboard import build_leaderboard
from tracing_bench.compare.signal import metric_signal, snr_table


def _series(tmp_path, values, se, p_trust):
    for step, (v, p) in enumerate(zip(values, p_trust, strict=True)):
        data = results_json(
            {"trust_toxicity": (v, se)},
            revision=f"step{step * 100}",
            group=False,
            p_trust={"trust_toxicity": (p, 0.001)},
        )
        write_results(tmp_path / f"step{step}", data, stamp=f"2026-01-0{step + 1}T00-00-00.000000")


def test_snr_is_sd_across_checkpoints_over_rms_stderr(tmp_path):
    values, p_trust = [0.50, 0.52, 0.49], [0.50, 0.60, 0.70]
    _series(tmp_path, values, 0.05, p_trust)
    rows = {(r.task, r.metric): r for r in snr_table(build_leaderboard([tmp_path]))}
    acc = rows[("trust_toxicity", "acc")]
    assert acc.snr == pytest.approx(np.std(values, ddof=1) / 0.05)
    assert "within noise" in acc.claim  # spread 0.015 against noise 0.05
    p = rows[("trust_toxicity", "p_trust")]
    assert p.snr == pytest.approx(np.std(p_trust, ddof=1) / 0.001) and "within noise" not in p.claim
    res = CliRunner().invoke(main, ["leaderboard", str(tmp_path), "--snr"])
    assert res.exit_code == 0, res.output
    assert "signal-to-noise" in res.output and "p_trust" in res.output


def test_undefined_with_one_checkpoint_or_no_stderr():
    one = metric_signal("t", "m", [0.5], [0.1])
    assert math.isnan(one.snr) and "undefined" in one.claim
    none = metric_signal("t", "m", [0.5, 0.6], [math.nan, math.nan])
    assert math.isnan(none.snr)
    flat = metric_signal("t", "m", [0.5, 0.5], [0.0, 0.0])
    assert math.isnan(flat.snr) and "every checkpoint reads the same" in flat.claim
    sharp = metric_signal("t", "m", [0.5, 0.6], [0.0, 0.0])
    assert math.isinf(sharp.snr) and sharp.claim == "snr inf"
