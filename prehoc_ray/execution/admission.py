"""Admission of a round's probes as their costs become known: the budget is a promise.

The engine plans a round on costs it cannot know yet: a guessed prior per step before a
candidate ran, its measured mean after. On a loaded node, a straggler or a busy cluster a probe
can take several times its guess, and a round released at once on guesses overspends before
the first result says so. So the driver starts an order only when the round's projected spend
still fits the budget:

    spent before the round
    + the charged cost of every attempt of the round that ended (finished or failed)
    + for every probe running: max(its estimate, the wall seconds it has run x devices)
    + every order still waiting of an increment already started (its seeds are reserved)
    + this order's estimate, or its whole increment's (all its seeds) if it starts one.

An order's estimate is the engine's cost times a factor this run has measured: for a guessed
cost, a pessimistic COLD_FACTOR until a first probe of the run has been measured ("start with
what fits even if the guess is several times too low"), then a high quantile of measured /
guessed over the run's probes; for a measured cost, the same quantile of measured / estimated
(1 until something says otherwise). The first order of a run starts whenever its unscaled
guess fits, so there is something to measure. What cannot start when nothing is left running
is withdrawn (Engine.withdraw): the next round re-plans with the measured costs.

Pure accounting (no Ray): the driver feeds it times and charged costs.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field

COLD_FACTOR = 4.0  # guesses x this before anything of the run was measured
RATIO_QUANTILE = 0.9  # of measured / estimated: the factor after measurements
_TOL = 1e-9  # relative: the engine plans to the budget's edge; float sums in another order must fit too


@dataclass(frozen=True)
class Estimate:
    """The engine's cost for an order (Engine.order_cost_estimate)."""

    cost_s: float  # device-seconds
    guessed: bool  # the candidate never ran: the cost is the prior guess


@dataclass
class CostScale:
    """How far the engine's costs are off on this cluster, learned over the whole run."""

    cold: float = COLD_FACTOR
    quantile: float = RATIO_QUANTILE
    # guessed -> measured / estimated of every finished probe, kept sorted
    ratios: dict[bool, list[float]] = field(default_factory=lambda: {True: [], False: []})

    def observe(self, est: Estimate, measured_s: float) -> None:
        """A finished probe: its charged cost against the estimate it was admitted with."""
        if est.cost_s > 0 and math.isfinite(measured_s) and measured_s >= 0:
            bisect.insort(self.ratios[est.guessed], measured_s / est.cost_s)

    @property
    def measured_any(self) -> bool:
        return bool(self.ratios[True] or self.ratios[False])

    def factor(self, guessed: bool) -> float:
        seen = self.ratios[guessed]
        if not seen:
            return self.cold if guessed else 1.0
        return seen[max(0, math.ceil(self.quantile * len(seen)) - 1)]

    def scaled(self, est: Estimate) -> float:
        return est.cost_s * self.factor(est.guessed)


@dataclass
class _Order:
    group: str  # the candidate: its seeds move together, one increment
    est: Estimate
    started_at: float | None = None


class _Sums:
    """Raw estimates summed by kind (guessed or measured): scaled on demand, so a factor that
    changes with the next measurement needs no recount."""

    def __init__(self) -> None:
        self.raw = {True: 0.0, False: 0.0}

    def add(self, est: Estimate, sign: float = 1.0) -> None:
        self.raw[est.guessed] += sign * est.cost_s

    def scaled(self, scale: CostScale) -> float:
        return sum(max(0.0, v) * scale.factor(g) for g, v in self.raw.items() if v)


