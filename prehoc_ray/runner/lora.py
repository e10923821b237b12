"""FinetuneConfig -> peft.LoraConfig, checked against peft's own dataclass.

Every field of the installed peft's LoraConfig passes through: the config's own LoRA fields
(lora_r -> r, lora_alpha, lora_dropout, target_modules, modules_to_save) plus whatever the
`lora:` mapping holds (use_dora, use_rslora, layers_to_transform, rank_pattern, ...). A key
that is not a field of that dataclass is an error naming it and the fields there are; a field
whose type is one of peft's config dataclasses (eva_config, corda_config, runtime_config, ...)
may be written as a mapping and is built into that dataclass. A probe always trains a causal
LM's adapter: task_type, peft_type and inference_mode are the runner's (spec/candidate.py).

    from prehoc_ray.runner.lora import lora_config
    peft_config = lora_config(config)   # raises RunnerInputError, one line
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from typing import Any

from prehoc_ray.runner.errors import RunnerInputError
from prehoc_ray.spec.candidate import LORA_METADATA, LORA_RUNNER_SET, FinetuneConfig

# What a probe sets when the config leaves it out: `bias` "none" as before (peft's default too).
RUNNER_DEFAULTS: dict[str, Any] = {"bias": "none"}


def lora_kwargs(config: FinetuneConfig) -> dict[str, Any]:
    """The keyword arguments of peft.LoraConfig for `config` (no peft import)."""
    target = config.target_modules
    kwargs: dict[str, Any] = {
        "r": config.lora_r,
        "lora_alpha": config.lora_alpha,
        "lora_dropout": config.lora_dropout,
        # a string ("all-linear", a regex) is peft's; an empty list means peft's defaults
        "target_modules": target if isinstance(target, str) else (list(target) if target else None),
        "modules_to_save": list(config.modules_to_save) if config.modules_to_save else None,
        **RUNNER_DEFAULTS,
    }
    kwargs.update({k: v for k, v in (config.lora or {}).items() if k not in LORA_RUNNER_SET})
    kwargs.update(LORA_RUNNER_SET)
    return kwargs


def lora_field_names() -> list[str]:
    """The fields of the installed peft's LoraConfig a job may set."""
    from peft import LoraConfig

    return [f.name for f in dataclasses.fields(LoraConfig) if f.init and f.name not in LORA_METADATA]


def _where(config: FinetuneConfig) -> str:
    return f"config {config.name!r}"


def _as_peft_types(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Mappings given for fields typed as one of peft's config dataclasses, built into it."""
    from peft import LoraConfig

    try:
        hints = typing.get_type_hints(LoraConfig)
    except Exception:  # an annotation this Python cannot evaluate: pass values as given
        return kwargs
    out = dict(kwargs)
    for key, value in kwargs.items():
        if not isinstance(value, dict):
            continue
        hint = hints.get(key)
        options = typing.get_args(hint) or (hint,)
        if dict in options or any(typing.get_origin(o) is dict for o in options):
            continue  # the field takes a mapping as it is (rank_pattern, loftq_config, ...)
        klass = next((o for o in options if isinstance(o, type) and dataclasses.is_dataclass(o)), None)
        if klass is not None:
            out[key] = klass(**value)
    return out


def lora_config(config: FinetuneConfig):
    """peft.LoraConfig for `config`; RunnerInputError (one line, naming the field) when peft
    does not know a key or refuses a value."""
    from peft import LoraConfig

    allowed = lora_field_names()
    unknown = [k for k in (config.lora or {}) if k not in allowed and k not in LORA_RUNNER_SET]
    if unknown:
        import peft

        key = unknown[0]
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise RunnerInputError(
            f"{_where(config)}: lora.{key} is not a field of peft's LoraConfig (peft {peft.__version__}){hint}; "
            f"its fields: {', '.join(allowed)}"
        )
    kwargs = lora_kwargs(config)
    try:
        return LoraConfig(**_as_peft_types(kwargs))
    except (TypeError, ValueError) as e:
        msg = " ".join(str(e).split())
        raise RunnerInputError(f"{_where(config)}: peft's LoraConfig refuses the lora settings: {msg}") from e
