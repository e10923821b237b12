"""ASHA through Ray Tune's own AsyncHyperBandScheduler on 8 replayed trials."""

import numpy as np
import pytest

from prehoc_ray.bench.policies.asha import asha_expected_iters, asha_grace_period
from prehoc_ray.bench.worlds import synthetic_world


def test_grace_period_sizing_fits_the_budget():
    w = synthetic_world(8, seed=0, n_history=0)
    b = 0.2 * w.full_cost
    g = asha_grace_period(w, b)
    lam = np.mean([c.cost_per_step for c in w.candidates]) * w.eval_every
    assert asha_expected_iters(8, g, 4, 100) * lam <= b < asha_expected_iters(8, g + 1, 4, 100) * lam
    # Successive halving on 4^k trials: each rung costs the same as the first.
    assert asha_expected_iters(16, 1, 4, 16) == pytest.approx(16 * 1 + 4 * 3 + 1 * 12)


@pytest.mark.slow
@pytest.mark.ray
def test_asha_with_ray_tune_respects_the_budget_and_stops_trials():
    from prehoc_ray.bench.metrics import evaluate
    from prehoc_ray.bench.policies import asha

    w = synthetic_world(8, seed=3, n_history=0)
    budget = 0.25 * w.full_cost
    r = asha.run(w, budget, seed=0, concurrency=2)
    assert r.spent <= budget * (1 + 1e-9)
    assert r.info["trials"] == 8
    reached = r.probe_steps[r.probe_steps > 0]
    assert reached.size >= 2
    # Ray's scheduler stopped some trials at a rung while others went on.
    assert reached.min() < reached.max()
    # Ray's own pick (best last reported value) exists for every family that got a trial.
    assert set(r.native_pick) == {w.candidates[i].group for i in np.flatnonzero(r.probe_steps > 0)}
    m = evaluate(w, r, budget)
    assert np.isfinite(m["regret"]) and np.isnan(m["coverage"])
