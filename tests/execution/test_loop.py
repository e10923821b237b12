"""The Ray allocation loop against the simulated backend: same decisions as the in-process
reference loop, every output written, failures recorded and retried, resume re-runs nothing."""

from __future__ import annotations

import json
import math
import shutil
import time

import pyarrow.parquet as pq
import pytest

from tests.execution.conftest import JOBS

DECISION_COLUMNS = ("candidate", "regime", "probe_steps", "stop_reason")


def decisions(rows):
    return sorted(tuple(r[k] for k in DECISION_COLUMNS) for r in rows)


def test_ray_run_reaches_the_reference_decisions(sim_run, reference):
    assert sim_run.engine.finished
    assert decisions(sim_run.candidates) == decisions(reference.summary())
    assert sim_run.engine.spent == pytest.approx(reference.spent, rel=0, abs=1e-9)
    assert sim_run.engine.spent <= sim_run.engine.settings.budget
    assert [h["probe_id"] for h in sim_run.engine.spend_log] == [h["probe_id"] for h in reference.spend_log]
    # every candidate says why it stopped, Static-Sufficient and Noise-Dominant among them
    reasons = {r["candidate"]: r["stop_reason"] for r in sim_run.candidates}
    assert all(reasons.values())
    assert any(r.startswith("Static-Sufficient") for r in reasons.values())
    assert any(r.startswith("Noise-Dominant") for r in reasons.values())


def test_outputs_in_the_run_directory(sim_run, sim_spec):
    d = sim_run.run_dir
    cand = pq.read_table(d / "candidates.parquet").to_pylist()
    assert len(cand) == len(sim_spec.candidate_specs())
    for r in cand:
        for k in (
            "task",
            "model",
            "config",
            "full_steps",
            "full_cost_s",
            "gamma",
            "metric",
            "regime",
            "predicted_final",
            "L_int",
            "K",
            "alpha",
            "c_star",
            "stop_reason",
            "probe_cost_s",
            "cost_per_step_s",
        ):
            assert k in r
        assert r["full_cost_s"] == pytest.approx(r["train_cost_per_step_s"] * r["full_steps"])
        assert r["full_steps"] == 1000
    spend = pq.read_table(d / "spend.parquet").to_pylist()
    assert len(spend) == len(sim_run.engine.spend_log)
    assert spend[-1]["spent_s"] == pytest.approx(sim_run.engine.spent)
    assert all(s["node_id"] and s["wall_s"] is not None for s in spend)
    static = pq.read_table(d / "static.parquet")
    assert static.num_rows == len(cand) and any(c.startswith("static_") for c in static.column_names)
    manifest = json.loads((d / "manifest.json").read_text())
    assert manifest["status"] == "finished"
    assert (d / "job.yaml").read_text() == (JOBS / "simulated.yaml").read_text()
    assert (d / "state" / "candidates.parquet").is_file()


def test_every_point_is_in_the_store_with_its_probe_id(sim_run):
    from prehoc_ray.io.store import ResultStore

    store = ResultStore(sim_run.run_dir)
    pts = store.read_points(finished_only=True)
    finished = store.finished_probe_ids()
    assert set(pts.column("probe_id").to_pylist()) == finished
    assert len(finished) == len(sim_run.engine.spend_log)
    # one started and one finished event per probe, attempt 1, nothing retried
    events = store.read_probes().to_pylist()
    assert {e["attempt"] for e in events} == {1}
    assert sum(e["status"] == "started" for e in events) == len(finished)


def test_resume_of_a_finished_run_runs_nothing(sim_run, sim_spec, tmp_path):
    from prehoc_ray.execution.driver import Driver

    d = shutil.copytree(sim_run.run_dir, tmp_path / "copy")
    again = Driver(sim_spec, d, resume=True).run()
    assert again.submitted == 0
    assert again.reused == len(sim_run.engine.spend_log)
    assert decisions(again.candidates) == decisions(sim_run.candidates)
    assert again.engine.spent == sim_run.engine.spent


def test_run_dir_guards(sim_run, sim_spec, tmp_path):
    from prehoc_ray.execution.driver import Driver, RunDirError
    from prehoc_ray.io.errors import ManifestError

    d = shutil.copytree(sim_run.run_dir, tmp_path / "copy")
    with pytest.raises(RunDirError, match="--resume"):
        Driver(sim_spec, d).run()
    other = sim_spec.model_copy(update={"budget": sim_spec.budget.model_copy(update={"probe_seconds": 41.0})})
    with pytest.raises(ManifestError, match="belongs to spec"):
        Driver(other, d, resume=True).run()


