"""write_outputs: plan.parquet / plan.json (+ the report) from a run directory."""

import json
import math

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prehoc_ray.io import write_table
from prehoc_ray.plan import PLAN_COLUMNS, write_plan
from prehoc_ray.plan.simrun import simulated_spec_dict, write_simulated_run
from prehoc_ray.report.finish import write_outputs
from prehoc_ray.spec.job import JobSpec

ISSUE_COLUMNS = [
    "candidate",
    "task",
    "model",
    "regime",
    "predicted_final",
    "predicted_std",
    "lower",
    "upper",
    "probe_steps",
    "probe_cost_s",
    "full_cost_s",
    "L_int",
    "K",
    "alpha",
    "c_star",
    "decision",
    "reason",
]
BASELINES = {"glue-like": 0.62, "gsm8k-like": 0.6}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    job = write_simulated_run(d, simulated_spec_dict(baselines=BASELINES, full_finetune_seconds=600))
    return d, job


@pytest.fixture(scope="module")
def outputs(run_dir):
    d, job = run_dir
    return write_outputs(d, job)


def test_plan_parquet_has_the_issue_columns_one_row_per_candidate(run_dir, outputs):
    d, job = run_dir
    t = pq.read_table(d / "plan.parquet")
    assert t.column_names[: len(ISSUE_COLUMNS)] == ISSUE_COLUMNS
    assert tuple(t.column_names) == PLAN_COLUMNS
    cands = pq.read_table(d / "candidates.parquet").column("candidate").to_pylist()
    assert t.column("candidate").to_pylist() == cands
    assert t.num_rows == len(job.candidate_specs())
    assert set(t.column("decision").to_pylist()) <= {"run", "skip", "probe more"}
    assert all(r and "\n" not in r for r in t.column("reason").to_pylist())


def test_plan_json_totals(run_dir, outputs):
    d, job = run_dir
    doc = json.loads((d / "plan.json").read_text())  # strict JSON: NaN written as null
    t = doc["totals"]
    rows = doc["candidates"]
    assert len(rows) == len(job.candidate_specs()) and doc["spec_hash"] == job.spec_hash()
    run_cost = sum(r["full_cost_s"] for r in rows if r["decision"] == "run")
    assert t["recommended_full_cost_s"] == pytest.approx(run_cost)
    assert t["recommended_full_cost_s"] <= 600
    assert t["all_full_cost_s"] == pytest.approx(sum(r["full_cost_s"] for r in rows))
    assert t["probe_spend_s"] == pytest.approx(sum(r["probe_cost_s"] for r in rows))
    undecided = sum(r["full_cost_s"] for r in rows if r["decision"] == "probe more")
    assert t["undecided_full_cost_s"] == pytest.approx(undecided)
    assert t["saving_s"] == pytest.approx(
        t["all_full_cost_s"] - t["recommended_full_cost_s"] - undecided - t["probe_spend_s"]
    )
    assert t["saving_s"] > 0
    assert t["n_run"] == len(t["runs"]) and t["n_run"] >= 1
    assert t["baselines"] == BASELINES and t["metric"] == "accuracy"
    # at most one run per task
    tasks = [r["task"] for r in rows if r["decision"] == "run"]
    assert len(tasks) == len(set(tasks))


