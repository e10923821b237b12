"""The job spec: a portfolio of candidates, a probe budget, and how to decide.

A YAML file users copy from jobs/. Candidates are the cross product tasks x models x configs
unless `candidates` lists the triples explicitly. Every model here rejects unknown keys so a
typo is an error naming the field, not a silently ignored setting.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

# _Strict: unknown keys forbidden, .inf/.nan refused, bounds named even for 1.0e+30
from prehoc_ray.spec.candidate import (
    MAX_NAME,
    MAX_SEED,
    MAX_STEPS,
    NAME_PATTERN,
    CandidateSpec,
    FinetuneConfig,
    ModelSpec,
    ProbeSettings,
    TaskSpec,
    _Strict,
    check_deepspeed_probe,
)
from prehoc_ray.spec.safe_yaml import YAMLInputError, line_of, load_yaml, show_key

MAX_CANDIDATES = 100_000  # tasks x models x configs (or the explicit list); the engine is timed at 10,000


class SpecError(ValueError):
    """A job spec that cannot be used; the message names the file and the field."""


class BudgetSpec(_Strict):
    probe_seconds: float = Field(gt=0, le=1e10)  # device-seconds for all probes (GPU-s on GPUs, CPU-s locally)
    full_finetune_seconds: float | None = Field(None, gt=0, le=1e12)  # for the plan; None: no cap


class AllocationSpec(_Strict):
    seeds: int = Field(3, ge=2, le=1000)
    initial_steps: int = Field(30, ge=3, le=MAX_STEPS)  # must be >= 3 x probe.eval_every
    growth: float = Field(2.0, gt=1, le=1000)
    max_depth_fraction: float = Field(0.5, gt=0, le=1)  # probes stop at this fraction of full_steps
    tolerance: float = Field(0.02, gt=0)  # tolerated std of a predicted score (metric units)
    gamma: float | None = Field(None, gt=0)  # price of risk per device-second; None: derived
    level: float = Field(0.9, gt=0, lt=1)
    max_concurrent_probes: int = Field(4, ge=1, le=100_000)  # also the number of candidates extended per round
    max_retries: int = Field(2, ge=0, le=1000)
    probe_timeout_s: float = Field(3600, gt=0, le=1e8)
    # Before the first probe is measured, probes are admitted while this x their guessed cost fits.
    prior_cost_margin: float = Field(3.0, ge=1, le=1e6)
    seed: int = Field(0, ge=0, le=MAX_SEED)
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
    name: str = Field(min_length=1, max_length=MAX_NAME, pattern=NAME_PATTERN)
    description: str = Field("", max_length=100_000)
    tasks: list[TaskSpec] = Field(min_length=1, max_length=MAX_CANDIDATES)
    models: list[ModelSpec] = Field(min_length=1, max_length=MAX_CANDIDATES)
    configs: list[FinetuneConfig] = Field(default_factory=lambda: [FinetuneConfig()], max_length=MAX_CANDIDATES)
    # explicit (task, model, config) names
    candidates: list[tuple[str, str, str]] | None = Field(None, max_length=MAX_CANDIDATES)
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
    # Recorded full fine-tune results of these candidates (io/truth.py: a recording directory
    # of benchmarks/record_demo.py, or a table with candidate, final). When set, the plan and
    # the report show each candidate's true result next to its prediction and the regret of the
    # plan's picks. It changes nothing the run does, so it is not part of the spec hash.
    truth: str | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _consistent(self) -> JobSpec:
        for kind, items in (("tasks", self.tasks), ("models", self.models), ("configs", self.configs)):
            names = [i.name for i in items]
            dup = sorted({n for n, k in Counter(names).items() if k > 1})
            if dup:
                raise ValueError(f"{kind}: duplicate name(s) {_names(dup)}")
        if self.candidates is None:
            n = len(self.tasks) * len(self.models) * len(self.configs)
            if n > MAX_CANDIDATES:
                raise ValueError(
                    f"tasks x models x configs: {len(self.tasks)} x {len(self.models)} x {len(self.configs)} "
                    f"= {n:,} candidates, more than {MAX_CANDIDATES:,}"
                )
        else:
            t, m, c = ({i.name for i in xs} for xs in (self.tasks, self.models, self.configs))
            seen: dict[tuple[str, str, str], int] = {}
            for k, (tn, mn, cn) in enumerate(self.candidates):
                for kind, name, known in (("task", tn, t), ("model", mn, m), ("config", cn, c)):
                    if name not in known:
                        raise ValueError(
                            f"candidates[{k}]: unknown {kind} {show_key(name)!r} (known: {_names(sorted(known))})"
                        )
                # a repeated triple would be one candidate id twice: the engine and the actor
                # names need them unique, so say it here rather than after Ray has started
                if (tn, mn, cn) in seen:
                    raise ValueError(f"candidates[{k}]: repeats candidates[{seen[(tn, mn, cn)]}]")
                seen[(tn, mn, cn)] = k
        if self.allocation.initial_steps < 3 * self.probe.eval_every:
            raise ValueError(
                f"allocation.initial_steps ({self.allocation.initial_steps}) must be >= 3 x probe.eval_every "
                f"({self.probe.eval_every}) so the first probe yields three evaluation points"
            )
        for k, config in enumerate(self.configs):  # a ds_config and the probe settings must agree
            if config.deepspeed is not None:
                try:
                    check_deepspeed_probe(config.deepspeed, self.probe)
                except ValueError as e:
                    raise ValueError(f"configs[{k}]: {e}") from None
        unknown = sorted(set(self.plan.baselines) - {t.name for t in self.tasks})
        if unknown:
            raise ValueError(f"plan.baselines: unknown task(s) {_names(unknown)}")
        return self

    def candidate_specs(self) -> list[CandidateSpec]:
        tasks = {t.name: t for t in self.tasks}
        models = {m.name: m for m in self.models}
        configs = {c.name: c for c in self.configs}
        triples = self.candidates or list(itertools.product(tasks, models, configs))
        return [CandidateSpec(task=tasks[t], model=models[m], config=configs[c]) for t, m, c in triples]

    def spec_hash(self) -> str:
        """Stable across key order and formatting: names a run and a Ray job submission.
        cluster.runtime_env.env_vars values (secrets) do not count: a redacted copy hashes the same."""
        from prehoc_ray.spec.redact import redact_env_vars

        blob = json.dumps(redact_env_vars(self.model_dump(mode="json", exclude=_NOT_HASHED)), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


# Fields that change nothing a run does (what it probes, decides or writes into its plan).
_NOT_HASHED = {"truth"}


def _names(names: list[str], most: int = 10) -> str:
    """Names for a message: each truncated, at most `most` of them."""
    shown = ", ".join(show_key(n) for n in names[:most])
    return shown + (f", ... ({len(names) - most} more)" if len(names) > most else "")


# "tasks: ...", "candidates[3]: ...", "allocation.initial_steps (10) ...": the field a model
# validator's message starts with, to find its line
_FIELD_PREFIX = re.compile(r"^(?:Value error, )?([A-Za-z_]+(?:\.[A-Za-z_]+)*)(?:\[(\d+)\])?[: (]")


def _where(path: Path, root: Any, loc: tuple[Any, ...], msg: str) -> str:
    if not loc:
        m = _FIELD_PREFIX.match(msg)
        if m:
            loc = tuple(m.group(1).split(".")) + ((int(m.group(2)),) if m.group(2) else ())
    line = line_of(root, loc)
    return f"{path}" if line is None else f"{path}:{line}"


def _format_errors(path: Path, err: ValidationError, root: Any = None) -> str:
    """One line per error: file:line, the dotted field, what is wrong. Never the value found
    (`input`), and of a key at most its first characters: the file may hold secrets."""
    lines = []
    for e in err.errors(include_input=False, include_url=False):
        loc = tuple(e["loc"])
        field = ".".join(show_key(p) for p in loc) or "(top level)"
        msg = " ".join(str(e["msg"]).split())
        if e["type"] == "extra_forbidden":
            msg = "unknown key"
        if len(msg) > 300:
            msg = msg[:297] + "..."
        lines.append(f"{_where(path, root, loc, msg)}: {field}: {msg}")
    return "\n".join(lines)


def _resolve_files(files: Any, base: Path) -> Any:
    """data_files (a path, a list of them, or split -> path(s)) with relative paths made
    relative to the spec's folder; anything else is left for validation to name."""
    if isinstance(files, str):
        return files if not files or Path(files).is_absolute() else str(base / files)
    if isinstance(files, list):
        return [_resolve_files(f, base) for f in files]
    if isinstance(files, dict):
        return {k: _resolve_files(v, base) for k, v in files.items()}
    return files


