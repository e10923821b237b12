"""Evaluation-sampling noise of a proportion metric (accuracy, exact match) on a finite set.

Every probe seed and the full fine-tune are scored on the same n held-out examples. Two runs
that differ in which examples they get right differ in their score by sampling alone: the
per-run variance that a finite evaluation set adds is at most p (1 - p) / n (independent
per-example outcomes; runs that agree on most examples add less). The seed dispersion the
decay fit measures contains it, so part of the intrinsic floor L_int can be evaluation noise
rather than training noise: L_eval is reported beside L_int, and regimes are decided on the
training floor L_int - L_eval. A task whose evaluation set cannot resolve the tolerance even
in principle (sqrt(p (1 - p) / n) > tolerance) makes every candidate look Noise-Dominant; how
many examples it would need is ceil(p (1 - p) / tolerance^2).
"""

from __future__ import annotations

import math

import numpy as np

# The static signal (runner/static.py) that carries a candidate's evaluation-set size.
EVAL_EXAMPLES_KEY = "static_eval_examples"
WORST_P = 0.5  # p (1 - p) is largest here: the bound for a metric whose level is not known yet


def eval_sampling_variance(p: np.ndarray | float, n: np.ndarray | float) -> np.ndarray:
    """Upper bound p (1 - p) / n of the sampling variance of a proportion on n examples; NaN
    where n is unknown (<= 0) or p is not a proportion."""
    p = np.asarray(p, float)
    n = np.asarray(n, float)
    ok = (n > 0) & np.isfinite(p)
    q = np.clip(p, 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ok, q * (1 - q) / np.where(n > 0, n, 1.0), np.nan)


def examples_to_resolve(tolerance: float, p: float = WORST_P) -> int:
    """Evaluation examples needed for the sampling sd of a proportion p to be within tolerance."""
    if not tolerance > 0:
        raise ValueError(f"tolerance must be > 0, got {tolerance}")
    return int(math.ceil(p * (1 - p) / tolerance**2))
