"""Run manifest (resume guard) and the atomic write helpers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pyarrow as pa
import pytest

from prehoc_ray.io import (
    ManifestError,
    ResultStore,
    RunManifest,
    spec_hash,
    write_json_atomic,
    write_table,
)
from prehoc_ray.io.formats import read_table_file


def test_manifest_create_then_resume(tmp_path: Path) -> None:
    h = spec_hash({"budget": 10, "tasks": ["a"]})
    created = RunManifest.open(tmp_path, h, info={"name": "demo"})
    assert created.status == "running" and created.info == {"name": "demo"}
    assert RunManifest.open(tmp_path, h) == created  # resume returns what is on disk
    done = created.with_status("finished", spent_s=12.0)
    done.save(tmp_path)
    loaded = RunManifest.load(tmp_path)
    assert loaded is not None and loaded.status == "finished" and loaded.info["spent_s"] == 12.0


def test_manifest_refuses_another_spec(tmp_path: Path) -> None:
    RunManifest.open(tmp_path, spec_hash({"a": 1}))
    with pytest.raises(ManifestError, match="belongs to spec"):
        RunManifest.open(tmp_path, spec_hash({"a": 2}))


def test_manifest_via_store(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    assert store.manifest() is None
    store.open_manifest("abc", owner="me")
    assert store.manifest().spec_hash == "abc"  # type: ignore[union-attr]


def test_spec_hash_is_order_independent() -> None:
    assert spec_hash({"a": 1, "b": [1, 2]}) == spec_hash({"b": [1, 2], "a": 1})
    assert spec_hash({"a": 1}) != spec_hash({"a": 2})


def test_corrupt_manifest_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="unreadable manifest"):
        RunManifest.load(tmp_path)


def test_bad_status_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="run status 'done'"):
        RunManifest.open(tmp_path, "h").with_status("done")


def test_write_json_atomic_nan_becomes_null(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "x.json"
    write_json_atomic(path, {"a": math.nan, "b": [1.0, math.inf], "c": Path("/p")})
    assert json.loads(path.read_text()) == {"a": None, "b": [1.0, None], "c": "/p"}
    assert [p.name for p in path.parent.iterdir()] == ["x.json"]


def test_write_json_atomic_keeps_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "x.json"
    write_json_atomic(path, {"v": 1})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"v": object()})
    assert json.loads(path.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]


def test_write_table_replaces_and_leaves_no_temp(tmp_path: Path) -> None:
    for name in ("t.parquet", "t.csv", "t.jsonl"):
        path = tmp_path / name
        write_table(pa.table({"a": [1, 2]}), path)
        write_table(pa.table({"a": [3]}), path)
        assert read_table_file(path).column("a").to_pylist() == [3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv", "t.jsonl", "t.parquet"]


def test_write_table_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown file type '.txt'"):
        write_table(pa.table({"a": [1]}), tmp_path / "t.txt")
