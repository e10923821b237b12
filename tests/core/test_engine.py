"""The ask/tell engine against the simulated backend: budget, determinism, resume, stopping."""

import numpy as np
import pytest

from prehoc_ray.core.ask_tell import ProbeOutcome, tell
from prehoc_ray.core.engine import CandidateInfo, Engine, EngineSettings
from prehoc_ray.sim.backend import SimulatedBackend, run_simulated
from prehoc_ray.sim.synthetic import generate_portfolio
from prehoc_ray.types import Regime


@pytest.fixture(scope="module")
def portfolio():
    return generate_portfolio(n_groups=3, candidates_per_group=6, n_seeds=4, horizon=1000, eval_every=10, seed=3)


def settings(p, budget=150.0, **kw):
    return EngineSettings(
        budget=budget, seeds=4, eval_every=10, initial_depth=30, tolerance=p.tolerance, n_boot=30, **kw
    )


def test_budget_is_respected_and_every_candidate_gets_a_reason(portfolio):
    eng = run_simulated(portfolio, settings(portfolio, budget=60.0))
    assert eng.spent <= 60.0 + 1e-9
    assert eng.finished
    rows = eng.summary()
    assert len(rows) == 18
    assert all(r["stop_reason"] for r in rows)
    assert all(np.isfinite(r["predicted_final"]) for r in rows)
    assert all(not np.isfinite(r["wanted_cost_s"]) for r in rows if r["stop_kind"] in ("out_of_contention", "settled"))


def test_candidates_stopped_by_the_budget_say_what_more_budget_would_buy(portfolio):
    eng = run_simulated(portfolio, settings(portfolio, budget=15.0))
    stopped = [r for r in eng.summary() if r["stop_kind"] == "budget"]
    wanted = [r for r in stopped if r["probe_value"] > eng.gamma_decision]  # a further probe would still pay
    assert wanted and all(0 < r["wanted_cost_s"] and r["wanted_depth"] > r["probe_steps"] for r in wanted)
    assert all(not np.isfinite(r["wanted_cost_s"]) for r in stopped if r not in wanted)


def test_more_budget_buys_deeper_probes(portfolio):
    small = run_simulated(portfolio, settings(portfolio, budget=40.0))
    large = run_simulated(portfolio, settings(portfolio, budget=400.0))
    assert large.spent > small.spent
    assert sum(st.depth for st in large.states.values()) > sum(st.depth for st in small.states.values())


def test_static_sufficient_family_stops_early(portfolio):
    eng = run_simulated(portfolio, settings(portfolio, budget=400.0))
    ss = [st for st in eng.states.values() if "static_sufficient" in st.info.group]
    dc = [st for st in eng.states.values() if "dynamic_critical" in st.info.group]
    assert all(st.regime is Regime.STATIC_SUFFICIENT for st in ss)
    # Probing pays for the Dynamic-Critical family: it is probed deeper than the settled one.
    assert np.mean([st.depth for st in dc]) > 2 * np.mean([st.depth for st in ss])


