"""A probe of several workers (num_gpus: N > 1) as one Ray Train run.

Ray Train's TorchTrainer owns the worker group: ScalingConfig reserves N workers of
(probe.num_cpus CPU, 1 GPU) as one STRICT_PACK placement group (ZeRO's collectives stay on one
node), sets MASTER_ADDR / RANK / WORLD_SIZE / LOCAL_RANK and CUDA_VISIBLE_DEVICES, and creates the
torch process group (nccl on GPUs, gloo on CPUs) before each worker calls the same probe body a
single-process probe runs. The runner finds the group and DeepSpeed reuses it
(runner/trainer.py init_distributed creates one only when none exists). Rank 0 writes the probe's
points and events; its result dict, the one a single-process probe task returns, comes back as
the run's Result.return_value. The simulated backend exchanges nothing between ranks, so it runs
under a DataParallelTrainer, with no process group and no torch.

Failures: a worker whose probe fails raises ProbeAttemptFailed with its result dict, which ends
the whole worker group at once (ranks blocked in a collective with it are torn down by Ray Train,
not left to the collective's timeout), and fit()'s WorkerGroupError hands the dict back. A worker
that died, or a controller failure, is a failed attempt with a one-line reason charged the
launcher's wall seconds, as the gang charged them. FailureConfig(max_failures=0): attempts are
the driver's (allocation.max_retries), so each one is its own probe_runs record with its cost; a
restart inside Train would rerun the probe uncharged. A run still going at the probe timeout
aborts itself (train_deadline.py) and is a timed-out attempt, its placement group released.

Needs Ray Train V2 (the default in Ray 2.60; RAY_TRAIN_V2_ENABLED=0 turns it off): Result.return_value.
"""

from __future__ import annotations

import re
import time
from typing import Any

import ray

from prehoc_ray.execution.ledger import FINAL_PREFIX
from prehoc_ray.execution.resources import ProbeResources
from prehoc_ray.io.run_dir import RunDir

# Ray Train's storage_path inside the run directory (one folder per attempt, named after it).


class ProbeAttemptFailed(Exception):
    """Raised by a Train worker whose probe attempt failed; carries its result dict."""

    def __init__(self, result: dict) -> None:
        super().__init__(str(result.get("reason", "probe failed")))
        self.result = result

    def __reduce__(self):  # travels to the controller by pickle: rebuilt from the dict, not the message
        return (type(self), (self.result,))


def run_name(order: dict, attempt: int) -> str:
    """A Train run name (and folder) per attempt: the probe id with path-unsafe characters replaced."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", f"{order['probe_id']}-a{attempt}")


def _one_line(exc: BaseException, limit: int = 300) -> str:
    return " ".join(str(exc).split())[:limit]


def _probe_worker(config: dict) -> dict:
    """train_loop_per_worker: one rank of the probe, in the process group Ray Train made."""
    import ray.train

    from prehoc_ray.execution.probes import _worker_setup, run_probe_body

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    _worker_setup(config["num_cpus"])
    if config["real"]:
        _align_local_rank()
    out = run_probe_body(
        config["payload"],
        config["run_dir"],
        config["order"],
        config["attempt"],
        config["devices"],
        config["sim"],
        rank=rank,
        world=world,
    )
    if out.get("status") != "finished":
        raise ProbeAttemptFailed(out)
    return out


def _align_local_rank() -> None:
    """The runner picks its GPU as LOCAL_RANK among the visible ones (runner/trainer.py pick_device);
    make that the GPU Ray Train gave this worker, which Train's own rank order need not match."""
    import os

    import torch

    if torch.cuda.is_available():
        from ray.train.torch import get_device

        dev = get_device()
        if dev.type == "cuda" and dev.index is not None:
            os.environ["LOCAL_RANK"] = str(dev.index)


