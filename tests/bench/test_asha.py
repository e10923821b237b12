"""ASHA through Ray Tune's own AsyncHyperBandScheduler, every trial of a task launched at once."""

import numpy as np
import pytest

from prehoc_ray.bench.market import Market
from prehoc_ray.bench.policies import asha
from prehoc_ray.bench.policies.asha import AshaEmulator, asha_expected_iters, bracket_cost, rung_milestones, size_asha
from prehoc_ray.bench.worlds import deberta_world, synthetic_world


@pytest.fixture(scope="module")
def syn():
    return synthetic_world(12, seed=0, n_history=0)


@pytest.fixture(scope="module")
def deb():
    return deberta_world(12, 2, seed=0, n_history=0)


def _cost(m: Market, grace: int, cap: int) -> float:
    return asha._sized_cost(m, grace, cap, 4)


def test_bracket_cost_is_successive_halving():
    # Successive halving on 4^k trials: each rung costs the same as the first.
    assert asha_expected_iters(16, 1, 4, 16) == pytest.approx(16 * 1 + 4 * 3 + 1 * 12)
    # With equal costs and lengths, bracket_cost is asha_expected_iters x the cost of an evaluation.
    lam = 0.5
    prof = lam * np.arange(101)
    for n, g, T in [(16, 1, 16), (12, 3, 100), (24, 7, 100), (9, 40, 100)]:
        assert bracket_cost(prof, n, g, T) == pytest.approx(lam * asha_expected_iters(n, g, 4, T))
    # Ray's rungs: grace * 4^k up to max_t.
    assert rung_milestones(1, 100) == [1, 4, 16, 64]
    assert rung_milestones(3, 100) == [3, 12, 48]


@pytest.mark.parametrize("frac", [0.03, 0.1, 0.25])
def test_sizing_prefers_the_full_horizon_and_the_largest_grace(syn, deb, frac):
    for w in (syn, deb):
        m = Market(w, frac * w.full_cost)
        g, T, cost = size_asha(m)
        full = max(int(np.ceil(o.probe_cap / w.eval_every)) for o in m.candidates)
        assert 1 <= g <= T <= full
        if _cost(m, 1, full) <= m.budget:
            assert T == full and cost <= m.budget
            assert all(_cost(m, h, T) > m.budget for h in range(g + 1, T + 1))
        elif cost <= m.budget:  # max_t lowered: the deepest at which grace = 1 fits
            assert g == 1 and _cost(m, 1, T + 1) > m.budget


def test_sizing_lowers_max_t_when_grace_one_does_not_fit(deb):
    m = Market(deb, 0.08 * deb.full_cost)
    full = max(int(np.ceil(o.probe_cap / deb.eval_every)) for o in m.candidates)
    assert _cost(m, 1, full) > m.budget
    g, T, cost = size_asha(m)
    assert g == 1 and T < full and cost <= m.budget


@pytest.mark.parametrize("frac", [0.01, 0.03, 0.1, 0.2, 0.4])
def test_spend_never_exceeds_the_budget(syn, deb, frac):
    for w in (syn, deb):
        m = Market(w, frac * w.full_cost)
        r = asha.run(m, seed=1)
        assert r.spent == m.spent <= m.budget * (1 + 1e-9)
        assert r.predicted.shape == (len(w.candidates),)
        assert set(r.picks) <= set(w.groups) and r.picks == r.native_pick
        assert np.all(r.probe_steps <= [o.probe_cap for o in m.candidates])


@pytest.mark.parametrize("frac", [0.05, 0.1, 0.2, 0.4])
def test_no_starvation_every_trial_gets_its_grace_period(syn, deb, frac):
    for w in (syn, deb):
        m = Market(w, frac * w.full_cost)
        r = asha.run(m, seed=0)
        g = r.info["grace_period"]
        if r.info["expected_cost"] > m.budget:
            continue  # not even the sized bracket fits (DeBERTa at 5%): nothing promised
        e = w.eval_every
        assert np.all(r.info["iters"] >= g)
        assert np.all(r.probe_steps >= np.minimum(g * e, [o.probe_cap for o in m.candidates]))
        # Each task has a pick; Ray's scheduler stopped trials only at its rungs or at max_t.
        assert set(r.native_pick) == set(w.groups)


