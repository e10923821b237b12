"""A multi-worker probe is one Ray Train run (TorchTrainer, 2 CPU workers here): real local Ray,
real DeepSpeed on gloo, a tiny model; rank 0's result is the probe's, with its accounting; a
failed or timed-out Train run is a failed attempt with a one-line reason that releases its
placement group, and nothing finished is lost."""

from __future__ import annotations

import json
import math

import pytest
import yaml

from prehoc_ray.execution.resources import ProbeResources

ray = pytest.importorskip("ray")

TWO_CPU_WORKERS = ProbeResources(num_cpus=1.0, num_gpus=0.0, ranks=2)

REAL = {
    "name": "train-probe",
    "tasks": [{"name": "copy", "builtin": "synthetic_copy", "max_train_examples": 256, "eval_examples": 16}],
    "models": [
        {
            "name": "tiny",
            "tiny": {
                "arch": "llama",
                "hidden_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "vocab_size": 384,
            },
        }
    ],
    "configs": [{"name": "default", "learning_rate": 0.01, "batch_size": 4, "max_seq_len": 32, "full_steps": 200}],
    "probe": {"backend": "deepspeed", "precision": "fp32", "eval_every": 5, "num_cpus": 1},
    "budget": {"probe_seconds": 60},
}


def _order(cid: str, start: int, target: int, seed: int = 0) -> dict:
    return {
        "probe_id": f"r0000|{cid}|s{seed}|{start}-{target}",
        "round": 0,
        "candidate": cid,
        "seed": seed,
        "start_step": start,
        "target_step": target,
    }


def _load(tmp_path, raw: dict):
    from prehoc_ray.spec.job import load_job

    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(raw))
    return load_job(path)


def _probe(spec, run_dir, order, attempt=1, sim=None, timeout_s=300.0) -> dict:
    from prehoc_ray.execution.probes import spec_payload
    from prehoc_ray.execution.train_probe import train_probe_task

    return ray.get(
        train_probe_task.remote(spec_payload(spec), str(run_dir), order, attempt, TWO_CPU_WORKERS, sim, timeout_s),
        timeout=600,
    )


@pytest.mark.slow
def test_probe_on_torch_trainer_with_two_cpu_workers(ray_session, tmp_path):
    from prehoc_ray.execution.ledger import read_runs
    from prehoc_ray.execution.train_probe import run_name
    from prehoc_ray.io.run_dir import TRAIN_RUNS
    from prehoc_ray.io.store import ResultStore

    spec = _load(tmp_path, REAL)
    cid = spec.candidate_specs()[0].id
    run = tmp_path / "run"
    first, ext = _order(cid, 0, 5), _order(cid, 5, 10)
    a = _probe(spec, run, first)
    assert a["status"] == "finished", a.get("reason")
    b = _probe(spec, run, ext)  # a second Train run continues the first one's checkpoint
    assert b["status"] == "finished", b.get("reason")
    assert b["resumed_from"] == 5 and b["steps_run"] == 5 and [r["step"] for r in b["rows"]] == [10.0]
    # both ranks trained in one process group Ray Train made: the checkpoint is of a 2-rank world
    meta = json.loads(next((run / "checkpoints").rglob("meta.json")).read_text())
    assert meta["fingerprint"]["world_size"] == 2 and meta["fingerprint"]["backend"] == "deepspeed"
    assert meta["step"] == 10 and [r["step"] for r in meta["rows"]] == [5, 10]
    # rank 0 alone wrote the points and events: one point per evaluation, not one per rank
    store = ResultStore(run)
    pts = store.read_points(finished_only=True).to_pylist()
    assert sorted(p["step"] for p in pts) == [5, 10] and all(math.isfinite(p["eval_loss"]) for p in pts)
    assert store.finished_probe_ids() == {first["probe_id"], ext["probe_id"]}
    # the accounting of a single-process probe: cost = runner seconds less set-up, on both devices
    runs = read_runs(run)
    assert len(runs) == 2 and all(r["status"] == "finished" and r["devices"] == 2.0 for r in runs)
    for r in runs:
        assert r["cost_s"] > 0 and r["setup_s"] >= 0
        assert r["cost_s"] + r["setup_s"] == pytest.approx(2.0 * r["runner_s"], rel=1e-6)
    # each attempt is its own Train run, stored inside the run directory
    assert (run / TRAIN_RUNS / run_name(first, 1)).is_dir() and (run / TRAIN_RUNS / run_name(ext, 1)).is_dir()


@pytest.mark.slow
def test_failed_train_runs_are_failed_probes_and_lose_nothing(ray_session, tmp_path):
    from prehoc_ray.execution.ledger import FINAL_PREFIX
    from prehoc_ray.io.store import ResultStore
    from prehoc_ray.spec.job import load_job
    from tests.execution.conftest import JOBS

    spec = load_job(JOBS / "simulated.yaml")
    cids = [c.id for c in spec.candidate_specs()]
    run = tmp_path / "run"
    done = _order(cids[0], 0, 50)
    sim = {"failures": [{"match": cids[1], "kind": "crash"}, {"match": cids[2], "kind": "input"}]}
    ok = _probe(spec, run, done, sim=sim)
    assert ok["status"] == "finished" and len(ok["rows"]) == 5
    # both workers die (os._exit): Ray Train sees the worker group fail, the probe fails, retryable;
    # which rank's death Ray reports first is a race (rank 1's health check was seen to win)
    crash = _probe(spec, run, _order(cids[1], 0, 50), sim=sim)
    assert crash["status"] == "failed" and crash["retryable"] and crash["reason"].startswith("worker died (rank ")
    assert (
        "\n" not in crash["reason"] and crash["cost_s"] > 0 and crash["probe_id"] == _order(cids[1], 0, 50)["probe_id"]
    )
    # a probe's own failure raised on the workers comes back as rank 0's result: not retried
    bad = _probe(spec, run, _order(cids[2], 0, 50), sim=sim)
    assert bad["status"] == "failed" and not bad["retryable"] and bad["reason"].startswith(FINAL_PREFIX)
    assert "\n" not in bad["reason"]
    # past its timeout the run aborts itself: a timed-out attempt, its workers' CPUs given back
    slow = _probe(spec, run, _order(cids[3], 0, 50), sim={"sleep_s": 300}, timeout_s=30.0)
    assert slow["status"] == "failed" and slow["retryable"] and slow["reason"] == "timed out after 30s"
    assert 30 <= slow["wall_s"] < 90 and slow["cost_s"] == pytest.approx(2.0 * slow["wall_s"])
    from ray.util import placement_group_table

    assert {p["state"] for p in placement_group_table().values()} == {"REMOVED"}
    store = ResultStore(run)
    assert store.finished_probe_ids() == {done["probe_id"]}
    assert len(store.read_points(finished_only=True)) == 5
