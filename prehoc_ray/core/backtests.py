"""The curve model's extrapolation error, measured on the probes themselves.

Seed dispersion cannot see an error that every seed shares: the curve model (core/curves.py)
extrapolating every seed of a candidate the same wrong way. What can see it is a rolling-origin
back-test: extrapolate each seed's prefix up to half its depth to the depth reached, and compare
with what the seed reached there (decision.backtest_error). One candidate's back-test is one
noisy draw of that error, so a task pools its candidates': the error per unit of
`decision.curve_distance`, root-mean-squared over the task's back-tests made at least as deep as
the candidate (the curve model errs less as curves flatten, so shallower back-tests would
overstate a deep candidate's error); at least the two deepest; the portfolio's when its task
has fewer than two.

The distance an error is carried over depends on how fast the task's curves saturate: a power
law y = a + b s^-e still changes by b (c^-e - h^-e) between c and h, and by b ((c/2)^-e - c^-e)
over the back-test's window (decision.curve_distance). The exponent is the median, over the task's candidates,
of the exponent of each candidate's seed-mean curve (the same profile fit the extrapolation
uses; at most 1, from at least 5 evaluations); 0 (the log-linear limit, the most conservative)
when no curve has that many.

The same back-tests say how far to believe the curve model's extrapolated gain: the
least-squares slope of the gains the seeds showed on the gains it extrapolated over the
back-test windows (`gain_trust`, in [0, 1], pooled like the error). A curve model that
overshoots saturating curves would otherwise pick, in every task, the candidate it overshoots
most; a prediction is the last value plus gain_trust times the extrapolated gain. A window
that ends before the curves bend cannot see an overshoot, so this corrects what the probes
have shown, not more (tests/core/test_backtests.py).

What the slope leaves unexplained sets a floor under the error of a long extrapolation
(`gain_error`): the residual sum of squares of the observed gains around gain_trust times the
extrapolated ones, per unit of squared extrapolated gain. The error per unit of curve distance
is pooled mostly from candidates whose curves had flattened; a candidate whose model promises a
large gain over a long way to its horizon (a sigmoid's rise read as a power law) is wrong by
about sqrt(gain_error) times the gain it promises, and the engine makes its scale at least that
(Engine._update_backtests). The residual-to-signal ratio is the heteroscedastic regression's
error model (errors proportional to the predicted gain), the same least squares as the slope.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from prehoc_ray.core.curves import extrapolate, power_exponent
from prehoc_ray.core.decision import backtest_error, curve_distance
from prehoc_ray.core.observations import CandidateCurves

# A power law's exponent from three or four noisy evaluations is anything on the grid; below
# five the conservative limit (0) stands.
MIN_EXPONENT_POINTS = 5
# Curves of training steps saturate no faster than ~s^-1 outside an early transient (the same
# bound decay.ALPHA_MAX_THEORY puts on the variance); a steeper fit would call a curve settled
# that is only past its first rise.
MAX_EXPONENT = 1.0


@dataclass(frozen=True)
class CurveBacktest:
    """One candidate's back-tests (one per seed with enough points) and its curve exponent."""

    points: int  # evaluations it was computed from (a cache key: new points, new back-test)
    errors: tuple[tuple[float, float, float], ...]  # per seed: (extrapolated - observed, origin, depth)
    exponent: float  # power-law exponent of the seed-mean curve; NaN with fewer than 3 evaluations
    gains: tuple[tuple[float, float], ...] = ()  # per seed: (extrapolated gain, observed gain) from origin to depth

    @cached_property
    def error_table(self) -> np.ndarray:
        """One row per seed: (error, origin, depth, the gain the seed showed from origin to depth)."""
        table = np.array(self.errors, float).reshape(len(self.errors), 3)
        seen = np.array([g[1] for g in self.gains], float) if len(self.gains) == len(self.errors) else np.nan
        return np.column_stack([table, np.broadcast_to(seen, len(self.errors))])

    @cached_property
    def gain_sums(self) -> tuple[float, float, float]:
        """Over its seeds: sum extrapolated x observed gain, sum extrapolated^2, sum observed^2."""
        # a few numbers each: plain Python beats numpy's per-call overhead here
        return (
            math.fsum(p * a for p, a in self.gains),
            math.fsum(p * p for p, _ in self.gains),
            math.fsum(a * a for _, a in self.gains),
        )


