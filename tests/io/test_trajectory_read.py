"""Reading good trajectory files: formats, defaults, carried columns, table helpers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from prehoc_ray.io import TrajectoryTable, read_trajectories, write_table

CSV = """candidate,step,value,seed,group,final,horizon,static_zs_loss,static_n,eval_loss
001,10,0.50,0,math,0.9,1000,2.5,100,2.1
001,20,0.60,0,math,0.9,1000,2.5,100,2.0
001,10,0.52,1,math,0.92,1000,2.5,100,
b,10,0.40,0,,nan,,1.5,,1.9
b,20,0.45,0,,,,1.5,,1.8
"""


@pytest.fixture()
def table(tmp_path: Path) -> TrajectoryTable:
    path = tmp_path / "t.csv"
    path.write_text(CSV)
    return read_trajectories(path)


def test_columns_and_types(table: TrajectoryTable) -> None:
    assert len(table) == 5
    assert table.candidate.tolist() == ["001", "001", "001", "b", "b"]  # ids stay text
    assert table.step.dtype == np.float64 and table.value.dtype == np.float64
    assert table.seed.dtype == np.int64 and table.seed.tolist() == [0, 0, 1, 0, 0]
    assert table.group.tolist() == ["math"] * 3 + ["all"] * 2  # empty cell -> default group
    np.testing.assert_array_equal(table.final, [0.9, 0.9, 0.92, np.nan, np.nan])
    np.testing.assert_array_equal(table.horizon, [1000, 1000, 1000, np.nan, np.nan])
    assert set(table.static) == {"static_zs_loss", "static_n"}
    assert list(table.extra) == ["eval_loss"]
    np.testing.assert_array_equal(table.extra["eval_loss"], [2.1, 2.0, np.nan, 1.9, 1.8])
    assert table.source is not None and table.source.name == "t.csv"


def test_arrays_are_read_only(table: TrajectoryTable) -> None:
    with pytest.raises(ValueError):
        table.step[0] = 3.0


def test_defaults_when_optional_columns_absent(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("candidate,step,value\na,1,0.1\na,2,0.2\n")
    table = read_trajectories(path)
    assert table.seed.tolist() == [0, 0]
    assert table.group.tolist() == ["all", "all"]
    assert np.isnan(table.final).all() and np.isnan(table.horizon).all()
    assert table.static == {} and table.extra == {}


def test_candidates_sorted_unique(table: TrajectoryTable) -> None:
    assert table.candidates() == ["001", "b"]


def test_static_matrix(table: TrajectoryTable) -> None:
    ids, names, matrix = table.static_matrix()
    assert ids == ["001", "b"]
    assert names == ["static_zs_loss", "static_n"]
    np.testing.assert_array_equal(matrix, [[2.5, 100.0], [1.5, np.nan]])


def test_truncate_scalar(table: TrajectoryTable) -> None:
    short = table.truncate(10)
    assert short.step.tolist() == [10, 10, 10]
    assert table.truncate(0.5).candidates() == []  # empty is allowed in memory


def test_truncate_mapping(table: TrajectoryTable) -> None:
    cut = table.truncate({"001": 20, "b": 10})
    assert list(zip(cut.candidate, cut.step)) == [("001", 10), ("001", 20), ("001", 10), ("b", 10)]
    with pytest.raises(ValueError, match="no depth for candidate"):
        table.truncate({"001": 20})
    assert len(table.truncate({"001": 10}, default=100)) == 4


def test_select(table: TrajectoryTable) -> None:
    assert table.select(["b"]).candidate.tolist() == ["b", "b"]


@pytest.mark.parametrize("name", ["t.parquet", "t.pq", "t.jsonl", "t.ndjson", "t.json", "t.csv"])
def test_all_formats_read_the_same(table: TrajectoryTable, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    write_table(table.to_arrow(), path)
    again = read_trajectories(path)
    _assert_same(table, again)


def test_json_array_file(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(
        json.dumps(
            [
                {"candidate": "a", "step": 1, "value": 0.5},
                {"candidate": "a", "step": 2, "value": 0.6, "seed": 0},
            ]
        )
    )
    table = read_trajectories(path)
    assert table.step.tolist() == [1, 2] and table.seed.tolist() == [0, 0]


def test_jsonl_missing_keys_are_defaults(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text(
        '{"candidate": 7, "step": 1, "value": 0.5, "seed": 3}\n{"candidate": 7, "step": 2, "value": 0.6, "seed": 3}\n'
    )
    table = read_trajectories(path)
    assert table.candidate.tolist() == ["7", "7"] and table.seed.tolist() == [3, 3]


def test_numbers_in_text_columns_are_accepted(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"candidate": ["a"], "step": ["10"], "value": ["0.5"], "seed": ["2"]}), path)
    table = read_trajectories(path)
    assert table.step.tolist() == [10.0] and table.value.tolist() == [0.5] and table.seed.tolist() == [2]


def test_from_arrays_validates() -> None:
    table = TrajectoryTable.from_arrays(
        ["a", "a"],
        [1, 2],
        [0.1, 0.2],
        seed=[0, 0],
        final=[0.5, 0.5],
        static={"static_x": [1.0, 1.0]},
    )
    assert table.final.tolist() == [0.5, 0.5] and table.source is None
    with pytest.raises(ValueError, match=r"<arrays>: column 'step' row 2: expected a number > 0, got -2"):
        TrajectoryTable.from_arrays(["a", "a"], [1, -2], [0.1, 0.2])
    with pytest.raises(ValueError, match="must start with 'static_'"):
        TrajectoryTable.from_arrays(["a"], [1], [0.1], static={"x": [1.0]})


def test_from_arrays_numpy_inputs() -> None:
    table = TrajectoryTable.from_arrays(
        np.array(["a", "b"]), np.array([1, 1]), np.array([0.1, 0.2]), seed=np.array([4, 4])
    )
    assert table.candidates() == ["a", "b"] and table.seed.tolist() == [4, 4]


def test_repr_is_short(table: TrajectoryTable) -> None:
    assert repr(table).startswith("TrajectoryTable(rows=5, candidates=2")


def _assert_same(a: TrajectoryTable, b: TrajectoryTable) -> None:
    assert a.candidate.tolist() == b.candidate.tolist()
    for name in ("step", "value", "seed", "final", "horizon"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.group.tolist() == b.group.tolist()
    assert list(a.static) == list(b.static)
    for name in a.static:
        np.testing.assert_array_equal(a.static[name], b.static[name], err_msg=name)
    assert list(a.extra) == list(b.extra)
    for name in a.extra:
        np.testing.assert_array_equal(np.asarray(a.extra[name], float), np.asarray(b.extra[name], float), err_msg=name)


def test_categorical_columns_of_a_parquet_file_read_as_their_values(tmp_path: Path) -> None:
    """pandas writes a categorical column as a Parquet dictionary: candidate and group read as text."""
    import pyarrow.parquet as pq

    raw = pa.table(
        {
            "candidate": pa.array(["c0", "c0", "c1", "c1"]).dictionary_encode(),
            "group": pa.array(["g", "g", "h", "h"]).dictionary_encode(),
            "step": [1.0, 2.0, 1.0, 2.0],
            "value": [0.1, 0.2, 0.3, 0.4],
        }
    )
    pq.write_table(raw, tmp_path / "cat.parquet")
    table = read_trajectories(tmp_path / "cat.parquet")
    assert table.candidate.tolist() == ["c0", "c0", "c1", "c1"] and table.group.tolist() == ["g", "g", "h", "h"]
