"""The curve model's extrapolation error: distances, back-tests and their pooling."""

from __future__ import annotations

import numpy as np
import pytest

from prehoc_ray.core.backtests import MAX_EXPONENT, candidate_backtest, extrapolation_error
from prehoc_ray.core.curves import extrapolate
from prehoc_ray.core.decay import ALPHA_BOUNDS, on_bound
from prehoc_ray.core.decision import curve_distance, extrapolation_variance
from prehoc_ray.core.observations import CandidateCurves


def test_curve_distance_is_additive_and_reaches_the_log_limit():
    for e in (0.0, 1e-12, 0.3, 1.0):
        a, b, c = 20.0, 160.0, 5000.0
        assert curve_distance(a, b, e) + curve_distance(b, c, e) == pytest.approx(curve_distance(a, c, e), rel=1e-9)
    assert curve_distance(10.0, 1000.0, 1e-12) == pytest.approx(np.log(100.0), rel=1e-6)
    assert curve_distance(10.0, 1000.0, 0.0) == pytest.approx(np.log(100.0))
    # a saturating curve has less left to change past a deeper origin
    d = curve_distance(np.array([10.0, 100.0, 1000.0]), 1000.0, 0.5)
    assert d[0] > d[1] > d[2] == 0.0
    assert np.isfinite(curve_distance(1e5, 1e6, 3.0))


def test_extrapolation_variance_is_zero_at_the_horizon_and_shrinks_with_depth():
    v = extrapolation_variance(0.01, 1000.0, np.array([30.0, 120.0, 1000.0]), 0.5)
    assert v[0] > v[1] > v[2] == 0.0


def _curves(rng, n, horizon, e, amp, noise, depth):
    """Power-law curves y = m - amp s^-e + white noise, probed to `depth` (2 seeds)."""
    steps = np.arange(10, horizon + 1, 10, dtype=float)
    out, finals = [], []
    for i in range(n):
        m = 0.8 + 0.05 * rng.standard_normal()
        a = amp * np.exp(0.3 * rng.standard_normal())
        seeds = {}
        for s in range(2):
            y = m - a * steps ** (-e) + noise * rng.standard_normal(steps.size)
            keep = steps <= depth
            seeds[s] = (steps[keep], y[keep])
        out.append(CandidateCurves(f"c{i}", "t", float(horizon), float("nan"), np.zeros(0), seeds))
        finals.append(m - a * horizon ** (-e))
    return out, np.array(finals)


@pytest.mark.parametrize("e", [0.3, 0.7])
def test_pooled_backtest_predicts_the_extrapolation_error_at_the_horizon(e):
    # Ground truth the estimator never sees: the actual error of extrapolating every candidate's
    # seed mean to the horizon. The back-test (prefix halves only) must predict its size within
    # a factor that would fail both a log-linear carry (which overstates it many times for
    # saturating curves) and ignoring the error (zero).
    rng = np.random.default_rng(0)
    horizon, depth = 5000, 400
    cands, finals = _curves(rng, 60, horizon, e, amp=1.5, noise=0.004, depth=depth)
    bts = [candidate_backtest(c) for c in cands]
    err = extrapolation_error(["t"] * len(cands), np.full(len(cands), float(depth)), bts)
    assert np.all(err.exponent <= MAX_EXPONENT)
    pred = np.array([np.mean([extrapolate(s, v, horizon) for s, v in c.seeds.values()]) for c in cands])
    actual_rms = float(np.sqrt(np.mean((pred - finals) ** 2)))
    sd = np.sqrt(extrapolation_variance(err.scale, float(horizon), float(depth), err.exponent))
    assert np.all(np.isfinite(sd))
    predicted = float(np.sqrt(np.mean(sd**2)))
    assert actual_rms / 3 < predicted < actual_rms * 3, (predicted, actual_rms)
    log_carry = float(np.sqrt(np.mean(extrapolation_variance(err.scale, float(horizon), float(depth), 0.0))))
    assert log_carry > 5 * predicted  # the log-linear carry overstates saturating curves many times


def test_a_task_without_backtests_borrows_the_portfolio_scale():
    rng = np.random.default_rng(1)
    cands, _ = _curves(rng, 4, 2000, 0.5, 1.0, 0.003, 200)
    bts = [candidate_backtest(c) for c in cands] + [None]
    err = extrapolation_error(["a", "a", "a", "a", "b"], np.array([200.0] * 4 + [0.0]), bts)
    assert np.isfinite(err.scale[4]) and err.scale[4] > 0


def test_on_bound_flags_a_fit_stopped_on_its_limits_but_not_no_decay():
    lo, hi = ALPHA_BOUNDS
    flags = on_bound(
        np.array([hi, lo, 0.7, 0.7, lo]),
        np.array([1.0, 1.0, 1.0, 0.0, 0.0]),
        np.array([False, False, False, False, True]),
    )
    assert flags.tolist() == [True, True, False, True, False]


