"""Learning-curve extrapolation of each curve alone at a fixed depth (Domhan et al. / LC-PFN
style, with the core's extrapolator).

One seed per candidate, all to the same depth (the budget spread evenly). Predictor:
core.curves.extrapolate on the candidate's own prefix, nothing shared across candidates.
Std: a residual bootstrap of the prefix (the saturating power law refitted on resampled
residuals, each replicate extrapolated the same way); it measures the fit's uncertainty
only, not the run-to-run variance of the full fine-tune.
"""

from __future__ import annotations

import numpy as np

from prehoc_ray.bench.market import Market
from prehoc_ray.bench.policies import PolicyResult, uniform_depth
from prehoc_ray.bench.policies.uniform import probe_all
from prehoc_ray.core.curves import _EXPONENTS, extrapolate
from prehoc_ray.core.powerlaw import profile_fit


def bootstrap_std(
    steps: np.ndarray, values: np.ndarray, horizon: float, n_boot: int, rng: np.random.Generator
) -> float:
    if steps.size < 4:
        return float("nan")
    w = steps / steps[-1]
    a, b, e, _ = profile_fit(steps, values, w, _EXPONENTS)
    fitted = a + b * steps ** (-e)
    resid = values - fitted
    reps = [extrapolate(steps, fitted + rng.choice(resid, resid.size), horizon) for _ in range(n_boot)]
    return float(np.std(reps, ddof=1))


def run(market: Market, *, seed: int = 0, n_boot: int = 30) -> PolicyResult:
    depth = uniform_depth(market, market.budget, 1)
    probe_all(market, depth, 1)
    rng = np.random.default_rng(seed)
    n = len(market.candidates)
    pred, std = np.full(n, np.nan), np.full(n, np.nan)
    for i, o in enumerate(market.candidates):
        st, v = market.prefix(i, 0)
        if st.size:
            pred[i] = extrapolate(st, v, o.horizon)
            std[i] = bootstrap_std(st, v, o.horizon, n_boot, rng)
    steps = np.array([market.depth(i) for i in range(n)], float)
    return PolicyResult("lc_extrapolation", pred, std, market.spent, steps, info={"depth": depth})
