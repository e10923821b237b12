"""Pieces of the execution layer on their own: resource shapes, feasibility, progress output,
metric names (exported by the session's Ray and charted by the Grafana dashboard)."""

from __future__ import annotations

import io
import json
import re
import time
import urllib.request

import pytest

from tests.execution.conftest import JOBS, REPO


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

    nodes = [
        {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
        {"Alive": True, "Resources": {"CPU": 8.0, "GPU": 1.0}},
        {"Alive": False, "Resources": {"CPU": 8.0, "GPU": 8.0}},
    ]
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


# Labels Prometheus itself puts on every series it scrapes with cluster/prometheus.yml: the
# target labels `job` and `instance`, and those its relabel_configs add. A scraped series' own
# label of the same name is renamed `exported_<name>` (honor_labels is off), so a dashboard that
# filters or groups by one of these sees the scrape target's value, never the run's.
PROMETHEUS_TARGET_LABELS = {"job", "instance"}


def prometheus_target_labels() -> set[str]:
    import yaml

    cfg = yaml.safe_load((REPO / "cluster" / "prometheus.yml").read_text())
    added = {
        r["target_label"] for j in cfg["scrape_configs"] for r in j.get("relabel_configs", []) if "target_label" in r
    }
    return PROMETHEUS_TARGET_LABELS | added


def dashboard_queries() -> list[tuple[str, set[str], set[str]]]:
    """(query, metrics it reads, labels it filters, groups, lists or names in a legend by) of
    every panel target and every label_values variable of the dashboard."""
    dash = json.loads((REPO / "cluster" / "grafana-dashboard.json").read_text())
    out = []
    for p in dash["panels"]:
        for t in p["targets"]:
            e, legend = t["expr"], t.get("legendFormat", "")
            labels = set()
            for by in re.findall(r"\bby \(([^)]*)\)", e):
                labels |= {x.strip() for x in by.split(",") if x.strip()}
            labels |= set(re.findall(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)\s*\"", e))
            labels |= set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend))
            out.append((e, set(re.findall(r"\bray_prehoc_\w+", e)), labels))
    for v in dash["templating"]["list"]:
        q = v.get("query")
        q = q.get("query", "") if isinstance(q, dict) else (q or "")
        m = re.fullmatch(r"label_values\((\w+),\s*(\w+)\)", q.strip())
        if m:
            out.append((q, {m.group(1)}, {m.group(2)}))
    return out


def test_grafana_dashboard_charts_the_exported_metrics():
    from prehoc_ray.execution.telemetry import METRIC_NAMES

    queries = dashboard_queries()
    used = set()
    for e, _, _ in queries:
        used |= set(re.findall(r"\bray_(prehoc_[a-z_]+?)(?:_total|_bucket|_sum|_count)?\b(?=[{\[)\s,]|$)", e))
    assert used == set(METRIC_NAMES), used ^ set(METRIC_NAMES)
    labels = set().union(*(ls for _, _, ls in queries))
    assert labels <= {"prehoc_job", "task", "model", "config", "regime", "le"}, labels
    clash = labels & prometheus_target_labels()
    assert not clash, f"the dashboard reads Prometheus's own target labels {clash}"


def scraped_series(text: str) -> dict[str, list[dict[str, str]]]:
    """Prometheus text exposition -> {metric: [label sets]}, with the labels renamed the way a
    scrape with cluster/prometheus.yml stores them (`job` -> `exported_job`, ...)."""
    target = prometheus_target_labels()
    out: dict[str, list[dict[str, str]]] = {}
    for m in re.finditer(r"^(\w+)\{(.*)\}\s+\S+", text, re.M):
        labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(2)))
        out.setdefault(m.group(1), []).append({(f"exported_{k}" if k in target else k): v for k, v in labels.items()})
    return out


def test_metrics_reach_rays_prometheus_endpoint(ray_session, sim_spec, tmp_path):
    """The run's metrics, with Ray's ray_ prefix, on this node's metrics export port."""
    import ray

    from prehoc_ray.execution.driver import Driver

    # A run of its own, scraped right after it: in a full test session the shared run (sim_run)
    # finished minutes earlier, and its gauges were no longer on the endpoint while its
    # counters were (seen twice on a loaded machine).
    Driver(sim_spec, tmp_path / "run", spec_path=JOBS / "simulated.yaml").run()

    port = ray._private.worker.global_worker.node.metrics_export_port
    want = {
        "ray_prehoc_probes_finished_total",
        "ray_prehoc_budget_spent_seconds",
        "ray_prehoc_candidates",
        "ray_prehoc_candidate_risk_intrinsic",
        "ray_prehoc_candidate_risk_optimization",
        "ray_prehoc_slots_serving",
        "ray_prehoc_slot_loads_total",
    }
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

    # The dashboard's queries against these series as Prometheus stores them: every label a query
    # filters or groups by is one the series carry (not one Prometheus sets), and the run's name
    # is the value of `prehoc_job`.
    series = scraped_series(text)
    job = sim_spec.name
    for name in ("ray_prehoc_budget_spent_seconds", "ray_prehoc_candidates", "ray_prehoc_probes_finished_total"):
        assert any(s.get("prehoc_job") == job for s in series[name]), (name, series[name][:2])
    checked = set()
    for query, metrics, labels in dashboard_queries():
        for metric in metrics & set(series):
            for s in series[metric]:
                missing = labels - set(s)
                assert not missing, (
                    f"{query!r}: {metric} as scraped has no label {sorted(missing)} (it has {sorted(s)})"
                )
            checked.add(metric)
    assert want <= checked, want - checked
