"""`prehoc-ray run JOB.yaml [--address ADDR] [--out DIR] [--resume]`: probe a portfolio on Ray.

Connects to the Ray cluster at ADDR (else the spec's cluster.address, else RAY_ADDRESS), or
starts an embedded local Ray; runs the allocation loop (prehoc_ray.execution.driver) and
leaves in DIR (default runs/<job name>): the result store (points/, probes/), static.parquet,
candidates.parquet, spend.parquet, manifest.json, job.yaml, the plan (plan.parquet, plan.json)
and the report (report.html, report.md, plots/).

Kill it at any point and run it again with --resume: nothing finished is run twice and the
decisions are the ones an uninterrupted run reaches.

Exit codes: 0 success; 2 bad input (spec, paths, a run directory that belongs to another spec
or already holds a run), one line naming the field or path; 1 a failure the message explains
(Ray unreachable, no node can run a probe, ...).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import typer

from prehoc_ray.cli import EXIT_BAD_INPUT, EXIT_FAILURE, app
from prehoc_ray.cli.analyze import _OneLineErrors  # usage errors as one line, exit 2, like every command

DEBUG_ENV = "PREHOC_RAY_DEBUG"
# Test hook for backend: simulated (JSON): {"sleep_s": seconds per probe, "failures": [...]}
SIM_ENV = "PREHOC_SIM_OPTIONS"


def _fail(message: str, code: int) -> None:
    typer.echo(f"error: {' '.join(str(message).split())}", err=True)
    raise typer.Exit(code)


@app.command("run", cls=_OneLineErrors)
def run_cmd(
    spec_path: Path = typer.Argument(..., metavar="JOB.yaml", help="The job spec (see jobs/)."),
    address: str | None = typer.Option(
        None,
        "--address",
        help="Ray cluster address (GCS HOST:PORT or 'auto'); "
        "default: the spec's cluster.address, RAY_ADDRESS, else an embedded local Ray.",
    ),
    out: Path | None = typer.Option(None, "--out", help="Run directory (default runs/<job name>)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its result store."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress output (the summary is still printed)."),
) -> None:
    """Probe every candidate on Ray, spend the budget where it removes the most risk, write the plan."""
    from prehoc_ray.cli.validate import check_paths
    from prehoc_ray.spec.job import SpecError, load_job

    try:
        spec = load_job(spec_path)
    except SpecError as exc:
        _fail("; ".join(str(exc).splitlines()), EXIT_BAD_INPUT)
    problems = [p for p in check_paths(spec) if p.error]
    if problems:
        _fail("; ".join(p.line(spec_path) for p in problems), EXIT_BAD_INPUT)
    sim = None
    if os.environ.get(SIM_ENV):
        try:
            sim = json.loads(os.environ[SIM_ENV])
        except json.JSONDecodeError as exc:
            _fail(f"{SIM_ENV}: not JSON ({exc})", EXIT_BAD_INPUT)
    run_dir = out or Path("runs") / spec.name
    _check_out(run_dir, spec, resume)

    # Ray (and torch) are imported only now: `prehoc-ray --help` stays fast.
    from prehoc_ray.execution.cluster import ClusterError
    from prehoc_ray.execution.driver import Driver, InfeasibleError, RunDirError
    from prehoc_ray.execution.progress import Progress
    from prehoc_ray.io.errors import ManifestError

    progress = Progress(spec.budget.probe_seconds, len(spec.candidate_specs()), quiet=quiet)
    try:
        driver = Driver(spec, run_dir, spec_path=spec_path, resume=resume, address=address, sim=sim, progress=progress)
    except ValueError as exc:  # a resource request Ray cannot express (probe.num_gpus 1.5, ...)
        _fail(str(exc), EXIT_BAD_INPUT)
    try:
        result = driver.run()
    except (RunDirError, ManifestError) as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    except (ClusterError, InfeasibleError) as exc:
        _fail(str(exc), EXIT_FAILURE)
    except KeyboardInterrupt:
        _fail(f"interrupted; continue with: prehoc-ray run {spec_path} --out {run_dir} --resume", EXIT_FAILURE)
    except Exception as exc:  # one line, unless debugging
        if os.environ.get(DEBUG_ENV):
            raise
        _fail(
            f"{type(exc).__name__}: {exc} (set {DEBUG_ENV}=1 for the traceback; --resume continues the run)",
            EXIT_FAILURE,
        )
    _summary(result, spec)


def _check_out(run_dir: Path, spec, resume: bool) -> None:
    """The run directory's state, before Ray and torch are imported (seconds, hundreds of MB):
    a bad --out is one line and exit 2 at once. The driver checks the same again."""
    from prehoc_ray.io.errors import ManifestError
    from prehoc_ray.io.manifest import RunManifest, spec_hash

    if run_dir.exists() and not run_dir.is_dir():
        _fail(f"--out {run_dir}: exists and is not a directory", EXIT_BAD_INPUT)
    try:
        existing = RunManifest.load(run_dir)
    except ManifestError as exc:
        _fail(str(exc), EXIT_BAD_INPUT)
    if existing is None:
        return
    if not resume:
        _fail(
            f"{run_dir}: already holds a run (manifest.json); pass --resume to continue it, or choose another --out",
            EXIT_BAD_INPUT,
        )
    if existing.spec_hash != spec_hash(spec):
        _fail(
            f"{RunManifest.path(run_dir)}: this run directory belongs to spec {existing.spec_hash[:12]}, the spec given "
            f"hashes to {spec_hash(spec)[:12]}; --resume needs the same spec (use a new --out to run this one)",
            EXIT_BAD_INPUT,
        )


def _truth_lines(run_dir: Path) -> list[str]:
    """plan.json's comparison with the recorded truth (plan/truth.py), as the console shows it."""
    import json

    from prehoc_ray.io.run_dir import PLAN_JSON

    try:
        rec = json.loads((run_dir / PLAN_JSON).read_text()).get("recorded_truth") or {}
    except (OSError, ValueError):
        return []
    if "error" in rec:
        return [f"recorded truth not compared: {rec['error']}"]
    return [f"against the recorded truth ({rec.get('source')}):", *(f"  {line}" for line in rec.get("lines", []))]