class RoundAdmission:
    """One round's projected spend, and which of its waiting orders may start now.

    Keys are probe ids. An order is added (waiting), started, and ended; a failed attempt that
    will be retried goes back to waiting. `charge` adds costs already paid (a resumed run's
    finished probes, earlier failed attempts). Every step is O(1) but the running probes' (at
    most the concurrency limit), so a round of thousands of orders stays cheap.
    """

    def __init__(
        self, budget: float, spent_s: float, scale: CostScale, *, devices: float = 1.0, wall_clock: bool = True
    ) -> None:
        """spent_s: what the engine was told before this round. wall_clock: costs are device
        wall seconds, so a running probe has cost at least its elapsed time (false for the
        simulated backend, whose costs are simulated)."""
        self.budget = float(budget)
        self.base = float(spent_s)
        self.measured = 0.0
        self.scale = scale
        self.devices = float(devices)
        self.wall_clock = wall_clock
        self._waiting: dict[str, _Order] = {}
        self._running: dict[str, _Order] = {}
        self._group_waiting: dict[str, _Sums] = {}
        self._reserved = _Sums()  # waiting orders of started increments
        self._started_groups: set[str] = set()
        self.started = 0  # attempts started this round

    # ----- the round's orders -------------------------------------------------------------------
    def add(self, key: str, group: str, est: Estimate) -> None:
        self._wait(key, _Order(group, est))

    def charge(self, cost_s: float) -> None:
        self.measured += max(0.0, float(cost_s))

    def start(self, key: str, now: float) -> None:
        o = self._waiting[key]
        if o.group not in self._started_groups:  # its seeds waiting are reserved from now on
            self._started_groups.add(o.group)
            for kind, v in self._group_waiting[o.group].raw.items():
                self._reserved.raw[kind] += v
        self._unwait(key)
        o.started_at = now
        self._running[key] = o
        self.started += 1

    def end(self, key: str, cost_s: float, finished: bool, retry: bool = False) -> None:
        """An attempt ended with its charged cost; a finished one teaches the scale, a failed one
        to be retried waits again."""
        o = self._running.pop(key)
        self.charge(cost_s)
        if finished:
            self.scale.observe(o.est, float(cost_s))
        elif retry:
            o.started_at = None
            self._wait(key, o)

    def waiting_keys(self) -> list[str]:
        return list(self._waiting)

    def withdraw_waiting(self) -> list[str]:
        """Every waiting order, removed (the round ends without them)."""
        keys = list(self._waiting)
        self._waiting.clear()
        self._group_waiting.clear()
        self._reserved = _Sums()
        return keys

    def _wait(self, key: str, o: _Order) -> None:
        self._waiting[key] = o
        self._group_waiting.setdefault(o.group, _Sums()).add(o.est)
        if o.group in self._started_groups:
            self._reserved.add(o.est)

    def _unwait(self, key: str) -> _Order:
        o = self._waiting.pop(key)
        self._group_waiting[o.group].add(o.est, -1.0)
        if o.group in self._started_groups:
            self._reserved.add(o.est, -1.0)
        return o

    # ----- the projection -----------------------------------------------------------------------
    @property
    def spent(self) -> float:
        """Charged so far: before the round and by the round's ended attempts."""
        return self.base + self.measured

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    def increment_estimate(self, group: str) -> float:
        """What the group's waiting orders are expected to cost (for a stop reason)."""
        sums = self._group_waiting.get(group)
        return sums.scaled(self.scale) if sums else 0.0

    def committed(self, now: float) -> float:
        """Spent, plus what running probes and the waiting orders of started increments will cost."""
        total = self.spent + self._reserved.scaled(self.scale)
        for o in self._running.values():
            est = self.scale.scaled(o.est)
            if self.wall_clock and o.started_at is not None:
                est = max(est, (now - o.started_at) * self.devices)
            total += est
        return total

    def fits(self, key: str, now: float) -> bool:
        """May the waiting order `key` start now?"""
        return self._fits(self._waiting[key], now, None)

    def _fits(self, o: _Order, now: float, committed: float | None) -> bool:
        limit = self.budget + _TOL * max(1.0, abs(self.budget))
        if not self.scale.measured_any and not self._running:
            # Nothing of the run measured yet: the first probe starts if its guess fits at all.
            return self.spent + o.est.cost_s <= limit
        committed = self.committed(now) if committed is None else committed
        if o.group in self._started_groups:
            return committed <= limit  # its own cost is already reserved
        # a new increment: all its seeds must fit
        return committed + self._group_waiting[o.group].scaled(self.scale) <= limit

    def next_admissible(self, now: float) -> str | None:
        """The first waiting order (in the order added) that may start now, or None."""
        committed = self.committed(now)
        seen: set[str] = set()
        for key, o in self._waiting.items():
            if o.group in seen:
                continue  # the same answer as this group's first waiting order
            if self._fits(o, now, committed):
                return key
            seen.add(o.group)
        return None
