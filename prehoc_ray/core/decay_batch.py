"""fit_decay for many units at once: the same model, loss, bounds and bootstrap, vectorised.

`fit_decay` costs ~5 ms per unit without its bootstrap and ~50 ms with it (200 replicates x a
160-exponent profile grid, each evaluated with logs), so 10,000 units take minutes. Here:

- the depths' powers c^-e are computed once for the shared exponent grid, and the weighted
  sums the affine solve needs (sum w x, sum w x^2, sum w x y) are matrix products over all
  units and replicates at once;
- the point estimate follows fit_decay exactly up to the refinement: the same log-loss profile
  grid for the start, then a vectorised projected Levenberg-Marquardt on the same soft-L1 log
  residuals within the same log-parameter bounds (instead of one scipy least_squares per unit);
- bootstrap replicates search the exponent grid coarse-to-fine: every 4th exponent judged by
  the closed-form weighted SSE of relative errors (weights 1/U^2, which the affine solve
  already uses; float32, it only picks the neighbourhood), then the 7 fine exponents around
  the best coarse one judged by squared log error, as fit_decay judges its whole grid. For a
  unimodal profile this finds fit_decay's grid optimum; measured on 10,000 synthetic units,
  batch and per-unit intervals differ by about as much as two bootstrap runs of fit_decay
  with different seeds (benchmarks/bench_core.py prints the comparison).

Missing depths (NaN in U) are allowed per unit: they get zero weight and are never resampled.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from prehoc_ray.core.decay import (
    ALPHA_BOUNDS,
    ALPHA_MAX_THEORY,
    DIAG_AT_BOUND,
    DIAG_EARLY_TRANSIENT,
    DIAG_FLOOR_UNIDENTIFIED,
    DIAG_INCREASING,
    DIAG_NO_DECAY,
    DIAG_TOO_FEW,
    DecayFit,
    log_bias,
    on_bound,
)
from prehoc_ray.core.powerlaw import DEFAULT_EXPONENTS

_CHUNK_ROWS = 4096  # unit-replicate rows per block: keeps the (rows, exponents) arrays in cache
_MAX_THREADS = 4


def _affine_gain(sw, sy, syy, sx, sxx, sxy):
    """Best non-negative (a, b) of y = a + b x per row and exponent, from weighted sums.

    Same rule as powerlaw.weighted_affine_fit: the interior solution when a, b >= 0, else the
    better of the edges a = 0 and b = 0. Returns (a, b, sse). sw, sy, syy: (..., 1); the rest
    (..., E).
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        det = sw * sxx - sx * sx
        b = np.where(np.abs(det) > 1e-300, (sw * sxy - sx * sy) / det, 0.0)
        a = np.where(sw > 0, (sy - b * sx) / sw, 0.0)
        sse = syy - a * sy - b * sxy  # at the interior optimum (normal equations)
        b_edge = np.where(sxx > 0, np.maximum(sxy / sxx, 0.0), 0.0)
        a_edge = np.maximum(np.where(sw > 0, sy / sw, 0.0), 0.0)
        sse_a0 = syy - 2 * b_edge * sxy + b_edge * b_edge * sxx
        sse_b0 = syy - 2 * a_edge * sy + a_edge * a_edge * sw
    infeasible = (a < 0) | (b < 0)
    use_a0 = sse_a0 <= sse_b0
    a = np.where(infeasible, np.where(use_a0, 0.0, a_edge), a)
    b = np.where(infeasible, np.where(use_a0, b_edge, 0.0), b)
    sse = np.where(infeasible, np.where(use_a0, sse_a0, sse_b0), sse)
    return a, b, sse


