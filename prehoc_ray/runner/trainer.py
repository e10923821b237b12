"""One small training interface over two backends that compute the same thing:

- `DeepSpeedEngine`: deepspeed.initialize with the config's ds_config merged with what the probe
  controls (runner/ds_config.py); the config's own torch optimizer and schedule unless the
  ds_config has its own; ZeRO 0-3, fp16/bf16, CPU offload; on CPU over gloo.
- `TorchEngine`: plain PyTorch (DDP when a process group of several ranks exists).

Both: the optimizer and learning-rate schedule of the full fine-tune (runner/optim.py; by
default AdamW and linear warm-up then cosine decay to 10% over `FinetuneConfig.full_steps`) --
a probe is the prefix of the run it predicts, so its learning rate at step c is the full run's
at step c -- `gradient_accumulation_steps` micro-batches per optimizer step, and gradient
clipping at `max_grad_norm` (1.0) with the pre-clip norm reported.

Checkpoints are read with `checkpoint.load_tensors` (torch.load weights_only=True) on both
backends, DeepSpeed's own loader included (see `_weights_only_loads`): a checkpoint directory is
shared storage, and an unrestricted unpickle of a file there runs whatever its author wrote.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import os
import socket
from pathlib import Path

import torch
import torch.nn.functional as F

from prehoc_ray.runner import checkpoint as ck
from prehoc_ray.runner.batches import IGNORE
from prehoc_ray.runner.models import cache_root
from prehoc_ray.runner.optim import build_optimizer, build_scheduler

# --------------------------------------------------------------------------------------------
# Process / device set-up


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_dist_env() -> None:
    """Single-process defaults for torch.distributed / DeepSpeed; a launcher (Ray Train's
    TorchTrainer, torchrun, deepspeed) sets these itself and they are left alone. A free port is
    picked so several single-process probes on one node do not collide."""
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(cache_root() / "torch_extensions"))
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ and "MASTER_ADDR" in os.environ:
        os.environ.setdefault("LOCAL_RANK", "0")
        os.environ.setdefault("MASTER_PORT", "29500")
        return
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(_free_port()))
    os.environ.setdefault("RANK", "0")
    os.environ.setdefault("LOCAL_RANK", "0")
    os.environ.setdefault("WORLD_SIZE", "1")


def init_distributed(device: torch.device) -> None:
    """The process group DeepSpeed runs in (nccl on GPUs, gloo on CPU), unless one exists."""
    import deepspeed

    ensure_dist_env()
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not torch.distributed.is_initialized():
        deepspeed.init_distributed(dist_backend="nccl" if device.type == "cuda" else "gloo", verbose=False)


def dist_info() -> tuple[int, int]:
    """(rank, world size) of the current process group, (0, 1) without one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def pick_device() -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return torch.device("cpu")


def pick_precision(requested: str, device: torch.device) -> str:
    """'auto': bf16 on GPUs that have it, fp32 elsewhere (CPU bf16 matmuls are slow here)."""
    if requested == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    return requested


def _clip_norm(max_grad_norm: float) -> float:
    """clip_grad_norm_'s bound: max_grad_norm, or no bound (the norm is still measured) at 0."""
    return max_grad_norm if max_grad_norm > 0 else math.inf


# --------------------------------------------------------------------------------------------
# The loss on answer tokens