def build_trainer(
    payload: dict,
    run_dir: str,
    order: dict,
    attempt: int,
    res: ProbeResources,
    sim: dict | None,
    real: bool,
    timeout_s: float,
):
    """The Train run of one probe attempt (not started), aborted by its controller after timeout_s."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig

    from prehoc_ray.execution.train_deadline import RunDeadline

    config = {
        "payload": payload,
        "run_dir": run_dir,
        "order": order,
        "attempt": attempt,
        "devices": res.devices,
        "sim": sim,
        "num_cpus": res.num_cpus,
        "real": real,
    }
    scaling = ScalingConfig(
        num_workers=res.ranks,
        use_gpu=res.num_gpus > 0,
        resources_per_worker=res.worker_resources(),
        placement_strategy="STRICT_PACK",
    )
    run = RunConfig(
        name=run_name(order, attempt),
        storage_path=str(RunDir(run_dir).train_runs.resolve()),
        failure_config=FailureConfig(max_failures=0, max_preemption_failures=0),
        callbacks=[RunDeadline(time.time() + timeout_s)],
    )
    if real:
        from ray.train.torch import TorchConfig, TorchTrainer

        # a rank stuck in a collective fails within the probe's timeout, not torch's 30 minutes
        return TorchTrainer(
            _probe_worker,
            train_loop_config=config,
            scaling_config=scaling,
            run_config=run,
            torch_config=TorchConfig(timeout_s=max(60, int(timeout_s))),
        )
    from ray.train.v2.api.data_parallel_trainer import DataParallelTrainer

    return DataParallelTrainer(_probe_worker, train_loop_config=config, scaling_config=scaling, run_config=run)


def _failure(
    order: dict, attempt: int, res: ProbeResources, wall_s: float, reason: str, retryable: bool = True
) -> dict[str, Any]:
    """A failed attempt charged its wall seconds on every device it held (as the driver charges
    an attempt Ray lost)."""
    return {
        "status": "failed",
        "reason": reason,
        "retryable": retryable,
        "cost_s": wall_s * res.devices,
        "wall_s": wall_s,
        "probe_id": order["probe_id"],
        "candidate": order["candidate"],
        "seed": order["seed"],
        "attempt": attempt,
        "start_step": order["start_step"],
        "target_step": order["target_step"],
        "devices": res.devices,
        "ended_at": time.time(),
    }


def failed_run(exc: BaseException, order: dict, attempt: int, res: ProbeResources, wall_s: float) -> dict[str, Any]:
    """The probe's result for a Train run that raised: rank 0's own failure when it has one,
    else the lowest failing rank's, else the run's error in one line."""
    from ray.train import ControllerError, WorkerGroupError
    from ray.train.v2._internal.exceptions import WorkerHealthCheckFailedError

    if isinstance(exc, WorkerGroupError) and exc.worker_failures:
        failures = dict(sorted(exc.worker_failures.items()))
        own = [e for e in failures.values() if isinstance(e, ProbeAttemptFailed)]
        if own:
            return {**_failure(order, attempt, res, wall_s, ""), **own[0].result}
        rank, err = next(iter(failures.items()))
        if isinstance(err, (ray.exceptions.RayError, WorkerHealthCheckFailedError)):
            why = f"worker died (rank {rank}, {type(err).__name__}): {_one_line(err)}"
        else:
            why = f"rank {rank}: {type(err).__name__}: {_one_line(err)}"
    elif isinstance(exc, ControllerError):
        err = exc.controller_failure
        why = f"Ray Train controller failed ({type(err).__name__}): {_one_line(err)}"
    else:
        why = f"Ray Train run failed ({type(exc).__name__}): {_one_line(exc)}"
    return _failure(order, attempt, res, wall_s, why)


@ray.remote(num_cpus=0, max_retries=0)
def train_probe_task(
    payload: dict, run_dir: str, order: dict, attempt: int, res: ProbeResources, sim: dict | None, timeout_s: float
) -> dict[str, Any]:
    """One attempt of a multi-worker probe as one Ray Train run; rank 0's result dict.

    Bounded by timeout_s, waiting for the workers' resources included: the run aborts itself then
    (train_deadline.py), ahead of the driver's cancel (probe_timeout_s + 60 s for these probes)."""
    import os

    from ray.train.v2._internal.constants import is_v2_enabled

    from prehoc_ray.execution.probes import _spec

    t0 = time.perf_counter()
    if not is_v2_enabled():
        return _failure(
            order,
            attempt,
            res,
            0.0,
            FINAL_PREFIX + "multi-worker probes run on Ray Train V2, which "
            "RAY_TRAIN_V2_ENABLED=0 turns off on this node",
            retryable=False,
        )
    # Ray Train waits for the placement group in slices of this many seconds, its controller
    # deaf meanwhile; 20 s (not 60) lets a deadline's abort land well inside the driver's margin.
    os.environ.setdefault("RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S", "20")
    trainer = build_trainer(payload, run_dir, order, attempt, res, sim, _spec(payload).backend == "real", timeout_s)
    try:
        result = trainer.fit()
    except Exception as exc:  # TrainingFailedError, or the controller gone (aborted at the deadline)
        wall = time.perf_counter() - t0
        if wall >= timeout_s:
            return _failure(order, attempt, res, wall, f"timed out after {timeout_s:g}s")
        return failed_run(exc, order, attempt, res, wall)
    out = result.return_value
    if not isinstance(out, dict):  # no return value: a Train without Result.return_value
        return _failure(
            order,
            attempt,
            res,
            time.perf_counter() - t0,
            f"Ray Train returned no probe result (rank 0's return value: {type(out).__name__})",
        )
    return out
