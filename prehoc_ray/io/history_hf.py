"""Past runs from Hugging Face Trainer output directories, read from trainer_state.json.

The Trainer writes trainer_state.json into every checkpoint-N/ directory (and into the output
directory itself when the script calls `trainer.save_state()`); its `log_history` holds every
logged and evaluated point, `max_steps` the planned length and `global_step` how far training
got. Only JSON is read: training_args.bin is a pickle, and loading one runs arbitrary code, so
the learning rate and friends do not become static features here (a hyper-parameter search's
`trial_params` do). transformers is not imported.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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

STATE = "trainer_state.json"
DEFAULT_STEP = "step"


def _state_files(run: Path) -> list[Path]:
    files = [run / STATE] if (run / STATE).is_file() else []
    files += sorted(p / STATE for p in run.glob("checkpoint-*") if (p / STATE).is_file())
    return files


def run_dirs(path: Path) -> list[Path]:
    """The Trainer output directory at `path`, or the output directories right under it."""
    if _state_files(path):
        return [path]
    return sorted(p for p in path.iterdir() if p.is_dir() and _state_files(p))


def is_hf_dir(path: Path) -> bool:
    return path.is_dir() and bool(run_dirs(path))


def _load(files: list[Path]) -> tuple[list[dict[str, Any]], int]:
    states, bad = [], 0
    for file in files:
        try:
            state = json.loads(file.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, OSError, RecursionError):
            bad += 1
            continue
        if isinstance(state, dict) and isinstance(state.get("log_history"), list):
            states.append(state)
        else:
            bad += 1
    return states, bad


def _metric_keys(states: list[dict[str, Any]]) -> list[str]:
    keys = {k for s in states for entry in s["log_history"] if isinstance(entry, dict) for k in entry}
    return sorted(k for k in keys if k.startswith("eval_") and not k.endswith(("_runtime", "_per_second")))


def _metric_name(states: list[dict[str, Any]], metric: str) -> str:
    """`metric` as logged, else `eval_<metric>`: the Trainer prefixes what compute_metrics
    returns ("accuracy") with "eval_", so both spellings name the same curve."""
    logged = {k for s in states for entry in s["log_history"] if isinstance(entry, dict) for k in entry}
    return metric if metric in logged or f"eval_{metric}" not in logged else f"eval_{metric}"


def _read_run(run: Path, options: ImportOptions, report: SourceReport) -> ImportedRun | None:
    step_key = options.step_key or DEFAULT_STEP
    states, bad = _load(_state_files(run))
    report.ignored_lines += bad
    if not states:
        report.skip(f"{STATE} unreadable")
        return None
    metric = _metric_name(states, options.metric or "")
    # log_history accumulates, so the furthest state holds the most; older checkpoints fill in
    # points a later state lost (a run restarted without resuming), the furthest state wins.
    states.sort(key=lambda s: as_number(s.get("global_step")) or 0.0)
    points: dict[float, float] = {}
    for state in states:
        for entry in state["log_history"]:
            if not isinstance(entry, dict) or entry.get(metric) is None:
                continue
            step, value = as_number(entry.get(step_key)), as_number(entry.get(metric))
            if step is not None and value is not None:
                points[step] = value
    steps, values = clean_curve(points)
    if not steps:
        known = ", ".join(_metric_keys(states)) or "none"
        report.skip(f"no '{metric}' at a '{step_key}' > 0 in {STATE} log_history (eval keys there: {known})")
        return None
    last = states[-1]
    if step_key == "epoch":
        planned, done = as_number(last.get("num_train_epochs")), as_number(last.get("epoch"))
    else:
        planned, done = as_number(last.get("max_steps")), as_number(last.get("global_step"))
    config = flatten(last["trial_params"]) if isinstance(last.get("trial_params"), dict) else {}
    name = run.resolve().name
    who = identity(config, options, str(last.get("trial_name") or name))
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
        origin=str(run),
        end_step=max(done or 0.0, steps[-1]),
        planned_steps=planned if planned and planned > 0 else None,
        report=report,
    )


def read_hf(path: Path, options: ImportOptions) -> tuple[list[ImportedRun], SourceReport]:
    """Every usable Trainer run at `path`, and the report of what was skipped."""
    if not options.metric:
        raise HistoryImportError(
            f"hf:{path}: no --metric; expected the logged metric to import (e.g. --metric eval_accuracy)"
        )
    if options.step_key not in (None, "step", "epoch"):
        raise HistoryImportError(
            f"hf:{path}: --step {options.step_key!r}; expected 'step' or 'epoch' for a Trainer output directory"
        )
    runs = run_dirs(path)
    if not runs:
        raise HistoryImportError(
            f"hf:{path}: no {STATE} in it or in its checkpoint-*/ directories; expected a Hugging Face Trainer "
            "output_dir (or a directory of them)"
        )
    report = SourceReport("hf", str(path), "runs")
    out = [r for run in runs if (r := _read_run(run, options, report)) is not None]
    if report.ignored_lines:
        report.notes.append(f"{report.ignored_lines} unreadable {STATE} file(s) ignored")
    return out, report
