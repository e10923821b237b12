"""Empirical-Bayes shrinkage of members' floors toward their family (docs/design.md, Sharing strength).

A floor fitted from a handful of seeds is a sample variance with few degrees of freedom: with
4 seeds its relative error is about 80%, enough to call a Dynamic-Critical candidate
Noise-Dominant by chance. Members of a task family are alike, so each member's log-floor is
pulled toward the family's mean log-floor by the share of its spread that sampling noise
explains (a James-Stein / method-of-moments estimate of the between-member variance). A
member that truly differs from its family keeps most of its own estimate.

The log of a sample variance sits below the log of the variance by E log(chi2_v / v) (0.28x
for 2 seeds, 0.69x for 4; decay.log_bias), so the members' logs are debiased first and the
family's centre is the log of the members' *mean* floor (unbiased), not the mean of their logs:
otherwise shrinkage pulls every floor toward a centre a factor 1.5-3.5 too low, and the
engine's intervals, built on those floors, under-cover.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from scipy.special import polygamma

from prehoc_ray.core.decay import DecayFit, log_bias


def shrink_floors(fits: list[DecayFit], n_seeds: list[int], scale: float) -> list[DecayFit]:
    """Shrink L_int (and its interval) of each fit toward the family; others are untouched.

    scale: a risk level below which floors are indistinguishable from zero (for example the
    tolerance squared / 100); it keeps the log of a zero floor finite.
    """
    ok = [i for i, f in enumerate(fits) if f.ok]
    if len(ok) < 3 or scale <= 0:
        return fits
    eps = scale
    L = np.array([fits[i].L_int for i in ok])
    dof = np.array([max(n_seeds[i] - 1, 1) for i in ok], float)
    logL = np.log(L + eps) - log_bias(dof)
    # Sampling variance of the log of a variance estimated from s seeds: trigamma((s - 1) / 2).
    s2 = polygamma(1, dof / 2)
    center = float(np.log(np.average(L, weights=dof) + eps))
    between = max(0.0, float(np.var(logL, ddof=1) - s2.mean()))
    B = s2 / (s2 + between)
    out = list(fits)
    for k, i in enumerate(ok):
        f = fits[i]
        new = np.exp(B[k] * center + (1 - B[k]) * logL[k]) - eps
        new = max(float(new), 0.0)
        ratio_lo = (f.L_int_lo + eps) / (f.L_int + eps) if np.isfinite(f.L_int_lo) else np.nan
        ratio_hi = (f.L_int_hi + eps) / (f.L_int + eps) if np.isfinite(f.L_int_hi) else np.nan
        out[i] = replace(
            f,
            L_int=new,
            L_int_lo=max(float((new + eps) * ratio_lo - eps), 0.0) if np.isfinite(ratio_lo) else f.L_int_lo,
            L_int_hi=float((new + eps) * ratio_hi - eps) if np.isfinite(ratio_hi) else f.L_int_hi,
        )
    return out
