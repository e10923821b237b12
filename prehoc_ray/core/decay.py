"""Joint fit of the uncertainty decay U(c) = L_int + K c^-alpha (docs/design.md, The decay law).

All three parameters are fitted at once, in log parameters with bounds, on log residuals (U
spans orders of magnitude and its sampling error is multiplicative) with a robust soft-L1
loss (one bad depth must not drag the floor). A profile grid over alpha gives the starting
point; scipy.optimize.least_squares refines it. Intervals come from a residual bootstrap whose
replicates are refitted with the vectorised profile grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares
from scipy.special import digamma

from prehoc_ray.core.powerlaw import DEFAULT_EXPONENTS, profile_fit, weighted_affine_fit

# Theory bound on alpha: with step sizes eta_c ~ c^-rho and rho in (1/2, 1], the parameter
# covariance shrinks no faster than c^-(2 rho - 1), so alpha <= 1. A faster observed decay
# means the probe has not yet reached the locally regular regime (an early transient).
ALPHA_MAX_THEORY = 1.0
ALPHA_BOUNDS = (1e-3, 5.0)

DIAG_TOO_FEW = "too_few_points"
DIAG_FLOOR_UNIDENTIFIED = "floor_unidentified"
DIAG_EARLY_TRANSIENT = "early_transient"
DIAG_NO_DECAY = "no_decay"
DIAG_INCREASING = "increasing"
DIAG_AT_BOUND = "at_bound"

DIAGNOSTIC_HELP = {
    DIAG_TOO_FEW: "fewer than 3 distinct depths: the three parameters cannot be fitted",
    DIAG_FLOOR_UNIDENTIFIED: "the data cannot tell an intrinsic floor from a slow decay; probe deeper",
    DIAG_EARLY_TRANSIENT: "the decay is faster than theory allows (alpha > alpha_max): still an early transient; drop the first depths or probe deeper",
    DIAG_NO_DECAY: "no measurable decay: the risk is all floor at these depths",
    DIAG_INCREASING: "the uncertainty grows with depth: runs diverge or the predictor is unstable",
    DIAG_AT_BOUND: "the fit ended on a parameter bound (alpha at its limit, or K = 0 with a decay seen): the decay law is not identified; probe deeper",
}


def on_bound(alpha: np.ndarray | float, K: np.ndarray | float, no_decay: np.ndarray | bool) -> np.ndarray:
    """Where a fit ended on a bound of its parameters: alpha at either end of ALPHA_BOUNDS, or
    K = 0 although a decay was seen. Such a fit is the optimizer giving up, not a measurement:
    c* and regimes must not be read from it. A fit of no measurable decay (K = 0 by design)
    is not on a bound."""
    a = np.asarray(alpha, float)
    k = np.asarray(K, float)
    lo, hi = ALPHA_BOUNDS
    return ~np.asarray(no_decay, bool) & ((a >= hi * (1 - 1e-3)) | (a <= lo * (1 + 1e-3)) | (k <= 0))


@dataclass(frozen=True)
class DecayFit:
    """A fitted envelope of U(c), with central intervals at `level` and diagnostics."""

    L_int: float
    K: float
    alpha: float
    L_int_lo: float = np.nan
    L_int_hi: float = np.nan
    K_lo: float = np.nan
    K_hi: float = np.nan
    alpha_lo: float = np.nan
    alpha_hi: float = np.nan
    n_points: int = 0
    c_min: float = np.nan
    c_max: float = np.nan
    diagnostics: tuple[str, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        # math, not numpy: a refit asks every candidate's fit this, and np.isfinite on a scalar
        # costs ten times as much
        return math.isfinite(self.L_int) and math.isfinite(self.K) and math.isfinite(self.alpha)

    def risk(self, c: np.ndarray | float) -> np.ndarray:
        """L(c) = L_int + K c^-alpha on the envelope."""
        c = np.asarray(c, float)
        return self.L_int + self.K * c ** (-self.alpha)

    @staticmethod
    def empty(n_points: int, diagnostics: tuple[str, ...]) -> DecayFit:
        return DecayFit(np.nan, np.nan, np.nan, n_points=n_points, diagnostics=diagnostics)


def _prepare(c: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = np.asarray(c, float).ravel()
    U = np.asarray(U, float).ravel()
    if c.shape != U.shape:
        raise ValueError(f"depths and U differ in length: {c.size} vs {U.size}")
    keep = np.isfinite(c) & np.isfinite(U) & (c > 0) & (U >= 0)
    c, U = c[keep], U[keep]
    order = np.argsort(c)
    return c[order], U[order]


def _relative_weights(U: np.ndarray) -> np.ndarray:
    # 1/U^2 makes the affine solve approximate log-residual least squares.
    floor = 1e-12 * max(float(U.max()), 1e-300)
    return 1.0 / np.maximum(U, floor) ** 2


def _refine(c: np.ndarray, U: np.ndarray, start: tuple[float, float, float], f_scale: float) -> np.ndarray:
    Umax = float(U.max())
    floor = 1e-9 * Umax
    lo = np.log([floor, 1e-12 * Umax * c.min() ** ALPHA_BOUNDS[0], ALPHA_BOUNDS[0]])
    hi = np.log([10 * Umax, 1e6 * Umax * c.max() ** ALPHA_BOUNDS[1], ALPHA_BOUNDS[1]])
    x0 = np.clip(np.log(np.maximum(start, [floor, np.exp(lo[1]), ALPHA_BOUNDS[0]])), lo + 1e-9, hi - 1e-9)
    logU = np.log(np.maximum(U, floor))

    def resid(theta: np.ndarray) -> np.ndarray:
        L, K, a = np.exp(theta)
        return np.log(L + K * c ** (-a)) - logU

    sol = least_squares(resid, x0, bounds=(lo, hi), loss="soft_l1", f_scale=f_scale, method="trf", max_nfev=200)
    return np.exp(sol.x)


def log_bias(dof: float | np.ndarray | None) -> float | np.ndarray:
    """E log(chi2_dof / dof): how far below log(sigma^2) the log of a sample variance sits.

    The decay fit works in log space (relative errors), so a U(c) that is a sample variance of
    dof degrees of freedom (the seed dispersion of s seeds: dof = s - 1) would be fitted
    exp(log_bias) below the variance it estimates: 0.69x for 4 seeds, a floor biased a third
    low and intervals that miss it. Callers that know dof divide it out. None or inf: 0.
    """
    if dof is None:
        return 0.0
    d = np.asarray(dof, float)
    ok = np.isfinite(d) & (d > 0)
    safe = np.where(ok, d, 1.0)
    out = np.where(ok, digamma(safe / 2) + np.log(2 / safe), 0.0)
    return float(out) if out.ndim == 0 else out


def fit_decay(
    c: np.ndarray,
    U: np.ndarray,
    *,
    level: float = 0.9,
    n_boot: int = 200,
    rng: np.random.Generator | None = None,
    alpha_max: float = ALPHA_MAX_THEORY,
    f_scale: float = 0.25,
    dof: float | None = None,
) -> DecayFit:
    """Fit U(c) = L_int + K c^-alpha to uncertainty proxies measured at depths c.

    dof: the degrees of freedom of each U when it is a sample variance (seeds - 1 for seed
    dispersion); the log-space fit is then corrected for the log's bias (see log_bias).
    Deterministic given `rng` (default: a fixed seed). `n_boot=0` skips the intervals.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(0) if rng is None else rng
    c, U = _prepare(c, U)
    U = U * np.exp(-log_bias(dof))
    n = int(np.unique(c).size)
    if n < 3:
        return DecayFit.empty(n, (DIAG_TOO_FEW,))
    if float(U.max()) <= 0:
        return DecayFit(
            0.0,
            0.0,
            ALPHA_BOUNDS[0],
            0,
            0,
            0,
            0,
            ALPHA_BOUNDS[0],
            ALPHA_BOUNDS[0],
            n,
            c.min(),
            c.max(),
            (DIAG_NO_DECAY,),
        )

    w = _relative_weights(U)
    a0, b0, e0, _ = profile_fit(c, U, w, DEFAULT_EXPONENTS, nonneg=True, log_loss=True)
    L, K, alpha = _refine(c, U, (float(a0), float(b0), float(e0)), f_scale)

    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    if n_boot > 0:
        floor = 1e-9 * float(U.max())
        fitted = np.log(L + K * c ** (-alpha))
        resid = np.log(np.maximum(U, floor)) - fitted
        resid = resid - resid.mean()
        # Residuals of a 3-parameter fit to n points understate the noise: inflate by n/(n-3)
        # (the usual degrees-of-freedom correction), capped so 4 points do not explode it.
        resid = resid * np.sqrt(min(n / max(n - 3, 1), 4.0))
        idx = rng.integers(0, resid.size, size=(n_boot, resid.size))
        Ub = np.exp(fitted[None, :] + resid[idx])
        La, Kb, eb, _ = profile_fit(
            np.broadcast_to(c, Ub.shape), Ub, _relative_weights(Ub), DEFAULT_EXPONENTS, nonneg=True, log_loss=True
        )
        q = lambda v, p: float(np.quantile(v, [lo_q, hi_q][p]))  # noqa: E731
        L_lo, L_hi = min(q(La, 0), L), max(q(La, 1), L)
        K_lo, K_hi = min(q(Kb, 0), K), max(q(Kb, 1), K)
        a_lo, a_hi = min(q(eb, 0), alpha), max(q(eb, 1), alpha)
    else:
        L_lo = L_hi = K_lo = K_hi = a_lo = a_hi = np.nan

    diags: list[str] = []
    slope = np.polyfit(np.log(c), np.log(np.maximum(U, 1e-300)), 1)[0]
    if slope > 0.05 and U[-1] > U[0]:
        diags.append(DIAG_INCREASING)
    Umin = float(U.min())
    if K * c.min() ** (-alpha) < 0.05 * L:
        diags.append(DIAG_NO_DECAY)
    elif n_boot > 0 and L_lo <= 0.05 * Umin and L_hi >= 0.5 * Umin:
        diags.append(DIAG_FLOOR_UNIDENTIFIED)
    if alpha > alpha_max:
        diags.append(DIAG_EARLY_TRANSIENT)
    if bool(on_bound(alpha, K, DIAG_NO_DECAY in diags)):
        diags.append(DIAG_AT_BOUND)
    return DecayFit(
        float(L),
        float(K),
        float(alpha),
        L_lo,
        L_hi,
        K_lo,
        K_hi,
        a_lo,
        a_hi,
        n,
        float(c.min()),
        float(c.max()),
        tuple(diags),
    )


