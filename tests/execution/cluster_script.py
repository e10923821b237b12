"""Multi-node runs on one machine (ray.cluster_utils.Cluster), in their own process because a
process holds one Ray connection and the test session already has one.

    python tests/execution/cluster_script.py OUT_DIR    -> OUT_DIR/result.json

One cluster: a CPU-only head (the driver), 3 nodes with 1 logical GPU each, 1 node with 2.
1. multi-GPU probes: probes ask for num_gpus: 2 -> one Ray Train run of two workers, only on
   the 2-GPU node, its resources released after each probe.
2. fractional GPUs: probes ask for 0.5 GPU, so a node holds two and the rest spread; after
   some probes finished, a 1-GPU node is removed: its probes fail over, its actors restart
   elsewhere, the run ends in a plan.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray
import yaml
from ray.cluster_utils import Cluster

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from prehoc_ray.execution.driver import Driver  # noqa: E402
from prehoc_ray.execution.ledger import read_runs  # noqa: E402
from prehoc_ray.io.store import ResultStore  # noqa: E402
from prehoc_ray.spec.job import JobSpec  # noqa: E402

REMOVE_AFTER = 12


def spec(**over) -> JobSpec:
    raw = yaml.safe_load((REPO / "jobs" / "simulated.yaml").read_text())
    for k, v in over.items():
        raw[k] = {**raw.get(k, {}), **v} if isinstance(v, dict) else v
    return JobSpec.model_validate(raw)


def make_cluster():
    """A CPU-only head (the driver), 3 nodes with 1 logical GPU each, 1 node with 2."""
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "num_gpus": 0})
    singles = [cluster.add_node(num_cpus=2, num_gpus=1) for _ in range(3)]
    double = cluster.add_node(num_cpus=2, num_gpus=2)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    return cluster, singles, double


SMALL = {
    "tasks": [
        {"name": "copy", "builtin": "synthetic_copy"},
        {"name": "noisy", "builtin": "tweet_sentiment", "label_noise": 0.6},
    ]
}


def fractional(cluster, singles, double, out: Path) -> dict:
    victim = singles[-1]
    finished: list[str] = []
    removed = threading.Event()
    finished_at_removal: set[str] = set()

    def on_end(info: dict) -> None:
        if info.get("status") == "finished":
            finished.append(info["probe_id"])
        if len(finished) >= REMOVE_AFTER and not removed.is_set():
            removed.set()
            finished_at_removal.update(ResultStore(out / "frac").finished_probe_ids())
            cluster.remove_node(victim, allow_graceful=False)

    s = spec(
        name="frac",
        **SMALL,
        probe={"num_gpus": 0.5, "num_cpus": 1},
        budget={"probe_seconds": 12.0},
        allocation={"max_concurrent_probes": 8},
    )
    t0 = time.time()
    res = Driver(s, out / "frac", sim={"sleep_s": 0.3}, on_probe_end=on_end).run()
    runs = read_runs(out / "frac")
    store = ResultStore(out / "frac")
    return {
        "wall_s": time.time() - t0,
        "gpu_nodes": sorted(n.node_id for n in singles + [double]),
        "victim": victim.node_id,
        "removed": removed.is_set(),
        "finished_at_removal": sorted(finished_at_removal),
        "finished_at_end": sorted(store.finished_probe_ids()),
        "node_of_finished": {r["probe_id"]: r["node_id"] for r in runs if r["status"] == "finished"},
        "failed_reasons": [r["reason"] for r in runs if r["status"] == "failed"],
        "history": [h["probe_id"] for h in res.engine.spend_log],
        "settled": res.engine.finished,
        "plan": (out / "frac" / "plan.json").is_file(),
        "candidates": (out / "frac" / "candidates.parquet").is_file(),
    }


def gang(double, out: Path) -> dict:
    s = spec(
        name="gang",
        tasks=[{"name": "copy", "builtin": "synthetic_copy"}],
        models=[{"name": "tiny-a", "tiny": {"arch": "llama"}}],
        probe={"num_gpus": 2, "num_cpus": 1},
        budget={"probe_seconds": 0.7},
        allocation={"max_concurrent_probes": 2, "seeds": 2, "initial_steps": 30},
    )
    t0 = time.time()
    res = Driver(s, out / "gang", sim={"sleep_s": 0.1}).run()
    runs = read_runs(out / "gang")
    from ray.util import placement_group_table

    pgs = placement_group_table()
    return {
        "wall_s": time.time() - t0,
        "node": double.node_id,
        "nodes_of_finished": sorted({r["node_id"] for r in runs if r["status"] == "finished"}),
        "devices": sorted({r["devices"] for r in runs if r["status"] == "finished"}),
        "finished": sum(r["status"] == "finished" for r in runs),
        "failed_reasons": [r["reason"] for r in runs if r["status"] == "failed"],
        "pg_states": sorted({p["state"] for p in pgs.values()}),
        "pg_strategies": sorted({p["strategy"] for p in pgs.values()}),
        "settled": res.engine.finished,
    }


if __name__ == "__main__":
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    cluster, singles, double = make_cluster()
    try:
        result = {"start_s": time.time() - t0}
        result["gang"] = gang(double, out)
        result["fractional"] = fractional(cluster, singles, double, out)
    finally:
        ray.shutdown()
        cluster.shutdown()
    (out / "result.json").write_text(json.dumps(result, indent=1))
