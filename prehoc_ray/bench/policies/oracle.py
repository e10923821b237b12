"""The oracle: true finals. Regret 0 by definition; its cost is fully training everything."""

from __future__ import annotations

import numpy as np

from prehoc_ray.bench.policies import PolicyResult
from prehoc_ray.bench.worlds import World


def run(world: World, budget: float, *, seed: int = 0) -> PolicyResult:
    y = world.true_finals
    return PolicyResult("oracle", y.copy(), np.zeros_like(y), world.full_cost,
                        np.array([c.horizon for c in world.candidates], float), info={"reference": True})
