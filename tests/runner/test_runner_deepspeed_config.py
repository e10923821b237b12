"""A user's ds_config.json through real DeepSpeed on CPU (issue 16 item 4): "auto" values resolved
as Hugging Face Trainer resolves them (checked against transformers' own
HfTrainerDeepSpeedConfig), ZeRO-3 with bf16, CPU offload, the ds_config's own optimizer and
scheduler, and the key a probe cannot honour named in one line."""

from __future__ import annotations

import json
import math
import types

import pytest
import torch

from prehoc_ray import types as T
from prehoc_ray.runner import checkpoint as ck
from prehoc_ray.runner.data import load_task
from prehoc_ray.runner.ds_config import merged_ds_config, probe_numerics
from prehoc_ray.runner.errors import RunnerInputError
from prehoc_ray.runner.models import get_base
from prehoc_ray.runner.probe import ProbeRequest, build_lora_model, run_probe
from prehoc_ray.runner.trainer import ModelCall, ensure_dist_env, make_engine
from prehoc_ray.spec.candidate import CandidateSpec, FinetuneConfig, ModelSpec, ProbeSettings, TaskSpec
from prehoc_ray.spec.job import load_job

pytest.importorskip("deepspeed")

COPY = TaskSpec(name="copy", builtin="synthetic_copy", max_train_examples=256, eval_examples=16)
CFG = {"learning_rate": 1e-2, "batch_size": 4, "max_seq_len": 32, "full_steps": 200}
DS = ProbeSettings(backend="deepspeed", eval_every=10)  # precision auto: the ds_config decides
# what a Hugging Face user's ZeRO-3 config looks like (the "auto" everywhere Trainer fills in)
ZERO3_BF16 = {
    "bf16": {"enabled": True},
    "fp16": {"enabled": "auto"},
    "optimizer": {
        "type": "AdamW",
        "params": {"lr": "auto", "betas": "auto", "eps": "auto", "weight_decay": "auto", "torch_adam": True},
    },
    "scheduler": {
        "type": "WarmupDecayLR",
        "params": {
            "warmup_min_lr": "auto",
            "warmup_max_lr": "auto",
            "warmup_num_steps": "auto",
            "total_num_steps": "auto",
        },
    },
    "zero_optimization": {
        "stage": 3,
        "overlap_comm": True,
        "contiguous_gradients": True,
        "reduce_bucket_size": "auto",
        "stage3_prefetch_bucket_size": "auto",
        "stage3_param_persistence_threshold": "auto",
        "stage3_gather_16bit_weights_on_model_save": True,
    },
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
    "steps_per_print": 2000,
    "train_batch_size": "auto",
    "train_micro_batch_size_per_gpu": "auto",
    "wall_clock_breakdown": False,
}


def candidate(**config) -> CandidateSpec:
    model = ModelSpec(
        name="tiny",
        tiny={"arch": "llama", "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 384},
    )
    return CandidateSpec(task=COPY, model=model, config=FinetuneConfig(**{**CFG, **config}))


def _paths(value, prefix=""):
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _paths(v, f"{prefix}{k}.")]
    return [prefix[:-1]]


def _at(value, path):
    for part in path.split("."):
        value = value[part]
    return value


