"""ResultStore: the run directory's append-only record of probe points and probe lifecycle.

Issue 4, "Nothing lost": every evaluation point a probe reports is durable once `append`
returns, whatever happens to the process, the actor or the node afterwards. A restarted
driver or actor rebuilds its state by reading the store back (docs/design.md, Ray conventions), so
reads deduplicate what retries wrote twice.

Layout under the run directory:
    manifest.json        RunManifest (spec hash, status) - see manifest.py
    points/*.parquet     one fragment per append: probe_id, candidate, seed, step, value, ...
    probes/*.parquet     one fragment per lifecycle event: started / finished / failed
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from prehoc_ray.io.atomic import write_json_atomic
from prehoc_ray.io.dedupe import dedupe_points, dedupe_trajectory, keep_latest
from prehoc_ray.io.fragments import FragmentDir, next_sequence
from prehoc_ray.io.manifest import RunManifest
from prehoc_ray.io.records import event_table, points_table
from prehoc_ray.io.run_dir import POINTS as POINTS_DIR
from prehoc_ray.io.run_dir import PROBES as PROBES_DIR
from prehoc_ray.io.schemas import (
    ATTEMPT,
    EVENT_ID,
    EVENT_SCHEMA,
    POINT_SCHEMA,
    STATUS,
    WRITTEN_NS,
    public_columns,
)
from prehoc_ray.types import PROBE_ID, STEP

__all__ = ["CompactionReport", "ResultStore", "RunManifest", "write_json_atomic"]


def _in_write_order(table: pa.Table) -> pa.Table:
    """Rows sorted by append time (stable: rows of one append keep their order)."""
    written = table.column(WRITTEN_NS).to_numpy()
    if len(written) < 2 or bool(np.all(written[1:] >= written[:-1])):
        return table
    return table.take(pa.array(np.argsort(written, kind="stable")))


@dataclass(frozen=True)
class CompactionReport:
    points_merged: int
    probes_merged: int


class ResultStore:
    """Append-only Parquet store under `root`; safe for many concurrent writer processes."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        # one append writes one _written_ns, so (probe_id, step, _written_ns) names a copy
        self._points = FragmentDir(self.root / POINTS_DIR, identity=(PROBE_ID, STEP, WRITTEN_NS))
        self._probes = FragmentDir(self.root / PROBES_DIR, identity=(EVENT_ID,))

    def __repr__(self) -> str:
        return f"ResultStore({str(self.root)!r})"

    # points -------------------------------------------------------------------------------

    def append(self, rows: Sequence[Mapping[str, Any]]) -> Path | None:
        """Persist evaluation points as one new fragment; durable when this returns.

        Each row needs probe_id, candidate, seed, step, value; eval_loss, train_loss,
        grad_norm, wall_s, tokens and any other number/text columns are optional (null when
        missing). A row may carry `attempt` (int): when a (probe_id, step) is reported again,
        the highest attempt wins, then the latest write. Returns the fragment path, or None
        for an empty `rows`.
        """
        if not rows:
            return None
        seq = next_sequence()
        return self._points.write(points_table(rows, seq), sequence=seq)

    def _raw_points(self) -> pa.Table:
        table = self._points.read()
        if table is None:
            return POINT_SCHEMA.empty_table().append_column(WRITTEN_NS, pa.array([], pa.int64()))
        return _in_write_order(table)

    def read_points(self, *, finished_only: bool = False) -> pa.Table:
        """All points, one per (probe_id, step) (a retried probe never counts twice: the
        latest attempt's point wins), in write order. With `finished_only`, only points of
        probes recorded as finished; otherwise points of interrupted probes are kept too."""
        table = dedupe_points(self._raw_points())
        if finished_only:
            table = self._only_finished(table)
        return public_columns(table)

    def read_trajectory_points(self, *, finished_only: bool = False) -> pa.Table:
        """Points with one row per (candidate, seed, step), the shape TrajectoryTable accepts:
        when two probes of one seed both reached a step, a finished probe's point wins, then
        the latest."""
        finished = self.finished_probe_ids()
        table = dedupe_trajectory(self._raw_points(), finished)
        if finished_only:
            table = self._only_finished(table, finished)
        return public_columns(table)

    def _only_finished(self, table: pa.Table, finished: set[str] | None = None) -> pa.Table:
        ids = self.finished_probe_ids() if finished is None else finished
        mask = pc.is_in(table.column(PROBE_ID), value_set=pa.array(sorted(ids), pa.string()))
        return table.filter(mask)

    # probe lifecycle --------------------------------------------------------------------

    def record_probe(
        self,
        probe_id: str,
        candidate: str,
        seed: int,
        start_step: float,
        target_step: float,
        status: str,
        reason: str | None = None,
        cost_s: float = 0.0,
        attempt: int = 1,
    ) -> Path:
        """Persist one lifecycle event of a probe (status: started, finished or failed)."""
        seq = next_sequence()
        table = event_table(
            probe_id=probe_id,
            candidate=candidate,
            seed=seed,
            start_step=start_step,
            target_step=target_step,
            status=status,
            reason=reason,
            cost_s=cost_s,
            attempt=attempt,
            written_ns=seq,
        )
        return self._probes.write(table, sequence=seq)

    def _raw_probes(self) -> pa.Table:
        table = self._probes.read()
        if table is None:
            return EVENT_SCHEMA.empty_table().append_column(WRITTEN_NS, pa.array([], pa.int64()))
        # an interrupted compaction may leave an event twice
        return keep_latest(_in_write_order(table), (EVENT_ID,))

    def read_probes(self) -> pa.Table:
        """Every lifecycle event, oldest first."""
        return public_columns(self._raw_probes())

    def probe_states(self) -> pa.Table:
        """The latest event of every probe: what a resumed driver needs to know (a probe
        whose latest status is 'started' was interrupted)."""
        return public_columns(keep_latest(self._raw_probes(), (PROBE_ID,)))

    def completed_probes(self) -> pa.Table:
        """The latest 'finished' event of every finished probe."""
        events = self._raw_probes()
        finished = events.filter(pc.equal(events.column(STATUS), "finished"))
        return public_columns(keep_latest(finished, (PROBE_ID,)))

    def finished_probe_ids(self) -> set[str]:
        """Ids of probes with a 'finished' event: their work must not be redone."""
        events = self._raw_probes()
        finished = events.filter(pc.equal(events.column(STATUS), "finished"))
        return set(finished.column(PROBE_ID).to_pylist())

    def failed_attempts(self, probe_id: str) -> int:
        """How many distinct attempts of `probe_id` failed (for a retry limit)."""
        events = self._raw_probes()
        mask = pc.and_(
            pc.equal(events.column(PROBE_ID), probe_id),
            pc.equal(events.column(STATUS), "failed"),
        )
        return len(set(events.filter(mask).column(ATTEMPT).to_pylist()))

    # maintenance ------------------------------------------------------------------------

    def compact(self, min_fragments: int = 2) -> CompactionReport:
        """Merge the fragments of each log into one file (reads of thousands of small files
        are dominated by per-file overhead). Lossless: only exact copies of a row are dropped
        (what every read drops anyway), and the merged inputs are deleted only after the
        merged file is durable."""
        return CompactionReport(
            points_merged=self._points.compact(min_fragments),
            probes_merged=self._probes.compact(min_fragments),
        )

    def maybe_compact(self, max_fragments: int = 256) -> CompactionReport | None:
        """Compact when either log holds more than `max_fragments` files (a driver can call
        this after every round: it costs one directory listing when there is nothing to do)."""
        points, probes = self.fragment_count()
        if max(points, probes) <= max_fragments:
            return None
        return self.compact()

    def fragment_count(self) -> tuple[int, int]:
        """(point fragments, probe-event fragments) on disk now."""
        return len(self._points.files()), len(self._probes.files())

    # manifest ---------------------------------------------------------------------------

    def manifest(self) -> RunManifest | None:
        return RunManifest.load(self.root)

    def open_manifest(self, spec_hash: str, **info: Any) -> RunManifest:
        """Create this run's manifest, or load it to resume (ManifestError on another spec)."""
        return RunManifest.open(self.root, spec_hash, info=info)
