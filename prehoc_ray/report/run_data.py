"""Everything a run directory holds, read back for the run report.

A finished run has candidates.parquet (the engine's summary), spend.parquet, plan.json and
the result store. An interrupted one may have only the store (points/, probes/) and
job.yaml: what can be rebuilt from those is rebuilt (seed dispersion per candidate, a
provisional decay fit, probe spend from the probe events), and `complete` says which it is.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from prehoc_ray.core.decay import fit_decay
from prehoc_ray.core.observations import CandidateCurves, Observations
from prehoc_ray.core.population import seed_dispersion
from prehoc_ray.io import ResultStore, RunManifest
from prehoc_ray.io.errors import ManifestError, StoreError
from prehoc_ray.io.run_dir import CANDIDATES, PLAN_JSON
from prehoc_ray.io.run_dir import JOB as JOB_FILE
from prehoc_ray.io.run_dir import SPEND as SPEND_FILE
from prehoc_ray.spec.job import JobSpec, SpecError, load_job

_ROUND_IN_PROBE_ID = re.compile(r"^r(\d+)\|")
MAX_GRID = 12  # depths per candidate at which U(c) is measured for the plots


@dataclass
class RunData:
    run_dir: Path
    spec: JobSpec | None = None
    spec_error: str | None = None
    manifest: RunManifest | None = None
    candidates: list[dict[str, Any]] | None = None  # candidates.parquet rows, None if absent
    plan_rows: list[dict[str, Any]] | None = None
    totals: dict[str, Any] | None = None
    truth: dict[str, Any] | None = None  # plan.json's recorded_truth (plan/truth.py), when the spec names one
    spend: list[dict[str, Any]] = field(default_factory=list)  # round, candidate, cost_s, spent_s[, time_s]
    spend_source: str = ""
    curves: dict[str, CandidateCurves] = field(default_factory=dict)
    probe_counts: dict[str, dict[str, int]] = field(default_factory=dict)  # candidate -> status -> n
    provisional: list[dict[str, Any]] = field(default_factory=list)  # per candidate, from the store only
    events: pa.Table | None = None  # every probe lifecycle event, oldest first
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return self.candidates is not None

    @property
    def status(self) -> str:
        # The driver marks its manifest finished only after the plan and this report are
        # written: a candidates table means the probing finished.
        if self.manifest is not None and not (self.complete and self.manifest.status == "running"):
            return self.manifest.status
        return "finished" if self.complete else "unknown"

    @property
    def tolerance(self) -> float:
        return self.spec.allocation.tolerance if self.spec is not None else 0.02

    def fits(self) -> dict[str, dict[str, float]]:
        """candidate -> L_int, K, alpha, c_star, probe_steps (engine's when complete, else provisional)."""
        rows = self.candidates if self.candidates is not None else self.provisional
        keys = ("L_int", "K", "alpha", "c_star", "probe_steps", "L0", "cost_per_step_s", "gamma")
        return {
            str(r["candidate"]): {k: _num(r.get(k)) for k in keys} | {"regime": str(r.get("regime") or "Undetermined")}
            for r in rows
        }


def _num(v: Any) -> float:
    try:
        return float(v) if v is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def u_curve(cc: CandidateCurves, max_points: int = MAX_GRID) -> tuple[np.ndarray, np.ndarray]:
    """(depths, U) by seed dispersion at up to `max_points` log-spaced observed depths."""
    steps = np.unique(np.concatenate([st for st, _ in cc.seeds.values()])) if cc.seeds else np.zeros(0)
    if steps.size == 0:
        return steps, steps
    if steps.size > max_points:
        idx = np.unique(np.round(np.geomspace(1, steps.size, max_points)).astype(int) - 1)
        steps = steps[idx]
    U = seed_dispersion(cc, steps)
    keep = np.isfinite(U)
    return steps[keep], U[keep]


def load_run(run_dir: str | Path, spec: JobSpec | None = None) -> RunData:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: not a run directory")
    data = RunData(run_dir, spec=spec)
    if data.spec is None and (run_dir / JOB_FILE).is_file():
        try:
            data.spec = load_job(run_dir / JOB_FILE)
        except SpecError as exc:
            data.spec_error = str(exc)
            data.notes.append(f"job.yaml could not be read: {str(exc).splitlines()[0]}")
    elif data.spec is None:
        data.notes.append("no job.yaml in the run directory: budgets and baselines are unknown")
    try:
        data.manifest = RunManifest.load(run_dir)
    except ManifestError as exc:
        data.notes.append(str(exc))

    cand_path = run_dir / CANDIDATES
    if cand_path.is_file():
        data.candidates = pq.read_table(cand_path).to_pylist()
    _load_plan(data)
    _load_store(data)
    _load_spend(data)
    if not data.complete:
        data.provisional = _provisional(data)
    return data


def _load_plan(data: RunData) -> None:
    path = data.run_dir / PLAN_JSON
    if path.is_file():
        try:
            doc = json.loads(path.read_text())
            data.plan_rows = [
                {k: (float("nan") if v is None and k not in ("reason", "decision") else v) for k, v in r.items()}
                for r in doc.get("candidates", [])
            ]
            data.totals = doc.get("totals")
            truth = doc.get("recorded_truth")
            data.truth = truth if isinstance(truth, dict) else None
            return
        except (OSError, json.JSONDecodeError) as exc:
            data.notes.append(f"plan.json unreadable ({exc}); recomputed from candidates.parquet")
    if data.candidates is not None and data.spec is not None:
        from prehoc_ray.plan.outputs import build_plan

        _, data.plan_rows, data.totals = build_plan(data.candidates, data.spec)


def _load_store(data: RunData) -> None:
    store = ResultStore(data.run_dir)
    try:
        pts = store.read_trajectory_points()
        events = store.probe_states()
    except (StoreError, OSError) as exc:
        data.notes.append(f"result store unreadable: {exc}")
        return
    if pts.num_rows:
        obs = Observations(
            candidate=np.array(pts.column("candidate").to_pylist(), dtype=object),
            step=pts.column("step").to_numpy(zero_copy_only=False).astype(float),
            value=np.array([math.nan if v is None else v for v in pts.column("value").to_pylist()], float),
            seed=pts.column("seed").to_numpy(zero_copy_only=False).astype(int),
        )
        data.curves = {cc.candidate: cc for cc in obs.per_candidate()}
    counts: dict[str, dict[str, int]] = {}
    for c, s in zip(events.column("candidate").to_pylist(), events.column("status").to_pylist()):
        d = counts.setdefault(c, {"started": 0, "finished": 0, "failed": 0})
        d[s] = d.get(s, 0) + 1
    data.probe_counts = counts
    data.events = store.read_probes()


def _load_spend(data: RunData) -> None:
    path = data.run_dir / SPEND_FILE
    if path.is_file():
        rows = pq.read_table(path).to_pylist()
        # A time axis: when each probe ended (the driver writes ended_at, epoch seconds; wall_s
        # there is a probe's own duration, not a clock).
        wall_key = next((k for k in ("ended_at", "ended_at_s", "timestamp", "time_s") if rows and k in rows[0]), None)
        out = []
        for r in rows:
            item = {
                "round": int(_num(r.get("round"))) if math.isfinite(_num(r.get("round"))) else 0,
                "candidate": str(r.get("candidate", "")),
                "cost_s": _num(r.get("cost_s")),
                "spent_s": _num(r.get("spent_s")),
            }
            if wall_key is not None:
                w = r.get(wall_key)
                item["time_s"] = w.timestamp() if hasattr(w, "timestamp") else _num(w)
            out.append(item)
        if out and not all(math.isfinite(r["spent_s"]) for r in out):
            total = 0.0
            for r in out:
                total += r["cost_s"] if math.isfinite(r["cost_s"]) else 0.0
                r["spent_s"] = total
        data.spend, data.spend_source = out, SPEND_FILE
        return
    events = data.events
    if events is None or events.num_rows == 0:
        return
    # Rebuilt from the store: every finished or failed probe event, in write order.
    total, out = 0.0, []
    for pid, c, s, cost in zip(
        events.column("probe_id").to_pylist(),
        events.column("candidate").to_pylist(),
        events.column("status").to_pylist(),
        events.column("cost_s").to_pylist(),
    ):
        if s not in ("finished", "failed"):
            continue
        m = _ROUND_IN_PROBE_ID.match(pid)
        total += float(cost or 0.0)
        out.append(
            {
                "round": int(m.group(1)) if m else len(out),
                "candidate": c,
                "cost_s": float(cost or 0.0),
                "spent_s": total,
            }
        )
    data.spend, data.spend_source = out, "probe events in the result store"


def _provisional(data: RunData) -> list[dict[str, Any]]:
    """Per candidate, from the store alone: depth, seeds, spend, last values, a decay fit."""
    cost: dict[str, float] = {}
    for r in data.spend:
        cost[r["candidate"]] = cost.get(r["candidate"], 0.0) + (r["cost_s"] if math.isfinite(r["cost_s"]) else 0.0)
    names = sorted(set(data.curves) | set(data.probe_counts))
    out = []
    for name in names:
        cc = data.curves.get(name)
        c, U = u_curve(cc) if cc is not None else (np.zeros(0), np.zeros(0))
        fit = fit_decay(c, U, n_boot=0) if c.size >= 3 else None
        last = [float(v[-1]) for _, v in cc.seeds.values() if v.size] if cc is not None else []
        depth = min((float(st[-1]) for st, _ in cc.seeds.values() if st.size), default=0.0) if cc is not None else 0.0
        pc = data.probe_counts.get(name, {})
        out.append(
            {
                "candidate": name,
                "seeds": len(cc.seeds) if cc is not None else 0,
                "probe_steps": depth,
                "probe_cost_s": cost.get(name, 0.0),
                "probes_finished": pc.get("finished", 0),
                "probes_failed": pc.get("failed", 0),
                "probes_open": pc.get("started", 0),
                "last_mean": float(np.mean(last)) if last else float("nan"),
                "last_sd": float(np.std(last, ddof=1)) if len(last) > 1 else float("nan"),
                "L_int": fit.L_int if fit is not None else float("nan"),
                "K": fit.K if fit is not None else float("nan"),
                "alpha": fit.alpha if fit is not None else float("nan"),
                "c_star": float("nan"),
                "regime": "Undetermined",
            }
        )
    return out
