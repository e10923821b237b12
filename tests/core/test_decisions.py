import itertools
import math

import numpy as np
import pytest

from prehoc_ray.core.decisions import PROBE_MORE, RUN, SKIP, PlanSettings, knapsack, make_plan
from prehoc_ray.types import StopKind


def _kind_of(why: str) -> str:
    """The StopKind the engine gives with each of these texts (fixtures are written as text)."""
    for prefix, kind in (
        ("probe budget", StopKind.BUDGET),
        ("probe failed", StopKind.PROBE_FAILED),
        ("Noise-Dominant", StopKind.NOISE_DOMINANT),
        ("reached the probe cap", StopKind.PROBE_CAP),
    ):
        if why.startswith(prefix):
            return kind.value
    return StopKind.OPTIMAL_DEPTH.value


def row(candidate, task, mean, std, cost=100.0, **kw):
    r = {
        "candidate": candidate,
        "task": task,
        "predicted_final": mean,
        "predicted_std": std,
        "L_int": kw.pop("L_int", 0.0),
        "regime": kw.pop("regime", "Dynamic-Critical"),
        "full_cost_s": cost,
        "probe_cost_s": kw.pop("probe_cost_s", 1.0),
        "stop_reason": (why := kw.pop("stop_reason", "reached its budget-optimal depth c*=40")),
        "stop_kind": kw.pop("stop_kind", _kind_of(why)),
        "no_learning": kw.pop("no_learning", "no learning seen" in why),
        "value_per_cost": kw.pop("value_per_cost", 0.0),
        "gamma": kw.pop("gamma", 1e-6),
    }
    r.update(kw)
    return r


def by_cand(plan):
    return {d.candidate: d for d in plan.decisions}


def test_wide_interval_is_a_risk_not_a_bonus():
    rows = [
        row("t:safe", "t", 0.75, 0.01),
        row("t:noisy", "t", 0.80, 0.20, regime="Noise-Dominant", L_int=0.04),
        row("t:noisy-eligible", "t", 0.80, 0.08, regime="Noise-Dominant", L_int=0.0064),
    ]
    plan = make_plan(rows, PlanSettings(baselines={"t": 0.70}, confidence=0.8))
    d = by_cand(plan)
    assert d["t:safe"].decision == RUN
    assert d["t:noisy"].decision == SKIP
    assert "Noise-Dominant" in d["t:noisy"].reason and "P(beats baseline 0.7)" in d["t:noisy"].reason
    assert plan.runs == {"t": "t:safe"}
    assert d["t:noisy-eligible"].decision == SKIP and "ranks higher" in d["t:noisy-eligible"].reason
    assert "wide interval counts against it" in d["t:noisy-eligible"].reason
    # the noisy one has the higher mean but the lower risk-adjusted score
    assert d["t:noisy"].score < d["t:safe"].score


def test_ranking_by_lower_bound_among_eligible():
    rows = [row("t:a", "t", 0.90, 0.05), row("t:b", "t", 0.86, 0.005)]
    plan = make_plan(rows, PlanSettings(baselines={"t": 0.5}, confidence=0.9))
    d = by_cand(plan)
    assert d["t:b"].decision == RUN  # 0.86 - 1.28*0.005 > 0.90 - 1.28*0.05
    assert d["t:a"].decision == SKIP and "ranks higher" in d["t:a"].reason


def test_no_candidate_beats_the_baseline():
    rows = [row("t:a", "t", 0.71, 0.02), row("t:b", "t", 0.65, 0.01)]
    plan = make_plan(rows, PlanSettings(baselines={"t": 0.70}, confidence=0.8))
    assert all(d.decision == SKIP for d in plan.decisions)
    assert plan.runs == {} and plan.recommended_cost_s == 0
    p = by_cand(plan)["t:a"].p_beat
    assert 0.5 < p < 0.8


def test_no_baseline_recommends_best_risk_adjusted_and_says_how_sure():
    rows = [row("t:a", "t", 0.60, 0.01), row("t:b", "t", 0.62, 0.08), row("t:c", "t", 0.50, 0.01)]
    plan = make_plan(rows, PlanSettings(confidence=0.8))
    d = by_cand(plan)
    assert d["t:a"].decision == RUN
    assert "no baseline" in d["t:a"].reason and "runner-up" in d["t:a"].reason
    assert d["t:b"].decision == SKIP and d["t:c"].decision == SKIP