def test_report_written_alongside(run_dir, outputs):
    d, _ = run_dir
    assert outputs.report_error is None
    assert (d / "report.html").is_file() and (d / "report.md").is_file()
    for name in ("phase_diagram", "decay_curves", "probe_spend", "savings"):
        assert (d / "plots" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_report_failure_does_not_lose_the_plan(tmp_path, run_dir, monkeypatch):
    d, job = run_dir
    import prehoc_ray.report.finish as rr

    work = tmp_path / "copy"
    work.mkdir()
    (work / "candidates.parquet").write_bytes((d / "candidates.parquet").read_bytes())
    monkeypatch.setattr(rr, "write_report", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    out = write_outputs(work, job)
    assert out.report_error == "RuntimeError: boom"
    assert (work / "plan.parquet").is_file() and (work / "plan.json").is_file()


def test_missing_candidates_table(tmp_path, run_dir):
    _, job = run_dir
    with pytest.raises(FileNotFoundError, match="candidates.parquet"):
        write_outputs(tmp_path, job)


def test_full_cost_filled_from_cost_per_step_and_no_cap(tmp_path, run_dir):
    d, job = run_dir
    t = pq.read_table(d / "candidates.parquet")
    t = t.set_column(t.column_names.index("full_cost_s"), "full_cost_s", pa.array([None] * t.num_rows, pa.float64()))
    write_table(t, tmp_path / "candidates.parquet")
    spec = JobSpec.model_validate({**job.model_dump(), "budget": {"probe_seconds": 60}})
    out = write_plan(tmp_path, spec)
    for r, c in zip(out.rows, t.to_pylist()):
        assert r["full_cost_s"] == pytest.approx(c["cost_per_step_s"] * c["full_steps"])
    # no cap: every task with an eligible candidate runs one
    assert set(out.totals["runs"]) == {r["task"] for r in out.rows if r["decision"] == "run"}
    assert out.totals["full_finetune_budget_s"] is None


def test_empty_candidates_table(tmp_path, run_dir):
    _, job = run_dir
    out = write_plan(tmp_path, job, candidates=[])
    assert out.rows == [] and pq.read_table(tmp_path / "plan.parquet").num_rows == 0
    assert out.totals["saving_s"] == 0 and math.isnan(out.totals["saving_fraction"])
    assert json.loads((tmp_path / "plan.json").read_text())["totals"]["saving_fraction"] is None


def test_a_starved_probe_budget_asks_to_probe_more(tmp_path):
    spec = simulated_spec_dict(baselines={"glue-like": 0.62, "gsm8k-like": 0.6, "noisy-labels": 0.6}, probe_seconds=5)
    job = write_simulated_run(tmp_path, spec, seed=3)
    out = write_outputs(tmp_path, job, report=False)
    more = [r for r in out.rows if r["decision"] == "probe more"]
    assert more and out.totals["n_probe_more"] == len(more)
    cands = {r["candidate"]: r for r in pq.read_table(tmp_path / "candidates.parquet").to_pylist()}
    for r in more:
        assert "probe budget" in cands[r["candidate"]]["stop_reason"]
        assert "budget ran out" in r["reason"]
    assert not (tmp_path / "report.html").exists()


def test_plan_carries_p_best_and_probe_value_and_the_report_shows_contenders(run_dir, outputs):
    d, _ = run_dir
    t = pq.read_table(d / "plan.parquet").to_pylist()
    by_task: dict = {}
    for r in t:
        by_task.setdefault(r["task"], []).append(r["p_best"])
    for ps in by_task.values():  # P(best in task) is a distribution over the task's candidates
        assert all(0 <= p <= 1 for p in ps) and sum(ps) == pytest.approx(1.0, abs=1e-6)
    assert all(r["probe_value"] is None or r["probe_value"] >= 0 for r in t)
    png = d / "plots" / "contenders.png"
    assert png.exists() and png.stat().st_size > 5000


def test_missing_numbers_are_null_in_plan_parquet(tmp_path):
    # an unpredicted candidate sorts last in ORDER BY predicted_final DESC, not first as a NaN would
    job = write_simulated_run(tmp_path, simulated_spec_dict(probe_seconds=8), seed=3)
    rows = pq.read_table(tmp_path / "candidates.parquet").to_pylist()
    rows[0].update(predicted_final=float("nan"), predicted_std=float("nan"))
    write_table(pa.Table.from_pylist(rows), tmp_path / "candidates.parquet")
    write_plan(tmp_path, job)
    col = pq.read_table(tmp_path / "plan.parquet").column("predicted_final")
    assert col.null_count == 1 and col.to_pylist()[0] is None
    assert not any(isinstance(v, float) and math.isnan(v) for v in col.to_pylist())
    doc = json.loads((tmp_path / "plan.json").read_text())
    assert doc["candidates"][0]["predicted_final"] is None


@pytest.mark.parametrize(("metric", "clipped"), [("accuracy", True), ("exact_match", True), ("neg_loss", False)])
def test_intervals_of_a_proportion_are_shown_within_0_and_1(metric, clipped):
    from prehoc_ray.plan.outputs import build_plan

    spec = JobSpec.model_validate(simulated_spec_dict())
    base = {"task": "t", "model": "m", "regime": "Undetermined", "full_cost_s": 10.0, "probe_cost_s": 1.0}
    rows = [
        base | {"candidate": "t:a", "predicted_final": 0.7, "predicted_std": 3.0, "lower": -4.2, "upper": 5.6},
        base | {"candidate": "t:b", "predicted_final": 0.5, "predicted_std": 0.1, "lower": 0.35, "upper": 0.65},
        base | {"candidate": "t:c", "predicted_final": 0.4, "predicted_std": float("nan"), "lower": float("nan")},
    ]
    _, out, totals = build_plan([r | {"metric": metric} for r in rows], spec)
    a, b, c = out
    assert totals["metric"] == metric
    assert (a["lower"], a["upper"]) == ((0.0, 1.0) if clipped else (-4.2, 5.6))
    assert (b["lower"], b["upper"]) == (0.35, 0.65) and a["predicted_std"] == 3.0
    assert math.isnan(c["lower"]) and math.isnan(c["upper"])
