"""Past runs from a Ray Tune experiment directory, read from its files (Ray is not imported).

Tune writes one directory per trial holding params.json (the trial's config), result.json
(one JSON object per reported result) and progress.csv (the same results as a table). The
curve is the `--metric` key against `training_iteration` (or `--step`); the config gives the
candidate id, seed and group when told which keys hold them, and its numeric values become
`static_<key>` features. result.json is preferred: progress.csv drops results whose keys
changed mid-run. A trial that cannot be used is skipped with its reason, never fatal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pa_csv

from prehoc_ray.io.history_runs import (
    HistoryImportError,
    ImportedRun,
    ImportOptions,
    SourceReport,
    as_number,
    clean_curve,
    flatten,
    identity,
    static_columns,
)

DEFAULT_STEP = "training_iteration"
_TRIAL_FILES = ("result.json", "progress.csv", "params.json")


def is_trial_dir(path: Path) -> bool:
    return path.is_dir() and any((path / name).is_file() for name in _TRIAL_FILES)


def trial_dirs(path: Path) -> list[Path]:
    """The trial directories under an experiment directory (or the trial directory itself,
    or the experiments under a Tune storage path)."""
    if is_trial_dir(path):
        return [path]
    children = sorted(p for p in path.iterdir() if p.is_dir())
    found = [p for p in children if is_trial_dir(p)]
    if not found:
        found = [g for c in children for g in sorted(c.iterdir()) if is_trial_dir(g)]
    return found


def _result_rows(trial: Path) -> tuple[list[dict[str, Any]], str, int]:
    """(rows, file they came from, lines that were not JSON objects)."""
    bad = 0
    rows: list[dict[str, Any]] = []
    result = trial / "result.json"
    if result.is_file():
        for line in result.read_text(encoding="utf-8", errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                bad += 1  # typically the last line of a trial killed while writing it
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                bad += 1
        if rows:
            return rows, "result.json", bad
    progress = trial / "progress.csv"
    if progress.is_file() and progress.stat().st_size > 0:
        try:
            table = pa_csv.read_csv(progress)
        except (pa.ArrowException, OSError) as exc:
            raise _Unreadable(f"progress.csv unreadable ({type(exc).__name__})") from exc
        return table.to_pylist(), "progress.csv", bad
    return [], "result.json" if result.is_file() else "", bad


class _Unreadable(Exception):
    pass


def _config(trial: Path, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    params = trial / "params.json"
    if params.is_file():
        try:
            loaded = json.loads(params.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError):
            loaded = None
        if isinstance(loaded, dict):
            return flatten(loaded)
    for row in rows:
        if isinstance(row.get("config"), dict):
            return flatten(row["config"])
    # progress.csv spells the config as config/<key> columns
    if rows and any(k.startswith("config/") for k in rows[0]):
        return {k.removeprefix("config/"): v for k, v in rows[0].items() if k.startswith("config/")}
    return None


# What Tune adds to every result; the rest is what the trainable reported.
_AUTO_KEYS = {
    "timestamp",
    "checkpoint_dir_name",
    "done",
    "training_iteration",
    "trial_id",
    "date",
    "time_this_iter_s",
    "time_total_s",
    "pid",
    "hostname",
    "node_ip",
    "time_since_restore",
    "iterations_since_restore",
    "timesteps_total",
    "episodes_total",
    "timesteps_since_restore",
    "should_checkpoint",
    "experiment_tag",
    "warmup_time",
    "experiment_id",
}


def _reported_keys(rows: list[dict[str, Any]]) -> str:
    keys = sorted({k for row in rows for k in row if k not in _AUTO_KEYS and not k.startswith("config/")})
    if not keys:
        return ""
    shown = ", ".join(keys[:8]) + (", ..." if len(keys) > 8 else "")
    return f" (reported there: {shown})"


def _read_trial(trial: Path, options: ImportOptions, report: SourceReport) -> ImportedRun | None:
    metric = options.metric or ""
    step_key = options.step_key or DEFAULT_STEP
    try:
        rows, file, bad_lines = _result_rows(trial)
    except _Unreadable as exc:
        report.skip(str(exc))
        return None
    if not rows:
        report.skip(f"{file} empty" if file else "no result.json or progress.csv")
        return None
    report.ignored_lines += bad_lines
    flat = [flatten({k: v for k, v in row.items() if k != "config"}) for row in rows]
    with_metric = [row for row in flat if row.get(metric) is not None]
    if not with_metric:
        report.skip(f"no '{metric}' in {file}" + _reported_keys(flat))
        return None
    points: dict[float, float] = {}
    for row in with_metric:
        step, value = as_number(row.get(step_key)), as_number(row.get(metric))
        if step is not None and value is not None:
            points[step] = value  # a result repeated after a restore: the later one counts
    steps, values = clean_curve(points)
    if not steps:
        report.skip(f"no finite '{metric}' at a '{step_key}' > 0 in {file}")
        return None
    config = _config(trial, rows)
    if config is None:
        if options.seed_key or options.group_by or options.candidate_keys:
            report.skip("no config (params.json missing or unreadable)")
            return None
        config = {}
    default_id = str(next((r["trial_id"] for r in rows if r.get("trial_id")), trial.name))
    who = identity(config, options, default_id)
    if isinstance(who, str):
        report.skip(who)
        return None
    candidate, seed, group = who
    report.read += 1
    report.points += len(steps)
    return ImportedRun(
        candidate=candidate,
        seed=seed,
        group=group,
        steps=steps,
        values=values,
        static=static_columns(config, exclude=(options.seed_key, options.group_by)),
        origin=str(trial),
        end_step=steps[-1],
        report=report,
    )


def read_tune(path: Path, options: ImportOptions) -> tuple[list[ImportedRun], SourceReport]:
    """Every usable trial of the experiment at `path`, and the report of what was skipped."""
    if not options.metric:
        raise HistoryImportError(
            f"tune:{path}: no --metric; expected the name of the reported metric to import (e.g. --metric acc)"
        )
    trials = trial_dirs(path)
    if not trials:
        raise HistoryImportError(
            f"tune:{path}: no Ray Tune trial directory in it; expected trial directories holding result.json, progress.csv "
            "or params.json (the experiment directory Tune prints as 'View detailed results here')"
        )
    report = SourceReport("tune", str(path), "trials")
    runs = [run for trial in trials if (run := _read_trial(trial, options, report)) is not None]
    if report.ignored_lines:
        report.notes.append(f"{report.ignored_lines} result.json line(s) that are not JSON objects ignored")
    return runs, report
