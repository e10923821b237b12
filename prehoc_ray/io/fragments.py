"""A directory of immutable Parquet fragments: append by adding a file, never by editing one.

Why files and not one growing file: appends from many processes (Ray actors on several
hosts sharing a file system) need no lock, and a crash can only lose the append in flight,
never earlier data. Each fragment is written to a hidden temporary name, fsynced and renamed,
so a reader sees whole fragments only. Names sort by write time: `<ns>-<uuid>.parquet`, the
uuid making a collision between processes impossible even at the same nanosecond.

Compaction merges fragments into one file, which is made durable BEFORE the merged fragments
are unlinked: a crash in between leaves rows twice, never zero times; readers deduplicate,
and the next compaction drops the exact copies.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from prehoc_ray.io.atomic import fsync_dir, is_temporary, write_with
from prehoc_ray.io.dedupe import keep_latest
from prehoc_ray.io.errors import StoreError
from prehoc_ray.io.formats import one_line

SUFFIX = ".parquet"
_READ_RETRIES = 5

_seq_lock = threading.Lock()
_last_seq = 0


def next_sequence() -> int:
    """Wall-clock nanoseconds, strictly increasing within this process (the clock may step
    back; the order of one process's own writes must not)."""
    global _last_seq
    with _seq_lock:
        _last_seq = max(time.time_ns(), _last_seq + 1)
        return _last_seq


class FragmentDir:
    """Append-only set of Parquet fragments in one directory.

    Fragments are immutable, so what this object has read once it keeps: a later `read`
    only opens fragments it has not seen (a driver polling the store pays for new results,
    not for the whole history). A cached chunk is dropped when one of its files vanishes
    (another process compacted them into a new file, which is then read instead).
    """

    def __init__(self, directory: str | Path, identity: Sequence[str] = ()) -> None:
        """`identity`: columns that identify a row exactly; compaction keeps one copy of rows
        that agree on all of them (copies left by a crashed or concurrent compaction)."""
        self.directory = Path(directory)
        self.identity = tuple(identity)
        self._lock = threading.Lock()
        self._chunks: list[tuple[frozenset[str], pa.Table]] = []

    def write(self, table: pa.Table, *, sequence: int | None = None) -> Path:
        """Add `table` as one new fragment file; returns its path."""
        seq = next_sequence() if sequence is None else sequence
        path = self.directory / f"{seq:020d}-{uuid.uuid4().hex}{SUFFIX}"
        write_with(path, lambda handle: pq.write_table(table, handle))
        return path

    def files(self) -> list[Path]:
        """Complete fragments in name (= write) order; temporaries and foreign files skipped."""
        try:
            entries = os.scandir(self.directory)
        except FileNotFoundError:
            return []
        with entries:
            paths = [
                Path(e.path)
                for e in entries
                if e.name.endswith(SUFFIX) and e.is_file() and not is_temporary(Path(e.name))
            ]
        return sorted(paths, key=lambda p: p.name)

    def read(self) -> pa.Table | None:
        """All rows of all fragments, schemas unified (missing columns become null); None when
        there is no fragment. Retries when a concurrent compaction removes files under it."""
        last_error: Exception | None = None
        with self._lock:
            for _ in range(_READ_RETRIES):
                files = self.files()
                if not files:
                    self._chunks = []
                    return None
                try:
                    return self._read_cached(files)
                except (pa.ArrowException, OSError) as exc:
                    if all(f.exists() for f in files):
                        raise StoreError(f"{self.directory}: cannot read fragments: {one_line(exc)}") from exc
                    last_error = exc  # a file vanished (compacted): list again
        raise StoreError(
            f"{self.directory}: fragments kept disappearing while reading (a compaction loop?): {one_line(last_error)}"
        )

    def _read_cached(self, files: list[Path]) -> pa.Table:
        present = {f.name for f in files}
        self._chunks = [(names, t) for names, t in self._chunks if names <= present]
        known = set().union(*(names for names, _ in self._chunks))
        new = [f for f in files if f.name not in known]
        if new:
            self._chunks.append((frozenset(f.name for f in new), read_fragments(new)))
        tables = [t for _, t in self._chunks]
        if len(tables) == 1:
            return tables[0]
        try:
            return pa.concat_tables(tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            self._chunks = [(frozenset(present), _read_conflicting(files))]
            return self._chunks[0][1]

    def compact(self, min_fragments: int = 2) -> int:
        """Merge all current fragments into one; returns how many were merged (0 if fewer
        than `min_fragments`). Safe against concurrent appends (new files are not touched)
        and concurrent readers (they retry)."""
        files = self.files()
        if len(files) < max(min_fragments, 2):
            return 0
        try:
            table = read_fragments(files)
        except (pa.ArrowException, OSError):
            if all(f.exists() for f in files):
                raise
            return 0  # another process is compacting these files right now
        if self.identity:
            table = keep_latest(table, self.identity)
        # The merged file takes the newest merged fragment's sequence, so name order stays
        # write order for everything but appends that race with this compaction.
        last_seq = int(files[-1].name.split("-", 1)[0])
        merged = self.write(table, sequence=last_seq)  # durable (fsynced) before any unlink
        # unlink is latency-bound (~3 ms each on a journaled disk): overlap them
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda path: path.unlink(missing_ok=True), files))
        fsync_dir(self.directory)
        gone = {f.name for f in files}
        with self._lock:
            self._chunks = [(n, t) for n, t in self._chunks if not (n & gone)]
            self._chunks.append((frozenset({merged.name}), table))
        return len(files)


def read_fragments(files: list[Path]) -> pa.Table:
    """Read fragment files as one table through pyarrow.dataset (multithreaded), with the
    schemas unified permissively (int64 + double -> double, missing -> null)."""
    factory = ds.FileSystemDatasetFactory(pafs.LocalFileSystem(), [str(f) for f in files], ds.ParquetFileFormat())
    try:
        schema = factory.inspect(promote_options="permissive", fragments=None)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return _read_conflicting(files)
    return factory.finish(schema).to_table()


def _read_conflicting(files: list[Path]) -> pa.Table:
    """Slow path for a column that changed type across fragments (say a probe reported a
    string where others reported numbers): that column becomes text rather than the whole
    store becoming unreadable."""
    tables = [pq.read_table(f) for f in files]
    fields: dict[str, list[pa.Field]] = {}
    for table in tables:
        for field in table.schema:
            fields.setdefault(field.name, []).append(field)
    as_text = set()
    for name, same_name in fields.items():
        try:
            pa.unify_schemas([pa.schema([f]) for f in same_name], promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            as_text.add(name)
    fixed = []
    for table in tables:
        for name in as_text & set(table.column_names):
            i = table.column_names.index(name)
            table = table.set_column(i, name, table.column(name).cast(pa.string()))
        fixed.append(table)
    return pa.concat_tables(fixed, promote_options="permissive")
