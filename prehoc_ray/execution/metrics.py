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
    prehoc_candidate_risk_intrinsic{task,model,config}     gauge, L_int (set by the candidate's actor)
    prehoc_candidate_risk_optimization{task,model,config}  gauge, K c^-alpha at the depth reached
"""

from __future__ import annotations

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
)


def candidate_gauges() -> tuple[Gauge, Gauge]:
    intrinsic = Gauge("prehoc_candidate_risk_intrinsic",
                      description="Intrinsic floor L_int of the predicted risk (metric units squared).",
                      tag_keys=CANDIDATE_TAGS)
    optimization = Gauge("prehoc_candidate_risk_optimization",
                         description="Optimization part K c^-alpha of the predicted risk at the probe depth reached.",
                         tag_keys=CANDIDATE_TAGS)
    return intrinsic, optimization


class RunMetrics:
    """The driver's metrics. Best effort: a metrics failure never stops a run."""

    def __init__(self, job: str) -> None:
        self.job = job
        self.ok = True
        try:
            self.running = Gauge("prehoc_probes_running", description="Probes running now.", tag_keys=PROBE_TAGS)
            self.finished = Counter("prehoc_probes_finished", description="Probes finished.", tag_keys=PROBE_TAGS)
            self.failed = Counter("prehoc_probes_failed", description="Probe attempts that failed.", tag_keys=PROBE_TAGS)
            self.seconds = Histogram("prehoc_probe_seconds", description="Wall seconds of a finished probe.",
                                     boundaries=PROBE_SECONDS_BOUNDARIES, tag_keys=PROBE_TAGS)
            self.spent = Gauge("prehoc_budget_spent_seconds", description="Probe budget charged (device-seconds).",
                               tag_keys=(JOB_TAG,))
            self.left = Gauge("prehoc_budget_left_seconds", description="Probe budget left (device-seconds).",
                              tag_keys=(JOB_TAG,))
            self.regimes = Gauge("prehoc_candidates", description="Candidates per regime.", tag_keys=(JOB_TAG, "regime"))
            self.settled = Gauge("prehoc_candidates_settled", description="Candidates that stopped, with a reason.",
                                 tag_keys=(JOB_TAG,))
        except Exception:
            self.ok = False
        self._running: _Count = _Count()

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
