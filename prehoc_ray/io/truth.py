"""Recorded full fine-tune results of a job's candidates (spec `truth:`), to judge a plan by.

Two forms are read:
- a recording directory as benchmarks/record_demo.py writes it: `curves.parquet` with rows of
  kind `full`; a candidate's result is the value at the last step of its full run;
- a table (.parquet or .csv) with a `candidate` column and a `final` column: one result per
  candidate (what a team's finished fine-tunes of the same portfolio reported).
"""

from __future__ import annotations

import math
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from prehoc_ray.io.errors import TruthError, show_text

RECORDING_TABLE = "curves.parquet"


def _finite(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _read(path: Path) -> pa.Table:
    try:
        if path.suffix.lower() == ".csv":
            return pacsv.read_csv(path)
        return pq.read_table(path)
    except (OSError, pa.ArrowInvalid) as exc:
        raise TruthError(
            f"{path}: cannot read it as {'CSV' if path.suffix.lower() == '.csv' else 'Parquet'}: {show_text(exc, 120)}"
        ) from None


def _need(path: Path, table: pa.Table, cols: tuple[str, ...]) -> None:
    missing = [c for c in cols if c not in table.column_names]
    if missing:
        raise TruthError(
            f"{path}: no column {', '.join(missing)}; expected {', '.join(cols)} "
            f"(found {', '.join(show_text(c) for c in table.column_names[:8]) or 'none'})"
        )


def load_truth(path: str | Path) -> dict[str, float]:
    """candidate id -> its recorded full fine-tune result. Raises TruthError (one line)."""
    path = Path(path)
    if path.is_dir():
        table_path = path / RECORDING_TABLE
        if not table_path.is_file():
            raise TruthError(
                f"{path}: a directory without {RECORDING_TABLE}; expected a recording "
                "(benchmarks/record_demo.py) or a .parquet/.csv table with candidate, final"
            )
        t = _read(table_path)
        _need(table_path, t, ("candidate", "kind", "step", "value"))
        last: dict[str, tuple[float, float]] = {}
        for cid, kind, step, value in zip(*(t.column(c).to_pylist() for c in ("candidate", "kind", "step", "value"))):
            if kind != "full" or not _finite(step) or not _finite(value):
                continue
            if cid not in last or step > last[cid][0]:
                last[cid] = (float(step), float(value))
        out = {str(c): v for c, (_, v) in last.items()}
        if not out:
            raise TruthError(f"{table_path}: no rows of kind 'full': the recording holds no full fine-tune")
    elif path.is_file():
        t = _read(path)
        _need(path, t, ("candidate", "final"))
        out = {}
        for k, (cid, final) in enumerate(zip(t.column("candidate").to_pylist(), t.column("final").to_pylist())):
            try:
                v = float(final)
            except (TypeError, ValueError):
                v = float("nan")
            if str(cid) in out:
                raise TruthError(
                    f"{path}: row {k + 1}: candidate {show_text(cid)} appears twice; expected one final each"
                )
            if cid is None or not math.isfinite(v):
                raise TruthError(
                    f"{path}: row {k + 1}: expected a candidate id and a finite final, "
                    f"got {show_text(cid)!s}, {show_text(final)!s}"
                )
            out[str(cid)] = v
    else:
        raise TruthError(
            f"{path}: not found; expected a recording directory or a .parquet/.csv table with candidate, final"
        )
    return out
