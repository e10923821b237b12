"""A world from a team's own recorded fine-tunes: the trajectory table `prehoc-ray backtest` reads.

Columns (the `analyze` format): candidate, step, value, optional seed, group (the task; one
task when absent), horizon (the full run's steps; the last recorded step when absent), final
(the outcome of that candidate's full run: required, it is what picks are scored against),
optional cost_per_step (device-seconds per step per seed, default 1) and static_* features.
Every (candidate, seed) curve is a probe seed a policy can replay; a candidate's `final` is the
one finite value its rows carry (two different ones are an error). Probes may go as deep as the shallowest recorded curve when some
curves stop short of their horizon (recorded probes, not full runs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prehoc_ray.bench.worlds import Candidate, World
from prehoc_ray.io.errors import TrajectoryError
from prehoc_ray.io.trajectory_table import TrajectoryTable

COST_COLUMN = "cost_per_step"


def _cost_column(table: TrajectoryTable, label: str) -> np.ndarray:
    n = len(table)
    if COST_COLUMN not in table.extra:
        return np.ones(n)
    raw = table.extra[COST_COLUMN]
    try:
        cost = np.asarray(raw, float)
    except (TypeError, ValueError):
        bad = next(k for k, x in enumerate(raw) if not _is_number(x))
        raise TrajectoryError(
            f"{label}: column '{COST_COLUMN}' row {bad + 1}: expected a number > 0 "
            f"(device-seconds per step), got {_show(raw[bad])}"
        ) from None
    bad = np.flatnonzero(~(np.isfinite(cost) & (cost > 0)))
    if bad.size:
        k = int(bad[0])
        raise TrajectoryError(
            f"{label}: column '{COST_COLUMN}' row {k + 1}: expected a number > 0 "
            f"(device-seconds per step), got {_show(raw[k])}"
        )
    return cost


def _show(x) -> str:
    return repr(x.item()) if isinstance(x, np.generic) else repr(x)


def _is_number(x) -> bool:
    try:
        float(x)
        return True
    except (TypeError, ValueError):
        return False


def infer_eval_every(steps_per_curve: list[np.ndarray]) -> int:
    """The most common gap between consecutive evaluations (extra points between them, such as
    epoch boundaries, do not change it)."""
    gaps = np.concatenate([np.diff(s) for s in steps_per_curve if s.size > 1] or [np.array([1.0])])
    gaps = np.round(gaps[gaps > 0]).astype(int)
    if not gaps.size:
        return 1
    vals, counts = np.unique(gaps, return_counts=True)
    return max(1, int(vals[np.argmax(counts)]))


def table_world(
    table: TrajectoryTable,
    *,
    tolerance: float = 0.02,
    probe_seeds: int = 2,
    name: str | None = None,
    eval_every: int | None = None,
) -> World:
    """The table as a World: candidates with replayable seeds and the recorded final as truth.

    Raises TrajectoryError (one line, naming the file, column and row) when a candidate has no
    final or a cost is not a positive number.
    """
    label = str(table.source) if table.source is not None else "<table>"
    cost = _cost_column(table, label)
    cand = np.asarray(table.candidate).astype(str)
    missing = np.flatnonzero(~np.isfinite(np.asarray(table.final, float)))
    if missing.size:
        per_cand_has = {c for c, f in zip(cand, table.final) if np.isfinite(f)}
        for k in missing:
            if cand[k] not in per_cand_has:
                raise TrajectoryError(
                    f"{label}: column 'final' row {k + 1}: candidate {str(cand[k])!r} has no final; "
                    "backtest needs the outcome of every candidate's full run"
                )
    seed = np.asarray(table.seed, int)
    step = np.asarray(table.step, float)
    value = np.asarray(table.value, float)
    order = np.lexsort((step, seed, cand))
    bounds = np.flatnonzero(np.r_[True, cand[order][1:] != cand[order][:-1], True])
    static_names = sorted(table.static)
    cands: list[Candidate] = []
    curves_all: list[np.ndarray] = []
    shallow: list[tuple[float, float]] = []  # (deepest step every seed reached, horizon)
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        idx = order[lo:hi]
        cid = cand[idx[0]]
        curves = []
        for s in np.unique(seed[idx]):
            j = idx[seed[idx] == s]
            curves.append((step[j].copy(), value[j].copy()))
            curves_all.append(step[j])
        h = np.asarray(table.horizon, float)[idx]
        horizon = float(np.nanmax(h)) if np.isfinite(h).any() else float(step[idx].max())
        costs = np.unique(cost[idx])
        if costs.size > 1:
            raise TrajectoryError(
                f"{label}: column '{COST_COLUMN}' row {int(idx[np.argmax(cost[idx] != costs[0])]) + 1}: "
                f"candidate {str(cid)!r} has more than one cost per step ({costs[0]:g}, {costs[1]:g}); expected one"
            )
        fin = np.asarray(table.final, float)[idx]
        known = np.unique(fin[np.isfinite(fin)])
        if known.size > 1:
            row = int(idx[np.flatnonzero(np.isfinite(fin) & (fin != known[0]))[0]]) + 1
            raise TrajectoryError(
                f"{label}: column 'final' row {row}: candidate {str(cid)!r} has more than one final "
                f"({known[0]:g}, {known[1]:g}); expected the one outcome of its full run on every row"
            )
        static = {
            k[len("static_") :] if k.startswith("static_") else k: float(np.nanmean(table.static[k][idx]))
            if np.isfinite(table.static[k][idx]).any()
            else float("nan")
            for k in static_names
        }
        shallow.append((min(float(c[0][-1]) for c in curves), horizon))
        cands.append(
            Candidate(
                cid,
                str(table.group[idx[0]]),
                int(round(horizon)),
                float(costs[0]),
                static,
                tuple(curves),
                float(known[0]),  # the one final (checked above); a mean of copies may round
            )
        )
    e = eval_every or infer_eval_every(curves_all)
    reach = [d for d, h in shallow if d < h]
    cap = int(min(reach)) if reach else None
    if cap is not None and cap < e:
        raise TrajectoryError(
            f"{label}: column 'step': some curves stop at step {cap:g}, before one evaluation interval "
            f"({e}); expected probe curves of at least one interval"
        )
    src = Path(table.source).stem if table.source is not None else "table"
    return World(name or src, cands, e, tolerance, probe_seeds=probe_seeds, max_probe_depth=cap)


def portfolios(world: World, size: int, count: int, seed: int = 0) -> list[World]:
    """`count` worlds of `size` random candidates per task (all of a smaller task), drawn
    without replacement within a portfolio: the units a paired comparison needs when one table
    holds few tasks (the protocol of shared/reference/deberta-asha.md). Portfolios drawn from
    one table share candidates, so intervals over them are narrower than over independent
    portfolios would be; the report says so."""
    if size < 2:
        raise ValueError(f"portfolio size must be >= 2 candidates per task, got {size}")
    rng = np.random.default_rng(seed)
    groups = world.groups
    out = []
    for k in range(count):
        keep: list[int] = []
        for g in sorted(set(groups)):
            idx = np.flatnonzero(groups == g)
            keep += sorted(rng.choice(idx, size=min(size, idx.size), replace=False).tolist())
        keep.sort()
        out.append(
            World(
                f"{world.name}-p{k:02d}",
                [world.candidates[i] for i in keep],
                world.eval_every,
                world.tolerance,
                probe_seeds=world.probe_seeds,
                history=world.history,
                max_probe_depth=world.max_probe_depth,
            )
        )
    return out


def probe_cap_note(world: World) -> str | None:
    """A line for the user when some curves stop short and so cap every candidate's probes."""
    if world.max_probe_depth is None:
        return None
    short = [c.id for c in world.candidates if min(float(st[-1]) for st, _ in c.curves) <= world.max_probe_depth]
    return (
        f"note: probes stop at step {world.max_probe_depth} for every candidate, where the shortest recorded curves end "
        f"({', '.join(short[:3])}{' ...' if len(short) > 3 else ''}); the full-depth floor R_full is not measurable"
    )
