"""The driver's view of the result store: what is already done, what failed, and how often.

Everything a resumed driver needs to answer a round's orders comes from here, and the
uninterrupted driver reads the same things the same way (rows and costs from the store, never
from the task's return value), so both runs tell the engine bit-identical results.

Besides the io layer's points/ and probes/ logs, execution keeps two logs of its own, in the
store's fragment format (atomic, append-only): probe_runs/, one row per ended attempt with
where and how it ran (node id, worker pid, wall seconds, the runner's training seconds per
step), for the spend table and the multi-node checks; and withdrawn/, the orders a round ended
without running because the budget could not pay them (execution/admission.py), so a resumed
driver withdraws the same ones and replays the same rounds.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from prehoc_ray.io.fragments import FragmentDir
from prehoc_ray.io.run_dir import RunDir
from prehoc_ray.io.store import ResultStore

# Failed-event reasons with this prefix are final: retrying cannot fix a bad input.
FINAL_PREFIX = "input error: "

RUN_FIELDS = {
    "probe_id": pa.string(),
    "candidate": pa.string(),
    "seed": pa.int64(),
    "attempt": pa.int64(),
    "status": pa.string(),
    "node_id": pa.string(),
    "pid": pa.int64(),
    "start_step": pa.int64(),
    "target_step": pa.int64(),
    "resumed_from": pa.int64(),  # the step the probe really started from (its checkpoint)
    "steps_run": pa.int64(),
    "wall_s": pa.float64(),  # the attempt inside its worker, bookkeeping included
    "runner_s": pa.float64(),  # of which the probe itself (run_probe / the simulated curve)
    "cost_s": pa.float64(),  # charged to the probe budget: runner_s less the one-time set-up
    "setup_s": pa.float64(),  # one-time set-up inside runner_s (model, data, first engine build)
    "devices": pa.float64(),
    "train_s_per_step": pa.float64(),  # the runner's lambda: training seconds per step
    "tokens": pa.float64(),
    "metric": pa.string(),
    "ended_at": pa.float64(),  # unix seconds
    "reason": pa.string(),
}
RUN_SCHEMA = pa.schema([pa.field(k, v) for k, v in RUN_FIELDS.items()])


def probe_runs_dir(run_dir: str | Path) -> FragmentDir:
    return FragmentDir(RunDir(run_dir).probe_runs, identity=("probe_id", "attempt", "status"))


def record_run(run_dir: str | Path, info: dict) -> None:
    row = {k: info.get(k) for k in RUN_FIELDS}
    probe_runs_dir(run_dir).write(pa.Table.from_pylist([row], schema=RUN_SCHEMA))


def read_runs(run_dir: str | Path) -> list[dict]:
    table = probe_runs_dir(run_dir).read()
    return [] if table is None else table.to_pylist()


WITHDRAWN_SCHEMA = pa.schema([pa.field("probe_id", pa.string()), pa.field("stop", pa.string())])


def record_withdrawals(run_dir: str | Path, withdrawn: dict[str, str]) -> None:
    """probe id -> the reason its candidate stops ("": none, the next round re-plans it); one
    fragment per round, so a kill leaves all of a round's withdrawals or none."""
    if withdrawn:
        rows = [{"probe_id": pid, "stop": stop} for pid, stop in withdrawn.items()]
        FragmentDir(RunDir(run_dir).withdrawn, identity=("probe_id",)).write(
            pa.Table.from_pylist(rows, schema=WITHDRAWN_SCHEMA)
        )


def read_withdrawals(run_dir: str | Path) -> dict[str, str]:
    table = FragmentDir(RunDir(run_dir).withdrawn, identity=("probe_id",)).read()
    if table is None:
        return {}
    return {
        str(pid): str(stop or "")
        for pid, stop in zip(table.column("probe_id").to_pylist(), table.column("stop").to_pylist())
    }


@dataclass
class ProbeHistory:
    """Per probe id, from the lifecycle events."""

    finished_cost: dict[str, float] = field(default_factory=dict)
    failed: dict[str, dict[int, tuple[str, float]]] = field(
        default_factory=lambda: defaultdict(dict)
    )  # attempt -> (reason, cost)
    max_attempt: dict[str, int] = field(default_factory=dict)
    started: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # 'started' events

    def failed_attempts(self, pid: str) -> int:
        return len(self.failed.get(pid, {}))

    def failed_cost(self, pid: str) -> float:
        # sorted by attempt: the sum is the same float whatever order the events were read in
        return float(sum(c for _, (_, c) in sorted(self.failed.get(pid, {}).items())))

    def last_reason(self, pid: str) -> str:
        attempts = self.failed.get(pid, {})
        return attempts[max(attempts)][0] if attempts else ""

    def is_final_failure(self, pid: str, max_retries: int) -> bool:
        if pid in self.finished_cost:
            return False
        n = self.failed_attempts(pid)
        return n > max_retries or (n > 0 and self.last_reason(pid).startswith(FINAL_PREFIX))

    def next_attempt(self, pid: str) -> int:
        """Above every attempt seen, so a re-run's rows win over a killed attempt's partial rows."""
        return self.max_attempt.get(pid, 0) + 1


def probe_history(store: ResultStore) -> ProbeHistory:
    h = ProbeHistory()
    events = store.read_probes()
    if events.num_rows == 0:
        return h
    cols = {name: events.column(name).to_pylist() for name in ("probe_id", "status", "attempt", "reason", "cost_s")}
    for pid, status, attempt, reason, cost in zip(
        cols["probe_id"], cols["status"], cols["attempt"], cols["reason"], cols["cost_s"]
    ):
        attempt = int(attempt)
        h.max_attempt[pid] = max(h.max_attempt.get(pid, 0), attempt)
        if status == "finished":
            # the latest finished event wins (events are oldest first)
            h.finished_cost[pid] = float(cost)
        elif status == "failed":
            h.failed[pid][attempt] = (
                reason or "unknown failure",
                float(cost) if cost is not None and math.isfinite(cost) else 0.0,
            )
        elif status == "started":
            h.started[pid] += 1
    return h


def finished_rows(store: ResultStore, probe_ids: set[str]) -> dict[str, list[dict]]:
    """Evaluation rows (step, value) of finished probes, per probe id, in step order."""
    table = store.read_points(finished_only=True)
    out: dict[str, list[dict]] = {pid: [] for pid in probe_ids}
    if table.num_rows == 0 or not probe_ids:
        return out
    pids = table.column("probe_id").to_pylist()
    steps = table.column("step").to_pylist()
    values = table.column("value").to_pylist()
    for pid, step, value in zip(pids, steps, values):
        if pid in out:
            out[pid].append({"step": float(step), "value": float("nan") if value is None else float(value)})
    for rows in out.values():
        rows.sort(key=lambda r: r["step"])
    return out


def candidate_points(store: ResultStore, candidate: str) -> dict[int, dict[float, float]]:
    """seed -> step -> value of one candidate's finished probes (what a restarted actor holds)."""
    import pyarrow.compute as pc

    table = store.read_trajectory_points(finished_only=True)
    if table.num_rows == 0:
        return {}
    table = table.filter(pc.equal(table.column("candidate"), candidate))
    out: dict[int, dict[float, float]] = {}
    for seed, step, value in zip(
        table.column("seed").to_pylist(), table.column("step").to_pylist(), table.column("value").to_pylist()
    ):
        out.setdefault(int(seed), {})[float(step)] = float("nan") if value is None else float(value)
    return out
