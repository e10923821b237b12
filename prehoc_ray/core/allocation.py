"""Spending a probe budget across a portfolio (DESIGN.md section 2, "Portfolio allocation").

Minimise sum_i w_i L_i(c_i) subject to sum_i lambda_i c_i <= B. The KKT conditions give
c_i(gamma) = (w_i alpha_i K_i / (gamma lambda_i))^(1/(alpha_i+1)); gamma is found by bisection
in log space (water-filling). The greedy form used while probes return gives the next
increment to the candidates with the largest marginal variance reduction per unit cost.
Both are vectorised: a round over 10,000 candidates is a few numpy passes.
"""

from __future__ import annotations

import numpy as np


def marginal_reduction(
    K: np.ndarray,
    alpha: np.ndarray,
    depth: np.ndarray,
    increment: np.ndarray,
    weight: np.ndarray | float = 1.0,
) -> np.ndarray:
    """w (K c^-alpha - K (c+d)^-alpha): risk removed by probing d more steps from depth c.

    From depth 0 the envelope is undefined; callers start every candidate at an initial probe.
    """
    c = np.maximum(np.asarray(depth, float), 1e-9)
    d = np.asarray(increment, float)
    return np.asarray(weight, float) * K * (c ** (-alpha) - (c + d) ** (-alpha))


def greedy_pick(
    gain: np.ndarray,
    cost: np.ndarray,
    budget_left: float,
    slots: int,
    eligible: np.ndarray | None = None,
    gamma: float = 0.0,
) -> np.ndarray:
    """Indices of up to `slots` increments to run next, best risk reduction per unit cost first.

    gain: risk each increment removes (marginal_reduction; +inf for "must run", e.g. a
    candidate with too few depths to fit). An increment is picked only if it still pays at
    the price of risk gamma (gain > gamma * cost) and fits in what is left of the budget.
    Ties break by index, so the choice is deterministic.
    """
    gain = np.asarray(gain, float)
    cost = np.asarray(cost, float)
    ok = ~np.isnan(gain) & (gain > gamma * cost) & (cost > 0)
    if eligible is not None:
        ok &= eligible
    with np.errstate(invalid="ignore"):
        score = np.where(ok, gain / np.where(cost > 0, cost, 1.0), -np.inf)
    order = np.lexsort((np.arange(score.size), -score))
    picked: list[int] = []
    left = budget_left
    for i in order:
        if len(picked) >= slots or score[i] == -np.inf:
            break
        if cost[i] <= left:
            picked.append(int(i))
            left -= cost[i]
    return np.array(picked, dtype=int)


def water_fill(
    K: np.ndarray,
    alpha: np.ndarray,
    cost_per_step: np.ndarray,
    budget: float,
    c_min: np.ndarray | float,
    c_max: np.ndarray | float,
    weight: np.ndarray | float = 1.0,
    iters: int = 100,
) -> tuple[np.ndarray, float]:
    """Budget-optimal depths (clipped to [c_min, c_max]) and the multiplier gamma.

    If even c_max everywhere fits in the budget, returns c_max and gamma = 0.
    """
    K, alpha, lam = (np.asarray(v, float) for v in (K, alpha, cost_per_step))
    w = np.broadcast_to(np.asarray(weight, float), K.shape)
    lo_c = np.broadcast_to(np.asarray(c_min, float), K.shape)
    hi_c = np.broadcast_to(np.asarray(c_max, float), K.shape)
    if budget < 0:
        raise ValueError(f"budget must be >= 0, got {budget}")

    def depths(g: float) -> np.ndarray:
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
            c = (w * alpha * K / (g * lam)) ** (1.0 / (alpha + 1.0))
        return np.clip(np.nan_to_num(c, nan=0.0, posinf=np.inf), lo_c, hi_c)

    if float((lam * hi_c).sum()) <= budget:
        return hi_c.copy(), 0.0
    lo, hi = -80.0, 80.0  # log gamma
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        if float((lam * depths(np.exp(mid))).sum()) > budget:
            lo = mid
        else:
            hi = mid
    g = float(np.exp(hi))
    return depths(g), g