def test_ray_decides_at_its_rungs_and_promotes_the_leaders(syn):
    m = Market(syn, syn.full_cost)
    emu = AshaEmulator(m, grace=2, max_t=40)
    emu.run_lockstep(np.random.default_rng(0))
    marks = set(rung_milestones(2, 40)) | {40}
    stops = [(i, k) for i, k, _, d in emu.events if d == "STOP"]
    assert stops and {k for _, k in stops} <= marks
    assert not emu.ended_by_budget and not emu.live
    iters = emu.iters()
    for g, members in emu.tasks.items():
        # The best value at the first rung always goes on (nothing recorded can beat it).
        first = {i: v for i, k, v, _ in emu.events if k == 2 and i in members}
        assert iters[max(first, key=first.get)] > 2
        # Without a binding budget the survivors run to max_t and the pick is the best of them.
        top = [i for i in members if iters[i] == 40]
        assert top and emu.native_pick()[g] == max(top, key=lambda i: emu.trials[i].last)


def test_deterministic_given_seed(deb):
    b = 0.15 * deb.full_cost
    r1, r2 = asha.run(Market(deb, b), seed=3), asha.run(Market(deb, b), seed=3)
    assert r1.picks == r2.picks and r1.spent == r2.spent
    np.testing.assert_array_equal(r1.info["iters"], r2.info["iters"])
    np.testing.assert_array_equal(r1.predicted, r2.predicted)
    # The seed is the arrival order: other seeds give other (valid) runs.
    runs = {tuple(asha.run(Market(deb, b), seed=s).info["iters"]) for s in range(6)}
    assert len(runs) > 1


def test_global_numpy_random_state_is_left_alone(syn):
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    asha.run(Market(syn, 0.1 * syn.full_cost), seed=0)
    np.testing.assert_array_equal(np.random.get_state()[1], before)


def test_reference_protocol_no_budget_two_at_a_time(deb):
    """The reference's protocol (no hard budget, grace sets the spend, 2 trials at a time): the
    spend grows with grace and the pick ran the most iterations."""
    spent = []
    for g in (1, 4):
        m = Market(deb, deb.full_cost)
        r = asha.run(m, seed=0, grace_period=g, max_concurrent=2)
        assert not r.info["ended_by_budget"] and r.info["grace_period"] == g
        iters = r.info["iters"]
        for grp, i in r.native_pick.items():
            members = [j for j, o in enumerate(m.candidates) if o.group == grp]
            assert iters[i] == max(iters[j] for j in members) == r.info["max_t_by_task"][grp]
        spent.append(m.spent / deb.full_cost)
    assert 0 < spent[0] < spent[1] < 1


@pytest.mark.slow
@pytest.mark.ray
def test_emulation_agrees_with_ray_tune_tuner():
    """The same scheduler under a real tune.Tuner and under the emulation.

    One trial at a time, the arrival order is fixed: every decision, depth, spend and pick must
    match. Every trial at once, Tune's timing sets the order: fed the order Tune's schedulers
    saw, the emulation must make the same decisions on the same values (hence the same
    survivors at the first rung and the same pick). Under a binding budget the real Tuner
    starves late trials (replayed evaluations take no time, actors start one by one, so the
    first trial runs deep before the last one starts): that start-up skew is why the benchmark
    drives the scheduler in lockstep rounds instead.
    """
    w = synthetic_world(9, seed=3, n_history=0)
    kw = dict(grace_period=2, max_t=20)
    m1, m2 = Market(w, w.full_cost), Market(w, w.full_cost)
    real = asha.run_tuner(m1, max_concurrent=1, **kw)
    emu = asha.run(m2, seed=0, max_concurrent=1, **kw)
    np.testing.assert_array_equal(real.info["iters"], emu.info["iters"])
    assert real.native_pick == emu.native_pick
    assert m1.spent == pytest.approx(m2.spent)

    budget = 0.05 * w.full_cost  # binds: the Market's refusal ends the run
    m3 = Market(w, budget)
    real = asha.run_tuner(m3, **kw)
    assert m3.spent <= budget * (1 + 1e-9)
    events = real.info["events"]
    sim = AshaEmulator(Market(w, budget), grace=2, max_t=20)
    for i, k, v, d in events:
        assert sim.report(i) == d
        assert sim.trials[i].iters == k and sim.trials[i].last == pytest.approx(v)
    first = lambda evs: {i for i, k, _, d in evs if k == 2 and d != "STOP"}  # noqa: E731
    assert first(sim.events) == first(events)
    assert sim.native_pick() == real.native_pick
