"""Tokenisation with answer-only loss, seeded data order, and model loading / caching."""

from __future__ import annotations

import pytest
import torch

from prehoc_ray.runner.batches import IGNORE, batch_indices, collate, encode_examples
from prehoc_ray.runner.data import Example, load_task
from prehoc_ray.runner.errors import RunnerInputError
from prehoc_ray.runner.models import get_base
from prehoc_ray.spec.candidate import ModelSpec, TaskSpec

COPY = TaskSpec(name="copy", builtin="synthetic_copy", max_train_examples=256, eval_examples=16)


@pytest.fixture(scope="module")
def tiny_base(make_tiny_model):
    data = load_task(COPY)
    return get_base(make_tiny_model(), COPY, data.texts)


def test_loss_only_on_answer_tokens_left_padded(tiny_base):
    codec = tiny_base.codec
    exs = [Example("copy a b =", "a b"), Example("copy c d e f g =", "c d e f g")]
    enc = encode_examples(codec, exs, max_len=32)
    b = collate(enc, codec.pad_id)
    for i, (e, x) in enumerate(zip(exs, enc)):
        answer_ids = codec.encode_batch([" " + e.answer])[0] + [codec.eos_id]
        assert list(x.ids[-x.n_answer :]) == answer_ids
        labels = b["labels"][i]
        assert labels[-x.n_answer :].tolist() == answer_ids
        assert (labels[: -x.n_answer] == IGNORE).all()
    # left padding: the shorter row starts with pad and has zero attention there
    assert b["input_ids"][0, 0] == codec.pad_id and b["attention_mask"][0, 0] == 0
    assert b["position_ids"][0, -1] == len(enc[0].ids) - 1
    assert b["keep"] == max(x.n_answer for x in enc) + 1
    assert b["tokens"] == sum(len(x.ids) for x in enc)


def test_truncation_keeps_the_answer_and_the_end_of_the_prompt(tiny_base):
    codec = tiny_base.codec
    long = Example("copy " + " ".join("abcdefghij" * 6) + " =", "a b")
    (x,) = encode_examples(codec, [long], max_len=16)
    assert len(x.ids) == 16
    assert codec.decode(list(x.ids[-x.n_answer : -1])) == " a b"
    assert codec.decode(list(x.ids[: -x.n_answer])).endswith("=")


def test_padding_does_not_change_the_answer_logits(tiny_base):
    from prehoc_ray.runner.trainer import ModelCall

    codec, call = tiny_base.codec, ModelCall(tiny_base.model)
    enc = encode_examples(codec, [Example("copy a =", "a"), Example("copy a b c d e f g h =", "b")], 32)
    with torch.no_grad():
        nll_pair, _, _ = call.token_stats(tiny_base.model, collate(enc, codec.pad_id))
        nll_alone, _, _ = call.token_stats(tiny_base.model, collate(enc[:1], codec.pad_id))
    assert nll_pair[0].sum() == pytest.approx(nll_alone[0].sum().item(), abs=1e-4)


def test_batch_order_is_seeded_and_covers_each_epoch():
    n, bs = 20, 4
    epoch = [i for s in range(5) for i in batch_indices(n, bs, seed=7, step=s)]
    assert sorted(epoch) == list(range(n))
    assert batch_indices(n, bs, 7, 3) == batch_indices(n, bs, 7, 3)
    assert [batch_indices(n, bs, 7, s) for s in range(5)] != [batch_indices(n, bs, 8, s) for s in range(5)]
    # two ranks share each global batch without overlap (within an epoch)
    r0, r1 = batch_indices(n, bs, 7, 1, rank=0, world=2), batch_indices(n, bs, 7, 1, rank=1, world=2)
    assert not set(r0) & set(r1)


def test_base_models_are_cached_per_spec(tiny_base, make_tiny_model):
    data = load_task(COPY)
    again = get_base(make_tiny_model(), COPY, data.texts)
    assert again is tiny_base
    other = get_base(make_tiny_model(hidden_size=32), COPY, data.texts)
    assert other is not tiny_base
    copy = tiny_base.fresh_copy()
    assert copy is not tiny_base.model
    assert all(not p.requires_grad for p in tiny_base.model.parameters())


def test_tiny_gpt2_builds(make_tiny_model):
    data = load_task(COPY)
    base = get_base(make_tiny_model(arch="gpt2"), COPY, data.texts)
    assert base.model.config.model_type == "gpt2"


def test_missing_model_path_names_it(tmp_path):
    with pytest.raises(RunnerInputError, match="no_such_model.*does not exist"):
        get_base(ModelSpec(name="m", path=tmp_path / "no_such_model"))
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(RunnerInputError, match="empty_dir.*config.json"):
        get_base(ModelSpec(name="m", path=tmp_path / "empty_dir"))


def test_local_model_directory_loads(tmp_path, tiny_base):
    """A user's local Hugging Face directory: saved weights + a fast tokenizer."""
    from transformers import PreTrainedTokenizerFast

    from prehoc_ray.runner.models import train_bpe

    data = load_task(COPY)
    tok = PreTrainedTokenizerFast(tokenizer_object=train_bpe(data.texts(), 384), eos_token="<eos>", pad_token="<pad>")
    tiny_base.model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    base = get_base(ModelSpec(name="local", path=tmp_path / "m"))
    assert base.codec.eos_id == tiny_base.codec.eos_id
    assert base.codec.encode_batch(["copy a b ="]) == tiny_base.codec.encode_batch(["copy a b ="])
    w0 = next(iter(tiny_base.model.state_dict().values()))
    assert torch.equal(next(iter(base.model.state_dict().values())), w0)
