"""Decision-aware allocation (core/decision.py and Engine objective="decision")."""

import numpy as np
import pytest

from prehoc_ray.core.ask_tell import ProbeOutcome, tell
from prehoc_ray.core.decision import (
    best_other,
    f_kg,
    group_codes,
    kg_star,
    knowledge_gradient,
    p_best_by_task,
)
from prehoc_ray.core.engine import CandidateInfo, Engine, EngineSettings, ProbeOrder
from prehoc_ray.sim.backend import SimulatedBackend, run_simulated
from prehoc_ray.sim.synthetic import generate_portfolio


# ----- the formulas -------------------------------------------------------------------------
@pytest.mark.parametrize("gap, s", [(0.0, 1.0), (0.5, 1.0), (2.0, 0.7), (-1.2, 0.4)])
def test_knowledge_gradient_is_the_expected_improvement_of_the_max(gap, s):
    # Candidate 0 at mu = gap, the best other at 0; measuring 0 moves its mean by s Z.
    rng = np.random.default_rng(1)
    z = rng.standard_normal(2_000_000)
    before = max(gap, 0.0)
    mc = float(np.mean(np.maximum(gap + s * z, 0.0))) - before
    kg = float(knowledge_gradient(np.array([s]), np.array([gap]))[0])
    assert kg == pytest.approx(mc, abs=4 * s * 1.0 / np.sqrt(z.size) + 1e-4)
    assert f_kg(np.array([0.0]))[0] == pytest.approx(1 / np.sqrt(2 * np.pi))


def test_knowledge_gradient_edge_cases():
    kg = knowledge_gradient(np.array([0.0, np.nan, 1.0, 1.0]), np.array([0.1, 0.1, -np.inf, -40.0]))
    assert kg.tolist()[:3] == [0.0, 0.0, 0.0]
    assert 0 <= kg[3] < 1e-300 or kg[3] == 0.0


def test_best_other_per_task():
    mu = np.array([1.0, 3.0, 2.0, 5.0, 0.5, np.nan, 7.0])
    codes = np.array([0, 0, 0, 1, 1, 1, 2])
    assert best_other(mu, codes).tolist() == [3.0, 2.0, 3.0, 0.5, 5.0, 5.0, -np.inf]


def test_p_best_sums_to_one_per_task_and_matches_monte_carlo():
    rng = np.random.default_rng(0)
    n = 40
    mu = rng.normal(0, 1, n)
    sd = rng.uniform(0.2, 1.5, n)
    groups = [f"t{i % 4}" for i in range(n)]
    codes = group_codes(groups)
    p = p_best_by_task(mu, sd, groups, 3, 2000, {})
    for c in np.unique(codes):
        assert p[codes == c].sum() == pytest.approx(1.0, abs=1e-9)
    # against counting argmaxes over many draws
    X = mu + sd * rng.standard_normal((100_000, n))
    for c in np.unique(codes):
        idx = np.flatnonzero(codes == c)
        counts = np.bincount(np.argmax(X[:, idx], axis=1), minlength=idx.size) / X.shape[0]
        assert np.abs(counts - p[idx]).max() < 0.02


def test_p_best_by_task_is_a_function_of_each_task_alone_and_its_cache_is_exact():
    rng = np.random.default_rng(5)
    n = 60
    mu = rng.normal(0, 1, n)
    sd = rng.uniform(0.1, 1.0, n)
    sd[7] = np.nan  # no belief: no part in it
    tasks = [f"t{i % 5}" for i in range(n)]
    cache: dict = {}
    p = p_best_by_task(mu, sd, tasks, 1, 4000, cache)
    t = np.array(tasks)
    assert np.isnan(p[7]) and set(cache) == {f"t{k}" for k in range(5)}
    for name in cache:
        assert p[t == name][np.isfinite(p[t == name])].sum() == pytest.approx(1.0, abs=1e-9)
    # the same numbers whether computed alone, among other tasks, or read back from the cache
    alone = p_best_by_task(mu[t == "t2"], sd[t == "t2"], ["t2"] * int((t == "t2").sum()), 1, 4000, {})
    assert np.array_equal(alone, p[t == "t2"], equal_nan=True)
    mu2 = mu.copy()
    mu2[t == "t3"] += 0.5  # one task's beliefs move
    before = {k: v[1] for k, v in cache.items()}
    p2 = p_best_by_task(mu2, sd, tasks, 1, 4000, cache)
    assert np.array_equal(p2[t != "t3"], p[t != "t3"], equal_nan=True)
    assert not np.array_equal(p2[t == "t3"], p[t == "t3"])
    assert all(cache[k][1] is before[k] for k in before if k != "t3")  # not recomputed
    assert np.array_equal(p2, p_best_by_task(mu2, sd, tasks, 1, 4000, {}), equal_nan=True)


