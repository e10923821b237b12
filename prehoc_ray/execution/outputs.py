"""Tables the driver leaves in the run directory (all written atomically):

static.parquet       one row per candidate: candidate + static_* signals (reused on resume)
state/candidates.parquet   the engine's summary after each refit (restarted actors read it)
candidates.parquet   the final per-candidate table the plan is made from
spend.parquet        one row per finished probe: round, candidate, probe_id, cost_s,
                     cumulative spent_s, wall_s, node_id, ended_at
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from prehoc_ray.io.formats import write_table
from prehoc_ray.io.run_dir import RunDir
from prehoc_ray.spec.job import JobSpec


def read_static(run_dir: Path) -> dict[str, dict[str, float]]:
    path = RunDir(run_dir).static
    if not path.is_file():
        return {}
    out = {}
    for row in pq.read_table(path).to_pylist():
        cid = row.pop("candidate")
        out[cid] = {k: float(v) for k, v in row.items() if v is not None and k.startswith("static_")}
    return out


def write_static(run_dir: Path, statics: dict[str, dict[str, float]]) -> None:
    rows = [{"candidate": cid, **vals} for cid, vals in sorted(statics.items())]
    names = sorted({k for r in rows for k in r if k != "candidate"})
    table = pa.table(
        {
            "candidate": pa.array([r["candidate"] for r in rows], pa.string()),
            **{n: pa.array([r.get(n) for r in rows], pa.float64()) for n in names},
        }
    )
    write_table(table, RunDir(run_dir).static)


def _table(rows: list[dict]) -> pa.Table:
    if not rows:
        return pa.table({})
    names = list(dict.fromkeys(k for r in rows for k in r))
    return pa.table({n: pa.array([r.get(n) for r in rows]) for n in names})


def write_snapshot(run_dir: Path, rows: list[dict], round_: int) -> None:
    write_table(_table([{**r, "round": round_} for r in rows]), RunDir(run_dir).state_candidates)


def candidate_rows(spec: JobSpec, summary: list[dict], gamma: float, runs: list[dict], metric: str) -> list[dict]:
    """engine.summary() rows + what the plan needs about each candidate."""
    specs = {c.id: c for c in spec.candidate_specs()}
    train_sps: dict[str, list[float]] = {}
    setup: dict[str, float] = {}
    for r in runs:
        v = r.get("setup_s")
        if v is not None and math.isfinite(v):
            setup[r["candidate"]] = setup.get(r["candidate"], 0.0) + float(v)
        v = r.get("train_s_per_step")
        if r.get("status") == "finished" and v is not None and math.isfinite(v) and (r.get("steps_run") or 0) > 0:
            train_sps.setdefault(r["candidate"], []).append(float(v))
    out = []
    for row in summary:
        c = specs[row["candidate"]]
        per_step = train_sps.get(c.id)
        # lambda of a full run: the runner's training seconds per step (evaluation and set-up
        # excluded; x devices), else the probes' charged cost per step
        lam = statistics.median(per_step) if per_step else float(row["cost_per_step_s"])
        out.append(
            {
                **row,
                "task": c.task.name,
                "model": c.model.name,
                "config": c.config.name,
                "full_steps": int(c.config.full_steps),
                "train_cost_per_step_s": lam,
                "full_cost_s": lam * c.config.full_steps,
                "setup_s": setup.get(c.id, 0.0),
                "gamma": float(gamma),
                "objective": spec.allocation.objective,
                "metric": metric,
                "mode": spec.plan.mode,
            }
        )
    return out


def write_candidates(run_dir: Path, rows: list[dict]) -> None:
    write_table(_table(rows), RunDir(run_dir).candidates)


def spend_rows(history: list[dict], runs: list[dict]) -> list[dict]:
    latest: dict[str, dict] = {}
    for r in runs:
        if r.get("status") == "finished":
            prev = latest.get(r["probe_id"])
            if prev is None or (r.get("ended_at") or 0) >= (prev.get("ended_at") or 0):
                latest[r["probe_id"]] = r
    out = []
    for h in history:
        run = latest.get(h["probe_id"], {})
        out.append({**h, "wall_s": run.get("wall_s"), "node_id": run.get("node_id"), "ended_at": run.get("ended_at")})
    return out


def write_spend(run_dir: Path, rows: list[dict]) -> None:
    schema = pa.schema(
        [
            ("round", pa.int64()),
            ("candidate", pa.string()),
            ("probe_id", pa.string()),
            ("cost_s", pa.float64()),
            ("spent_s", pa.float64()),
            ("wall_s", pa.float64()),
            ("node_id", pa.string()),
            ("ended_at", pa.float64()),
        ]
    )
    write_table(pa.Table.from_pylist(rows, schema=schema), RunDir(run_dir).spend)
