"""Worlds carry replayable curves and ground truth; the market over them charges per step
and refuses anything past the budget."""

import numpy as np
import pytest

from prehoc_ray.bench.market import BudgetExceeded, Market
from prehoc_ray.bench.policies import uniform_depth
from prehoc_ray.bench.worlds import deberta_world, demo_world, synthetic_world


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
    r = Market(world, budget=c.cost_per_step * 100)
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
    d = uniform_depth(Market(world, 0.0), lam * 2 * 95, seeds=2)
    assert d == 80  # multiples of eval_every=20
    assert uniform_depth(Market(world, 0.0), lam * 2 * 5, seeds=2) == 0


def test_deberta_world_is_real_recorded_runs():
    w = deberta_world(5, 2, seed=0, n_history=10)
    assert len(w.candidates) == 10 and len(w.history) == 20
    for c in w.candidates:
        st, v = c.curve(0)
        assert c.n_seeds == 1 and c.curve(1) is c.curve(0)  # no seed replicates in recorded data
        assert c.true_final == v[-1] and st[-1] == c.horizon
        assert 0.3 < c.true_final < 1.0


@pytest.mark.parametrize("recording", ["demo-recorded", "late-bloomers-recorded"])
def test_a_recorded_portfolio_replays_its_real_probes(recording):
    import json

    import pyarrow.parquet as pq

    from prehoc_ray.bench.worlds import DATA_DIR
    from prehoc_ray.spec.job import load_job

    data_dir = DATA_DIR / recording
    meta = json.loads((data_dir / "meta.json").read_text())
    depth, horizon, every = meta["probe_depth"], meta["horizon"], meta["eval_every"]
    w0, w1 = demo_world(0, data_dir=data_dir), demo_world(1, data_dir=data_dir)
    recorded_job = load_job(data_dir / "job.yaml")
    assert sorted(c.id for c in w0.candidates) == sorted(c.id for c in recorded_job.candidate_specs())
    assert sorted(set(w0.groups)) == ["bbc_news", "tweets", "tweets_noisy"]
    assert w0.max_probe_depth == depth and not w0.history
    assert w0.eval_every == every and w0.tolerance == meta["tolerance"]
    t = pq.read_table(data_dir / "curves.parquet").to_pydict()
    for c in w0.candidates:
        assert c.horizon == horizon and c.n_seeds == 2
        full = sorted(
            (s, v)
            for cid, k, s, v in zip(t["candidate"], t["kind"], t["step"], t["value"])
            if cid == c.id and k == "full"
        )
        assert full[-1][0] == horizon and c.true_final == full[-1][1]  # the final of an independent full run
        st, v = c.curve(0)
        assert st[0] == every and st[-1] == depth and np.all((v >= 0) & (v <= 1))
    # Other worlds replay other recorded seeds of the same candidates.
    assert [c.true_final for c in w0.candidates] == [c.true_final for c in w1.candidates]
    assert any(not np.array_equal(a.curve(1)[1], b.curve(1)[1]) for a, b in zip(w0.candidates, w1.candidates))
    # Probes cannot buy steps that were never recorded; uniform depth stops there too.
    r = Market(w0, budget=w0.full_cost)
    with pytest.raises(ValueError, match=f"at most step {depth}"):
        r.probe(0, 0, 0, depth + every)
    assert uniform_depth(r, w0.full_cost, seeds=2) == depth
