"""Buying observations: every policy replays curves through a `Replay`, which charges the same
cost per step and refuses any probe that would take the total past the budget.

A probe of candidate i, seed s, from step a (its checkpoint) to step b returns the recorded
evaluation points in (a, b] and costs cost_per_step[i] x (b - a), whether or not the world has
a distinct curve for that seed (worlds.Candidate.curve).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from prehoc_ray.bench.worlds import World


class BudgetExceeded(RuntimeError):
    """A probe would take the spend past the budget; nothing was charged."""


@dataclass
class Replay:
    world: World
    budget: float
    spent: float = 0.0
    # (candidate index, seed) -> deepest step reached
    reached: dict[tuple[int, int], int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.budget >= 0:
            raise ValueError(f"budget must be >= 0, got {self.budget}")

    @property
    def left(self) -> float:
        return self.budget - self.spent

    def cost(self, i: int, start: int, target: int) -> float:
        return self.world.candidates[i].cost_per_step * max(target - start, 0)

    def probe(self, i: int, seed: int, start: int, target: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Steps and values in (start, target], and the cost charged."""
        c = self.world.candidates[i]
        if target > self.world.probe_cap(c) or start < 0 or target < start:
            raise ValueError(f"bad probe range ({start}, {target}] for {c.id} (probes reach at most step {self.world.probe_cap(c)})")
        cost = self.cost(i, start, target)
        # A relative tolerance absorbs float round-off in budgets computed as sums of costs.
        if self.spent + cost > self.budget * (1 + 1e-12) + 1e-12:
            raise BudgetExceeded(f"probe of {c.id} costs {cost:.4g}, {self.left:.4g} left")
        st, v = c.curve(seed)
        m = (st > start) & (st <= target)
        self.spent += cost
        self.reached[(i, seed)] = max(self.reached.get((i, seed), 0), target)
        return st[m], v[m], cost

    def prefix(self, i: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Everything bought so far for (candidate, seed)."""
        st, v = self.world.candidates[i].curve(seed)
        m = st <= self.reached.get((i, seed), 0)
        return st[m], v[m]

    def depth(self, i: int) -> int:
        """Deepest step reached by any seed of candidate i."""
        return max((d for (j, _), d in self.reached.items() if j == i), default=0)

    def seeds_run(self, i: int) -> int:
        return sum(1 for (j, _), d in self.reached.items() if j == i and d > 0)
