"""The full run's optimizer, schedule and DeepSpeed config in the job spec (issue 16 items 4, 5):
old specs keep their hash, a ds_config file is read when the spec is loaded, and every key a
probe cannot honour is one line naming it. No torch, no DeepSpeed: the schema alone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from prehoc_ray.spec.candidate import FinetuneConfig
from prehoc_ray.spec.job import JobSpec, SpecError, load_job

SECRET = "PLANTED-SECRET-ds7731"
BASE = {
    "name": "j",
    "tasks": [{"name": "t", "builtin": "bbc_news"}],
    "models": [{"name": "m", "tiny": {"arch": "llama"}}],
    "budget": {"probe_seconds": 10},
}
FULL = {
    **BASE,
    "configs": [
        {
            "name": "c",
            "lora_r": 16,
            "learning_rate": 2e-4,
            "weight_decay": 0.01,
            "warmup_steps": 30,
            "full_steps": 3000,
            "batch_size": 4,
            "lora": {"use_dora": True},
        }
    ],
    "probe": {"backend": "deepspeed", "zero_stage": 2, "precision": "bf16"},
}
DS = {
    "train_micro_batch_size_per_gpu": "auto",
    "gradient_accumulation_steps": "auto",
    "train_batch_size": "auto",
    "bf16": {"enabled": "auto"},
    "zero_optimization": {"stage": 3, "offload_optimizer": {"device": "cpu"}},
}


def write(tmp_path: Path, raw: dict, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def with_config(**config) -> dict:
    return {**BASE, "configs": [{"name": "c", **config}], "probe": {"backend": "deepspeed"}}


def test_specs_without_the_new_fields_keep_their_hash():
    # computed by the code before these fields existed (commit 434d81a)
    assert JobSpec.model_validate(BASE).spec_hash() == "dbc661da8bad5eb6"
    assert JobSpec.model_validate(FULL).spec_hash() == "6be7c2ebf11b8a1d"
    # writing a default out is the same spec; a different value is another one
    explicit = {
        **BASE,
        "configs": [
            {
                "name": "default",
                "optimizer": "adamw",
                "lr_scheduler_type": "cosine_to_10pct",
                "max_grad_norm": 1.0,
                "gradient_accumulation_steps": 1,
                "adam_epsilon": 1e-8,
            }
        ],
    }
    assert JobSpec.model_validate(explicit).spec_hash() == "dbc661da8bad5eb6"
    other = {**BASE, "configs": [{"name": "default", "lr_scheduler_type": "linear"}]}
    assert JobSpec.model_validate(other).spec_hash() != "dbc661da8bad5eb6"
    dumped = JobSpec.model_validate(other).model_dump()["configs"][0]
    assert dumped["lr_scheduler_type"] == "linear" and "optimizer" not in dumped and "deepspeed" not in dumped
    assert JobSpec.model_validate(JobSpec.model_validate(other).model_dump()) == JobSpec.model_validate(other)


def test_optimizer_schedule_and_accumulation_parse_with_trainer_names(tmp_path):
    spec = load_job(
        write(
            tmp_path,
            with_config(
                optimizer="adafactor",
                lr_scheduler_type="cosine",
                warmup_ratio=0.03,
                gradient_accumulation_steps=4,
                max_grad_norm=0.5,
                full_steps=1000,
            ),
        )
    )
    c = spec.configs[0]
    assert (c.optimizer, c.lr_scheduler_type, c.gradient_accumulation_steps, c.max_grad_norm) == (
        "adafactor",
        "cosine",
        4,
        0.5,
    )
    assert c.warmup() == 30  # ceil(0.03 x 1000), as Trainer counts it
    assert FinetuneConfig(warmup_steps=7).warmup() == 7 and FinetuneConfig().warmup() == 0


def test_a_ds_config_file_is_read_relative_to_the_spec_and_its_contents_are_the_spec(tmp_path):
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "z3.json").write_text(json.dumps(DS))
    spec = load_job(write(tmp_path, with_config(deepspeed="ds/z3.json")))
    assert spec.configs[0].deepspeed == DS
    inline = load_job(write(tmp_path, with_config(deepspeed=DS), "inline.yaml"))
    assert inline.spec_hash() == spec.spec_hash()  # the file's contents count, not its name
    (tmp_path / "ds" / "z3.json").write_text(json.dumps({**DS, "zero_optimization": {"stage": 2}}))
    assert load_job(write(tmp_path, with_config(deepspeed="ds/z3.json"))).spec_hash() != spec.spec_hash()


BAD_FILES = [
    ("missing", None, "cannot read it: No such file"),
    (
        "not json",
        '{"zero_optimization": {"stage": 3,}, "x": "' + SECRET + '"}',
        "not valid JSON: Expecting property name",
    ),
    ("a list", json.dumps([SECRET]), "expected a JSON object at the top level, got list"),
    ("duplicate key", '{"bf16": {"enabled": true}, "bf16": {"enabled": "' + SECRET + '"}}', "key 'bf16' appears twice"),
    ("NaN", '{"gradient_clipping": NaN, "s": "' + SECRET + '"}', "NaN is not a number JSON allows"),
    ("not utf-8", b'{"a": "\xff\xfe' + SECRET.encode() + b'"}', "not UTF-8 text"),
    ("deep", "[" * 40 + "]" * 40, "expected a JSON object"),
    ("deep object", '{"a":' * 40 + "1" + "}" * 40, "nested more than 32 levels deep"),
]


@pytest.mark.parametrize("case,content,expected", BAD_FILES, ids=[c[0] for c in BAD_FILES])
def test_a_bad_ds_config_file_is_one_line_naming_the_file(tmp_path, case, content, expected):
    ds = tmp_path / "ds_config.json"
    if isinstance(content, bytes):
        ds.write_bytes(content)
    elif content is not None:
        ds.write_text(content)
    with pytest.raises(SpecError) as err:
        load_job(write(tmp_path, with_config(deepspeed="ds_config.json")))
    msg = str(err.value)
    assert "\n" not in msg and SECRET not in msg
    assert f"configs.0.deepspeed: Value error, DeepSpeed config {str(ds)!r}: " in msg and expected in msg, msg
    assert msg.startswith(f"{tmp_path / 'job.yaml'}:")


def test_a_directory_as_ds_config_is_named(tmp_path):
    (tmp_path / "ds").mkdir()
    with pytest.raises(SpecError, match=r"configs.0.deepspeed: .*'.*/ds': is a directory, expected a JSON file"):
        load_job(write(tmp_path, with_config(deepspeed="ds")))


# (case, config fields, probe settings, the key the one-line error must name)
REFUSED = [
    (
        "checkpoint section",
        {"deepspeed": {"checkpoint": {"tag_validation": "Warn"}}},
        {},
        "deepspeed.checkpoint: a probe cannot honour it",
    ),
    ("elasticity", {"deepspeed": {"elasticity": {"enabled": True}}}, {}, "deepspeed.elasticity:"),
    ("apex amp", {"deepspeed": {"amp": {"enabled": True}}}, {}, "deepspeed.amp:"),
    (
        "micro-batch vs batch_size",
        {"batch_size": 8, "deepspeed": {"train_micro_batch_size_per_gpu": 16}},
        {},
        "deepspeed.train_micro_batch_size_per_gpu: disagrees with batch_size (8)",
    ),
    (
        "accumulation",
        {"deepspeed": {"gradient_accumulation_steps": 4}},
        {},
        "deepspeed.gradient_accumulation_steps: disagrees with gradient_accumulation_steps (1)",
    ),
    (
        "train batch not a multiple",
        {"batch_size": 8, "deepspeed": {"train_batch_size": 12}},
        {},
        "deepspeed.train_batch_size:",
    ),
    (
        "optimizer lr",
        {"learning_rate": 2e-4, "deepspeed": {"optimizer": {"type": "AdamW", "params": {"lr": 3e-5}}}},
        {},
        "deepspeed.optimizer.params.lr: disagrees with learning_rate",
    ),
    (
        "betas",
        {"deepspeed": {"optimizer": {"type": "AdamW", "params": {"betas": [0.9, 0.95]}}}},
        {},
        "deepspeed.optimizer.params.betas: disagrees with adam_beta1, adam_beta2",
    ),
    (
        "clipping",
        {"deepspeed": {"gradient_clipping": 0.3}},
        {},
        "deepspeed.gradient_clipping: disagrees with max_grad_norm",
    ),
    (
        "total steps",
        {"full_steps": 500, "deepspeed": {"scheduler": {"type": "WarmupDecayLR", "params": {"total_num_steps": 900}}}},
        {},
        "deepspeed.scheduler.params.total_num_steps: disagrees with full_steps (500)",
    ),
    (
        "ds optimizer and spec optimizer",
        {"optimizer": "sgd", "deepspeed": {"optimizer": {"type": "AdamW", "params": {}}}},
        {},
        "deepspeed.optimizer: the ds_config's optimizer is the run's",
    ),
    (
        "ds scheduler and spec schedule",
        {"lr_scheduler_type": "linear", "deepspeed": {"scheduler": {"type": "WarmupLR"}}},
        {},
        "deepspeed.scheduler: the ds_config's scheduler is the run's",
    ),
    ("unknown optimizer type", {"deepspeed": {"optimizer": {"type": "OneBitAdam"}}}, {}, "deepspeed.optimizer.type:"),
    (
        "nvme offload",
        {"deepspeed": {"zero_optimization": {"stage": 3, "offload_param": {"device": "nvme"}}}},
        {},
        "deepspeed.zero_optimization.offload_param.device:",
    ),
    (
        "param offload below stage 3",
        {"deepspeed": {"zero_optimization": {"stage": 2, "offload_param": {"device": "cpu"}}}},
        {},
        "deepspeed.zero_optimization.offload_param: parameters are offloaded at ZeRO stage 3 only",
    ),
    (
        "stage 4",
        {"deepspeed": {"zero_optimization": {"stage": 4}}},
        {},
        "deepspeed.zero_optimization.stage: expected 0, 1, 2 or 3",
    ),
    (
        "section not a mapping",
        {"deepspeed": {"zero_optimization": 3}},
        {},
        "deepspeed.zero_optimization: expected a mapping",
    ),
    (
        "fp16 and bf16",
        {"deepspeed": {"fp16": {"enabled": True}, "bf16": {"enabled": True}}},
        {},
        "fp16 and bf16 cannot both be on",
    ),
    (
        "stage vs probe.zero_stage",
        {"deepspeed": {"zero_optimization": {"stage": 3}}},
        {"zero_stage": 2},
        "configs[0]: deepspeed.zero_optimization.stage: 3 disagrees with probe.zero_stage (2)",
    ),
    (
        "bf16 vs probe.precision",
        {"deepspeed": {"bf16": {"enabled": True}}},
        {"precision": "fp32"},
        "deepspeed.bf16.enabled: the ds_config runs bf16, probe.precision is 'fp32'",
    ),
    (
        "torch backend",
        {"deepspeed": {"bf16": {"enabled": "auto"}}},
        {"backend": "torch"},
        "configs[0]: deepspeed: a ds_config needs probe.backend 'deepspeed'",
    ),
    (
        "fp16 on torch",
        {},
        {"backend": "torch", "precision": "fp16"},
        "probe: Value error, precision: fp16 needs backend 'deepspeed'",
    ),
    (
        "warm-up twice",
        {"warmup_steps": 10, "warmup_ratio": 0.1},
        {},
        "warmup_ratio: set either warmup_steps or warmup_ratio",
    ),
    (
        "constant with warm-up",
        {"lr_scheduler_type": "constant", "warmup_steps": 10},
        {},
        "lr_scheduler_type: 'constant' has no warm-up",
    ),
    ("unknown schedule", {"lr_scheduler_type": "cosine_annealing"}, {}, "configs.0.lr_scheduler_type: Input should be"),
    ("unknown optimizer", {"optimizer": "lion8bit"}, {}, "configs.0.optimizer: Input should be"),
    ("accumulation 0", {"gradient_accumulation_steps": 0}, {}, "configs.0.gradient_accumulation_steps:"),
    ("warmup ratio above 1", {"warmup_ratio": 1.5}, {}, "configs.0.warmup_ratio:"),
]


@pytest.mark.parametrize("case,config,probe,expected", REFUSED, ids=[c[0] for c in REFUSED])
def test_what_a_probe_cannot_honour_is_one_line_naming_the_key(tmp_path, case, config, probe, expected):
    raw = {**BASE, "configs": [{"name": "c", **config}], "probe": {"backend": "deepspeed", **probe}}
    with pytest.raises(SpecError) as err:
        load_job(write(tmp_path, raw))
    msg = str(err.value)
    assert "\n" not in msg and expected in msg, msg


def test_a_ds_config_that_agrees_with_the_spec_loads(tmp_path):
    ds = {
        "train_micro_batch_size_per_gpu": 4,
        "gradient_accumulation_steps": 2,
        "train_batch_size": 32,
        "gradient_clipping": 1.0,
        "bf16": {"enabled": True},
        "optimizer": {
            "type": "AdamW",
            "params": {"lr": 0.0002, "betas": [0.9, 0.999], "eps": "auto", "weight_decay": 0.0},
        },
        "scheduler": {"type": "WarmupCosineLR", "params": {"total_num_steps": "auto", "warmup_num_steps": 30}},
        "zero_optimization": {"stage": 3, "offload_param": {"device": "cpu"}, "reduce_bucket_size": "auto"},
        "steps_per_print": 2000,
        "wall_clock_breakdown": False,
    }
    raw = {
        **BASE,
        "configs": [
            {
                "name": "c",
                "batch_size": 4,
                "gradient_accumulation_steps": 2,
                "learning_rate": 2e-4,
                "warmup_steps": 30,
                "deepspeed": ds,
            }
        ],
        "probe": {"backend": "deepspeed", "zero_stage": 3, "precision": "bf16"},
    }
    assert load_job(write(tmp_path, raw)).configs[0].deepspeed == ds