class ModelCall:
    """Calls a causal LM asking only for the logits of the last `keep` positions when its
    forward supports `logits_to_keep` (answers sit at the end of left-padded batches)."""

    def __init__(self, hf_model) -> None:
        params = inspect.signature(hf_model.forward).parameters
        self.keep = "logits_to_keep" in params
        self.positions = "position_ids" in params
        # transformers 5.2x renamed `past_key_values` to `cache` (the old name warns)
        self.cache_kw = "cache" if "cache" in params else "past_key_values"

    def token_stats(self, module, batch):
        """Per answer-token NLL [n, k-1] (0 outside the answer), the answer mask, and the
        logits at those positions."""
        k = batch["keep"]
        kw = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        if self.positions:
            kw["position_ids"] = batch["position_ids"]
        if self.keep:
            kw["logits_to_keep"] = k
        logits = module(**kw).logits
        if not self.keep:
            logits = logits[:, -k:]
        logits = logits[:, :-1].float()
        target = batch["labels"][:, -(k - 1) :]
        mask = target != IGNORE
        nll = F.cross_entropy(logits.transpose(1, 2), target.clamp(min=0), reduction="none") * mask
        return nll, mask, logits

    def loss(self, module, batch):
        nll, mask, _ = self.token_stats(module, batch)
        return nll.sum() / mask.sum().clamp(min=1)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def _grad_norm(params) -> torch.Tensor:
    grads = [p.grad.detach().float().norm() for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.stack(grads).norm()


# --------------------------------------------------------------------------------------------
# Engines


class TorchEngine:
    name = "torch"

    def __init__(self, model, config, *, device, precision: str, call: ModelCall) -> None:
        if device.type == "cuda":
            torch.cuda.set_device(device)
        self.model = model.to(device)
        self.device, self.precision, self.call = device, precision, call
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = build_optimizer(self.params, config)
        self.scheduler = build_scheduler(self.optimizer, config)
        self.max_norm = _clip_norm(config.max_grad_norm)
        _, world = dist_info()
        self.forward_module = self.model
        if world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self.forward_module = DDP(self.model, device_ids=[device.index] if device.type == "cuda" else None)

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return torch.autocast(device_type=self.device.type, enabled=False)

    def train_step(self, batches: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step over `batches` (the step's micro-batches, gradients averaged):
        (mean micro-batch loss, pre-clip gradient norm)."""
        self.forward_module.train()  # always: a fresh peft wrapper reports training=True over eval-mode layers
        n = len(batches)
        losses = []
        for i, batch in enumerate(batches):
            # DDP: reduce the gradients once, after the last micro-batch
            quiet = n > 1 and i < n - 1 and hasattr(self.forward_module, "no_sync")
            with self.forward_module.no_sync() if quiet else contextlib.nullcontext():
                with self._autocast():
                    loss = self.call.loss(self.forward_module, batch)
                (loss if n == 1 else loss / n).backward()
            losses.append(loss.detach())
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return (losses[0] if n == 1 else torch.stack(losses).mean()), norm.detach()

    def eval_module(self):
        self.model.eval()
        return self.model

    def eval_autocast(self):
        return self._autocast()

    def save(self, directory: Path) -> None:
        trainable = {n: p.detach().cpu() for n, p in self.model.named_parameters() if p.requires_grad}
        torch.save(
            {
                "trainable": trainable,
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
            },
            directory / "torch_state.pt",
        )

    def load(self, directory: Path) -> None:
        state = ck.load_tensors(directory / "torch_state.pt")
        named = dict(self.model.named_parameters())
        with torch.no_grad():
            for n, v in state["trainable"].items():
                named[n].copy_(v.to(named[n].device))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])

    def close(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)


class DeepSpeedEngine:
    name = "deepspeed"
    TAG = "probe"

    def __init__(self, model, config, *, device, precision: str, call: ModelCall, zero_stage: int) -> None:
        import deepspeed

        init_distributed(device)
        _, world = dist_info()
        self.device, self.precision, self.call = device, precision, call
        from prehoc_ray.runner.ds_config import has_ds_optimizer, has_ds_scheduler, hidden_size_of, merged_ds_config

        ds_config = merged_ds_config(
            config, world=world, precision=precision, zero_stage=zero_stage, hidden_size=hidden_size_of(model)
        )
        params = [p for p in model.parameters() if p.requires_grad]
        # The ds_config's own optimizer / scheduler sections are the run's: DeepSpeed builds them
        # (as under Hugging Face Trainer); otherwise the config's. The config's schedule on
        # DeepSpeed's optimizer is handed over as a callable, built once that optimizer exists.
        optimizer = None if has_ds_optimizer(config) else build_optimizer(params, config)
        if has_ds_scheduler(config):
            scheduler = None
        elif optimizer is None:
            scheduler = lambda opt: build_scheduler(opt, config)  # noqa: E731
        else:
            scheduler = build_scheduler(optimizer, config)
        self.ds_config = ds_config
        self.engine, _, _, _ = deepspeed.initialize(
            model=model,
            optimizer=optimizer,
            model_parameters=params if optimizer is None else None,
            lr_scheduler=scheduler,
            config=ds_config,
            dist_init_required=False,
        )
        _weights_only_loads(self.engine)
        self.model = self.engine.module
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        # DeepSpeed records the global norm only in its own optimizer wrappers (ZeRO >= 1, bf16);
        # with a plain torch optimizer at stage 0 we measure it ourselves before the step.
        self._own_norm = zero_stage == 0 and precision == "fp32"

    def train_step(self, batches: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step over `batches`: DeepSpeed accumulates `gradient_accumulation_steps`
        micro-batches (scaling each loss) and steps the optimizer and the schedule at the last."""
        self.engine.train()
        losses, norm = [], None
        for i, batch in enumerate(batches):
            loss = self.call.loss(self.engine, batch)
            self.engine.backward(loss)
            if i == len(batches) - 1 and self._own_norm:
                norm = _grad_norm(self.params)
            self.engine.step()
            losses.append(loss.detach())
        if norm is None:
            g = self.engine.get_global_grad_norm()
            norm = g.detach() if torch.is_tensor(g) else torch.tensor(float("nan") if g is None else float(g))
        return (losses[0] if len(losses) == 1 else torch.stack(losses).float().mean()), norm

    def eval_module(self):
        self.engine.eval()
        return self.engine

    def eval_autocast(self):
        return torch.autocast(device_type=self.device.type, enabled=False)

    def save(self, directory: Path) -> None:
        ck.private_dir(directory / self.TAG)  # DeepSpeed would create it world-readable
        self.engine.save_checkpoint(str(directory), tag=self.TAG, save_latest=False, exclude_frozen_parameters=True)

    def load(self, directory: Path) -> None:
        path, _ = self.engine.load_checkpoint(
            str(directory),
            tag=self.TAG,
            load_module_strict=False,
            load_optimizer_states=True,
            load_lr_scheduler_states=True,
        )
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed checkpoint under {str(directory)!r}")

    def close(self) -> None:
        try:
            self.engine.destroy()
        except Exception:
            pass


def _deepspeed_checkpoint_types() -> list[type]:
    """The DeepSpeed types a ZeRO optimizer's own state_dict holds (its stage, its loss scaler,
    fragment offsets): plain records, built field by field by the weights-only unpickler."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [ZeroStageEnum, LossScaler, DynamicLossScaler, fragment_address]


def _weights_only_loads(engine) -> None:
    """Route every file DeepSpeed's load_checkpoint reads through `ck.load_tensors`.

    DeepSpeed (0.19.8 here) reads checkpoints with `torch.load(weights_only=False)` in its
    TorchCheckpointEngine and offers no option to change it; every read of load_checkpoint
    (model states, ZeRO optimizer shards) goes through `engine.checkpoint_engine.load`, so that
    one method is replaced on this engine's instance."""
    allow = _deepspeed_checkpoint_types()

    def load(path, map_location=None):
        return ck.load_tensors(Path(path), map_location=map_location or "cpu", allow=allow)

    if getattr(engine, "checkpoint_engine", None) is None:
        raise RuntimeError(
            "this DeepSpeed engine has no checkpoint_engine, so its checkpoints could only be read by DeepSpeed's "
            "unrestricted unpickling: use zero_stage 0-3 with the runner's own optimizer, or backend 'torch'"
        )
    engine.checkpoint_engine.load = load


def make_engine(backend: str, model, config, *, device, precision: str, call: ModelCall, zero_stage: int = 0):
    if backend == "deepspeed":
        return DeepSpeedEngine(model, config, device=device, precision=precision, call=call, zero_stage=zero_stage)
    if backend == "torch":
        return TorchEngine(model, config, device=device, precision=precision, call=call)
    raise ValueError(f"backend must be 'deepspeed' or 'torch', got {backend!r}")
