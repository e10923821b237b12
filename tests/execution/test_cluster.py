"""Several Ray nodes on one machine (ray.cluster_utils.Cluster, logical GPUs): fractional-GPU
probes spread over the nodes, a node removed mid-run loses no finished probe and the run still
ends in a plan; a num_gpus: 2 probe runs as a STRICT_PACK gang on the one node that fits it."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import Counter

import pytest

from tests.execution.conftest import REPO, child_env


@pytest.fixture(scope="module")
def cluster_result(tmp_path_factory):
    out = tmp_path_factory.mktemp("cluster")
    done = subprocess.run(
        [sys.executable, str(REPO / "tests" / "execution" / "cluster_script.py"), str(out)],
        env=child_env(),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads((out / "result.json").read_text())


@pytest.mark.slow
def test_fractional_probes_spread_and_survive_a_node_removal(cluster_result):
    r = cluster_result["fractional"]
    assert r["removed"] and r["settled"]
    nodes = Counter(r["node_of_finished"].values())
    assert set(nodes) <= set(r["gpu_nodes"])  # GPU probes never ran on the CPU-only head
    assert len(nodes) >= 3, nodes  # spread: a node holds two 0.5-GPU probes, the rest go elsewhere
    # nothing finished before the removal was lost, nor run again
    assert set(r["finished_at_removal"]) <= set(r["finished_at_end"])
    assert len(r["history"]) == len(set(r["history"])) == len(r["finished_at_end"])
    assert all("worker died" in why for why in r["failed_reasons"])
    assert r["candidates"]
    assert r["plan"] or importlib.util.find_spec("prehoc_ray.plan") is None
    # after the removal, nothing more ran on the removed node
    assert nodes[r["victim"]] <= len(r["finished_at_removal"])


@pytest.mark.slow
def test_multi_gpu_probe_runs_as_a_strict_pack_gang(cluster_result):
    r = cluster_result["gang"]
    assert r["settled"] and r["finished"] >= 2 and not r["failed_reasons"]
    assert r["nodes_of_finished"] == [r["node"]]  # only the 2-GPU node holds the gang
    assert r["devices"] == [2.0]  # charged as 2 GPU-seconds per second
    assert r["pg_strategies"] == ["STRICT_PACK"] and r["pg_states"] == ["REMOVED"]  # released
