"""Predicting a candidate's final outcome from what is known at depth c (the information I_c).

Features = the candidate's curve prefix (curves.curve_features on the seed-averaged curve) and
its static features. A Gaussian process trained on the candidates of the same group whose
finals are known maps them to the final; intervals are the GP's predictive std scaled so that
the exact leave-one-out z-scores of the training set reach the nominal level (a split-free
conformal calibration). Every prediction for a candidate with a known final is out-of-fold:
its own final never enters its model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from prehoc_ray.core.curves import curve_features, extrapolate
from prehoc_ray.core.gp import GaussianProcess
from prehoc_ray.core.observations import CandidateCurves

MIN_POPULATION = 8  # fewer completed runs than this: no population model for the group


def feature_matrix(cands: list[CandidateCurves], depths: np.ndarray, use_curve: bool = True) -> np.ndarray:
    """One row per candidate: curve features at its depth (if `use_curve`) then static features."""
    rows = []
    for cc, d in zip(cands, depths):
        parts = []
        if use_curve:
            st, v = cc.truncated(d).mean_curve()
            parts.append(curve_features(st, v, cc.horizon))
        parts.append(cc.static)
        rows.append(np.concatenate(parts) if parts else np.zeros(0))
    return np.vstack(rows) if rows else np.zeros((0, 0))


def fit_imputer(train: np.ndarray, fallback: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(column means of `train`, NaN -> `fallback`; columns not constant in training)."""
    with np.errstate(all="ignore"):
        means = (
            np.nanmean(np.where(np.isfinite(train), train, np.nan), axis=0) if train.size else np.zeros(train.shape[1])
        )
    means = np.where(np.isfinite(means), means, fallback)
    filled = np.where(np.isfinite(train), train, means)
    keep = filled.std(0) > 1e-12 if filled.shape[0] > 1 else np.ones(train.shape[1], bool)
    return means, keep


