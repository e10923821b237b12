"""Arrow schemas of the result store: probe points and probe lifecycle events.

Fixed types for the known columns keep every fragment's schema identical in the common case,
so reading 2k fragments never has to reconcile int64 in one file with double in another.
Columns starting with '_' are bookkeeping: written by the store, never returned to callers.
"""

from __future__ import annotations

import pyarrow as pa

from prehoc_ray.types import (
    CANDIDATE,
    EVAL_LOSS,
    GRAD_NORM,
    PROBE_ID,
    SEED,
    STEP,
    TOKENS,
    TRAIN_LOSS,
    VALUE,
    WALL_S,
)

WRITTEN_NS = "_written_ns"  # wall-clock ns of the append; orders retries ("latest wins")
EVENT_ID = "event_id"
ATTEMPT = "attempt"
STATUS = "status"
REASON = "reason"
COST_S = "cost_s"
START_STEP = "start_step"
TARGET_STEP = "target_step"

PROBE_STATUSES = ("started", "finished", "failed")

POINT_FIELDS = [
    pa.field(PROBE_ID, pa.string(), nullable=False),
    pa.field(CANDIDATE, pa.string(), nullable=False),
    pa.field(SEED, pa.int64(), nullable=False),
    pa.field(STEP, pa.float64(), nullable=False),
    pa.field(VALUE, pa.float64()),
    pa.field(EVAL_LOSS, pa.float64()),
    pa.field(TRAIN_LOSS, pa.float64()),
    pa.field(GRAD_NORM, pa.float64()),
    pa.field(WALL_S, pa.float64()),
    pa.field(TOKENS, pa.float64()),
]
POINT_SCHEMA = pa.schema(POINT_FIELDS)
POINT_REQUIRED = (PROBE_ID, CANDIDATE, SEED, STEP, VALUE)

EVENT_SCHEMA = pa.schema(
    [
        pa.field(EVENT_ID, pa.string(), nullable=False),
        pa.field(PROBE_ID, pa.string(), nullable=False),
        pa.field(CANDIDATE, pa.string(), nullable=False),
        pa.field(SEED, pa.int64(), nullable=False),
        pa.field(START_STEP, pa.float64(), nullable=False),
        pa.field(TARGET_STEP, pa.float64(), nullable=False),
        pa.field(STATUS, pa.string(), nullable=False),
        pa.field(REASON, pa.string()),
        pa.field(COST_S, pa.float64(), nullable=False),
        pa.field(ATTEMPT, pa.int64(), nullable=False),
    ]
)


def public_columns(table: pa.Table) -> pa.Table:
    """Drop the store's bookkeeping columns."""
    keep = [name for name in table.column_names if not name.startswith("_")]
    return table.select(keep)