def test_p_best_by_task_matches_the_exact_probability_for_pairs():
    # Two independent normal beliefs: P(X1 > X2) = Phi((m1 - m2) / sqrt(s1^2 + s2^2)).
    from scipy.stats import norm

    m = np.array([0.3, 0.0, 1.0, 1.2, -0.5, -0.5])
    s = np.array([0.5, 0.2, 0.1, 0.4, 1.0, 0.3])
    tasks = ["a", "a", "b", "b", "c", "c"]
    p = p_best_by_task(m, s, tasks, 0, 20_000, {})
    for i in (0, 2, 4):
        exact = norm.cdf((m[i] - m[i + 1]) / np.hypot(s[i], s[i + 1]))
        assert p[i] == pytest.approx(exact, abs=0.01)
        assert p[i] + p[i + 1] == pytest.approx(1.0, abs=1e-12)


def test_a_clearly_beaten_candidate_has_no_value_and_no_chance():
    # Two contenders 0.1 sd apart and one 10 sd behind, same uncertainty and cost.
    mu = np.array([0.0, -0.1, -10.0])
    var_now = np.ones(3)
    var_after = np.full((3, 2), 0.5)
    var_after[:, 1] = 0.25
    cost = np.tile([1.0, 3.0], (3, 1))
    gap = mu - best_other(mu, np.zeros(3, int))
    ratio, kg, k = kg_star(gap, var_now, var_after, cost)
    assert ratio[2] < 1e-12 * ratio[:2].min()
    assert (k[:2] >= 0).all()
    p = p_best_by_task(mu, np.sqrt(var_now), ["t"] * 3, 0, 512, {})
    assert p[2] < 1e-6 and p[:2].sum() == pytest.approx(1.0)


def test_kg_star_values_a_larger_increment_when_a_small_one_cannot_change_the_choice():
    # Far from the leader, a small step reveals too little; KG(*) finds the deeper look worth it.
    gap = np.array([-3.0])
    var_now = np.array([4.0])
    var_after = np.array([[3.9, 0.5]])  # a tiny step, then a big one
    cost = np.array([[0.1, 1.0]])
    ratio, kg, k = kg_star(gap, var_now, var_after, cost)
    assert k[0] == 1
    assert ratio[0] == pytest.approx(kg[0] / 1.0)


# ----- the engine -----------------------------------------------------------------------------
class _Curves:
    """A tiny deterministic backend: y(s) = m - 0.5 / sqrt(s) + e(s), one task or more.

    e is a reverse random walk with Var e(s) = K / s, so a prefix's last value predicts the
    final with an error that probing deeper removes (the decomposition's K c^-alpha, alpha = 1).
    """

    def __init__(
        self,
        means: dict[str, float],
        group: dict[str, str] | None = None,
        horizon: int = 2000,
        seeds: int = 2,
        K: float = 0.03**2 * 30,
        seed: int = 0,
    ):
        rng = np.random.default_rng(seed)
        self.means, self.horizon = means, horizon
        self.group = group or {c: "t0" for c in means}
        steps = np.arange(10, horizon + 1, 10, dtype=float)
        inv = 1 / steps
        var_inc = K * np.r_[inv[:-1] - inv[1:], inv[-1]]  # K (1/s_k - 1/s_k+1), K/H last
        self.curves = {}
        for c, m in sorted(means.items()):
            for s in range(seeds):
                e = np.cumsum((rng.standard_normal(steps.size) * np.sqrt(var_inc))[::-1])[::-1]
                self.curves[(c, s)] = (steps, m - 0.5 / np.sqrt(steps) + e)

    def infos(self) -> list[CandidateInfo]:
        return [
            CandidateInfo(c, self.group[c], float(self.horizon), prior_cost_per_step=0.01, prior_cost_exact=True)
            for c in sorted(self.means)
        ]

    def run(self, o: ProbeOrder) -> ProbeOutcome:
        st, v = self.curves[(o.candidate, o.seed)]
        m = (st > o.start_step) & (st <= o.target_step)
        return ProbeOutcome(
            [{"step": float(a), "value": float(b)} for a, b in zip(st[m], v[m])], 0.01 * (o.target_step - o.start_step)
        )


