import numpy as np

from prehoc_ray.core.allocation import greedy_pick, marginal_reduction


def test_greedy_prefers_value_per_cost_and_respects_budget():
    K = np.array([1.0, 1.0, 1.0])
    a = np.array([0.5, 0.5, 0.5])
    depth = np.array([10.0, 100.0, 10.0])
    inc = np.full(3, 10.0)
    cost = np.array([1.0, 1.0, 5.0]) * inc
    gain = marginal_reduction(K, a, depth, inc)
    assert np.all(gain > 0)
    picked = greedy_pick(gain, cost, budget_left=1000, slots=2)
    # Candidate 0 removes the most risk per second; candidate 2 as much risk but 5x the cost,
    # candidate 1 less risk (deeper already) at the same cost.
    assert picked[0] == 0 and len(picked) == 2
    assert len(greedy_pick(gain, cost, budget_left=5, slots=3)) == 0
    # A price of risk above every gain stops probing; a must-run increment goes first.
    assert len(greedy_pick(gain, cost, budget_left=1e9, slots=3, gamma=1.0)) == 0
    must = gain.copy()
    must[1] = np.inf
    assert greedy_pick(must, cost, budget_left=1e9, slots=1)[0] == 1
