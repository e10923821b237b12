import numpy as np
from hypothesis import given, settings, strategies as st
from scipy.optimize import minimize

from prehoc_ray.core.allocation import greedy_pick, marginal_reduction, water_fill


def test_water_fill_matches_a_generic_solver():
    rng = np.random.default_rng(0)
    n = 6
    K = rng.uniform(0.01, 1, n)
    a = rng.uniform(0.2, 1.2, n)
    lam = rng.uniform(0.5, 2, n)
    B = 500.0
    c, g = water_fill(K, a, lam, B, c_min=1.0, c_max=1e6)
    assert np.isclose((lam * c).sum(), B, rtol=1e-6)
    risk = lambda x: float(np.sum(K * np.exp(x) ** -a))  # noqa: E731
    cons = {"type": "eq", "fun": lambda x: float((lam * np.exp(x)).sum() - B)}
    ref = minimize(risk, np.log(np.full(n, B / lam.sum() / n)), constraints=[cons], method="SLSQP")
    assert risk(np.log(c)) <= ref.fun * (1 + 1e-4)


@settings(max_examples=30, deadline=None)
@given(B=st.floats(10, 1e5), seed=st.integers(0, 1000))
def test_water_fill_respects_budget_and_bounds(B, seed):
    rng = np.random.default_rng(seed)
    K, a, lam = rng.uniform(0.01, 1, 20), rng.uniform(0.1, 2, 20), rng.uniform(0.1, 3, 20)
    c, _ = water_fill(K, a, lam, B, c_min=0.0, c_max=1000.0)
    assert np.all((c >= 0) & (c <= 1000.0))
    assert (lam * c).sum() <= B * (1 + 1e-6) + 1e-9


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
