"""The pool of slot actors and which candidate each one serves.

Size: min(candidates, the run's probe concurrency, MAX_SLOTS), at least 1. A candidate is live
while a probe of it runs; probes in flight never exceed the concurrency, so neither do live
candidates, and every live candidate has a slot of its own (below the cap).

Routing, least recently used among the slots whose candidate has no probe in flight (an empty
slot first). Not a hash of the candidate: two live candidates hashing to one slot would share
it, each switch a reload, or one would go unmirrored. LRU keeps a candidate on its slot across
its seeds' probes and into the next round while no other live candidate needs the slot, so a
round loads about one slot per candidate it probes. A candidate that settles gives its slot
back at once. Which slot mirrors what depends on when probes end; the plan never does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import ray

from prehoc_ray.execution.actors import Points, create_slot

# Past this many live candidates a slot is a dashboard view only, not worth ~100 MiB more of
# cluster memory each; candidates beyond it share slots (the least recently used is reloaded).
MAX_SLOTS = 64


def pool_size(candidates: int, concurrency: int, cap: int = MAX_SLOTS) -> int:
    return max(1, min(candidates, concurrency, cap))


@dataclass
class PoolStats:
    loads: int = 0  # candidate switches (a load of a slot)
    unloads: int = 0  # slots freed by a settled candidate
    peak_serving: int = 0  # most slots holding a candidate at once


class SlotRouter:
    """Which slot serves which candidate (bookkeeping only: no Ray, unit-tested as is)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"size: a pool needs at least one slot, got {size}")
        self.size = size
        self._serving: list[str | None] = [None] * size
        self._slot_of: dict[str, int] = {}
        self._pins: dict[str, int] = {}  # candidate -> its probes in flight
        self._used = [0] * size  # when each slot was last acquired (a counter, not a clock)
        self._tick = 0
        self.stats = PoolStats()

    def slot_of(self, candidate: str) -> int | None:
        return self._slot_of.get(candidate)

    def serving(self) -> dict[int, str]:
        return {k: c for k, c in enumerate(self._serving) if c is not None}

    def acquire(self, candidate: str) -> tuple[int, bool]:
        """A probe of `candidate` starts: its slot, and whether the slot must load it."""
        self._tick += 1
        k = self._slot_of.get(candidate)
        new = k is None
        if k is None:
            k = self._choose()
            old = self._serving[k]
            if old is not None:  # released (or, past the cap, still running: its mirror lapses)
                del self._slot_of[old]
                self._pins.pop(old, None)
            self._serving[k] = candidate
            self._slot_of[candidate] = k
            self.stats.loads += 1
            self.stats.peak_serving = max(self.stats.peak_serving, len(self._slot_of))
        self._pins[candidate] = self._pins.get(candidate, 0) + 1
        self._used[k] = self._tick
        return k, new

    def release(self, candidate: str) -> None:
        """A probe of `candidate` ended (finished or failed); its slot stays loaded."""
        if self._pins.get(candidate, 0) > 0:
            self._pins[candidate] -= 1

    def drop(self, candidate: str) -> int | None:
        """`candidate` settled: free its slot; returns the slot, None when it held none."""
        k = self._slot_of.pop(candidate, None)
        if k is not None:
            self._serving[k] = None
            self._pins.pop(candidate, None)
            self.stats.unloads += 1
        return k

    def _choose(self) -> int:
        empty = [k for k, c in enumerate(self._serving) if c is None]
        if empty:
            return empty[0]
        idle = [k for k, c in enumerate(self._serving) if not self._pins.get(c or "", 0)]
        return min(idle or range(self.size), key=self._used.__getitem__)


class CandidatePool:
    """The slot actors of a run and the calls routed to them (fire and forget: a restarting
    slot reloads itself, and nothing the driver decides depends on a slot)."""

    def __init__(
        self,
        run_dir: str,
        job: str,
        namespace: str,
        size: int,
        tags: dict[str, dict[str, str]],
        points_of: Callable[[str], dict],
        max_restarts: int = 3,
    ) -> None:
        """`tags`: candidate -> task/model/config; `points_of`: the engine's points of a
        candidate (seed -> step -> value, what it was told from the store)."""
        self.run_dir, self.job, self.namespace = run_dir, job, namespace
        self.router = SlotRouter(size)
        self.tags = tags
        self.points_of = points_of
        self.max_restarts = max_restarts
        self.handles: list = []
        self._fits: dict[str, dict] = {}  # candidate -> its latest summary row
        self._fresh: dict[str, list[dict]] = {}  # rows finished since the engine was last told

    @property
    def stats(self) -> PoolStats:
        return self.router.stats

    def start(self) -> None:
        # Not waited for: the slots come up while the first probes run; calls queue meanwhile.
        self.handles = [
            create_slot(self.run_dir, self.job, k, self.namespace, max_restarts=self.max_restarts)
            for k in range(self.router.size)
        ]

    def stop(self) -> None:
        for h in self.handles:
            try:
                ray.kill(h)
            except Exception:
                pass
        self.handles = []

    def acquire(self, candidate: str) -> None:
        """A probe of `candidate` is submitted: its slot serves it from now on."""
        k, new = self.router.acquire(candidate)
        if new:
            # a named call: the dashboard's task list says which candidate each slot loaded
            self._call(
                k, "load", candidate, self.tags[candidate], self._known(candidate), name=f"prehoc-load:{candidate}"
            )

    def ended(self, candidate: str, rows: list[dict]) -> None:
        """A probe of `candidate` ended; `rows` (seed, step, value) when it finished."""
        if rows:
            self._fresh.setdefault(candidate, []).extend(rows)
            k = self.router.slot_of(candidate)
            if k is not None:
                self._call(k, "add_points", candidate, rows)
        self.router.release(candidate)

    def publish(self, rows: list[dict], settled: set[str]) -> None:
        """After a refit (the engine has been told every finished probe): settled candidates give
        their slots back, the others' slots get their new fit."""
        self._fits = {r["candidate"]: r for r in rows}
        self._fresh.clear()
        for k, cid in self.router.serving().items():
            if cid in settled:
                self.router.drop(cid)
                self._call(k, "unload", cid)
            elif cid in self._fits:
                self._call(k, "update_fit", cid, self._fits[cid])

    def _known(self, candidate: str) -> tuple[Points, dict]:
        points: Points = {
            int(s): {float(st): float(v) for st, v in p.items()} for s, p in self.points_of(candidate).items()
        }
        for r in self._fresh.get(candidate, []):
            points.setdefault(int(r["seed"]), {})[float(r["step"])] = float(r["value"])
        return points, self._fits.get(candidate, {})

    def _call(self, k: int, method: str, *args, name: str | None = None) -> None:
        if k >= len(self.handles):
            return  # not started (a unit test of the routing)
        try:
            m = getattr(self.handles[k], method)
            (m.options(name=name) if name else m).remote(*args)
        except Exception:
            pass