def _summary(result, spec) -> None:
    rows = sorted(result.candidates, key=lambda r: r["candidate"])
    eng = result.engine
    setup = sum(float(r.get("setup_s") or 0.0) for r in rows)
    lines = [
        f"job {spec.name}: spent {eng.spent:.1f} of {spec.budget.probe_seconds:g} device-seconds in {result.rounds} "
        f"round(s); {result.submitted} probe attempt(s) run here, {result.reused} answered by the store, "
        f"{result.failed_attempts} failed attempt(s); wall {result.wall_s:.1f}s"
        + (f"; one-time set-up {setup:.1f} device-seconds, not charged to the budget" if setup > 0 else "")
    ]
    width = max((len(r["candidate"]) for r in rows), default=10)
    for r in rows:
        pred = r["predicted_final"]
        sd = r["predicted_std"]
        p = f"{pred:.3f} +/- {sd:.3f}" if sd == sd else (f"{pred:.3f}" if pred == pred else "n/a")
        lines.append(
            f"  {r['candidate']:<{width}}  {r['regime']:<17}  {p:<17}  probe {r['probe_steps']:>5} steps  "
            f"{r['probe_cost_s']:8.1f}s  {r['stop_reason']}"
        )
    lines += _truth_lines(result.run_dir) if result.plan_written and spec.truth else []
    lines.append(f"outputs in {result.run_dir}" + ("" if result.plan_written else " (no plan written)"))
    typer.echo("\n".join(lines))
    sys.stdout.flush()
