"""Two processes appending to one store at the same time lose nothing."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

from prehoc_ray.io import ResultStore

APPENDS = 25


def _writer(root: str, name: str) -> None:
    store = ResultStore(root)
    for i in range(APPENDS):
        store.append(
            [
                {
                    "probe_id": f"{name}-{i}",
                    "candidate": name,
                    "seed": 0,
                    "step": float(s),
                    "value": float(i),
                }
                for s in (1, 2)
            ]
        )
        store.record_probe(f"{name}-{i}", name, 0, 0, 2, "finished")


def test_two_processes_lose_nothing(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), n)) for n in ("a", "b")]
    reader = ResultStore(tmp_path)
    for p in procs:
        p.start()
    while any(p.is_alive() for p in procs):
        reader.read_points()  # reading while they write sees only whole fragments
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    points = ResultStore(tmp_path).read_points()
    assert points.num_rows == 2 * APPENDS * 2
    assert len(ResultStore(tmp_path).finished_probe_ids()) == 2 * APPENDS
    assert reader.read_points().num_rows == 2 * APPENDS * 2  # the polling reader caught up


def _compacting_writer(root: str, name: str) -> None:
    store = ResultStore(root)
    for i in range(APPENDS):
        store.append(
            [
                {
                    "probe_id": f"{name}-{i}",
                    "candidate": "c",
                    "seed": 0,
                    "step": 1.0,
                    "value": float(i),
                }
            ]
        )
        if i % 10 == 9:
            store.compact()


def test_compaction_racing_appends_and_reads(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    procs = [
        ctx.Process(target=_compacting_writer, args=(str(tmp_path), "x")),
        ctx.Process(target=_compacting_writer, args=(str(tmp_path), "y")),  # two compactors
        ctx.Process(target=_writer, args=(str(tmp_path), "w")),
    ]
    reader = ResultStore(tmp_path)
    for p in procs:
        p.start()
    while any(p.is_alive() for p in procs):
        reader.read_points()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert ResultStore(tmp_path).read_points().num_rows == 2 * APPENDS + 2 * APPENDS
    assert reader.read_points().num_rows == 2 * APPENDS + 2 * APPENDS
    ResultStore(tmp_path).compact()
    raw = ResultStore(tmp_path)._raw_points()
    assert raw.num_rows == 2 * APPENDS + 2 * APPENDS  # exact copies were dropped on compaction
