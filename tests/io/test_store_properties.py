"""Properties of the store: how rows are split into appends does not change what is read,
and deduplication is idempotent."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from prehoc_ray.io import ResultStore
from prehoc_ray.io.dedupe import dedupe_points, dedupe_trajectory

rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "probe_id": st.sampled_from(["p1", "p2", "p3"]),
            "candidate": st.sampled_from(["a", "b"]),
            "seed": st.integers(0, 2),
            "step": st.sampled_from([10.0, 20.0, 30.0, 40.0]),
            "value": st.floats(-10, 10),
        },
        optional={
            "eval_loss": st.floats(0, 5),
            "tokens": st.integers(0, 10**6),
            "tag": st.sampled_from(["x", "y"]),
        },
    ),
    min_size=1,
    max_size=25,
)


def _splits(n: int) -> st.SearchStrategy[list[int]]:
    return st.lists(st.integers(1, n), max_size=6).map(lambda cuts: sorted(set(cuts) | {n}))


def _expected(rows: list[dict]) -> list[tuple]:
    """Reference rule: the last write of each (probe_id, step), in first-seen... write order."""
    latest: dict[tuple, int] = {}
    for i, row in enumerate(rows):
        latest[(row["probe_id"], row["step"])] = i
    keep = sorted(latest.values())
    return [(rows[i]["probe_id"], rows[i]["step"], rows[i]["value"], rows[i].get("eval_loss")) for i in keep]


def _actual(table: pa.Table) -> list[tuple]:
    cols = [table.column(c).to_pylist() for c in ("probe_id", "step", "value", "eval_loss")]
    return list(zip(*cols))


@settings(max_examples=30, deadline=None)
@given(data=st.data(), rows=rows_strategy)
def test_any_split_reads_like_one_append(data: st.DataObject, rows: list[dict]) -> None:
    cuts = data.draw(_splits(len(rows)))
    compact_at = data.draw(st.one_of(st.none(), st.integers(0, len(cuts) - 1)))
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(Path(tmp))
        start = 0
        for k, end in enumerate(cuts):
            store.append(rows[start:end])
            start = end
            if compact_at == k:
                store.compact()
        assert _actual(store.read_points()) == _expected(rows)
        assert _actual(ResultStore(Path(tmp)).read_points()) == _expected(rows)


@settings(max_examples=30, deadline=None)
@given(rows=rows_strategy, finished=st.sets(st.sampled_from(["p1", "p2", "p3"])))
def test_dedupe_is_idempotent(rows: list[dict], finished: set[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(Path(tmp))
        for row in rows:
            store.append([row])
        raw = store._raw_points()
    once = dedupe_points(raw)
    assert dedupe_points(once).equals(once)
    traj = dedupe_trajectory(raw, finished)
    assert dedupe_trajectory(traj, finished).equals(traj)
    keys = list(zip(*(traj.column(c).to_pylist() for c in ("candidate", "seed", "step"))))
    assert len(keys) == len(set(keys))
