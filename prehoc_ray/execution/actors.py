"""One Ray actor per candidate: its observations and its fitted decomposition, in one place the
dashboard's Actors page can name (`prehoc:<task>:<model>[:<config>]` in namespace `prehoc`).

The actor holds state, never a device (num_cpus=0). The engine in the driver stays the one
that decides (a family's shared alpha needs all its members at once); each actor mirrors its
candidate - the points of its finished probes as they arrive and the decomposition after each
refit - and exports the candidate's predicted risk, split into the intrinsic floor L_int and
the optimization part K c^-alpha, as Ray metrics.

A restarted actor (Ray re-runs __init__, max_restarts) rebuilds itself from the run
directory: points from the result store (finished probes only, deduplicated by probe id) and
the last decomposition from the per-round snapshot the driver writes. It never needs the
driver to replay anything.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import ray

from prehoc_ray.io.run_dir import RunDir


ACTOR_PREFIX = "prehoc"


def actor_name(candidate_id: str) -> str:
    return f"{ACTOR_PREFIX}:{candidate_id}"


def read_snapshot_row(run_dir: str | Path, candidate: str) -> dict | None:
    path = RunDir(run_dir).state_candidates
    if not path.is_file():
        return None
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    rows = table.filter(pc.equal(table.column("candidate"), candidate)).to_pylist()
    return rows[0] if rows else None


def optimization_risk(row: dict) -> float:
    """V_opt at the depth reached: K c^-alpha (NaN without a fit)."""
    K, alpha, c = row.get("K"), row.get("alpha"), row.get("probe_steps")
    try:
        if K is None or alpha is None or not c or not math.isfinite(K) or not math.isfinite(alpha):
            return float("nan")
        return float(K) * float(c) ** (-float(alpha))
    except (TypeError, ValueError):
        return float("nan")


class CandidateActor:
    """Plain class (wrapped with ray.remote by `remote_class`) so it can be unit-tested as is."""

    def __init__(self, run_dir: str, candidate: str, tags: dict[str, str]) -> None:
        self.run_dir = run_dir
        self.candidate = candidate
        self.tags = dict(tags)
        self.started_at = time.time()
        self.restarted = _was_restarted()
        self.points: dict[int, dict[float, float]] = {}
        self.fit: dict = {}
        self._gauges = None
        self.rebuild()

    # ----- state -------------------------------------------------------------------------------
    def rebuild(self) -> int:
        """Reload everything from the run directory; returns the number of points held."""
        points_dir = RunDir(self.run_dir).points
        if points_dir.is_dir() and any(points_dir.iterdir()):
            # pyarrow.dataset costs ~0.4 CPU-s to import: only a restart or a resume pays it
            from prehoc_ray.execution.ledger import candidate_points
            from prehoc_ray.io.store import ResultStore

            self.points = candidate_points(ResultStore(self.run_dir), self.candidate)
            row = read_snapshot_row(self.run_dir, self.candidate)
        else:
            self.points, row = {}, None  # nothing measured yet: there is no fit to restore either
        self.fit = dict(row) if row else {}
        self._export()
        return self.n_points

    @property
    def n_points(self) -> int:
        return sum(len(v) for v in self.points.values())

    def add_points(self, rows: list[dict]) -> int:
        """Points of a finished probe (idempotent: a point is keyed by seed and step)."""
        for r in rows:
            self.points.setdefault(int(r["seed"]), {})[float(r["step"])] = float(r["value"])
        return self.n_points

    def update_fit(self, row: dict) -> None:
        """The engine's latest summary row for this candidate."""
        self.fit = dict(row)
        self._export()

    def state(self) -> dict:
        depth = min((max(s) for s in self.points.values() if s), default=0.0) if self.points else 0.0
        return {
            "candidate": self.candidate,
            **self.tags,
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

    def ping(self) -> str:
        return self.candidate

    # ----- metrics -----------------------------------------------------------------------------
    def _export(self) -> None:
        if not self.fit:
            return
        try:
            if self._gauges is None:
                from prehoc_ray.execution.metrics import candidate_gauges

                self._gauges = candidate_gauges()
            intrinsic, optimization = self._gauges
            L_int = self.fit.get("L_int")
            v_opt = optimization_risk(self.fit)
            if L_int is not None and math.isfinite(L_int):
                intrinsic.set(float(L_int), tags=self.tags)
            if math.isfinite(v_opt):
                optimization.set(v_opt, tags=self.tags)
        except Exception:  # metrics are best effort: never break the actor over them
            pass


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


RemoteCandidateActor = ray.remote(CandidateActor)


def create_actor(run_dir: str, candidate: str, tags: dict[str, str], namespace: str, max_restarts: int = 3,
                 wait_s: float = 60.0):
    """Create the named actor; waits (bounded) for a name still held by a dead driver's actor.

    Raises RuntimeError when the name stays taken: another live run of the same candidate in
    this namespace.
    """
    name = actor_name(candidate)
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return RemoteCandidateActor.options(
                name=name, namespace=namespace, num_cpus=0, max_restarts=max_restarts, max_task_retries=2,
                lifetime=None,
            ).remote(run_dir, candidate, tags)
        except ValueError as exc:  # "The name ... is already taken"
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"actor name {name!r} is taken in namespace {namespace!r}: another run of this candidate is live; "
                    "wait for it, or set cluster.namespace in the job spec"
                ) from exc
            time.sleep(0.5)
