"""Synchronous successive halving (one Hyperband bracket) with the engine's predictor."""

import numpy as np
import pytest

from prehoc_ray.bench.market import Market
from prehoc_ray.bench.policies import sh
from prehoc_ray.bench.policies.sh import bracket_cost, plan_rungs, size_bracket
from prehoc_ray.bench.worlds import Candidate, World, deberta_world, synthetic_world
from prehoc_ray.bench.worlds_hetero import heterogeneous_world


@pytest.fixture(scope="module")
def syn():
    return synthetic_world(24, seed=1, n_history=0)


@pytest.fixture(scope="module")
def deb():
    return deberta_world(12, 2, seed=0, n_history=0)


def parallel_world(
    per_task: int = 16, n_tasks: int = 2, horizon: int = 1000, eval_every: int = 10, seed: int = 0
) -> World:
    """Noiseless curves that differ by a constant: the order at any depth is the order of finals."""
    rng = np.random.default_rng(seed)
    st = np.arange(eval_every, horizon + 1, eval_every, dtype=float)
    shape = -0.5 * (st / 50.0) ** -0.7
    cands = []
    for t in range(n_tasks):
        offsets = rng.permutation(per_task) * 0.01
        for k, off in enumerate(offsets):
            v = 0.8 + off + shape
            cost = 0.01 * (1 + (k % 3) / 2)
            cands.append(
                Candidate(f"t{t}/{k:02d}", f"t{t}", horizon, cost, {}, ((st, v), (st, v.copy())), float(v[-1]))
            )
    return World("parallel", cands, eval_every, 0.02, probe_seeds=2)


def test_plan_rungs():
    assert plan_rungs(24, 1, 100, 4) == [(1, 24), (4, 6)]  # 6 // 4 = 1: the last rung ranks 6
    assert plan_rungs(64, 2, 100, 4) == [(2, 64), (8, 16), (32, 4)]
    assert plan_rungs(64, 30, 100, 4) == [(30, 64), (100, 16)]  # the top rung is the probe cap
    assert plan_rungs(64, 200, 100, 4) == [(100, 64)]
    assert plan_rungs(27, 1, 100, 3) == [(1, 27), (3, 9), (9, 3)]


@pytest.mark.parametrize("frac", [0.003, 0.01, 0.03, 0.1, 0.2, 0.4, 1.0])
def test_budget_respected(syn, deb, frac):
    for w in (syn, deb, parallel_world()):
        m = Market(w, frac * w.full_cost)
        r = sh.run(m)
        assert r.spent == m.spent <= m.budget * (1 + 1e-9)
        assert r.predicted.shape == (len(w.candidates),)
        assert np.all(r.probe_steps <= [o.probe_cap for o in m.candidates])
        for g, i in r.picks.items():
            assert m.candidates[i].group == g and np.isfinite(r.predicted[i])


@pytest.mark.parametrize("frac", [0.05, 0.1, 0.3])
def test_r0_is_the_largest_that_fits(syn, deb, frac):
    for w in (syn, deb):
        m = Market(w, frac * w.full_cost)
        r = sh.run(m)
        S, r0, cap = r.info["seeds"], r.info["r0"], r.info["cap"]
        assert bracket_cost(m, r0, cap, S) <= m.budget * (1 + 1e-9)
        full = max(int(np.ceil(o.probe_cap / w.eval_every)) for o in m.candidates)
        if cap == full and r0 < full:
            assert all(bracket_cost(m, r, cap, S) > m.budget for r in range(r0 + 1, full + 1))
        assert (r0, cap) == size_bracket(m, S)
        if S < m.probe_seeds:  # fell back to one seed: the engine's seeds do not fit r0 = 1
            assert size_bracket(m, m.probe_seeds) is None


def test_falls_back_to_one_seed(syn):
    m = Market(syn, 0.015 * syn.full_cost)
    assert m.probe_seeds == 2 and size_bracket(m, 2) is None
    r = sh.run(m)
    assert r.info["seeds"] == 1 and all(m.seeds_run(i) == 1 for i in range(len(m.candidates)))


