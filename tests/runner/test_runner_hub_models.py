"""Hugging Face models by hub id from the local cache (offline), dtype, trust_remote_code,
gradient checkpointing, per-probe copies re-read from disk, and every peft LoraConfig field.

A tiny Llama (built from a config) is saved to a local directory and laid out in a Hugging Face
cache the way huggingface_hub writes one (models--org--name/blobs, snapshots/<commit>/ links,
refs/main), then loaded by its hub id with HF_HUB_OFFLINE=1 and HF_HOME at that cache.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from prehoc_ray import types as T
from prehoc_ray.runner.data import load_task
from prehoc_ray.runner.errors import RunnerInputError
from prehoc_ray.runner.models import get_base, hub_cache_dir
from prehoc_ray.runner.probe import ProbeRequest, build_lora_model, run_probe
from prehoc_ray.spec.candidate import CandidateSpec, FinetuneConfig, ModelSpec, ProbeSettings, TaskSpec

REPO_ID = "prehoc-test/tiny-llama"
COMMIT = hashlib.sha1(b"prehoc tiny llama").hexdigest()
COPY = TaskSpec(name="copy", builtin="synthetic_copy", max_train_examples=256, eval_examples=16)
TORCH = ProbeSettings(backend="torch", eval_every=10)
CFG = {"learning_rate": 1e-2, "batch_size": 8, "max_seq_len": 32, "full_steps": 200}
REPO = Path(__file__).resolve().parents[2]


def put_in_hub_cache(cache: Path, repo_id: str, folder: Path, commit: str) -> Path:
    """`folder`'s files as huggingface_hub caches a download of `repo_id` at `commit`: content
    in blobs/, the snapshot as relative symlinks to them, the branch in refs/main."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    for f in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = repo / "snapshots" / commit / f.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return repo / "snapshots" / commit


@pytest.fixture(scope="module")
def tiny_base(make_tiny_model):
    return get_base(make_tiny_model(), COPY, load_task(COPY).texts)


@pytest.fixture(scope="module")
def saved(tiny_base, tmp_path_factory):
    """(model directory, HF_HOME): the tiny model and its tokenizer on disk, and in a cache."""
    from transformers import PreTrainedTokenizerFast

    from prehoc_ray.runner.models import train_bpe

    root = tmp_path_factory.mktemp("hf")
    tok = PreTrainedTokenizerFast(
        tokenizer_object=train_bpe(load_task(COPY).texts(), 384), eos_token="<eos>", pad_token="<pad>"
    )
    model_dir = root / "tiny-llama"
    tiny_base.model.save_pretrained(model_dir)
    tok.save_pretrained(model_dir)
    put_in_hub_cache(root / "home" / "hub", REPO_ID, model_dir, COMMIT)
    return model_dir, root / "home"


@pytest.fixture()
def hf_home(saved, monkeypatch):
    """HF_HOME at the test cache, offline, as a user's shell would set it."""
    monkeypatch.setenv("HF_HOME", str(saved[1]))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return saved[1]


def hub_candidate(config: dict | None = None, **model) -> CandidateSpec:
    return CandidateSpec(
        task=COPY, model=ModelSpec(name="hub", hub=REPO_ID, **model), config=FinetuneConfig(**{**CFG, **(config or {})})
    )


def probe(cand: CandidateSpec, path: Path, target: int = 30, seed: int = 0, settings: ProbeSettings = TORCH):
    return run_probe(ProbeRequest(cand, seed, target, path, settings, "p"))


def curve(result) -> list[tuple]:
    return [(r[T.STEP], r[T.VALUE], r[T.EVAL_LOSS], r[T.TRAIN_LOSS], r[T.GRAD_NORM]) for r in result.rows]


# ---- the cache and where it is ---------------------------------------------------------------


def test_the_test_cache_is_one_huggingface_hub_recognises(saved):
    from huggingface_hub import scan_cache_dir

    info = scan_cache_dir(saved[1] / "hub")
    assert not info.warnings, info.warnings
    (repo,) = info.repos
    assert repo.repo_id == REPO_ID and repo.repo_type == "model"
    (rev,) = repo.revisions
    assert rev.commit_hash == COMMIT and rev.refs == frozenset({"main"})
    assert {f.file_name for f in rev.files} >= {"config.json", "model.safetensors", "tokenizer.json"}


