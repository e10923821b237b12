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
from prehoc_ray.core.population import MIN_POPULATION, CalibratedPredictor, feature_matrix, impute


def as_curves(c: Candidate, static_names: list[str], final: float, prefix: tuple[np.ndarray, np.ndarray] | None = None) -> CandidateCurves:
    st, v = prefix if prefix is not None else c.curve(0)
    return CandidateCurves(c.id, c.group, float(c.horizon), final, np.array([c.static[k] for k in static_names], float),
                           {0: (np.asarray(st, float), np.asarray(v, float))})


def population_predict(world: World, depth: float, prefixes: dict[int, tuple[np.ndarray, np.ndarray]] | None,
                       use_curve: bool, level: float = 0.9, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per family: GP trained on the history (truncated at `depth`), predicting the candidates.

    The same steps as core.population.out_of_fold for candidates without a known final (GP on
    the correction to the last observed value, imputation, conformal scale, clipping to the
    training range widened by a tenth), minus the cross-fitting of the history itself, which
    the benchmark does not need.
    """
    n = len(world.candidates)
    pred, std = np.full(n, np.nan), np.full(n, np.nan)
    names = sorted(world.candidates[0].static) if world.candidates else []
    for g in sorted(set(world.groups)):
        hist = [as_curves(h, names, h.true_final) for h in world.history if h.group == g]
        if len(hist) < MIN_POPULATION:
            continue
        idx = [i for i, c in enumerate(world.candidates) if c.group == g]
        pool = [as_curves(world.candidates[i], names, float("nan"), prefixes.get(i) if prefixes else (np.zeros(0), np.zeros(0)))
                for i in idx]
        Xh = feature_matrix(hist, np.full(len(hist), float(depth)), use_curve)
        Xp = feature_matrix(pool, np.full(len(pool), float(depth)), use_curve)
        y = np.array([h.final for h in hist])
        # Column 1 of the curve features is the last observed value: the baseline the GP corrects.
        base_h = Xh[:, 1] if use_curve else np.full(len(hist), y.mean())
        base_p = np.where(np.isfinite(Xp[:, 1]), Xp[:, 1], y.mean()) if use_curve else np.full(len(pool), y.mean())
        Xtr, Xte = impute(Xh, Xp, fallback=float(y.mean()))
        model = CalibratedPredictor(level, seed).fit(Xtr, y - base_h)
        m, sd = model.predict(Xte)
        lo, hi = float(y.min()), float(y.max())
        pred[idx] = np.clip(base_p + m, lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo))
        std[idx] = sd
    return pred, std


def run(world: World, budget: float, *, seed: int = 0) -> PolicyResult:
    pred, std = population_predict(world, 0.0, None, use_curve=False, seed=seed)
    n = len(world.candidates)
    return PolicyResult("static_only", pred, std, 0.0, np.zeros(n), info={"history": len(world.history)})