def _drive(eng: Engine, backend, max_rounds: int = 200) -> list[list[str]]:
    rounds = []
    for _ in range(max_rounds):
        orders = eng.next_round()
        if not orders:
            break
        rounds.append([o.probe_id for o in orders])
        for o in orders:
            tell(eng, o, backend.run(o))
    return rounds


def test_beaten_candidate_stops_out_of_contention_while_contenders_are_probed():
    # Contenders a quarter of a point apart; a user who minds half a point of regret (tolerance).
    backend = _Curves({"a": 0.80, "b": 0.8025, "far": 0.40, "far2": 0.45})
    s = EngineSettings(budget=200.0, seeds=2, eval_every=10, initial_depth=30, tolerance=0.005, n_boot=20)
    eng = Engine(backend.infos(), s)
    _drive(eng, backend)
    rows = {r["candidate"]: r for r in eng.summary()}
    for far in ("far", "far2"):
        assert rows[far]["stop_reason"].startswith("out of contention: P(best in t0)")
        assert rows[far]["p_best"] < 0.01
        assert rows[far]["probe_value"] < 1e-3 * eng.gamma_decision  # worth nothing at the price of regret
    deepest_far = max(rows["far"]["probe_steps"], rows["far2"]["probe_steps"])
    # the contenders are probed deeper than anything out of contention (twice as deep here:
    # where a deeper probe stops paying depends on how fast the extrapolation error shrinks)
    assert min(rows["a"]["probe_steps"], rows["b"]["probe_steps"]) >= 2 * deepest_far
    assert rows["a"]["p_best"] + rows["b"]["p_best"] == pytest.approx(1.0, abs=0.01)
    assert sum(r["p_best"] for r in rows.values()) == pytest.approx(1.0)
    assert eng.spent <= s.budget + 1e-9


def test_summary_has_p_best_and_probe_value_for_both_objectives():
    p = generate_portfolio(n_groups=2, candidates_per_group=5, n_seeds=3, horizon=1000, eval_every=10, seed=1)
    for objective in ("decision", "prediction"):
        eng = run_simulated(
            p,
            EngineSettings(
                budget=60.0,
                seeds=3,
                eval_every=10,
                initial_depth=30,
                tolerance=p.tolerance,
                n_boot=20,
                objective=objective,
            ),
        )
        rows = eng.summary()
        assert {"p_best", "probe_value", "value_per_cost", "stop_reason", "predicted_std"} <= set(rows[0])
        for g in {r["group"] for r in rows}:
            ps = [r["p_best"] for r in rows if r["group"] == g]
            assert np.all(np.isfinite(ps)) and sum(ps) == pytest.approx(1.0)
        assert all(r["stop_reason"] for r in rows)


def test_decision_engine_is_deterministic():
    p = generate_portfolio(n_groups=3, candidates_per_group=6, n_seeds=2, horizon=1000, eval_every=10, seed=5)
    s = EngineSettings(budget=120.0, seeds=2, eval_every=10, initial_depth=30, tolerance=p.tolerance, n_boot=20, seed=4)
    backend = SimulatedBackend(p)
    a = _drive(Engine(backend.candidates(), s), backend)
    b = _drive(Engine(backend.candidates(), s), backend)
    assert a == b and len(a) >= 3


def test_single_seed_tables_make_progress_and_get_intervals():
    # One curve per candidate (the DeBERTa world): no seed dispersion, so the belief is the
    # curve model's back-tested extrapolation error; the engine still probes deeper and ends.
    p = generate_portfolio(n_groups=2, candidates_per_group=6, n_seeds=1, horizon=1000, eval_every=10, seed=2)
    # A low price of regret (decision), so that the budget, not the price, ends the probing.
    for objective, extra in (("decision", {"gamma_decision": 1e-7}), ("prediction", {})):
        s = EngineSettings(
            budget=80.0,
            seeds=1,
            eval_every=10,
            initial_depth=30,
            tolerance=p.tolerance,
            n_boot=20,
            objective=objective,
            **extra,
        )
        eng = run_simulated(p, s)
        assert eng.finished and eng.spent <= s.budget + 1e-9
        rows = eng.summary()
        assert max(r["probe_steps"] for r in rows) >= 60  # went past the initial probe (30)
        probed = [r for r in rows if r["probe_steps"] >= 60]
        assert probed and all(np.isfinite(r["predicted_std"]) for r in probed)
        # zero only at the horizon, where the one run's final is seen
        assert all(r["predicted_std"] > 0 for r in probed if r["probe_steps"] < 1000)
        assert all(r["stop_reason"] for r in rows)
    # the interval shrinks as the probe deepens (log of the remaining extrapolation ratio)
    from prehoc_ray.core.decision import extrapolation_variance

    v = extrapolation_variance(0.01, 1000.0, np.array([30.0, 120.0, 1000.0]))
    assert v[0] > v[1] > v[2] == 0.0


