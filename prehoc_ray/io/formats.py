"""Table files by extension: read one into a pyarrow.Table, write one atomically.

Readers raise TrajectoryError with one-line messages; the column-level checks live in
trajectory_parse.py. CSV cells that are empty or spelled NA/null are nulls, but `nan`/`inf`
are kept as floats so the validator can say "got nan" instead of "got an empty cell".
"""

from __future__ import annotations

import io
import json
import math
import re
from enum import Enum
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from prehoc_ray.io.atomic import write_with
from prehoc_ray.io.errors import TrajectoryError, show_text
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
# A trajectory row is flat (a few nested values at most, carried along as extra columns).
# Deeper JSON is refused before any parser sees it: pyarrow's reader crashes (SIGSEGV) on
# ~100,000 nested objects and the stdlib's raises RecursionError.
MAX_JSON_DEPTH = 64
_SCAN_CHUNK = 1 << 20  # 1 MiB: the scan holds a few int64 arrays of this length
# pyarrow quotes the offending row after "Expected N columns, got M: "
# (and a cell after "invalid value" when a late row breaks the type inferred from the first
# block); messages never carry the file's contents (it may not be the file meant)
_ARROW_ROW_TEXT = re.compile(r"(Expected \d+ columns, got \d+)\s*:.*$", re.S)
_ARROW_CELL_TEXT = re.compile(r"(invalid value)\s*'.*$", re.S)


def one_line(text: object) -> str:
    """Collapse an exception text to one line (pyarrow's messages span several)."""
    return " ".join(str(text).split())


