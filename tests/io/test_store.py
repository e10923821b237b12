"""ResultStore: appends are durable and complete, reads deduplicate, nothing is lost."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from prehoc_ray.io import ResultStore, TrajectoryTable


def point(
    probe: str,
    step: float,
    value: float = 0.5,
    candidate: str = "c1",
    seed: int = 0,
    **extra: object,
) -> dict:
    return {
        "probe_id": probe,
        "candidate": candidate,
        "seed": seed,
        "step": step,
        "value": value,
        **extra,
    }


@pytest.fixture()
def store(tmp_path: Path) -> ResultStore:
    return ResultStore(tmp_path / "run")


def test_empty_store_reads_empty(store: ResultStore) -> None:
    points = store.read_points()
    assert points.num_rows == 0
    assert {"probe_id", "candidate", "seed", "step", "value", "eval_loss"} <= set(points.column_names)
    assert store.read_probes().num_rows == 0
    assert store.finished_probe_ids() == set()
    assert store.failed_attempts("p") == 0
    assert store.append([]) is None


def test_append_then_read(store: ResultStore) -> None:
    store.append(
        [
            point("p1", 10, 0.1, eval_loss=2.0, tokens=100),
            point("p1", 20, 0.2, eval_loss=1.5, tokens=200),
        ]
    )
    store.append([point("p2", 10, 0.3, candidate="c2", grad_norm=0.7, custom="x")])
    points = store.read_points()
    assert points.column("step").to_pylist() == [10, 20, 10]
    assert points.column("eval_loss").to_pylist() == [2.0, 1.5, None]
    assert points.column("grad_norm").to_pylist() == [None, None, 0.7]
    assert points.column("custom").to_pylist() == [None, None, "x"]
    assert points.column("tokens").type == pa.float64()
    assert not [c for c in points.column_names if c.startswith("_")]


def test_int_and_float_extras_unify(store: ResultStore) -> None:
    store.append([point("p1", 1, lr=1)])
    store.append([point("p1", 2, lr=0.5)])
    assert store.read_points().column("lr").to_pylist() == [1.0, 0.5]


def test_conflicting_extra_types_become_text(store: ResultStore) -> None:
    store.append([point("p1", 1, note=3)])
    store.append([point("p1", 2, note="three")])
    assert store.read_points().column("note").to_pylist() == ["3", "three"]


def test_retried_probe_counts_once(store: ResultStore) -> None:
    store.append([point("p1", 10, 0.1, attempt=1), point("p1", 20, 0.2, attempt=1)])
    store.append([point("p1", 10, 0.15, attempt=2)])  # the retry re-reports step 10
    points = store.read_points()
    assert points.num_rows == 2
    by_step = dict(zip(points.column("step").to_pylist(), points.column("value").to_pylist()))
    assert by_step == {10: 0.15, 20: 0.2}


def test_same_point_written_twice_counts_once(store: ResultStore) -> None:
    rows = [point("p1", 10, 0.1), point("p1", 20, 0.2)]
    store.append(rows)
    store.append(rows)
    assert store.read_points().num_rows == 2


def test_lifecycle_and_finished_filter(store: ResultStore) -> None:
    store.record_probe("p1", "c1", 0, 0, 20, "started")
    store.append([point("p1", 10), point("p1", 20)])
    store.record_probe("p1", "c1", 0, 0, 20, "finished", cost_s=12.5)
    store.record_probe("p2", "c1", 1, 0, 20, "started")
    store.append([point("p2", 10, seed=1)])  # p2 was interrupted after one point
    assert store.finished_probe_ids() == {"p1"}
    assert store.read_points().num_rows == 3  # the unfinished probe's point is kept
    assert store.read_points(finished_only=True).column("probe_id").to_pylist() == ["p1", "p1"]
    states = store.probe_states()
    assert dict(zip(states.column("probe_id").to_pylist(), states.column("status").to_pylist())) == {
        "p1": "finished",
        "p2": "started",
    }
    done = store.completed_probes()
    assert done.column("probe_id").to_pylist() == ["p1"] and done.column("cost_s").to_pylist() == [12.5]
    events = store.read_probes()
    assert events.column("status").to_pylist() == ["started", "finished", "started"]


def test_failed_attempts(store: ResultStore) -> None:
    store.record_probe("p1", "c1", 0, 0, 50, "started", attempt=1)
    store.record_probe("p1", "c1", 0, 0, 50, "failed", reason="OOM", attempt=1)
    store.record_probe("p1", "c1", 0, 0, 50, "failed", reason="OOM again", attempt=1)  # duplicate report
    store.record_probe("p1", "c1", 0, 0, 50, "failed", reason="node lost", attempt=2)
    store.record_probe("p2", "c1", 0, 0, 50, "failed", attempt=1)
    assert store.failed_attempts("p1") == 2
    assert store.failed_attempts("p2") == 1
    assert store.failed_attempts("p3") == 0
    assert "OOM" in store.read_probes().column("reason").to_pylist()


def test_trajectory_points_prefer_finished_probe(store: ResultStore) -> None:
    # two probes of the same (candidate, seed) both reached step 10
    store.append([point("short", 10, 0.1)])
    store.record_probe("short", "c1", 0, 0, 10, "finished")
    store.append([point("long", 10, 0.9), point("long", 20, 0.95)])  # never finished
    rows = store.read_trajectory_points()
    pairs = sorted(zip(rows.column("step").to_pylist(), rows.column("value").to_pylist()))
    assert pairs == [(10, 0.1), (20, 0.95)]
    table = TrajectoryTable.from_arrow(rows)  # the shape the analysis accepts
    assert table.extra["probe_id"].tolist() == ["short", "long"]
    only = store.read_trajectory_points(finished_only=True)
    assert only.column("probe_id").to_pylist() == ["short"]


def test_leftover_tmp_files_are_ignored(store: ResultStore) -> None:
    store.append([point("p1", 10)])
    store.record_probe("p1", "c1", 0, 0, 10, "finished")
    # a crash mid-write leaves a hidden, half-written temporary next to complete fragments
    (store.root / "points" / ".00000000000000000001-abc.parquet.deadbeef.tmp").write_bytes(b"PAR1\x00half")
    (store.root / "points" / "00000000000000000002-abc.parquet.tmp").write_bytes(b"PAR1")
    (store.root / "probes" / ".x.parquet.1.tmp").write_bytes(b"")
    (store.root / "points" / "notes.txt").write_text("not a fragment")
    assert store.read_points().num_rows == 1
    assert store.finished_probe_ids() == {"p1"}
    assert store.fragment_count() == (1, 1)


def test_failed_write_leaves_no_fragment(store: ResultStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.append([point("p1", 10)])

    def crash(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", crash)
    with pytest.raises(OSError, match="disk full"):
        store.append([point("p1", 20)])
    monkeypatch.undo()
    assert store.read_points().num_rows == 1
    assert store.fragment_count() == (1, 0)
    assert not list((store.root / "points").glob(".*"))  # the temporary was removed


def test_compaction_preserves_rows(store: ResultStore) -> None:
    for i in range(30):
        store.append(
            [
                point(f"p{i % 7}", 10 * (i // 7 + 1), float(i), extra_i=i)
                if i % 2
                else point(f"p{i % 7}", 10 * (i // 7 + 1), float(i))
            ]
        )
        store.record_probe(f"p{i % 7}", "c1", 0, 0, 10, "started")
    before_points, before_events = store.read_points(), store.read_probes()
    fresh_before = ResultStore(store.root).read_points()
    report = store.compact()
    assert report.points_merged == 30 and report.probes_merged == 30
    assert store.fragment_count() == (1, 1)
    assert store.read_points().equals(before_points)
    assert ResultStore(store.root).read_points().equals(fresh_before)
    assert ResultStore(store.root).read_probes().equals(before_events)
    assert store.compact().points_merged == 0  # nothing left to merge


def test_interrupted_compaction_double_rows_are_deduplicated(store: ResultStore) -> None:
    store.append([point("p1", 10), point("p1", 20)])
    store.append([point("p2", 10)])
    store.record_probe("p1", "c1", 0, 0, 20, "finished")
    store.record_probe("p2", "c1", 0, 0, 20, "failed")
    # simulate a crash after the merged file was written but before the inputs were removed
    points = store.read_points()
    for sub in ("points", "probes"):
        files = sorted((store.root / sub).glob("*.parquet"))
        merged = pa.concat_tables([pq.read_table(f) for f in files], promote_options="permissive")
        pq.write_table(merged, store.root / sub / "99999999999999999999-merged.parquet")
    fresh = ResultStore(store.root)
    assert fresh.read_points().equals(points)
    assert fresh.read_probes().num_rows == 2
    assert fresh.failed_attempts("p2") == 1


def test_compaction_by_another_process_is_seen(store: ResultStore) -> None:
    store.append([point("p1", 10)])
    store.append([point("p1", 20)])
    assert store.read_points().num_rows == 2  # fills this reader's cache
    other = ResultStore(store.root)
    other.compact()
    store.append([point("p1", 30)])
    assert store.read_points().column("step").to_pylist() == [10, 20, 30]


@pytest.mark.parametrize(
    "row, message",
    [
        ({"candidate": "c", "seed": 0, "step": 1, "value": 1}, "missing 'probe_id'"),
        (point("", 1), "'probe_id' must be a non-empty string"),
        (point("p", 1, seed=1.5), "'seed' must be an integer"),
        (point("p", 0), "'step' must be a finite number > 0"),
        (point("p", float("nan")), "'step' must be a finite number > 0"),
        (point("p", 1, eval_loss="low"), "column 'eval_loss' must be a number"),
        (point("p", 1, blob=[1, 2]), "column 'blob' must be a number, text, bool or None"),
        (point("p", 1, _secret=1), "names starting with '_' are reserved"),
        (point("p", 1, attempt=0), "'attempt' must be an integer >= 1"),
    ],
)
def test_append_rejects_bad_rows(store: ResultStore, row: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        store.append([point("ok", 1), row])
    assert store.read_points().num_rows == 0  # all-or-nothing


def test_append_rejects_mixed_column(store: ResultStore) -> None:
    with pytest.raises(ValueError, match="column 'note' mixes incompatible values"):
        store.append([point("p", 1, note=1), point("p", 2, note="x")])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"status": "done"}, "status 'done'"),
        ({"attempt": 0}, "attempt must be an integer >= 1"),
        ({"cost_s": -1.0}, "cost_s must be a finite number >= 0"),
        ({"start_step": 20, "target_step": 10}, "target_step 10 is before start_step 20"),
        ({"probe_id": ""}, "probe_id must be a non-empty string"),
    ],
)
def test_record_probe_rejects_bad_events(store: ResultStore, kwargs: dict, message: str) -> None:
    args = {
        "probe_id": "p",
        "candidate": "c",
        "seed": 0,
        "start_step": 0,
        "target_step": 10,
        "status": "started",
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        store.record_probe(**args)


def test_type_conflict_after_cached_read(store: ResultStore) -> None:
    store.append([point("p1", 1, note=3)])
    assert store.read_points().column("note").to_pylist() == [3]
    store.append([point("p1", 2, note="three")])
    assert store.read_points().column("note").to_pylist() == ["3", "three"]


def test_maybe_compact(store: ResultStore) -> None:
    for i in range(5):
        store.append([point("p", i + 1)])
    assert store.maybe_compact(max_fragments=5) is None
    store.append([point("p", 6)])
    report = store.maybe_compact(max_fragments=5)
    assert report is not None and report.points_merged == 6
    assert store.read_points().num_rows == 6
