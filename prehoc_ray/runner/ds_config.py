"""The DeepSpeed config a probe runs: the full run's ds_config merged with what probing controls.

    from prehoc_ray.runner.ds_config import probe_numerics, merged_ds_config
    precision, stage = probe_numerics(config, settings, device)
    ds = merged_ds_config(config, world=world, precision=precision, zero_stage=stage, hidden_size=h)

A config's `deepspeed:` mapping (FinetuneConfig.deepspeed, read from the user's ds_config.json
when the spec was loaded) is taken as written, then:

- "auto" values are resolved as Hugging Face Trainer resolves them
  (transformers.integrations.deepspeed.HfTrainerDeepSpeedConfig): the batch keys from batch_size,
  gradient_accumulation_steps and the world size, gradient_clipping from max_grad_norm, the
  optimizer's lr/betas/eps/weight_decay, the scheduler's warmup_min_lr (0), warmup_max_lr,
  total_num_steps (full_steps: the full run's horizon) and warmup_num_steps, fp16/bf16
  `enabled` from the probe's precision, and the hidden-size buckets of zero_optimization
  (reduce_bucket_size h*h; at stage 3 stage3_prefetch_bucket_size 0.9*h*h and
  stage3_param_persistence_threshold 10*h). A value given as a number must equal the spec's (a
  mismatch is an error naming the key, as Trainer's is); an "auto" nobody resolves is an error
  naming it.
- What the probe controls is set: the batch keys (above), gradient_clipping from max_grad_norm
  where the ds_config has none, the ZeRO stage where it has none (probe.zero_stage), logging
  off. Sections a probe cannot honour (checkpoint, elasticity, ...) were refused when the spec
  was loaded (spec/candidate.py, check_deepspeed) and are refused here again.
- Optimizer and scheduler: a ds_config `optimizer` section is the run's optimizer and DeepSpeed
  builds it (as under Trainer); without one the probe passes the config's own (runner/optim.py).
  Likewise `scheduler`; with a ds optimizer and no ds scheduler the config's schedule is built
  on DeepSpeed's optimizer. A spec that names a different optimizer or schedule next to such a
  section was refused when it was loaded.

A config without `deepspeed:` gets the config probes always ran (ZeRO stage from the probe
settings, bf16 when asked, clipping at max_grad_norm, one micro-batch per step).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from typing import Any

from prehoc_ray.runner.errors import RunnerInputError
from prehoc_ray.spec.candidate import (
    FinetuneConfig,
    ProbeSettings,
    check_deepspeed,
    check_deepspeed_probe,
    ds_get,
    ds_matched_values,
    ds_precision,
    same_value,
)

# Keys whose "auto" Trainer fills from the model's hidden size (trainer_config_finalize).
HIDDEN_SIZE_KEYS = (
    "zero_optimization.reduce_bucket_size",
    "zero_optimization.stage3_prefetch_bucket_size",
    "zero_optimization.stage3_param_persistence_threshold",
)


def _where(config: FinetuneConfig) -> str:
    return f"config {config.name!r}"


def check(config: FinetuneConfig, settings: ProbeSettings) -> None:
    """RunnerInputError, one line naming the key, for a ds_config this probe cannot honour (the
    spec loader's checks again: a CandidateSpec may be built without load_job)."""
    if config.deepspeed is None:
        return
    try:
        check_deepspeed(config.deepspeed, config)
        check_deepspeed_probe(config.deepspeed, settings)
    except ValueError as e:
        raise RunnerInputError(f"{_where(config)}: {e}") from None


def probe_numerics(config: FinetuneConfig, settings: ProbeSettings, device: Any) -> tuple[str, int]:
    """(precision, ZeRO stage) the probe runs at: the ds_config's where it says, else the probe
    settings' (precision "auto": bf16 on GPUs that have it, fp32 elsewhere)."""
    from prehoc_ray.runner.trainer import pick_precision

    ds = config.deepspeed
    if ds is None:
        return pick_precision(settings.precision, device), int(settings.zero_stage)
    check(config, settings)  # also: a ds_config needs the deepspeed backend
    precision = ds_precision(ds) or pick_precision(settings.precision, device)
    # the hardware (or probe.precision) would pick a precision the ds_config turns off
    if precision == "bf16" and False in (ds_get(ds, "bf16.enabled"), ds_get(ds, "bfloat16.enabled")):
        precision = "fp32"
    if precision == "fp16" and ds_get(ds, "fp16.enabled") is False:
        precision = "fp32"
    stage = ds_get(ds, "zero_optimization.stage")
    return precision, int(stage) if isinstance(stage, int) else int(settings.zero_stage)


def _fill(
    ds: dict[str, Any], key: str, value: Any, field: str, config: FinetuneConfig, must_match: bool = True
) -> None:
    """Trainer's fill_match: "auto" becomes `value`; another value must equal it. A key whose
    section is absent is left absent."""
    node: Any = ds
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or leaf not in node:
        return
    if node[leaf] == "auto":
        node[leaf] = value
    elif must_match and not same_value(node[leaf], value):
        raise RunnerInputError(
            f"{_where(config)}: deepspeed.{key}: {node[leaf]!r} disagrees with {field} ({value!r}); "
            f'set it to "auto" or make them equal'
        )


def _autos(value: Any, prefix: str = "") -> list[str]:
    if isinstance(value, dict):
        return [k for key, v in value.items() for k in _autos(v, f"{prefix}{key}.")]
    if isinstance(value, list):
        return [k for i, v in enumerate(value) for k in _autos(v, f"{prefix}{i}.")]
    return [prefix[:-1]] if value == "auto" else []


def merged_ds_config(
    config: FinetuneConfig, *, world: int, precision: str, zero_stage: int, hidden_size: int | None = None
) -> dict[str, Any]:
    """The dict deepspeed.initialize gets for a probe of `config` (module docstring)."""
    user = copy.deepcopy(config.deepspeed or {})
    if config.deepspeed is not None:
        try:
            check_deepspeed(user, config)
        except ValueError as e:
            raise RunnerInputError(f"{_where(config)}: {e}") from None
    ds = user
    if "bfloat16" in ds:  # DeepSpeed's other name for the section
        ds["bf16"] = ds.pop("bfloat16")
    per_rank = config.batch_size * config.gradient_accumulation_steps
    ds.setdefault("train_micro_batch_size_per_gpu", config.batch_size)
    ds.setdefault("gradient_accumulation_steps", config.gradient_accumulation_steps)
    ds.setdefault("train_batch_size", per_rank * world)
    ds.setdefault("gradient_clipping", config.max_grad_norm)
    for key, value, field in ds_matched_values(config):
        _fill(ds, key, value, field, config)
    _fill(
        ds,
        "train_batch_size",
        per_rank * world,
        f"batch_size x gradient_accumulation_steps x world size ({config.batch_size} x "
        f"{config.gradient_accumulation_steps} x {world})",
        config,
    )
    _fill(ds, "scheduler.params.warmup_min_lr", 0, "", config, must_match=False)
    # precision: the sections the ds_config has get `enabled` from the probe's precision; bf16 is
    # always written (as probes always did), fp16 only when it is the precision
    ds.setdefault("bf16", {})
    if precision == "fp16":
        ds.setdefault("fp16", {})
    for section in ("fp16", "bf16"):
        if isinstance(ds.get(section), dict):
            ds[section]["enabled"] = precision == section
    zero = ds.setdefault("zero_optimization", {})
    zero.setdefault("stage", zero_stage)
    if zero["stage"] != zero_stage:
        raise RunnerInputError(
            f"{_where(config)}: deepspeed.zero_optimization.stage: {zero['stage']!r} disagrees with "
            f"the stage this probe runs at ({zero_stage})"
        )
    wanted = [k for k in HIDDEN_SIZE_KEYS if ds_get(ds, k) == "auto"]
    if wanted:
        if hidden_size is None:
            raise RunnerInputError(
                f'{_where(config)}: deepspeed.{wanted[0]}: "auto" needs the model\'s hidden_size, '
                f"which its config does not have; give a number"
            )
        _fill(ds, "zero_optimization.reduce_bucket_size", hidden_size * hidden_size, "", config, must_match=False)
        if zero_stage == 3:
            _fill(
                ds,
                "zero_optimization.stage3_prefetch_bucket_size",
                int(0.9 * hidden_size * hidden_size),
                "",
                config,
                must_match=False,
            )
            _fill(
                ds,
                "zero_optimization.stage3_param_persistence_threshold",
                10 * hidden_size,
                "",
                config,
                must_match=False,
            )
    if "optimizer" not in ds:
        # the config's own torch optimizer is passed in: DeepSpeed calls it "untested"; with
        # ZeRO-Offload it would insist on its CPU Adam (a C++ build) unless told not to
        ds["zero_allow_untested_optimizer"] = True
        if ds_get(ds, "zero_optimization.offload_optimizer.device") == "cpu":
            ds.setdefault("zero_force_ds_cpu_optimizer", False)
    # logging is the probe's: a line per step from thousands of probes helps nobody
    ds["steps_per_print"] = 10**9
    ds["wall_clock_breakdown"] = False
    left = _autos(ds)
    if left:
        raise RunnerInputError(
            f'{_where(config)}: deepspeed.{left[0]}: "auto" is not a value a probe can resolve '
            f"(Hugging Face Trainer resolves the batch, clipping, optimizer, scheduler, fp16/bf16 and "
            f"ZeRO bucket keys); give a value"
        )
    return ds


def has_ds_optimizer(config: FinetuneConfig) -> bool:
    return isinstance((config.deepspeed or {}).get("optimizer"), dict)


def has_ds_scheduler(config: FinetuneConfig) -> bool:
    return isinstance((config.deepspeed or {}).get("scheduler"), dict)


def hidden_size_of(model: Any) -> int | None:
    """The hidden size Trainer reads for the bucket "auto"s: config.hidden_size, else the
    largest of hidden_sizes, else the text config's."""
    cfg = getattr(model, "config", None)
    for c in (cfg, getattr(cfg, "text_config", None)):
        if c is None:
            continue
        if isinstance(getattr(c, "hidden_size", None), int):
            return int(c.hidden_size)
        if getattr(c, "hidden_sizes", None):
            return int(max(c.hidden_sizes))
    return None


def loads_partitioned(zero_stage: int, precision: str, model_dtype: str, on_disk: bool) -> bool:
    """Whether a probe's copy of the base model is loaded straight into ZeRO-3 partitions
    (deepspeed.zero.Init under from_pretrained) instead of whole: at stage 3, for a model on disk
    (a tiny model has no files to read), and where zero.Init's dtype (the ds_config's precision)
    is what DeepSpeed would make of the weights anyway -- fp16/bf16 engines cast every parameter;
    an fp32 engine keeps the model's dtype -- so the weights trained on are the same either way
    (DoRA's magnitudes, computed when the adapter is built, then come from the cast weights)."""
    if zero_stage != 3 or not on_disk:
        return False
    return precision in ("bf16", "fp16") or model_dtype == "fp32"


@contextlib.contextmanager
def zero3_loading(ds: dict[str, Any]) -> Iterator[None]:
    """from_pretrained inside the block builds ZeRO-3-partitioned parameters (transformers reads
    a process-wide weak reference to an HfDeepSpeedConfig, the way Trainer sets it before a
    model is loaded); each rank keeps only its shard. The reference is restored on exit, so
    models loaded later in this process are whole again."""
    from transformers.integrations import deepspeed as hf_ds

    before = hf_ds._hf_deepspeed_config_weak_ref
    keep = hf_ds.HfDeepSpeedConfig(ds)  # held here: transformers keeps only a weak reference
    try:
        yield
    finally:
        hf_ds._hf_deepspeed_config_weak_ref = before
        del keep
