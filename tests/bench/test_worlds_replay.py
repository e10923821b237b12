"""Worlds carry replayable curves and ground truth; the replay charges per step and refuses
anything past the budget."""

import numpy as np
import pytest

from prehoc_ray.bench.policies import uniform_depth
from prehoc_ray.bench.replay import BudgetExceeded, Replay
from prehoc_ray.bench.worlds import deberta_world, synthetic_world


@pytest.fixture(scope="module")
def world():
    return synthetic_world(12, seed=1, n_history=8)


def test_synthetic_world_has_families_truth_and_history(world):
    assert len(world.candidates) == 12
    assert sorted(set(world.groups)) == ["g0-static_sufficient", "g1-dynamic_critical", "g2-noise_dominant"]
    assert len(world.history) == 3 * 8
    assert not {c.id for c in world.history} & {c.id for c in world.candidates}
    assert list(world.truth["candidate"]) == [c.id for c in world.candidates]
    np.testing.assert_allclose(world.truth["true_final"], world.true_finals)
    c = world.candidates[0]
    st, v = c.curve(0)
    assert st[0] == world.eval_every and st[-1] == c.horizon and np.all(np.diff(st) > 0)
    assert world.full_cost == pytest.approx(sum(c.cost_per_step * c.horizon for c in world.candidates))


def test_replay_charges_per_step_and_refuses_past_the_budget(world):
    c = world.candidates[0]
    r = Replay(world, budget=c.cost_per_step * 100)
    st, v, cost = r.probe(0, 0, 0, 60)
    assert cost == pytest.approx(c.cost_per_step * 60)
    assert np.all((st > 0) & (st <= 60)) and st.size == 3
    st2, _, _ = r.probe(0, 0, 60, 100)  # resumes from the checkpoint: only the new points
    assert st2.min() > 60
    with pytest.raises(BudgetExceeded):
        r.probe(1, 0, 0, 20)
    assert r.spent <= r.budget
    np.testing.assert_array_equal(r.prefix(0, 0)[0], c.curve(0)[0][c.curve(0)[0] <= 100])


def test_uniform_depth_is_the_deepest_affordable(world):
    lam = sum(c.cost_per_step for c in world.candidates)
    d = uniform_depth(world, lam * 2 * 95, seeds=2)
    assert d == 80  # multiples of eval_every=20
    assert uniform_depth(world, lam * 2 * 5, seeds=2) == 0


def test_deberta_world_is_real_recorded_runs():
    w = deberta_world(5, 2, seed=0, n_history=10)
    assert len(w.candidates) == 10 and len(w.history) == 20
    for c in w.candidates:
        st, v = c.curve(0)
        assert c.n_seeds == 1 and c.curve(1) is c.curve(0)  # no seed replicates in recorded data
        assert c.true_final == v[-1] and st[-1] == c.horizon
        assert 0.3 < c.true_final < 1.0