def test_auto_values_resolve_as_huggingface_trainer_resolves_them():
    """Every key of the user's config ends up where transformers' HfTrainerDeepSpeedConfig puts it
    for the same training arguments (Trainer's own code, not a copy of it)."""
    pytest.importorskip("accelerate")
    from transformers.integrations.deepspeed import HfTrainerDeepSpeedConfig, unset_hf_deepspeed_config

    config = FinetuneConfig(
        **{
            **CFG,
            "gradient_accumulation_steps": 2,
            "warmup_ratio": 0.05,
            "weight_decay": 0.01,
            "adam_beta2": 0.95,
            "max_grad_norm": 0.7,
        },
        deepspeed=ZERO3_BF16,
    )
    world, hidden = 2, 64
    ours = merged_ds_config(config, world=world, precision="bf16", zero_stage=3, hidden_size=hidden)
    args = types.SimpleNamespace(
        world_size=world,
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        max_grad_norm=config.max_grad_norm,
        learning_rate=config.learning_rate,
        adam_beta1=config.adam_beta1,
        adam_beta2=config.adam_beta2,
        adam_epsilon=config.adam_epsilon,
        weight_decay=config.weight_decay,
        save_on_each_node=False,
        fp16=False,
        fp16_full_eval=False,
        bf16=True,
        bf16_full_eval=False,
        get_warmup_steps=lambda n: math.ceil(n * config.warmup_ratio),
    )
    model = types.SimpleNamespace(config=types.SimpleNamespace(hidden_size=hidden))
    try:
        hf = HfTrainerDeepSpeedConfig(json.loads(json.dumps(ZERO3_BF16)))
        hf.trainer_config_process(args)
        hf.trainer_config_finalize(args, model, config.full_steps)
        theirs = hf.config
    finally:
        unset_hf_deepspeed_config()
    probe_owned = {"steps_per_print"}  # logging is the probe's
    for path in _paths(ZERO3_BF16):
        if path not in probe_owned:
            assert _at(ours, path) == _at(theirs, path), path
    assert ours["train_batch_size"] == 4 * 2 * 2 and ours["scheduler"]["params"]["warmup_num_steps"] == 10
    assert ours["zero_optimization"]["reduce_bucket_size"] == 64 * 64 and ours["gradient_clipping"] == 0.7
    assert ours["steps_per_print"] == 10**9 and "auto" not in json.dumps(ours)


def test_a_config_without_ds_config_gets_the_config_probes_always_ran():
    ds = merged_ds_config(FinetuneConfig(**CFG), world=2, precision="fp32", zero_stage=2)
    assert ds == {
        "train_micro_batch_size_per_gpu": 4,
        "gradient_accumulation_steps": 1,
        "train_batch_size": 8,
        "gradient_clipping": 1.0,
        "zero_optimization": {"stage": 2},
        "bf16": {"enabled": False},
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }


@pytest.mark.parametrize(
    "ds,kwargs,expected",
    [
        (
            {"train_batch_size": 4},
            {"world": 2},
            "deepspeed.train_batch_size: 4 disagrees with batch_size x gradient_accumulation_steps x world size (4 x 1 x 2)",
        ),
        (
            {"zero_optimization": {"stage": 2, "reduce_bucket_size": "auto"}},
            {"hidden_size": None},
            'deepspeed.zero_optimization.reduce_bucket_size: "auto" needs the model\'s hidden_size',
        ),
        (
            {"zero_optimization": {"stage": 2, "allgather_bucket_size": "auto"}},
            {},
            'deepspeed.zero_optimization.allgather_bucket_size: "auto" is not a value a probe can resolve',
        ),
        ({"checkpoint": {"use_node_local_storage": True}}, {}, "deepspeed.checkpoint: a probe cannot honour it"),
    ],
)
def test_what_the_probe_cannot_resolve_is_one_line_naming_the_key(ds, kwargs, expected):
    # built without load_job (as the Python API may): the runner checks again
    config = FinetuneConfig.model_construct(**FinetuneConfig(**CFG).model_dump(), deepspeed=ds)
    with pytest.raises(RunnerInputError) as err:
        merged_ds_config(config, **{"world": 1, "precision": "fp32", "zero_stage": 2, "hidden_size": 64, **kwargs})
    msg = str(err.value)
    assert "\n" not in msg and msg.startswith("config 'default': ") and expected in msg, msg


