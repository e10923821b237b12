"""`prehoc-ray history import`: past runs from where teams keep them, as a `history:` table.

    prehoc-ray history import SOURCE... --out FILE [--metric NAME] [--step KEY]
        [--group NAME | --group-by KEY] [--seed-key KEY] [--candidate-keys K1,K2]
        [--horizon T] [--map TARGET=COLUMN,...]

SOURCE: a Ray Tune experiment directory, a Hugging Face Trainer output directory (or a
directory of them), or a tracker export file (CSV/JSONL/Parquet); prefix `tune:`, `hf:` or
`tracker:` to say which. FILE: .parquet, .csv or .jsonl, by its suffix. One line per source
says what was read and what was skipped and why; bad input is one line and exit code 2.
How `final` and `horizon` are derived: prehoc_ray/io/history_assemble.py and README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from prehoc_ray.cli import app
from prehoc_ray.cli.analyze import BadInput, _OneLineErrors, one_line_errors

history_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Past fine-tunes, for a job's `history:`.")
app.add_typer(history_app, name="history")


def _keys(text: str | None, option: str) -> tuple[str, ...] | None:
    if text is None:
        return None
    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    if not keys:
        raise BadInput(f"{option}: expected config keys separated by commas, got {text!r}")
    return keys


def run_import(
    sources: list[str],
    out: Path,
    *,
    metric: str | None = None,
    step: str | None = None,
    group: str | None = None,
    group_by: str | None = None,
    seed_key: str | None = None,
    candidate_keys: str | None = None,
    horizon: float | None = None,
    column_map: list[str] | None = None,
    echo: Any = print,
) -> Path:
    """The command's work without the CLI: prints one line per source, writes `out`.

    Raises BadInput or TrajectoryError (HistoryImportError) on bad input."""
    import numpy as np

    from prehoc_ray.io import write_table
    from prehoc_ray.io.formats import detect_format
    from prehoc_ray.io.history_assemble import assemble
    from prehoc_ray.io.history_runs import ImportOptions, plural
    from prehoc_ray.io.history_sources import read_sources
    from prehoc_ray.io.history_tracker import parse_column_map

    detect_format(out)  # an --out we cannot write fails before any reading
    if out.is_dir():
        raise BadInput(f"--out: {out} is a directory; expected a file name ending in .parquet, .csv or .jsonl")
    options = ImportOptions(
        metric=metric,
        step_key=step,
        group=group,
        group_by=group_by,
        seed_key=seed_key,
        candidate_keys=_keys(candidate_keys, "--candidate-keys"),
        horizon=horizon,
        column_map=parse_column_map(column_map or []),
    )
    runs, reports = read_sources(sources, options)
    try:
        table = assemble(runs, options)
    finally:
        for report in reports:
            echo(report.line())
    write_table(table, out)
    cand = table.column("candidate").to_numpy(zero_copy_only=False)
    final = table.column("final").to_numpy(zero_copy_only=False)
    with_final = len(set(cand[np.isfinite(final.astype(float))].tolist()))
    groups = sorted(set(table.column("group").to_pylist()))
    statics = [c for c in table.column_names if c.startswith("static_")]
    echo(
        f"wrote {plural(table.num_rows, 'row')}, {plural(len(set(cand.tolist())), 'candidate')} ({with_final} with a final), "
        f"groups {', '.join(groups)}" + (f", static columns {', '.join(statics)}" if statics else "") + f" to {out}"
    )
    if with_final == 0:
        echo(
            "note: no run reached its horizon, so no row has a final: `prehoc-ray analyze` reads this file, a job's "
            "`history:` does not (give --horizon, or import the finished runs)"
        )
    return out


@history_app.command("import", cls=_OneLineErrors)
def import_command(
    sources: list[str] = typer.Argument(
        ...,
        metavar="SOURCE...",
        help="Ray Tune experiment dirs, Trainer output dirs, tracker exports (prefix tune:, hf:, tracker: to say which).",
        show_default=False,
    ),
    out: Path = typer.Option(
        ..., "--out", help="History table to write: .parquet, .csv or .jsonl.", show_default=False
    ),
    metric: str | None = typer.Option(
        None,
        "--metric",
        help="Metric to import: a Tune result key (acc), a Trainer log key (eval_accuracy); for a tracker export, the value column when --map has none.",
    ),
    step: str | None = typer.Option(
        None, "--step", help="Step key (default: Tune training_iteration, Trainer step; 'epoch' for Trainer epochs)."
    ),
    group: str | None = typer.Option(
        None,
        "--group",
        help="Group (task) name for every imported run that has none from --group-by or --map (default 'all').",
    ),
    group_by: str | None = typer.Option(
        None,
        "--group-by",
        help="Tune / Trainer config key that holds each run's group (task); tracker exports: --map group=COLUMN.",
    ),
    seed_key: str | None = typer.Option(
        None,
        "--seed-key",
        help="Tune / Trainer config key that holds the seed (runs differing only in it become seeds of one candidate); tracker exports: --map seed=COLUMN.",
    ),
    candidate_keys: str | None = typer.Option(
        None,
        "--candidate-keys",
        help="Config keys whose values name a candidate, comma-separated (default: the trial / run id, or every config key but the seed).",
    ),
    horizon: float | None = typer.Option(
        None,
        "--horizon",
        help="Full-run length in steps for every run (default: the run's max_steps, else the longest run of its group).",
        metavar="T",
    ),
    column_map: list[str] | None = typer.Option(
        None,
        "--map",
        help="Tracker exports: TARGET=COLUMN,... with TARGET candidate, step, value, seed, group, final, horizon or static_<name>.",
    ),
) -> None:
    """Read past runs (Ray Tune, Hugging Face Trainer, tracker exports) into a history table."""
    with one_line_errors("history import"):
        run_import(
            sources,
            out,
            metric=metric,
            step=step,
            group=group,
            group_by=group_by,
            seed_key=seed_key,
            candidate_keys=candidate_keys,
            horizon=horizon,
            column_map=column_map,
            echo=typer.echo,
        )
    sys.stdout.flush()