def load_job(path: str | Path) -> JobSpec:
    """Read and validate a job spec; relative data/model paths resolve against the spec's folder.

    Raises SpecError, one line per problem, `FILE[:LINE]: FIELD: what is wrong`; the file's own
    text never appears beyond the name of an offending key (truncated): see spec/safe_yaml.py.
    """
    path = Path(path)
    if path.is_dir():
        raise SpecError(f"{path}: is a directory, expected a job spec file (.yaml)")
    if not path.exists():
        raise SpecError(f"{path}: job spec not found")
    try:
        raw, root = load_yaml(path, what="job spec")
    except YAMLInputError as e:
        where = f"{path}" if e.line is None else f"{path}:{e.line}"
        raise SpecError(f"{where}: {e.problem}") from None
    except OSError as e:
        raise SpecError(f"{path}: cannot read the job spec: {e.strerror or type(e).__name__}") from None
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    if raw and not set(map(str, raw)) & set(JobSpec.model_fields):
        # a file that is no job spec at all (`validate ~/.netrc`): one line, none of its keys
        raise SpecError(
            f"{path}:{line_of(root, ())}: not a job spec: none of its {len(raw)} top-level key(s) is a job spec "
            f"field (expected {', '.join(f for f, i in JobSpec.model_fields.items() if i.is_required())}, ...)"
        )
    base = path.resolve().parent
    for key in ("history", "truth"):
        if isinstance(raw.get(key), str) and raw[key] and not Path(raw[key]).is_absolute():
            # truth is not hashed, so it may be shown normalised; history keeps its hashed form
            raw[key] = os.path.normpath(base / raw[key]) if key == "truth" else str(base / raw[key])
    for section, key in (("tasks", "path"), ("models", "path"), ("configs", "deepspeed")):
        items = raw.get(section)
        for item in items if isinstance(items, list) else []:
            if (
                isinstance(item, dict)
                and isinstance(item.get(key), str)
                and item[key]
                and not Path(item[key]).is_absolute()
            ):
                item[key] = str(base / item[key])
    for item in raw.get("tasks") if isinstance(raw.get("tasks"), list) else []:
        if isinstance(item, dict) and "data_files" in item:  # `dataset:` tasks' local files
            item["data_files"] = _resolve_files(item["data_files"], base)
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as e:
        raise SpecError(_format_errors(path, e, root)) from None
