"""Table files by extension: read one into a pyarrow.Table, write one atomically.

Readers raise TrajectoryError with one-line messages; the column-level checks live in
trajectory_parse.py. CSV cells that are empty or spelled NA/null are nulls, but `nan`/`inf`
are kept as floats so the validator can say "got nan" instead of "got an empty cell".
"""

from __future__ import annotations

import io
import json
import math
from enum import Enum
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from prehoc_ray.io.atomic import write_with
from prehoc_ray.io.errors import TrajectoryError
from prehoc_ray.types import CANDIDATE, GROUP, PROBE_ID


class FileFormat(str, Enum):
    CSV = "csv"
    PARQUET = "parquet"
    JSONL = "jsonl"


_EXTENSIONS = {
    ".csv": FileFormat.CSV,
    ".parquet": FileFormat.PARQUET,
    ".pq": FileFormat.PARQUET,
    ".jsonl": FileFormat.JSONL,
    ".ndjson": FileFormat.JSONL,
    ".json": FileFormat.JSONL,
}
SUPPORTED = ", ".join(_EXTENSIONS)

# Identifier columns stay strings even when every value looks like a number ("001" != 1).
_STRING_COLUMNS = (CANDIDATE, GROUP, PROBE_ID)
_CSV_NULLS = ["", "NA", "N/A", "null", "NULL", "None"]


def one_line(text: object) -> str:
    """Collapse an exception text to one line (pyarrow's messages span several)."""
    return " ".join(str(text).split())


def detect_format(path: Path) -> FileFormat:
    """The file format implied by the extension; unknown ones are a user error, not a guess."""
    fmt = _EXTENSIONS.get(path.suffix.lower())
    if fmt is None:
        shown = path.suffix or "(none)"
        raise TrajectoryError(f"{path}: unknown file type '{shown}'; expected one of {SUPPORTED}")
    return fmt


def read_table_file(path: str | Path) -> pa.Table:
    """Read a CSV, Parquet or JSON Lines file into a pyarrow.Table (no column checks)."""
    path = Path(path)
    fmt = detect_format(path)
    if not path.exists():
        raise TrajectoryError(f"{path}: file not found")
    if path.is_dir():
        raise TrajectoryError(f"{path}: is a directory, expected a {fmt.value} file")
    try:
        if fmt is FileFormat.CSV:
            return _read_csv(path)
        if fmt is FileFormat.PARQUET:
            return pq.read_table(path)
        return _read_json(path)
    except TrajectoryError:
        raise
    except (pa.ArrowException, OSError, UnicodeDecodeError, ValueError) as exc:
        raise TrajectoryError(f"{path}: cannot read as {fmt.value}: {one_line(exc)}") from exc


def _read_csv(path: Path) -> pa.Table:
    convert = pa_csv.ConvertOptions(
        column_types={c: pa.string() for c in _STRING_COLUMNS},  # absent ones are ignored
        null_values=_CSV_NULLS,
        strings_can_be_null=False,
    )
    # quoted ids may hold newlines (our own writer quotes them): parse them as values
    parse = pa_csv.ParseOptions(newlines_in_values=True)
    return pa_csv.read_csv(path, parse_options=parse, convert_options=convert)


def _read_json(path: Path) -> pa.Table:
    """pyarrow.json first (fast); the stdlib fallback handles what it refuses: a JSON array
    file, or a column whose values change type (reported later with its row number)."""
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip()
    if not head.startswith(b"["):
        try:
            return pa_json.read_json(path)
        except pa.ArrowInvalid:
            pass
    return _read_json_slow(path, array=head.startswith(b"["))


def _read_json_slow(path: Path, *, array: bool) -> pa.Table:
    text = path.read_text(encoding="utf-8")
    if array:
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TrajectoryError(f"{path}: invalid JSON: {exc}") from exc
        if not isinstance(rows, list):
            raise TrajectoryError(f"{path}: expected a JSON array of objects")
    else:
        rows = []
        for line_no, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise TrajectoryError(
                    f"{path}: line {line_no}: invalid JSON ({exc.msg}); "
                    "expected one JSON object per line"
                ) from exc
    for row_no, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise TrajectoryError(
                f"{path}: row {row_no}: expected a JSON object, got {type(row).__name__}"
            )
    return rows_to_table(rows)


def rows_to_table(rows: list[dict[str, Any]]) -> pa.Table:
    """Column-wise table from dicts; a column of mixed types becomes strings so the validator
    can name the first row that is not what it expects instead of failing on the whole file."""
    names: dict[str, None] = {}
    for row in rows:
        names.update(dict.fromkeys(row))
    columns = {}
    for name in names:
        values = [row.get(name) for row in rows]
        try:
            columns[name] = pa.array(values)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            columns[name] = pa.array(
                [
                    None if v is None else (v if isinstance(v, str) else json.dumps(v))
                    for v in values
                ],
                type=pa.string(),
            )
    return pa.table(columns) if columns else pa.table({})


def write_table(table: pa.Table, path: str | Path) -> None:
    """Write `table` as Parquet, CSV or JSON Lines (by extension), atomically.

    The file appears complete or not at all, so a crash never leaves a truncated table that a
    later `analyze` would misread.
    """
    path = Path(path)
    fmt = detect_format(path)
    if fmt is FileFormat.PARQUET:
        write_with(path, lambda f: pq.write_table(table, f))
    elif fmt is FileFormat.CSV:
        write_with(path, lambda f: pa_csv.write_csv(table, f))
    else:
        write_with(path, lambda f: _write_jsonl(table, f))


def _write_jsonl(table: pa.Table, handle: IO[bytes]) -> None:
    buffer = io.TextIOWrapper(handle, encoding="utf-8", newline="\n", write_through=True)
    for batch in table.to_batches(max_chunksize=8192):
        for row in batch.to_pylist():
            clean = {k: _json_value(v) for k, v in row.items()}
            buffer.write(json.dumps(clean, allow_nan=False, default=str))
            buffer.write("\n")
    buffer.flush()
    buffer.detach()  # leave `handle` open: atomic_open fsyncs and closes it


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
