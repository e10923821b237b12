"""`prehoc-ray backtest`: what would prehoc-ray have chosen, at what cost, on fine-tunes we already ran?

    prehoc-ray backtest RUNS --budget 0.05,0.1,0.2 [--policy prehoc --policy asha ...]
        [--repeats 5] [--portfolios 20 --portfolio-size 64] [--history PAST] [--tolerance 0.02]
        [--seeds 2] --out DIR

RUNS is a trajectory table (the `analyze` format) whose `final` column is each candidate's
full-run outcome; optional `cost_per_step` (default 1) and static_* columns. Every policy buys
its observations through a replay that charges cost_per_step x steps per seed and refuses
anything past the budget. Writes DIR/picks.parquet (the fine-tune each policy would run per
task), DIR/backtest.parquet (regret, spend, Spearman, RMSE, coverage per policy, budget and
repeat), DIR/report.md and DIR/regret.png, rewritten (atomically) as each policy finishes, so a
policy that fails leaves the finished ones' results in DIR. DIR is created and test-written
before anything is read. Bad input: one line naming the column or option, exit 2.

Paired intervals need units: the table's tasks, or with --portfolios K --portfolio-size N, K
random portfolios of N candidates per task drawn from the table (fewer than 5 units: no verdict).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import typer

from prehoc_ray.cli import app
from prehoc_ray.cli.analyze import BadInput, _blas_limit, _OneLineErrors, check_out_dir, one_line_errors

DEFAULT_POLICIES = ("prehoc", "uniform", "sh", "asha", "static_only", "oracle")
_POLICY_HELP = f"Policy to replay (repeatable; default: {', '.join(DEFAULT_POLICIES)})."


def parse_budgets(text: str) -> list[float]:
    out = []
    for part in text.split(","):
        try:
            b = float(part)
        except ValueError:
            raise BadInput(
                f"--budget: expected fractions in (0, 1] separated by commas (e.g. 0.05,0.1), got {part!r}"
            ) from None
        if not (math.isfinite(b) and 0 < b <= 1):
            raise BadInput(
                f"--budget: expected fractions in (0, 1] of the cost of fully training every candidate, got {part!r}"
            )
        out.append(b)
    return sorted(set(out))


def _read(path: Path, mode: str):
    """The table, checked for steps past their horizon, in the replay's higher-is-better terms:
    with mode "min" (a loss) values and finals are negated, so every policy maximises and a
    regret is how much worse the pick's final is, in metric units either way."""
    from dataclasses import replace

    import numpy as np

    from prehoc_ray.io import read_trajectories

    table = read_trajectories(path)
    table.check_within_horizon()
    if mode == "min":
        table = replace(table, value=-np.asarray(table.value, float), final=-np.asarray(table.final, float))
    return table


def falling_curves_note(table) -> str | None:
    """A note when most candidates' curves end below where they start under mode "max": a loss
    replayed as if higher were better picks the worst run and scores it as the best."""
    import numpy as np

    first: dict[str, tuple[float, float]] = {}
    last: dict[str, tuple[float, float]] = {}
    for c, st, v in zip(table.candidate.tolist(), np.asarray(table.step, float), np.asarray(table.value, float)):
        if c not in first or st < first[c][0]:
            first[c] = (st, v)
        if c not in last or st > last[c][0]:
            last[c] = (st, v)
    falling = sum(1 for c in first if last[c][1] < first[c][1])
    if len(first) >= 2 and falling > 2 * len(first) / 3:
        return (
            f"note: {falling} of {len(first)} candidates' curves end lower than they start: if lower is better "
            "(a loss), pass --mode min, or every policy's picks and regrets are of the wrong direction"
        )
    return None


def _history(path: Path | None, mode: str) -> list:
    if path is None:
        return []
    from prehoc_ray.bench.worlds_table import table_world

    return list(table_world(_read(path, mode), probe_seeds=1, name="history").candidates)


