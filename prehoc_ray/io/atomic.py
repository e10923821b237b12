"""Crash-safe file writes: write a temporary sibling, fsync it, rename it over the target.

A reader sees either the old file or the complete new one, never a torn write; a crash
leaves at most a hidden `.<name>.<uuid>.tmp` file that every reader in this package skips.
The temporary file lives in the target's directory because os.replace is atomic only within
one file system.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

TMP_SUFFIX = ".tmp"


def is_temporary(path: Path) -> bool:
    """True for files a writer may have left half-written (readers must skip them)."""
    return path.name.startswith(".") or path.name.endswith(TMP_SUFFIX)


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in `directory` durable (no-op where directories can't be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - e.g. Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary sibling of `path` for writing; on clean exit it replaces `path`.

    On an exception the temporary file is removed and `path` is left untouched.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{uuid.uuid4().hex}{TMP_SUFFIX}")
    try:
        with open(tmp, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Replace `path` with `data` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)


def write_with(path: str | Path, writer: Callable[[IO[bytes]], None]) -> None:
    """Run `writer(binary_file)` against a temporary file, then move it to `path` atomically."""
    with atomic_open(path, "wb") as handle:
        writer(handle)


def _json_safe(obj: Any) -> Any:
    # JSON has no NaN/inf; writing them would produce a file other tools refuse to parse.
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write `obj` as pretty JSON atomically (NaN/inf become null so the file stays valid JSON)."""
    text = json.dumps(_json_safe(obj), indent=2, sort_keys=True, allow_nan=False)
    write_bytes_atomic(path, (text + "\n").encode("utf-8"))
