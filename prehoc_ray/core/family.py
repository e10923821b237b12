"""Fitting a task family's members together: shared alpha, member floors shrunk to the family.

Used by the offline analysis and by the allocation engine, so both decompose risk the same
way (docs/design.md, Sharing strength).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from prehoc_ray.core.decay import DecayFit, fit_decay, fit_decay_shared_alpha_many, log_bias
from prehoc_ray.core.observations import CandidateCurves
from prehoc_ray.core.population import seed_dispersion_many
from prehoc_ray.core.shrinkage import shrink_floors


@dataclass(frozen=True)
class FamilyFit:
    grid: np.ndarray  # depths where U(c) was measured
    U: np.ndarray  # (members, depths) seed dispersion; NaN beyond a member's depth
    shared: DecayFit | None  # the pooled family fit (None for a family of one)
    fits: list[DecayFit]  # one per member, alpha shared, floors shrunk


def fit_family(
    members: list[CandidateCurves],
    depths: np.ndarray,
    grid: np.ndarray,
    *,
    level: float,
    n_boot: int,
    tolerance: float,
    rng_seq: np.random.SeedSequence,
) -> FamilyFit:
    """Seed dispersion per member, a pooled decay fit, member fits sharing its alpha.

    Child generators are spawned from `rng_seq` in a fixed order (family first, then members),
    so results are deterministic given the sequence's state.
    """
    Us = seed_dispersion_many(members, grid)
    # A member contributes only depths it has reached: beyond that its "dispersion" would be a
    # stale copy of its last value and would flatten the family's curve.
    Us[np.asarray(depths, float)[:, None] < grid[None, :]] = np.nan
    # U is a sample variance over a member's seeds (dof = seeds - 1); the log-space decay fit
    # needs its log bias divided out (decay.log_bias). The pooled mean over members has the
    # members' degrees of freedom summed, depth by depth.
    dof = np.array([max(len(c.seeds) - 1, 1) for c in members], float)
    shared = None
    if len(members) > 1:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a depth no member reached: NaN, as meant
            pooled = np.nanmean(Us, axis=0)
        pooled_dof = np.where(np.isfinite(Us), dof[:, None], 0.0).sum(0)
        pooled = pooled * np.exp(-log_bias(np.where(pooled_dof > 0, pooled_dof, np.inf)))
        shared = fit_decay(grid, pooled, level=level, n_boot=n_boot, rng=np.random.default_rng(rng_seq.spawn(1)[0]))
    rngs = [np.random.default_rng(child) for child in rng_seq.spawn(len(members))]
    if shared is not None and shared.ok:
        # A linear-space fit of relative errors: unbiased for the variance as it is.
        fits = fit_decay_shared_alpha_many(grid, Us, shared, level=level, n_boot=n_boot, rngs=rngs)
    else:
        fits = [fit_decay(grid, U, level=level, n_boot=n_boot, rng=rng, dof=d) for U, d, rng in zip(Us, dof, rngs)]
    fits = shrink_floors(fits, [len(c.seeds) for c in members], scale=tolerance**2 / 100)
    return FamilyFit(grid, Us, shared, fits)
