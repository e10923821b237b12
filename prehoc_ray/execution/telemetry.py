"""Ray metrics of a run (ray.util.metrics; Prometheus sees them with Ray's `ray_` prefix,
counters with a `_total` suffix). Tags stay low-cardinality: prehoc_job, task, model, config,
regime - never a probe id or a seed. cluster/grafana-dashboard.json charts exactly these names.

The run's name is the tag `prehoc_job`, not `job`: Prometheus sets `job` (and `instance`) on
every series it scrapes to the scrape job's name, and without `honor_labels` renames a `job`
label it finds to `exported_job` -- a dashboard grouping `by (job)` would group by scrape job.

    prehoc_probes_running{prehoc_job,task,model}          gauge
    prehoc_probes_finished_total{prehoc_job,task,model}   counter
    prehoc_probes_failed_total{prehoc_job,task,model}     counter (every failed attempt, retried or not)
    prehoc_probe_seconds{prehoc_job,task,model}           histogram of a finished probe's wall seconds
    prehoc_budget_spent_seconds{prehoc_job}               gauge, device-seconds charged
    prehoc_budget_left_seconds{prehoc_job}                gauge
    prehoc_candidates{prehoc_job,regime}                  gauge, candidates per regime
    prehoc_candidates_settled{prehoc_job}                 gauge, candidates that stopped (with a reason)
    prehoc_candidate_risk_intrinsic{task,model,config}     gauge, L_int
    prehoc_candidate_risk_optimization{task,model,config}  gauge, K c^-alpha at the depth reached

Every series is set by the driver, one process: the candidate gauges were set by each
candidate's actor until candidates shared a pool of slot actors (execution/actors.py); a slot
that served a candidate earlier would keep exporting its stale value beside the fresh one, and
Ray keeps the first of same-tagged gauges from different workers.
"""

from __future__ import annotations

import math
from collections import Counter as _Count

from ray.util.metrics import Counter, Gauge, Histogram

from prehoc_ray.types import Regime

JOB_TAG = "prehoc_job"  # the run's name; never Prometheus's own target label (see above)
PROBE_TAGS = (JOB_TAG, "task", "model")
CANDIDATE_TAGS = ("task", "model", "config")
PROBE_SECONDS_BOUNDARIES = [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600]

METRIC_NAMES = (
    "prehoc_probes_running",
    "prehoc_probes_finished",
    "prehoc_probes_failed",
    "prehoc_probe_seconds",
    "prehoc_budget_spent_seconds",
    "prehoc_budget_left_seconds",
    "prehoc_candidates",
    "prehoc_candidates_settled",
    "prehoc_candidate_risk_intrinsic",
    "prehoc_candidate_risk_optimization",
    "prehoc_slots_serving",
    "prehoc_slot_loads",
)


def optimization_risk(row: dict) -> float:
    """V_opt at the depth reached: K c^-alpha (NaN without a fit)."""
    K, alpha, c = row.get("K"), row.get("alpha"), row.get("probe_steps")
    try:
        if K is None or alpha is None or not c or not math.isfinite(K) or not math.isfinite(alpha):
            return float("nan")
        return float(K) * float(c) ** (-float(alpha))
    except (TypeError, ValueError):
        return float("nan")


def candidate_gauges() -> tuple[Gauge, Gauge]:
    intrinsic = Gauge(
        "prehoc_candidate_risk_intrinsic",
        description="Intrinsic floor L_int of the predicted risk (metric units squared).",
        tag_keys=CANDIDATE_TAGS,
    )
    optimization = Gauge(
        "prehoc_candidate_risk_optimization",
        description="Optimization part K c^-alpha of the predicted risk at the probe depth reached.",
        tag_keys=CANDIDATE_TAGS,
    )
    return intrinsic, optimization