def _saturating(rng, n, horizon, depth, noise=0.002):
    """Curves that saturate exponentially (y = m - A exp(-s / r)): a power law extrapolates
    more gain than is left (the overshoot that picks the wrong candidate)."""
    steps = np.arange(10, horizon + 1, 10, dtype=float)
    out, finals = [], []
    for i in range(n):
        m, A, r = 0.8 + 0.03 * rng.standard_normal(), rng.uniform(0.2, 0.5), rng.uniform(60, 150)
        seeds = {}
        for s in range(2):
            y = m - A * np.exp(-steps / r) + noise * rng.standard_normal(steps.size)
            keep = steps <= depth
            seeds[s] = (steps[keep], y[keep])
        out.append(CandidateCurves(f"c{i}", "t", float(horizon), float("nan"), np.zeros(0), seeds))
        finals.append(m)
    return out, np.array(finals)


def test_gain_trust_discounts_an_overshooting_curve_model_and_trusts_a_faithful_one():
    # Deep enough that the back-test's window (200 -> 400 steps) sees the saturation; from
    # 240 steps it does not (the window then ends before the curve bends), and trust stays 1.
    rng = np.random.default_rng(2)
    horizon, depth = 2000, 400
    cands, finals = _saturating(rng, 40, horizon, depth)
    err = extrapolation_error(["t"] * 40, np.full(40, float(depth)), [candidate_backtest(c) for c in cands])
    assert np.all(err.gain_trust < 0.8)
    raw, trusted = [], []
    for c, t in zip(cands, err.gain_trust):
        for s, v in c.seeds.values():
            f = extrapolate(s, v, horizon)
            raw.append(f)
            trusted.append(v[-1] + t * (f - v[-1]))
    truth = np.repeat(finals, 2)
    assert np.sqrt(np.mean((np.array(trusted) - truth) ** 2)) < 0.7 * np.sqrt(np.mean((np.array(raw) - truth) ** 2))
    # power-law curves, which the model describes: their gains are borne out
    cands, _ = _curves(np.random.default_rng(3), 40, 5000, 0.5, amp=1.5, noise=0.002, depth=400)
    err = extrapolation_error(["t"] * 40, np.full(40, 400.0), [candidate_backtest(c) for c in cands])
    assert np.all(err.gain_trust > 0.8)


@pytest.mark.parametrize("slope, rel_sd", [(1.0, 0.1), (0.6, 0.3), (0.3, 0.6)])
def test_gain_error_recovers_the_relative_error_of_extrapolated_gains(slope, rel_sd):
    """Back-tests whose observed gains are slope x the extrapolated ones, with errors
    proportional to the gain (relative sd rel_sd): gain_trust finds the slope and gain_error the
    squared relative error left, which it cannot see directly."""
    from prehoc_ray.core.backtests import CurveBacktest

    rng = np.random.default_rng(int(slope * 100 + rel_sd * 10))
    n = 400
    pred = rng.uniform(0.01, 0.2, size=n)
    seen = slope * pred * (1 + rel_sd * rng.standard_normal(n))
    bts = [CurveBacktest(10, ((0.0, 50.0, 100.0),), 0.5, ((float(p), float(a)),)) for p, a in zip(pred, seen)]
    err = extrapolation_error(["task"] * n, np.full(n, 100.0), bts)
    assert err.gain_trust[0] == pytest.approx(min(slope, 1.0), abs=0.05)
    # residual per unit of squared predicted gain = slope^2 rel_sd^2 under this model
    assert err.gain_error[0] == pytest.approx((slope * rel_sd) ** 2, rel=0.25)
    # without back-tested gains there is nothing to say
    none = extrapolation_error(["task"], np.array([100.0]), [None])
    assert np.isnan(none.gain_error[0])


@pytest.mark.parametrize("slope", [0.2, 0.5, 1.0])
def test_pooled_error_is_the_trusted_predictors(slope):
    """Back-tests of a curve model whose extrapolated gains overshoot the observed ones by
    1 / slope, with an independent error of known sd on top: the pooled error scale is that
    of the predictor the engine uses (last + gain_trust x gain), which it cannot see directly:
    the known sd per unit distance; the bare model's error (the ablation) overstates it by
    about its overshoot."""
    from prehoc_ray.core.backtests import CurveBacktest

    rng = np.random.default_rng(int(slope * 10))
    n, sd, exponent = 400, 0.004, 0.5
    pred = rng.uniform(0.02, 0.2, size=n)
    seen = slope * pred + sd * rng.standard_normal(n)
    bts = [
        CurveBacktest(10, ((float(p - a), 50.0, 100.0),), exponent, ((float(p), float(a)),)) for p, a in zip(pred, seen)
    ]
    dist = float(curve_distance(50.0, 100.0, exponent))
    trusted = extrapolation_error(["task"] * n, np.full(n, 100.0), bts)
    bare = extrapolation_error(["task"] * n, np.full(n, 100.0), bts, trusted=False)
    assert trusted.scale[0] * dist == pytest.approx(sd, rel=0.15)
    bare_rms = float(np.sqrt(np.mean((pred - seen) ** 2)))
    assert bare.scale[0] * dist == pytest.approx(bare_rms, rel=1e-6)
    if slope < 1:
        assert bare.scale[0] > 3 * trusted.scale[0]
