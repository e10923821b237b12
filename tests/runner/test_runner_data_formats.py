"""Task data formats with real components: chat `messages` through a real chat template (a
ChatML Jinja template on a transformers tokenizer built here, saved with a tiny model, and the
task's own template on a tiny model), `datasets` on local files, alpaca and prompt/completion,
and loss masks that cover the answer tokens only. No network."""

from __future__ import annotations

import json
import math
import os

import pytest

os.environ.setdefault("HF_DATASETS_OFFLINE", "1")  # before anything imports datasets

from prehoc_ray import types as T
from prehoc_ray.runner.batches import IGNORE, collate, encode_examples
from prehoc_ray.runner.data import CHAT, RENDERED, VERBATIM, load_task
from prehoc_ray.runner.errors import RunnerInputError
from prehoc_ray.runner.probe import ProbeRequest, prepare, run_probe
from prehoc_ray.spec.candidate import CandidateSpec, FinetuneConfig, ModelSpec, ProbeSettings, TaskSpec

# ChatML, as Qwen2 / SmolLM2-Instruct ship it (without their default system prompt)
CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
COLORS = ["red", "blue", "green", "black"]
CONFIG = FinetuneConfig(learning_rate=1e-2, batch_size=8, max_seq_len=64, full_steps=100, modules_to_save=["lm_head"])


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def chat_rows(n: int = 120) -> list[dict]:
    """A system prompt, a question whose answer one word gives away, the assistant's answer."""
    rows = []
    for i in range(n):
        color = COLORS[i % len(COLORS)]
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": "Answer with one word."},
                    {"role": "user", "content": f"item {i}: the {color} one. Which color?"},
                    {"role": "assistant", "content": color},
                ]
            }
        )
    return rows


def answer_labels(item) -> list[int]:
    """The token ids that carry a loss (labels != IGNORE) in a collated single example."""
    labels = collate([item], pad_id=0)["labels"][0].tolist()
    return [t for t in labels if t != IGNORE]


@pytest.fixture(scope="module")
def chat_path(tmp_path_factory):
    return _jsonl(tmp_path_factory.mktemp("chat") / "chat.jsonl", chat_rows())


