"""Static-only: decide from static signals with no probe (cost 0).

Predictor: the core's calibrated GP (core.population.out_of_fold with use_curve=False) on the
candidates' static features, trained per family on the world's past runs (world.history).
Without at least MIN_POPULATION past runs in a family there is nothing to learn the mapping
from, and the family gets no prediction (the metrics then treat it as a random pick).
"""

from __future__ import annotations

import numpy as np

from prehoc_ray.bench.policies import PolicyResult
from prehoc_ray.bench.worlds import Candidate, World
from prehoc_ray.core.observations import CandidateCurves
from prehoc_ray.core.population import predict_from_history


def as_curves(c: Candidate, static_names: list[str], final: float, prefix: tuple[np.ndarray, np.ndarray] | None = None) -> CandidateCurves:
    st, v = prefix if prefix is not None else c.curve(0)
    return CandidateCurves(c.id, c.group, float(c.horizon), final, np.array([c.static[k] for k in static_names], float),
                           {0: (np.asarray(st, float), np.asarray(v, float))})


def population_predict(world: World, depth: float, prefixes: dict[int, tuple[np.ndarray, np.ndarray]] | None,
                       use_curve: bool, level: float = 0.9, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per family: core.population.predict_from_history on the world's history, every candidate
    at `depth` (its prefix in `prefixes`; none when use_curve is False)."""
    n = len(world.candidates)
    pred, std = np.full(n, np.nan), np.full(n, np.nan)
    names = sorted(world.candidates[0].static) if world.candidates else []
    d = float(depth) if use_curve else 0.0
    for g in sorted(set(world.groups)):
        hist = [as_curves(h, names, h.true_final) for h in world.history if h.group == g]
        idx = [i for i, c in enumerate(world.candidates) if c.group == g]
        pool = [as_curves(world.candidates[i], names, float("nan"), prefixes.get(i) if prefixes and use_curve else (np.zeros(0), np.zeros(0)))
                for i in idx]
        pred[idx], std[idx] = predict_from_history(hist, pool, np.full(len(idx), d), level=level, seed=seed)
    return pred, std


def run(world: World, budget: float, *, seed: int = 0) -> PolicyResult:
    pred, std = population_predict(world, 0.0, None, use_curve=False, seed=seed)
    n = len(world.candidates)
    return PolicyResult("static_only", pred, std, 0.0, np.zeros(n), info={"history": len(world.history)})
