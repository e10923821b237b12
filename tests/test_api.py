"""The Python API (prehoc_ray/api.py), used the way its docstring shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

import prehoc_ray
from prehoc_ray.io import write_table
from prehoc_ray.plan.simrun import simulated_spec_dict, write_simulated_run
from prehoc_ray.sim.synthetic import generate_portfolio

REPO = Path(__file__).resolve().parents[1]


def test_ask_tell_loop_from_the_docstring():
    from prehoc_ray import CandidateInfo, Engine, EngineSettings

    steps = np.arange(10, 1001, 10, dtype=float)
    means = {"t:a": 0.80, "t:b": 0.70, "t:c": 0.60}
    eng = Engine(
        [CandidateInfo(c, "t", horizon=1000, prior_cost_per_step=0.01) for c in means],
        EngineSettings(budget=20.0, seeds=2, eval_every=10, initial_depth=30),
    )
    rounds = 0
    while orders := eng.next_round():
        rounds += 1
        for o in orders:
            y = means[o.candidate] - 0.3 / np.sqrt(steps) + 0.003 * o.seed
            m = (steps > o.start_step) & (steps <= o.target_step)
            eng.tell(
                o, [{"step": s, "value": v} for s, v in zip(steps[m], y[m])], 0.01 * (o.target_step - o.start_step)
            )
    rows = {r["candidate"]: r for r in eng.summary()}
    assert rounds >= 1 and eng.spent <= 20.0
    assert max(rows, key=lambda c: rows[c]["predicted_final"]) == "t:a"
    assert all(r["stop_reason"] and r["stop_kind"] for r in rows.values())


def test_analyze_curves_and_read_plan(tmp_path):
    p = generate_portfolio(n_groups=2, candidates_per_group=10, n_seeds=3, horizon=1000, eval_every=10, seed=2)
    obs = p.observations
    path = tmp_path / "curves.parquet"
    write_table(
        pa.table(
            {
                "candidate": obs.candidate.astype(str),
                "step": obs.step,
                "value": obs.value,
                "seed": obs.seed,
                "group": obs.group.astype(str),
                "horizon": obs.horizon,
            }
        ),
        path,
    )
    result = prehoc_ray.analyze_curves(path, depth=300, n_boot=20)
    preds = result.predictions
    assert len(preds["candidate"]) == 20 and np.isfinite(preds["predicted_final"]).all()
    job = write_simulated_run(tmp_path / "run", simulated_spec_dict(probe_seconds=30), seed=1)
    from prehoc_ray.report.finish import write_outputs

    write_outputs(tmp_path / "run", job, report=False)
    plan = prehoc_ray.read_plan(tmp_path / "run")
    assert plan.num_rows == len(job.candidate_specs()) and "decision" in plan.column_names
    with pytest.raises(FileNotFoundError, match="no plan"):
        prehoc_ray.read_plan(tmp_path)


def test_the_api_loads_lazily():
    code = "import sys, prehoc_ray; assert 'prehoc_ray.api' not in sys.modules; prehoc_ray.Engine; print('ok')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.stdout.strip() == "ok", out.stderr
    with pytest.raises(AttributeError):
        prehoc_ray.no_such_thing  # noqa: B018
    assert (REPO / "prehoc_ray" / "py.typed").is_file()


@pytest.mark.slow
def test_run_a_job_from_python(tmp_path):
    code = (
        f"import prehoc_ray; r = prehoc_ray.run('jobs/simulated.yaml', {str(tmp_path / 'run')!r}); "
        "t = prehoc_ray.read_plan(r.run_dir); print(t.num_rows, r.engine.finished)"
    )
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().splitlines()[-1] == "6 True"