def fit_decay_shared_alpha_many(
    c: np.ndarray,
    U: np.ndarray,
    shared: DecayFit,
    *,
    level: float = 0.9,
    n_boot: int = 200,
    rngs: list[np.random.Generator],
) -> list[DecayFit]:
    """Fit L_int and K of each member of a family whose alpha was fitted on the pooled family.

    docs/design.md, Sharing strength: candidates of one task family share alpha, and from a few
    noisy points a shrinkage fit beats separate three-parameter fits. With alpha fixed the model
    is linear in (L_int, K) >= 0: a closed-form non-negative least squares on relative errors,
    iterated twice so the weights follow the fitted curve rather than the noisy observations;
    intervals by a residual bootstrap in log space. Rows of U are the members on the depths c
    (NaN where a member has no value), one generator per row; missing depths are weighted zero,
    so one batched solve serves the family (tests/core/test_decay.py checks every row against a
    fit of that member alone)."""
    c = np.asarray(c, float).ravel()
    U = np.atleast_2d(np.asarray(U, float))
    if U.shape[1] != c.size:
        raise ValueError(f"depths and U differ in length: {c.size} vs {U.shape[1]}")
    if len(rngs) != U.shape[0]:
        raise ValueError(f"one generator per row of U expected, got {len(rngs)} for {U.shape[0]} rows")
    order = np.argsort(c, kind="stable")
    c, U = c[order], U[:, order]
    valid = np.isfinite(U) & np.isfinite(c)[None, :] & (c > 0)[None, :] & (U >= 0)
    # distinct depths each member has: one per run of equal depths (c is sorted) with a valid entry
    runs = np.flatnonzero(np.r_[True, c[1:] != c[:-1]]) if c.size else np.zeros(0, int)
    n = np.logical_or.reduceat(valid, runs, axis=1).sum(1) if c.size else np.zeros(U.shape[0], int)
    Uz = np.where(valid, U, 0.0)
    umax = Uz.max(1)
    out: list[DecayFit | None] = [None] * U.shape[0]
    for i in np.flatnonzero((n < 2) | (umax <= 0) | (not shared.ok)):
        out[i] = DecayFit.empty(int(n[i]), (DIAG_TOO_FEW,) if n[i] < 2 else shared.diagnostics)
    rows = np.flatnonzero((n >= 2) & (umax > 0)) if shared.ok else np.zeros(0, int)
    if rows.size:
        alpha = shared.alpha
        x = c ** (-alpha)
        mask = valid[rows].astype(float)

        def solve(Ub: np.ndarray, m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            # Rows without a bootstrap are all zero: their (discarded) solves divide by zero.
            with np.errstate(all="ignore"):
                floor = 1e-12 * np.maximum(np.where(m > 0, Ub, 0.0).max(-1, keepdims=True), 1e-300)
                L, K = weighted_affine_fit(x, Ub, m / np.maximum(Ub, floor) ** 2, nonneg=True)
                for _ in range(2):
                    fitted = np.maximum(L[..., None] + K[..., None] * x, 1e-300)
                    L, K = weighted_affine_fit(x, Ub, m / fitted**2, nonneg=True)
            return L, K

        L, K = solve(Uz[rows], mask)
        lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
        L_lo = L_hi = K_lo = K_hi = np.full(rows.size, np.nan)
        boot = (n[rows] >= 3) & (n_boot > 0)
        if boot.any():
            Ub = np.zeros((rows.size, n_boot, c.size))
            Ub[boot] = _log_residual_bootstrap(
                x,
                U[rows[boot]],
                valid[rows[boot]],
                L[boot],
                K[boot],
                umax[rows[boot]],
                n_boot,
                [rngs[i] for i in rows[boot].tolist()],
            )
            Lb, Kb = solve(Ub, mask[:, None, :])
            qL = np.quantile(Lb, [lo_q, hi_q], axis=1)
            qK = np.quantile(Kb, [lo_q, hi_q], axis=1)
            L_lo = np.where(boot, np.minimum(qL[0], L), np.nan)
            L_hi = np.where(boot, np.maximum(qL[1], L), np.nan)
            K_lo = np.where(boot, np.minimum(qK[0], K), np.nan)
            K_hi = np.where(boot, np.maximum(qK[1], K), np.nan)
        inherited = [d for d in shared.diagnostics if d in (DIAG_EARLY_TRANSIENT,)]
        # per member, over its valid depths: the smallest U and the depth range (whole arrays)
        v = valid[rows]
        Umin = np.where(v, U[rows], np.inf).min(1)
        cmin = np.where(v, c[None, :], np.inf).min(1)
        cmax = np.where(v, c[None, :], -np.inf).max(1)
        with np.errstate(invalid="ignore"):
            no_decay = K * cmin ** (-alpha) < 0.05 * L
            unidentified = boot & np.isfinite(L_lo) & (L_lo <= 0.05 * Umin) & (L_hi >= 0.5 * Umin)
        columns = zip(
            rows.tolist(),
            L.tolist(),
            K.tolist(),
            L_lo.tolist(),
            L_hi.tolist(),
            K_lo.tolist(),
            K_hi.tolist(),
            n[rows].tolist(),
            cmin.tolist(),
            cmax.tolist(),
            no_decay.tolist(),
            unidentified.tolist(),
        )
        for i, Lk, Kk, llo, lhi, klo, khi, nk, cmn, cmx, nd, un in columns:
            diags = list(inherited)
            if nd:
                diags.append(DIAG_NO_DECAY)
            elif un:
                diags.append(DIAG_FLOOR_UNIDENTIFIED)
            out[i] = DecayFit(
                Lk, Kk, alpha, llo, lhi, klo, khi, shared.alpha_lo, shared.alpha_hi, nk, cmn, cmx, tuple(diags)
            )
    return out  # type: ignore[return-value]


def _log_residual_bootstrap(
    x: np.ndarray,
    U: np.ndarray,
    valid: np.ndarray,
    L: np.ndarray,
    K: np.ndarray,
    umax: np.ndarray,
    n_boot: int,
    rngs: list[np.random.Generator],
) -> np.ndarray:
    """Bootstrap replicates of each row of U around its fit L + K x, (rows, n_boot, depths).

    Residuals in log space, centred and inflated for the two fitted parameters, resampled with
    replacement among each row's valid depths (one generator per row, drawn in row order) and
    put back on the fitted curve; zero where a row has no value. All rows at once: a loop over
    a family's members was half of its fit."""
    rows, width = U.shape
    m = valid.sum(1)
    floor = (1e-9 * umax)[:, None]
    fitted = np.log(np.maximum(L[:, None] + K[:, None] * x[None, :], floor))
    with np.errstate(invalid="ignore"):
        resid = np.where(valid, np.log(np.maximum(np.where(valid, U, 1.0), floor)) - fitted, 0.0)
    # Each row's valid depths first, in depth order: a draw t < m picks the t-th of them.
    order = np.argsort(~valid, axis=1, kind="stable")
    packed = np.take_along_axis(resid, order, 1)
    # Each row's mean over exactly its own m values (a sum over the padded row adds in another
    # order, and a near-degenerate replicate amplifies the last bit), one call per distinct m.
    mean = np.zeros(rows)
    for k in np.unique(m).tolist():
        sel = m == k
        mean[sel] = packed[sel, :k].sum(1) / k
    inflate = np.sqrt(np.minimum(m / np.maximum(m - 2, 1), 4.0))
    packed = (packed - mean[:, None]) * inflate[:, None]
    fitted = np.take_along_axis(fitted, order, 1)
    picks = np.zeros((rows, n_boot, width), int)
    for r, (rng, k) in enumerate(zip(rngs, m.tolist())):
        picks[r, :, :k] = rng.integers(0, k, size=(n_boot, k))
    drawn = np.take_along_axis(np.broadcast_to(packed[:, None, :], picks.shape), picks, 2)
    out = np.exp(fitted[:, None, :] + drawn)
    out = np.where((np.arange(width)[None, :] < m[:, None])[:, None, :], out, 0.0)
    result = np.zeros_like(out)
    np.put_along_axis(result, np.broadcast_to(order[:, None, :], out.shape), out, axis=2)
    return result


def predictive_variance(fit: DecayFit, depth: float, n_seeds: int) -> float:
    """Variance of a new full run's final around the mean of n_seeds probes at `depth`.

    Each probe seed j ends near R_j = m + delta_j (delta ~ L_int) with an unresolved part of
    variance K c^-alpha; the new run is R = m + delta. So the error of the seed mean is
    (1 + 1/n) L_int + K c^-alpha / n.
    """
    if not fit.ok or n_seeds < 1:
        return float("nan")
    c = max(float(depth), 1e-9)
    return float((1 + 1 / n_seeds) * fit.L_int + fit.K * c ** (-fit.alpha) / n_seeds)


def fit_decay_batch(c: np.ndarray, U: np.ndarray, **kwargs) -> list[DecayFit]:
    """fit_decay over many units at once (rows of U; c shared or one row per unit), vectorised.

    Same model, loss, bounds and bootstrap; see core/decay_batch.py for what differs and why.
    """
    from prehoc_ray.core.decay_batch import fit_decay_batch as _batch

    return _batch(c, U, **kwargs)
