"""A candidate's final from its own probes, where no population of completed runs predicts it.

The predictor the allocation engine uses (Engine._predict), for the offline analysis, so a
table analysed with `prehoc-ray analyze` gets the point predictions a plan would show, with
intervals built from the same parts (the seeds' decay fit is analyze's, on its own depth grid):

- each seed's prefix is extrapolated to the horizon by the curve model (core/curves.py), and
  its gain over the seed's last value is trusted as far as the task's rolling-origin
  back-tests bore such gains out (core/backtests.py, gain_trust);
- a new run's final varies around that by the seeds' part (the decay fit's predictive
  variance, or the seeds' own dispersion without a usable fit) plus the curve model's
  extrapolation error the back-tests measured, which every seed shares and which seed
  dispersion cannot see. With one seed the extrapolation error is all there is.

Neither a usable decay fit nor a back-test of the candidate's own (too few evaluations), or
fewer than two back-tests to pool: nothing says how this curve goes on, and it gets no
interval rather than a made-up one.

Two corrections the engine does not make (its beliefs are about a task's many candidates,
early in their runs): the back-tested error of a small pool is widened to a Student-t quantile
on the number of back-tests pooled (two or three back-tests' RMS understates the next error's
spread), and a single seed's variance is at least twice its evaluation noise (the squared
successive differences of its later half, halved: the von Neumann estimate), since the
prediction starts from one noisy evaluation and the final is another. Near the horizon the
extrapolation error goes to zero, and without that floor so would the interval.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm
from scipy.stats import t as student_t

from prehoc_ray.core.backtests import candidate_backtest, extrapolation_error, scale_with_gain_error
from prehoc_ray.core.curves import extrapolate
from prehoc_ray.core.decay import DIAG_AT_BOUND, DecayFit, predictive_variance
from prehoc_ray.core.decision import extrapolation_variance
from prehoc_ray.core.observations import CandidateCurves


@dataclass(frozen=True)
class PrefixPredictions:
    """Per candidate, in the order given."""

    mean: np.ndarray  # mean over seeds of the trusted extrapolated finals (NaN: nothing observed)
    raw_mean: np.ndarray  # the same of the curve model's bare extrapolations (no trust applied)
    seed_finals: list[np.ndarray]  # each seed's trusted extrapolated final
    ext_var: np.ndarray  # the curve model's extrapolation variance at the depth reached (NaN: unknown)
    own_backtest: np.ndarray  # bool: the candidate's own prefix could be back-tested
    depth: np.ndarray  # the deepest step observed
    noise_var: np.ndarray  # evaluation noise variance of one evaluation (NaN: too few points)

    def std(self, i: int, fit: DecayFit | None) -> float:
        """Std of a new run's final for candidate i, given its seeds' decay fit (if any)."""
        finals = self.seed_finals[i]
        n = finals.size
        usable = fit is not None and fit.ok and DIAG_AT_BOUND not in fit.diagnostics
        if not n or (not usable and not self.own_backtest[i]):
            return float("nan")
        if n == 1 and not usable and math.isfinite(self.ext_var[i]) and self.ext_var[i] == 0:
            # One seed at its horizon: nothing left to extrapolate, and a new run's own noise
            # cannot be measured from one seed. No interval rather than a zero-width one.
            return float("nan")
        var = predictive_variance(fit, max(float(self.depth[i]), 1e-9), n) if usable else float("nan")
        ext = float(self.ext_var[i])
        if math.isfinite(ext):
            if not math.isfinite(var) and n >= 2:
                var = (1 + 1 / n) * float(np.var(finals, ddof=1))
            var = ext + (var if math.isfinite(var) else 0.0)
        if n == 1 and math.isfinite(var) and math.isfinite(self.noise_var[i]):
            var = max(var, 2 * float(self.noise_var[i]))
        return math.sqrt(var) if math.isfinite(var) else float("nan")


def _noise_variance(cc: CandidateCurves) -> float:
    """Mean over seeds of half the mean squared successive difference of the later half of the
    curve (at least three evaluations there): the variance of one evaluation's noise, slightly
    overstated where the curve still moves."""
    out = []
    for st, v in cc.seeds.values():
        if st.size:
            later = v[st >= st[-1] / 2]
            if later.size >= 3:
                out.append(float(np.mean(np.diff(later) ** 2)) / 2)
    return float(np.mean(out)) if out else float("nan")


def _small_pool_factor(records: np.ndarray, level: float) -> np.ndarray:
    """(t quantile on `records` degrees of freedom / normal quantile)^2 at the interval level."""
    k = np.maximum(np.asarray(records, float), 1.0)
    return (student_t.ppf(0.5 + level / 2, k) / norm.ppf(0.5 + level / 2)) ** 2


def prefix_predictions(cands: list[CandidateCurves], level: float = 0.9) -> PrefixPredictions:
    """Trusted extrapolations and their extrapolation error for `cands` (each already cut at
    its analysis depth); back-tests are pooled per group, else over all of `cands`."""
    n = len(cands)
    depths = np.array([c.max_step for c in cands], float)
    horizons = np.array([c.horizon for c in cands], float)
    backtests = [candidate_backtest(c) if c.max_step > 0 else None for c in cands]
    err = extrapolation_error([c.group for c in cands], depths, backtests)
    trust = err.gain_trust if err.gain_trust is not None else np.ones(n)
    pairs = [[(extrapolate(st, v, c.horizon), float(v[-1])) for st, v in c.seeds.values() if st.size] for c in cands]
    gain = np.array(
        [
            np.mean([f - last for f, last in p if math.isfinite(f)]) if any(math.isfinite(f) for f, _ in p) else np.nan
            for p in pairs
        ]
    )
    scale = scale_with_gain_error(err.scale, err.gain_error, trust, gain, depths, horizons, err.exponent)
    with np.errstate(invalid="ignore"):
        ext = extrapolation_variance(scale, horizons, depths, err.exponent)
        if err.records is not None:
            ext = ext * _small_pool_factor(err.records, level)
    finals = [
        np.array([last + t * (f - last) for f, last in p if math.isfinite(f)], float) for p, t in zip(pairs, trust)
    ]
    mean = np.array([float(f.mean()) if f.size else np.nan for f in finals])
    raw = [np.array([f for f, _ in p if math.isfinite(f)], float) for p in pairs]
    raw_mean = np.array([float(r.mean()) if r.size else np.nan for r in raw])
    own = np.array([b is not None and bool(b.errors) for b in backtests], bool)
    noise = np.array([_noise_variance(c) for c in cands])
    return PrefixPredictions(mean, raw_mean, finals, np.asarray(ext, float), own, depths, noise)
