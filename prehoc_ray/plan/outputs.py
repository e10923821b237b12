"""plan.parquet / plan.json from a run directory's candidates.parquet (rules: core/decisions.py)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from prehoc_ray.core.decisions import Plan, PlanSettings, make_plan
from prehoc_ray.io import write_json_atomic, write_table
from prehoc_ray.io.run_dir import CANDIDATES as CANDIDATES_FILE
from prehoc_ray.io.run_dir import PLAN_JSON, PLAN_PARQUET
from prehoc_ray.spec.job import JobSpec

# The columns first (in its order), then what the plan adds to explain them.
PLAN_SCHEMA = pa.schema(
    [
        ("candidate", pa.string()),
        ("task", pa.string()),
        ("model", pa.string()),
        ("regime", pa.string()),
        ("predicted_final", pa.float64()),
        ("predicted_std", pa.float64()),
        ("lower", pa.float64()),
        ("upper", pa.float64()),
        ("probe_steps", pa.int64()),
        ("probe_cost_s", pa.float64()),
        ("full_cost_s", pa.float64()),
        ("L_int", pa.float64()),
        ("K", pa.float64()),
        ("alpha", pa.float64()),
        ("c_star", pa.float64()),
        ("decision", pa.string()),
        ("reason", pa.string()),
        ("config", pa.string()),
        ("baseline", pa.float64()),
        ("p_beat", pa.float64()),  # P(beats the baseline), or P(beats the task's runner-up) without one
        ("risk_adjusted", pa.float64()),  # one-sided bound at plan.confidence (the ranking score)
        ("predictor", pa.string()),  # where the prediction comes from: "probes", or "history" (past runs)
        ("p_best", pa.float64()),  # P(best in its task) under the engine's beliefs
        ("probe_value", pa.float64()),  # expected regret reduction per device-second of its next extension
        ("L_eval", pa.float64()),  # the evaluation set's sampling variance of the metric (part of L_int)
        ("wanted_cost_s", pa.float64()),  # device-seconds of the probing the engine would buy it next (null: none)
    ]
)
PLAN_COLUMNS = tuple(PLAN_SCHEMA.names)
# Metrics that are proportions (runner/evaluation.py): no final lies outside [0, 1], so an
# interval reaching past that says nothing more than [0, 1] does and is shown clipped to it.
METRIC_RANGE = {"accuracy": (0.0, 1.0), "exact_match": (0.0, 1.0)}


@dataclass(frozen=True)
class PlanOutputs:
    plan: Plan
    rows: list[dict[str, Any]]  # plan.parquet's rows
    totals: dict[str, Any]
    parquet: Path
    json: Path
    report_html: Path | None = None
    report_md: Path | None = None
    report_error: str | None = None  # the plan is written even when the report fails


def _num(v: Any) -> float:
    try:
        return float(v) if v is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def read_candidates(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / CANDIDATES_FILE
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: no candidates table (the run has not finished); `prehoc-ray report` shows what the store holds"
        )
    return pq.read_table(path).to_pylist()


def _with_costs(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """full_cost_s, filled in from cost_per_step_s x full_steps when the driver left it out."""
    out = []
    for r in rows:
        r = dict(r)
        if not math.isfinite(_num(r.get("full_cost_s"))):
            r["full_cost_s"] = _num(r.get("cost_per_step_s")) * _num(r.get("full_steps"))
        if not r.get("task"):
            r["task"] = str(r.get("candidate", "")).split(":")[0]
        if not r.get("model"):
            parts = str(r.get("candidate", "")).split(":")
            r["model"] = parts[1] if len(parts) > 1 else ""
        out.append(r)
    return out


def plan_settings(spec: JobSpec) -> PlanSettings:
    return PlanSettings(
        mode=spec.plan.mode,
        confidence=spec.plan.confidence,
        baselines=dict(spec.plan.baselines),
        full_budget_s=spec.budget.full_finetune_seconds,
    )


def build_plan(
    candidates: Sequence[Mapping[str, Any]], spec: JobSpec
) -> tuple[Plan, list[dict[str, Any]], dict[str, Any]]:
    """The plan, its rows (PLAN_COLUMNS) and its totals for a candidates table and a spec."""
    rows = _with_costs(candidates)
    plan = make_plan(rows, plan_settings(spec))
    metric = next((str(r["metric"]) for r in rows if r.get("metric")), "metric")
    lo_bound, hi_bound = METRIC_RANGE.get(metric, (-math.inf, math.inf))
    out = []
    for r, d in zip(rows, plan.decisions):
        out.append(
            {
                "candidate": str(r.get("candidate", "")),
                "task": str(r["task"]),
                "model": str(r["model"]),
                "regime": str(r.get("regime") or ""),
                "predicted_final": _num(r.get("predicted_final")),
                "predicted_std": _num(r.get("predicted_std")),
                "lower": max(_num(r.get("lower")), lo_bound),  # NaN stays NaN
                "upper": min(_num(r.get("upper")), hi_bound),
                "probe_steps": int(_num(r.get("probe_steps"))) if math.isfinite(_num(r.get("probe_steps"))) else 0,
                "probe_cost_s": _num(r.get("probe_cost_s")),
                "full_cost_s": _num(r.get("full_cost_s")),
                "L_int": _num(r.get("L_int")),
                "L_eval": _num(r.get("L_eval")),
                "K": _num(r.get("K")),
                "alpha": _num(r.get("alpha")),
                "c_star": _num(r.get("c_star")),
                "decision": d.decision,
                "reason": d.reason,
                "config": str(r.get("config") or ""),
                "baseline": d.bar,
                "p_beat": d.p_beat,
                "risk_adjusted": d.score,
                "predictor": str(r.get("predictor") or "probes"),
                "p_best": _num(r.get("p_best")),
                "probe_value": _num(r.get("probe_value")),
                "wanted_cost_s": _num(r.get("wanted_cost_s")),
            }
        )
    totals = {
        **plan.totals(),
        "probe_budget_s": spec.budget.probe_seconds,
        # one-time set-up of the probe workers (model, data, first engine build), not charged
        # to the probe budget: a full fine-tune pays it too (runner/probe.py ProbeResult)
        "setup_s": float(sum(v for r in rows if math.isfinite(v := _num(r.get("setup_s"))))),
        "mode": spec.plan.mode,
        "confidence": spec.plan.confidence,
        "baselines": dict(spec.plan.baselines),
        "metric": metric,
    }
    return plan, out, totals


def write_plan(
    run_dir: str | Path, spec: JobSpec, candidates: Sequence[Mapping[str, Any]] | None = None
) -> PlanOutputs:
    """Write plan.parquet and plan.json (atomically) into `run_dir`."""
    run_dir = Path(run_dir)
    cands = read_candidates(run_dir) if candidates is None else list(candidates)
    plan, rows, totals = build_plan(cands, spec)
    # Missing numbers are null in the Parquet file, as in predictions.parquet: a NaN would sort
    # first in `ORDER BY predicted_final DESC` (DuckDB, Spark) and read as a value.
    nulls = [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()} for r in rows]
    table = pa.Table.from_pylist(nulls, schema=PLAN_SCHEMA) if rows else PLAN_SCHEMA.empty_table()
    write_table(table, run_dir / PLAN_PARQUET)
    doc = {
        "job": spec.name,
        "spec_hash": spec.spec_hash(),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "rules": "prehoc_ray.core.decisions (module docstring)",
        "totals": totals,
        "candidates": rows,
    }
    if spec.truth is not None:
        doc["recorded_truth"] = recorded_truth(rows, spec, totals, previous=_previous_truth(run_dir / PLAN_JSON))
    write_json_atomic(run_dir / PLAN_JSON, doc)
    return PlanOutputs(plan, rows, totals, run_dir / PLAN_PARQUET, run_dir / PLAN_JSON)


def _previous_truth(path: Path) -> dict[str, float]:
    """The recorded results an earlier plan of this run compared against (none: empty)."""
    try:
        rec = json.loads(path.read_text()).get("recorded_truth") or {}
        return {str(c["candidate"]): float(c["true_final"]) for c in rec.get("candidates", [])}
    except (OSError, ValueError, TypeError, KeyError, AttributeError):
        return {}


def recorded_truth(
    rows: Sequence[Mapping[str, Any]],
    spec: JobSpec,
    totals: Mapping[str, Any],
    previous: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """plan.json's `recorded_truth`: the plan next to spec.truth (plan/truth.py), with its
    sentences. A source that cannot be read now (a relative `truth:` re-read from the run
    directory's copy of the spec, a moved file) falls back to the results an earlier plan of
    this run recorded; without those it is an `error` there. It never costs the plan."""
    from prehoc_ray.io.truth import load_truth
    from prehoc_ray.plan.truth import compare_to_truth, truth_lines

    source = str(spec.truth)
    try:
        truth = load_truth(spec.truth)
    except (OSError, ValueError) as exc:
        if not previous:
            return {"source": source, "error": str(exc)}
        truth, source = dict(previous), f"{source} (unreadable now: the results recorded by this run's earlier plan)"
    try:
        cmp = compare_to_truth(rows, truth, spec.plan.mode, source=source)
        return cmp.to_json() | {"lines": truth_lines(cmp, _num(totals.get("saving_s")))}
    except Exception as exc:  # a comparison is a courtesy: the plan is written whatever happens here
        return {"source": source, "error": f"{type(exc).__name__}: {exc}"}
