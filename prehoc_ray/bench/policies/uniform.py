"""Uniform probing: every candidate to the same depth, the engine's seed count and predictor.

Depth: the deepest multiple of eval_every that fits the budget for every candidate
(policies.uniform_depth) with the market's seed count; when two seeds do not fit even one
evaluation interval, one seed (a user with a small budget probes once rather than not at all).
Predictor: the engine's (mean over seeds of core.curves.extrapolate), so that prehoc vs
uniform isolates the allocation. Std of a new run's final: the spread of the seeds'
predictions, sqrt((1 + 1/S) var); NaN with a single seed or seeds that agree exactly.
"""

from __future__ import annotations

import numpy as np

from prehoc_ray.bench.market import Market
from prehoc_ray.bench.policies import PolicyResult, uniform_depth
from prehoc_ray.core.curves import extrapolate


def probe_all(market: Market, depth: int, seeds: int) -> None:
    e = market.eval_every
    for i, o in enumerate(market.candidates):
        d = min(depth, o.probe_cap - o.probe_cap % e)
        for s in range(seeds):
            if d > 0:
                market.probe(i, s, 0, d)


def seed_predictions(market: Market, i: int, seeds: int) -> np.ndarray:
    out = []
    for s in range(seeds):
        st, v = market.prefix(i, s)
        out.append(extrapolate(st, v, market.candidates[i].horizon) if st.size else np.nan)
    return np.array(out)


def depth_and_seeds(market: Market, seeds: int | None = None) -> tuple[int, int]:
    """The deepest uniform depth with the market's seeds, falling back to fewer seeds."""
    S = seeds or market.probe_seeds
    while S >= 1:
        d = uniform_depth(market, market.budget, S)
        if d > 0 or S == 1:
            return d, S
        S -= 1
    return 0, 1


def run(market: Market, *, seed: int = 0, seeds: int | None = None) -> PolicyResult:
    depth, S = depth_and_seeds(market, seeds)
    probe_all(market, depth, S)
    n = len(market.candidates)
    pred, std = np.full(n, np.nan), np.full(n, np.nan)
    for i in range(n):
        p = seed_predictions(market, i, S)
        p = p[np.isfinite(p)]
        if p.size:
            pred[i] = p.mean()
            if p.size >= 2 and np.var(p) > 0:
                std[i] = float(np.sqrt((1 + 1 / p.size) * np.var(p, ddof=1)))
    steps = np.array([market.depth(i) for i in range(n)], float)
    return PolicyResult("uniform", pred, std, market.spent, steps, info={"depth": depth, "seeds": S})