def candidate_backtest(cc: CandidateCurves) -> CurveBacktest:
    errors, gains = [], []
    for steps, values in cc.seeds.values():
        err, origin = backtest_error(steps, values, extrapolate, min_points=1)
        if math.isfinite(err):
            errors.append((err, origin, float(steps[-1])))
            seen = float(values[-1]) - float(values[np.searchsorted(steps, origin)])
            gains.append((seen + err, seen))
    npts = sum(int(s.size) for s, _ in cc.seeds.values())
    return CurveBacktest(npts, tuple(errors), _mean_curve_exponent(cc), tuple(gains))


def _mean_curve_exponent(cc: CandidateCurves) -> float:
    series = [(s, v) for s, v in cc.seeds.values() if s.size]
    if not series:
        return float("nan")
    common = series[0][0]
    for s, _ in series[1:]:
        common = np.intersect1d(common, s)
    if common.size < MIN_EXPONENT_POINTS:
        return float("nan")
    mean = np.mean([v[np.searchsorted(s, common)] for s, v in series], axis=0)
    return min(power_exponent(common, mean), MAX_EXPONENT)


@dataclass(frozen=True)
class ExtrapolationError:
    """Per candidate, in the order given: the error scale per unit of curve_distance, and the
    exponent to carry it with (extrapolation_variance(scale, horizon, depth, exponent))."""

    scale: np.ndarray
    exponent: np.ndarray
    # How much of the curve model's extrapolated gain its task's back-tests bore out: the
    # least-squares slope of observed on extrapolated gains, in [0, 1] (1 where unknown).
    gain_trust: np.ndarray | None = None
    # What that slope leaves unexplained, per unit of extrapolated gain squared: the residual
    # sum of squares of observed on gain_trust x extrapolated gains over the sum of squared
    # extrapolated gains (NaN where unknown). An extrapolation that promises a large gain is
    # wrong by about sqrt(this) times the gain it promises.
    gain_error: np.ndarray | None = None
    # How many back-tests the scale was pooled from (its window's records): an RMS of a few
    # errors understates the next one's spread (a Student-t, not a normal, quantile).
    records: np.ndarray | None = None


