"""The core's view of a trajectory table: plain numpy arrays, one entry per observation.

The I/O layer reads files into this shape (and validates them); the synthetic generator and
the execution layer build it directly. Nothing here reads files or knows about Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class CandidateCurves:
    """Everything observed about one candidate: its seeds' curves and its static features."""

    candidate: str
    group: str
    horizon: float
    final: float  # mean realised final over seeds that have one; NaN when unknown
    static: np.ndarray  # one value per static feature name (NaN where missing)
    seeds: dict[int, tuple[np.ndarray, np.ndarray]]  # seed -> (steps, values), sorted by step

    def truncated(self, depth: float) -> CandidateCurves:
        seeds = {s: (st[st <= depth], v[st <= depth]) for s, (st, v) in self.seeds.items()}
        return CandidateCurves(self.candidate, self.group, self.horizon, self.final, self.static, seeds)

    def mean_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """Seed-averaged curve on the union of steps (each step averages the seeds that have it)."""
        steps = [st for st, _ in self.seeds.values() if st.size]
        if not steps:
            return np.empty(0), np.empty(0)
        allst = np.concatenate(steps)
        allv = np.concatenate([v for st, v in self.seeds.values() if st.size])
        uniq, inv = np.unique(allst, return_inverse=True)
        return uniq, np.bincount(inv, weights=allv) / np.bincount(inv)

    @property
    def max_step(self) -> float:
        return max((float(st[-1]) for st, _ in self.seeds.values() if st.size), default=0.0)

    def ended_early(self) -> dict[int, float]:
        """Seeds that stopped before the others: seed -> its last step.

        A seed ended early when another went on by more than its own evaluation interval (the
        median gap between its evaluations; the deepest seed's for a seed evaluated once): it
        missed an evaluation it would have had, so it crashed or was cut, it did not finish.
        Its last value is no final, and carried forward it would pose as one. Only when the
        seeds that went on are at least as many as those that stopped early: when most seeds
        stopped before the deepest, the deepest is taken for the odd one out (a run continued
        past the others) and nothing is left out."""
        last = {s: float(st[-1]) for s, (st, _) in self.seeds.items() if st.size}
        if len(last) < 2:
            return {}
        deepest = max(last, key=last.__getitem__)
        top = last[deepest]

        def gap(steps: np.ndarray) -> float:
            return float(np.median(np.diff(steps))) if steps.size >= 2 else float("nan")

        fallback = gap(self.seeds[deepest][0])
        out = {}
        for s, end in last.items():
            g = gap(self.seeds[s][0])
            g = g if np.isfinite(g) else fallback
            if np.isfinite(g) and end + g < top:
                out[s] = end
        return out if len(last) - len(out) >= len(out) else {}

    def without_seeds(self, drop: set[int] | dict[int, float]) -> CandidateCurves:
        seeds = {s: sv for s, sv in self.seeds.items() if s not in drop}
        return CandidateCurves(self.candidate, self.group, self.horizon, self.final, self.static, seeds)


@dataclass(frozen=True)
class Observations:
    """Columns of the trajectory format (see prehoc_ray.types)."""

    candidate: np.ndarray
    step: np.ndarray
    value: np.ndarray
    seed: np.ndarray | None = None
    group: np.ndarray | None = None
    final: np.ndarray | None = None
    horizon: np.ndarray | None = None
    static: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.candidate)
        for name in ("step", "value", "seed", "group", "final", "horizon"):
            arr = getattr(self, name)
            if arr is not None and len(arr) != n:
                raise ValueError(f"column '{name}' has {len(arr)} rows, expected {n}")
        for name, arr in self.static.items():
            if len(arr) != n:
                raise ValueError(f"column '{name}' has {len(arr)} rows, expected {n}")

    @property
    def static_names(self) -> list[str]:
        return sorted(self.static)

    def per_candidate(self, horizon: float | None = None) -> list[CandidateCurves]:
        """Group rows by candidate (sorted by id).

        Horizon: the `horizon` argument if given, else the candidate's `horizon` column, else
        its longest observed step (a finished run's length).
        """
        cand = np.asarray(self.candidate).astype(str)
        step = np.asarray(self.step, float)
        value = np.asarray(self.value, float)
        seed = np.zeros(len(cand), int) if self.seed is None else np.asarray(self.seed, int)
        group = np.full(len(cand), "all", object) if self.group is None else np.asarray(self.group).astype(str)
        final = np.full(len(cand), np.nan) if self.final is None else np.asarray(self.final, float)
        hcol = np.full(len(cand), np.nan) if self.horizon is None else np.asarray(self.horizon, float)
        names = self.static_names
        order = np.lexsort((step, seed, cand))
        out: list[CandidateCurves] = []
        bounds = np.flatnonzero(np.r_[True, cand[order][1:] != cand[order][:-1], True])
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            idx = order[lo:hi]
            seeds: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            finals = []
            for s in np.unique(seed[idx]):
                j = idx[seed[idx] == s]
                seeds[int(s)] = (step[j], value[j])
                f = final[j][np.isfinite(final[j])]
                if f.size:
                    finals.append(float(f[0]))
            h = (
                horizon
                if horizon is not None
                else (np.nanmax(hcol[idx]) if np.isfinite(hcol[idx]).any() else float(step[idx].max()))
            )
            stat = np.array(
                [
                    np.nanmean(self.static[nm][idx].astype(float))
                    if np.isfinite(self.static[nm][idx].astype(float)).any()
                    else np.nan
                    for nm in names
                ]
            )
            out.append(
                CandidateCurves(
                    str(cand[idx[0]]),
                    str(group[idx[0]]),
                    float(h),
                    float(np.mean(finals)) if finals else np.nan,
                    stat,
                    seeds,
                )
            )
        return out
