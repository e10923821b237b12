"""The full fine-tune budget's knapsack past the 16 tasks where it used to turn greedy: exact
against every subset of 18 tasks, and against dynamic programming's optimum at 300."""

from __future__ import annotations

import numpy as np
import pytest

from prehoc_ray.core.decisions import knapsack


def _every_subset_best(v: np.ndarray, c: np.ndarray, budget: float) -> tuple[float, int, float]:
    """(value, tasks, cost) of the best subset by the plan's order: most value, then most tasks,
    then cheapest; all 2^n subsets at once."""
    n = v.size
    bits = (np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1
    val, cost, count = bits @ v, bits @ c, bits.sum(1)
    ok = cost <= budget + 1e-9
    val, cost, count = val[ok], cost[ok], count[ok]
    top = val.max()
    tie = val >= top - 1e-9 * max(1.0, abs(top))
    most = count[tie].max()
    tie &= count == most
    return float(top), int(most), float(cost[tie].min())


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eighteen_tasks_match_every_subset(seed):
    rng = np.random.default_rng(seed)
    n = 18
    v = rng.uniform(0, 1, n).round(3)
    v[rng.choice(n, 4, replace=False)] = 0.0  # tasks without a baseline: no margin, funded as they fit
    c = rng.integers(1, 40, n).astype(float)
    budget = float(c.sum() / 3)
    got = knapsack(v, c, budget)
    value, tasks, cost = _every_subset_best(v, c, budget)
    assert c[got].sum() <= budget
    assert v[got].sum() == pytest.approx(value, abs=1e-9)
    assert len(got) == tasks
    assert c[got].sum() == pytest.approx(cost)


def _dp_best_value(v: np.ndarray, c: np.ndarray, budget: int) -> float:
    """The 0-1 knapsack optimum by dynamic programming over integer costs (exact)."""
    best = np.zeros(budget + 1)
    for vi, ci in zip(v, c.astype(int)):
        if ci <= budget:
            best[ci:] = np.maximum(best[ci:], best[: budget + 1 - ci] + vi)
    return float(best[budget])


def test_three_hundred_tasks_reach_the_optimum():
    rng = np.random.default_rng(11)
    n = 300
    # integer values and costs: sums are exact, so the optimum is one number, not a tolerance
    v = rng.integers(1, 100, n).astype(float)
    c = rng.integers(5, 60, n).astype(float)
    budget = 2000
    got = knapsack(v, c, float(budget))
    assert c[got].sum() <= budget
    optimum = _dp_best_value(v, c, budget)
    assert v[got].sum() == optimum
    # greedy by value per cost (what the plan did past 16 tasks) falls short of it here
    left, greedy = float(budget), 0.0
    for i in np.argsort(-v / c, kind="stable"):
        if c[i] <= left:
            left -= c[i]
            greedy += v[i]
    assert greedy < optimum
