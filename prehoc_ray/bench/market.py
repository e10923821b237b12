"""What a policy sees: a `Market` that sells curve observations, and nothing it has not paid for.

A policy never receives a `World` (which holds true finals and full curves). It receives a
`Market` built over one: the candidates' public facts (`Offer`: id, task, horizon, cost per
step, static features, how deep a probe can go, how many distinct seeds exist), the world's
past runs (completed runs of the same tasks, as a team's history would hold them), and
`probe()`, which charges cost_per_step x steps per seed and refuses anything past the budget.
`tests/bench/test_blindness.py` poisons the true finals and every curve point past the depth a
policy bought and checks that its picks do not change.

A seed index must be below the candidate's number of recorded seeds: a replay cannot invent a
run nobody recorded (a table with one curve per candidate is probed with one seed). A probe
starts at most at the step its seed already reached (its checkpoint, or 0): a probe cannot
skip ahead and buy a late window cheaply, so what a seed has bought is always a prefix. The
market's name is opaque (a world's name would let a policy rebuild it from its seed).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prehoc_ray.bench.worlds import Candidate, World


class BudgetExceeded(RuntimeError):
    """A probe would take the spend past the budget; nothing was charged."""


@dataclass(frozen=True)
class Offer:
    """The public facts of one candidate: what a user knows before probing it."""

    id: str
    group: str
    horizon: int  # steps of the full fine-tune
    cost_per_step: float  # device-seconds per step per seed
    static: dict[str, float]
    probe_cap: int  # the deepest step a probe can buy
    n_seeds: int  # distinct recorded seeds a probe can replay

    @property
    def full_cost(self) -> float:
        return self.cost_per_step * self.horizon


@dataclass(frozen=True)
class PastRun:
    """A completed run of one of the tasks, not a candidate: its whole curve and its final."""

    id: str
    group: str
    horizon: int
    static: dict[str, float]
    steps: np.ndarray
    values: np.ndarray
    final: float


class Market:
    """Sells observations of one world's candidates under one budget (device-seconds)."""

    def __init__(self, world: World, budget: float) -> None:
        if not budget >= 0:
            raise ValueError(f"budget must be >= 0, got {budget}")
        self.__world = world  # private: policies use the methods below
        self.budget = float(budget)
        self.spent = 0.0
        self._reached: dict[tuple[int, int], int] = {}
        self._bought: list[tuple[int, int, int, int, float]] = []  # (i, seed, start, target, cost)
        self.candidates: tuple[Offer, ...] = tuple(
            Offer(
                c.id,
                c.group,
                int(c.horizon),
                float(c.cost_per_step),
                dict(c.static),
                int(world.probe_cap(c)),
                c.n_seeds,
            )
            for c in world.candidates
        )
        self.history: tuple[PastRun, ...] = tuple(_past(h) for h in world.history)
        self.eval_every = int(world.eval_every)
        self.tolerance = float(world.tolerance)

    # ----- public facts ------------------------------------------------------------------------
    @property
    def probe_seeds(self) -> int:
        """Seeds a policy runs per candidate: the world's setting, at most the seeds recorded."""
        return max(1, min(self.__world.probe_seeds, min((o.n_seeds for o in self.candidates), default=1)))

    @property
    def seeds_observable(self) -> bool:
        """False when every candidate has one recorded curve: seed dispersion cannot be seen."""
        return any(o.n_seeds > 1 for o in self.candidates)

    @property
    def left(self) -> float:
        return self.budget - self.spent

    @property
    def groups(self) -> np.ndarray:
        return np.array([o.group for o in self.candidates], dtype=object)

    @property
    def full_cost(self) -> float:
        """Cost of fully training every candidate once (budgets are fractions of it)."""
        return float(sum(o.full_cost for o in self.candidates))

    def index(self) -> dict[str, int]:
        return {o.id: i for i, o in enumerate(self.candidates)}

    def cost(self, i: int, start: int, target: int) -> float:
        return self.candidates[i].cost_per_step * max(target - start, 0)

    # ----- buying ------------------------------------------------------------------------------
    def probe(self, i: int, seed: int, start: int, target: int) -> tuple[np.ndarray, np.ndarray, float]:
        """Steps and values in (start, target] of candidate i's seed, and the cost charged."""
        o = self.candidates[i]
        if not 0 <= seed < o.n_seeds:
            raise ValueError(f"seed {seed} of {o.id}: only {o.n_seeds} recorded seed(s)")
        if target > o.probe_cap or start < 0 or target < start:
            raise ValueError(
                f"bad probe range ({start}, {target}] for {o.id} (probes reach at most step {o.probe_cap})"
            )
        reached = self._reached.get((i, seed), 0)
        if start > reached:
            raise ValueError(
                f"probe of {o.id} seed {seed} starts at step {start}, past its checkpoint at step {reached}"
            )
        cost = self.cost(i, start, target)
        # A relative tolerance absorbs float round-off in budgets computed as sums of costs.
        if self.spent + cost > self.budget * (1 + 1e-12) + 1e-12:
            raise BudgetExceeded(f"probe of {o.id} costs {cost:.4g}, {self.left:.4g} left")
        st, v = self.__world.candidates[i].curve(seed)
        m = (st > start) & (st <= target)
        self.spent += cost
        self._reached[(i, seed)] = max(self._reached.get((i, seed), 0), target)
        self._bought.append((i, seed, start, target, cost))
        return st[m].copy(), v[m].copy(), cost

    def prefix(self, i: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
        """Everything bought so far for (candidate, seed)."""
        d = self._reached.get((i, seed), 0)
        if d <= 0:
            return np.zeros(0), np.zeros(0)
        st, v = self.__world.candidates[i].curve(seed)
        m = st <= d
        return st[m].copy(), v[m].copy()

    def depth(self, i: int) -> int:
        """Deepest step reached by any seed of candidate i."""
        return max((d for (j, _), d in self._reached.items() if j == i), default=0)

    def seeds_run(self, i: int) -> int:
        return sum(1 for (j, _), d in self._reached.items() if j == i and d > 0)

    def reached(self) -> dict[tuple[int, int], int]:
        """(candidate index, seed) -> deepest step bought: what a blindness test may keep."""
        return dict(self._reached)


def _past(h: Candidate) -> PastRun:
    st, v = h.curve(0)
    return PastRun(h.id, h.group, int(h.horizon), dict(h.static), st.copy(), v.copy(), float(h.true_final))
