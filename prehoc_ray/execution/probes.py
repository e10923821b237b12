"""The work that holds devices: static signals and probes, as Ray tasks (multi-GPU probes as Ray Train runs).

A probe task owns its bookkeeping in the result store: a 'started' event, every evaluation
point appended the moment it exists (one small fragment per point, so a kill loses at most the
point in flight), then its run record and a 'finished' event carrying the charged cost. The
driver writes the 'failed' events, because only it sees a worker that died.

A probe never raises for a failure of the probe itself (exception, NaN loss, out of memory):
it returns {"status": "failed", "reason": ..., "retryable": ...} with what it cost, so the
driver records and retries it. Only Ray-level failures (a worker or node that died, Ray's
memory monitor) reach the driver as exceptions.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from typing import Any

import ray

from prehoc_ray.execution.ledger import FINAL_PREFIX, record_run
from prehoc_ray.io.run_dir import RunDir
from prehoc_ray.io.store import ResultStore
from prehoc_ray.spec.job import JobSpec

_SPECS: dict[str, JobSpec] = {}


def spec_payload(spec: JobSpec) -> dict:
    """What travels to the workers (paths are already absolute after load_job)."""
    return spec.model_dump(mode="json")


def _spec(payload: dict) -> JobSpec:
    key = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    hit = _SPECS.get(key)
    if hit is None:
        hit = _SPECS[key] = JobSpec.model_validate(payload)
    return hit


def _candidate(spec: JobSpec, cid: str):
    for c in spec.candidate_specs():
        if c.id == cid:
            return c
    raise KeyError(f"candidate {cid!r} is not in job {spec.name!r}")


def _worker_setup(num_cpus: float) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import torch

        # tiny models are dominated by per-op overhead: threads beyond the CPUs asked for only spin
        torch.set_num_threads(max(1, int(num_cpus)))
    except ImportError:  # the simulated backend needs no torch
        pass


def _node_id() -> str:
    if not ray.is_initialized():  # a direct call (tests): asking would start a Ray instance
        return "local"
    try:
        return ray.get_runtime_context().get_node_id()
    except Exception:  # outside Ray (direct calls in tests)
        return "local"


def _classify(exc: BaseException) -> tuple[str, bool]:
    """(reason, retryable) of an exception raised by a probe."""
    from prehoc_ray.runner.errors import ProbeDivergedError, RunnerInputError

    msg = " ".join(str(exc).split())[:500]
    if isinstance(exc, RunnerInputError):
        return FINAL_PREFIX + msg, False
    if isinstance(exc, ProbeDivergedError):
        return f"diverged (non-finite loss): {msg}", True
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError" or "out of memory" in msg.lower():
        return f"out of memory: {msg}", True
    return f"{type(exc).__name__}: {msg}", True


# --------------------------------------------------------------------------------------------
# Simulated failures (tests): sim["failures"] = [{"match": substring of the probe id,
# "kind": exception | nan | oom | crash | input, "attempts": fail the first n attempts}]
# Simulated slow devices: sim["cost_scale"] = a factor on every probe's simulated cost, or
# {substring of the candidate id: factor} (first match; others 1): probes that cost several
# times what the driver guessed, as on a loaded node.


def _cost_scale(sim: dict, candidate: str) -> float:
    scale = sim.get("cost_scale", 1.0)
    if isinstance(scale, dict):
        return float(next((f for match, f in scale.items() if match in candidate), 1.0))
    return float(scale)


def _inject_failure(sim: dict, probe_id: str, attempt: int) -> None:
    for f in sim.get("failures", []):
        if f.get("match", "") in probe_id and attempt <= int(f.get("attempts", 1)):
            kind = f.get("kind", "exception")
            if kind == "crash":
                os._exit(1)  # the worker dies: Ray reports it, the task cannot
            if kind == "nan":
                from prehoc_ray.runner.errors import ProbeDivergedError

                raise ProbeDivergedError(f"probe {probe_id} diverged: training loss nan (simulated)", step=0)
            if kind == "oom":
                raise MemoryError(f"probe {probe_id}: out of memory (simulated)")
            if kind == "input":
                from prehoc_ray.runner.errors import RunnerInputError

                raise RunnerInputError(f"probe {probe_id}: unusable input (simulated)")
            raise RuntimeError(f"probe {probe_id} failed (simulated)")


def run_probe_body(
    payload: dict,
    run_dir: str,
    order: dict,
    attempt: int,
    devices: float,
    sim: dict | None = None,
    rank: int = 0,
    world: int = 1,
) -> dict[str, Any]:
    """One attempt of one probe, in whatever process runs it. rank > 0 only trains."""
    spec = _spec(payload)
    store = ResultStore(run_dir)
    pid, cid, seed = order["probe_id"], order["candidate"], int(order["seed"])
    start, target = int(order["start_step"]), int(order["target_step"])
    node, lead = _node_id(), rank == 0
    t0 = time.perf_counter()
    info: dict[str, Any] = {
        "probe_id": pid,
        "candidate": cid,
        "seed": seed,
        "attempt": attempt,
        "node_id": node,
        "pid": os.getpid(),
        "start_step": start,
        "target_step": target,
        "devices": devices,
    }
    if lead:
        store.record_probe(pid, cid, seed, start, target, "started", attempt=attempt)

    def tag(row: dict) -> dict:
        return {**row, "probe_id": pid, "attempt": attempt, "node_id": node}

    try:
        if spec.backend == "simulated":
            out = _simulated(spec, store, sim or {}, pid, cid, seed, start, target, attempt, tag, lead)
        else:
            out = _real(spec, run_dir, store, pid, cid, seed, start, target, devices, tag, lead)
    except Exception as exc:  # a failure of the probe itself: the driver records and retries it
        reason, retryable = _classify(exc)
        wall = time.perf_counter() - t0
        return {
            **info,
            "status": "failed",
            "reason": reason,
            "retryable": retryable,
            "wall_s": wall,
            "cost_s": wall * devices,
            "ended_at": time.time(),
        }
    info.update(out)
    info.update({"status": "finished", "wall_s": time.perf_counter() - t0, "ended_at": time.time()})
    if lead:
        record_run(run_dir, info)
        # last: a 'finished' event promises the points and the run record are durable
        store.record_probe(pid, cid, seed, start, target, "finished", cost_s=float(info["cost_s"]), attempt=attempt)
    return info


def _simulated(spec, store, sim, pid, cid, seed, start, target, attempt, tag, lead) -> dict:
    from prehoc_ray.execution.simulated import simulation_for

    _inject_failure(sim, pid, attempt)
    t0 = time.perf_counter()
    rows, cost = simulation_for(spec).run(cid, seed, start, target, pid)
    cost *= _cost_scale(sim, cid)
    runner_s = time.perf_counter() - t0
    sleep = float(sim.get("sleep_s", 0.0))
    # Points arrive one by one, as from a real probe, so a kill lands between two of them.
    for r in rows:
        if sleep:
            time.sleep(sleep / max(1, len(rows)))
        if lead:
            store.append([tag(r)])
    if not rows and sleep:
        time.sleep(sleep)
    return {
        "cost_s": float(cost),
        "steps_run": target - start,
        "resumed_from": start,
        "runner_s": runner_s + sleep,
        "train_s_per_step": float(cost) / max(1, target - start),
        "metric": "value",
        "setup_s": 0.0,
        "rows": [{"step": float(r["step"]), "value": float(r["value"])} for r in rows],
    }


def _real(spec, run_dir, store, pid, cid, seed, start, target, devices, tag, lead) -> dict:
    import math

    from prehoc_ray.runner.probe import ProbeRequest, run_probe

    cand = _candidate(spec, cid)
    req = ProbeRequest(cand, seed, target, RunDir(run_dir).checkpoints, spec.probe, pid)
    on_point = (lambda row: store.append([tag(row)])) if lead else None
    res = run_probe(req, on_point=on_point)
    setup = min(res.setup_seconds, res.seconds)
    cost = (res.seconds - setup) * devices  # one-time set-up is reported apart (setup_s)
    if res.steps_run == 0:
        # The checkpoint was already at the target (the attempt that wrote it was killed before
        # its 'finished' event): no training ran and on_point was not called, so the rows come
        # from the checkpoint and the cost is the measured one of the steps it stands for.
        if lead:
            kept = [tag(r) for r in res.rows if start < float(r["step"]) <= target]
            if kept:
                store.append(kept)
        if math.isfinite(res.seconds_per_step):
            cost = res.seconds_per_step * (target - start) * devices
    sps = res.seconds_per_step if math.isfinite(res.seconds_per_step) else float("nan")
    new = [r for r in res.rows if start < float(r["step"]) <= target]
    return {
        "rows": [{"step": float(r["step"]), "value": float(r["value"])} for r in new],
        "runner_s": float(res.seconds),
        "cost_s": float(cost),
        "steps_run": int(res.steps_run),
        "resumed_from": int(res.start_step),
        "train_s_per_step": float(sps * devices) if math.isfinite(sps) else float("nan"),
        "tokens": float(res.tokens),
        "metric": res.metric,
        "setup_s": float(setup * devices),
    }


def static_body(payload: dict, candidate: str) -> dict[str, float]:
    spec = _spec(payload)
    if spec.backend == "simulated":
        from prehoc_ray.execution.simulated import simulation_for

        return dict(simulation_for(spec).statics[candidate])
    from prehoc_ray.runner.static import compute_static_signals

    return {k: float(v) for k, v in compute_static_signals(_candidate(spec, candidate)).items()}


# --------------------------------------------------------------------------------------------
# Ray entry points


@ray.remote(max_retries=0)
def probe_task(payload, run_dir, order, attempt, devices, sim, num_cpus):
    _worker_setup(num_cpus)
    return run_probe_body(payload, run_dir, order, attempt, devices, sim)


@ray.remote(max_retries=1)
def static_task(payload, candidate, num_cpus):
    _worker_setup(num_cpus)
    return static_body(payload, candidate)
