"""`prehoc-ray report DIR`: rebuild report.html / report.md (and plots/) from a run directory.

Works on a finished run (plan included: recomputed when plan.json is missing, with
--replan to recompute it from candidates.parquet and the run's job.yaml) and on an
interrupted one (no candidates.parquet: what the result store holds, marked incomplete).
"""

from __future__ import annotations

from pathlib import Path

import typer

from prehoc_ray.cli import EXIT_BAD_INPUT, EXIT_FAILURE, app


@app.command("report")
def report_cmd(
    run_dir: Path = typer.Argument(..., metavar="DIR", help="A run directory (the --out of `prehoc-ray run`)."),
    spec_path: Path = typer.Option(None, "--spec", help="Job spec to use instead of DIR/job.yaml."),
    replan: bool = typer.Option(
        False, "--replan", help="Recompute plan.parquet/plan.json from candidates.parquet first."
    ),
) -> None:
    """Rebuild the run report from a finished or interrupted run."""
    from prehoc_ray.spec.job import SpecError, load_job

    if not run_dir.is_dir():
        typer.echo(f"prehoc-ray: {run_dir}: not a directory", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    from prehoc_ray.io.run_dir import MARKERS, RunDir

    paths = RunDir(run_dir)
    if not paths.looks_like_a_run():
        typer.echo(f"prehoc-ray: {run_dir}: not a run directory (none of {', '.join(MARKERS)} in it)", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    bad = _unreadable_tables(run_dir)
    if bad:
        typer.echo(f"prehoc-ray: {bad}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT)
    spec = None
    if spec_path is not None or replan:
        path = spec_path or paths.job
        try:
            spec = load_job(path)
        except SpecError as exc:
            typer.echo(f"prehoc-ray: {exc}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None
    try:
        if replan:
            from prehoc_ray.plan import write_plan

            if not paths.candidates.is_file():
                typer.echo(
                    f"prehoc-ray: {run_dir}: no candidates.parquet (the run is incomplete): nothing to plan", err=True
                )
                raise typer.Exit(EXIT_FAILURE)
            write_plan(run_dir, spec)
        from prehoc_ray.report.run_report import write_report

        rep = write_report(run_dir, spec=spec)
    except typer.Exit:
        raise
    except Exception as exc:  # unreadable files: say which and why
        typer.echo(f"prehoc-ray: {run_dir}: cannot build the report: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(EXIT_FAILURE) from None
    state = "" if rep.complete else " (run incomplete: no candidates.parquet; the report shows what the store holds)"
    typer.echo(f"wrote {rep.html} and {rep.markdown}{state}")


def _unreadable_tables(run_dir: Path) -> str | None:
    """The first of the run's Parquet tables that cannot be read, as `FILE: why` (one line,
    none of its contents), before the report's plotting libraries load."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from prehoc_ray.io.run_dir import RunDir

    for path in (RunDir(run_dir).candidates, RunDir(run_dir).spend):  # what load_run reads without a fallback
        if not path.exists():
            continue
        try:
            if not path.is_file():
                return f"{path}: is not a file"
            pq.read_table(path)
        except (pa.ArrowException, OSError, ValueError) as exc:
            why = " ".join(str(exc).split())
            return f"{path}: not a readable Parquet table ({why[:160]})"
    return None
