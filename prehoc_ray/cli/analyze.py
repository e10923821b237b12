"""`prehoc-ray analyze`: predictions and risk decompositions from existing trajectories.

    prehoc-ray analyze TRAJECTORIES --out DIR [--mode max|min] [--depth C] [--horizon T]
        [--level 0.9] [--tolerance TAU] [--cost-per-step LAMBDA] [--gamma GAMMA]

Writes predictions.parquet, decomposition.parquet, phase_diagram.png, decay.png and report.md.
Bad input (file, column, row or option) is one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import math
import os
import sys
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperCommand

from prehoc_ray.cli import EXIT_BAD_INPUT, EXIT_FAILURE, app
from prehoc_ray.types import Mode

DEBUG_ENV = "PREHOC_RAY_DEBUG"


class BadInput(Exception):
    """A user error: reported in one line, exit code 2."""


# typer >= 0.20 vendors click; its UsageError is BadParameter's base either way.
_UsageError = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class _OneLineErrors(TyperCommand):
    """Usage errors (an unparsable --level, a missing argument) as one line, exit 2, instead
    of a multi-line panel: the same contract as every other bad input."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except _UsageError as exc:
            typer.echo(f"error: {' '.join(exc.format_message().split())}", err=True)
            raise typer.Exit(EXIT_BAD_INPUT) from None


# With a single registered command typer would make it the whole program (`prehoc-ray FILE`);
# a root callback keeps `prehoc-ray analyze FILE` a sub-command. Only if none is registered yet.
if app.registered_callback is None:

    @app.callback()
    def _root() -> None:
        """Decide which fine-tunes are worth running, before paying for them."""


@contextmanager
def one_line_errors(what: str) -> Iterator[None]:
    """The CLI contract around a command's work: bad input is one line and exit 2, any other
    failure one line and exit 1 (the traceback with PREHOC_RAY_DEBUG=1)."""
    from prehoc_ray.io import TrajectoryError

    try:
        yield
    except (BadInput, TrajectoryError) as exc:
        typer.echo(f"error: {' '.join(str(exc).split())}", err=True)
        raise typer.Exit(EXIT_BAD_INPUT) from None
    except Exception as exc:  # the CLI contract: a message, not a traceback
        if os.environ.get(DEBUG_ENV):
            raise
        typer.echo(
            f"error: {what} failed: {type(exc).__name__}: {' '.join(str(exc).split())} (set {DEBUG_ENV}=1 for the traceback)",
            err=True,
        )
        raise typer.Exit(EXIT_FAILURE) from None


def _finite(name: str, value: float | None, *, positive: bool = True) -> None:
    if value is None:
        return
    if not math.isfinite(value):
        raise BadInput(f"{name}: expected a finite number, got {value}")
    if positive and value <= 0:
        raise BadInput(f"{name}: expected a number > 0, got {value:g}")


def _check_options(
    depth: float | None,
    horizon: float | None,
    level: float,
    tolerance: float,
    cost_per_step: float,
    gamma: float | None,
    n_boot: int,
    seed: int = 0,
) -> None:
    _finite("--depth", depth)
    _finite("--horizon", horizon)
    if not (math.isfinite(level) and 0 < level < 1):
        raise BadInput(f"--level: expected a number strictly between 0 and 1 (e.g. 0.9), got {level:g}")
    _finite("--tolerance", tolerance)
    _finite("--cost-per-step", cost_per_step)
    _finite("--gamma", gamma)
    if n_boot < 0:
        raise BadInput(f"--n-boot: expected an integer >= 0, got {n_boot}")
    if seed < 0:
        raise BadInput(f"--seed: expected an integer >= 0, got {seed}")