def apply_imputer(X: np.ndarray, means: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return np.where(np.isfinite(X), X, means)[:, keep]


def impute(train: np.ndarray, *others: np.ndarray, fallback: float = 0.0) -> list[np.ndarray]:
    """Replace NaN by the training column mean (or `fallback`); drop columns constant in training."""
    means, keep = fit_imputer(train, fallback)
    return [apply_imputer(m, means, keep) for m in (train, *others)]


@dataclass
class CalibratedPredictor:
    """Predicts a correction to a baseline (the GP, the training mean or zero) with calibrated std.

    The target is a correction to the naive "last observed value", which is heavy-tailed on real
    runs: most corrections are small, a few runs collapse to chance level (or recover from it)
    after the prefix. A GP fitted with Gaussian noise then extrapolates a collapse onto a
    healthy neighbour with a confident, large correction, and those few errors dominate the
    squared error. So the GP's correction is clipped to a size T chosen on held-out points
    (T = 0 is the naive predictor itself); zero and the training mean are the other candidates.
    """

    level: float = 0.9
    seed: int = 0
    clip: bool = True  # False: the GP's correction unclipped (for ablations)

    def fit(self, X: np.ndarray, y: np.ndarray) -> CalibratedPredictor:
        n = y.size
        self.X_train_ = X
        self.gp_ = None
        self.clip_ = np.inf
        # The constant models: the training mean (leave-one-out spread as std) and zero.
        loo_mu = (y.sum() - y) / max(n - 1, 1)
        const_mse = float(np.mean((y - loo_mu) ** 2))
        zero_mse = float(np.mean(y**2))
        if zero_mse <= const_mse:
            self.fallback_, self.base_std_, self.loo_mean_ = 0.0, float(np.sqrt(zero_mse)), np.zeros(n)
        else:
            self.fallback_, self.base_std_, self.loo_mean_ = float(np.mean(y)), float(np.sqrt(const_mse)), loo_mu
        z = np.abs(y - self.loo_mean_) / max(self.base_std_, 1e-12)
        # A GP needs several points per feature; below that, or when it does not beat the
        # constant models on held-out points, a constant model is the honest choice. The
        # comparison uses a 2-fold split, not the GP's leave-one-out error: LOO reuses the
        # hyper-parameters tuned on the very points it scores, which flatters the GP (small or
        # noisy families then get an over-fitted GP with over-confident intervals).
        if X.shape[1] > 0 and n >= 4 * (X.shape[1] + 1):
            halves = np.array_split(np.random.default_rng(self.seed).permutation(n), 2)
            held_mu, held_sd = np.empty(n), np.empty(n)
            const_err = np.empty(n)
            for a, b in ((halves[0], halves[1]), (halves[1], halves[0])):
                half = GaussianProcess(seed=self.seed).fit(X[a], y[a])
                held_mu[b], held_sd[b] = half.predict(X[b])
                const_err[b] = y[b] - y[a].mean()
            clip, gp_mse = best_clip(held_mu, y) if self.clip else (np.inf, float(np.mean((y - held_mu) ** 2)))
            if gp_mse < min(float(np.mean(const_err**2)), zero_mse):
                self.gp_ = GaussianProcess(seed=self.seed).fit(X, y)
                self.clip_ = clip
                self.loo_mean_ = np.clip(self.gp_.loo()[0], -clip, clip)
                # Calibrate on held-out z-scores (the half-data models are, if anything, less
                # sure than the full one, so the intervals err on the wide side).
                z = np.abs(y - np.clip(held_mu, -clip, clip)) / np.maximum(held_sd, 1e-12)
        zq = norm.ppf(0.5 + self.level / 2)
        # Conformal-style: the (level)-quantile of |z| with the finite-sample (n+1) correction.
        n = z.size
        q = min(1.0, np.ceil((n + 1) * self.level) / n)
        self.scale_ = float(np.quantile(z, q) / zq) if n else 1.0
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self.gp_ is None:
            return np.full(X.shape[0], self.fallback_), np.full(X.shape[0], self.base_std_ * self.scale_)
        mu, sd = self.gp_.predict(X)
        return np.clip(mu, -self.clip_, self.clip_), sd * self.scale_


def best_clip(pred: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """The clip T of predicted corrections that minimises held-out squared error, and that error.

    Candidates: no clip and the quantiles of the predicted correction sizes (so the grid scales
    with the metric); T = 0 is left to the zero model, which the caller compares against.
    """
    grid = np.unique(np.concatenate([np.quantile(np.abs(pred), [0.5, 0.75, 0.9, 0.95, 0.99]), [np.inf]]))
    mse = np.array([np.mean((y - np.clip(pred, -t, t)) ** 2) for t in grid])
    best = int(np.argmin(mse))
    return float(grid[best]), float(mse[best])


def out_of_fold(
    cands: list[CandidateCurves],
    depths: np.ndarray,
    *,
    level: float = 0.9,
    n_folds: int = 5,
    seed: int = 0,
    use_curve: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Predicted final and calibrated std per candidate.

    Candidates with a known final are predicted by K-fold cross-fitting (their final never
    trains their own model); the rest by a model fitted on every known final.
    """
    X = feature_matrix(cands, depths, use_curve)
    y = np.array([c.final for c in cands])
    known = np.isfinite(y)
    # The GP learns the correction to the naive "last observed value" predictor, so with little
    # data it falls back to that baseline rather than to the population mean.
    last = X[:, 1] if use_curve else np.full(len(cands), np.nan)
    mean = np.full(len(cands), np.nan)
    std = np.full(len(cands), np.nan)
    idx_known = np.flatnonzero(known)
    if idx_known.size < MIN_POPULATION:
        raise ValueError(
            f"a population model needs at least {MIN_POPULATION} candidates with a known final, got {idx_known.size}"
        )
    rng = np.random.default_rng(seed)
    folds = np.array_split(rng.permutation(idx_known), min(n_folds, idx_known.size))

    def fit_predict(train: np.ndarray, test: np.ndarray, k: int) -> None:
        base = np.where(np.isfinite(last), last, float(y[train].mean()))
        Xtr, Xte = impute(X[train], X[test], fallback=float(y[train].mean()))
        model = CalibratedPredictor(level, seed + k).fit(Xtr, y[train] - base[train])
        m, sd = model.predict(Xte)
        # A final outside everything the population has reached is not credible: clip to the
        # training range widened by a tenth (bounded metrics such as accuracy stay bounded).
        lo, hi = float(y[train].min()), float(y[train].max())
        pad = 0.1 * (hi - lo)
        mean[test], std[test] = np.clip(base[test] + m, lo - pad, hi + pad), sd

    for k, test in enumerate(folds):
        fit_predict(np.setdiff1d(idx_known, test), test, k)
    unknown = np.flatnonzero(~known)
    if unknown.size:
        fit_predict(idx_known, unknown, len(folds))
    return mean, std


class HistoryPredictor:
    """Predicts new candidates of one family from the family's completed runs (its history).

    The history's static features must be in the same order as the candidates'. For a probe
    depth d, the GP of `out_of_fold` (the correction to the last observed value, imputation,
    conformal scale, clipping to the training range widened by a tenth) is trained on the
    history truncated at d; depth 0 uses the static features alone. One model per depth,
    cached: the engine asks again every round, and most candidates' depths did not move.
    """

    def __init__(self, history: list[CandidateCurves], *, level: float = 0.9, seed: int = 0) -> None:
        self.known = [h for h in history if np.isfinite(h.final)]
        self.y = np.array([h.final for h in self.known])
        self.level, self.seed = level, seed
        self._models: dict[float, tuple] = {}

    @property
    def usable(self) -> bool:
        return len(self.known) >= MIN_POPULATION

    def _model(self, d: float) -> tuple:
        if d not in self._models:
            y, use_curve = self.y, bool(d > 0)
            Xh = feature_matrix(self.known, np.full(len(self.known), d), use_curve)
            base = Xh[:, 1] if use_curve else np.full(len(self.known), y.mean())
            base = np.where(np.isfinite(base), base, y.mean())
            means, keep = fit_imputer(Xh, fallback=float(y.mean()))
            model = CalibratedPredictor(self.level, self.seed + len(self._models)).fit(
                apply_imputer(Xh, means, keep), y - base
            )
            self._models[d] = (model, means, keep)
        return self._models[d]

    def predict(self, cands: list[CandidateCurves], depths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predicted final and calibrated std per candidate; NaN when the history is too small."""
        depths = np.asarray(depths, float)
        mean, std = np.full(len(cands), np.nan), np.full(len(cands), np.nan)
        if not self.usable or not cands:
            return mean, std
        y = self.y
        lo, hi = float(y.min()), float(y.max())
        pad = 0.1 * (hi - lo)
        for d in np.unique(depths):
            idx = np.flatnonzero(depths == d)
            model, means, keep = self._model(float(d))
            Xc = feature_matrix([cands[i] for i in idx], depths[idx], bool(d > 0))
            base = np.where(np.isfinite(Xc[:, 1]), Xc[:, 1], y.mean()) if d > 0 else np.full(idx.size, y.mean())
            m, sd = model.predict(apply_imputer(Xc, means, keep))
            mean[idx], std[idx] = np.clip(base + m, lo - pad, hi + pad), sd
        return mean, std


def predict_from_history(
    history: list[CandidateCurves],
    cands: list[CandidateCurves],
    depths: np.ndarray,
    *,
    level: float = 0.9,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """HistoryPredictor(history).predict(cands, depths): one family, one call."""
    return HistoryPredictor(history, level=level, seed=seed).predict(cands, depths)


def population_risk(
    cands: list[CandidateCurves],
    depths: np.ndarray,
    *,
    seed: int = 0,
) -> np.ndarray:
    """U(c) by population risk: the cross-validated squared error of the predictor fed I_c.

    Uses the GP's exact leave-one-out predictions (one fit per depth instead of K), with
    hyper-parameters shared across the left-out points: a cheap, nearly unbiased stand-in for
    K-fold risk. Depth 0 means static information only: the estimate of L(0).
    """
    known = [c for c in cands if np.isfinite(c.final)]
    y = np.array([c.final for c in known])
    if y.size < MIN_POPULATION:
        raise ValueError(f"population risk needs at least {MIN_POPULATION} candidates with a known final, got {y.size}")
    out = []
    for c in np.atleast_1d(depths):
        use_curve = bool(c > 0)
        X = feature_matrix(known, np.full(len(known), float(c)), use_curve)
        last = X[:, 1] if use_curve else np.full(len(known), np.nan)
        base = np.where(np.isfinite(last), last, float(y.mean()))
        (Xi,) = impute(X, fallback=float(y.mean()))
        model = CalibratedPredictor(seed=seed).fit(Xi, y - base)
        out.append(float(np.mean((base + model.loo_mean_ - y) ** 2)))
    return np.array(out)


def seed_predictions(cc: CandidateCurves, depth: float) -> np.ndarray:
    """Each seed's predicted final from its own prefix (NaN for a seed with no observation)."""
    out = []
    for st, v in cc.seeds.values():
        keep = st <= depth
        out.append(extrapolate(st[keep], v[keep], cc.horizon) if keep.any() else np.nan)
    return np.array(out)


def seed_dispersion_many(members: list[CandidateCurves], depths: np.ndarray) -> np.ndarray:
    """seed_dispersion of every member at the same depths, (members, depths), in one pass per
    seed count.

    Members with the same number of seeds are stacked without padding and searched at once, on
    integer ranks of their steps and the depths (exact for any float steps), so each row adds
    the same numbers in the same order as one member alone would. What goes is a Python call per
    member: a tenth of a refit at 10,000 candidates."""
    depths = np.atleast_1d(np.asarray(depths, float))
    out = np.full((len(members), depths.size), np.nan)
    by_count: dict[int, list[int]] = {}
    for k, cc in enumerate(members):
        if len(cc.seeds) >= 2:  # no dispersion from one seed: the row stays NaN
            by_count.setdefault(len(cc.seeds), []).append(k)
    for count, ks in by_count.items():
        series = [sv for k in ks for sv in members[k].seeds.values()]
        sizes = np.array([st.size for st, _ in series])
        if not sizes.sum() or not depths.size:
            continue
        steps = np.concatenate([st for st, _ in series])
        values = np.concatenate([v for _, v in series])
        # Each seed's latest evaluation at each depth: one search over all the seeds, each
        # seed's ranks offset past the others' (ranks ascend within a seed as its steps do).
        _, rank = np.unique(np.r_[steps, depths], return_inverse=True)
        width = int(rank.max()) + 1
        step_rank, depth_rank = rank[: steps.size], rank[steps.size :]
        n_series = len(series)
        offset = np.arange(n_series) * width
        at = (
            np.searchsorted(step_rank + np.repeat(offset, sizes), depth_rank[None, :] + offset[:, None], side="right")
            - 1
        )
        has = at >= np.r_[0, np.cumsum(sizes)[:-1]][:, None]
        last = np.where(has, values[np.maximum(at, 0)], np.nan).reshape(len(ks), count, depths.size)
        seen = np.isfinite(last)
        n = seen.sum(1)
        with np.errstate(all="ignore"):
            mean = np.where(seen, last, 0.0).sum(1) / n
            var = np.where(seen, (last - mean[:, None, :]) ** 2, 0.0).sum(1) / (n - 1)
        out[ks] = np.where(n >= 2, var, np.nan)
    return out


def seed_dispersion(cc: CandidateCurves, depths: np.ndarray) -> np.ndarray:
    """U(c) by seed dispersion: the variance across seeds of the metric reached at depth c.

    The per-seed prediction of the final is the seed's own latest value at c. Why not an
    extrapolation: the learning transient a candidate's seeds share cancels in the variance
    across seeds anyway, while a per-seed curve fit adds its own estimation noise, which would
    inflate U exactly where prefixes are short and bias alpha down.
    """
    depths = np.atleast_1d(np.asarray(depths, float))
    rows = []
    for st, v in cc.seeds.values():
        at = np.searchsorted(st, depths, side="right") - 1  # the seed's latest evaluation at each depth
        rows.append(np.where(at >= 0, v[np.maximum(at, 0)] if v.size else np.nan, np.nan))
    if len(rows) < 2:
        return np.full(depths.shape, np.nan)
    last = np.vstack(rows)
    seen = np.isfinite(last)
    n = seen.sum(0)
    with np.errstate(all="ignore"):
        mean = np.where(seen, last, 0.0).sum(0) / n
        var = np.where(seen, (last - mean) ** 2, 0.0).sum(0) / (n - 1)
    return np.where(n >= 2, var, np.nan)
