"""The ask/tell loop, written once: ask the engine for a round, run each order, tell the result.

Every in-process driver of the engine (the simulator, the run-directory fixture builder, the
bench replay, the execution tests' reference run) is `drive` over its own `ProbeBackend`, so
they cannot drift apart in how they end, count rounds or report failures. The Ray driver keeps
its own round logic (execution/driver.py): it runs a round's orders concurrently, admits them
against measured costs, retries, and withdraws what the budget cannot pay, none of which a
sequential loop does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from prehoc_ray.core.engine import Engine, ProbeOrder


@dataclass(frozen=True)
class ProbeOutcome:
    """What one probe order came back with: its evaluation rows and cost, or why it failed."""

    rows: list[dict] = field(default_factory=list)  # each with at least step and value, in (start, target]
    cost_s: float = 0.0  # device-seconds it cost; a failure's is charged to the budget too
    failure: str | None = None  # why it failed for good (the candidate stops); None: it finished

    def __post_init__(self) -> None:
        if not (math.isfinite(self.cost_s) and self.cost_s >= 0):
            raise ValueError(f"cost_s must be a finite number of device-seconds >= 0, got {self.cost_s!r}")
        if self.failure is not None and (not self.failure or self.rows):
            raise ValueError("failure: a failed probe needs a reason and carries no rows")

    @classmethod
    def failed(cls, reason: str, cost_s: float = 0.0) -> ProbeOutcome:
        return cls([], cost_s, reason)

    @property
    def ok(self) -> bool:
        return self.failure is None


class ProbeBackend(Protocol):
    """Anything that runs one probe order to its end (a simulator, a replayed market, a store)."""

    def run(self, order: ProbeOrder) -> ProbeOutcome: ...


@dataclass(frozen=True)
class FunctionBackend:
    """A plain function as a ProbeBackend, for a backend that is one closure (a replayed market)."""

    run: Callable[[ProbeOrder], ProbeOutcome]


@dataclass(frozen=True)
class DriveResult:
    rounds: int  # rounds whose orders all ran
    probes: int  # orders run (finished or failed)
    failures: int  # orders whose outcome was a failure
    finished: bool  # the engine asked for nothing more; False: max_rounds ended the loop first


def tell(engine: Engine, order: ProbeOrder, outcome: ProbeOutcome) -> None:
    """Tell the engine one order's outcome (a finished probe, or a failure that stops it)."""
    if outcome.ok:
        engine.tell(order, outcome.rows, outcome.cost_s)
    else:
        engine.tell_failure(order, outcome.failure, outcome.cost_s)


def drive(
    engine: Engine,
    backend: ProbeBackend,
    max_rounds: int | None = None,
    on_result: Callable[[ProbeOrder, ProbeOutcome], None] | None = None,
) -> DriveResult:
    """Run the engine's rounds on `backend` in order until it asks for nothing more.

    max_rounds: ask for at most this many rounds (None: no limit); when it ends the loop the
    engine has no open orders, so the caller may ask for the next round itself.
    on_result: called after the engine was told each outcome (to log the spend, say).
    """
    if max_rounds is not None and max_rounds < 0:
        raise ValueError(f"max_rounds must be >= 0 or None, got {max_rounds}")
    rounds = probes = failures = 0
    while max_rounds is None or rounds < max_rounds:
        orders = engine.next_round()
        if not orders:
            return DriveResult(rounds, probes, failures, finished=True)
        for order in orders:
            outcome = backend.run(order)
            tell(engine, order, outcome)
            probes += 1
            failures += not outcome.ok
            if on_result is not None:
                on_result(order, outcome)
        rounds += 1
    return DriveResult(rounds, probes, failures, finished=False)
