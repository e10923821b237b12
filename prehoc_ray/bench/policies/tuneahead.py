"""TuneAhead-style (arXiv 2606.17660): one fixed-depth probe per candidate, static features +
probe features into a regressor trained on past runs.

Depth: the budget spread evenly over one seed per candidate (policies.uniform_depth).
Regressor: the core's calibrated GP (core.population.out_of_fold: the prefix's curve features
plus the static features, learning the correction to the last observed value), trained per
family on the market's past runs truncated at the same depth; one global conformal scale for
the intervals, as TuneAhead has one global interval. TuneAhead itself uses gradient boosting;
the GP is what this project ships, and it gives calibrated intervals.
"""

from __future__ import annotations

import numpy as np

from prehoc_ray.bench.market import Market
from prehoc_ray.bench.policies import PolicyResult, uniform_depth
from prehoc_ray.bench.policies.static_only import population_predict
from prehoc_ray.bench.policies.uniform import probe_all


def run(market: Market, *, seed: int = 0) -> PolicyResult:
    depth = uniform_depth(market, market.budget, 1)
    probe_all(market, depth, 1)
    n = len(market.candidates)
    prefixes = {i: market.prefix(i, 0) for i in range(n)}
    pred, std = population_predict(market, float(depth), prefixes, use_curve=depth > 0, seed=seed)
    steps = np.array([market.depth(i) for i in range(n)], float)
    return PolicyResult("tuneahead", pred, std, market.spent, steps, info={"depth": depth})
