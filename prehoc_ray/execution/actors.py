"""Slot actors: a fixed pool of Ray actors, each mirroring one live candidate at a time, in one
place the dashboard's Actors page can name (`prehoc:<job>:slot-<k>` in the spec's namespace).

Why a pool and not an actor per candidate: an actor process holds ~100 MiB whatever it mirrors
(benchmarks/README.md), so one per candidate makes memory follow the portfolio (10,000
candidates: ~1 TiB of workers). The pool is as large as the run's probe concurrency
(execution/pool.py), so memory follows the cluster; starting an actor per candidate on demand
instead costs ~0.65 CPU-s a start.

A slot holds state, never a device (num_cpus=0). The engine in the driver stays the one that
decides; the slot mirrors the candidate it serves - the points of its finished probes and the
decomposition after each refit - for the dashboard (`state()`). `load(candidate)` switches it
to another candidate: from what the driver knows when it passes it (the cheap path: a store
read costs O(store) per switch), else rebuilt from the run directory.

A restarted slot (Ray re-runs __init__, max_restarts) reloads the candidate it served from the
run directory: which one from its assignment file (state/slots/slot-<k>.json, written at each
load), its points from the result store (finished probes only, deduplicated by probe id), its
last decomposition from the per-round snapshot the driver writes. The driver replays nothing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import ray

from prehoc_ray.execution.telemetry import optimization_risk
from prehoc_ray.io.run_dir import RunDir

ACTOR_PREFIX = "prehoc"

# seed -> step -> value: the shape the engine keeps and the store rebuilds
Points = dict[int, dict[float, float]]


def slot_name(job: str, slot: int) -> str:
    return f"{ACTOR_PREFIX}:{job}:slot-{slot}"


def slots_dir(run_dir: str | Path) -> Path:
    """Where each slot records the candidate it serves (beside the per-round snapshot)."""
    return RunDir(run_dir).slots


def write_assignment(run_dir: str | Path, slot: int, candidate: str | None, tags: dict[str, str]) -> None:
    # Replaced atomically against readers, not fsynced: a lost write (an OS crash) only makes a
    # restarted slot mirror an older candidate; the store, not this file, is the run's truth.
    d = slots_dir(run_dir)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".slot-{slot}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"candidate": candidate, "tags": tags}))
    os.replace(tmp, d / f"slot-{slot}.json")


def read_assignment(run_dir: str | Path, slot: int) -> tuple[str, dict[str, str]] | None:
    try:
        data = json.loads((slots_dir(run_dir) / f"slot-{slot}.json").read_text())
    except (OSError, ValueError):
        return None
    return (str(data["candidate"]), dict(data.get("tags") or {})) if data.get("candidate") else None


def read_snapshot_row(run_dir: str | Path, candidate: str) -> dict | None:
    path = RunDir(run_dir).state_candidates
    if not path.is_file():
        return None
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    rows = table.filter(pc.equal(table.column("candidate"), candidate)).to_pylist()
    return rows[0] if rows else None


def store_points(run_dir: str | Path, candidate: str) -> Points:
    """A candidate's finished points as the store holds them ({} before anything ran)."""
    points_dir = RunDir(run_dir).points
    if not (points_dir.is_dir() and any(points_dir.iterdir())):
        return {}
    # pyarrow.dataset costs ~0.4 CPU-s to import: only a restart, a resume or a bare load pays it
    from prehoc_ray.execution.ledger import candidate_points
    from prehoc_ray.io.store import ResultStore

    return candidate_points(ResultStore(run_dir), candidate)


