"""The plan next to recorded truth: regret of the plan's picks, interval coverage, the report section."""

import json
import math
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prehoc_ray.plan.simrun import simulated_spec_dict, write_simulated_run
from prehoc_ray.plan.truth import compare_to_truth, truth_lines
from prehoc_ray.report.finish import write_outputs
from prehoc_ray.spec.job import JobSpec


def _row(cid, decision, pred, lo, hi):
    return {
        "candidate": cid,
        "task": cid.split(":")[0],
        "decision": decision,
        "predicted_final": pred,
        "lower": lo,
        "upper": hi,
    }


ROWS = [
    _row("a:m1", "run", 0.70, 0.65, 0.75),
    _row("a:m2", "skip", 0.60, 0.55, 0.65),
    _row("a:m3", "run", 0.50, 0.45, 0.55),
    _row("b:m1", "skip", 0.30, float("nan"), float("nan")),
    _row("b:m2", "probe more", 0.35, 0.20, 0.50),
    _row("c:m1", "run", 0.9, 0.8, 1.0),  # no recorded result
]
TRUTH = {"a:m1": 0.62, "a:m2": 0.80, "a:m3": 0.66, "b:m1": 0.25, "b:m2": 0.45, "z:other": 1.0}


def test_regret_is_the_best_true_result_minus_the_best_pick():
    cmp = compare_to_truth(ROWS, TRUTH, "max", source="rec")
    a, b = cmp.tasks
    # task a: the plan runs m1 (0.62) and m3 (0.66), keeps the better: 0.66; m2 reached 0.80
    assert (a.best, a.picks, a.pick_final) == ("a:m2", ("a:m1", "a:m3"), 0.66)
    assert a.regret == pytest.approx(0.14)
    # task b: nothing run, so no regret of a pick
    assert b.picks == () and math.isnan(b.regret) and b.best == "b:m2"
    assert cmp.missing == ("c:m1",)
    inside = {c.candidate: c.inside for c in cmp.candidates}
    assert inside == {"a:m1": False, "a:m2": False, "a:m3": False, "b:m1": None, "b:m2": True}
    assert (cmp.n_inside, cmp.n_with_interval) == (1, 4)
    lines = truth_lines(cmp, saving_s=1234.0)
    assert any("regret 0.14" in x and "a:m2" in x for x in lines)
    assert any(x.startswith("b: the plan runs nothing") for x in lines)
    assert "1 of 4 recorded results lie inside" in " ".join(lines) and "1,234 device-s" in " ".join(lines)


def test_lower_is_better_turns_the_regret_around():
    cmp = compare_to_truth(ROWS[:3], TRUTH, "min")
    (a,) = cmp.tasks
    assert a.best == "a:m1" and a.pick_final == 0.62 and a.regret == 0.0
    assert "the best" in truth_lines(cmp)[0]
    # a loss (lower is better) where the plan runs only m3 (0.66) and m1 reached 0.62
    rows = [dict(r, decision="skip" if r["candidate"] == "a:m1" else r["decision"]) for r in ROWS[:3]]
    (a,) = compare_to_truth(rows, TRUTH, "min").tasks
    assert a.picks == ("a:m3",) and a.regret == pytest.approx(0.04)


def test_a_pick_without_a_recorded_result_is_named_not_hidden():
    rows = [_row("a:m1", "skip", 0.7, 0.6, 0.8), _row("a:m2", "run", 0.8, 0.7, 0.9)]
    cmp = compare_to_truth(rows, {"a:m1": 0.7}, "max")
    (a,) = cmp.tasks
    assert a.picks == () and a.unrecorded_picks == ("a:m2",) and cmp.missing == ("a:m2",)
    assert truth_lines(cmp)[0].startswith("a: the plan runs a:m2 (no recorded result)")


def test_the_demo_names_a_recording_of_every_one_of_its_candidates():
    from prehoc_ray.io.truth import load_truth
    from prehoc_ray.spec.job import load_job

    spec = load_job(Path(__file__).resolve().parents[2] / "jobs" / "demo.yaml")
    truth = load_truth(spec.truth)
    assert {c.id for c in spec.candidate_specs()} <= set(truth)
    assert all(0.0 <= v <= 1.0 for v in truth.values())


def test_truth_does_not_change_the_spec_hash(tmp_path):
    d = simulated_spec_dict()
    assert JobSpec.model_validate(d).spec_hash() == JobSpec.model_validate(d | {"truth": "/x"}).spec_hash()


@pytest.fixture(scope="module")
def truth_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("truth-run")
    truth_file = d / "truth.parquet"
    spec = write_simulated_run(d / "run", simulated_spec_dict(models_per_task=2) | {"truth": str(truth_file)})
    ids = [c.id for c in spec.candidate_specs()]
    # one candidate left out: the plan compares the others and says which
    pq.write_table(pa.table({"candidate": ids[:-1], "final": [0.1 * (k + 1) for k in range(len(ids) - 1)]}), truth_file)
    return d / "run", spec, ids


def test_the_plan_and_the_report_show_the_recorded_truth(truth_run):
    run, spec, ids = truth_run
    write_outputs(run, spec)
    rec = json.loads((run / "plan.json").read_text())["recorded_truth"]
    assert rec["missing"] == [ids[-1]] and len(rec["candidates"]) == len(ids) - 1
    assert sorted(c["true_final"] for c in rec["candidates"]) == pytest.approx(
        [0.1 * (k + 1) for k in range(len(ids) - 1)]
    )
    assert rec["lines"] and any("no recorded result for 1 candidate" in x for x in rec["lines"])
    html = (run / "report.html").read_text()
    md = (run / "report.md").read_text()
    assert 'id="truth-table"' in html and "Against the recorded truth" in md
    for line in rec["lines"]:
        assert line in md


def test_an_unreadable_truth_source_falls_back_to_the_earlier_plan_or_loses_no_plan(tmp_path):
    truth_file = tmp_path / "truth.parquet"
    spec = write_simulated_run(tmp_path / "run", simulated_spec_dict(models_per_task=2) | {"truth": str(truth_file)})
    ids = [c.id for c in spec.candidate_specs()]
    run = tmp_path / "run"
    gone = spec.model_copy(update={"truth": str(tmp_path / "nowhere.parquet")})
    # no earlier plan to fall back on: an error in plan.json, and the plan is whole
    out = write_outputs(run, gone)
    doc = json.loads((run / "plan.json").read_text())
    assert len(out.rows) == len(doc["candidates"]) == len(ids) and "not found" in doc["recorded_truth"]["error"]
    assert "could not be read" in (run / "report.md").read_text()
    # an earlier plan compared against it, then the source moved (a relative `truth:` re-read
    # from the run directory's copy of the spec): the results that plan recorded are used
    pq.write_table(pa.table({"candidate": ids, "final": [0.5] * len(ids)}), truth_file)
    first = json.loads((write_outputs(run, spec).json).read_text())["recorded_truth"]
    truth_file.unlink()
    again = json.loads((write_outputs(run, spec).json).read_text())["recorded_truth"]
    assert "error" not in again and "unreadable now" in again["source"]
    assert again["candidates"] == first["candidates"] and again["tasks"] == first["tasks"]
