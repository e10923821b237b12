"""Imported runs -> the history table (`history:` / `prehoc-ray analyze` format).

The one place that decides what a past run's `final` and `horizon` are, so every source
kind follows the same rule (README "Importing past runs"):

- horizon: `--horizon` when given; else what the source records as the run's full length
  (a tracker column mapped to `horizon`, a Trainer's `max_steps`); else the longest run of
  the same group (the runs a team trained to completion are the longest ones there).
- final: a mapped `final` column when given; else the run's last value at or before its
  horizon, when the run trained up to its horizon (Trainer `global_step` >= horizon, or its
  last observed step >= horizon); a run stopped earlier (early-stopped, crashed) keeps its
  curve with no final: the population model learns finals only from finished runs.
- points after the horizon are dropped (they are not part of the run being predicted).

A table that reads back as it was written is the contract: the result is validated by the
same parser `read_trajectories` uses before anyone writes it.
"""

from __future__ import annotations

import math
from collections import defaultdict

import pyarrow as pa

from prehoc_ray.io.history_runs import HistoryImportError, ImportedRun, ImportOptions
from prehoc_ray.io.trajectory_table import TrajectoryTable
from prehoc_ray.types import CANDIDATE, FINAL, GROUP, HORIZON, SEED, STEP, VALUE

_REL = 1e-9  # steps are counted in floats: 100.0 reached 100


def _group_lengths(runs: list[ImportedRun]) -> dict[str, float]:
    longest: dict[str, float] = defaultdict(float)
    for run in runs:
        longest[run.group] = max(longest[run.group], run.end_step)
    return longest


def _horizon(run: ImportedRun, options: ImportOptions, longest: dict[str, float]) -> float:
    for given in (options.horizon, run.horizon, run.planned_steps):
        if given is not None and math.isfinite(given) and given > 0:
            return float(given)
    return longest[run.group]


def _check_unique(runs: list[ImportedRun]) -> None:
    seen: dict[tuple[str, int], ImportedRun] = {}
    group_of: dict[str, ImportedRun] = {}
    for run in runs:
        key = (run.candidate, run.seed)
        if key in seen:
            raise HistoryImportError(
                f"{seen[key].origin} and {run.origin}: both are candidate {run.candidate!r} seed {run.seed}; expected one "
                "run per (candidate, seed): give --seed-key (or a seed column) or --candidate-keys that tell them apart"
            )
        seen[key] = run
        first = group_of.setdefault(run.candidate, run)
        if first.group != run.group:
            raise HistoryImportError(
                f"{first.origin} and {run.origin}: candidate {run.candidate!r} is in group {first.group!r} and "
                f"{run.group!r}; expected one group per candidate: add the group key to --candidate-keys"
            )


def _static_consistent(runs: list[ImportedRun]) -> list[str]:
    """Static columns that differ between runs of one candidate (dropped, with a note:
    a static feature describes the candidate, not one of its seeds)."""
    by_cand: dict[str, dict[str, float]] = {}
    bad: set[str] = set()
    for run in runs:
        ref = by_cand.setdefault(run.candidate, run.static)
        for name in set(ref) | set(run.static):
            if ref.get(name) != run.static.get(name):
                bad.add(name)
    for run in runs:
        if bad & set(run.static) and run.report is not None:
            note = f"{', '.join(sorted(bad))} dropped (differs between runs of one candidate)"
            if note not in run.report.notes:
                run.report.notes.append(note)
    return sorted(bad)


def assemble(runs: list[ImportedRun], options: ImportOptions) -> pa.Table:
    """The history table of `runs` (validated), rows ordered by candidate, seed, step.

    Raises HistoryImportError when no run is left, or runs collide on (candidate, seed).
    """
    longest = _group_lengths(runs)
    kept: list[tuple[ImportedRun, float, float, int]] = []  # run, horizon, final, points kept
    for run in runs:
        horizon = _horizon(run, options, longest)
        n_in = sum(1 for s in run.steps if s <= horizon * (1 + _REL))
        if n_in == 0:
            if run.report is not None:
                run.report.read -= 1
                run.report.points -= len(run.steps)
                run.report.skip(f"no point at or before its horizon {horizon:g}")
            continue
        if run.final is not None and math.isfinite(run.final):
            final = float(run.final)
        elif run.end_step >= horizon * (1 - _REL):
            final = run.values[n_in - 1]
        else:
            final = math.nan
        if run.report is not None:
            dropped = len(run.steps) - n_in
            run.report.points -= dropped
            run.report.finals += int(math.isfinite(final))
        kept.append((run, horizon, final, n_in))
    if not kept:
        raise HistoryImportError("no run to write: every source was empty or skipped (see the lines above)")
    kept.sort(key=lambda item: (item[0].candidate, item[0].seed))
    runs_kept = [item[0] for item in kept]
    _check_unique(runs_kept)
    bad_static = set(_static_consistent(runs_kept))
    static_names = sorted({name for run in runs_kept for name in run.static} - bad_static)
    cols: dict[str, list] = {name: [] for name in (CANDIDATE, SEED, GROUP, STEP, VALUE, FINAL, HORIZON, *static_names)}
    for run, horizon, final, n_in in kept:
        cols[CANDIDATE] += [run.candidate] * n_in
        cols[SEED] += [run.seed] * n_in
        cols[GROUP] += [run.group] * n_in
        cols[STEP] += run.steps[:n_in]
        cols[VALUE] += run.values[:n_in]
        cols[FINAL] += [None if math.isnan(final) else final] * n_in
        cols[HORIZON] += [horizon] * n_in
        for name in static_names:
            cols[name] += [run.static.get(name)] * n_in
    types = {CANDIDATE: pa.string(), SEED: pa.int64(), GROUP: pa.string()}
    table = pa.table({name: pa.array(values, type=types.get(name, pa.float64())) for name, values in cols.items()})
    TrajectoryTable.from_arrow(table, name="<imported history>")  # the reader's contract, before any write
    return table
