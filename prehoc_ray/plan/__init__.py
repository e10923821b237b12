"""The portfolio plan's files (plan.parquet, plan.json) from candidates.parquet and the spec.

The decision rules live in prehoc_ray.core.decisions (pure numpy/scipy); this package does the
files. The end of a run (the plan, then the report that reads it) is
prehoc_ray.report.finish.write_outputs: the report depends on the plan, not the other way.
"""

from __future__ import annotations

from prehoc_ray.plan.outputs import (
    CANDIDATES_FILE,
    PLAN_COLUMNS,
    PLAN_JSON,
    PLAN_PARQUET,
    PlanOutputs,
    build_plan,
    read_candidates,
    write_plan,
)

__all__ = [
    "CANDIDATES_FILE",
    "PLAN_COLUMNS",
    "PLAN_JSON",
    "PLAN_PARQUET",
    "PlanOutputs",
    "build_plan",
    "read_candidates",
    "write_plan",
]
