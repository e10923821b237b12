"""analyze() against the synthetic generator's ground truth, which the estimator never sees."""

import collections

import numpy as np
import pytest

from prehoc_ray.core.analysis import AnalysisSettings, analyze
from prehoc_ray.sim.synthetic import generate_portfolio
from prehoc_ray.types import Regime


@pytest.fixture(scope="module")
def runs():
    out = []
    for seed in range(4):
        p = generate_portfolio(n_groups=3, candidates_per_group=16, n_seeds=5, horizon=1000, eval_every=10, seed=seed)
        out.append((p, analyze(p.observations, settings=AnalysisSettings(tolerance=p.tolerance, n_boot=30, seed=seed))))
    return out


def test_family_alpha_recovered_where_the_decay_is_visible(runs):
    # Families whose decay is not hidden under a high floor. One replicate's pooled U(c) is a
    # single correlated realisation (the same seeds at every depth), so the tolerance is on the
    # median over replicates, with a looser bound on each. A fit that ignores the floor (log U
    # on log c) lands near alpha ~ 0.3 on the static-sufficient family (true 0.9) and fails.
    errs = collections.defaultdict(list)
    for p, res in runs:
        for u in res.units:
            if u.kind != "seeds-pooled" or "noise" in u.name:
                continue
            g = u.name.split(":", 1)[1]
            errs[g.split("-", 1)[1]].append(u.fit.alpha - p.truth["alpha"][list(p.truth["group"]).index(g)])
    for family, e in errs.items():
        assert abs(np.median(e)) < 0.15, (family, e)
        assert np.max(np.abs(e)) < 0.5, (family, e)


def test_member_floors_recovered_in_units_of_tolerance(runs):
    errs = collections.defaultdict(list)
    for p, res in runs:
        tau2 = p.tolerance**2
        truth = dict(zip(p.truth["candidate"], p.truth["L_int"]))
        for u in res.units:
            if u.kind == "seeds":
                c = u.name.split(":", 1)[1]
                errs[c.split("-c")[0].split("-", 1)[1]].append((u.fit.L_int - truth[c]) / tau2)
    # Median floor error well under one tolerance^2 in every regime; the noise-dominant
    # family's floor (4 tau^2) is found within 1.5 tau^2.
    assert abs(np.median(errs["static_sufficient"])) < 0.3
    assert abs(np.median(errs["dynamic_critical"])) < 0.6
    assert abs(np.median(errs["noise_dominant"])) < 1.5


def test_regimes_of_clearly_separated_families(runs):
    hits = []
    for p, res in runs:
        truth = dict(zip(p.truth["candidate"], p.truth["regime"]))
        for c, r in zip(res.predictions["candidate"], res.predictions["regime"]):
            hits.append(truth[c] == r)
    assert np.mean(hits) >= 0.85, np.mean(hits)


def test_interval_coverage_near_nominal(runs):
    cover = []
    for _, res in runs:
        pr = res.predictions
        cover += list((pr["lower"] <= pr["final"]) & (pr["final"] <= pr["upper"]))
    assert 0.8 <= np.mean(cover) <= 0.99, np.mean(cover)


def test_depth_truncation_and_out_of_fold(runs):
    p, _ = runs[0]
    shallow = analyze(p.observations, depth=50.0, settings=AnalysisSettings(tolerance=p.tolerance, n_boot=0))
    assert np.all(shallow.predictions["depth"] == 50.0)
    # A candidate's own final never enters its own prediction: perturb one final, its
    # out-of-fold prediction must not move.
    obs = p.observations
    target = str(obs.candidate[0])
    final = obs.final.copy()
    final[obs.candidate == target] += 1.0
    from dataclasses import replace

    moved = analyze(replace(obs, final=final), depth=50.0, settings=AnalysisSettings(tolerance=p.tolerance, n_boot=0))
    i = list(shallow.predictions["candidate"]).index(target)
    assert moved.predictions["predicted_final"][i] == pytest.approx(shallow.predictions["predicted_final"][i])


def test_bad_settings():
    with pytest.raises(ValueError, match="level"):
        AnalysisSettings(level=1.5)
    with pytest.raises(ValueError, match="mode"):
        AnalysisSettings(mode="up")
    assert Regime.NOISE_DOMINANT.value == "Noise-Dominant"


def _table(curves: dict[tuple[str, int], tuple[np.ndarray, np.ndarray]], finals: dict[str, float] | None = None):
    from prehoc_ray.core.observations import Observations

    cand, seed, step, value, final = [], [], [], [], []
    for (c, s), (st, v) in curves.items():
        cand += [c] * st.size
        seed += [s] * st.size
        step += list(st)
        value += list(v)
        final += [(finals or {}).get(c, np.nan)] * st.size
    return Observations(
        np.array(cand, object),
        np.array(step, float),
        np.array(value, float),
        seed=np.array(seed),
        final=np.array(final) if finals else None,
    )