def test_prediction_objective_never_runs_the_decision_rule(monkeypatch):
    # objective="prediction" is the allocation as it was: the decision code is not consulted,
    # and the decision settings do not change a single order.
    p = generate_portfolio(n_groups=3, candidates_per_group=6, n_seeds=4, horizon=1000, eval_every=10, seed=3)
    backend = SimulatedBackend(p)

    def boom(*a, **k):
        raise AssertionError("decision rule used under objective='prediction'")

    monkeypatch.setattr(Engine, "_decision_extensions", boom)
    base = dict(
        budget=150.0, seeds=4, eval_every=10, initial_depth=30, tolerance=p.tolerance, n_boot=30, objective="prediction"
    )
    a = _drive(Engine(backend.candidates(), EngineSettings(**base)), backend)
    b = _drive(Engine(backend.candidates(), EngineSettings(**base, gamma_decision=1e-9, contention=0.5)), backend)
    assert a == b


def test_settings_are_validated():
    for bad in (
        dict(objective="regret"),
        dict(seeds=0),
        dict(gamma_decision=0.0),
        dict(contention=1.0),
        dict(mode="up"),
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            EngineSettings(budget=1.0, **bad)
    assert EngineSettings(budget=1.0).objective == "decision"
    assert EngineSettings(budget=1.0, seeds=1).seeds == 1


def test_mode_min_prefers_the_lowest_metric():
    backend = _Curves({"low": 0.30, "mid": 0.31, "high": 0.80})
    s = EngineSettings(budget=120.0, seeds=2, eval_every=10, initial_depth=30, tolerance=0.02, n_boot=20, mode="min")
    eng = Engine(backend.infos(), s)
    _drive(eng, backend)
    rows = {r["candidate"]: r for r in eng.summary()}
    assert rows["high"]["p_best"] < 0.05
    assert rows["low"]["p_best"] + rows["mid"]["p_best"] > 0.95
    assert rows["high"]["probe_steps"] < min(rows["low"]["probe_steps"], rows["mid"]["probe_steps"])


def test_a_decision_round_over_10000_candidates_fills_its_slots():
    # The time it takes is a benchmark figure (benchmarks/bench_execution.py), not a test.
    rng = np.random.default_rng(0)
    n = 10_000
    infos = [
        CandidateInfo(f"c{i:05d}", f"t{i % 50}", 1000.0, prior_cost_per_step=0.01 * (1 + i % 7), prior_cost_exact=True)
        for i in range(n)
    ]
    eng = Engine(infos, EngineSettings(budget=1e9, seeds=2, eval_every=10, initial_depth=30, tolerance=0.02, slots=64))
    from prehoc_ray.core.decay import DecayFit

    for st in eng.states.values():  # fitted state as after a few rounds, without running fits
        st.reached = {0: 60, 1: 60}
        st.recount()
        st.mu = float(rng.normal(0.7, 0.05))
        st.fit = DecayFit(1e-4, 0.05, 0.6, n_points=6, c_min=10.0, c_max=60.0)
        st.bt_scale = 0.01
    eng.gamma_decision = 1e-6
    eng._decision_extensions()  # warm up
    for st in eng.states.values():
        st.stop_reason, st.soft_stop = None, False
    orders = eng._decision_extensions()
    assert orders
    assert len({o.candidate for o in orders}) == 64


def test_a_budget_short_of_every_initial_probe_probes_everyone_shallower():
    # Full initial probes (2 seeds x 30 steps x 0.01) cost 0.6 per candidate, 3.6 for six; a
    # budget of 2.5 pays 2 seeds x 20 steps (2.4) for all of them: nobody is picked blind.
    backend = _Curves({"a": 0.80, "b": 0.78, "c": 0.70, "d": 0.60, "e": 0.75, "f": 0.65})
    s = EngineSettings(
        budget=2.5, seeds=2, eval_every=10, initial_depth=30, tolerance=0.01, n_boot=20, initial_share=1.0
    )
    eng = Engine(backend.infos(), s)
    rounds = _drive(eng, backend)
    first = rounds[0]
    assert len(first) == 12 and all(pid.endswith("|0-20") for pid in first)  # everyone, both seeds, two evaluations
    rows = eng.summary()
    assert all(r["probe_steps"] >= 20 and np.isfinite(r["predicted_final"]) for r in rows)
    assert eng.spent <= s.budget + 1e-9
    # Not even one interval at two seeds for all (1.2): one seed each, one interval.
    eng1 = Engine(
        backend.infos(),
        EngineSettings(
            budget=1.0, seeds=2, eval_every=10, initial_depth=30, tolerance=0.01, n_boot=20, initial_share=1.0
        ),
    )
    first1 = _drive(eng1, backend)[0]
    assert sorted(first1) == sorted(f"r0000|{c}|s0|0-10" for c in "abcdef")
    assert eng1.spent <= 1.0 + 1e-9
    # As shipped, the initial probes take at most 30% of the budget (0.75 here): one evaluation
    # for everyone, both seeds (the seeds shrink only when one evaluation does not fit the whole
    # budget), and the rest goes to extensions of the contenders.
    eng3 = Engine(
        backend.infos(), EngineSettings(budget=2.5, seeds=2, eval_every=10, initial_depth=30, tolerance=0.01, n_boot=20)
    )
    rounds3 = _drive(eng3, backend)
    assert len(rounds3[0]) == 12 and all(pid.endswith("|0-10") for pid in rounds3[0])
    assert all(r["probe_steps"] >= 10 and np.isfinite(r["predicted_final"]) for r in eng3.summary())
    assert eng3.spent <= 2.5 + 1e-9
    # The prediction objective keeps full initial probes for those the budget pays.
    engp = Engine(
        backend.infos(),
        EngineSettings(
            budget=2.5, seeds=2, eval_every=10, initial_depth=30, tolerance=0.01, n_boot=20, objective="prediction"
        ),
    )
    assert all(o.probe_id.endswith("|0-30") for o in engp.next_round())


def test_extension_rounds_are_paced_to_a_share_of_what_is_left():
    # 5% of the full runs and a negligible price of regret: every contender's next probe pays, so
    # without pacing the last rounds buy most of what is left at once.
    p = generate_portfolio(n_groups=3, candidates_per_group=8, n_seeds=2, horizon=2000, eval_every=10, seed=7)
    backend = SimulatedBackend(p)
    for share in (0.35, 1.0):
        s = EngineSettings(
            budget=60.0,
            seeds=2,
            eval_every=10,
            initial_depth=30,
            tolerance=p.tolerance,
            n_boot=20,
            gamma_decision=1e-9,
            round_share=share,
        )
        eng = Engine(backend.candidates(), s)
        per_round = []
        for _ in range(200):
            orders = eng.next_round()
            if not orders:
                break
            left, first = eng.budget_left, eng.round == 1
            costs = {}
            for o in orders:
                out = backend.run(o)
                costs[o.candidate] = costs.get(o.candidate, 0.0) + out.cost_s
                tell(eng, o, out)
            if not first:
                per_round.append((sum(costs.values()), left, len(costs)))
        assert per_round
        if share < 1:
            # every extension round within its share of what was left, or a single candidate's step
            assert all(c <= share * left + 1e-9 or n == 1 for c, left, n in per_round)
            paced_rounds = len(per_round)
        else:
            assert any(c > 0.35 * left for c, left, n in per_round if n > 1)  # the cap is what binds
            assert paced_rounds > len(per_round)


def test_candidates_without_a_belief_get_their_tasks_spread():
    a = {"mu": np.array([0.5, 0.6, 0.7, 0.1, 0.9, 0.2]), "no_learning": np.zeros(6, bool)}
    var_now = np.array([np.nan, 0.01, np.nan, np.nan, np.nan, 0.02])
    codes = np.array([0, 0, 0, 0, 1, 1])
    out = Engine._provisional_variance(a, var_now, codes)
    spread0 = float(np.var([0.5, 0.6, 0.7, 0.1], ddof=1))
    assert out[[0, 2, 3]] == pytest.approx([spread0] * 3)
    assert out[1] == 0.01 and out[5] == 0.02  # a belief is kept
    assert np.isnan(out[4])  # a task of two: no spread to borrow