@pytest.fixture(scope="module")
def chatml_model_dir(tmp_path_factory, chat_path):
    """A tiny llama saved with a real transformers tokenizer (byte-level BPE trained on the
    chats, ChatML's special tokens, ChatML as its chat template): a local HF model directory."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    texts = [m["content"] for r in chat_rows() for m in r["messages"]]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<pad>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<pad>", bos_token="<|im_start|>"
    )
    hf_tok.chat_template = CHATML
    config = LlamaConfig(
        vocab_size=len(hf_tok),
        hidden_size=64,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=256,
        pad_token_id=hf_tok.pad_token_id,
        eos_token_id=hf_tok.eos_token_id,
        bos_token_id=hf_tok.bos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    d = tmp_path_factory.mktemp("chatml-model") / "tiny-chatml"
    model.save_pretrained(str(d))
    hf_tok.save_pretrained(str(d))
    return d


@pytest.fixture(scope="module")
def chat_candidate(chat_path, chatml_model_dir) -> CandidateSpec:
    return CandidateSpec(
        task=TaskSpec(name="colors", path=chat_path, eval_examples=16),
        model=ModelSpec(name="chatml", path=chatml_model_dir),
        config=CONFIG,
    )


# --------------------------------------------------------------------------------------------
# chat


def test_chat_rows_are_read_as_conversations_with_the_last_answer(chat_path):
    data = load_task(TaskSpec(name="colors", path=chat_path, eval_examples=16))
    assert data.needs_chat_template and data.kind == "classification" and data.labels == tuple(sorted(COLORS))
    ex = data.train[0]
    assert ex.style == CHAT and ex.answer in COLORS
    assert [r for r, _ in ex.messages] == ["system", "user"] and ex.messages[0][1] == "Answer with one word."
    with pytest.raises(RunnerInputError, match="must be rendered with a chat template"):
        encode_examples(None, [ex], 32)


def test_chat_through_the_models_chatml_template_masks_all_but_the_answer(chat_candidate, chatml_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(chatml_model_dir))
    prep = prepare(chat_candidate)
    ex = prep.task.train[0]
    msgs = [{"role": r, "content": c} for r, c in ex.messages]
    assert ex.style == RENDERED
    assert ex.prompt == tok.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert ex.prompt.endswith("<|im_start|>assistant\n") and ex.prompt.startswith(
        "<|im_start|>system\nAnswer with one word.<|im_end|>\n"
    )
    color = ex.answer[: -len("<|im_end|>\n")]
    assert color in COLORS and ex.answer == color + "<|im_end|>\n"
    # the loss covers exactly the answer's tokens: the color, the end of turn, its newline (no extra eos)
    enc = prep.train[0]
    want = tok(color + "<|im_end|>\n", add_special_tokens=False)["input_ids"]
    assert answer_labels(enc) == want and enc.n_answer == len(want)
    assert want[-2] == tok.convert_tokens_to_ids("<|im_end|>")
    assert list(enc.ids[: -enc.n_answer]) == tok(ex.prompt, add_special_tokens=False)["input_ids"]
    assert tok.convert_tokens_to_ids("<|im_start|>") in enc.ids[: -enc.n_answer]  # markup is one special token
    # every training example: the masked part decodes to the prompt, the rest to answer + end of turn
    for enc, ex in zip(prep.train[:20], prep.task.train[:20]):
        assert tok.decode(list(enc.ids[-enc.n_answer :])) == ex.answer
    # classification labels are rendered alike, so label scoring compares like with like
    assert prep.task.labels == tuple(sorted(c + "<|im_end|>\n" for c in COLORS))
    assert prep.eval_set.metric == "accuracy" and len(prep.eval_set.label_ids) == len(COLORS)


def test_chat_probe_end_to_end_through_the_chat_template(chat_candidate, tmp_path):
    rows = []
    result = run_probe(
        ProbeRequest(chat_candidate, 0, 40, tmp_path / "ckpt", ProbeSettings(backend="torch", eval_every=10), "chat"),
        on_point=rows.append,
    )
    assert [r[T.STEP] for r in rows] == [10, 20, 30, 40] and result.metric == "accuracy"
    assert all(math.isfinite(r[T.EVAL_LOSS]) and 0.0 <= r[T.VALUE] <= 1.0 for r in rows)
    assert rows[-1][T.EVAL_LOSS] < rows[0][T.EVAL_LOSS]  # the answer tokens are learned
    assert max(r[T.VALUE] for r in rows) >= 0.5  # four colors: chance is 0.25, the color is in the question


def test_a_tiny_model_uses_the_tasks_chat_template(chat_path):
    task = TaskSpec(name="colors", path=chat_path, eval_examples=16, chat_template=CHATML, kind="generation")
    tiny = ModelSpec(
        name="tiny",
        tiny={"arch": "llama", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "vocab_size": 320},
    )
    prep = prepare(CandidateSpec(task=task, model=tiny, config=CONFIG))
    ex, enc = prep.task.train[0], prep.train[0]
    assert ex.prompt.startswith("<|im_start|>system\n") and ex.prompt.endswith("<|im_start|>assistant\n")
    assert ex.answer.endswith("<|im_end|>\n") and ex.answer[: -len("<|im_end|>\n")] in COLORS
    codec = prep.base.codec
    assert answer_labels(enc) == codec.encode_batch([ex.answer])[0]
    assert codec.decode(list(enc.ids[: -enc.n_answer])) == ex.prompt  # nothing cut: the BPE learned the markup
    assert len(codec.encode_batch(["<|im_start|>assistant\n"])[0]) < 12  # 22 bytes: merged markup
    assert prep.eval_set.metric == "exact_match"


def test_chat_without_any_template_is_a_clear_error(chat_path):
    task = TaskSpec(name="colors", path=chat_path, eval_examples=16)
    tiny = ModelSpec(
        name="tiny", tiny={"arch": "llama", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    )
    with pytest.raises(
        RunnerInputError,
        match="task 'colors': chat data needs a chat template: model 'tiny' has none.*set chat_template",
    ):
        prepare(CandidateSpec(task=task, model=tiny, config=CONFIG))


def test_a_template_that_does_not_extend_its_prompt_is_refused(chat_path):
    # the generation prompt says "assistant:" but a rendered answer follows "bot:"
    odd = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}"
    task = TaskSpec(
        name="colors",
        path=chat_path,
        eval_examples=16,
        chat_template=odd.replace("{{ m['role'] }}", "{{ 'bot' if m['role'] == 'assistant' else m['role'] }}"),
    )
    tiny = ModelSpec(
        name="tiny", tiny={"arch": "llama", "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2}
    )
    with pytest.raises(RunnerInputError, match="does not render a conversation as its prompt"):
        prepare(CandidateSpec(task=task, model=tiny, config=CONFIG))


MALFORMED_CHATS = [
    ("not a list", {"messages": "hello"}, r"row 2, column 'messages': not a JSON list"),
    ("a number", {"messages": 7}, r"row 2, column 'messages': expected a list of \{role, content\} messages, got int"),
    ("message not a mapping", {"messages": ["hi"]}, r"row 2, column 'messages': message 0 is a str"),
    ("no role", {"messages": [{"content": "hi"}]}, r"row 2, column 'messages': message 0 has no 'role'"),
    (
        "no content",
        {"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]},
        r"row 2, column 'messages': message 0 \(user\) has no 'content'",
    ),
    (
        "content parts",
        {"messages": [{"role": "user", "content": [{"type": "text"}]}, {"role": "assistant", "content": "x"}]},
        r"row 2, column 'messages': message 0 \(user\) has a list 'content' \(expected text\)",
    ),
    (
        "ends with the user",
        {"messages": [{"role": "assistant", "content": "x"}, {"role": "user", "content": "y"}]},
        r"row 2, column 'messages': the last message is 'user', expected the assistant's answer",
    ),
]


@pytest.mark.parametrize("case,record,expected", MALFORMED_CHATS, ids=[c[0] for c in MALFORMED_CHATS])
def test_a_malformed_chat_record_names_file_row_and_column(tmp_path, case, record, expected):
    p = _jsonl(tmp_path / "bad.jsonl", [chat_rows(1)[0], record] + chat_rows(10))
    with pytest.raises(RunnerInputError, match=r"task 'c': .*bad\.jsonl: " + expected):
        load_task(TaskSpec(name="c", path=p, eval_examples=2))


def test_chat_in_csv_and_a_renamed_messages_column(tmp_path):
    import csv

    p = tmp_path / "chat.csv"
    with p.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["conversation"])
        w.writeheader()
        for r in chat_rows(20):
            w.writerow({"conversation": json.dumps(r["messages"])})
    data = load_task(TaskSpec(name="c", path=p, eval_examples=4, columns={"messages": "conversation"}))
    assert data.needs_chat_template and len(data.train) == 16 and data.train[0].answer in COLORS


# --------------------------------------------------------------------------------------------
# alpaca and prompt/completion


def test_alpaca_with_and_without_input_and_its_loss_mask(tmp_path, make_tiny_model):
    rows = [
        {"instruction": f"Add one to {i}.", "input": "" if i % 2 else f"The number is {i}.", "output": str(i + 1)}
        for i in range(40)
    ]
    p = _jsonl(tmp_path / "alpaca.jsonl", rows)
    task = TaskSpec(name="alpaca", path=p, eval_examples=8)
    data = load_task(task)
    assert data.kind == "generation" and all(ex.style == VERBATIM for ex in data.train)
    by_answer = {ex.answer: ex for ex in data.train + data.eval}
    with_input, without = by_answer["1"], by_answer["2"]  # rows 0 (input) and 1 (no input)
    assert "### Instruction:\nAdd one to 0.\n\n### Input:\nThe number is 0.\n\n### Response:\n" in with_input.prompt
    assert "### Input:" not in without.prompt and without.prompt.endswith(
        "### Instruction:\nAdd one to 1.\n\n### Response:\n"
    )
    prep = prepare(CandidateSpec(task=task, model=make_tiny_model(), config=FinetuneConfig(max_seq_len=128)))
    codec = prep.base.codec
    for enc, ex in zip(prep.train, prep.task.train):
        assert answer_labels(enc) == codec.encode_batch([ex.answer])[0] + [codec.eos_id]  # the output, no space, eos
        assert codec.decode(list(enc.ids[: -enc.n_answer])) == ex.prompt


def test_prompt_completion_is_verbatim_and_masks_the_prompt(tmp_path, make_tiny_model):
    rows = [{"prompt": f"2 x {i} =", "completion": f" {2 * i}"} for i in range(40)]
    task = TaskSpec(name="pc", path=_jsonl(tmp_path / "pc.jsonl", rows), eval_examples=8)
    data = load_task(task)
    assert all(ex.style == VERBATIM and ex.answer == ex.answer.strip() for ex in data.train)
    prep = prepare(CandidateSpec(task=task, model=make_tiny_model(), config=FinetuneConfig(max_seq_len=32)))
    codec = prep.base.codec
    for enc, ex in zip(prep.train, prep.task.train):
        got = answer_labels(enc)
        assert got[-1] == codec.eos_id and codec.decode(got[:-1]) == ex.answer
        assert codec.decode(list(enc.ids[: -enc.n_answer])) == ex.prompt


def test_conversational_prompt_completion_is_a_chat(tmp_path):
    rows = [
        {
            "prompt": [{"role": "user", "content": f"color of item {i}?"}],
            "completion": [{"role": "assistant", "content": COLORS[i % 4]}],
        }
        for i in range(20)
    ]
    data = load_task(TaskSpec(name="cpc", path=_jsonl(tmp_path / "cpc.jsonl", rows), eval_examples=4))
    assert data.needs_chat_template and data.train[0].messages[0][0] == "user" and data.train[0].answer in COLORS


def test_explicit_format_needs_its_columns(tmp_path):
    p = _jsonl(tmp_path / "d.jsonl", [{"prompt": "a", "answer": "b"}] * 10)
    with pytest.raises(
        RunnerInputError, match=r"format alpaca needs a 'instruction' column in .*d\.jsonl \(set columns\.instruction\)"
    ):
        load_task(TaskSpec(name="x", path=p, format="alpaca", eval_examples=2))


def test_a_cell_of_the_wrong_shape_names_row_and_column(tmp_path):
    rows = [{"instruction": "do", "output": "ok"}] * 5 + [{"instruction": "do", "output": {"text": "ok"}}]
    p = _jsonl(tmp_path / "a.jsonl", rows)
    with pytest.raises(RunnerInputError, match=r"a\.jsonl: row 6, column 'output': expected text, got dict"):
        load_task(TaskSpec(name="x", path=p, eval_examples=2))


# --------------------------------------------------------------------------------------------
# `datasets`


@pytest.fixture
def datasets_cache(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets-cache")
    return datasets


def test_datasets_json_files_with_a_split(tmp_path, datasets_cache):
    train = _jsonl(tmp_path / "train.jsonl", [{"instruction": f"Say {i}.", "output": f"{i}"} for i in range(30)])
    valid = _jsonl(tmp_path / "valid.jsonl", [{"instruction": f"Repeat {i}.", "output": f"{i} {i}"} for i in range(12)])
    files = {"train": str(train), "validation": str(valid)}
    data = load_task(TaskSpec(name="ds", dataset="json", data_files=files, eval_examples=5))
    assert data.n_rows == 30 and "dataset 'json' split 'train'" in data.source
    assert all("### Instruction:\nSay " in ex.prompt for ex in data.train + data.eval)
    val = load_task(TaskSpec(name="ds", dataset="json", data_files=files, split="validation", eval_examples=5))
    assert val.n_rows == 12 and all("Repeat" in ex.prompt for ex in val.train + val.eval)


def test_datasets_parquet_chat_and_renamed_columns(tmp_path, datasets_cache):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"conv": r["messages"]} for r in chat_rows(24)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "chat.parquet")
    data = load_task(
        TaskSpec(
            name="pq",
            dataset="parquet",
            data_files=str(tmp_path / "chat.parquet"),
            columns={"messages": "conv"},
            eval_examples=4,
        )
    )
    assert data.needs_chat_template and data.n_rows == 24 and data.labels == tuple(sorted(COLORS))


def test_datasets_local_folder_like_a_hub_repository(tmp_path, datasets_cache):
    repo = tmp_path / "my-dataset"
    (repo / "data").mkdir(parents=True)
    _jsonl(repo / "data" / "train.jsonl", [{"prompt": f"q{i} ->", "completion": f"a{i}"} for i in range(20)])
    _jsonl(repo / "data" / "test.jsonl", [{"prompt": f"t{i} ->", "completion": f"b{i}"} for i in range(10)])
    data = load_task(TaskSpec(name="folder", dataset=str(repo), split="test", eval_examples=3))
    assert data.n_rows == 10 and all(ex.prompt.startswith("t") and ex.style == VERBATIM for ex in data.train)


def test_an_uncached_hub_dataset_offline_is_a_clear_error(datasets_cache):
    if not datasets_cache.config.HF_HUB_OFFLINE:
        pytest.skip("datasets was imported before HF_HUB_OFFLINE / HF_DATASETS_OFFLINE was set")
    with pytest.raises(
        RunnerInputError,
        match=r"task 'hub': cannot load dataset 'acme/not-cached' split 'train' \(offline: only the local cache",
    ):
        load_task(TaskSpec(name="hub", dataset="acme/not-cached"))


def test_a_missing_split_is_named(tmp_path, datasets_cache):
    p = _jsonl(tmp_path / "t.jsonl", [{"prompt": "a", "answer": "b"}] * 10)
    with pytest.raises(RunnerInputError, match=r"task 'x': cannot load dataset 'json' split 'test'"):
        load_task(TaskSpec(name="x", dataset="json", data_files=str(p), split="test", eval_examples=2))


# --------------------------------------------------------------------------------------------
# validate


def test_validate_reads_the_formats_and_names_what_is_missing(tmp_path, chat_path):
    from prehoc_ray.cli.validate import check_paths
    from prehoc_ray.spec.job import JobSpec

    alpaca = _jsonl(tmp_path / "a.jsonl", [{"instruction": "do", "output": "ok"}] * 4)
    spec = JobSpec.model_validate(
        {
            "name": "j",
            "budget": {"probe_seconds": 10},
            "models": [{"name": "m", "tiny": {}}],
            "tasks": [
                {"name": "chat", "path": str(chat_path)},
                {"name": "alpaca", "path": str(alpaca)},
                {"name": "wrong", "path": str(alpaca), "format": "chat"},
                {"name": "ds", "dataset": "json", "data_files": str(tmp_path / "missing.jsonl")},
            ],
        }
    )
    problems = {p.field: p.message for p in check_paths(spec)}
    assert set(problems) == {"tasks.2.path", "tasks.3.data_files"}, problems
    assert "format chat needs a 'messages' column in a.jsonl (set columns.messages)" in problems["tasks.2.path"]
    assert "missing.jsonl' does not exist" in problems["tasks.3.data_files"]