def test_a_hub_id_loads_offline_from_the_cache_by_hf_home(hf_home, saved, tiny_base, monkeypatch):
    assert hub_cache_dir() == hf_home / "hub"
    base = get_base(ModelSpec(name="hub", hub=REPO_ID))
    assert base.source == f"hub:{REPO_ID}@{COMMIT}"
    assert base.reload is not None  # a model on disk: each probe re-reads it
    want = tiny_base.model.state_dict()
    got = base.model.state_dict()
    assert set(got) == set(want)
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert base.codec.encode_batch(["copy a b ="]) == tiny_base.codec.encode_batch(["copy a b ="])
    # a commit hash resolves too (snapshots/<commit>), through HF_HUB_CACHE this time
    monkeypatch.setenv("HF_HUB_CACHE", str(hf_home / "hub"))
    monkeypatch.setenv("HF_HOME", str(hf_home.parent / "elsewhere"))
    assert get_base(ModelSpec(name="hub", hub=REPO_ID, revision=COMMIT)).source.endswith(COMMIT)


def test_a_hub_id_not_in_the_cache_is_one_line_naming_it_and_the_cache(hf_home):
    with pytest.raises(RunnerInputError) as err:
        get_base(ModelSpec(name="m", hub="HuggingFaceTB/SmolLM2-135M-Instruct"))
    msg = str(err.value)
    assert "\n" not in msg
    assert "'HuggingFaceTB/SmolLM2-135M-Instruct'" in msg and str(hf_home / "hub") in msg
    assert "hf download HuggingFaceTB/SmolLM2-135M-Instruct" in msg
    with pytest.raises(RunnerInputError, match=r"revision 'v9'.* is not in the local Hugging Face cache"):
        get_base(ModelSpec(name="m", hub=REPO_ID, revision="v9"))


def test_a_hub_id_written_as_a_path_says_to_write_hub(tmp_path):
    with pytest.raises(RunnerInputError, match=r"does not exist .*write `hub: HuggingFaceTB/SmolLM2-135M-Instruct`"):
        get_base(ModelSpec(name="m", path=tmp_path / "HuggingFaceTB" / "SmolLM2-135M-Instruct"))


def test_a_fresh_process_reads_hf_home_and_trusts_remote_code_only_when_asked(saved, tmp_path):
    """HF_HOME and HF_HUB_OFFLINE set before the process starts (as on a worker): the cache
    directory agrees with huggingface_hub's own constants, and a repository with its own
    modelling code loads only with trust_remote_code."""
    model_dir = saved[0]
    remote = tmp_path / "remote"
    remote.mkdir()
    for f in model_dir.iterdir():
        (remote / f.name).write_bytes(f.read_bytes())
    cfg = json.loads((remote / "config.json").read_text())
    cfg.update(
        model_type="tiny_remote",
        architectures=["TinyRemoteForCausalLM"],
        auto_map={
            "AutoConfig": "configuration_tiny.TinyRemoteConfig",
            "AutoModelForCausalLM": "modeling_tiny.TinyRemoteForCausalLM",
        },
    )
    (remote / "config.json").write_text(json.dumps(cfg))
    (remote / "configuration_tiny.py").write_text(
        "from transformers import LlamaConfig\n\n\nclass TinyRemoteConfig(LlamaConfig):\n    model_type = 'tiny_remote'\n"
    )
    (remote / "modeling_tiny.py").write_text(
        "from transformers import LlamaForCausalLM\n\nfrom .configuration_tiny import TinyRemoteConfig\n\n\n"
        "class TinyRemoteForCausalLM(LlamaForCausalLM):\n    config_class = TinyRemoteConfig\n"
    )
    home = tmp_path / "home"
    put_in_hub_cache(home / "hub", "someone/remote-code", remote, COMMIT)
    code = textwrap.dedent(f"""
        import huggingface_hub.constants as C
        from prehoc_ray.runner.errors import RunnerInputError
        from prehoc_ray.runner.models import get_base, hub_cache_dir
        from prehoc_ray.spec.candidate import ModelSpec
        assert str(hub_cache_dir()) == C.HF_HUB_CACHE == {str(home / "hub")!r}, (hub_cache_dir(), C.HF_HUB_CACHE)
        assert C.HF_HUB_OFFLINE
        try:
            get_base(ModelSpec(name="r", hub="someone/remote-code"))
        except RunnerInputError as e:
            assert "trust_remote_code" in str(e), e
        else:
            raise AssertionError("custom code ran without trust_remote_code")
        base = get_base(ModelSpec(name="r", hub="someone/remote-code", trust_remote_code=True))
        assert type(base.model).__name__ == "TinyRemoteForCausalLM", type(base.model)
        assert type(base.fresh_copy()).__name__ == "TinyRemoteForCausalLM"
        print("ok")
    """)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(home), HF_HUB_OFFLINE="1", PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.strip().endswith("ok"), r.stderr[-3000:]
    # and the precedence of the other variables, against huggingface_hub's constants each time
    check = "import huggingface_hub.constants as C; from prehoc_ray.runner.models import hub_cache_dir; print(hub_cache_dir() == __import__('pathlib').Path(C.HF_HUB_CACHE))"
    for extra in (
        {"HF_HUB_CACHE": str(tmp_path / "a"), "HF_HOME": str(tmp_path / "b")},
        {"HUGGINGFACE_HUB_CACHE": str(tmp_path / "c")},
        {"XDG_CACHE_HOME": str(tmp_path / "x")},
        {},
    ):
        env2 = {k: v for k, v in env.items() if k != "HF_HOME"} | extra
        out = subprocess.run([sys.executable, "-c", check], env=env2, capture_output=True, text=True, timeout=120)
        assert out.stdout.strip() == "True", (extra, out.stderr[-2000:])


