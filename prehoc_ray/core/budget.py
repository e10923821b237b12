"""Budget-optimal probe depth (docs/design.md, Budget-optimal probing).

J(c) = L_int + K c^-alpha + gamma (C_s + lambda c) is convex for c > 0; its minimiser is
c* = (alpha K / (gamma lambda))^(1/(alpha+1)). The power law is an envelope valid for c > 0
only, so "do not probe at all" is compared separately through J(0) = L(0) + gamma C_s.
All functions broadcast over numpy arrays so a whole portfolio is one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def c_star(
    alpha: np.ndarray | float,
    K: np.ndarray | float,
    gamma: float,
    cost_per_step: np.ndarray | float,
    c_min: np.ndarray | float = 1.0,
    horizon: np.ndarray | float = np.inf,
) -> np.ndarray:
    """Unclipped optimum clipped to [c_min, horizon]; NaN where the fit is missing."""
    if gamma <= 0:
        raise ValueError(f"gamma (price of risk) must be > 0, got {gamma}")
    alpha = np.asarray(alpha, float)
    K = np.asarray(K, float)
    lam = np.asarray(cost_per_step, float)
    if np.any(lam <= 0):
        raise ValueError("cost_per_step (lambda) must be > 0")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        raw = (alpha * K / (gamma * lam)) ** (1.0 / (alpha + 1.0))
    return np.clip(raw, c_min, horizon)


def objective(
    c: np.ndarray | float,
    L_int: np.ndarray | float,
    K: np.ndarray | float,
    alpha: np.ndarray | float,
    gamma: float,
    cost_per_step: np.ndarray | float,
    static_cost: np.ndarray | float = 0.0,
) -> np.ndarray:
    """J(c) for c > 0 on the envelope."""
    c = np.asarray(c, float)
    return L_int + K * c ** (-np.asarray(alpha, float)) + gamma * (static_cost + cost_per_step * c)


@dataclass(frozen=True)
class ProbeChoice:
    """Whether to probe, and how deep, for arrays of units."""

    c_star: np.ndarray
    J_star: np.ndarray
    J0: np.ndarray
    probe: np.ndarray  # bool: J(c*) < J(0)

    @property
    def depth(self) -> np.ndarray:
        """The recommended depth: c* when probing pays, else 0."""
        return np.where(self.probe, self.c_star, 0.0)


def choose_depth(
    L_int: np.ndarray | float,
    K: np.ndarray | float,
    alpha: np.ndarray | float,
    L0: np.ndarray | float,
    gamma: float,
    cost_per_step: np.ndarray | float,
    c_min: np.ndarray | float = 1.0,
    horizon: np.ndarray | float = np.inf,
    static_cost: np.ndarray | float = 0.0,
) -> ProbeChoice:
    """c*, J(c*) and the comparison against not probing (J(0) = L(0) + gamma C_s)."""
    cs = c_star(alpha, K, gamma, cost_per_step, c_min, horizon)
    Js = objective(cs, L_int, K, alpha, gamma, cost_per_step, static_cost)
    J0 = np.asarray(L0, float) + gamma * np.asarray(static_cost, float)
    with np.errstate(invalid="ignore"):
        probe = np.asarray(Js < J0)
    return ProbeChoice(np.asarray(cs), np.asarray(Js), np.broadcast_to(J0, np.shape(Js)).copy(), probe)


def default_gamma(tolerance: float, cost_per_step: float, horizon: float) -> float:
    """Price of risk when the user gives none: a probe as long as the full run is worth tau^2.

    This makes gamma scale with the metric (through tau) and with the job's size (through the
    horizon), so the default neither probes everything to the end nor nothing at all.
    """
    if tolerance <= 0 or cost_per_step <= 0 or horizon <= 0:
        raise ValueError("tolerance, cost_per_step and horizon must be > 0 to derive gamma")
    return tolerance**2 / (cost_per_step * horizon)
