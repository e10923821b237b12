"""Scoring the offline analysis against realised finals, next to the naive predictor.

Every prediction `analyze` makes for a candidate with a known final is out-of-fold (its own
final never trained its model), so these scores are honest estimates of what the predictor
does on a new candidate. The naive baseline is what a user would do without us: predict the
last value observed at the probe depth, and when nothing is observed yet, the mean final of
the *other* candidates of the group (leave-one-out, so the baseline is just as honest).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr


def naive_prediction(last_observed: np.ndarray, final: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Last observed value; the leave-one-out group mean of known finals where none is observed."""
    last = np.asarray(last_observed, float)
    final = np.asarray(final, float)
    group = np.asarray(group).astype(str)
    out = last.copy()
    for g in np.unique(group):
        members = group == g
        known = members & np.isfinite(final)
        total, count = float(final[known].sum()), int(known.sum())
        fill = members & ~np.isfinite(last)
        for i in np.flatnonzero(fill):
            own = np.isfinite(final[i])
            n = count - own
            out[i] = (total - (final[i] if own else 0.0)) / n if n > 0 else np.nan
    return out


@dataclass(frozen=True)
class Score:
    """Scores of one predictor on the candidates with a known final."""

    n: int
    rmse: float
    spearman: float
    coverage: float = float("nan")  # share of finals inside [lower, upper]; NaN without intervals
    mean_width: float = float("nan")


def score(
    pred: np.ndarray, final: np.ndarray, lower: np.ndarray | None = None, upper: np.ndarray | None = None
) -> Score:
    """RMSE, Spearman correlation and interval coverage over rows where both are finite."""
    pred = np.asarray(pred, float)
    final = np.asarray(final, float)
    ok = np.isfinite(pred) & np.isfinite(final)
    n = int(ok.sum())
    if n == 0:
        return Score(0, float("nan"), float("nan"))
    rmse = float(np.sqrt(np.mean((pred[ok] - final[ok]) ** 2)))
    rho = (
        float(spearmanr(pred[ok], final[ok]).statistic)
        if n >= 3 and np.ptp(pred[ok]) > 0 and np.ptp(final[ok]) > 0
        else float("nan")
    )
    cov = width = float("nan")
    if lower is not None and upper is not None:
        lo = np.asarray(lower, float)[ok]
        hi = np.asarray(upper, float)[ok]
        has = np.isfinite(lo) & np.isfinite(hi)
        if has.any():
            y = final[ok][has]
            cov = float(np.mean((y >= lo[has]) & (y <= hi[has])))
            width = float(np.mean(hi[has] - lo[has]))
    return Score(n, rmse, rho, cov, width)


def score_predictions(predictions: dict[str, np.ndarray]) -> tuple[Score, Score]:
    """(model score, naive score) for the columns of AnalysisResult.predictions."""
    p = predictions
    naive = naive_prediction(p["last_observed"], p["final"], p["group"])
    return (
        score(p["predicted_final"], p["final"], p["lower"], p["upper"]),
        score(naive, p["final"]),
    )