def _write_results(
    out: Path,
    rows: list[dict],
    picks: list[dict],
    worlds: list,
    n_portfolios: int,
    report_head: list[str],
    report_tail: str,
) -> list[Path]:
    """DIR's files for the rows and picks so far, each replaced atomically: a reader (or a
    crash) never sees a torn file, only the previous save or this one."""
    import pyarrow as pa

    out.mkdir(parents=True, exist_ok=True)

    from prehoc_ray.bench.summary import Summary, markdown, plot
    from prehoc_ray.io import write_table
    from prehoc_ray.io.atomic import write_bytes_atomic

    pick_cols = ("world", "policy", "budget_frac", "repeat", "group", "candidate", "regret")
    write_table(
        pa.table({k if k != "budget_frac" else "budget": [p[k] for p in picks] for k in pick_cols}),
        out / "picks.parquet",
    )
    metric_cols = (
        "world",
        "policy",
        "budget_frac",
        "repeat",
        "regret",
        "spent_frac",
        "spearman",
        "rmse",
        "coverage",
        "r_full",
    )
    write_table(
        pa.table(
            {
                {"budget_frac": "budget", "spent_frac": "spent"}.get(k, k): [
                    r[k] if k in ("policy", "world") else float(r[k]) for r in rows
                ]
                for k in metric_cols
            }
        ),
        out / "backtest.parquet",
    )
    written_extra = []
    if n_portfolios:
        write_table(
            pa.table(
                {
                    "world": [w.name for w in worlds for _ in w.candidates],
                    "group": [c.group for w in worlds for c in w.candidates],
                    "candidate": [c.id for w in worlds for c in w.candidates],
                }
            ),
            out / "portfolios.parquet",
        )
        written_extra.append(out / "portfolios.parquet")
    summary = Summary(rows, picks)
    png = plot(summary, str(out / "regret-"))
    if png:
        Path(png[0]).replace(out / "regret.png")
    else:
        (out / "regret.png").unlink(missing_ok=True)
    notes = [*report_head, "", "![regret](regret.png)", "", markdown(summary), report_tail]
    write_bytes_atomic(out / "report.md", ("\n".join(notes) + "\n").encode("utf-8"))
    return [out / "picks.parquet", out / "backtest.parquet", out / "report.md", out / "regret.png", *written_extra]


def run_backtest_command(
    runs: Path,
    out: Path,
    budgets: list[float],
    policies: list[str],
    repeats: int,
    tolerance: float,
    seeds: int,
    history: Path | None = None,
    echo: Any = print,
    n_portfolios: int = 0,
    portfolio_size: int | None = None,
    mode: str = "max",
) -> list[Path]:
    """The command's work without the CLI; raises BadInput or TrajectoryError on bad input.
    DIR's files are rewritten after each policy has run on every unit and budget, so a policy
    that raises (PolicyFailed, naming it) leaves the finished policies' results in DIR."""
    from dataclasses import replace

    from prehoc_ray.bench.backtest import ORACLE, PolicyFailed, run_backtest
    from prehoc_ray.bench.policies import POLICY_NAMES
    from prehoc_ray.bench.worlds_table import portfolios, probe_cap_note, table_world

    bad = [p for p in policies if p not in POLICY_NAMES + (ORACLE,)]
    if bad:
        raise BadInput(f"--policy: expected one of {', '.join(POLICY_NAMES + (ORACLE,))}, got {bad[0]!r}")
    if repeats < 1:
        raise BadInput(f"--repeats: expected an integer >= 1, got {repeats}")
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise BadInput(f"--tolerance: expected a number > 0 (metric units), got {tolerance:g}")
    if seeds < 1:
        raise BadInput(f"--seeds: expected an integer >= 1, got {seeds}")
    if mode not in ("max", "min"):
        raise BadInput(f"--mode: expected max (higher is better) or min (lower is better), got {mode!r}")
    if n_portfolios < 0:
        raise BadInput(f"--portfolios: expected a count >= 0 (0: no portfolios), got {n_portfolios}")
    if portfolio_size is not None and not n_portfolios:
        raise BadInput(
            "--portfolio-size: only used with --portfolios K (K random portfolios of N candidates per task); "
            "add --portfolios or drop --portfolio-size"
        )
    if n_portfolios and (portfolio_size is None or portfolio_size < 2):
        raise BadInput(
            "--portfolios/--portfolio-size: expected a count >= 1 and a size >= 2 candidates per task, "
            f"got {n_portfolios} and {'none' if portfolio_size is None else portfolio_size}"
        )
    check_out_dir(out)
    table = _read(runs, mode)
    if mode == "max":
        note = falling_curves_note(table)
        if note:
            echo(note)
    world = table_world(table, tolerance=tolerance, probe_seeds=seeds)
    past = _history(history, mode)
    if past:
        world = replace(world, history=past)
    n_seeds = min(c.n_seeds for c in world.candidates)
    tasks = sorted(set(world.groups))
    echo(
        f"read {len(world.candidates)} candidates in {len(tasks)} task(s) from {runs}; "
        f"{min(seeds, n_seeds)} probe seed(s) per candidate"
        + ("" if n_seeds > 1 else " (one curve per candidate: seed dispersion is not observable)")
        + (f"; {len(past)} past runs" if past else "")
    )
    note = probe_cap_note(world)
    if note:
        echo(note)
    if "static_only" in policies and not past:
        echo("note: static_only has no past runs to learn from (--history): its picks are blind")
    worlds = portfolios(world, portfolio_size or 0, n_portfolios) if n_portfolios else [world]
    head = [
        f"# Backtest of {runs}",
        "",
        f"{len(world.candidates)} candidates, {len(tasks)} task(s), budgets {', '.join(f'{b:g}' for b in budgets)} "
        f"of the cost of fully training every candidate once ({world.full_cost:.4g} device-seconds); "
        + ("lower is better (--mode min): regret is how much higher the pick's final is; " if mode == "min" else "")
        + f"policies: {', '.join(policies)}; repeats: {repeats} (deterministic policies run once)."
        + (
            f" {n_portfolios} random portfolios of {portfolio_size} candidates per task drawn from the table; they share "
            "candidates, so intervals over them are narrower than over independent portfolios."
            if n_portfolios
            else ""
        ),
        ""
        if n_seeds > 1
        else "One curve per candidate: seed dispersion was not observable, so every policy probed one seed "
        "and prehoc's intervals come from the extrapolation error of the curve model, not from seeds.",
    ]
    tail = (
        "Score any policy yourself: join picks.parquet (group, candidate) with the table's `final` column; "
        "regret = the task's best final minus the picked candidate's final"
        + (" within the portfolio (portfolios.parquet lists each portfolio's candidates)." if n_portfolios else ".")
    )
    finished: list[str] = []
    written: list[Path] = []

    def save(policy: str, rows: list[dict], picks: list[dict]) -> None:
        finished.append(policy)
        partial = []
        if len(finished) < len(policies):
            partial = [
                "",
                f"Partial results: {', '.join(finished)} of {', '.join(policies)} had finished when this was "
                "written; the rest were still running or failed.",
            ]
        written[:] = _write_results(out, rows, picks, worlds, n_portfolios, head + partial, tail)

    try:
        with _blas_limit():
            run_backtest(worlds, budgets, policies, repeats, log=lambda s: echo(s), on_policy=save, dataset=world.name)
    except PolicyFailed as exc:
        kept = (
            f"the results of {', '.join(finished)} (finished before it) were kept in {out}"
            if finished
            else "no policy had finished, so nothing was written"
        )
        raise PolicyFailed(exc.policy, f"{exc}; {kept}") from exc.__cause__
    echo(f"wrote {', '.join(p.name for p in written)} to {out}")
    return written


