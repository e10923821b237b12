"""`prehoc-ray simulate` writes the plan and the ground truth."""

import numpy as np
import pyarrow.parquet as pq
from typer.testing import CliRunner

from prehoc_ray.cli import _register, app

_register()  # every sub-command, as `prehoc-ray` itself does

PLAN_COLS = {
    "candidate",
    "group",
    "predicted_final",
    "predicted_std",
    "lower",
    "upper",
    "regime",
    "probe_steps",
    "probe_cost_s",
    "selected",
}
TRUTH_COLS = {"candidate", "group", "true_final", "true_regime", "true_L_int", "true_K", "true_alpha"}


def test_simulate_writes_plan_and_truth(tmp_path):
    res = CliRunner().invoke(
        app, ["simulate", "--candidates", "12", "--budget", "0.1", "--seed", "3", "--out", str(tmp_path)]
    )
    assert res.exit_code == 0, res.output
    plan = pq.read_table(tmp_path / "plan.parquet").to_pydict()
    truth = pq.read_table(tmp_path / "truth.parquet").to_pydict()
    assert PLAN_COLS <= set(plan) and TRUTH_COLS <= set(truth)
    assert plan["candidate"] == truth["candidate"] and len(plan["candidate"]) == 12
    # One selected candidate per family, the best predicted one.
    groups = np.array(plan["group"])
    sel = np.array(plan["selected"])
    pred = np.array(plan["predicted_final"], float)
    for g in set(groups):
        m = groups == g
        assert sel[m].sum() == 1
        assert pred[m][sel[m]][0] == np.nanmax(pred[m])
    assert set(truth["true_regime"]) == {"Static-Sufficient", "Dynamic-Critical", "Noise-Dominant"}
    assert sum(plan["probe_cost_s"]) <= 0.1 * 12 * 2000 * 0.015 + 1e-9
    assert all(r in {"Static-Sufficient", "Dynamic-Critical", "Noise-Dominant", "Undetermined"} for r in plan["regime"])


def test_simulate_other_policy_and_bad_input(tmp_path):
    res = CliRunner().invoke(
        app, ["simulate", "--candidates", "9", "--budget", "0.2", "--out", str(tmp_path), "--policy", "uniform"]
    )
    assert res.exit_code == 0, res.output
    assert set(pq.read_table(tmp_path / "plan.parquet").to_pydict()["regime"]) == {""}
    bad = CliRunner().invoke(
        app, ["simulate", "--candidates", "2", "--budget", "0", "--out", str(tmp_path), "--policy", "nope"]
    )
    assert bad.exit_code == 2
    assert "--candidates" in bad.output and "--budget" in bad.output and "--policy" in bad.output
