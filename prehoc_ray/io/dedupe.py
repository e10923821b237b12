"""Deduplication rules of the result store, as pure functions on Arrow tables.

Why: Ray retries tasks and restarts actors, so the same probe can report the same step more
than once (a retried attempt, or a compaction interrupted before it removed its inputs).
Counting such a point twice would shrink the measured seed dispersion, so every read goes
through these rules. Both are idempotent: applying one twice changes nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prehoc_ray.io.schemas import ATTEMPT, WRITTEN_NS
from prehoc_ray.types import CANDIDATE, PROBE_ID, SEED, STEP


def _codes(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """Integer code per row such that equal values share a code (nulls share one too)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if pa.types.is_integer(column.type):
        ints = column.cast(pa.int64()).fill_null(np.iinfo(np.int64).min)
        return np.unique(ints.to_numpy(zero_copy_only=False), return_inverse=True)[1].ravel()
    if pa.types.is_floating(column.type):
        values = column.cast(pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
        return np.unique(values, return_inverse=True)[1].ravel()
    encoded = pc.dictionary_encode(column)
    return encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)


def _numbers(table: pa.Table, name: str) -> np.ndarray:
    """Sort key from a numeric column; null sorts first. Integers stay integers (write times
    in ns do not fit a float exactly)."""
    if name not in table.column_names:
        return np.zeros(table.num_rows, dtype=np.int64)
    column = table.column(name)
    if pa.types.is_integer(column.type):
        filled = column.cast(pa.int64()).fill_null(np.iinfo(np.int64).min)
        return filled.to_numpy().astype(np.int64)
    if not pa.types.is_floating(column.type):
        return np.zeros(table.num_rows, dtype=np.int64)  # not an order (text after a conflict)
    return column.cast(pa.float64(), safe=False).fill_null(-np.inf).to_numpy()


def keep_latest(table: pa.Table, key: Sequence[str], rank: Sequence[np.ndarray] = ()) -> pa.Table:
    """One row per distinct `key`: the one with the largest (rank..., attempt, write time,
    position); survivors keep their original relative order."""
    n = table.num_rows
    if n < 2:
        return table
    position = np.arange(n)
    order_keys = [position, _numbers(table, WRITTEN_NS), _numbers(table, ATTEMPT)]
    order_keys += list(reversed(rank))
    key_codes = [_codes(table.column(name)) for name in key]
    order = np.lexsort(tuple(order_keys) + tuple(reversed(key_codes)))
    sorted_codes = np.stack([codes[order] for codes in key_codes])
    last_of_run = np.ones(n, dtype=bool)
    last_of_run[:-1] = (sorted_codes[:, 1:] != sorted_codes[:, :-1]).any(axis=0)
    keep = np.sort(order[last_of_run])
    if len(keep) == n:
        return table
    return table.take(pa.array(keep))


def dedupe_points(table: pa.Table) -> pa.Table:
    """One row per (probe_id, step): the latest write of the latest attempt."""
    return keep_latest(table, (PROBE_ID, STEP))


def dedupe_trajectory(table: pa.Table, finished_ids: Collection[str] | None = None) -> pa.Table:
    """One row per (candidate, seed, step) across probes, as the trajectory format demands:
    prefer a point from a finished probe (when `finished_ids` is given), then the latest
    attempt and write."""
    table = dedupe_points(table)
    rank: list[np.ndarray] = []
    if finished_ids is not None and table.num_rows:
        finished = pc.is_in(table.column(PROBE_ID), value_set=pa.array(sorted(finished_ids), pa.string()))
        rank.append(finished.to_numpy(zero_copy_only=False).astype(np.float64))
    return keep_latest(table, (CANDIDATE, SEED, STEP), rank)
