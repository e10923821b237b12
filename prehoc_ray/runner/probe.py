"""The public probe API: one short LoRA fine-tune of one candidate with one seed, resumable.

    from prehoc_ray.runner.probe import ProbeRequest, ProbeResult, run_probe

run_probe trains a candidate from its checkpoint (or from scratch) to `target_step`, evaluates
every `settings.eval_every` steps and at `target_step`, hands each evaluation row to `on_point`
the moment it exists, checkpoints at the end and reports the measured cost.

Determinism: the seed fixes the LoRA initialisation, the data order (batches.py) and dropout
(re-seeded from (seed, step, rank) before every step). Together with a checkpoint that carries
the adapter, the optimizer and the LR schedule, a run 0 -> 20 followed by 20 -> 40 computes the
same curve as one run 0 -> 40.

Inside a Ray Train TorchTrainer worker (or under torchrun/deepspeed) the process group already
exists: every rank calls run_probe with the same request; ranks share each global batch, all
ranks evaluate (ZeRO-3 needs every rank in each forward), rank 0 alone calls `on_point` and
writes the checkpoint's meta.
"""

from __future__ import annotations

import gc
import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from prehoc_ray import types as T
from prehoc_ray.runner import checkpoint as ck
from prehoc_ray.runner.cost import CostMeter, projected_full_cost_s
from prehoc_ray.runner.errors import ProbeDivergedError, RunnerInputError
from prehoc_ray.spec.candidate import CandidateSpec, ProbeSettings

if TYPE_CHECKING:
    import torch

    from prehoc_ray.runner.trainer import DeepSpeedEngine, TorchEngine

    Engine = TorchEngine | DeepSpeedEngine

# How often (in steps) the loss is pulled from the device and checked for NaN/inf when the
# evaluation interval is longer; in between, steps run without a host sync.
SYNC_EVERY = 10


@dataclass
class ProbeRequest:
    candidate: CandidateSpec
    seed: int
    target_step: int
    checkpoint_dir: Path
    settings: ProbeSettings = field(default_factory=ProbeSettings)
    probe_id: str = ""

    def __post_init__(self) -> None:
        if self.target_step < 1:
            raise ValueError(f"target_step must be >= 1, got {self.target_step}")
        self.checkpoint_dir = Path(self.checkpoint_dir)


@dataclass
class ProbeResult:
    rows: list[dict]  # every evaluation row of the probe so far (earlier runs included)
    seconds: float  # wall time of this call
    steps_run: int  # optimizer steps taken by this call
    tokens: int  # training tokens processed by this call (all ranks)
    seconds_per_step: float  # lambda: training seconds per step (evaluation excluded)
    tokens_per_step: float
    projected_full_cost_s: float  # seconds_per_step * config.full_steps
    start_step: int = 0  # the step this call resumed from
    end_step: int = 0
    metric: str = ""  # what `value` is: "accuracy" or "exact_match"
    backend: str = ""
    precision: str = ""
    new_rows: list[dict] = field(default_factory=list)  # rows emitted by this call
    train_seconds: float = 0.0  # this call's training steps, every step included
    eval_seconds: float = 0.0  # this call's evaluations
    # One-time set-up inside `seconds`: loading and tokenising the task, building or converting
    # the base model, and the first engine of its backend in this process (DeepSpeed builds its
    # communication op once per cache: about a minute on 2 cores). A full fine-tune pays it
    # once, so it is reported apart from the probe's cost rather than charged to the budget.
    setup_seconds: float = 0.0


