"""Turn what a probe reports (dicts of plain values) into typed Arrow tables for the store.

Checked here, at write time, because an error raised inside the probe that produced the row
can be fixed; a bad row found at read time, hours later, cannot.
"""

from __future__ import annotations

import math
import numbers
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa

from prehoc_ray.io.schemas import (
    ATTEMPT,
    EVENT_SCHEMA,
    POINT_FIELDS,
    POINT_REQUIRED,
    PROBE_STATUSES,
    WRITTEN_NS,
)
from prehoc_ray.types import CANDIDATE, PROBE_ID, SEED, STEP

_POINT_TYPES = {f.name: f.type for f in POINT_FIELDS}
_NUMERIC_KNOWN = {name for name, kind in _POINT_TYPES.items() if not pa.types.is_string(kind)}


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_point(i: int, row: Mapping[str, Any]) -> None:
    where = f"append: row {i + 1}"
    if not isinstance(row, Mapping):
        raise ValueError(f"{where}: expected a dict, got {type(row).__name__}")
    for name in POINT_REQUIRED:
        if name not in row or row[name] is None:
            raise ValueError(f"{where}: missing {name!r}; every point needs {', '.join(POINT_REQUIRED)}")
    for name in (PROBE_ID, CANDIDATE):
        if not isinstance(row[name], str) or not row[name]:
            raise ValueError(f"{where}: {name!r} must be a non-empty string, got {row[name]!r}")
    if not _is_int(row[SEED]):
        raise ValueError(f"{where}: 'seed' must be an integer, got {row[SEED]!r}")
    step = row[STEP]
    if not _is_number(step) or not math.isfinite(step) or step <= 0:
        raise ValueError(f"{where}: 'step' must be a finite number > 0, got {step!r}")
    attempt = row.get(ATTEMPT)
    if attempt is not None and (not _is_int(attempt) or attempt < 1):
        raise ValueError(f"{where}: 'attempt' must be an integer >= 1, got {attempt!r}")
    for name, value in row.items():
        if name.startswith("_"):
            raise ValueError(f"{where}: column {name!r}: names starting with '_' are reserved")
        if value is not None and not isinstance(value, (str, bool, numbers.Real)):
            raise ValueError(
                f"{where}: column {name!r} must be a number, text, bool or None, got {type(value).__name__}"
            )
        if name in _NUMERIC_KNOWN and value is not None and not _is_number(value):
            raise ValueError(f"{where}: column {name!r} must be a number, got {value!r}")


def _normalise(array: pa.Array) -> pa.Array:
    """One physical type per kind, so fragments written by different probes agree."""
    kind = array.type
    if pa.types.is_integer(kind):
        return array.cast(pa.int64())
    if pa.types.is_floating(kind):
        return array.cast(pa.float64())
    if pa.types.is_large_string(kind):
        return array.cast(pa.string())
    return array


def _known(values: list[Any], kind: pa.DataType) -> pa.Array:
    if pa.types.is_floating(kind):
        values = [None if v is None else float(v) for v in values]
    elif pa.types.is_integer(kind):
        values = [None if v is None else int(v) for v in values]
    return pa.array(values, type=kind)


def points_table(rows: Sequence[Mapping[str, Any]], written_ns: int) -> pa.Table:
    """Validated points as a table: the known columns with fixed types first, extra columns
    after them; a missing value is null."""
    for i, row in enumerate(rows):
        _check_point(i, row)
    names: dict[str, None] = dict.fromkeys(_POINT_TYPES)
    for row in rows:
        names.update(dict.fromkeys(row))
    columns: dict[str, pa.Array] = {}
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            if name in _POINT_TYPES:
                columns[name] = _known(values, _POINT_TYPES[name])
            else:
                columns[name] = _normalise(pa.array(values))
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            raise ValueError(f"append: column {name!r} mixes incompatible values ({exc})") from exc
    columns[WRITTEN_NS] = pa.array([written_ns] * len(rows), type=pa.int64())
    return pa.table(columns)


def event_table(
    *,
    probe_id: str,
    candidate: str,
    seed: int,
    start_step: float,
    target_step: float,
    status: str,
    reason: str | None,
    cost_s: float,
    attempt: int,
    written_ns: int,
) -> pa.Table:
    """One probe lifecycle event as a one-row table."""
    if status not in PROBE_STATUSES:
        raise ValueError(f"record_probe: status {status!r}: expected one of {', '.join(PROBE_STATUSES)}")
    if not isinstance(probe_id, str) or not probe_id:
        raise ValueError(f"record_probe: probe_id must be a non-empty string, got {probe_id!r}")
    if not isinstance(candidate, str) or not candidate:
        raise ValueError(f"record_probe: candidate must be a non-empty string, got {candidate!r}")
    if not _is_int(seed):
        raise ValueError(f"record_probe: seed must be an integer, got {seed!r}")
    if not _is_int(attempt) or attempt < 1:
        raise ValueError(f"record_probe: attempt must be an integer >= 1, got {attempt!r}")
    for name, value in (("start_step", start_step), ("target_step", target_step)):
        if not _is_number(value) or not math.isfinite(value) or value < 0:
            raise ValueError(f"record_probe: {name} must be a finite number >= 0, got {value!r}")
    if target_step < start_step:
        raise ValueError(f"record_probe: target_step {target_step} is before start_step {start_step}")
    if not _is_number(cost_s) or not math.isfinite(cost_s) or cost_s < 0:
        raise ValueError(f"record_probe: cost_s must be a finite number >= 0, got {cost_s!r}")
    if reason is not None and not isinstance(reason, str):
        raise ValueError(f"record_probe: reason must be text or None, got {type(reason).__name__}")
    row = {
        "event_id": uuid.uuid4().hex,
        PROBE_ID: probe_id,
        CANDIDATE: candidate,
        SEED: int(seed),
        "start_step": float(start_step),
        "target_step": float(target_step),
        "status": status,
        "reason": reason,
        "cost_s": float(cost_s),
        "attempt": int(attempt),
    }
    table = pa.Table.from_pylist([row], schema=EVENT_SCHEMA)
    return table.append_column(WRITTEN_NS, pa.array([written_ns], type=pa.int64()))
