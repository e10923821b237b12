"""Regime classification on the (L_int, alpha) phase diagram (docs/design.md, Regimes).

The paper names three regimes but gives no numeric boundaries. We classify by what a user can
live with: a tolerance tau on the prediction error (std of the predicted score, metric units).

- Noise-Dominant:    L_int > tau^2. No probe can bring the risk under the tolerance. When an
                     interval for L_int is given, its lower bound must clear tau^2: early in a
                     probe a floor and a slow decay look alike and the point estimate runs high,
                     and writing a candidate off deserves evidence.
- Static-Sufficient: L(0) <= tau^2 (static signals already good enough), or J(0) <= J(c*)
                     (at the price of risk gamma, no probe depth pays for itself).
- Dynamic-Critical:  otherwise: probing to c* pays.

Noise-Dominant is checked first: a high floor makes probing useless even when J says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prehoc_ray.types import Regime


@dataclass(frozen=True)
class RegimeThresholds:
    """tau: tolerated std of the predicted final, in metric units (0.02 = 2 accuracy points)."""

    tolerance: float = 0.02
    # A Noise-Dominant call needs the floor to exceed tau^2 by this factor; 1.0 is the plain
    # rule. Raising it demands more evidence before writing a candidate off.
    noise_margin: float = 1.0

    def __post_init__(self) -> None:
        if not self.tolerance > 0:
            raise ValueError(f"tolerance must be > 0, got {self.tolerance}")
        if not self.noise_margin > 0:
            raise ValueError(f"noise_margin must be > 0, got {self.noise_margin}")

    @property
    def risk_tolerance(self) -> float:
        return self.tolerance**2


def classify(
    L_int: np.ndarray | float,
    L0: np.ndarray | float,
    J0: np.ndarray | float,
    J_star: np.ndarray | float,
    thresholds: RegimeThresholds = RegimeThresholds(),
    L_int_lo: np.ndarray | float | None = None,
) -> np.ndarray:
    """Vectorised regime labels (object array of Regime values)."""
    lo = np.nan if L_int_lo is None else L_int_lo
    L_int, L0, J0, J_star, lo = np.broadcast_arrays(*(np.asarray(v, float) for v in (L_int, L0, J0, J_star, lo)))
    tol = thresholds.risk_tolerance
    out = np.empty(L_int.shape, dtype=object)
    out.fill(Regime.UNDETERMINED)  # np.full would coerce the str-enum to a truncated str
    known = np.isfinite(L_int)
    evidence = np.where(np.isfinite(lo), lo, L_int)
    noise = known & (L_int > thresholds.noise_margin * tol) & (evidence > thresholds.noise_margin * tol)
    static = (
        known & ~noise & ((np.isfinite(L0) & (L0 <= tol)) | (np.isfinite(J0) & np.isfinite(J_star) & (J0 <= J_star)))
    )
    # L(0) alone can settle a candidate even without a decay fit.
    static_only = ~known & np.isfinite(L0) & (L0 <= tol)
    out[noise] = Regime.NOISE_DOMINANT
    out[static | static_only] = Regime.STATIC_SUFFICIENT
    out[known & ~noise & ~static] = Regime.DYNAMIC_CRITICAL
    return out


def explain(regime: Regime, L_int: float, L0: float, J0: float, J_star: float, thresholds: RegimeThresholds) -> str:
    """One line saying why a unit got its regime, in the user's units (std, not variance)."""
    tau = thresholds.tolerance
    sd = lambda v: float(np.sqrt(max(v, 0.0))) if np.isfinite(v) else float("nan")  # noqa: E731
    if regime is Regime.NOISE_DOMINANT:
        return f"intrinsic floor sqrt(L_int)={sd(L_int):.3g} exceeds tolerance {tau:.3g}: no probe removes it"
    if regime is Regime.STATIC_SUFFICIENT:
        if np.isfinite(L0) and L0 <= tau**2:
            return f"static-only risk sqrt(L0)={sd(L0):.3g} is within tolerance {tau:.3g}"
        return f"no probe depth pays for itself: J(0)={J0:.3g} <= J(c*)={J_star:.3g}"
    if regime is Regime.DYNAMIC_CRITICAL:
        return f"probing pays: J(c*)={J_star:.3g} < J(0)={J0:.3g}, floor sqrt(L_int)={sd(L_int):.3g} under tolerance {tau:.3g}"
    return "too little data to fit the uncertainty decay"