def test_mode_min_mirrors():
    rows = [row("t:a", "t", 0.30, 0.01), row("t:b", "t", 0.25, 0.10), row("t:c", "t", 0.45, 0.01)]
    plan = make_plan(rows, PlanSettings(mode="min", baselines={"t": 0.40}, confidence=0.8))
    d = by_cand(plan)
    assert d["t:a"].decision == RUN
    assert d["t:b"].decision == SKIP  # upper bound 0.25 + 0.84*0.1 = 0.334 > 0.3 + 0.0084
    assert d["t:c"].decision == SKIP and d["t:c"].p_beat < 0.01
    assert "upper bound" in d["t:a"].reason


def test_floor_widens_an_overconfident_std():
    # predicted_std below the intrinsic floor: the full run's own noise still applies
    rows = [row("t:a", "t", 0.72, 0.001, L_int=0.02**2)]
    plan = make_plan(rows, PlanSettings(baselines={"t": 0.70}, confidence=0.9))
    d = plan.decisions[0]
    assert d.decision == SKIP
    assert d.p_beat == pytest.approx(0.841, abs=0.01)  # Phi(0.02 / 0.02)


def test_budget_knapsack_and_alternates():
    rows = [
        row("a:big", "a", 0.90, 0.01, cost=600),  # margin ~0.19
        row("a:small", "a", 0.85, 0.01, cost=200),  # margin ~0.14
        row("b:x", "b", 0.80, 0.01, cost=500),  # margin ~0.09
        row("c:y", "c", 0.75, 0.01, cost=300),  # margin ~0.04
    ]
    s = PlanSettings(baselines={"a": 0.7, "b": 0.7, "c": 0.7}, confidence=0.8, full_budget_s=1000)
    plan = make_plan(rows, s)
    d = by_cand(plan)
    # best subset of first choices within 1000: {a:big (600), c:y (300)} margin .23 vs {b:x} .09 vs a+b too much
    assert d["a:big"].decision == RUN and d["c:y"].decision == RUN
    assert d["b:x"].decision == SKIP and "does not fit the full fine-tune budget" in d["b:x"].reason
    assert plan.recommended_cost_s == 900
    # a tighter budget: a's first choice does not fit, its cheaper eligible alternate does
    plan = make_plan(rows, PlanSettings(baselines=s.baselines, confidence=0.8, full_budget_s=550))
    d = by_cand(plan)
    assert d["b:x"].decision == RUN  # .09 beats c .04 among single items fitting 550, a:big 600 does not fit
    assert d["a:big"].decision == SKIP and "does not fit" in d["a:big"].reason
    assert d["a:small"].decision == SKIP  # 200 > 550 - 500 left
    plan = make_plan(rows, PlanSettings(baselines=s.baselines, confidence=0.8, full_budget_s=580))
    d = by_cand(plan)
    assert d["b:x"].decision == RUN
    assert d["a:small"].decision == SKIP  # 200 > 80 left
    plan = make_plan(rows, PlanSettings(baselines=s.baselines, confidence=0.8, full_budget_s=520))
    d = by_cand(plan)
    assert d["b:x"].decision == RUN and d["a:small"].decision == SKIP


def test_alternate_takes_over_when_first_choice_does_not_fit():
    rows = [row("a:big", "a", 0.90, 0.01, cost=600), row("a:small", "a", 0.85, 0.01, cost=200)]
    plan = make_plan(rows, PlanSettings(baselines={"a": 0.7}, full_budget_s=300))
    d = by_cand(plan)
    assert d["a:small"].decision == RUN and "did not fit" in d["a:small"].reason
    assert d["a:big"].decision == SKIP
    assert plan.runs == {"a": "a:small"}


def test_tasks_without_baseline_funded_after_those_with_one():
    rows = [
        row("a:x", "a", 0.9, 0.01, cost=500),
        row("n:y", "n", 0.5, 0.01, cost=400),
        row("m:z", "m", 0.5, 0.01, cost=100),
    ]
    plan = make_plan(rows, PlanSettings(baselines={"a": 0.7}, full_budget_s=650))
    assert plan.runs == {"a": "a:x", "m": "m:z"}