def extrapolation_error(
    groups: list[str], depths: np.ndarray, backtests: list[CurveBacktest | None], trusted: bool = True
) -> ExtrapolationError:
    """trusted: pool the errors of the predictor the engine uses (last value + gain_trust x the
    extrapolated gain), not of the bare curve model; False is the ablation."""
    n = len(groups)
    depths = np.asarray(depths, float)
    by_group: dict[str, list[int]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, []).append(i)
    code = np.empty(n, int)
    for k, idx in enumerate(by_group.values()):
        code[idx] = k
    nan = float("nan")
    exps = np.fromiter((b.exponent if b is not None else nan for b in backtests), float, n)
    finite = np.isfinite(exps)
    portfolio_exp = float(np.median(exps[finite])) if finite.any() else 0.0
    exponent = np.full(n, portfolio_exp)
    for idx in by_group.values():
        es = exps[idx][finite[idx]]
        if es.size:
            exponent[idx] = float(np.median(es))
    # Each candidate's gain_trust (its task's back-tests at its depth, else the portfolio's) and
    # what the slope leaves unexplained: needed first, the errors pooled below are the trusted
    # predictor's.
    with_gain = [i for i, b in enumerate(backtests) if b is not None and b.gains]
    grec_code, grec = np.zeros(0, int), np.zeros((0, 4))
    if with_gain:
        grec_code = code[with_gain]
        grec = np.column_stack([depths[with_gain], np.array([backtests[i].gain_sums for i in with_gain])])
    all_g = _Pool.of(grec)
    gpools = _Pool.by_code(grec, grec_code)
    trust = np.full(n, np.nan)
    gain_error = np.full(n, np.nan)
    empty = _Pool.of(np.zeros((0, 2)))
    for k, idx in enumerate(by_group.values()):
        ix = np.asarray(idx)
        d = depths[ix]
        pool = gpools.get(k, empty)
        t = pool.trust_at(d)
        own = np.isfinite(t)
        trust[ix] = np.where(own, t, all_g.trust_at(d) if all_g.size else 1.0)
        gain_error[ix] = np.where(own, pool.gain_error_at(d), all_g.gain_error_at(d) if all_g.size else np.nan)
    trust = np.where(np.isfinite(trust), trust, 1.0)
    # Per candidate with back-tests, (depth, squared error per unit distance); every back-test's
    # distance in one vectorised call. Arrays throughout: at 10,000 candidates a tuple per record
    # was most of a round's back-test time.
    with_err = [i for i, b in enumerate(backtests) if b is not None and b.errors]
    rec_code, rec = np.zeros(0, int), np.zeros((0, 2))
    if with_err:
        table = np.concatenate([backtests[i].error_table for i in with_err])
        err, origin, depth = table[:, 0], table[:, 1], table[:, 2]
        who = np.repeat(with_err, [len(backtests[i].errors) for i in with_err])
        if trusted:
            # The engine predicts last + t x extrapolated gain (t = gain_trust of the candidate's
            # task at its depth), so its error over a back-test window is t x (seen + err) - seen,
            # seen the gain the seed showed there. The bare model's error overstates it wherever
            # t < 1 (a model that overshoots, shrunk by its trust: DeBERTa's t is about 0.2).
            seen = table[:, 3]
            err = trust[who] * (seen + err) - seen
        dist = curve_distance(origin, depth, exponent[who])
        first = np.flatnonzero(np.r_[True, who[1:] != who[:-1]])  # each candidate's first back-test
        count = np.diff(np.r_[first, who.size])
        mean_err = np.add.reduceat(err, first) / count
        mean_dist = np.add.reduceat(dist, first) / count
        keep = mean_dist > 0
        cand = who[first][keep]
        rec_code = code[cand]
        rec = np.column_stack([depths[cand], (mean_err[keep] / mean_dist[keep]) ** 2])
    # Candidates of a task share one pool of records: each looks up its window in suffix sums
    # (a scan per candidate would be quadratic in an organisation-wide portfolio).
    everything = _Pool.of(rec)
    pools = _Pool.by_code(rec, rec_code)
    scale = np.full(n, np.nan)
    records = np.zeros(n, int)
    for k, idx in enumerate(by_group.values()):
        ix = np.asarray(idx)
        d = depths[ix]
        pool = pools.get(k, empty)
        sc = pool.scale_at(d)
        own = np.isfinite(sc)
        scale[ix] = np.where(own, sc, everything.scale_at(d))
        records[ix] = np.where(own, pool.count_at(d), everything.count_at(d))
    return ExtrapolationError(scale, exponent, trust, gain_error, records)