def _gain(sw, sy, sx, sxx, sxy):
    """Weighted-SSE reduction of the non-negative affine fit, per row and exponent (higher is
    better); argmax over exponents = argmin of the SSE that _affine_gain returns, with fewer
    operations: the interior optimum's SSE is S_yy - Sxy_c^2 / Sxx_c (centred sums), the edge
    b = 0 leaves S_yy, the edge a = 0 leaves syy - sxy^2 / sxx. sw, sy: (R, 1)."""
    inv_sw = 1.0 / sw
    ybar = sy * inv_sw
    g0 = sy * ybar
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        mx = sx * inv_sw
        sxy_c = sxy - mx * sy
        b = sxy_c / (sxx - mx * sx)
        interior = sxy_c * b
        feasible = (b >= 0) & (b * mx <= ybar)
        edge = np.maximum(sxy, 0.0)
        edge = edge * edge / sxx - g0
        gain = np.where(feasible, interior, np.maximum(edge, 0.0))
    if np.isnan(gain).any():
        gain[np.isnan(gain)] = -np.inf
    return gain


def _weighted_sums(Y: np.ndarray, W: np.ndarray, XT: np.ndarray, X2T: np.ndarray):
    """Y, W: (..., R, n); XT, X2T: (..., n, E) -> sums for _affine_gain."""
    WY = W * Y
    sw = W.sum(-1, keepdims=True)
    sy = WY.sum(-1, keepdims=True)
    syy = (WY * Y).sum(-1, keepdims=True)
    return sw, sy, syy, W @ XT, W @ X2T, WY @ XT