def test_the_ds_config_decides_precision_and_stage_where_it_says():
    cpu = torch.device("cpu")
    assert probe_numerics(FinetuneConfig(**CFG), DS, cpu) == ("fp32", 0)
    assert probe_numerics(FinetuneConfig(**CFG, deepspeed=ZERO3_BF16), DS, cpu) == ("bf16", 3)
    auto = {"bf16": {"enabled": "auto"}, "zero_optimization": {"stage": 1}}
    assert probe_numerics(FinetuneConfig(**CFG, deepspeed=auto), DS, cpu) == ("fp32", 1)  # auto: CPU has no fast bf16
    off = {"bf16": {"enabled": False}}
    assert (
        probe_numerics(FinetuneConfig(**CFG, deepspeed=off), DS.model_copy(update={"precision": "auto"}), cpu)[0]
        == "fp32"
    )
    with pytest.raises(RunnerInputError, match="deepspeed: a ds_config needs probe.backend 'deepspeed'"):
        probe_numerics(FinetuneConfig(**CFG, deepspeed=auto), ProbeSettings(backend="torch"), cpu)


@pytest.fixture(scope="module")
def tiny_base():
    return get_base(candidate().model, COPY, load_task(COPY).texts)


def _engine(tiny_base, config: FinetuneConfig, precision: str, stage: int):
    ensure_dist_env()
    model = build_lora_model(tiny_base, config, seed=0)
    return make_engine(
        "deepspeed",
        model,
        config,
        device=torch.device("cpu"),
        precision=precision,
        call=ModelCall(tiny_base.model),
        zero_stage=stage,
    )


def test_deepspeed_runs_the_resolved_user_config(tiny_base):
    """ZeRO-3, bf16, the ds_config's AdamW (torch_adam) and WarmupDecayLR, accumulation 2: what
    DeepSpeed was given and what it built."""
    config = FinetuneConfig(**{**CFG, "gradient_accumulation_steps": 2, "warmup_steps": 10}, deepspeed=ZERO3_BF16)
    engine = _engine(tiny_base, config, "bf16", 3)
    try:
        ds = engine.engine
        assert (ds.zero_optimization_stage(), ds.bfloat16_enabled(), ds.fp16_enabled()) == (3, True, False)
        assert (ds.train_micro_batch_size_per_gpu(), ds.gradient_accumulation_steps(), ds.train_batch_size()) == (
            4,
            2,
            8,
        )
        assert ds.gradient_clipping() == 1.0
        assert type(ds.lr_scheduler).__name__ == "WarmupDecayLR"
        assert ds.lr_scheduler.total_num_steps == 200 and ds.lr_scheduler.warmup_num_steps == 10
        group = ds.optimizer.optimizer.param_groups[0]
        assert (group["betas"], group["eps"], group["weight_decay"]) == ((0.9, 0.999), 1e-8, 0.0)
        assert engine.ds_config["zero_optimization"]["stage3_prefetch_bucket_size"] == int(0.9 * 64 * 64)
    finally:
        engine.close()


def test_zero2_with_cpu_offload_and_the_configs_own_optimizer_takes_steps(tiny_base, make_copy_candidate):
    """offload_optimizer to CPU with the config's torch AdamW (no DeepSpeed CPU-Adam build), fp32."""
    ds = {"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu", "pin_memory": False}}}
    config = FinetuneConfig(**CFG, deepspeed=ds)
    engine = _engine(tiny_base, config, "fp32", 2)
    try:
        assert engine.engine.zero_cpu_offload() and engine.ds_config["zero_force_ds_cpu_optimizer"] is False
        before = [p.detach().clone() for p in engine.params]
        from prehoc_ray.runner.batches import collate, encode_examples
        from prehoc_ray.runner.optim import lr_lambda

        task = load_task(COPY)
        enc = encode_examples(tiny_base.codec, task.train[:4], 32)
        loss, norm = engine.train_step([collate(enc, tiny_base.codec.pad_id)])
        assert math.isfinite(float(loss)) and float(norm) > 0
        # the config's schedule, stepped once: the full run's rate at step 1
        assert engine.engine.get_lr()[0] == pytest.approx(1e-2 * lr_lambda(config)(1), rel=1e-9)
        assert any(not torch.equal(b, p.detach()) for b, p in zip(before, engine.params))  # copied back from CPU
    finally:
        engine.close()


