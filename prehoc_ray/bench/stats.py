"""Paired comparisons a reviewer accepts: bootstrap intervals of mean regret differences.

Two policies are compared on the same worlds (and repeats): per world, the difference of
their regrets (prehoc minus peer; negative = prehoc better). The 95% interval of the mean
difference is a percentile bootstrap over worlds (Efron & Tibshirani 1993, ch. 13), resampling
whole worlds so that the tasks of one world, which share their draw, stay together.

Verdict: PASS when the interval lies wholly below zero (prehoc's regret significantly lower),
LOSS when wholly above, TIE otherwise (including identical regrets everywhere). With fewer
than MIN_UNITS paired units a percentile bootstrap has no meaning (two units give an
"interval" between two numbers): the verdict is n/a.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np


MIN_UNITS = 5


class Verdict(str, Enum):
    PASS = "PASS"
    TIE = "TIE"
    LOSS = "LOSS"
    NA = "n/a"  # too few paired units to tell


@dataclass(frozen=True)
class PairedDifference:
    mean: float  # mean over worlds of (a - b)
    lo: float  # 95% bootstrap interval of the mean
    hi: float
    n: int  # paired worlds
    wins: int  # worlds where a < b
    losses: int  # worlds where a > b

    @property
    def verdict(self) -> Verdict:
        if self.n < MIN_UNITS or not math.isfinite(self.lo):
            return Verdict.NA
        if self.hi < 0:
            return Verdict.PASS
        if self.lo > 0:
            return Verdict.LOSS
        return Verdict.TIE


def bootstrap_mean_ci(x: np.ndarray, level: float = 0.95, n_boot: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of x (NaN for fewer than 2 values)."""
    x = np.asarray(x, float)
    x = x[np.isfinite(x)]
    if x.size < 2:
        return float("nan"), float("nan")
    if np.ptp(x) == 0:
        return float(x[0]), float(x[0])
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, size=(n_boot, x.size))].mean(axis=1)
    a = (1 - level) / 2
    return float(np.quantile(means, a)), float(np.quantile(means, 1 - a))


def paired_difference(a: dict, b: dict, level: float = 0.95, seed: int = 0) -> PairedDifference:
    """a, b: world -> regret (already averaged over repeats). Only worlds in both count."""
    keys = sorted(set(a) & set(b))
    d = np.array([a[k] - b[k] for k in keys], float)
    d = d[np.isfinite(d)]
    if not d.size:
        return PairedDifference(float("nan"), float("nan"), float("nan"), 0, 0, 0)
    lo, hi = bootstrap_mean_ci(d, level, seed=seed)
    return PairedDifference(float(d.mean()), lo, hi, int(d.size), int((d < 0).sum()), int((d > 0).sum()))