def derive_seed(seed: int, *parts) -> int:
    """A 63-bit seed for one purpose (LoRA init, data order, dropout at a step, ...)."""
    h = hashlib.sha256(repr((seed,) + parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def seed_step(value: int, device) -> None:
    """Seed the generators dropout draws from: the CPU one and, on a GPU, only this process's
    device (torch.manual_seed would touch -- and create contexts on -- every visible GPU)."""
    import torch

    torch.random.default_generator.manual_seed(value)
    if device.type == "cuda":
        torch.cuda.manual_seed(value)


# --------------------------------------------------------------------------------------------
# Per-process preparation, shared by probes and static signals


@dataclass
class Prepared:
    task: object  # data.TaskData
    base: object  # models.Base
    train: list  # batches.Encoded
    eval_set: object  # evaluation.EvalSet
    call: object  # trainer.ModelCall


_PREPARED: dict[str, Prepared] = {}
_ENGINES_BUILT: set[tuple[str, str, int]] = set()  # (backend, precision, zero stage) built in this process


def prepare(candidate: CandidateSpec) -> Prepared:
    """Task data, cached base model + tokenizer, tokenised train set and eval set."""
    from prehoc_ray.runner.batches import encode_examples
    from prehoc_ray.runner.chat import rendered_task, tokenizer_texts
    from prehoc_ray.runner.data import load_task
    from prehoc_ray.runner.evaluation import build_eval_set
    from prehoc_ray.runner.models import base_key, get_base
    from prehoc_ray.runner.trainer import ModelCall

    task = load_task(candidate.task)
    base = get_base(candidate.model, candidate.task, lambda: tokenizer_texts(task, candidate.task))
    task = rendered_task(task, candidate.model, candidate.task, base)  # chat data: with its template
    key = (
        f"{base_key(candidate.model, candidate.task)}|{candidate.task.model_dump_json()}|{candidate.config.max_seq_len}"
    )
    hit = _PREPARED.get(key)
    if hit is None or hit.task is not task or hit.base is not base:
        max_len = candidate.config.max_seq_len
        hit = _PREPARED[key] = Prepared(
            task=task,
            base=base,
            train=encode_examples(base.codec, task.train, max_len),
            eval_set=build_eval_set(base.codec, task, max_len),
            call=ModelCall(base.model),
        )
    return hit


def clear_caches() -> None:
    """Drop every cached task, base model and tokenised set of this process."""
    from prehoc_ray.runner import chat, data, models

    _PREPARED.clear()
    _ENGINES_BUILT.clear()
    models.clear_cache()
    data._CACHE.clear()
    chat.clear_cache()


def build_lora_model(base, config, seed: int):
    """A private copy of the base model with fresh LoRA adapters, initialised from `seed`.

    The adapter is peft's LoraConfig built from the config (runner/lora.py: every field of it
    passes through, unknown ones are refused by name)."""
    import torch
    from peft import get_peft_model

    from prehoc_ray.runner.lora import lora_config

    lora = lora_config(config)  # before the copy: a bad key costs nothing
    model = base.fresh_copy()
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(derive_seed(seed, "lora-init"))  # init runs on CPU
        try:
            return get_peft_model(model, lora)
        except (ValueError, TypeError, KeyError) as e:
            msg = " ".join(str(e).split())
            raise RunnerInputError(
                f"config {config.name!r}: cannot put LoRA adapters on {base.source!r}: {msg} (set config.target_modules)"
            ) from e


# --------------------------------------------------------------------------------------------
# The probe


def run_probe(request: ProbeRequest, on_point: Callable[[dict], None] | None = None) -> ProbeResult:
    """Train the request's probe to its target step, resuming from its checkpoint (module docstring)."""
    import torch

    from prehoc_ray.runner.trainer import dist_info

    t_call = time.perf_counter()
    setup = _set_up(request)
    if setup.start >= request.target_step:  # nothing to train: the checkpoint is already there (or past it)
        return _result_without_training(request, setup, t_call)
    engine, model, engine_setup_s = _build_engine(request, setup)
    setup.setup_s += engine_setup_s
    rank, world = dist_info()  # the group exists now (DeepSpeed creates it with its engine)
    try:
        if setup.found is not None:
            engine.load(setup.found[0])
        state = _TrainState.resumed(setup.meta)
        meter = CostMeter()
        _train(request, setup, engine, state, meter, rank, world, t_call, on_point)
        _save(
            engine, setup.pdir, request.target_step, rank, world, _checkpoint_meta(request, setup, state, meter, t_call)
        )
    finally:
        engine.close()
        del engine, model
        gc.collect()
        if setup.device.type == "cuda":
            torch.cuda.empty_cache()
    return _result(request, setup, state, meter, t_call)


@dataclass
class _Setup:
    """What a call works with before it trains: the prepared data, the numerics, and the
    checkpoint it resumes from (checked against the fingerprint those make)."""

    prep: Prepared
    device: torch.device
    precision: str
    zero_stage: int
    world: int  # the data-parallel world the fingerprint names (the one DeepSpeed will create, if none yet)
    pdir: Path
    fingerprint: dict
    found: tuple[Path, dict] | None  # (step directory, meta) of the latest checkpoint
    meta: dict  # that checkpoint's meta, {} when starting from scratch
    setup_s: float  # one-time set-up so far (see ProbeResult.setup_seconds)

    @property
    def start(self) -> int:
        return int(self.meta.get("step", 0))

    @property
    def prior_wall(self) -> float:
        """Wall seconds of the earlier calls that brought the probe to `start`."""
        return float(self.meta.get("wall_s", 0.0))


def _set_up(request: ProbeRequest) -> _Setup:
    from prehoc_ray.runner.ds_config import probe_numerics
    from prehoc_ray.runner.trainer import dist_info, ensure_dist_env, pick_device

    cand, settings, seed = request.candidate, request.settings, request.seed
    t_prep = time.perf_counter()
    prep = prepare(cand)  # ~0 s on a cache hit
    setup_s = time.perf_counter() - t_prep
    if settings.backend == "deepspeed":
        ensure_dist_env()
    device = pick_device()
    # the ds_config's precision and ZeRO stage where it has them, else the probe settings'
    precision, zero_stage = probe_numerics(cand.config, settings, device)
    _, world = dist_info()
    if settings.backend == "deepspeed" and world == 1:
        # DeepSpeed creates the (single-process) group itself; read the world it will have.
        import os

        world = int(os.environ.get("WORLD_SIZE", "1"))
    pdir = ck.probe_dir(request.checkpoint_dir, cand.id, seed)
    expected = ck.fingerprint(cand, seed, settings.backend, zero_stage, precision, world)
    found = ck.latest(pdir)
    meta: dict = {}
    if found is not None:
        ck.check_fingerprint(found[1], expected, found[0])
        meta = found[1]
    return _Setup(prep, device, precision, zero_stage, world, pdir, expected, found, meta, setup_s)


def _result_without_training(request: ProbeRequest, setup: _Setup, t_call: float) -> ProbeResult:
    """The result of a call whose target the checkpoint already reached: its rows and its cost."""
    meta, target = setup.meta, request.target_step
    sps, tps = float(meta.get("seconds_per_step", math.nan)), float(meta.get("tokens_per_step", math.nan))
    return ProbeResult(
        rows=[r for r in meta.get("rows", []) if r[T.STEP] <= target],
        seconds=time.perf_counter() - t_call,
        steps_run=0,
        tokens=0,
        seconds_per_step=sps,
        tokens_per_step=tps,
        projected_full_cost_s=projected_full_cost_s(sps, request.candidate.config.full_steps),
        start_step=setup.start,
        end_step=setup.start,
        metric=setup.prep.eval_set.metric,
        backend=request.settings.backend,
        precision=setup.precision,
        setup_seconds=setup.setup_s,
    )


def _build_engine(request: ProbeRequest, setup: _Setup) -> tuple[Engine, object, float]:
    """(engine, LoRA model, set-up seconds): a backend's first engine in this process is set-up."""
    from prehoc_ray.runner.ds_config import hidden_size_of, loads_partitioned, merged_ds_config, zero3_loading
    from prehoc_ray.runner.trainer import init_distributed, make_engine

    cand, settings, cfg, prep = request.candidate, request.settings, request.candidate.config, setup.prep
    precision, zero_stage = setup.precision, setup.zero_stage
    if settings.backend == "deepspeed" and loads_partitioned(
        zero_stage, precision, cand.model.dtype, prep.base.reload is not None
    ):
        # ZeRO-3: this probe's copy is read from disk straight into its partitions, never whole
        init_distributed(setup.device)
        ds = merged_ds_config(
            cfg,
            world=setup.world,
            precision=precision,
            zero_stage=zero_stage,
            hidden_size=hidden_size_of(prep.base.model),
        )
        with zero3_loading(ds):
            model = build_lora_model(prep.base, cfg, request.seed)
    else:
        model = build_lora_model(prep.base, cfg, request.seed)
    t_engine = time.perf_counter()
    engine = make_engine(
        settings.backend, model, cfg, device=setup.device, precision=precision, call=prep.call, zero_stage=zero_stage
    )
    engine_key = (settings.backend, precision, zero_stage)
    setup_s = 0.0
    if engine_key not in _ENGINES_BUILT:  # later builds (about 10 ms) are the probe's own cost
        _ENGINES_BUILT.add(engine_key)
        setup_s = time.perf_counter() - t_engine
    return engine, model, setup_s


@dataclass
class _TrainState:
    """The training loop's running state: the rows, the token count, the sums over the current
    evaluation window (since the last multiple of eval_every) and the step results still on the
    device (pulled to the host every SYNC_EVERY steps and at each evaluation)."""

    rows: list[dict]  # every row of the probe, earlier calls' included
    tokens: int  # training tokens of the probe so far, all ranks
    window: dict  # {"loss", "grad_norm", "n"}
    tokens_at_start: int
    new_rows: list[dict] = field(default_factory=list)
    pending_loss: list = field(default_factory=list)  # device tensors
    pending_norm: list = field(default_factory=list)
    pending_steps: list[int] = field(default_factory=list)
    pending_tokens: int = 0

    @classmethod
    def resumed(cls, meta: dict) -> _TrainState:
        tokens = int(meta.get("tokens", 0))
        window = dict(meta.get("window", {"loss": 0.0, "grad_norm": 0.0, "n": 0}))
        return cls(rows=list(meta.get("rows", [])), tokens=tokens, window=window, tokens_at_start=tokens)


def _sync(state: _TrainState, request: ProbeRequest, world: int) -> None:
    """Pull the pending losses/norms to the host, check them, add them to the window."""
    import torch

    if not state.pending_loss:
        return
    losses = torch.stack(state.pending_loss).float()
    norms = torch.stack([n.float().reshape(()) for n in state.pending_norm]).to(losses.device)
    tokens = torch.tensor([float(state.pending_tokens)], device=losses.device)
    if world > 1:
        torch.distributed.all_reduce(losses)
        losses /= world
        torch.distributed.all_reduce(tokens)
    losses_l, norms_l = losses.cpu().tolist(), norms.cpu().tolist()
    win = state.window
    for s, l_, g in zip(state.pending_steps, losses_l, norms_l):
        if not math.isfinite(l_):
            raise ProbeDivergedError(
                f"probe {request.probe_id or request.candidate.id} (seed {request.seed}) diverged: "
                f"training loss {l_} at step {s}",
                step=s,
                rows=state.rows,
            )
        win["loss"] += l_
        win["grad_norm"] += g
        win["n"] += 1
    state.tokens += int(tokens.item())
    state.pending_loss.clear(), state.pending_norm.clear(), state.pending_steps.clear()
    state.pending_tokens = 0


def _train(
    request: ProbeRequest,
    setup: _Setup,
    engine: Engine,
    state: _TrainState,
    meter: CostMeter,
    rank: int,
    world: int,
    t_call: float,
    on_point: Callable[[dict], None] | None,
) -> None:
    """Steps from the checkpoint's step to the target, evaluating every eval_every steps and at
    the target; the meter gets the training and evaluation time, the steps and the tokens."""
    import torch

    from prehoc_ray.runner.batches import batch_indices, collate
    from prehoc_ray.runner.evaluation import eval_batch_size
    from prehoc_ray.runner.trainer import to_device

    cfg, settings, prep, device = request.candidate.config, request.settings, setup.prep, setup.device
    start, target = setup.start, request.target_step
    order_seed = derive_seed(request.seed, "order")
    pad_id = prep.base.codec.pad_id
    eval_bs = eval_batch_size(cfg.batch_size)
    accum = cfg.gradient_accumulation_steps
    t_window = time.perf_counter()
    for step in range(start, target):
        s = step + 1
        seed_step(derive_seed(request.seed, "dropout", step, rank), device)
        # the step's micro-batches are consecutive windows of the data stream (one window,
        # position `step`, without gradient accumulation: the same batches as always)
        micro = []
        for k in range(accum):
            idx = batch_indices(len(prep.train), cfg.batch_size, order_seed, step * accum + k, rank, world)
            batch = collate([prep.train[i] for i in idx], pad_id)
            state.pending_tokens += batch["tokens"]
            micro.append(to_device(batch, device))
        loss, norm = engine.train_step(micro)
        state.pending_loss.append(loss)
        state.pending_norm.append(norm)
        state.pending_steps.append(s)
        if step == start:  # time the first step on its own: it carries the warm-up
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            meter.first_step_seconds = time.perf_counter() - t_window
        is_eval = s % settings.eval_every == 0 or s == target
        if is_eval or len(state.pending_loss) >= SYNC_EVERY:
            _sync(state, request, world)
        if not is_eval:
            continue
        meter.train_seconds += time.perf_counter() - t_window
        row = _evaluate_row(request, setup, engine, state, meter, s, eval_bs, t_call)
        state.rows.append(row)
        state.new_rows.append(row)
        if rank == 0 and on_point is not None:
            on_point(dict(row))
        if s % settings.eval_every == 0:
            state.window = {"loss": 0.0, "grad_norm": 0.0, "n": 0}
        t_window = time.perf_counter()
    meter.steps = target - start
    meter.tokens = state.tokens - state.tokens_at_start


def _evaluate_row(
    request: ProbeRequest,
    setup: _Setup,
    engine: Engine,
    state: _TrainState,
    meter: CostMeter,
    step: int,
    eval_bs: int,
    t_call: float,
) -> dict:
    """The evaluation row at `step` (ProbeDivergedError on a non-finite eval loss)."""
    from prehoc_ray.runner.evaluation import evaluate

    cand, seed, prep, win = request.candidate, request.seed, setup.prep, state.window
    t_eval = time.perf_counter()
    eval_loss, value = evaluate(
        prep.call,
        engine.eval_module(),
        prep.eval_set,
        pad_id=prep.base.codec.pad_id,
        device=setup.device,
        batch_size=eval_bs,
        autocast=engine.eval_autocast(),
    )
    meter.eval_seconds += time.perf_counter() - t_eval
    row = {
        T.CANDIDATE: cand.id,
        T.SEED: seed,
        T.STEP: step,
        T.VALUE: value,
        T.EVAL_LOSS: eval_loss,
        T.TRAIN_LOSS: win["loss"] / max(1, win["n"]),
        T.GRAD_NORM: win["grad_norm"] / max(1, win["n"]),
        T.WALL_S: setup.prior_wall + (time.perf_counter() - t_call),
        T.TOKENS: state.tokens,
        T.PROBE_ID: request.probe_id,
    }
    if not math.isfinite(eval_loss):
        raise ProbeDivergedError(
            f"probe {request.probe_id or cand.id} (seed {seed}) diverged: eval loss {eval_loss} at step {step}",
            step=step,
            rows=state.rows,
        )
    return row


def _checkpoint_meta(request: ProbeRequest, setup: _Setup, state: _TrainState, meter: CostMeter, t_call: float) -> dict:
    """The meta committed with the checkpoint: what a later call resumes from."""
    return {
        "fingerprint": setup.fingerprint,
        "step": request.target_step,
        "rows": state.rows,
        "window": state.window,
        "wall_s": setup.prior_wall + (time.perf_counter() - t_call),
        "tokens": state.tokens,
        "seconds_per_step": meter.seconds_per_step,
        "tokens_per_step": meter.tokens_per_step,
        "probe_id": request.probe_id,
    }


def _result(request: ProbeRequest, setup: _Setup, state: _TrainState, meter: CostMeter, t_call: float) -> ProbeResult:
    return ProbeResult(
        rows=state.rows,
        seconds=time.perf_counter() - t_call,
        steps_run=meter.steps,
        tokens=meter.tokens,
        seconds_per_step=meter.seconds_per_step,
        tokens_per_step=meter.tokens_per_step,
        projected_full_cost_s=projected_full_cost_s(meter.seconds_per_step, request.candidate.config.full_steps),
        start_step=setup.start,
        end_step=request.target_step,
        metric=setup.prep.eval_set.metric,
        backend=request.settings.backend,
        precision=setup.precision,
        new_rows=state.new_rows,
        train_seconds=meter.train_seconds,
        eval_seconds=meter.eval_seconds,
        setup_seconds=setup.setup_s,
    )


def _save(engine, pdir: Path, step: int, rank: int, world: int, meta: dict) -> None:
    import torch.distributed as dist

    def barrier() -> None:
        if world > 1 and dist.is_initialized():
            dist.barrier()

    if rank == 0:
        step_dir = ck.new_step_dir(pdir, step)  # owner-only, with any missing parents
    barrier()
    step_dir = pdir / f"step_{step:08d}"
    if engine.name == "deepspeed" or rank == 0:  # DeepSpeed saves per-rank shards
        engine.save(step_dir)
    barrier()
    if rank == 0:
        ck.commit(pdir, step_dir, meta)
    barrier()