class SlotActor:
    """Plain class (wrapped with ray.remote below) so it can be unit-tested as is."""

    def __init__(self, run_dir: str, job: str, slot: int) -> None:
        self.run_dir = run_dir
        self.job = job
        self.slot = slot
        self.started_at = time.time()
        self.restarted = _was_restarted()
        self.candidate: str | None = None
        self.tags: dict[str, str] = {}
        self.points: Points = {}
        self.fit: dict = {}
        self.loads = 0
        if self.restarted:  # a fresh slot of a resumed run must not reload the dead driver's choice
            served = read_assignment(run_dir, slot)
            if served is not None:
                self.load(*served)

    # ----- which candidate ---------------------------------------------------------------------
    def load(self, candidate: str, tags: dict[str, str], known: tuple[Points, dict] | None = None) -> int:
        """Serve `candidate` from now on: its points and fit as `known` (points, fit row), else
        rebuilt from the run directory. Returns the number of points held."""
        self.candidate, self.tags = candidate, dict(tags)
        if known is None:
            self.rebuild()
        else:
            points, fit = known
            self.points = {int(s): {float(k): float(v) for k, v in p.items()} for s, p in points.items()}
            self.fit = dict(fit or {})
        self.loads += 1
        write_assignment(self.run_dir, self.slot, candidate, self.tags)
        return self.n_points

    def unload(self, candidate: str) -> None:
        """Its candidate settled: hold nothing (the state stays in the store)."""
        if candidate != self.candidate:
            return  # already serving another one
        self.candidate, self.tags, self.points, self.fit = None, {}, {}, {}
        write_assignment(self.run_dir, self.slot, None, {})

    def rebuild(self) -> int:
        """Reload the served candidate from the run directory; returns the number of points held."""
        if self.candidate is None:
            return 0
        self.points = store_points(self.run_dir, self.candidate)
        # nothing measured yet: there is no fit to restore either
        row = read_snapshot_row(self.run_dir, self.candidate) if self.points else None
        self.fit = dict(row) if row else {}
        return self.n_points

    # ----- its state ---------------------------------------------------------------------------
    @property
    def n_points(self) -> int:
        return sum(len(v) for v in self.points.values())

    def add_points(self, candidate: str, rows: list[dict]) -> int:
        """Points of a finished probe (seed, step, value; idempotent: a point is keyed by seed
        and step). Calls for a candidate this slot no longer serves are dropped: the store has them."""
        if candidate == self.candidate:
            for r in rows:
                self.points.setdefault(int(r["seed"]), {})[float(r["step"])] = float(r["value"])
        return self.n_points

    def update_fit(self, candidate: str, row: dict) -> None:
        """The engine's latest summary row for the candidate served."""
        if candidate == self.candidate:
            self.fit = dict(row)

    def state(self) -> dict:
        depth = min((max(s) for s in self.points.values() if s), default=0.0) if self.points else 0.0
        return {
            "slot": self.slot,
            "name": slot_name(self.job, self.slot),
            "candidate": self.candidate,
            **self.tags,
            "loads": self.loads,
            "seeds": sorted(self.points),
            "points": self.n_points,
            "depth": depth,
            "regime": self.fit.get("regime", "Undetermined"),
            "L_int": self.fit.get("L_int", float("nan")),
            "V_opt": optimization_risk(self.fit) if self.fit else float("nan"),
            "predicted_final": self.fit.get("predicted_final", float("nan")),
            "predicted_std": self.fit.get("predicted_std", float("nan")),
            "stop_reason": self.fit.get("stop_reason", ""),
            "restarted": self.restarted,
            "pid": os.getpid(),
            "node_id": _node_id(),
        }


def _was_restarted() -> bool:
    if not ray.is_initialized():
        return False
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecated in 2.60, still the only way to ask
            return bool(ray.get_runtime_context().was_current_actor_reconstructed)
    except Exception:
        return False


def _node_id() -> str:
    if not ray.is_initialized():
        return "local"
    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:
        return "local"


RemoteSlotActor = ray.remote(SlotActor)


def create_slot(run_dir: str, job: str, slot: int, namespace: str, max_restarts: int = 3, wait_s: float = 60.0):
    """Create the named slot actor; waits (bounded) for a name still held by a dead driver's slot.

    Raises RuntimeError when the name stays taken: another live run of the same job in this
    namespace.
    """
    name = slot_name(job, slot)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return RemoteSlotActor.options(
                name=name,
                namespace=namespace,
                num_cpus=0,
                max_restarts=max_restarts,
                max_task_retries=2,
                lifetime=None,
            ).remote(run_dir, job, slot)
        except ValueError as exc:  # "The name ... is already taken"
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"actor name {name!r} is taken in namespace {namespace!r}: another run of job {job!r} is live; "
                    "wait for it, or set cluster.namespace in the job spec"
                ) from exc
            time.sleep(0.5)