def test_unknown_cost_cannot_fit_a_cap():
    rows = [row("a:x", "a", 0.9, 0.01, cost=float("nan"))]
    assert make_plan(rows, PlanSettings(baselines={"a": 0.7}, full_budget_s=1e6)).decisions[0].decision == SKIP
    assert make_plan(rows, PlanSettings(baselines={"a": 0.7})).decisions[0].decision == RUN


def test_probe_more_rules():
    common = dict(stop_reason="probe budget spent", value_per_cost=1e-3, gamma=1e-5)
    rows = [
        row("t:undecided", "t", 0.71, 0.03, **common),
        row("t:hopeless", "t", 0.50, 0.03, **common),
        row(
            "t:noise",
            "t",
            0.71,
            0.05,
            regime="Noise-Dominant",
            L_int=0.0016,
            stop_reason="Noise-Dominant: intrinsic floor sqrt(L_int)=0.04 exceeds tolerance 0.02: no probe removes it",
            value_per_cost=1e-3,
            gamma=1e-5,
        ),
        row("t:noise-provisional", "t", 0.71, 0.05, regime="Noise-Dominant", L_int=0.0016, **common),
        row("t:cheap-enough", "t", 0.71, 0.03, stop_reason="probe budget spent", value_per_cost=1e-6, gamma=1e-5),
        row(
            "t:never",
            "t",
            float("nan"),
            float("nan"),
            stop_reason="probe budget spent before the initial probe",
            value_per_cost=float("nan"),
        ),
        row("t:failed", "t", float("nan"), float("nan"), stop_reason="probe failed: OOM", value_per_cost=float("nan")),
        # The engine could not decide yet (no learning seen, fit not identified): value/cost +inf.
        row(
            "t:undecidable",
            "t",
            0.69,
            0.03,
            regime="Undetermined",
            stop_reason="probe budget spent",
            value_per_cost=float("inf"),
            gamma=1e-5,
        ),
    ]
    plan = make_plan(rows, PlanSettings(baselines={"t": 0.70}, confidence=0.8))
    d = by_cand(plan)
    assert d["t:undecided"].decision == PROBE_MORE and "value/cost" in d["t:undecided"].reason
    assert d["t:hopeless"].decision == SKIP
    assert d["t:noise"].decision == SKIP
    assert d["t:noise-provisional"].decision == PROBE_MORE and "not confirmed" in d["t:noise-provisional"].reason
    assert d["t:cheap-enough"].decision == SKIP
    assert d["t:never"].decision == PROBE_MORE
    assert d["t:failed"].decision == SKIP and "OOM" in d["t:failed"].reason
    assert d["t:undecidable"].decision == PROBE_MORE


def test_every_candidate_gets_a_one_line_reason_and_totals_add_up():
    rng = np.random.default_rng(0)
    rows = [
        row(
            f"t{k % 3}:m{k}",
            f"t{k % 3}",
            float(rng.uniform(0.5, 0.9)),
            float(rng.uniform(0.005, 0.08)),
            cost=float(rng.uniform(50, 500)),
            probe_cost_s=float(rng.uniform(1, 10)),
        )
        for k in range(12)
    ]
    rows[3]["predicted_final"] = float("nan")
    plan = make_plan(rows, PlanSettings(baselines={"t0": 0.6, "t1": 0.7}, full_budget_s=600))
    assert len(plan.decisions) == len(rows)
    for d in plan.decisions:
        assert d.decision in (RUN, SKIP, PROBE_MORE)
        assert d.reason and "\n" not in d.reason
    runs = [d for d in plan.decisions if d.decision == RUN]
    assert len({d.task for d in runs}) == len(runs)  # at most one per task
    assert plan.recommended_cost_s == pytest.approx(sum(d.full_cost_s for d in runs))
    assert plan.recommended_cost_s <= 600
    assert plan.all_cost_s == pytest.approx(sum(r["full_cost_s"] for r in rows))
    assert plan.probe_spend_s == pytest.approx(sum(r["probe_cost_s"] for r in rows))
    undecided = sum(d.full_cost_s for d in plan.decisions if d.decision == PROBE_MORE)
    assert plan.undecided_s == pytest.approx(undecided)
    assert plan.saving_s == pytest.approx(
        max(0.0, plan.all_cost_s - plan.recommended_cost_s - undecided - plan.probe_spend_s)
    )
    t = plan.totals()
    assert t["undecided_full_cost_s"] == plan.undecided_s
    assert t["n_run"] + t["n_skip"] + t["n_probe_more"] == 12
    assert math.isfinite(t["saving_fraction"])