class RunMetrics:
    """The driver's metrics. Best effort: a metrics failure never stops a run."""

    def __init__(self, job: str) -> None:
        self.job = job
        self.ok = True
        try:
            self.running = Gauge("prehoc_probes_running", description="Probes running now.", tag_keys=PROBE_TAGS)
            self.finished = Counter("prehoc_probes_finished", description="Probes finished.", tag_keys=PROBE_TAGS)
            self.failed = Counter(
                "prehoc_probes_failed", description="Probe attempts that failed.", tag_keys=PROBE_TAGS
            )
            self.seconds = Histogram(
                "prehoc_probe_seconds",
                description="Wall seconds of a finished probe.",
                boundaries=PROBE_SECONDS_BOUNDARIES,
                tag_keys=PROBE_TAGS,
            )
            self.spent = Gauge(
                "prehoc_budget_spent_seconds", description="Probe budget charged (device-seconds).", tag_keys=(JOB_TAG,)
            )
            self.left = Gauge(
                "prehoc_budget_left_seconds", description="Probe budget left (device-seconds).", tag_keys=(JOB_TAG,)
            )
            self.regimes = Gauge(
                "prehoc_candidates", description="Candidates per regime.", tag_keys=(JOB_TAG, "regime")
            )
            self.settled = Gauge(
                "prehoc_candidates_settled", description="Candidates that stopped, with a reason.", tag_keys=(JOB_TAG,)
            )
            self.slots_serving = Gauge(
                "prehoc_slots_serving",
                description="Slot actors holding a live candidate (at most the probe concurrency).",
                tag_keys=(JOB_TAG,),
            )
            self.slot_loads = Counter(
                "prehoc_slot_loads", description="Candidates loaded into a slot actor (switches).", tag_keys=(JOB_TAG,)
            )
            self.intrinsic, self.optimization = candidate_gauges()
        except Exception:
            self.ok = False
        self._running: _Count = _Count()
        self._risk: dict[str, tuple[float, float]] = {}  # candidate -> (L_int, V_opt) last set
        self._loads = 0  # slot loads already counted

    def _tags(self, task: str, model: str) -> dict[str, str]:
        return {JOB_TAG: self.job, "task": task, "model": model}

    def _safe(self, fn, *args, **kw) -> None:
        if not self.ok:
            return
        try:
            fn(*args, **kw)
        except Exception:
            pass

    def probe_started(self, task: str, model: str) -> None:
        self._running[(task, model)] += 1
        self._safe(self.running.set, self._running[(task, model)], tags=self._tags(task, model))

    def probe_ended(self, task: str, model: str, ok: bool, wall_s: float | None = None) -> None:
        self._running[(task, model)] = max(0, self._running[(task, model)] - 1)
        tags = self._tags(task, model)
        self._safe(self.running.set, self._running[(task, model)], tags=tags)
        if ok:
            self._safe(self.finished.inc, 1.0, tags=tags)
            if wall_s is not None:
                self._safe(self.seconds.observe, float(wall_s), tags=tags)
        else:
            self._safe(self.failed.inc, 1.0, tags=tags)

    def budget(self, spent: float, left: float) -> None:
        self._safe(self.spent.set, float(spent), tags={JOB_TAG: self.job})
        self._safe(self.left.set, max(0.0, float(left)), tags={JOB_TAG: self.job})

    def candidates(self, regimes: list[str], settled: int) -> None:
        counts = _Count(regimes)
        for r in Regime:
            self._safe(self.regimes.set, float(counts.get(r.value, 0)), tags={JOB_TAG: self.job, "regime": r.value})
        self._safe(self.settled.set, float(settled), tags={JOB_TAG: self.job})

    def slots(self, serving: int, loads: int) -> None:
        """The slot pool: how many slots hold a candidate now, and its loads so far (a running total)."""
        self._safe(self.slots_serving.set, float(serving), tags={JOB_TAG: self.job})
        if loads > self._loads:
            self._safe(self.slot_loads.inc, float(loads - self._loads), tags={JOB_TAG: self.job})
            self._loads = loads

    def candidate_risks(self, rows: list[dict], tags: dict[str, dict[str, str]]) -> None:
        """Each candidate's risk split after a refit (engine summary rows; `tags`: candidate ->
        task/model/config). Only changed values are set: settled candidates cost nothing."""
        for row in rows:
            cid = row["candidate"]
            L_int, v_opt = row.get("L_int"), optimization_risk(row)
            L_int = float(L_int) if L_int is not None else float("nan")
            new = (L_int, v_opt)
            old = self._risk.get(cid)
            if old is not None and all(a == b or (math.isnan(a) and math.isnan(b)) for a, b in zip(old, new)):
                continue
            self._risk[cid] = new
            if math.isfinite(L_int):
                self._safe(self.intrinsic.set, L_int, tags=tags[cid])
            if math.isfinite(v_opt):
                self._safe(self.optimization.set, v_opt, tags=tags[cid])
