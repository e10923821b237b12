"""The job spec: a portfolio of candidates, a probe budget, and how to decide.

A YAML file users copy from jobs/. Candidates are the cross product tasks x models x configs
unless `candidates` lists the triples explicitly. Every model here rejects unknown keys so a
typo is an error naming the field, not a silently ignored setting.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from prehoc_ray.spec.candidate import CandidateSpec, FinetuneConfig, ModelSpec, ProbeSettings, TaskSpec


class SpecError(ValueError):
    """A job spec that cannot be used; the message names the file and the field."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BudgetSpec(_Strict):
    probe_seconds: float = Field(gt=0)  # device-seconds for all probes (GPU-s on GPUs, CPU-s locally)
    full_finetune_seconds: float | None = Field(None, gt=0)  # for the plan; None: no cap


class AllocationSpec(_Strict):
    seeds: int = Field(3, ge=2)
    initial_steps: int = Field(30, ge=3)  # must be >= 3 x probe.eval_every
    growth: float = Field(2.0, gt=1)
    max_depth_fraction: float = Field(0.5, gt=0, le=1)  # probes stop at this fraction of full_steps
    tolerance: float = Field(0.02, gt=0)  # tolerated std of a predicted score (metric units)
    gamma: float | None = Field(None, gt=0)  # price of risk per device-second; None: derived
    level: float = Field(0.9, gt=0, lt=1)
    max_concurrent_probes: int = Field(4, ge=1)  # also the number of candidates extended per round
    max_retries: int = Field(2, ge=0)
    probe_timeout_s: float = Field(3600, gt=0)
    # Before the first probe is measured, probes are admitted while this x their guessed cost fits.
    prior_cost_margin: float = Field(3.0, ge=1)
    seed: int = 0
    # What probes are bought for: "decision" (the per-task choice of which full fine-tune to run:
    # expected regret reduction per device-second) or "prediction" (every candidate's prediction
    # variance). See prehoc_ray/core/decision.py.
    objective: Literal["decision", "prediction"] = "decision"


class PlanSpec(_Strict):
    mode: Literal["max", "min"] = "max"  # is a larger task metric better?
    baselines: dict[str, float] = Field(default_factory=dict)  # task -> score a full run must beat
    confidence: float = Field(0.8, gt=0, lt=1)  # required P(beats baseline) to recommend a run


class ClusterSpec(_Strict):
    address: str | None = None  # default: RAY_ADDRESS, else an embedded local Ray
    namespace: str = "prehoc"
    runtime_env: dict | None = None


class JobSpec(_Strict):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    tasks: list[TaskSpec] = Field(min_length=1)
    models: list[ModelSpec] = Field(min_length=1)
    configs: list[FinetuneConfig] = Field(default_factory=lambda: [FinetuneConfig()])
    candidates: list[tuple[str, str, str]] | None = None  # explicit (task, model, config) names
    probe: ProbeSettings = ProbeSettings()
    budget: BudgetSpec
    allocation: AllocationSpec = AllocationSpec()
    plan: PlanSpec = PlanSpec()
    cluster: ClusterSpec = ClusterSpec()
    backend: Literal["real", "simulated"] = "real"  # simulated: synthetic curves, for tests and dry runs
    # Completed past fine-tunes of the tasks (a trajectory file as `prehoc-ray analyze` reads it:
    # candidate, step, value, group = the task name, final, horizon, static_* columns). Tasks
    # with at least 8 finals there get predictions, intervals and L(0) from a population model.
    history: str | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "JobSpec":
        for kind, items in (("tasks", self.tasks), ("models", self.models), ("configs", self.configs)):
            names = [i.name for i in items]
            dup = sorted({n for n in names if names.count(n) > 1})
            if dup:
                raise ValueError(f"{kind}: duplicate name(s) {', '.join(dup)}")
        if self.candidates is not None:
            t, m, c = ({i.name for i in xs} for xs in (self.tasks, self.models, self.configs))
            seen: dict[tuple[str, str, str], int] = {}
            for k, (tn, mn, cn) in enumerate(self.candidates):
                for kind, name, known in (("task", tn, t), ("model", mn, m), ("config", cn, c)):
                    if name not in known:
                        raise ValueError(f"candidates[{k}]: unknown {kind} {name!r} (known: {', '.join(sorted(known))})")
                # a repeated triple would be one candidate id twice: the engine and the actor
                # names need them unique, so say it here rather than after Ray has started
                if (tn, mn, cn) in seen:
                    raise ValueError(f"candidates[{k}]: ({tn}, {mn}, {cn}) repeats candidates[{seen[(tn, mn, cn)]}]")
                seen[(tn, mn, cn)] = k
        if self.allocation.initial_steps < 3 * self.probe.eval_every:
            raise ValueError(
                f"allocation.initial_steps ({self.allocation.initial_steps}) must be >= 3 x probe.eval_every "
                f"({self.probe.eval_every}) so the first probe yields three evaluation points"
            )
        unknown = sorted(set(self.plan.baselines) - {t.name for t in self.tasks})
        if unknown:
            raise ValueError(f"plan.baselines: unknown task(s) {', '.join(unknown)}")
        return self

    def candidate_specs(self) -> list[CandidateSpec]:
        tasks = {t.name: t for t in self.tasks}
        models = {m.name: m for m in self.models}
        configs = {c.name: c for c in self.configs}
        triples = self.candidates or list(itertools.product(tasks, models, configs))
        return [CandidateSpec(task=tasks[t], model=models[m], config=configs[c]) for t, m, c in triples]

    def spec_hash(self) -> str:
        """Stable across key order and formatting: names a run and a Ray job submission."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _format_errors(path: Path, err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"{path}: {loc}: {msg}")
    return "\n".join(lines)


def load_job(path: str | Path) -> JobSpec:
    """Read and validate a job spec; relative data/model paths resolve against the spec's folder."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: job spec not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise SpecError(f"{path}: not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    base = path.resolve().parent
    if isinstance(raw.get("history"), str) and not Path(raw["history"]).is_absolute():
        raw["history"] = str(base / raw["history"])
    for section, key in (("tasks", "path"), ("models", "path")):
        for item in raw.get(section) or []:
            if isinstance(item, dict) and item.get(key) and not Path(str(item[key])).is_absolute():
                item[key] = str(base / str(item[key]))
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as e:
        raise SpecError(_format_errors(path, e)) from None