def test_savings_count_only_decisions_made():
    """ "probe more" candidates may still have to run: their full cost is undecided, not saved;
    a plan that decides nothing saves nothing (its probes were spent all the same)."""
    undecided = dict(stop_reason="probe budget spent", value_per_cost=float("inf"), gamma=1e-5)
    nothing = [
        row(f"t{k}:m", f"t{k}", float("nan"), float("nan"), cost=1000.0, probe_cost_s=40.0, **undecided)
        for k in range(6)
    ]
    plan = make_plan(nothing, PlanSettings())
    assert {d.decision for d in plan.decisions} == {PROBE_MORE}
    assert plan.recommended_cost_s == 0 and plan.undecided_s == pytest.approx(6000.0)
    assert plan.saving_s == 0 and plan.saving_fraction == 0
    assert plan.totals()["saving_s"] == 0 and plan.totals()["undecided_full_cost_s"] == pytest.approx(6000.0)
    # one task decided (run a, skip b), one undecided: only the skipped run is saved
    rows = [
        row("a:x", "a", 0.9, 0.01, cost=1000.0, probe_cost_s=10.0),
        row("a:y", "a", 0.6, 0.01, cost=1000.0, probe_cost_s=10.0),
        row("b:x", "b", float("nan"), float("nan"), cost=1000.0, probe_cost_s=10.0, **undecided),
    ]
    plan = make_plan(rows, PlanSettings())
    assert [d.decision for d in plan.decisions] == [RUN, SKIP, PROBE_MORE]
    assert plan.undecided_s == pytest.approx(1000.0)
    assert plan.saving_s == pytest.approx(3000.0 - 1000.0 - 1000.0 - 30.0)
    # probes that cost more than the decisions saved: no saving, never a negative one
    rows[1]["full_cost_s"] = 10.0
    assert make_plan(rows, PlanSettings()).saving_s == 0


def test_knapsack_exact_matches_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(30):
        n = int(rng.integers(1, 8))
        v = rng.uniform(0, 1, n).round(3)
        c = rng.uniform(1, 10, n).round(1)
        B = float(rng.uniform(1, c.sum()))
        got = knapsack(v, c, B)
        best = max(
            (s for k in range(n + 1) for s in itertools.combinations(range(n), k) if c[list(s)].sum() <= B),
            key=lambda s: (round(v[list(s)].sum(), 12), len(s), -c[list(s)].sum()),
        )
        assert v[got].sum() == pytest.approx(v[list(best)].sum())
        assert c[got].sum() <= B


def test_knapsack_is_exact_where_greedy_is_not_and_at_scale():
    # greedy by value per cost takes the 6-cost item first (ratio 1.17) and then nothing fits;
    # the best is the two 5-cost items (value 10 > 7)
    got = knapsack(np.array([7.0, 5.0, 5.0]), np.array([6.0, 5.0, 5.0]), 10.0)
    assert got.tolist() == [1, 2]
    # 40 tasks (2^40 subsets): equal values, so the most tasks that fit, cheapest first
    n = 40
    got = knapsack(np.zeros(n), np.arange(1, n + 1, dtype=float), 10.0)
    assert len(got) == 4 and np.arange(1, n + 1)[got].sum() <= 10  # 1+2+3+4
    rng = np.random.default_rng(3)
    v, c = rng.uniform(0, 1, 60), rng.uniform(1, 10, 60)
    got = knapsack(v, c, 100.0)
    assert c[got].sum() <= 100 + 1e-9
    # a 0-1 relaxation bound: nothing beats the LP optimum, and we are within one item of it
    order = np.argsort(-v / c)
    left, lp = 100.0, 0.0
    for i in order:
        take = min(1.0, left / c[i])
        lp += take * v[i]
        left -= take * c[i]
        if left <= 0:
            break
    assert v[got].sum() <= lp + 1e-9 and v[got].sum() >= lp - v.max()


