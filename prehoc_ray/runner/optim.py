"""The optimizer and learning-rate schedule of the full fine-tune a probe stands for.

    from prehoc_ray.runner.optim import build_optimizer, build_scheduler
    optimizer = build_optimizer(params, config)      # FinetuneConfig.optimizer, Trainer's names
    scheduler = build_scheduler(optimizer, config)   # over config.full_steps, stepped per optimizer step

The schedule is laid out over the full run's horizon (`full_steps`, with its warm-up) and a probe
runs its first steps: the learning rate at probe step c is the full run's at step c, so a probe
is the prefix of the run it predicts, not a compressed copy of it (README, "Optimizer and
schedule"). The defaults (AdamW, "cosine_to_10pct", no warm-up) reproduce what probes always ran.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from prehoc_ray.runner.errors import RunnerInputError
from prehoc_ray.spec.candidate import FinetuneConfig

MIN_LR_FRACTION = 0.1  # "cosine_to_10pct" ends at this fraction of the learning rate


def lr_lambda(config: FinetuneConfig) -> Callable[[int], float]:
    """The "cosine_to_10pct" multiplier at a 0-based step: linear warm-up reaching the full
    rate at the end of its first step ((step + 1) / warm-up), then cosine decay to 10% at
    full_steps, flat after."""
    warm, total = config.warmup(), config.full_steps

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return MIN_LR_FRACTION + (1 - MIN_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def build_optimizer(params: list[Any], config: FinetuneConfig) -> Any:
    """The optimizer `config.optimizer` names, over `params`, as Hugging Face Trainer builds it
    (`adamw` is Trainer's adamw_torch; `adafactor` is transformers' Adafactor with an external
    learning rate)."""
    import torch

    lr, wd = config.learning_rate, config.weight_decay
    name = config.optimizer
    if name == "adamw":
        return torch.optim.AdamW(
            params, lr=lr, betas=(config.adam_beta1, config.adam_beta2), eps=config.adam_epsilon, weight_decay=wd
        )
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=wd)
    if name == "adagrad":
        return torch.optim.Adagrad(params, lr=lr, weight_decay=wd)
    if name == "rmsprop":
        return torch.optim.RMSprop(params, lr=lr, weight_decay=wd)
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params, lr=lr, weight_decay=wd, scale_parameter=False, relative_step=False, warmup_init=False)
    raise RunnerInputError(f"config {config.name!r}: optimizer {name!r} is not supported")


def build_scheduler(optimizer: Any, config: FinetuneConfig) -> Any:
    """The learning-rate schedule `config.lr_scheduler_type` names, over the full run
    (`full_steps`, `warmup_steps` or `warmup_ratio`); stepped once per optimizer step."""
    import torch

    if config.lr_scheduler_type == "cosine_to_10pct":
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(config))
    from transformers import get_scheduler

    try:
        return get_scheduler(
            config.lr_scheduler_type, optimizer, num_warmup_steps=config.warmup(), num_training_steps=config.full_steps
        )
    except (ValueError, TypeError) as e:
        msg = " ".join(str(e).split())
        raise RunnerInputError(f"config {config.name!r}: lr_scheduler_type {config.lr_scheduler_type!r}: {msg}") from e


def schedule_multipliers(config: FinetuneConfig, steps: int) -> list[float]:
    """The learning rate of the first `steps` optimizer steps as a fraction of learning_rate
    (a throwaway parameter; no model): what the probe's prefix of the schedule is."""
    import torch

    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=config.learning_rate)
    sched = build_scheduler(opt, config)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"] / config.learning_rate)
        opt.step()
        sched.step()
    return out