def test_deterministic_and_resume_reaches_the_same_decisions(portfolio):
    s = settings(portfolio)
    full = run_simulated(portfolio, s)
    backend = SimulatedBackend(portfolio)
    # "Kill" after two rounds: keep the finished probes as a store would, then replay.
    store: dict[str, ProbeOutcome] = {}
    eng = Engine(backend.candidates(), s)
    for _ in range(2):
        orders = eng.next_round()
        for o in orders[: len(orders) // 2 + 1]:
            store[o.probe_id] = backend.run(o)
        break
    resumed = Engine(backend.candidates(), s)
    ran_again = []
    while True:
        orders = resumed.next_round()
        if not orders:
            break
        for o in orders:
            if o.probe_id in store:
                tell(resumed, o, store[o.probe_id])
            else:
                ran_again.append(o.probe_id)
                tell(resumed, o, backend.run(o))
    assert not set(ran_again) & set(store)
    assert [r["regime"] for r in resumed.summary()] == [r["regime"] for r in full.summary()]
    assert [r["probe_steps"] for r in resumed.summary()] == [r["probe_steps"] for r in full.summary()]
    assert resumed.spent == pytest.approx(full.spent)


def test_failures_stop_the_candidate_with_a_reason(portfolio):
    backend = SimulatedBackend(portfolio)
    eng = Engine(backend.candidates(), settings(portfolio))
    orders = eng.next_round()
    bad = orders[0].candidate
    for o in orders:
        if o.candidate == bad:
            eng.tell_failure(o, "NaN loss")
        else:
            tell(eng, o, backend.run(o))
    while orders := eng.next_round():
        assert bad not in {o.candidate for o in orders}
        for o in orders:
            tell(eng, o, backend.run(o))
    row = next(r for r in eng.summary() if r["candidate"] == bad)
    assert "NaN loss" in row["stop_reason"]


def test_open_round_and_bad_settings_are_errors(portfolio):
    backend = SimulatedBackend(portfolio)
    eng = Engine(backend.candidates(), settings(portfolio))
    eng.next_round()
    with pytest.raises(RuntimeError, match="still open"):
        eng.next_round()
    with pytest.raises(ValueError, match="initial_depth"):
        EngineSettings(budget=1.0, eval_every=10, initial_depth=20)
    with pytest.raises(ValueError, match="duplicate"):
        Engine([CandidateInfo("a", "g", 100.0), CandidateInfo("a", "g", 100.0)], settings(portfolio))


def test_guessed_costs_do_not_overspend_the_first_round(portfolio):
    # The priors are 2.5x too optimistic (a model that loads slowly, a slower node). With every
    # initial probe planned on them in one round, 15 s of budget buys probes that cost 27 s;
    # the engine admits guessed probes with a margin (3x), measures, recalibrates the rest with
    # the measured/guessed ratio, and stays within the budget.
    backend = SimulatedBackend(portfolio)
    true = {c.id: c.prior_cost_per_step for c in backend.candidates()}
    infos = [
        CandidateInfo(c.id, c.group, c.horizon, prior_cost_per_step=c.prior_cost_per_step / 2.5)
        for c in backend.candidates()
    ]
    budget = 15.0

    def run(margin: float) -> Engine:
        # initial_share 1: the whole budget open to the initial probes, as the margin must guard
        eng = Engine(infos, settings(portfolio, budget=budget, prior_cost_margin=margin, initial_share=1.0))
        for _ in range(200):
            orders = eng.next_round()
            if not orders:
                break
            for o in orders:
                tell(eng, o, backend.run(o))
        assert eng.finished
        return eng

    assert run(1.0).spent > 1.5 * budget  # planning on the guesses alone overspends
    eng = run(3.0)
    assert eng.spent <= budget * (1 + 1e-9)
    probed = [st for st in eng.states.values() if st.depth > 0]
    assert len(probed) >= 9  # the margin defers probes, it does not cancel them
    # Measured costs replace the guesses.
    for st in probed:
        assert st.cost_per_step == pytest.approx(true[st.info.id])


def test_exact_priors_are_spent_without_a_margin(portfolio):
    # Simulators hand over the true costs (prior_cost_exact): round 0 plans every initial probe.
    backend = SimulatedBackend(portfolio)
    eng = Engine(backend.candidates(), settings(portfolio, budget=60.0))
    first = eng.next_round()
    assert len({o.candidate for o in first}) == 18


def test_no_skill_level_and_learning_check():
    from prehoc_ray.core.learning import learning_not_seen, no_skill_level

    assert no_skill_level({"static_zero_shot_metric": 0.15, "static_num_labels": 5.0}) == pytest.approx(0.2)
    assert no_skill_level({"static_zero_shot_metric": 0.44, "static_num_labels": 3.0}) == pytest.approx(0.44)
    assert np.isnan(no_skill_level({}))
    assert learning_not_seen([0.19, 0.22, 0.21, 0.18], 0.2, 0.02)  # at chance
    assert not learning_not_seen([0.35, 0.38, 0.33, 0.36], 0.2, 0.02)  # clearly learning
    assert not learning_not_seen([0.19, 0.22], float("nan"), 0.02)  # nothing to compare with
    assert not learning_not_seen([0.19], 0.2, 0.02)  # one seed: no noise estimate


def test_candidates_still_at_chance_are_probed_not_written_off():
    # The late-bloomer recording: tiny random-init Llamas whose accuracy sits at chance for the first
    # ~200 of 5,000 steps. Without the learning check, the flat seed dispersion there reads as
    # a floor and the engine stops after 2-3% of its budget with predictions near chance.
    import prehoc_ray.core.engine as engine_mod
    from prehoc_ray.bench.market import Market
    from prehoc_ray.bench.metrics import evaluate
    from prehoc_ray.bench.policies import prehoc
    from prehoc_ray.bench.worlds import LATE_BLOOMERS_DIR, demo_world

    def run(check: bool) -> tuple[float, float]:
        saved = engine_mod.learning_not_seen
        if not check:
            engine_mod.learning_not_seen = lambda *a: False
        try:
            rmse, spent = [], []
            for s in range(6):  # the 6 pairs of recorded probe seeds
                w = demo_world(s, data_dir=LATE_BLOOMERS_DIR)
                # The write-off this guards against is the prediction objective's regime stop
                # (Noise-Dominant); the decision objective has no such stop.
                r = prehoc.run(Market(w, 0.1 * w.full_cost), seed=s, objective="prediction")
                row = evaluate(w, r, 0.1 * w.full_cost)
                rmse.append(row["rmse"])
                spent.append(row["spent_frac"])
            return float(np.mean(rmse)), float(np.mean(spent))
        finally:
            engine_mod.learning_not_seen = saved

    rmse_on, spent_on = run(True)
    rmse_off, spent_off = run(False)
    assert spent_on > 1.5 * spent_off
    assert rmse_on < 0.85 * rmse_off


def test_a_candidate_with_no_learning_seen_gets_no_interval():
    from prehoc_ray.bench.market import Market
    from prehoc_ray.bench.policies.prehoc import run_engine, settings_for
    from prehoc_ray.bench.worlds import LATE_BLOOMERS_DIR, demo_world

    w = demo_world(0, data_dir=LATE_BLOOMERS_DIR)
    market = Market(w, 0.1 * w.full_cost)
    eng, _ = run_engine(market, settings_for(market))
    rows = {r["candidate"]: r for r in eng.summary()}
    stuck = [st for st in eng.states.values() if st.no_learning]
    assert stuck  # the label-noise task's models stay at chance within the probe budget
    for st in stuck:
        r = rows[st.info.id]
        assert r["regime"] == "Undetermined"
        assert np.isfinite(r["predicted_final"]) and np.isnan(r["predicted_std"]) and np.isnan(r["lower"])
        assert "no learning seen" in r["stop_reason"]


def test_a_history_of_past_runs_gives_population_predictions():
    # Real DeBERTa runs: the engine told 60 completed runs per family predicts the other
    # configurations far better than from its own probes (one recorded run per configuration,
    # so its seed dispersion is zero and its intervals degenerate).
    from prehoc_ray.bench.market import Market
    from prehoc_ray.bench.metrics import evaluate
    from prehoc_ray.bench.policies import prehoc
    from prehoc_ray.bench.worlds import deberta_world

    w = deberta_world(30, 2, seed=0)
    budget = 0.1 * w.full_cost
    plain = prehoc.run(Market(w, budget))
    told = prehoc.run_with_history(Market(w, budget))
    assert {r["predictor"] for r in told.info["rows"]} == {"history"}
    assert {r["predictor"] for r in plain.info["rows"]} == {"probes"}
    m_plain, m_told = evaluate(w, plain, budget), evaluate(w, told, budget)
    assert m_told["rmse"] < 0.7 * m_plain["rmse"]
    assert 0.75 <= m_told["coverage"] <= 1.0


def test_past_runs_that_make_a_family_static_sufficient_spare_its_probes():
    # Synthetic Static-Sufficient family: static features explain the finals within tolerance,
    # and its 20 past runs show it (cross-validated L(0) <= tau^2). Told them, the engine buys
    # no probe for that family and spends the budget on the others.
    from prehoc_ray.bench.market import Market
    from prehoc_ray.bench.policies import prehoc
    from prehoc_ray.bench.worlds import synthetic_world

    w = synthetic_world(45, seed=0)
    told = prehoc.run_with_history(Market(w, 0.05 * w.full_cost))
    plain = prehoc.run(Market(w, 0.05 * w.full_cost))
    ss = [i for i, c in enumerate(w.candidates) if "static_sufficient" in c.group]
    others = [i for i in range(len(w.candidates)) if i not in ss]
    rows = told.info["rows"]
    assert all(told.probe_steps[i] == 0 and rows[i]["regime"] == "Static-Sufficient" for i in ss)
    assert all("from past runs" in rows[i]["stop_reason"] for i in ss)
    assert all(np.isfinite(told.predicted[i]) and np.isfinite(told.std[i]) for i in ss)  # from the history
    assert told.probe_steps[others].sum() > plain.probe_steps[others].sum()


def _eval_noise_run(eval_examples: float | None) -> dict[str, dict]:
    """Four seeds whose finals differ only as a 128-example evaluation set makes them differ
    (offsets with variance 0.0019, about p(1-p)/128 at p = 0.5); no training noise at all."""
    offsets = [-0.05, -0.02, 0.02, 0.05]
    steps = np.arange(10, 401, 10, dtype=float)
    static = {} if eval_examples is None else {"static_eval_examples": eval_examples}
    infos = [
        CandidateInfo(c, "t", 400.0, prior_cost_per_step=0.01, static=dict(static), prior_cost_exact=True)
        for c in ("a", "b")
    ]
    # deep enough (a quarter of the horizon, 10 evaluations) that it is not too early to tell
    eng = Engine(
        infos,
        EngineSettings(
            budget=400.0, seeds=4, eval_every=10, initial_depth=100, tolerance=0.02, n_boot=50, objective="prediction"
        ),
    )
    for _ in range(100):
        orders = eng.next_round()
        if not orders:
            break
        for o in orders:
            y = 0.5 + (0.01 if o.candidate == "b" else 0.0) - 0.3 / np.sqrt(steps) + offsets[o.seed]
            m = (steps > o.start_step) & (steps <= o.target_step)
            eng.tell(
                o, [{"step": s, "value": v} for s, v in zip(steps[m], y[m])], 0.01 * (o.target_step - o.start_step)
            )
    return {r["candidate"]: r for r in eng.summary()}


def test_evaluation_noise_is_reported_and_not_called_a_training_floor():
    blind = _eval_noise_run(None)
    told = _eval_noise_run(128.0)
    for c in ("a", "b"):
        # the seeds' dispersion is all evaluation noise: a floor above tolerance^2 either way
        assert told[c]["L_int"] > 0.02**2 and blind[c]["L_int"] > 0.02**2
        assert np.isnan(blind[c]["L_eval"])
        assert told[c]["L_eval"] == pytest.approx(0.5 * 0.5 / 128, rel=0.05)
        # without the evaluation set's size it looks like a training floor no probe removes
        assert blind[c]["regime"] == Regime.NOISE_DOMINANT.value
        assert told[c]["regime"] != Regime.NOISE_DOMINANT.value
        assert not told[c]["too_early"]


def test_a_shallow_steep_prefix_is_too_early_to_tell_not_a_point_prediction():
    # 4 evaluations of a curve still rising steeply, 2% into its run: the back-tested
    # extrapolation error spans more than the curves have moved, so the regime stays open.
    steps = np.arange(10, 2001, 10, dtype=float)
    infos = [CandidateInfo(c, "t", 2000.0, prior_cost_per_step=0.01, prior_cost_exact=True) for c in ("a", "b", "c")]
    eng = Engine(
        infos,
        EngineSettings(
            budget=2.5, seeds=2, eval_every=10, initial_depth=40, tolerance=0.02, n_boot=20, objective="prediction"
        ),
    )
    rise = {"a": 0.3, "b": 0.5, "c": 0.8}
    for _ in range(10):
        orders = eng.next_round()
        if not orders:
            break
        for o in orders:
            y = 0.8 - rise[o.candidate] / np.sqrt(steps) + 0.002 * o.seed
            m = (steps > o.start_step) & (steps <= o.target_step)
            eng.tell(
                o, [{"step": s, "value": v} for s, v in zip(steps[m], y[m])], 0.01 * (o.target_step - o.start_step)
            )
    rows = eng.summary()
    assert max(r["probe_steps"] for r in rows) <= 60
    for r in rows:
        assert r["too_early"] and r["regime"] == Regime.UNDETERMINED.value
        assert "too_early_to_tell" in r["diagnostics"]
        assert np.isfinite(r["predicted_std"]) and r["upper"] - r["lower"] > 0.1  # wide, not absent


class _RefitEverything(Engine):
    """The engine without its per-task cache: every refit fits every task again."""

    def refit(self) -> None:
        self._task_fits.clear()
        super().refit()


@pytest.mark.parametrize("objective", ["decision", "prediction"])
def test_skipping_unchanged_tasks_decides_exactly_what_refitting_everything_decides(objective, monkeypatch):
    import json

    from prehoc_ray.core.ask_tell import drive
    from prehoc_ray.sim.backend import SimulatedBackend
    from prehoc_ray.sim.synthetic import generate_portfolio

    p = generate_portfolio(n_groups=6, candidates_per_group=4, n_seeds=3, horizon=1000, eval_every=10, seed=11)
    s = EngineSettings(
        budget=150.0,
        seeds=3,
        eval_every=10,
        initial_depth=30,
        tolerance=p.tolerance,
        n_boot=20,
        slots=3,
        objective=objective,
    )
    fitted: list[str] = []
    real_fit_task = Engine._fit_task

    def counting(self, g, members, key):
        fitted.append(g)
        return real_fit_task(self, g, members, key)

    monkeypatch.setattr(Engine, "_fit_task", counting)
    runs = []
    for cls in (Engine, _RefitEverything):
        fitted.clear()
        eng = cls(SimulatedBackend(p).candidates(), s)
        drive(eng, SimulatedBackend(p))
        runs.append(
            (
                json.dumps([eng.summary(), eng.spend_log, eng.round, eng.spent], sort_keys=True, default=str),
                len(fitted),
                eng.round,
            )
        )
    (cached, n_cached, rounds), (everything, n_everything, _) = runs
    assert rounds >= 4  # extension rounds, where most tasks got nothing new
    assert n_cached < n_everything  # the cache did skip tasks ...
    assert cached == everything  # ... and skipping changed nothing, float for float


def test_read_only_views_do_not_expose_the_engine_state():
    p = generate_portfolio(n_groups=2, candidates_per_group=3, n_seeds=3, horizon=1000, eval_every=10, seed=5)
    s = EngineSettings(budget=40.0, seeds=3, eval_every=10, initial_depth=30, tolerance=p.tolerance, n_boot=20)
    backend = SimulatedBackend(p)
    eng = Engine(backend.candidates(), s)
    orders = eng.next_round()
    for o in orders:
        tell(eng, o, backend.run(o))
    cid = orders[0].candidate
    pts = eng.points_of(cid)
    assert pts == eng.states[cid].points and pts  # what it was told ...
    pts[orders[0].seed].clear()
    assert eng.states[cid].points[orders[0].seed]  # ... as a copy: the caller cannot change it
    eng.tell_failure(orders[-1], "out of memory")
    failed = orders[-1].candidate
    assert failed in eng.settled() and not eng.may_order_again(failed)
    st = eng.states[cid]
    if cid != failed:
        assert eng.may_order_again(cid) == (st.stop_reason is None or st.soft_stop)
        assert (cid in eng.settled()) == (st.stop_reason is not None)


def test_summaries_are_typed_and_their_rows_are_the_flat_summary():
    from prehoc_ray.core.summary import CandidateSummary
    from prehoc_ray.types import StopKind

    p = generate_portfolio(n_groups=2, candidates_per_group=3, n_seeds=3, horizon=1000, eval_every=10, seed=5)
    s = EngineSettings(budget=40.0, seeds=3, eval_every=10, initial_depth=30, tolerance=p.tolerance, n_boot=20)
    eng = run_simulated(p, s)
    typed = eng.summaries()
    assert all(isinstance(c, CandidateSummary) and isinstance(c.regime, Regime) for c in typed)
    assert all(c.stop_kind is None or isinstance(c.stop_kind, StopKind) for c in typed)
    assert any(c.stop_kind is not None for c in typed)  # a finished run: stops, with their kinds
    rows = eng.summary()
    assert [c.as_row() for c in typed] == rows or all(  # NaN != NaN: compare field by field
        str(a) == str(b) for c, r in zip(typed, rows) for a, b in zip(c.as_row().values(), r.values())
    )
    assert rows[0]["regime"] == typed[0].regime.value and isinstance(rows[0]["diagnostics"], str)
