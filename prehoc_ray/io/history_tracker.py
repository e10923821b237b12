"""Past runs from an experiment tracker's export (CSV, JSON Lines or Parquet), by a column map.

Trackers (Weights & Biases, MLflow, Neptune, ...) export one row per logged point with their
own column names (`run_id`, `_step`, `eval/acc`). `--map candidate=run_id,step=_step,
value=eval/acc,group=task` names which column is which; a column already called like the
target (`candidate`, `step`, `static_lr`) needs no entry; the map alone says where seed and
group are (--seed-key, --group-by and --candidate-keys name Tune / Trainer config keys), and
`--group NAME` names the group of runs without one. Such exports log metrics sparsely
(a row per logging call, the metric empty on most), so rows without a value are passed over
and counted, not errors.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prehoc_ray.io.formats import read_table_file
from prehoc_ray.io.history_runs import (
    HistoryImportError,
    ImportedRun,
    ImportOptions,
    SourceReport,
    as_number,
    clean_curve,
    plural,
)
from prehoc_ray.types import CANDIDATE, FINAL, GROUP, HORIZON, SEED, STATIC_PREFIX, STEP, VALUE

TARGETS = (CANDIDATE, STEP, VALUE, SEED, GROUP, FINAL, HORIZON)
_TARGET_HELP = f"TARGET=COLUMN with TARGET one of {', '.join(TARGETS)} or {STATIC_PREFIX}<name>"


def parse_column_map(items: Iterable[str]) -> dict[str, str]:
    """`["candidate=run_id,step=_step", "value=eval/acc"]` -> {target: column}.

    Entries are comma-separated; a column name may itself hold '=' (split at the first)."""
    out: dict[str, str] = {}
    for item in items:
        for entry in item.split(","):
            if not entry.strip():
                continue
            target, sep, column = entry.partition("=")
            target, column = target.strip(), column.strip()
            if (
                not sep
                or not column
                or not (target in TARGETS or (target.startswith(STATIC_PREFIX) and len(target) > len(STATIC_PREFIX)))
            ):
                raise HistoryImportError(f"--map {entry.strip()!r}: expected {_TARGET_HELP}")
            if target in out and out[target] != column:
                raise HistoryImportError(
                    f"--map: {target} given twice ({out[target]!r} and {column!r}); expected one column per target"
                )
            out[target] = column
    return out


def _columns(names: list[str], options: ImportOptions, label: str) -> dict[str, str]:
    """target -> export column, after defaults; raises when a required one is missing."""
    cols = dict(options.column_map)
    for target in (CANDIDATE, STEP, VALUE, SEED, GROUP, FINAL, HORIZON):
        if target not in cols and target in names:
            cols[target] = target
    if VALUE not in cols and options.metric:
        cols[VALUE] = options.metric
    for name in names:
        if name.startswith(STATIC_PREFIX) and name not in cols and name not in cols.values():
            cols[name] = name
    shown = ", ".join(names[:12]) + (f" ... ({len(names) - 12} more)" if len(names) > 12 else "")
    for target, column in cols.items():
        if column not in names:
            raise HistoryImportError(f"{label}: no column {column!r} (for {target}); columns in the file: {shown}")
    for target, how in (
        (CANDIDATE, "--map candidate=COLUMN"),
        (STEP, "--map step=COLUMN"),
        (VALUE, "--map value=COLUMN or --metric COLUMN"),
    ):
        if target not in cols:
            raise HistoryImportError(
                f"{label}: no column for '{target}'; expected {how} (columns in the file: {shown})"
            )
    return cols


def _last(values: Iterable[Any]) -> float | None:
    out = None
    for v in values:
        number = as_number(v)
        if number is not None:
            out = number
    return out


def read_tracker(path: Path, options: ImportOptions) -> tuple[list[ImportedRun], SourceReport]:
    """Every usable run in the export at `path`, and the report of what was skipped."""
    label = f"tracker:{path}"
    table = read_table_file(path)
    cols = _columns(table.column_names, options, label)
    data = {target: table.column(column).to_pylist() for target, column in cols.items()}
    report = SourceReport("tracker", str(path), "runs")
    rows_out: Counter[str] = Counter()
    by_run: dict[tuple[str, int], list[int]] = defaultdict(list)
    runs: list[ImportedRun] = []
    for i in range(table.num_rows):
        cand = data[CANDIDATE][i]
        if cand is None or str(cand) == "":
            rows_out["without a candidate"] += 1
            continue
        seed = as_number(data[SEED][i]) if SEED in data else 0.0
        if seed is None or seed != int(seed):
            rows_out["with a seed that is not an integer"] += 1
            continue
        by_run[(str(cand), int(seed))].append(i)
    for (cand, seed), rows in by_run.items():
        points: dict[float, float] = {}
        for i in rows:
            step, value = as_number(data[STEP][i]), as_number(data[VALUE][i])
            if value is None:
                rows_out["without a finite value"] += 1
            elif step is None or step <= 0:
                rows_out["with no step > 0"] += 1
            else:
                if step in points:
                    rows_out["repeating a step (the later row kept)"] += 1
                points[step] = value
        steps, values = clean_curve(points)
        if not steps:
            report.skip(f"no finite '{cols[VALUE]}'" if VALUE in cols else "no value")
            continue
        if GROUP in data:
            groups = {str(data[GROUP][i]) for i in rows if data[GROUP][i] not in (None, "")}
            if len(groups) > 1:
                report.skip(f"'{cols[GROUP]}' differs between the rows of one run")
                continue
            group = groups.pop() if groups else (options.group or "all")
        else:
            group = options.group or "all"
        static = {t: _last(data[t][i] for i in rows) for t in data if t.startswith(STATIC_PREFIX)}
        report.read += 1
        report.points += len(steps)
        runs.append(
            ImportedRun(
                candidate=cand,
                seed=seed,
                group=group,
                steps=steps,
                values=values,
                static={k: v for k, v in static.items() if v is not None},
                origin=f"{path} (run {cand!r} seed {seed})",
                end_step=steps[-1],
                final=_last(data[FINAL][i] for i in rows) if FINAL in data else None,
                horizon=_last(data[HORIZON][i] for i in rows) if HORIZON in data else None,
                report=report,
            )
        )
    report.notes += [f"{plural(n, 'row')} {why} ignored" for why, n in rows_out.most_common()]
    return runs, report
