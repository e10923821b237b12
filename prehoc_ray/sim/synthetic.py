"""Synthetic portfolios with known ground truth (L_int, K, alpha, true finals, regimes).

The generative story follows docs/design.md, sections 1-2. Candidate i has an expected final m_i that
static features x_i explain up to a residual of variance sigma_s^2. Every run (a probe seed or
the full fine-tune) realises R = m_i + delta, delta ~ N(0, L_int): the intrinsic floor that no
probe of *another* run can remove. A probe seed j observes, at each evaluation step s,

    y_j(s) = R_j - A s^-beta + e_j(s),     Var e_j(s) = K s^-alpha

where A s^-beta is the group's shared learning transient and e_j is a *reverse* random walk:
e_j(s_k) = e_j(s_{k+1}) + independent noise. That makes the last observation carry all the
information a prefix holds about R_j, so the best unbiased prefix predictor has error variance
exactly K c^-alpha, and the spread of predictions across seeds is L_int + K c^-alpha: the
decomposition the estimators must recover. Candidates of a group share (L_int, K, alpha),
as a task family shares its revelation rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prehoc_ray.core.observations import Observations
from prehoc_ray.types import Regime


@dataclass(frozen=True)
class RegimeProfile:
    """Parameters of one regime, in units of the tolerance tau (variances in tau^2)."""

    L_int: float  # / tau^2
    static_var: float  # sigma_s^2 / tau^2: what static features leave unexplained
    K_at_cmin: float  # K c_min^-alpha / tau^2: the optimization variance at the first eval
    alpha: float


# Clearly separated defaults: a floor four times the tolerance; a static residual well under it;
# a slow decay from far above it. Used for recovery and classification tests.
PROFILES: dict[Regime, RegimeProfile] = {
    Regime.STATIC_SUFFICIENT: RegimeProfile(L_int=0.05, static_var=0.1, K_at_cmin=0.5, alpha=0.9),
    Regime.DYNAMIC_CRITICAL: RegimeProfile(L_int=0.05, static_var=25.0, K_at_cmin=10.0, alpha=0.6),
    Regime.NOISE_DOMINANT: RegimeProfile(L_int=4.0, static_var=6.0, K_at_cmin=4.0, alpha=0.6),
}


@dataclass(frozen=True)
class SyntheticPortfolio:
    observations: Observations  # probe curves, `final` = the realised full fine-tune
    truth: dict[
        str, np.ndarray
    ]  # per candidate: candidate, group, regime, L_int, K, alpha, L0, expected_final, true_final, horizon
    eval_every: int
    horizon: float
    tolerance: float


def generate_portfolio(
    n_groups: int = 3,
    candidates_per_group: int = 20,
    n_seeds: int = 3,
    horizon: float = 1000.0,
    eval_every: int = 10,
    probe_depth: float | None = None,
    tolerance: float = 0.02,
    regimes: list[Regime] | None = None,
    n_static: int = 3,
    transient: float = 0.0,
    seed: int = 0,
) -> SyntheticPortfolio:
    """A portfolio of groups, each in one regime (cycling SS, DC, ND unless `regimes` is given).

    probe_depth: how far the probe seeds are observed (default: the horizon). `final` is the
    realised outcome of an independent full run, so it differs from any probe's last value.
    """
    rng = np.random.default_rng(seed)
    order = [Regime.STATIC_SUFFICIENT, Regime.DYNAMIC_CRITICAL, Regime.NOISE_DOMINANT]
    regimes = regimes or [order[g % 3] for g in range(n_groups)]
    if len(regimes) != n_groups:
        raise ValueError(f"regimes has {len(regimes)} entries, expected n_groups={n_groups}")
    depth = horizon if probe_depth is None else probe_depth
    steps = np.arange(eval_every, depth + 1e-9, eval_every, dtype=float)
    tau2 = tolerance**2
    c_min = float(eval_every)

    rows: dict[str, list] = {k: [] for k in ("candidate", "step", "value", "seed", "group", "final", "horizon")}
    statics: list[np.ndarray] = []
    truth: dict[str, list] = {
        k: []
        for k in (
            "candidate",
            "group",
            "regime",
            "L_int",
            "K",
            "alpha",
            "L0",
            "expected_final",
            "true_final",
            "horizon",
        )
    }
    for g, regime in enumerate(regimes):
        prof = PROFILES[regime]
        group = f"g{g}-{regime.name.lower()}"
        L_int = prof.L_int * tau2
        alpha = prof.alpha
        K = prof.K_at_cmin * tau2 * c_min**alpha
        base = 0.6 + 0.1 * rng.standard_normal()
        w = rng.standard_normal(n_static) * np.sqrt(prof.static_var * tau2)  # static part of the spread
        A, beta = transient, 0.5
        for i in range(candidates_per_group):
            name = f"{group}-c{i:03d}"
            x = rng.standard_normal(n_static)
            m = base + 0.5 * (w @ x) + np.sqrt(prof.static_var * tau2) * rng.standard_normal()
            r_full = m + np.sqrt(L_int) * rng.standard_normal()
            for s in range(n_seeds):
                r = m + np.sqrt(L_int) * rng.standard_normal()
                var = K * steps ** (-alpha)
                # Reverse random walk: start at the last step, add independent increments backwards.
                incr = np.sqrt(np.diff(var[::-1], prepend=0.0)) * rng.standard_normal(steps.size)
                e = np.cumsum(incr)[::-1]
                y = r - A * steps ** (-beta) + e
                rows["candidate"] += [name] * steps.size
                rows["step"] += list(steps)
                rows["value"] += list(y)
                rows["seed"] += [s] * steps.size
                rows["group"] += [group] * steps.size
                rows["final"] += [r_full] * steps.size
                rows["horizon"] += [horizon] * steps.size
                statics += [x] * steps.size
            truth["candidate"].append(name)
            truth["group"].append(group)
            truth["regime"].append(regime.value)
            truth["L_int"].append(L_int)
            truth["K"].append(K)
            truth["alpha"].append(alpha)
            truth["L0"].append(L_int + prof.static_var * tau2)
            truth["expected_final"].append(m)
            truth["true_final"].append(r_full)
            truth["horizon"].append(horizon)
    S = np.vstack(statics) if statics else np.zeros((0, n_static))
    obs = Observations(
        candidate=np.array(rows["candidate"], dtype=object),
        step=np.array(rows["step"]),
        value=np.array(rows["value"]),
        seed=np.array(rows["seed"]),
        group=np.array(rows["group"], dtype=object),
        final=np.array(rows["final"]),
        horizon=np.array(rows["horizon"]),
        static={f"static_x{k}": S[:, k] for k in range(n_static)},
    )
    tr = {k: np.array(v, dtype=object if k in ("candidate", "group", "regime") else float) for k, v in truth.items()}
    return SyntheticPortfolio(obs, tr, eval_every, horizon, tolerance)
