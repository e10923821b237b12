"""The Python API: what a notebook user imports instead of the CLI.

    from prehoc_ray import load_job, run, analyze_curves, read_plan, Engine, EngineSettings

- `load_job(path)`: a validated job spec (pydantic), as `prehoc-ray validate` reads it.
- `run(job, out, address=None, resume=False)`: the whole job (embedded local Ray when no
  address), as `prehoc-ray run`; returns the RunResult (engine, candidate rows, timings).
- `analyze_curves(path, depth=None, **settings)`: predictions and the risk decomposition of
  recorded curves, as `prehoc-ray analyze` (without writing files).
- `read_plan(run_dir)` / `read_plan_pandas(run_dir)`: a run directory's plan.parquet.
- `Engine`, `EngineSettings`, `CandidateInfo`, `ProbeOrder`: the ask/tell allocator, to drive
  with your own probes:

    eng = Engine([CandidateInfo("t:a", "t", horizon=1000, prior_cost_per_step=0.01)],
                 EngineSettings(budget=50.0, seeds=2, eval_every=10, initial_depth=30))
    while orders := eng.next_round():
        for o in orders:
            rows, cost = my_probe(o)  # [{"step": s, "value": v}, ...], device-seconds
            eng.tell(o, rows, cost)
    eng.summary()  # one row per candidate: prediction, interval, regime, p_best, stop reason

Heavy imports (ray, torch, pyarrow) happen inside the functions that need them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from prehoc_ray.core.engine import CandidateInfo, Engine, EngineSettings, ProbeOrder

if TYPE_CHECKING:
    import pandas
    import pyarrow

    from prehoc_ray.core.analysis import AnalysisResult
    from prehoc_ray.execution.driver import RunResult
    from prehoc_ray.spec.job import JobSpec

__all__ = [
    "CandidateInfo",
    "Engine",
    "EngineSettings",
    "ProbeOrder",
    "analyze_curves",
    "load_job",
    "read_plan",
    "read_plan_pandas",
    "run",
]


def load_job(path: str | Path) -> JobSpec:
    """A job spec from YAML; raises SpecError with one line per problem (field and expectation)."""
    from prehoc_ray.spec.job import load_job as _load

    return _load(path)


def run(
    job: JobSpec | str | Path,
    out: str | Path,
    *,
    address: str | None = None,
    resume: bool = False,
    **driver_options: Any,
) -> RunResult:
    """Run a job: probes, allocation, plan and report in `out` (see `prehoc-ray run`)."""
    from prehoc_ray.execution.driver import run_job

    spec = load_job(job) if isinstance(job, (str, Path)) else job
    spec_path = Path(job) if isinstance(job, (str, Path)) else None
    return run_job(spec, out, address=address, resume=resume, spec_path=spec_path, **driver_options)


def analyze_curves(trajectories: str | Path, depth: float | None = None, **settings: Any) -> AnalysisResult:
    """Predictions (`.predictions`) and fitted units (`.units`, `.decomposition_rows()`) of a
    trajectory table (CSV/Parquet/JSONL: candidate, step, value[, seed, group, final, horizon,
    static_*]), using only steps <= depth when given. settings: AnalysisSettings fields."""
    from prehoc_ray.core.analysis import AnalysisSettings, analyze
    from prehoc_ray.io import read_trajectories

    obs = read_trajectories(trajectories).to_observations()
    return analyze(obs, depth, AnalysisSettings(**settings))


def read_plan(run_dir: str | Path) -> pyarrow.Table:
    """plan.parquet of a finished run: one row per candidate, decision and reason included."""
    import pyarrow.parquet as pq

    from prehoc_ray.io.run_dir import RunDir

    path = RunDir(run_dir).plan_parquet
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no plan in this run directory (is the run finished? `prehoc-ray report` "
            "rebuilds it from candidates.parquet)"
        )
    return pq.read_table(path)


def read_plan_pandas(run_dir: str | Path) -> pandas.DataFrame:
    """read_plan as a pandas DataFrame (needs pandas installed)."""
    return read_plan(run_dir).to_pandas()