@pytest.fixture(scope="module")
def zero3_runs(tmp_path_factory):
    """A user's ds_config file (ZeRO-3, bf16, "auto" everywhere) given by a job spec, probed
    0 -> 20 in one go and 0 -> 10 -> 20 with a resume."""
    root = tmp_path_factory.mktemp("z3")
    (root / "ds_config_zero3_bf16.json").write_text(json.dumps(ZERO3_BF16))
    (root / "job.yaml").write_text(
        json.dumps(
            {
                "name": "z3",
                "tasks": [COPY.model_dump(mode="json", exclude_none=True)],
                "models": [candidate().model.model_dump(mode="json", exclude_none=True)],
                "configs": [{"name": "z3", **CFG, "warmup_steps": 5, "deepspeed": "ds_config_zero3_bf16.json"}],
                "probe": {"backend": "deepspeed", "eval_every": 10},
                "budget": {"probe_seconds": 100},
                "allocation": {"initial_steps": 30},
            }
        )
    )
    spec = load_job(root / "job.yaml")
    cand, settings = spec.candidate_specs()[0], spec.probe
    return {
        "cand": cand,
        "root": root,
        "full": run_probe(ProbeRequest(cand, 0, 20, root / "full", settings, "f")),
        "first": run_probe(ProbeRequest(cand, 0, 10, root / "resume", settings, "a")),
        "resumed": run_probe(ProbeRequest(cand, 0, 20, root / "resume", settings, "b")),
    }


def test_a_user_zero3_bf16_ds_config_runs_a_real_probe_on_cpu(zero3_runs):
    full = zero3_runs["full"]
    assert (full.backend, full.precision) == ("deepspeed", "bf16")
    assert [r[T.STEP] for r in full.rows] == [10, 20]
    assert all(math.isfinite(r[k]) for r in full.rows for k in (T.EVAL_LOSS, T.TRAIN_LOSS, T.GRAD_NORM))
    assert full.rows[-1][T.TRAIN_LOSS] < full.rows[0][T.TRAIN_LOSS] + 0.5  # trains, does not blow up
    meta = json.loads(next((zero3_runs["root"] / "full").rglob(ck.META)).read_text())
    assert (meta["fingerprint"]["zero_stage"], meta["fingerprint"]["precision"]) == (3, "bf16")


def test_a_user_zero3_bf16_probe_resumes_on_its_curve(zero3_runs):
    first, resumed, full = zero3_runs["first"], zero3_runs["resumed"], zero3_runs["full"]
    assert resumed.start_step == 10 and [r[T.STEP] for r in resumed.rows] == [10, 20]
    for a, b in zip(resumed.rows, full.rows):
        for k in (T.EVAL_LOSS, T.TRAIN_LOSS):
            assert a[k] == pytest.approx(b[k], rel=2e-2), (a[T.STEP], k)  # bf16: near, not bit-equal
    for k in (T.VALUE, T.EVAL_LOSS, T.TRAIN_LOSS, T.GRAD_NORM, T.TOKENS):  # the same first 10 steps
        assert first.rows[0][k] == full.rows[0][k], k


def test_a_conflicting_key_is_refused_before_anything_trains(tmp_path):
    ds = {**ZERO3_BF16, "train_micro_batch_size_per_gpu": 16}
    (tmp_path / "ds.json").write_text(json.dumps(ds))
    cand = candidate()
    config = FinetuneConfig.model_construct(**cand.config.model_dump(), deepspeed=ds)
    bad = CandidateSpec.model_construct(task=cand.task, model=cand.model, config=config)
    with pytest.raises(RunnerInputError) as err:
        run_probe(ProbeRequest(bad, 0, 10, tmp_path / "ckpt", DS, "x"))
    assert str(err.value) == (
        "config 'default': deepspeed.train_micro_batch_size_per_gpu: disagrees with batch_size (4); "
        'set it to "auto" or make them equal'
    )
    assert not (tmp_path / "ckpt").exists()
    # the same file through a job spec: refused when the spec is loaded
    from prehoc_ray.spec.job import SpecError

    (tmp_path / "job.yaml").write_text(
        json.dumps(
            {
                "name": "j",
                "tasks": [{"name": "t", "builtin": "synthetic_copy"}],
                "models": [{"name": "m", "tiny": {}}],
                "configs": [{"name": "c", "batch_size": 4, "deepspeed": "ds.json"}],
                "budget": {"probe_seconds": 1},
            }
        )
    )
    with pytest.raises(SpecError, match=r"configs.0: Value error, deepspeed.train_micro_batch_size_per_gpu: disagrees"):
        load_job(tmp_path / "job.yaml")