# ---- loading: dtype, per-probe copies ----------------------------------------------------------


def test_fresh_copies_of_a_model_on_disk_are_re_read_not_deep_copied(hf_home, saved):
    base = get_base(ModelSpec(name="local", path=saved[0]))
    a, b = base.fresh_copy(), base.fresh_copy()
    ref = base.model.state_dict()
    for copy_ in (a, b):
        sd = copy_.state_dict()
        assert all(torch.equal(sd[k], ref[k]) for k in ref)
        assert not copy_.training and not any(p.requires_grad for p in copy_.parameters())
    # private storage: nothing of a copy aliases the resident model or the other copy
    resident = {p.data_ptr() for p in base.model.parameters()}
    assert not resident & {p.data_ptr() for p in a.parameters()}
    assert not {p.data_ptr() for p in a.parameters()} & {p.data_ptr() for p in b.parameters()}


def test_bf16_weights_load_as_bf16_and_the_adapters_train_in_fp32(hf_home, tmp_path):
    cand = hub_candidate(dtype="bf16")
    base = get_base(cand.model)
    assert {p.dtype for p in base.model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in base.fresh_copy().parameters()} == {torch.bfloat16}
    model = build_lora_model(base, cand.config, seed=0)
    trainable = {n: p.dtype for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and set(trainable.values()) == {torch.float32}, trainable
    frozen = {p.dtype for p in model.parameters() if not p.requires_grad}
    assert frozen == {torch.bfloat16}
    result = probe(cand, tmp_path, target=20)
    assert [r[T.STEP] for r in result.rows] == [10, 20]
    assert all(math.isfinite(r[T.EVAL_LOSS]) and math.isfinite(r[T.TRAIN_LOSS]) for r in result.rows)


# ---- probes on a hub model ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_runs(saved, make_copy_candidate, tmp_path_factory):
    """The same probe (seed 0, 30 steps) on the tiny model deep-copied in memory, on its copy
    loaded by hub id (re-read from the cache per probe), and with gradient checkpointing."""
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HOME", str(saved[1]))
    mp.delenv("HF_HUB_CACHE", raising=False)
    mp.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    root = tmp_path_factory.mktemp("runs")
    try:
        return {
            "tiny": probe(make_copy_candidate(**CFG), root / "tiny"),
            "hub": probe(hub_candidate(), root / "hub"),
            "hub_again": probe(hub_candidate(), root / "hub_again"),
            "checkpointed": probe(hub_candidate(gradient_checkpointing=True), root / "gc"),
        }
    finally:
        mp.undo()


def test_a_probe_on_the_hub_copy_computes_the_curve_of_the_model_in_memory(default_runs):
    """Re-reading the weights from disk per probe changes nothing: the curve is the deep copy's."""
    assert curve(default_runs["hub"]) == curve(default_runs["tiny"])
    assert curve(default_runs["hub_again"]) == curve(default_runs["hub"])


def test_gradient_checkpointing_recomputes_the_same_curve(default_runs, hf_home):
    assert [r[T.STEP] for r in default_runs["checkpointed"].rows] == [10, 20, 30]
    for a, b in zip(default_runs["checkpointed"].rows, default_runs["hub"].rows):
        for k in (T.VALUE, T.EVAL_LOSS, T.TRAIN_LOSS, T.GRAD_NORM):
            assert a[k] == pytest.approx(b[k], rel=1e-4, abs=1e-5), (a[T.STEP], k)
    from prehoc_ray.runner.models import is_checkpointing

    # on in training: the backward pass runs the adapted layers forward again (early-stopping
    # recomputation: as far as the saved tensors of trained parameters reach)
    for on in (False, True):
        model = build_lora_model(get_base(hub_candidate(gradient_checkpointing=on).model), FinetuneConfig(), seed=0)
        calls = []
        model.get_submodule("base_model.model.model.layers.0.self_attn.v_proj").register_forward_hook(
            lambda *a, calls=calls: calls.append(1)
        )
        model.train()
        ids = torch.tensor([[3, 4, 5, 6]])
        model(input_ids=ids, labels=ids).loss.backward()
        assert len(calls) == (2 if on else 1), (on, len(calls))
    assert is_checkpointing(
        build_lora_model(get_base(hub_candidate(gradient_checkpointing=True).model), FinetuneConfig(), seed=0)
    )
    assert not is_checkpointing(build_lora_model(get_base(hub_candidate().model), FinetuneConfig(), seed=0))


# ---- every LoraConfig field --------------------------------------------------------------------


LINEAR = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_all_linear_dora_and_rslora_reach_peft(hf_home):
    base = get_base(ModelSpec(name="hub", hub=REPO_ID))
    cfg = FinetuneConfig(
        lora={"r": 4, "lora_alpha": 8, "target_modules": "all-linear", "use_dora": True, "use_rslora": True}
    )
    assert (cfg.lora_r, cfg.lora_alpha, cfg.target_modules, cfg.lora) == (
        4,
        8,
        "all-linear",
        {"use_dora": True, "use_rslora": True},
    )
    model = build_lora_model(base, cfg, seed=0)
    peft_cfg = model.peft_config["default"]
    assert peft_cfg.use_dora and peft_cfg.use_rslora and peft_cfg.r == 4
    assert peft_cfg.task_type == "CAUSAL_LM" and not peft_cfg.inference_mode
    names = adapted(model)
    assert {n.split(".")[-1] for n in names} == LINEAR  # every linear layer but the output head
    assert len(names) == 2 * len(LINEAR)  # in both layers
    magnitudes = [n for n, p in model.named_parameters() if "lora_magnitude_vector" in n and p.requires_grad]
    assert len(magnitudes) == len(names)  # DoRA: a trained magnitude per adapted layer
    assert model.get_submodule(names[0]).scaling["default"] == pytest.approx(
        8 / math.sqrt(4)
    )  # rsLoRA: alpha / sqrt(r)


def test_layers_to_transform_and_rank_pattern_reach_peft(hf_home):
    base = get_base(ModelSpec(name="hub", hub=REPO_ID))
    cfg = FinetuneConfig(
        target_modules=["q_proj", "v_proj"], lora={"layers_to_transform": [1], "rank_pattern": {"v_proj": 2}}
    )
    names = adapted(build_lora_model(base, cfg, seed=0))
    assert sorted(n.split("layers.")[1] for n in names) == ["1.self_attn.q_proj", "1.self_attn.v_proj"]
    model = build_lora_model(base, cfg, seed=0)
    ranks = {n.split(".")[-1]: model.get_submodule(n).r["default"] for n in adapted(model)}
    assert ranks == {"q_proj": cfg.lora_r, "v_proj": 2}


def adapted(model) -> list[str]:
    return [n for n, m in model.named_modules() if hasattr(m, "lora_A") and "default" in m.lora_A]


def test_a_probe_with_all_linear_and_dora_trains(hf_home, tmp_path):
    cand = hub_candidate({"target_modules": "all-linear", "lora": {"use_dora": True}})
    first = probe(cand, tmp_path, target=30)
    rows = first.rows
    assert [r[T.STEP] for r in rows] == [10, 20, 30]
    assert all(math.isfinite(r[T.EVAL_LOSS]) for r in rows)
    assert rows[-1][T.TRAIN_LOSS] < rows[0][T.TRAIN_LOSS] and rows[-1][T.EVAL_LOSS] < rows[0][T.EVAL_LOSS]
    # the DoRA magnitudes are in the checkpoint: resuming 30 -> 40 equals 0 -> 40 in one go
    resumed = probe(cand, tmp_path, target=40)
    whole = probe(cand, tmp_path / "whole", target=40)
    assert resumed.start_step == 30
    for a, b in zip(resumed.rows, whole.rows):
        assert a[T.EVAL_LOSS] == pytest.approx(b[T.EVAL_LOSS], rel=1e-6, abs=1e-7)


def test_dora_on_bf16_weights_under_deepspeed_zero3_trains_and_resumes(hf_home, tmp_path):
    zero3 = ProbeSettings(backend="deepspeed", eval_every=10, zero_stage=3, precision="fp32")
    cand = hub_candidate({"target_modules": "all-linear", "lora": {"use_dora": True}}, dtype="bf16")
    first = probe(cand, tmp_path, target=20, settings=zero3)
    resumed = probe(cand, tmp_path, target=30, settings=zero3)
    assert first.backend == "deepspeed" and resumed.start_step == 20 and resumed.steps_run == 10
    assert resumed.rows[:2] == first.rows
    losses = [r[T.EVAL_LOSS] for r in resumed.rows]
    assert all(math.isfinite(x) for x in losses) and losses[2] < losses[0]


def test_an_unknown_lora_field_is_one_line_naming_it_and_the_fields(hf_home, tmp_path):
    cand = hub_candidate({"lora": {"use_dorra": True}})
    with pytest.raises(RunnerInputError) as err:
        probe(cand, tmp_path, target=10)
    msg = str(err.value)
    assert "\n" not in msg
    assert "config 'default': lora.use_dorra is not a field of peft's LoraConfig" in msg
    assert "did you mean 'use_dora'?" in msg and "use_rslora" in msg and "layers_to_transform" in msg


def test_a_value_peft_refuses_is_one_line_naming_the_lora_settings(hf_home):
    from prehoc_ray.runner.lora import lora_config

    with pytest.raises(
        RunnerInputError, match=r"config 'default': peft's LoraConfig refuses the lora settings: .*layers_to_transform"
    ):
        lora_config(FinetuneConfig(lora={"layers_pattern": "layers"}))


def test_a_peft_config_dataclass_field_may_be_a_mapping():
    from peft.tuners.lora.config import LoraRuntimeConfig

    from prehoc_ray.runner.lora import lora_config

    cfg = lora_config(FinetuneConfig(lora={"use_dora": True, "runtime_config": {"ephemeral_gpu_offload": True}}))
    assert isinstance(cfg.runtime_config, LoraRuntimeConfig) and cfg.runtime_config.ephemeral_gpu_offload


# ---- validate ----------------------------------------------------------------------------------


def test_validate_checks_lora_fields_with_peft_and_warns_on_a_hub_model_not_cached(hf_home, tmp_path):
    import yaml

    from prehoc_ray.cli.validate import validate_file

    spec = {
        "name": "j",
        "tasks": [{"name": "t", "builtin": "synthetic_copy"}],
        "models": [
            {"name": "cached", "hub": REPO_ID, "dtype": "bf16"},
            {"name": "absent", "hub": "HuggingFaceTB/SmolLM2-135M-Instruct"},
        ],
        "configs": [
            {"name": "ok", "target_modules": "all-linear", "lora": {"use_dora": True}},
            {"name": "typo", "lora": {"use_rslorra": True}},
        ],
        "budget": {"probe_seconds": 60},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    job, schema_errors, problems = validate_file(path)
    assert job is not None and not schema_errors
    errors = [p for p in problems if p.error]
    assert [(p.field, p.error) for p in errors] == [("configs.1.lora", True)], problems
    assert "lora.use_rslorra is not a field of peft's LoraConfig (peft" in errors[0].message
    absent = [p for p in problems if p.field == "models.1.hub"]
    assert len(absent) == 1 and not absent[0].error
    assert "not in the local Hugging Face cache" in absent[0].message and str(hf_home / "hub") in absent[0].message
    assert not [p for p in problems if p.field.startswith("models.0")]


def test_the_shipped_hugging_face_example_validates():
    from prehoc_ray.cli.validate import validate_file

    job, schema_errors, problems = validate_file(REPO / "jobs" / "hf_example.yaml")
    assert job is not None and not schema_errors, schema_errors
    assert not [p for p in problems if p.error and not p.field.startswith("tasks.")], problems
    model = job.models[0]
    assert model.hub and model.dtype == "bf16"
    assert any(c.target_modules == "all-linear" and (c.lora or {}).get("use_dora") for c in job.configs)