@app.command("backtest", cls=_OneLineErrors)
def backtest_command(
    runs: Path = typer.Argument(
        ...,
        help="Trajectory table of fine-tunes already run (.csv, .parquet, .jsonl) with a `final` column.",
        show_default=False,
    ),
    out: Path = typer.Option(..., "--out", help="Output directory (created if missing).", show_default=False),
    budget: str = typer.Option(
        "0.05,0.1,0.2",
        "--budget",
        help="Probe budgets as fractions of fully training every candidate once, comma-separated.",
    ),
    policy: list[str] | None = typer.Option(None, "--policy", help=_POLICY_HELP),
    repeats: int = typer.Option(
        5,
        "--repeats",
        help="Repeats of the stochastic policies (ASHA: the arrival order of its asynchronous results); the others are deterministic and run once.",
    ),
    history: Path | None = typer.Option(
        None, "--history", help="Past runs of the same tasks (same format) for the policies that learn from history."
    ),
    tolerance: float = typer.Option(
        0.02, "--tolerance", help="Tolerated prediction error in metric units (tau).", metavar="TAU"
    ),
    seeds: int = typer.Option(2, "--seeds", help="Probe seeds per candidate (at most the recorded ones)."),
    n_portfolios: int = typer.Option(
        0,
        "--portfolios",
        help="Backtest K random portfolios drawn from the table (units for the paired intervals).",
        metavar="K",
    ),
    portfolio_size: int | None = typer.Option(
        None, "--portfolio-size", help="Candidates per task in each portfolio (with --portfolios).", metavar="N"
    ),
    mode: str = typer.Option("max", "--mode", help="max: higher is better (accuracy); min: lower is better (a loss)."),
) -> None:
    """Replay prehoc-ray and its peers on fine-tunes already run: picks, regret and cost per budget."""
    with one_line_errors("backtest"):
        run_backtest_command(
            runs,
            out,
            parse_budgets(budget),
            list(policy or DEFAULT_POLICIES),
            repeats,
            tolerance,
            seeds,
            history,
            echo=typer.echo,
            n_portfolios=n_portfolios,
            portfolio_size=portfolio_size,
            mode=mode,
        )
