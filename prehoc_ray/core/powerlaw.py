"""Profile least squares for y = a + b * x^(-e), vectorised over exponents and over problems.

For a fixed exponent e the model is linear in (a, b), so the best (a, b) has a closed form and
only e needs a search. A log-spaced grid over e, evaluated for many problems at once with numpy
broadcasting, is both the robust initial guess that a local optimiser needs (the joint problem
is non-convex in e) and, on its own, a fast enough estimator for bootstrap replicates.
"""

from __future__ import annotations

import numpy as np

DEFAULT_EXPONENTS = np.geomspace(1e-3, 5.0, 160)


def weighted_affine_fit(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    nonneg: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least squares of y = a + b x along the last axis (any leading batch shape).

    With `nonneg`, a >= 0 and b >= 0 are enforced by checking the two boundary solutions
    (the problem is a 2-D convex QP, so the constrained optimum is the unconstrained one or
    lies on an edge).
    """
    sw = w.sum(-1)
    sx = (w * x).sum(-1)
    sy = (w * y).sum(-1)
    sxx = (w * x * x).sum(-1)
    sxy = (w * x * y).sum(-1)
    det = sw * sxx - sx * sx
    with np.errstate(divide="ignore", invalid="ignore"):
        b = np.where(np.abs(det) > 1e-300, (sw * sxy - sx * sy) / det, 0.0)
        a = np.where(sw > 0, (sy - b * sx) / sw, 0.0)
        if nonneg:
            # Edge a = 0: b = sxy / sxx. Edge b = 0: a = weighted mean.
            b_edge = np.where(sxx > 0, np.maximum(sxy / sxx, 0.0), 0.0)
            a_edge = np.maximum(sy / np.where(sw > 0, sw, 1.0), 0.0)
            bad_a = a < 0
            bad_b = b < 0
            # Pick the better edge by weighted SSE when the interior solution is infeasible.
            sse_a0 = (w * (y - b_edge[..., None] * x) ** 2).sum(-1)
            sse_b0 = (w * (y - a_edge[..., None]) ** 2).sum(-1)
            use_a0 = sse_a0 <= sse_b0
            infeasible = bad_a | bad_b
            a = np.where(infeasible, np.where(use_a0, 0.0, a_edge), a)
            b = np.where(infeasible, np.where(use_a0, b_edge, 0.0), b)
    return a, b


def profile_fit(
    x: np.ndarray,
    y: np.ndarray,
    w: np.ndarray | None = None,
    exponents: np.ndarray = DEFAULT_EXPONENTS,
    nonneg: bool = False,
    log_loss: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Best (a, b, e) of y = a + b x^-e on the grid `exponents`, for a batch of problems.

    x, y, w: shape (..., n). Returns a, b, e, sse each of shape (...). With `log_loss` the
    grid point is chosen by the squared error of log(y) (for positive y, as a variance is),
    which weighs small and large values by their relative error.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    w = np.ones_like(y) if w is None else np.asarray(w, float)
    xe = x[..., None, :] ** (-exponents[:, None])  # (..., E, n)
    yb = np.broadcast_to(y[..., None, :], xe.shape)
    wb = np.broadcast_to(w[..., None, :], xe.shape)
    a, b = weighted_affine_fit(xe, yb, wb, nonneg)
    fitted = a[..., None] + b[..., None] * xe
    if log_loss:
        floor = 1e-12 * np.maximum(np.abs(y).max(-1, keepdims=True), 1e-300)[..., None, :]
        resid = np.log(np.maximum(yb, floor)) - np.log(np.maximum(fitted, floor))
        sse = (wb * 0 + 1) * resid**2
        sse = sse.sum(-1)
    else:
        sse = (wb * (yb - fitted) ** 2).sum(-1)
    best = np.argmin(sse, axis=-1)
    take = lambda arr: np.take_along_axis(arr, best[..., None], axis=-1)[..., 0]  # noqa: E731
    return take(a), take(b), exponents[best], take(sse)
