"""A run directory's layout, owned here: every file and folder a run writes, by name.

    <run>/
      manifest.json        what ran, the spec's hash, status (io/manifest.py)
      job.yaml             the spec as run, env_vars values redacted (execution/driver.py)
      points/ probes/      the result store: probe points and probe events (io/store.py)
      probe_runs/          one record per probe attempt (execution/ledger.py)
      withdrawn/           orders a round ended without running (execution/ledger.py)
      checkpoints/         each probe's latest checkpoint (runner/checkpoint.py)
      state/candidates.parquet   the engine's view after each round
      static.parquet       static data-model signals per candidate
      candidates.parquet   engine summary + what the plan needs, per candidate
      spend.parquet        one row per finished probe, with the cumulative spend
      plan.parquet plan.json     the portfolio plan (plan/outputs.py)
      report.html report.md plots/   the report (report/run_report.py)

Modules name a file through `RunDir(path).<name>` or the constant beside it, never by
spelling it again: adding a file is one line here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"
JOB = "job.yaml"
POINTS = "points"
PROBES = "probes"
PROBE_RUNS = "probe_runs"
WITHDRAWN = "withdrawn"
CHECKPOINTS = "checkpoints"
STATE_CANDIDATES = "state/candidates.parquet"
STATIC = "static.parquet"
CANDIDATES = "candidates.parquet"
SPEND = "spend.parquet"
PLAN_PARQUET = "plan.parquet"
PLAN_JSON = "plan.json"
REPORT_HTML = "report.html"
REPORT_MD = "report.md"
PLOTS = "plots"
SLOTS = "state/slots"  # which candidate each slot actor serves (execution/actors.py)
TRAIN_RUNS = "train_runs"  # one Ray Train folder per multi-GPU probe attempt

# What only a run directory holds: `prehoc-ray report` refuses a folder with none of them.
MARKERS = (MANIFEST, CANDIDATES, POINTS, PROBES, JOB)


@dataclass(frozen=True)
class RunDir:
    """The paths of one run directory (nothing is created or read here)."""

    root: Path

    def __init__(self, root: str | Path) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST

    @property
    def job(self) -> Path:
        return self.root / JOB

    @property
    def points(self) -> Path:
        return self.root / POINTS

    @property
    def probes(self) -> Path:
        return self.root / PROBES

    @property
    def probe_runs(self) -> Path:
        return self.root / PROBE_RUNS

    @property
    def withdrawn(self) -> Path:
        return self.root / WITHDRAWN

    @property
    def checkpoints(self) -> Path:
        return self.root / CHECKPOINTS

    @property
    def slots(self) -> Path:
        return self.root / SLOTS

    @property
    def train_runs(self) -> Path:
        return self.root / TRAIN_RUNS

    @property
    def state_candidates(self) -> Path:
        return self.root / STATE_CANDIDATES

    @property
    def static(self) -> Path:
        return self.root / STATIC

    @property
    def candidates(self) -> Path:
        return self.root / CANDIDATES

    @property
    def spend(self) -> Path:
        return self.root / SPEND

    @property
    def plan_parquet(self) -> Path:
        return self.root / PLAN_PARQUET

    @property
    def plan_json(self) -> Path:
        return self.root / PLAN_JSON

    @property
    def report_html(self) -> Path:
        return self.root / REPORT_HTML

    @property
    def report_md(self) -> Path:
        return self.root / REPORT_MD

    @property
    def plots(self) -> Path:
        return self.root / PLOTS

    def looks_like_a_run(self) -> bool:
        """Whether anything only a run writes is there."""
        return any((self.root / m).exists() for m in MARKERS)
