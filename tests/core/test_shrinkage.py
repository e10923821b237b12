"""Empirical-Bayes shrinkage of member floors toward their family."""

from __future__ import annotations

import numpy as np
import pytest

from prehoc_ray.core.decay import DecayFit
from prehoc_ray.core.shrinkage import shrink_floors


def _fits(floors: np.ndarray) -> list[DecayFit]:
    return [
        DecayFit(float(L), 1e-3, 0.6, 0.5 * float(L), 2.0 * float(L), n_points=8, c_min=10, c_max=1000) for L in floors
    ]


@pytest.mark.parametrize("seeds", [2, 3, 4])
def test_a_family_of_equal_floors_is_shrunk_to_the_floor_not_below(seeds: int) -> None:
    # Every member has the same true floor; each estimate is a sample variance of seeds - 1
    # degrees of freedom. Shrinking toward the mean of the log estimates would land at
    # exp(E log chi2_v / v) x the floor (0.28x for 2 seeds, 0.69x for 4); the family's floor is
    # what the members should get.
    rng = np.random.default_rng(seeds)
    true = 4e-4
    ratios = []
    for _ in range(40):
        est = true * rng.chisquare(seeds - 1, size=20) / (seeds - 1)
        out = shrink_floors(_fits(est), [seeds] * 20, scale=0.02**2 / 100)
        ratios.append(np.median([f.L_int for f in out]) / true)
    assert 0.8 < np.median(ratios) < 1.25


def test_a_member_that_truly_differs_keeps_most_of_its_floor() -> None:
    rng = np.random.default_rng(0)
    floors = np.r_[np.full(19, 4e-4), 4e-2] * rng.chisquare(3, size=20) / 3
    out = shrink_floors(_fits(floors), [4] * 20, scale=0.02**2 / 100)
    assert out[-1].L_int > 0.3 * floors[-1]
    assert out[-1].L_int_lo <= out[-1].L_int <= out[-1].L_int_hi


def test_too_few_members_are_left_alone() -> None:
    fits = _fits(np.array([1e-4, 1e-3]))
    assert shrink_floors(fits, [3, 3], scale=4e-6) == fits
