"""load_truth: recorded full fine-tune results from a recording directory or a candidate/final table."""

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from prehoc_ray.io.errors import TruthError
from prehoc_ray.io.truth import load_truth


def _recording(d, rows):
    d.mkdir()
    cols = ("candidate", "kind", "step", "value")
    pq.write_table(pa.table({c: [r[k] for r in rows] for k, c in enumerate(cols)}), d / "curves.parquet")
    return d


def test_a_recording_gives_each_candidate_the_last_value_of_its_full_run(tmp_path):
    d = _recording(
        tmp_path / "rec",
        [
            ("t:a", "probe", 10.0, 0.99),  # probes never count
            ("t:a", "full", 500.0, 0.71),  # written out of order: the last *step* wins
            ("t:a", "full", 250.0, 0.60),
            ("t:b", "full", 250.0, 0.40),
            ("t:c", "probe", 500.0, 0.80),  # no full run: no truth
            ("t:b", "full", 500.0, float("nan")),  # a non-finite evaluation is no result
        ],
    )
    assert load_truth(d) == {"t:a": 0.71, "t:b": 0.40}


def test_a_candidate_final_table_parquet_or_csv(tmp_path):
    t = pa.table({"candidate": ["x:m1", "x:m2"], "final": [0.5, 0.625], "other": [1, 2]})
    pq.write_table(t, tmp_path / "t.parquet")
    pacsv.write_csv(t, tmp_path / "t.csv")
    assert load_truth(tmp_path / "t.parquet") == load_truth(tmp_path / "t.csv") == {"x:m1": 0.5, "x:m2": 0.625}


def test_the_shipped_late_bloomer_recording_matches_its_replayed_world():
    from prehoc_ray.bench.worlds import LATE_BLOOMERS_DIR, demo_world

    truth = load_truth(LATE_BLOOMERS_DIR)
    w = demo_world(0, data_dir=LATE_BLOOMERS_DIR)
    assert truth == {c.id: c.true_final for c in w.candidates}


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: p / "absent", ["absent: not found", "candidate, final"]),
        (lambda p: (p / "d").mkdir() or p / "d", ["without curves.parquet"]),
        (
            lambda p: (
                pq.write_table(pa.table({"candidate": ["a"], "score": [1.0]}), p / "n.parquet") or p / "n.parquet"
            ),
            ["no column final", "found candidate, score"],
        ),
        (
            lambda p: (
                pq.write_table(pa.table({"candidate": ["a", "b"], "final": [1.0, None]}), p / "m.parquet")
                or p / "m.parquet"
            ),
            ["row 2", "finite final"],
        ),
        (lambda p: (p / "x.parquet").write_text("not parquet") and p / "x.parquet", ["cannot read it as Parquet"]),
        (lambda p: _recording(p / "r", [("a", "probe", 1.0, 0.5)]), ["no rows of kind 'full'"]),
        (
            lambda p: (
                pq.write_table(pa.table({"candidate": ["a", "a"], "final": [1.0, 0.5]}), p / "d.parquet")
                or p / "d.parquet"
            ),
            ["row 2", "appears twice"],
        ),
    ],
)
def test_bad_truth_sources_get_one_line_naming_the_file(tmp_path, make, words):
    path = make(tmp_path)
    with pytest.raises(TruthError) as e:
        load_truth(path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(path))
    for w in words:
        assert w in msg