def _prepare_batch(c: np.ndarray, U: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sorted depths (m, n), U (m, n) with NaN where unusable, mask (m, n)."""
    U = np.asarray(U, float)
    if U.ndim != 2:
        raise ValueError(f"U must be (units, depths), got shape {U.shape}")
    c = np.asarray(c, float)
    C = np.broadcast_to(c, U.shape) if c.ndim == 1 else c
    if C.shape != U.shape:
        raise ValueError(f"depths and U differ in shape: {c.shape} vs {U.shape}")
    order = np.argsort(np.where(np.isfinite(C), C, np.inf), axis=1, kind="stable")
    C = np.take_along_axis(C, order, 1)
    U = np.take_along_axis(U, order, 1)
    mask = np.isfinite(C) & np.isfinite(U) & (C > 0) & (U >= 0)
    return np.where(mask, C, 1.0), np.where(mask, U, np.nan), mask


def _refine_batch(logC, logU, mask, theta0, lo, hi, f_scale, iters=60):
    """Projected Levenberg-Marquardt on soft-L1 log residuals, vectorised over units.

    Minimises the same objective as decay._refine (scipy least_squares, loss='soft_l1'):
    0.5 sum f^2 rho((r/f)^2), rho(z) = 2(sqrt(1+z) - 1), r = log(L + K c^-alpha) - log U.
    The robust loss enters as iteratively reweighted least squares (weights rho'(z)).
    """
    m = theta0.shape[0]
    M = mask.astype(float)

    def evaluate(theta, idx):
        lc, Mi = logC[idx], M[idx]
        L, K, a = (np.exp(theta[:, k])[:, None] for k in range(3))
        p = K * np.exp(-a * lc)
        f = L + p
        r = (np.log(f) - logU[idx]) * Mi
        z = (r / f_scale) ** 2
        cost = (f_scale**2 * (np.sqrt(1 + z) - 1) * Mi).sum(1)
        J = np.stack([L / f, p / f, -a * lc * p / f], axis=-1) * Mi[..., None]  # (k, n, 3)
        return cost, r, z, J

    theta = theta0.copy()
    every = np.arange(m)
    cost, r, z, J = evaluate(theta, every)
    lam = np.full(m, 1e-3)
    active = np.ones(m, bool)
    eye = np.eye(3)
    for _ in range(iters):
        idx = np.flatnonzero(active)
        if idx.size == 0:
            break
        wgt = 1.0 / np.sqrt(1 + z[idx])
        Ji = J[idx]
        g = np.einsum("mnk,mn->mk", Ji, wgt * r[idx])
        H = np.einsum("mnk,mnl,mn->mkl", Ji, Ji, wgt)
        th = theta[idx]
        # Coordinates held at a bound by a gradient pointing outwards are frozen this step.
        frozen = ((th <= lo[idx] + 1e-12) & (g > 0)) | ((th >= hi[idx] - 1e-12) & (g < 0))
        g = np.where(frozen, 0.0, g)
        free = ~frozen
        H = H * (free[:, :, None] & free[:, None, :]) + eye * frozen[:, :, None]
        diag = np.maximum(np.einsum("mkk->mk", H), 1e-12)
        A = H + lam[idx, None, None] * eye * diag[:, None, :]
        step = -np.linalg.solve(A, g[..., None])[..., 0]
        step = np.where(frozen | ~np.isfinite(step), 0.0, step)
        cand = np.clip(th + step, lo[idx], hi[idx])
        c_cost, c_r, c_z, c_J = evaluate(cand, idx)
        better = c_cost < cost[idx] * (1 - 1e-13)
        moved = np.abs(cand - th).max(1)
        # scipy's ftol (1e-8): an accepted step that barely lowers the cost ends the search
        small_gain = better & (cost[idx] - c_cost <= 1e-8 * np.maximum(cost[idx], 1e-300))
        sel = idx[better]
        theta[sel] = cand[better]
        cost[sel], r[sel], z[sel], J[sel] = c_cost[better], c_r[better], c_z[better], c_J[better]
        lam[sel] = np.maximum(lam[sel] * 0.3, 1e-9)
        lam[idx[~better]] *= 10.0
        done = small_gain | (better & (moved < 1e-8)) | (~better & (lam[idx] > 1e8)) | (np.abs(g).max(1) < 1e-12)
        active[idx[done]] = False
    return np.exp(theta)


def fit_decay_batch(
    c: np.ndarray,
    U: np.ndarray,
    *,
    level: float = 0.9,
    n_boot: int = 200,
    seed: int = 0,
    alpha_max: float = ALPHA_MAX_THEORY,
    f_scale: float = 0.25,
    exponents: np.ndarray = DEFAULT_EXPONENTS,
    dof: float | np.ndarray | None = None,
) -> list[DecayFit]:
    """fit_decay for every row of U (units x depths); c: (depths,) shared, or (units, depths).

    dof: as in fit_decay, one value for every unit or one per unit.

    Deterministic given `seed`. Units with fewer than 3 distinct usable depths get an empty fit
    with `too_few_points`, as in fit_decay.
    """
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    C, U, mask = _prepare_batch(c, U)
    # Sample variances fitted in log space (see decay.log_bias); dof: one value, or one per unit.
    bias = np.asarray(log_bias(dof), float)
    U = U * np.exp(-(bias[:, None] if bias.ndim == 1 else bias))
    if U.shape[0] == 0:
        return []
    fits, distinct, Umax = _unfittable_fits(C, U, mask)
    todo = np.flatnonzero((distinct >= 3) & (Umax > 0))
    if todo.size == 0:
        return fits  # type: ignore[return-value]

    units = _units_to_fit(C[todo], U[todo], mask[todo], Umax[todo], exponents)
    start = _start_grid(units)  # 1. the log-loss profile grid of fit_decay
    L, K, alpha = _refine_start(units, start, f_scale)  # 2. refined within fit_decay's bounds
    bounds = _bootstrap_intervals(units, L, K, alpha, level, n_boot, seed)  # 3. residual bootstrap
    L_lo, L_hi, K_lo, K_hi, a_lo, a_hi = bounds
    diagnostics = _diagnostics(units, L, K, alpha, L_lo, L_hi, n_boot, alpha_max)  # 4. as fit_decay
    for j, i in enumerate(todo):
        fits[i] = DecayFit(
            float(L[j]),
            float(K[j]),
            float(alpha[j]),
            float(L_lo[j]),
            float(L_hi[j]),
            float(K_lo[j]),
            float(K_hi[j]),
            float(a_lo[j]),
            float(a_hi[j]),
            int(distinct[i]),
            float(units.cmin[j]),
            float(units.cmax[j]),
            diagnostics[j],
        )
    return fits  # type: ignore[return-value]


def _unfittable_fits(
    C: np.ndarray, U: np.ndarray, mask: np.ndarray
) -> tuple[list[DecayFit | None], np.ndarray, np.ndarray]:
    """The fits fit_decay gives without fitting: fewer than 3 distinct usable depths (too few
    points), or no positive U (no decay). Returns the fits (None where a fit is needed), the
    distinct usable depths per unit and the largest usable U per unit."""
    m = U.shape[0]
    Cm = np.where(mask, C, np.nan)
    distinct = mask.sum(1) - np.sum(mask[:, 1:] & mask[:, :-1] & (np.diff(Cm, axis=1) == 0), axis=1)
    Umax = np.where(mask, U, -np.inf).max(1)
    fits: list[DecayFit | None] = [None] * m
    for i in np.flatnonzero(distinct < 3):
        fits[i] = DecayFit.empty(int(distinct[i]), (DIAG_TOO_FEW,))
    for i in np.flatnonzero((distinct >= 3) & (Umax <= 0)):
        a0 = ALPHA_BOUNDS[0]
        fits[i] = DecayFit(
            0.0,
            0.0,
            a0,
            0,
            0,
            0,
            0,
            a0,
            a0,
            int(distinct[i]),
            float(Cm[i][mask[i]].min()),
            float(Cm[i][mask[i]].max()),
            (DIAG_NO_DECAY,),
        )
    return fits, distinct, Umax


@dataclass(frozen=True)
class _Units:
    """The units to fit, as (unit, depth) arrays, with the exponent grid's powers c^-e computed
    once for every stage."""

    C: np.ndarray  # sorted depths, 1.0 where unusable
    mask: np.ndarray  # usable depths
    Umax: np.ndarray
    Uz: np.ndarray  # U with 1.0 where unusable
    logC: np.ndarray
    n: np.ndarray  # usable depths per unit
    tiny: np.ndarray  # (m, 1): the smallest U a weight sees
    W: np.ndarray  # affine-solve weights 1/U^2, 0 where unusable
    cmin: np.ndarray
    cmax: np.ndarray
    exponents: np.ndarray
    shared: bool  # every unit has the same depths
    XT: np.ndarray  # c^-e: (n, E) when shared, else (m, n, E)
    X2T: np.ndarray


def _units_to_fit(C: np.ndarray, U: np.ndarray, mask: np.ndarray, Umax: np.ndarray, exponents: np.ndarray) -> _Units:
    """The arrays every stage shares, computed once (the powers c^-e once for all units when
    their depths are shared)."""
    logC = np.log(C)
    Uz = np.where(mask, U, 1.0)
    tiny = np.maximum(1e-12 * Umax, 1e-300)[:, None]
    W = np.where(mask, 1.0 / np.maximum(Uz, tiny) ** 2, 0.0)
    shared = bool(np.all(C == C[:1]))
    if shared:
        XT = np.exp(-np.outer(logC[0], exponents))  # (n, E)
    else:
        XT = np.exp(-logC[:, :, None] * exponents[None, None, :])  # (m, n, E)
    return _Units(
        C=C,
        mask=mask,
        Umax=Umax,
        Uz=Uz,
        logC=logC,
        n=mask.sum(1),
        tiny=tiny,
        W=W,
        cmin=np.where(mask, C, np.inf).min(1),
        cmax=np.where(mask, C, -np.inf).max(1),
        exponents=exponents,
        shared=shared,
        XT=XT,
        X2T=XT * XT,
    )


def _start_grid(u: _Units) -> np.ndarray:
    """The start (L, K, alpha) per unit: fit_decay's log-loss profile grid (powerlaw.profile_fit,
    log_loss=True), so the refinement starts where fit_decay's does. Blocks of rows keep the
    (rows, exponents) arrays in cache."""
    mt = u.C.shape[0]
    exponents, mask, shared, XT, X2T = u.exponents, u.mask, u.shared, u.XT, u.X2T
    start = np.empty((mt, 3))
    floor_grid = 1e-12 * u.Umax
    for lo_ in range(0, mt, max(1, _CHUNK_ROWS // 8)):
        sl = slice(lo_, min(mt, lo_ + max(1, _CHUNK_ROWS // 8)))
        Yc, Wc = u.Uz[sl], u.W[sl]
        if shared:
            sums = _weighted_sums(Yc, Wc, XT, X2T)
            Xe = XT.T[None]  # (1, E, n)
        else:
            sums = _weighted_sums(Yc[:, None, :], Wc[:, None, :], XT[sl], X2T[sl])
            sums = tuple(s[:, 0] for s in sums)
            Xe = np.swapaxes(XT[sl], 1, 2)  # (k, E, n)
        a, b, _ = _affine_gain(*sums)
        fitted = a[..., None] + b[..., None] * Xe
        fl = floor_grid[sl][:, None, None]
        res = (np.log(np.maximum(Yc[:, None, :], fl)) - np.log(np.maximum(fitted, fl))) * mask[sl][:, None, :]
        best = np.argmin((res * res).sum(-1), axis=1)
        rows = np.arange(best.size)
        start[sl] = np.stack([a[rows, best], b[rows, best], exponents[best]], axis=1)
    return start


def _log_U(u: _Units) -> np.ndarray:
    """log U as the refinement fits it: floored at 1e-9 Umax (decay._refine's floor), 0 where
    unusable."""
    floor = 1e-9 * u.Umax
    return np.where(u.mask, np.log(np.maximum(u.Uz, floor[:, None])), 0.0)


def _refine_start(u: _Units, start: np.ndarray, f_scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(L, K, alpha) per unit, refined from the start within fit_decay's log-parameter bounds
    (decay._refine), on the same soft-L1 log residuals."""
    mt, Umax = u.C.shape[0], u.Umax
    floor = 1e-9 * Umax
    lo = np.log(np.stack([floor, 1e-12 * Umax * u.cmin ** ALPHA_BOUNDS[0], np.full(mt, ALPHA_BOUNDS[0])], 1))
    hi = np.log(np.stack([10 * Umax, 1e6 * Umax * u.cmax ** ALPHA_BOUNDS[1], np.full(mt, ALPHA_BOUNDS[1])], 1))
    x0 = np.log(np.maximum(start, np.stack([floor, np.exp(lo[:, 1]), np.full(mt, ALPHA_BOUNDS[0])], 1)))
    x0 = np.clip(x0, lo + 1e-9, hi - 1e-9)
    L, K, alpha = _refine_batch(u.logC, _log_U(u), u.mask, x0, lo, hi, f_scale).T
    return L, K, alpha


@dataclass(frozen=True)
class _Resampling:
    """What every bootstrap chunk reads (the residuals to resample, the exponent grids to search)
    and the arrays it writes its replicates' (L, K, alpha) into."""

    n_boot: int
    fitted_log: np.ndarray  # log of the point fit at every depth
    resid: np.ndarray  # centred, df-inflated log residuals, 0 where unusable
    packed: np.ndarray  # usable positions packed to the left, per unit
    full_mask: np.ndarray  # every depth usable, per unit
    coarse: np.ndarray  # every 4th exponent index, and the last
    offsets: np.ndarray  # the fine exponents around the best coarse one
    XEN: np.ndarray  # c^-e as (E, n) or (m, E, n)
    XTc32: np.ndarray  # c^-e at the coarse exponents, float32
    X2Tc32: np.ndarray
    Lb: np.ndarray  # (m, n_boot) outputs
    Kb: np.ndarray
    eb: np.ndarray


def _bootstrap_intervals(
    u: _Units, L: np.ndarray, K: np.ndarray, alpha: np.ndarray, level: float, n_boot: int, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(L_lo, L_hi, K_lo, K_hi, alpha_lo, alpha_hi) per unit by fit_decay's residual bootstrap:
    centred log residuals, df-inflated, resampled; NaN when n_boot is 0. Each interval contains
    its point estimate.

    One generator per chunk (a fixed split of the units), so results do not depend on the
    threads: numpy releases the GIL in its array loops, so chunks run in parallel on the cores.
    """
    mt = u.C.shape[0]
    lo_q, hi_q = (1 - level) / 2, 1 - (1 - level) / 2
    nan = np.full(mt, np.nan)
    if n_boot <= 0:
        return nan.copy(), nan.copy(), nan.copy(), nan.copy(), nan.copy(), nan.copy()
    rs = _resampling(u, L, K, alpha, n_boot)
    per_chunk = max(1, _CHUNK_ROWS // n_boot)
    slices = [slice(lo_, min(mt, lo_ + per_chunk)) for lo_ in range(0, mt, per_chunk)]
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(slices))]
    workers = min(_MAX_THREADS, os.cpu_count() or 1, len(slices))
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda sl, r: _boot_chunk(sl, r, u, rs), slices, rngs))
    else:
        for sl, r in zip(slices, rngs):
            _boot_chunk(sl, r, u, rs)
    qL = np.quantile(rs.Lb, [lo_q, hi_q], axis=1)
    qK = np.quantile(rs.Kb, [lo_q, hi_q], axis=1)
    qa = np.quantile(rs.eb, [lo_q, hi_q], axis=1)
    return (
        np.minimum(qL[0], L),
        np.maximum(qL[1], L),
        np.minimum(qK[0], K),
        np.maximum(qK[1], K),
        np.minimum(qa[0], alpha),
        np.maximum(qa[1], alpha),
    )


def _resampling(u: _Units, L: np.ndarray, K: np.ndarray, alpha: np.ndarray, n_boot: int) -> _Resampling:
    """The bootstrap's shared inputs: the residuals of the point fit and the exponent grids.

    Coarse-to-fine over the exponent grid: every 4th exponent first (in float32: it only picks
    the neighbourhood), then the 7 fine exponents around the best coarse one (for a unimodal
    profile the optimum is within 3 fine steps of it) judged by log loss.
    """
    mt, E, mask, n = u.C.shape[0], u.exponents.size, u.mask, u.n
    fitted_log = np.log(L[:, None] + K[:, None] * np.exp(-alpha[:, None] * u.logC))
    resid = np.where(mask, _log_U(u) - fitted_log, 0.0)
    resid = np.where(mask, resid - (resid.sum(1) / n)[:, None], 0.0)
    resid *= np.sqrt(np.minimum(n / np.maximum(n - 3, 1), 4.0))[:, None]
    coarse = np.unique(np.r_[np.arange(0, E, 4), E - 1])
    return _Resampling(
        n_boot=n_boot,
        fitted_log=fitted_log,
        resid=resid,
        # usable positions packed to the left, so a uniform draw over the first n picks one
        packed=np.argsort(~mask, axis=1, kind="stable"),
        full_mask=mask.all(1),
        coarse=coarse,
        offsets=np.arange(-3, 4),
        XEN=np.swapaxes(u.XT, -1, -2),
        XTc32=u.XT[..., coarse].astype(np.float32),
        X2Tc32=u.X2T[..., coarse].astype(np.float32),
        Lb=np.empty((mt, n_boot)),
        Kb=np.empty((mt, n_boot)),
        eb=np.empty((mt, n_boot)),
    )


def _boot_chunk(sl: slice, rng: np.random.Generator, u: _Units, rs: _Resampling) -> None:
    """Fit the bootstrap replicates of the units in `sl`, written into rs.Lb, rs.Kb, rs.eb."""
    k, n_boot = sl.stop - sl.start, rs.n_boot
    full = bool(rs.full_mask[sl].all())
    Yb = _resample(sl, rng, u, rs, full)
    # relative weights 1/Y^2: W Y = 1/Y and W Y^2 = 1 where a depth is usable
    inv = 1.0 / Yb
    if not full:
        inv *= np.repeat(u.mask[sl], n_boot, axis=0)
    W2 = inv * inv
    sw = W2.sum(1, keepdims=True)
    sy = inv.sum(1, keepdims=True)
    best_c = _coarse_exponents(sl, u, rs, inv, W2, sw, sy)
    a, b, e = _fine_fit(sl, u, rs, Yb, inv, W2, sw, sy, best_c, full)
    rs.Lb[sl] = a.reshape(k, n_boot)
    rs.Kb[sl] = b.reshape(k, n_boot)
    rs.eb[sl] = e.reshape(k, n_boot)


def _resample(sl: slice, rng: np.random.Generator, u: _Units, rs: _Resampling, full: bool) -> np.ndarray:
    """The replicates' U, (units in sl x n_boot, depths): the point fit times resampled log
    residuals, drawn over each unit's usable depths only."""
    k, n_boot, n_max = sl.stop - sl.start, rs.n_boot, u.C.shape[1]
    if full:  # the common case: every depth usable, one uniform draw over positions
        src = rng.integers(0, n_max, size=(k, n_boot, n_max))
    else:
        draw = rng.integers(0, u.n[sl, None, None], size=(k, n_boot, n_max))
        src = np.take_along_axis(np.broadcast_to(rs.packed[sl, None, :], draw.shape), draw, 2)
    Rb = np.take_along_axis(np.broadcast_to(rs.resid[sl, None, :], src.shape), src, 2)
    return np.maximum(np.exp(rs.fitted_log[sl, None, :] + Rb), u.tiny[sl, None]).reshape(-1, n_max)


def _coarse_exponents(
    sl: slice, u: _Units, rs: _Resampling, inv: np.ndarray, W2: np.ndarray, sw: np.ndarray, sy: np.ndarray
) -> np.ndarray:
    """Per replicate, the exponent index among the coarse ones with the least weighted SSE of
    relative errors (float32 closed form: it only picks the neighbourhood)."""
    k, n_boot, n_max = sl.stop - sl.start, rs.n_boot, u.C.shape[1]
    W32, inv32 = W2.astype(np.float32), inv.astype(np.float32)
    if u.shared:
        sx, sxx, sxy = W32 @ rs.XTc32, W32 @ rs.X2Tc32, inv32 @ rs.XTc32
    else:
        W3, I3 = W32.reshape(k, n_boot, n_max), inv32.reshape(k, n_boot, n_max)
        sx, sxx, sxy = (
            (A @ B).reshape(k * n_boot, -1) for A, B in ((W3, rs.XTc32[sl]), (W3, rs.X2Tc32[sl]), (I3, rs.XTc32[sl]))
        )
    return rs.coarse[np.argmax(_gain(sw.astype(np.float32), sy.astype(np.float32), sx, sxx, sxy), axis=1)]


def _fine_fit(
    sl: slice,
    u: _Units,
    rs: _Resampling,
    Yb: np.ndarray,
    inv: np.ndarray,
    W2: np.ndarray,
    sw: np.ndarray,
    sy: np.ndarray,
    best_c: np.ndarray,
    full: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per replicate, (L, K, alpha) at the best of the fine exponents around the coarse pick and
    both ends of the grid, judged by squared log error as fit_decay judges its grid."""
    n_boot, E, exponents = rs.n_boot, u.exponents.size, u.exponents
    syy = np.repeat(u.n[sl], n_boot)[:, None].astype(float)
    # ...plus both ends of the grid, where degenerate profiles (flat: alpha -> 0, a step:
    # alpha -> max) have their optimum and float32 sums are least reliable.
    # In ascending order, so ties resolve to the smallest exponent as in fit_decay.
    R = best_c.size
    j = np.concatenate(
        [
            np.zeros((R, 1), np.int64),
            np.clip(best_c[:, None] + rs.offsets[None, :], 0, E - 1),
            np.full((R, 1), E - 1),
        ],
        1,
    )  # (R, 9)
    XEN = rs.XEN
    Xg = XEN[j] if u.shared else XEN[np.repeat(np.arange(sl.start, sl.stop), n_boot)[:, None], j]  # (R, 9, n)
    gx = np.einsum("rkn,rn->rk", Xg, W2)
    gxx = np.einsum("rkn,rn->rk", Xg * Xg, W2)
    gxy = np.einsum("rkn,rn->rk", Xg, inv)
    a, b, _ = _affine_gain(sw, sy, syy, gx, gxx, gxy)
    flr = 1e-12 * Yb.max(1)[:, None]  # profile_fit's floor for the log loss
    fitted = np.maximum(a[..., None] + b[..., None] * Xg, flr[:, :, None])
    res = np.log(fitted) - np.log(np.maximum(Yb, flr))[:, None, :]
    if not full:
        res = res * np.repeat(u.mask[sl], n_boot, axis=0)[:, None, :]
    pick = np.argmin(np.einsum("rkn,rkn->rk", res, res), axis=1)
    rows = np.arange(pick.size)
    return a[rows, pick], b[rows, pick], exponents[j[rows, pick]]


def _diagnostics(
    u: _Units,
    L: np.ndarray,
    K: np.ndarray,
    alpha: np.ndarray,
    L_lo: np.ndarray,
    L_hi: np.ndarray,
    n_boot: int,
    alpha_max: float,
) -> list[tuple[str, ...]]:
    """Each unit's diagnostics, by fit_decay's rules: increasing, no decay, floor unidentified,
    early transient, at a bound."""
    mask, Uz, n, n_max = u.mask, u.Uz, u.n, u.C.shape[1]
    lc = np.where(mask, u.logC, 0.0)
    lu = np.where(mask, np.log(np.maximum(Uz, 1e-300)), 0.0)
    mc, mu = lc.sum(1) / n, lu.sum(1) / n
    slope = (((lc - mc[:, None]) * (lu - mu[:, None])) * mask).sum(1) / np.maximum(
        (((lc - mc[:, None]) ** 2) * mask).sum(1), 1e-300
    )
    first = np.take_along_axis(Uz, np.argmax(mask, 1)[:, None], 1)[:, 0]
    last = np.take_along_axis(Uz, (n_max - 1 - np.argmax(mask[:, ::-1], 1))[:, None], 1)[:, 0]
    Umin = np.where(mask, Uz, np.inf).min(1)
    increasing = (slope > 0.05) & (last > first)
    no_decay = K * u.cmin ** (-alpha) < 0.05 * L
    unident = ~no_decay & (n_boot > 0) & (L_lo <= 0.05 * Umin) & (L_hi >= 0.5 * Umin)
    transient = alpha > alpha_max
    bound = on_bound(alpha, K, no_decay)
    return [
        tuple(
            d
            for d, flag in (
                (DIAG_INCREASING, increasing[j]),
                (DIAG_NO_DECAY, no_decay[j]),
                (DIAG_FLOOR_UNIDENTIFIED, unident[j]),
                (DIAG_EARLY_TRANSIENT, transient[j]),
                (DIAG_AT_BOUND, bound[j]),
            )
            if flag
        )
        for j in range(L.size)
    ]
