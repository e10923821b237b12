import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

from prehoc_ray.core.budget import c_star, choose_depth, default_gamma, objective


@settings(max_examples=60, deadline=None)
@given(
    L=st.floats(0, 1e-2),
    K=st.floats(1e-3, 10),
    a=st.floats(0.05, 3),
    gamma=st.floats(1e-8, 1e-3),
    lam=st.floats(0.01, 10),
)
def test_c_star_minimises_J(L, K, a, gamma, lam):
    cs = float(c_star(a, K, gamma, lam, c_min=1e-9, horizon=np.inf))
    # Compare against a numerical minimiser in log depth.
    res = minimize_scalar(
        lambda x: float(objective(np.exp(x), L, K, a, gamma, lam)),
        bounds=(-20, 60),
        method="bounded",
        options={"xatol": 1e-10},
    )
    J = lambda c: float(objective(c, L, K, a, gamma, lam))  # noqa: E731
    assert J(cs) <= J(np.exp(res.x)) * (1 + 1e-6) + 1e-15


def test_c_star_formula_and_clipping():
    assert float(c_star(0.5, 2.0, 1e-4, 1.0)) == pytest.approx((0.5 * 2.0 / 1e-4) ** (1 / 1.5))
    assert float(c_star(0.5, 2.0, 1e-4, 1.0, horizon=100)) == 100
    assert float(c_star(0.5, 1e-12, 1.0, 1.0, c_min=5)) == 5


def test_c_star_does_not_depend_on_floor_but_no_probe_comparison_does():
    a = choose_depth(0.0, 0.1, 0.5, L0=0.2, gamma=1e-5, cost_per_step=1.0)
    b = choose_depth(0.05, 0.1, 0.5, L0=0.2, gamma=1e-5, cost_per_step=1.0)
    assert float(a.c_star) == float(b.c_star)
    cheap_static = choose_depth(0.0, 0.1, 0.5, L0=1e-6, gamma=1e-5, cost_per_step=1.0)
    assert not bool(cheap_static.probe) and float(cheap_static.depth) == 0.0
    assert bool(a.probe)


def test_bad_inputs_and_default_gamma():
    with pytest.raises(ValueError, match="gamma"):
        c_star(0.5, 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="cost_per_step"):
        c_star(0.5, 1.0, 1.0, -1.0)
    assert default_gamma(0.02, 1.0, 1000) == pytest.approx(4e-7)