def check_out_dir(out: Path) -> None:
    """Fail now, before the work, if --out cannot hold the results: an existing directory must
    take a file, a new one must have a writable directory to be created in. Nothing is created
    here (a run that fails on its input leaves no empty directory behind)."""
    import uuid

    from prehoc_ray.io.atomic import TMP_SUFFIX

    if out.exists():
        if not out.is_dir():
            raise BadInput(f"--out: {out} exists and is not a directory")
        # hidden and .tmp: every reader in the package skips it should the removal not happen
        probe = out / f".prehoc-ray-probe-{uuid.uuid4().hex}{TMP_SUFFIX}"
        try:
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            raise BadInput(f"--out: cannot write to the directory {out}: {exc.strerror or exc}") from None
        return
    parent = out.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise BadInput(f"--out: cannot create {out}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise BadInput(f"--out: cannot create {out}: {parent} is not writable")


def scale_note(values: Any, tolerance: float) -> str | None:
    """A note when the tolerance is tiny against what the candidates reached: most often a
    metric recorded on another scale (accuracy in percent, a perplexity) with the default
    tolerance, which would call every candidate noise-dominated."""
    import numpy as np

    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return None
    spread = float(np.quantile(v, 0.95) - np.quantile(v, 0.05))
    if spread <= 100 * tolerance:
        return None
    return (
        f"note: the candidates' last values span {spread:.4g}, {spread / tolerance:,.0f} times --tolerance "
        f"{tolerance:g}; the tolerance is in the metric's units (for an accuracy in percent, 2 points is "
        "--tolerance 2)"
    )


def _blas_limit() -> Any:
    """One BLAS thread unless the user chose otherwise.

    The analysis is thousands of small solves (GP hyper-parameter steps, Cholesky of a few
    hundred points); OpenBLAS threads spinning on them made a 30-candidate analysis 10x
    slower on a loaded 2-core machine (measured: 39 s vs 3.3 s).
    """
    if any(v in os.environ for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")):
        return nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it the BLAS default applies
        return nullcontext()
    return threadpool_limits(1, user_api="blas")


def to_observations(table: Any) -> Any:
    """TrajectoryTable -> the core's Observations (plain numpy columns)."""
    return table.to_observations()


def _nullable(values: Any) -> Any:
    import numpy as np
    import pyarrow as pa

    arr = np.asarray(values, float)
    return pa.array(arr, type=pa.float64(), mask=~np.isfinite(arr))


def predictions_table(result: Any, mode: str) -> Any:
    import numpy as np
    import pyarrow as pa

    p = result.predictions
    pred = np.asarray(p["predicted_final"], float)
    # A candidate without a prediction (no evaluation at or before the depth) has no rank. The
    # score is the prediction before it was clipped to the metric's range (ties keep an order).
    score = np.asarray(p.get("rank_score", pred), float)
    key = np.where(np.isfinite(pred), -score if mode == Mode.MAX.value else score, np.inf)
    rank = np.empty(pred.size, dtype=np.int64)
    rank[np.argsort(key, kind="stable")] = np.arange(1, pred.size + 1)
    ranked = np.isfinite(pred)
    cand = [str(c) for c in p["candidate"]]
    return pa.table(
        {
            "candidate": pa.array(cand, type=pa.string()),
            "group": pa.array([str(g) for g in p["group"]], type=pa.string()),
            "depth": pa.array(np.asarray(p["depth"], float), type=pa.float64()),
            "predicted_final": _nullable(pred),
            "predicted_std": _nullable(p["predicted_std"]),
            "lower": _nullable(p["lower"]),
            "upper": _nullable(p["upper"]),
            "regime": pa.array([str(r) for r in p["regime"]], type=pa.string()),
            "final": _nullable(p["final"]),
            "last_observed": _nullable(p["last_observed"]),
            "horizon": _nullable(p["horizon"]),
            "unit": pa.array([result.candidate_unit.get(c) for c in cand], type=pa.string()),
            "rank": pa.array(rank, type=pa.int64(), mask=~ranked),
        }
    )


def decomposition_table(result: Any) -> Any:
    import numpy as np
    import pyarrow as pa

    rows = result.decomposition_rows()
    cols: dict[str, Any] = {}
    for name, values in rows.items():
        # typed by content, so columns the core adds later come through without a change here
        if name in ("unit", "kind", "regime", "reason", "diagnostics") or any(isinstance(v, str) for v in values):
            cols[name] = pa.array([None if v is None else str(v) for v in values], type=pa.string())
        elif values and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in values):
            cols[name] = pa.array([int(v) for v in values], type=pa.int64())
        else:
            cols[name] = _nullable(np.asarray(values, float) if values else np.empty(0))
    cols["depths"] = pa.array([[float(x) for x in u.depths] for u in result.units], type=pa.list_(pa.float64()))
    cols["U"] = pa.array(
        [[float(x) if np.isfinite(x) else None for x in u.U] for u in result.units], type=pa.list_(pa.float64())
    )
    return pa.table(cols)


def run_analysis(
    trajectories: Path,
    out: Path,
    *,
    mode: str = "max",
    depth: float | None = None,
    horizon: float | None = None,
    level: float = 0.9,
    tolerance: float = 0.02,
    cost_per_step: float = 1.0,
    gamma: float | None = None,
    seed: int = 0,
    n_boot: int = 200,
    echo: Any = print,
) -> list[Path]:
    """The command's work without the CLI; raises BadInput (or TrajectoryError) on bad input."""
    _check_options(depth, horizon, level, tolerance, cost_per_step, gamma, n_boot, seed)
    check_out_dir(out)

    import numpy as np

    from prehoc_ray.io import read_trajectories, write_table

    # The table first, the analysis and its plotting libraries after: a bad file fails in a
    # fraction of the time and memory (no scipy, no matplotlib loaded).
    table = read_trajectories(trajectories)
    table.check_within_horizon(horizon)  # a step far past the horizon: the row, not overflowing fits

    from prehoc_ray.core.analysis import AnalysisSettings, analyze
    from prehoc_ray.report.analysis_report import InputSummary, write_report

    rows_used = int(np.sum(table.step <= depth)) if depth is not None else len(table)
    if rows_used == 0:
        raise BadInput(
            f"--depth: no observation has step <= {depth:g} (the smallest step in {trajectories} is {float(table.step.min()):g})"
        )
    obs = to_observations(table)
    settings = AnalysisSettings(
        level=level,
        tolerance=tolerance,
        cost_per_step=cost_per_step,
        gamma=gamma,
        horizon=horizon,
        mode=mode,
        n_boot=n_boot,
        seed=seed,
    )
    n_cand = len(table.candidates())
    echo(
        f"read {len(table)} rows, {n_cand} candidates from {trajectories}"
        + (f"; using {rows_used} rows with step <= {depth:g}" if depth is not None else "")
    )
    with _blas_limit():
        result = analyze(obs, depth, settings)
        for cand, seeds in result.ended_early.items():
            ends = ", ".join(f"seed {s} at step {step:g}" for s, step in sorted(seeds.items()))
            echo(f"{cand}: left out {ends}: stopped before its other seeds (a crashed or cut run, not a final)")
        note = scale_note(result.predictions["last_observed"], tolerance)
        if note:
            echo(note)
        out.mkdir(parents=True, exist_ok=True)
        written = [out / "predictions.parquet", out / "decomposition.parquet"]
        write_table(predictions_table(result, mode), written[0])
        write_table(decomposition_table(result), written[1])
        seeds_max = max(
            Counter(c for c, _ in set(zip(table.candidate.tolist(), table.seed.tolist()))).values(), default=0
        )
        finals_known = int(np.isfinite(result.predictions["final"]).sum())
        summary = InputSummary(
            source=str(trajectories),
            rows=len(table),
            rows_used=rows_used,
            candidates=n_cand,
            groups=len(set(table.group.tolist())),
            seeds_max=seeds_max,
            finals_known=finals_known,
            static_columns=tuple(table.static_names()),
            depth=depth,
            horizon=horizon,
            mode=mode,
        )
        written += write_report(result, out, summary)
    regimes: dict[str, int] = {}
    for r in result.predictions["regime"]:
        regimes[str(r)] = regimes.get(str(r), 0) + 1
    echo("regimes (candidates): " + ", ".join(f"{k} {v}" for k, v in sorted(regimes.items())))
    echo(f"wrote {', '.join(p.name for p in written)} to {out}")
    return written


@app.command("analyze", cls=_OneLineErrors)
def analyze_command(
    trajectories: Path = typer.Argument(
        ...,
        help="Trajectory table: .csv, .parquet/.pq or .jsonl/.ndjson/.json; one row per (candidate, seed, step).",
        show_default=False,
    ),
    out: Path = typer.Option(..., "--out", help="Output directory (created if missing).", show_default=False),
    mode: Mode = typer.Option(
        Mode.MAX, "--mode", help="Whether a larger metric is better (max) or a smaller one (min)."
    ),
    depth: float | None = typer.Option(
        None,
        "--depth",
        help="Use only observations with step <= C: what would we have predicted after C steps.",
        metavar="C",
    ),
    horizon: float | None = typer.Option(
        None,
        "--horizon",
        help="Full-training length for every candidate (default: the horizon column, else each candidate's last step).",
        metavar="T",
    ),
    level: float = typer.Option(0.9, "--level", help="Coverage of the central prediction intervals, in (0, 1)."),
    tolerance: float = typer.Option(
        0.02,
        "--tolerance",
        help="Tolerated std of a prediction, in metric units (tau); regime thresholds use tau^2.",
        metavar="TAU",
    ),
    cost_per_step: float = typer.Option(
        1.0, "--cost-per-step", help="Cost of one probe step (lambda).", metavar="LAMBDA"
    ),
    gamma: float | None = typer.Option(
        None,
        "--gamma",
        help="Price of risk per unit cost (default: tau^2 / (lambda x median horizon)).",
        metavar="GAMMA",
    ),
    seed: int = typer.Option(0, "--seed", help="Random seed (folds, bootstrap)."),
    n_boot: int = typer.Option(
        200, "--n-boot", help="Bootstrap replicates for the decay-fit intervals (0 skips them)."
    ),
) -> None:
    """Predict every candidate's final from its trajectories and decompose the prediction risk."""
    with one_line_errors("analysis"):
        run_analysis(
            trajectories,
            out,
            mode=mode.value,
            depth=depth,
            horizon=horizon,
            level=level,
            tolerance=tolerance,
            cost_per_step=cost_per_step,
            gamma=gamma,
            seed=seed,
            n_boot=n_boot,
            echo=typer.echo,
        )
    sys.stdout.flush()