# ---- ZeRO-3 loading: a probe's copy read straight into its partitions ---------------------------


@pytest.fixture(scope="module")
def model_dir(tiny_base, tmp_path_factory):
    """The tiny model and its tokenizer saved as a Hugging Face directory (a `path:` model)."""
    from transformers import PreTrainedTokenizerFast

    from prehoc_ray.runner.models import train_bpe

    path = tmp_path_factory.mktemp("model") / "tiny-llama"
    tok = PreTrainedTokenizerFast(
        tokenizer_object=train_bpe(load_task(COPY).texts(), 384), eos_token="<eos>", pad_token="<pad>"
    )
    tiny_base.model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_zero3_loads_each_probes_copy_partitioned_and_computes_the_same_curve(model_dir, tmp_path, monkeypatch):
    from transformers.integrations import is_deepspeed_zero3_enabled

    from prehoc_ray.runner import probe as probe_module

    seen = {}
    real = probe_module.build_lora_model

    def spy(base, config, seed):
        model = real(base, config, seed)
        w = model.base_model.model.model.layers[0].mlp.up_proj.weight  # a frozen base weight, before DeepSpeed
        seen["local"], seen["full"], seen["zero3"] = (
            w.data.numel(),
            getattr(w, "ds_numel", w.numel()),
            is_deepspeed_zero3_enabled(),
        )
        return model

    monkeypatch.setattr(probe_module, "build_lora_model", spy)
    ds = {"bf16": {"enabled": True}, "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": "auto"}}
    on_disk = CandidateSpec(
        task=COPY, model=ModelSpec(name="dir", path=model_dir), config=FinetuneConfig(**CFG, deepspeed=ds)
    )
    partitioned = run_probe(ProbeRequest(on_disk, 0, 10, tmp_path / "disk", DS, "d"))
    assert seen == {"local": 0, "full": 64 * 256, "zero3": True}  # never whole in this probe
    assert not is_deepspeed_zero3_enabled()  # models loaded after it are whole again
    whole = run_probe(ProbeRequest(candidate(deepspeed=ds), 0, 10, tmp_path / "tiny", DS, "t"))  # deep-copied
    assert seen["local"] == 64 * 256
    assert partitioned.precision == whole.precision == "bf16"
    for k in (T.EVAL_LOSS, T.TRAIN_LOSS, T.GRAD_NORM):
        assert partitioned.rows[0][k] == pytest.approx(whole.rows[0][k], rel=1e-3), k


def test_dora_on_all_linear_layers_trains_from_a_partitioned_load(model_dir, tmp_path):
    """jobs/hf_example.yaml's second config: DoRA needs each weight's norm, gathered from its
    partitions when the adapter is built."""
    ds = {"bf16": {"enabled": True}, "zero_optimization": {"stage": 3}}
    config = FinetuneConfig(**CFG, target_modules="all-linear", lora={"use_dora": True}, deepspeed=ds)
    cand = CandidateSpec(task=COPY, model=ModelSpec(name="dir", path=model_dir), config=config)
    res = run_probe(ProbeRequest(cand, 0, 20, tmp_path, DS, "dora"))
    losses = [r[T.EVAL_LOSS] for r in res.rows]
    assert res.precision == "bf16" and all(math.isfinite(x) for x in losses) and losses[1] < losses[0]
