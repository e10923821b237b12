"""Property: any valid table survives to_arrow -> write_table -> read_trajectories intact."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from prehoc_ray.io import TrajectoryTable, read_trajectories, write_table

ids = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=6)
finite = st.floats(allow_nan=False, allow_infinity=False, width=64)
positive = st.floats(min_value=1e-6, max_value=1e9, allow_nan=False)
maybe = st.one_of(st.just(float("nan")), finite)


@st.composite
def tables(draw: st.DrawFn) -> TrajectoryTable:
    cols: dict[str, list] = {
        k: []
        for k in (
            "candidate",
            "seed",
            "group",
            "step",
            "value",
            "final",
            "horizon",
            "static_a",
            "eval_loss",
        )
    }
    for cid in draw(st.lists(ids, min_size=1, max_size=4, unique=True)):
        group, static_a, horizon = (
            draw(ids),
            draw(maybe),
            draw(st.one_of(st.just(float("nan")), positive)),
        )
        for seed in draw(st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=3, unique=True)):
            final = draw(maybe)
            for step in draw(st.lists(positive, min_size=1, max_size=4, unique=True)):
                cols["candidate"].append(cid)
                cols["seed"].append(seed)
                cols["group"].append(group)
                cols["step"].append(step)
                cols["value"].append(draw(finite))
                cols["final"].append(final)
                cols["horizon"].append(horizon)
                cols["static_a"].append(static_a)
                cols["eval_loss"].append(draw(finite))
    order = draw(st.permutations(range(len(cols["step"]))))
    cols = {k: [v[i] for i in order] for k, v in cols.items()}
    return TrajectoryTable.from_arrays(
        cols["candidate"],
        cols["step"],
        cols["value"],
        seed=cols["seed"],
        group=cols["group"],
        final=cols["final"],
        horizon=cols["horizon"],
        static={"static_a": cols["static_a"]},
        extra={"eval_loss": cols["eval_loss"]},
    )


def _same(a: TrajectoryTable, b: TrajectoryTable) -> None:
    assert a.candidate.tolist() == b.candidate.tolist()
    assert a.group.tolist() == b.group.tolist()
    for name in ("step", "value", "seed", "final", "horizon"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    np.testing.assert_array_equal(a.static["static_a"], b.static["static_a"])
    np.testing.assert_array_equal(a.extra["eval_loss"], b.extra["eval_loss"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=tables(), suffix=st.sampled_from([".parquet", ".csv", ".jsonl"]))
def test_write_read_round_trip(table: TrajectoryTable, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"t{suffix}"
        write_table(table.to_arrow(), path)
        _same(table, read_trajectories(path))
        assert sorted(p.name for p in Path(tmp).iterdir()) == [path.name]  # no temp left


@settings(max_examples=40, deadline=None)
@given(table=tables())
def test_arrow_round_trip_and_truncate(table: TrajectoryTable) -> None:
    _same(table, TrajectoryTable.from_arrow(table.to_arrow()))
    depth = float(np.median(table.step))
    cut = table.truncate(depth)
    assert (cut.step <= depth).all()
    assert len(cut) == int((table.step <= depth).sum())
