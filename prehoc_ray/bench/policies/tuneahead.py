"""TuneAhead-style (arXiv 2606.17660): one fixed-depth probe per candidate, static features +
probe features into a regressor trained on past runs.

Depth: the budget spread evenly over one seed per candidate (policies.uniform_depth).
Regressor: the core's calibrated GP (core.population.out_of_fold: the prefix's curve features
plus the static features, learning the correction to the last observed value), trained per
family on the world's history truncated at the same depth; one global conformal scale for the
intervals, as TuneAhead has one global interval. TuneAhead itself uses gradient boosting; the
GP is what this project ships, and it gives calibrated intervals.
"""

from __future__ import annotations

import numpy as np

from prehoc_ray.bench.policies import PolicyResult, uniform_depth
from prehoc_ray.bench.policies.static_only import population_predict
from prehoc_ray.bench.policies.uniform import probe_all
from prehoc_ray.bench.replay import Replay
from prehoc_ray.bench.worlds import World


def run(world: World, budget: float, *, seed: int = 0) -> PolicyResult:
    replay = Replay(world, budget)
    depth = uniform_depth(world, budget, 1)
    probe_all(world, replay, depth, 1)
    n = len(world.candidates)
    prefixes = {i: replay.prefix(i, 0) for i in range(n)}
    pred, std = population_predict(world, float(depth), prefixes, use_curve=depth > 0, seed=seed)
    steps = np.array([replay.depth(i) for i in range(n)], float)
    return PolicyResult("tuneahead", pred, std, replay.spent, steps, info={"depth": depth})