class _Pool:
    """Records sorted by depth (depth, then one or two summed columns) and their suffix sums.

    The window of a query depth is the records made at that depth or deeper, at least the two
    deepest; none with fewer than two: a shallower back-test overstates a deeper candidate's
    error."""

    def __init__(self, rows: np.ndarray) -> None:
        """rows: (depth, then the summed columns), sorted as tuples would sort (see `of`)."""
        self.size, width = rows.shape
        self.depth = rows[:, 0]
        # suffix[k] = sum of rows k.. (one extra zero row at the end)
        self.suffix = np.vstack([np.cumsum(rows[::-1, 1:], axis=0)[::-1], np.zeros((1, width - 1))])

    @classmethod
    def of(cls, rows: np.ndarray) -> _Pool:
        """A pool of the rows (depth first) in any order."""
        return cls(rows[np.lexsort(rows.T[::-1])] if len(rows) else rows)

    @classmethod
    def by_code(cls, rows: np.ndarray, codes: np.ndarray) -> dict[int, _Pool]:
        """One pool per code, of the rows with that code."""
        if not len(rows):
            return {}
        order = np.argsort(codes, kind="stable")
        cs = codes[order]
        starts = np.flatnonzero(np.r_[True, cs[1:] != cs[:-1]])
        ends = np.r_[starts[1:], cs.size]
        return {int(cs[a]): cls.of(rows[order[a:b]]) for a, b in zip(starts.tolist(), ends.tolist())}

    def _start(self, depth: np.ndarray) -> np.ndarray:
        return np.minimum(np.searchsorted(self.depth, depth, side="left"), self.size - 2)

    def count_at(self, depth: np.ndarray) -> np.ndarray:
        """Records in each depth's window (0 without one)."""
        depth = np.asarray(depth, float)
        if self.size < 2:
            return np.zeros(depth.shape, int)
        return self.size - self._start(depth)

    def scale_at(self, depth: np.ndarray) -> np.ndarray:
        """RMS error per unit distance over each depth's window (NaN without one)."""
        depth = np.asarray(depth, float)
        if self.size < 2:
            return np.full(depth.shape, np.nan)
        k = self._start(depth)
        return np.sqrt(self.suffix[k, 0] / (self.size - k))

    def trust_at(self, depth: np.ndarray) -> np.ndarray:
        """Slope of observed on extrapolated gains over each depth's window, clipped to [0, 1]
        (NaN without a window or without extrapolated gain)."""
        depth = np.asarray(depth, float)
        if self.size < 2:
            return np.full(depth.shape, np.nan)
        k = self._start(depth)
        num, den = self.suffix[k, 0], self.suffix[k, 1]
        with np.errstate(all="ignore"):
            return np.where(den > 0, np.clip(num / np.where(den > 0, den, 1.0), 0.0, 1.0), np.nan)

    def gain_error_at(self, depth: np.ndarray) -> np.ndarray:
        """Over each depth's window: sum (seen - t pred)^2 / sum pred^2, t = trust_at(depth)."""
        depth = np.asarray(depth, float)
        if self.size < 2 or self.suffix.shape[1] < 3:
            return np.full(depth.shape, np.nan)
        k = self._start(depth)
        t = self.trust_at(depth)
        po, pp, oo = self.suffix[k, 0], self.suffix[k, 1], self.suffix[k, 2]
        with np.errstate(all="ignore"):
            return np.where(pp > 0, np.maximum(oo - 2 * t * po + t * t * pp, 0.0) / np.where(pp > 0, pp, 1.0), np.nan)


def scale_with_gain_error(
    scale: np.ndarray,
    gain_error: np.ndarray | None,
    gain_trust: np.ndarray,
    gain: np.ndarray,
    depth: np.ndarray,
    horizon: np.ndarray,
    exponent: np.ndarray,
) -> np.ndarray:
    """Each error scale raised to the floor its task's unexplained gain share sets (module
    docstring, `gain_error`): sqrt(gain_error) x gain_trust x |gain| / curve_distance(depth,
    horizon), where `gain` is the candidate's extrapolated gain over its last value. The error
    per unit of curve distance is pooled mostly from candidates whose curves had flattened; one
    whose model promises a large gain over a long way to its horizon is wrong by about that
    share of the gain it promises. Per unit of curve distance, so it still shrinks as the probe
    deepens. Unchanged where anything is unknown."""
    out = np.array(scale, float, copy=True)
    if gain_error is None:
        return out
    use = np.isfinite(out) & np.isfinite(gain_error) & (gain_error > 0)
    idx = np.flatnonzero(use)
    if not idx.size:
        return out
    dist = curve_distance(np.maximum(depth[idx], 1), np.maximum(horizon[idx], 1), exponent[idx])
    with np.errstate(invalid="ignore", divide="ignore"):
        floor = np.sqrt(gain_error[idx]) * gain_trust[idx] * np.abs(gain[idx]) / dist
    ok = np.isfinite(gain[idx]) & (dist > 0)
    out[idx] = np.where(ok, np.maximum(out[idx], np.where(ok, floor, 0.0)), out[idx])
    return out