def _reader_message(exc: BaseException) -> str:
    """A reader's error in one line, without the file text some of them quote."""
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte offset {exc.start})"
    if isinstance(exc, RecursionError):
        return f"nested more than {MAX_JSON_DEPTH} levels deep"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = _ARROW_CELL_TEXT.sub(r"\1", _ARROW_ROW_TEXT.sub(r"\1", one_line(exc)))
    return text if len(text) <= 200 else text[:197] + "..."


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
            table = _read_csv(path)
        elif fmt is FileFormat.PARQUET:
            table = pq.read_table(path)
        else:
            table = _read_json(path)
        _check_utf8(table, path)
        return table
    except TrajectoryError:
        raise
    except (pa.ArrowException, OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise TrajectoryError(f"{path}: cannot read as {fmt.value}: {_reader_message(exc)}") from exc


def _check_utf8(table: pa.Table, path: Path) -> None:
    """pyarrow's JSON reader (and a foreign Parquet writer) can hand over text columns that are
    not UTF-8; they would fail later, far from the file. Name the column and the first row."""
    try:
        table.validate(full=True)
        return
    except pa.ArrowInvalid:
        pass
    for name in table.column_names:
        column = table.column(name)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            continue
        for row, raw in enumerate(column.cast(pa.binary(), safe=False).to_pylist(), start=1):
            if raw is None:
                continue
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError:
                raise TrajectoryError(f"{path}: column '{show_text(name)}' row {row}: expected UTF-8 text") from None
    raise TrajectoryError(f"{path}: cannot read: the table is not valid (not UTF-8 text, or inconsistent)")


def _read_csv(path: Path) -> pa.Table:
    convert = pa_csv.ConvertOptions(
        column_types={c: pa.string() for c in _STRING_COLUMNS},  # absent ones are ignored
        null_values=_CSV_NULLS,
        strings_can_be_null=False,
    )
    bad: list[tuple[int | None, int, int]] = []  # (line, expected columns, found) of the first bad row

    def invalid_row(row: Any) -> str:
        if not bad:
            bad.append((row.number, row.expected_columns, row.actual_columns))
        return "skip"

    # quoted ids may hold newlines (our own writer quotes them): parse them as values
    parse = pa_csv.ParseOptions(newlines_in_values=True, invalid_row_handler=invalid_row)
    table = pa_csv.read_csv(path, parse_options=parse, convert_options=convert)
    if bad and bad[0][0] is None:
        # the threaded reader does not know line numbers: read again, in order, to name it
        bad.clear()
        pa_csv.read_csv(
            path, read_options=pa_csv.ReadOptions(use_threads=False), parse_options=parse, convert_options=convert
        )
    if bad:
        line, expected, found = bad[0]
        where = f"line {line}" if line is not None else "a row"
        raise TrajectoryError(
            f"{path}: cannot read as csv: {where}: expected {expected} cells (as many as the header has), got {found}"
        )
    return table


def _read_json(path: Path) -> pa.Table:
    """pyarrow.json first (fast); the stdlib fallback handles what it refuses: a JSON array
    file, or a column whose values change type (reported later with its row number)."""
    with open(path, "rb") as handle:
        head = handle.read(4096).lstrip()
    _check_json_depth(path)
    if not head.startswith(b"["):
        try:
            return pa_json.read_json(path)
        except pa.ArrowInvalid:
            pass
    return _read_json_slow(path, array=head.startswith(b"["))


def _check_json_depth(path: Path) -> None:
    """Refuse JSON nested deeper than MAX_JSON_DEPTH, naming the line, before parsing.

    A streaming scan with numpy (a few passes over 16 MiB chunks): brackets inside strings do
    not count, a quote preceded by an odd run of backslashes does not end a string."""
    depth = 0
    in_string = False
    backslashes = 0  # the run of backslashes that ended the previous chunk
    lines = 0  # newlines before this chunk
    with open(path, "rb") as handle:
        while chunk := handle.read(_SCAN_CHUNK):
            b = np.frombuffer(chunk, dtype=np.uint8)
            idx = np.arange(b.size)
            is_bs = b == 0x5C
            # length of the backslash run ending just before each byte
            last_other = np.maximum.accumulate(np.where(is_bs, -1, idx))
            run_before = np.empty(b.size, dtype=np.int64)
            run_before[0] = backslashes
            if b.size > 1:
                prev_other = last_other[:-1]
                run_before[1:] = np.where(prev_other < 0, idx[1:] + backslashes, idx[1:] - 1 - prev_other)
            quote = (b == 0x22) & (run_before % 2 == 0)
            # inside a string after an odd number of unescaped quotes (counted from the chunk start)
            inside = (np.cumsum(quote) - quote + in_string) % 2 == 1
            step = np.where(inside, 0, (np.isin(b, (0x5B, 0x7B)).astype(np.int8) - np.isin(b, (0x5D, 0x7D))))
            levels = depth + np.cumsum(step, dtype=np.int64)
            if levels.size and levels.max() > MAX_JSON_DEPTH:
                at = int(np.argmax(levels > MAX_JSON_DEPTH))
                line = lines + int(np.count_nonzero(b[:at] == 0x0A)) + 1
                raise TrajectoryError(
                    f"{path}: line {line}: JSON nested more than {MAX_JSON_DEPTH} levels deep; "
                    "expected one flat object per row"
                )
            depth = int(levels[-1])
            in_string = bool((int(np.count_nonzero(quote)) + in_string) % 2)
            backslashes = int(run_before[-1] + 1) if is_bs[-1] else 0
            lines += int(np.count_nonzero(b == 0x0A))


def _read_json_slow(path: Path, *, array: bool) -> pa.Table:
    text = path.read_text(encoding="utf-8")
    if array:
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TrajectoryError(f"{path}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
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
                    f"{path}: line {line_no}: invalid JSON ({exc.msg}); expected one JSON object per line"
                ) from exc
    for row_no, row in enumerate(rows, start=1):
        if not isinstance(row, dict):
            raise TrajectoryError(f"{path}: row {row_no}: expected a JSON object, got {type(row).__name__}")
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
                [None if v is None else (v if isinstance(v, str) else json.dumps(v)) for v in values],
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