@pytest.mark.parametrize("frac", [0.05, 0.1, 0.2])
def test_halving_structure(syn, deb, frac):
    for w in (syn, deb):
        m = Market(w, frac * w.full_cost)
        r = sh.run(m)
        e = w.eval_every
        S = r.info["seeds"]
        caps = np.array([o.probe_cap for o in m.candidates])
        for g, rungs in r.info["rungs"].items():
            idx = np.flatnonzero(w.groups == g)
            counts = [k for _, k in rungs]
            assert counts[0] == idx.size
            assert counts[1:] == [max(1, c // 4) for c in counts[:-1]]
            for d, k in rungs:  # exactly k candidates of the task reached rung depth d
                assert np.sum(r.probe_steps[idx] >= np.minimum(d * e, caps[idx])) == k
            assert all(m.seeds_run(i) == S for i in idx)
            # The pick is the best prediction among the last rung's candidates (the finalists).
            last_d = rungs[-1][0]
            last = [i for i in idx if r.probe_steps[i] >= min(last_d * e, caps[i])]
            assert sorted(r.info["finalists"][g]) == sorted(last)
            assert r.picks[g] == max(last, key=lambda i: (r.predicted[i], -i))
            # Only the finalists go past their rung (spending the leftover), together: within one
            # evaluation interval of each other unless at their probe cap.
            for i in set(idx) - set(last):  # a dropped candidate stays at a rung's depth
                assert r.probe_steps[i] in {min(d * e, caps[i]) for d, _ in rungs[:-1]}
            fin = np.array(last)
            if len(fin) >= 2:  # the finalists short of their cap are level to one interval, unless
                open_ = fin[r.probe_steps[fin] < caps[fin]]  # the shallowest could not afford the next
                if open_.size and np.ptp(r.probe_steps[open_]) > e:
                    j = open_[np.argmin(r.probe_steps[open_])]
                    assert m.cost(j, m.depth(j), min(m.depth(j) + e, caps[j])) * S > m.left


@pytest.fixture(scope="module")
def spend_worlds():
    return {"hetero": heterogeneous_world(0), "synthetic": synthetic_world(45, seed=0)}


@pytest.mark.parametrize("frac", [0.05, 0.1, 0.2])
@pytest.mark.parametrize("kind", ["hetero", "synthetic"])
def test_spends_the_budget(spend_worlds, kind, frac):
    # The bracket alone plans 0.63-0.80 of a 5% budget (r0 is a whole number of evaluations); the
    # leftover goes to the finalists, so that a user's budget is spent.
    w = spend_worlds[kind]
    m = Market(w, frac * w.full_cost)
    r = sh.run(m)
    assert r.spent <= m.budget * (1 + 1e-9)
    assert r.spent / m.budget >= 0.9, (kind, frac, r.info["bracket_spent"] / m.budget, r.spent / m.budget)
    assert r.info["bracket_spent"] <= r.spent
    rungs = r.info["rungs"]  # the finalists went past their rung
    assert any(m.depth(i) > rungs[g][-1][0] * w.eval_every for g, fin in r.info["finalists"].items() for i in fin)
    # what is left could not buy one more interval of any finalist that is short of its cap
    e = w.eval_every
    for fin in r.info["finalists"].values():
        for i in fin:
            o = m.candidates[i]
            if len(fin) >= 2 and m.depth(i) < o.probe_cap:
                nxt = min((m.depth(i) // e + 1) * e, o.probe_cap)
                assert m.cost(i, m.depth(i), nxt) * r.info["seeds"] > m.left


@pytest.mark.parametrize("frac", [0.04, 0.1, 0.3])
def test_parallel_noiseless_curves_the_best_survives(frac):
    w = parallel_world()
    m = Market(w, frac * w.full_cost)
    r = sh.run(m)
    y = w.true_finals
    assert len(r.info["rungs"]["t0"]) >= 2  # there was halving to survive
    for g in ("t0", "t1"):
        idx = np.flatnonzero(w.groups == g)
        assert r.picks[g] == idx[np.argmax(y[idx])]
        # At every rung the survivors are the top of the task.
        for d, k in r.info["rungs"][g]:
            reached = idx[r.probe_steps[idx] >= d * w.eval_every]
            assert set(reached) == set(idx[np.argsort(-y[idx])[:k]])


def test_deterministic(deb):
    b = 0.1 * deb.full_cost
    r1, r2 = sh.run(Market(deb, b), seed=0), sh.run(Market(deb, b), seed=5)
    assert r1.picks == r2.picks
    np.testing.assert_array_equal(r1.predicted, r2.predicted)