@pytest.mark.parametrize(
    "kwargs,field",
    [
        ({"mode": "best"}, "mode"),
        ({"confidence": 1.0}, "confidence"),
        ({"full_budget_s": 0}, "full_budget_s"),
        ({"baselines": {"t": float("nan")}}, "baselines"),
    ],
)
def test_settings_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        PlanSettings(**kwargs)


def test_no_interval_stays_no_interval():
    # The engine gives no std for a candidate it cannot predict yet (no learning seen); the
    # plan's sqrt(L_int) floor widens intervals, it must not invent one.
    rows = [
        row(
            "t:stuck",
            "t",
            0.45,
            float("nan"),
            L_int=0.002,
            regime="Undetermined",
            stop_reason="probe budget spent with no learning seen yet: the metric is still within noise of its no-skill level 0.4",
            value_per_cost=float("inf"),
        ),
        row(
            "t:other",
            "t",
            0.30,
            float("nan"),
            L_int=0.002,
            regime="Undetermined",
            stop_reason="reached the probe cap with no learning seen: the metric is still within noise of its no-skill level 0.3",
        ),
    ]
    d = by_cand(make_plan(rows, PlanSettings(confidence=0.8)))
    assert d["t:stuck"].decision == PROBE_MORE and "no learning seen" in d["t:stuck"].reason
    assert "too little data" not in d["t:stuck"].reason
    assert d["t:other"].decision == SKIP and "no learning seen" in d["t:other"].reason


def test_the_rules_branch_on_the_stop_kind_not_on_its_words():
    # The same facts in other words (or another language) make the same plan.
    common = dict(value_per_cost=1e-3, gamma=1e-5)
    worded = [
        row("t:a", "t", 0.71, 0.03, stop_reason="probe budget spent", **common),
        row("t:f", "t", float("nan"), float("nan"), stop_reason="probe failed: OOM", value_per_cost=float("nan")),
    ]
    reworded = [
        row("t:a", "t", 0.71, 0.03, stop_reason="le budget est epuise", stop_kind=StopKind.BUDGET.value, **common),
        row(
            "t:f",
            "t",
            float("nan"),
            float("nan"),
            stop_reason="OOM",
            stop_kind=StopKind.PROBE_FAILED.value,
            value_per_cost=float("nan"),
        ),
    ]
    settings = PlanSettings(baselines={"t": 0.70}, confidence=0.8)
    a = [d.decision for d in make_plan(worded, settings).decisions]
    b = [d.decision for d in make_plan(reworded, settings).decisions]
    assert a == b == [PROBE_MORE, SKIP]
    # and the words alone, without the kind, decide nothing
    bare = [dict(r, stop_kind="") for r in worded]
    assert make_plan(bare, settings).decisions[0].decision != PROBE_MORE


def test_undecided_candidates_say_what_a_larger_budget_would_settle():
    common = dict(stop_reason="probe budget spent", value_per_cost=1e-3, gamma=1e-5)
    rows = [
        row("t:undecided", "t", 0.71, 0.03, wanted_cost_s=12.5, wanted_depth=160, **common),
        row(
            "t:never",
            "t",
            float("nan"),
            float("nan"),
            stop_reason="probe budget spent before the initial probe",
            value_per_cost=float("nan"),
            wanted_cost_s=3.0,
            wanted_depth=40,
        ),
        row("t:hopeless", "t", 0.50, 0.03, wanted_cost_s=99.0, wanted_depth=80, **common),
    ]
    plan = make_plan(rows, PlanSettings(baselines={"t": 0.70}, confidence=0.8))
    d = by_cand(plan)
    assert d["t:undecided"].decision == PROBE_MORE
    assert "about 12.5 device-s more probe budget (its probes to step 160) would settle it" in d["t:undecided"].reason
    assert d["t:never"].decision == PROBE_MORE and "about 3 device-s more" in d["t:never"].reason
    assert d["t:hopeless"].decision == SKIP and "would settle" not in d["t:hopeless"].reason
    # the total counts the undecided only: a skipped candidate's wanted probes settle nothing
    assert plan.totals()["probe_budget_to_settle_s"] == pytest.approx(15.5)