def test_failed_probes_are_recorded_retried_and_never_stop_the_run(ray_session, sim_spec, tmp_path):
    """exception and NaN loss: retried and recovered; a worker that dies (os._exit): retried;
    a probe that keeps running out of memory: given up after max_retries, its candidate stops
    with the reason and the rest of the portfolio finishes."""
    from prehoc_ray.execution.driver import Driver
    from prehoc_ray.execution.ledger import read_runs
    from prehoc_ray.io.store import ResultStore

    sim = {
        "failures": [
            {"match": "r0000|copy:tiny-a|s0", "kind": "exception", "attempts": 1},
            {"match": "r0000|sentiment:tiny-a|s1", "kind": "nan", "attempts": 2},
            {"match": "r0000|copy:tiny-b|s2", "kind": "crash", "attempts": 1},
            {"match": "r0000|noisy:tiny-b|s0", "kind": "oom", "attempts": 99},
        ]
    }
    seen = []
    res = Driver(sim_spec, tmp_path / "run", sim=sim, on_probe_end=seen.append).run()
    assert res.engine.finished
    store = ResultStore(tmp_path / "run")
    events = store.read_probes().to_pylist()
    failed = [e for e in events if e["status"] == "failed"]
    by_probe = {}
    for e in failed:
        by_probe.setdefault(e["probe_id"].split("|", 1)[1], []).append(e)
    assert [e["attempt"] for e in by_probe["copy:tiny-a|s0|0-50"]] == [1]
    assert "RuntimeError" in by_probe["copy:tiny-a|s0|0-50"][0]["reason"]
    assert [e["attempt"] for e in by_probe["sentiment:tiny-a|s1|0-50"]] == [1, 2]
    assert all("diverged" in e["reason"] for e in by_probe["sentiment:tiny-a|s1|0-50"])
    assert "worker died" in by_probe["copy:tiny-b|s2|0-50"][0]["reason"]
    oom = by_probe["noisy:tiny-b|s0|0-50"]
    assert [e["attempt"] for e in oom] == [1, 2, 3]  # max_retries = 2
    assert all("out of memory" in e["reason"] for e in oom)
    # retried probes finished with their last attempt; none counted twice
    finished = {e["probe_id"]: e for e in events if e["status"] == "finished"}
    assert finished["r0000|copy:tiny-a|s0|0-50"]["attempt"] == 2
    assert finished["r0000|sentiment:tiny-a|s1|0-50"]["attempt"] == 3
    assert finished["r0000|copy:tiny-b|s2|0-50"]["attempt"] == 2
    pts = store.read_points(finished_only=True).to_pylist()
    keys = [(p["probe_id"], p["step"]) for p in pts]
    assert len(keys) == len(set(keys))
    assert {p["attempt"] for p in pts if p["probe_id"] == "r0000|copy:tiny-a|s0|0-50"} == {2}
    # the give-up stops only its candidate, with the reason
    row = {r["candidate"]: r for r in res.candidates}["noisy:tiny-b"]
    assert row["stop_reason"].startswith("probe failed: out of memory")
    assert sum(1 for r in res.candidates if r["stop_reason"].startswith("probe failed")) == 1
    assert res.failed_attempts == 1 + 2 + 1 + 3
    runs = read_runs(tmp_path / "run")
    assert sum(r["status"] == "failed" for r in runs) == res.failed_attempts
    assert len([s for s in seen if s.get("status") == "failed"]) == res.failed_attempts

    # resuming this run does not retry the given-up probe again, nor anything finished
    again = Driver(sim_spec, tmp_path / "run", resume=True, sim=sim).run()
    assert again.submitted == 0
    assert decisions(again.candidates) == decisions(res.candidates)
    assert again.engine.spent == res.engine.spent


def test_a_restarted_slot_actor_reloads_its_candidate_from_the_store(sim_run, tmp_path):
    """A slot killed by Ray's kill comes back (max_restarts) serving the candidate it served,
    rebuilt from the store and the snapshot: same points, same fit, nothing replayed."""
    import ray

    from prehoc_ray.execution.actors import create_slot, slot_name
    from prehoc_ray.execution.ledger import candidate_points
    from prehoc_ray.io.store import ResultStore

    d = shutil.copytree(sim_run.run_dir, tmp_path / "copy")
    cid, tags = "copy:tiny-a", {"task": "copy", "model": "tiny-a", "config": "default"}
    a = create_slot(str(d), "restart-test", 2, "prehoc-actor-test", max_restarts=2)
    try:
        assert ray.get_actor(slot_name("restart-test", 2), namespace="prehoc-actor-test") is not None
        first = ray.get(a.state.remote(), timeout=60)
        assert first["candidate"] is None and first["points"] == 0  # a fresh slot serves nobody
        ray.get(a.load.remote("sentiment:tiny-b", {}), timeout=60)  # then another candidate: the last load counts
        ray.get(a.load.remote(cid, tags), timeout=60)
        before = ray.get(a.state.remote(), timeout=60)
        expected = candidate_points(ResultStore(d), cid)
        assert before["candidate"] == cid and before["name"] == "prehoc:restart-test:slot-2"
        assert before["points"] == sum(len(v) for v in expected.values()) > 0
        assert before["regime"] == {r["candidate"]: r for r in sim_run.candidates}[cid]["regime"]
        assert math.isfinite(before["L_int"]) and not before["restarted"]
        ray.kill(a, no_restart=False)  # Ray restarts it: __init__ runs again
        after = None
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:  # ray.kill is asynchronous: wait for the new process
            try:
                after = ray.get(a.state.remote(), timeout=30)
                if after["pid"] != before["pid"]:
                    break
            except ray.exceptions.RayActorError:
                pass
            time.sleep(0.5)
        assert after is not None and after["pid"] != before["pid"] and after["restarted"]
        assert after["candidate"] == cid and after["task"] == "copy"
        assert after["points"] == before["points"] and after["regime"] == before["regime"]
        assert after["depth"] == before["depth"] and after["L_int"] == before["L_int"]
    finally:
        ray.kill(a)
