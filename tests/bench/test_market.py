"""The Market sells observations under a budget and reveals nothing else."""

import numpy as np
import pytest

from prehoc_ray.bench.market import BudgetExceeded, Market
from prehoc_ray.bench.worlds import deberta_world, synthetic_world


@pytest.fixture(scope="module")
def world():
    return synthetic_world(9, seed=1, n_history=4)


def test_probe_charges_cost_per_step_per_seed_and_refuses_past_budget(world):
    o = world.candidates[0]
    m = Market(world, budget=o.cost_per_step * 100)
    st, v, cost = m.probe(0, 0, 0, 60)
    assert cost == pytest.approx(o.cost_per_step * 60) and np.all((st > 0) & (st <= 60)) and st.size == v.size == 3
    with pytest.raises(BudgetExceeded):
        m.probe(0, 1, 0, 60)
    assert m.spent == pytest.approx(o.cost_per_step * 60)  # a refused probe charges nothing
    st2, _, _ = m.probe(0, 0, 60, 100)
    assert st2.min() > 60 and m.left == pytest.approx(0, abs=1e-12)


def test_prefix_holds_only_what_was_bought(world):
    m = Market(world, budget=world.full_cost)
    assert m.prefix(2, 0)[0].size == 0
    m.probe(2, 0, 0, 40)
    st, _ = m.prefix(2, 0)
    assert st.max() <= 40 and m.depth(2) == 40 and m.seeds_run(2) == 1


def test_offers_carry_no_truth(world):
    m = Market(world, budget=1.0)
    o = m.candidates[0]
    assert not hasattr(o, "true_final") and not hasattr(o, "curves")
    assert not any(hasattr(m, a) for a in ("world", "truth", "true_finals"))
    assert m.full_cost == pytest.approx(world.full_cost)
    assert len(m.history) == len(world.history) and np.isfinite([h.final for h in m.history]).all()


def test_a_single_curve_table_is_probed_with_one_seed():
    w = deberta_world(4, 1, seed=0, n_history=0)
    m = Market(w, budget=w.full_cost)
    assert m.probe_seeds == 1 and not m.seeds_observable
    with pytest.raises(ValueError, match="only 1 recorded seed"):
        m.probe(0, 1, 0, 1000)


def test_probe_beyond_the_cap_is_a_value_error(world):
    m = Market(world, budget=world.full_cost)
    with pytest.raises(ValueError, match="at most step"):
        m.probe(0, 0, 0, world.candidates[0].horizon + 20)


def test_a_probe_cannot_skip_past_its_checkpoint(world):
    m = Market(world, budget=world.full_cost)
    with pytest.raises(ValueError, match="past its checkpoint"):
        m.probe(0, 0, 1980, 2000)  # the horizon's value for 20 steps' cost: refused
    m.probe(0, 0, 0, 40)
    with pytest.raises(ValueError, match="past its checkpoint at step 40"):
        m.probe(0, 0, 60, 80)
    m.probe(0, 0, 40, 80)
    assert m.prefix(0, 0)[0].max() == 80 and m.spent == pytest.approx(world.candidates[0].cost_per_step * 80)