def _rising(top: float, steps: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return top - 0.4 * (steps / steps[0]) ** -0.5 + rng.normal(0, 0.003, steps.size)


def test_a_seed_that_stopped_early_is_left_out_not_averaged_as_a_final():
    # Three seeds to step 1000; one of c0's crashed after two evaluations. Its last value is
    # 0.14 below where the others ended: averaged in as a final it would drag c0 down by ~0.05.
    rng = np.random.default_rng(1)
    full = np.arange(50.0, 1001.0, 50.0)
    curves = {(f"c{c}", s): (full, _rising(0.6 + 0.05 * c, full, rng)) for c in range(3) for s in range(3)}
    curves[("c0", 2)] = (full[:2], curves[("c0", 2)][1][:2])
    res = analyze(_table(curves), settings=AnalysisSettings(n_boot=0))
    assert res.ended_early == {"c0": {2: 100.0}}
    i = list(res.predictions["candidate"]).index("c0")
    kept = np.mean([curves[("c0", s)][1][-1] for s in (0, 1)])
    assert res.predictions["predicted_final"][i] == pytest.approx(kept, abs=1e-9)


def test_seeds_that_ended_together_are_kept_when_one_seed_ran_on():
    # Two seeds end at 500, one ran to 1000: the long one is the odd one out, nothing is dropped.
    rng = np.random.default_rng(2)
    full = np.arange(50.0, 1001.0, 50.0)
    curves = {("c0", s): (full[:10], _rising(0.6, full, rng)[:10]) for s in (0, 1)}
    curves[("c0", 2)] = (full, _rising(0.6, full, rng))
    res = analyze(_table(curves), settings=AnalysisSettings(n_boot=0))
    assert res.ended_early == {}


def test_a_fully_observed_outlier_is_predicted_as_observed_not_clipped_to_the_population():
    # Ten completed runs (the population path); c9 ended far above the rest. Its final is what
    # its seeds reached, so its interval must contain it; a population model clips it toward
    # the others' range.
    rng = np.random.default_rng(3)
    full = np.arange(50.0, 1001.0, 50.0)
    tops = {f"c{c}": 0.5 + 0.01 * c for c in range(9)} | {"c9": 0.95}
    curves = {(c, s): (full, _rising(t, full, rng)) for c, t in tops.items() for s in range(2)}
    finals = {c: float(np.mean([curves[(c, s)][1][-1] for s in range(2)])) for c in tops}
    res = analyze(_table(curves, finals), settings=AnalysisSettings(n_boot=0))
    p = res.predictions
    for c, f in finals.items():
        i = list(p["candidate"]).index(c)
        assert p["predicted_final"][i] == pytest.approx(f, abs=1e-9)
        assert p["lower"][i] <= f <= p["upper"][i]


def _falling_losses(slopes: list[float]) -> dict:
    # Losses falling steeply toward 0 (seen to step 100 of 1000): the curve model goes past it.
    steps = np.arange(10.0, 101.0, 10.0)
    rng = np.random.default_rng(4)
    return {
        (f"c{c}", s): (steps, np.maximum(0.95 - slope * steps + rng.normal(0, 0.005, 10), 0.01))
        for c, slope in enumerate(slopes)
        for s in range(2)
    }


def test_a_loss_is_never_predicted_below_zero_and_clipped_candidates_keep_their_order():
    res = analyze(
        _table(_falling_losses([0.0084, 0.0088, 0.0092])),
        settings=AnalysisSettings(n_boot=0, horizon=1000.0, mode="min"),
    )
    p = res.predictions
    for key in ("predicted_final", "lower", "upper"):
        v = p[key][np.isfinite(p[key])]
        assert v.size and (v >= 0).all(), (key, v)
    # the steepest fall ranks best even where all three are clipped to 0
    score = p["rank_score"]
    assert np.argsort(score).tolist() == [2, 1, 0], score


def test_a_larger_is_better_metric_is_not_capped_at_what_it_reached():
    # A reward still rising past 1: nothing says 1 is its bound.
    steps = np.arange(10.0, 1001.0, 10.0)
    rng = np.random.default_rng(5)
    curves = {
        (f"c{c}", s): (steps, 1.3 - 0.6 * (steps / 10) ** -0.3 + rng.normal(0, 0.003, steps.size))
        for c in range(3)
        for s in range(3)
    }
    res = analyze(_table(curves), depth=100.0, settings=AnalysisSettings(n_boot=0, horizon=1000.0))
    assert (res.predictions["upper"] > 1).all()


def test_one_seed_observed_through_its_horizon_gets_no_zero_width_interval():
    # One seed, to the horizon, a final that is a separate run's: one seed cannot say how far
    # a new run lands from it, so no interval rather than [last, last].
    rng = np.random.default_rng(6)
    steps = np.arange(10.0, 1001.0, 10.0)
    curves = {
        (f"c{c}", 0): (steps, 0.5 + 0.02 * c - 0.3 * (steps / 10) ** -0.5 + rng.normal(0, 0.003, steps.size))
        for c in range(4)
    }
    finals = {f"c{c}": float(curves[(f"c{c}", 0)][1][-1] + 0.01) for c in range(4)}
    p = analyze(_table(curves, finals), settings=AnalysisSettings(n_boot=0)).predictions
    width = p["upper"] - p["lower"]
    assert not (width == 0).any(), width
