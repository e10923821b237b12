"""Pieces of the execution layer on their own: resource shapes, feasibility, progress output,
metric names (exported by the session's Ray and charted by the Grafana dashboard)."""

from __future__ import annotations

import io
import json
import re
import time
import urllib.request

import pytest

from tests.execution.conftest import REPO


def test_probe_resource_shapes():
    from prehoc_ray.execution.resources import probe_resources
    from prehoc_ray.spec.candidate import ProbeSettings

    cpu = probe_resources(ProbeSettings(num_cpus=2))
    assert cpu.task_options() == {"num_cpus": 2.0} and cpu.devices == 2.0 and cpu.device_kind == "CPU"
    frac = probe_resources(ProbeSettings(num_gpus=0.25))
    assert frac.task_options() == {"num_cpus": 1.0, "num_gpus": 0.25} and frac.devices == 0.25 and not frac.gang
    gang = probe_resources(ProbeSettings(num_gpus=4, num_cpus=2))
    assert gang.gang and gang.ranks == 4 and gang.devices == 4.0 and gang.device_kind == "GPU"
    assert gang.bundles() == [{"CPU": 2.0, "GPU": 1.0}] * 4
    with pytest.raises(ValueError, match="probe.num_gpus"):
        probe_resources(ProbeSettings(num_gpus=1.5))


def test_infeasible_requests_are_named_not_waited_for():
    from prehoc_ray.execution.resources import ProbeResources, infeasible_reason

    nodes = [{"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}}, {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
             {"Alive": False, "Resources": {"CPU": 8.0, "GPU": 8.0}}]
    assert infeasible_reason(ProbeResources(1.0, 0.5), nodes) is None
    assert infeasible_reason(ProbeResources(1.0, 1.0), nodes) is None
    # a 2-GPU gang is STRICT_PACK: two 1-GPU nodes do not make it feasible, a dead 8-GPU node neither
    why = infeasible_reason(ProbeResources(1.0, 1.0, ranks=2), nodes)
    assert why and "2 ranks" in why and "8 CPU/1 GPU" in why
    assert "no alive node" in infeasible_reason(ProbeResources(1.0, 0.0), [])


def test_progress_without_a_terminal_is_plain_log_lines():
    from prehoc_ray.execution.progress import Progress

    buf = io.StringIO()
    with Progress(100.0, 4, stream=buf, log_every_s=0) as p:
        p.update(round=2, spent=12.5, finished=7, running=2, settled=1)
        p.log("probe x failed")
    out = buf.getvalue()
    assert "\x1b[" not in out  # no terminal control codes
    assert "round 2: spent 12.5/100.0 device-s, probes 7 finished" in out and "1/4 candidates settled" in out
    assert "probe x failed" in out


def test_progress_on_a_terminal_is_a_rich_bar():
    from prehoc_ray.execution.progress import Progress

    buf = io.StringIO()
    with Progress(100.0, 4, stream=buf, rich=True) as p:
        p.update(round=1, spent=50.0, finished=3)
    out = buf.getvalue()
    assert "budget" in out and "50/100" in out and "probes 3 done" in out


def test_grafana_dashboard_charts_the_exported_metrics():
    from prehoc_ray.execution.metrics import METRIC_NAMES

    dash = json.loads((REPO / "cluster" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    used = set()
    for e in exprs:
        used |= set(re.findall(r"\bray_(prehoc_[a-z_]+?)(?:_total|_bucket|_sum|_count)?\b(?=[{\[)\s,]|$)", e))
    assert used == set(METRIC_NAMES), used ^ set(METRIC_NAMES)
    tags = set(re.findall(r"by \(([^)]*)\)", " ".join(exprs)))
    assert all(set(t.replace(" ", "").split(",")) <= {"job", "task", "model", "config", "regime", "le"} for t in tags)


def test_metrics_reach_rays_prometheus_endpoint(sim_run):
    """The run's metrics, with Ray's ray_ prefix, on this node's metrics export port."""
    import ray

    port = ray._private.worker.global_worker.node.metrics_export_port
    want = {"ray_prehoc_probes_finished_total", "ray_prehoc_budget_spent_seconds", "ray_prehoc_candidates",
            "ray_prehoc_candidate_risk_intrinsic", "ray_prehoc_candidate_risk_optimization"}
    seen: set[str] = set()
    # Ray's metrics agent exports every few seconds; on a loaded 2-core machine it lags: a wait, not a target.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
        except OSError:
            text = ""
        seen = {m for m in want if re.search(rf"^{m}\{{", text, re.M)}
        if seen == want:
            break
        time.sleep(2)
    assert seen == want, want - seen
    assert re.search(r'ray_prehoc_candidates\{[^}]*regime="Static-Sufficient"', text)
