"""The full run's optimizer and schedule in a probe (issue 16 item 5): the schedule is laid out
over full_steps and the probe runs its first steps; Trainer's optimizers and schedules; gradient
accumulation on both backends; the defaults are what probes always ran."""

from __future__ import annotations

import math

import pytest
import torch

from prehoc_ray import types as T
from prehoc_ray.runner import checkpoint as ck
from prehoc_ray.runner.optim import build_optimizer, build_scheduler, schedule_multipliers
from prehoc_ray.runner.probe import ProbeRequest, run_probe
from prehoc_ray.spec.candidate import FinetuneConfig, ProbeSettings

TORCH = ProbeSettings(backend="torch", eval_every=10)
DEEPSPEED = ProbeSettings(backend="deepspeed", eval_every=10, zero_stage=0, precision="fp32")
CURVE = (T.VALUE, T.EVAL_LOSS, T.TRAIN_LOSS, T.GRAD_NORM, T.TOKENS)


def probe(cand, target, path, settings=TORCH):
    return run_probe(ProbeRequest(cand, 0, target, path, settings, "p"))


def test_the_default_is_the_schedule_probes_always_ran():
    """Linear warm-up reaching the full rate at the end of its first step, then cosine to 10%."""
    config = FinetuneConfig(learning_rate=1e-3, warmup_steps=5, full_steps=100)
    want = [(s + 1) / 5 if s < 5 else 0.1 + 0.45 * (1 + math.cos(math.pi * (s - 5) / 95)) for s in range(100)]
    assert schedule_multipliers(config, 100) == pytest.approx(want, rel=1e-12)
    assert type(build_optimizer([torch.nn.Parameter(torch.zeros(1))], config)) is torch.optim.AdamW


@pytest.mark.parametrize(
    "name,formula",
    [
        ("linear", lambda s, w, n: s / w if s < w else (n - s) / (n - w)),
        ("cosine", lambda s, w, n: s / w if s < w else 0.5 * (1 + math.cos(math.pi * (s - w) / (n - w)))),
        ("constant_with_warmup", lambda s, w, n: s / w if s < w else 1.0),
        ("inverse_sqrt", lambda s, w, n: s / w if s < w else 1 / math.sqrt(s / w)),
    ],
)
def test_a_probe_runs_the_first_steps_of_the_full_runs_schedule(name, formula):
    """Trainer's schedules over the full run's horizon: at probe step 40 of a 1,000-step run with
    a 3% warm-up the rate is the full run's at step 40, not the end of a compressed schedule."""
    config = FinetuneConfig(learning_rate=1e-3, lr_scheduler_type=name, warmup_ratio=0.03, full_steps=1000)
    assert config.warmup() == 30
    got = schedule_multipliers(config, 40)
    assert got == pytest.approx([formula(s, 30, 1000) for s in range(40)], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", ["cosine_with_restarts", "polynomial", "constant"])
def test_the_other_trainer_schedules_build(name):
    config = FinetuneConfig(learning_rate=1e-3, lr_scheduler_type=name, warmup_steps=0 if name == "constant" else 10)
    got = schedule_multipliers(config, 20)
    assert len(got) == 20 and all(0 <= m <= 1 for m in got) and got[-1] > 0


@pytest.mark.parametrize(
    "name,klass",
    [("sgd", "SGD"), ("adagrad", "Adagrad"), ("rmsprop", "RMSprop"), ("adafactor", "Adafactor"), ("adamw", "AdamW")],
)
def test_each_optimizer_is_the_one_trainer_builds(name, klass):
    config = FinetuneConfig(optimizer=name, learning_rate=3e-4, weight_decay=0.01, adam_beta2=0.95)
    opt = build_optimizer([torch.nn.Parameter(torch.zeros(3))], config)
    group = opt.param_groups[0]
    assert type(opt).__name__ == klass and group["lr"] == 3e-4 and group["weight_decay"] == 0.01
    if name == "adamw":
        assert group["betas"] == (0.9, 0.95) and group["eps"] == 1e-8
    if name == "adafactor":
        assert group["relative_step"] is False and group["scale_parameter"] is False
    assert build_scheduler(opt, config).get_last_lr() == [3e-4]


def test_a_probe_ends_at_the_full_runs_learning_rate_for_its_step(make_copy_candidate, tmp_path):
    cand = make_copy_candidate(lr_scheduler_type="linear", warmup_steps=10, full_steps=200)
    res = probe(cand, 20, tmp_path)
    assert [r[T.STEP] for r in res.rows] == [10, 20]
    state = ck.load_tensors(ck.latest(ck.probe_dir(tmp_path, cand.id, 0))[0] / "torch_state.pt")
    # 20 steps into a 200-step linear decay after 10 warm-up steps: 180/190 of the rate
    assert state["scheduler"]["_last_lr"][0] == pytest.approx(cand.config.learning_rate * 180 / 190, rel=1e-12)


def test_other_optimizers_and_schedules_train_and_change_the_curve(make_copy_candidate, tmp_path):
    base = probe(make_copy_candidate(), 10, tmp_path / "base")
    for i, over in enumerate(
        [
            {"optimizer": "sgd", "learning_rate": 0.5},
            {"optimizer": "adafactor"},
            {"lr_scheduler_type": "constant_with_warmup", "warmup_ratio": 0.05},
        ]
    ):
        res = probe(make_copy_candidate(**over), 10, tmp_path / str(i))
        assert all(math.isfinite(res.rows[0][k]) for k in CURVE), over
        assert res.rows[0][T.TRAIN_LOSS] != base.rows[0][T.TRAIN_LOSS], over


@pytest.fixture(scope="module")
def accumulated(make_copy_candidate, tmp_path_factory):
    root = tmp_path_factory.mktemp("accum")
    two = make_copy_candidate(batch_size=4, gradient_accumulation_steps=2)
    return {
        "two": two,
        "torch": probe(two, 20, root / "torch"),
        "ds": probe(two, 20, root / "ds", DEEPSPEED),
        "one_of_8": probe(make_copy_candidate(batch_size=8), 20, root / "b8"),
        "one_of_4": probe(make_copy_candidate(batch_size=4), 20, root / "b4"),
    }


def test_gradient_accumulation_takes_several_micro_batches_per_step(accumulated):
    two, one_of_8, one_of_4 = accumulated["torch"], accumulated["one_of_8"], accumulated["one_of_4"]
    # 2 x 4 examples per step are the 8 a batch of 8 would take: the same tokens at every row
    assert [r[T.TOKENS] for r in two.rows] == [r[T.TOKENS] for r in one_of_8.rows]
    assert two.rows[-1][T.TOKENS] > one_of_4.rows[-1][T.TOKENS] * 1.5
    assert two.tokens_per_step == pytest.approx(one_of_8.tokens_per_step)
    # per-micro-batch means, not one mean over 8: close to the batch of 8, not equal to it
    assert two.rows[0][T.TRAIN_LOSS] == pytest.approx(one_of_8.rows[0][T.TRAIN_LOSS], rel=0.05)


def test_deepspeed_accumulates_as_the_torch_engine_does(accumulated):
    ds, pt = accumulated["ds"], accumulated["torch"]
    assert [r[T.STEP] for r in ds.rows] == [r[T.STEP] for r in pt.rows] == [10, 20]
    for a, b in zip(ds.rows, pt.rows):
        for k in CURVE:
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-5), (a[T.STEP], k)
