"""Spending a probe budget across a portfolio, one round at a time (docs/design.md,
Portfolio allocation).

`marginal_reduction` is the risk w (K c^-alpha - K (c+d)^-alpha) that probing d more steps
removes from a candidate at depth c; `greedy_pick` gives the round's increments to the
candidates with the largest risk reduction per unit cost, as long as an increment still pays at
the price of risk gamma and fits what is left of the budget. Both are vectorised: a round over
10,000 candidates is a few numpy passes.
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
