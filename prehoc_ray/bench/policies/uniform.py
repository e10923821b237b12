"""Uniform probing: every candidate to the same depth, the engine's seed count and predictor.

Depth: the deepest multiple of eval_every that fits the budget for every candidate
(policies.uniform_depth). Predictor: the engine's (mean over seeds of core.curves.extrapolate),
so that prehoc vs uniform isolates the allocation. Std of a new run's final: the spread of
the seeds' predictions, sqrt((1 + 1/S) var); NaN when the seeds agree exactly (a world
without seed replicates) or there is a single seed.
"""

from __future__ import annotations

import numpy as np

from prehoc_ray.bench.policies import PolicyResult, uniform_depth
from prehoc_ray.bench.replay import Replay
from prehoc_ray.bench.worlds import World
from prehoc_ray.core.curves import extrapolate


def probe_all(world: World, replay: Replay, depth: int, seeds: int) -> None:
    e = world.eval_every
    for i, c in enumerate(world.candidates):
        cap = world.probe_cap(c)
        d = min(depth, cap - cap % e)
        for s in range(seeds):
            if d > 0:
                replay.probe(i, s, 0, d)


def seed_predictions(world: World, replay: Replay, i: int, seeds: int) -> np.ndarray:
    out = []
    for s in range(seeds):
        st, v = replay.prefix(i, s)
        out.append(extrapolate(st, v, world.candidates[i].horizon) if st.size else np.nan)
    return np.array(out)


def run(world: World, budget: float, *, seed: int = 0, seeds: int | None = None) -> PolicyResult:
    S = seeds or world.probe_seeds
    replay = Replay(world, budget)
    depth = uniform_depth(world, budget, S)
    probe_all(world, replay, depth, S)
    n = len(world.candidates)
    pred, std = np.full(n, np.nan), np.full(n, np.nan)
    for i in range(n):
        p = seed_predictions(world, replay, i, S)
        p = p[np.isfinite(p)]
        if p.size:
            pred[i] = p.mean()
            if p.size >= 2 and np.var(p) > 0:
                std[i] = float(np.sqrt((1 + 1 / p.size) * np.var(p, ddof=1)))
    steps = np.array([replay.depth(i) for i in range(n)], float)
    return PolicyResult("uniform", pred, std, replay.spent, steps, info={"depth": depth, "seeds": S})
