"""What one probe asks the cluster for, and whether any node can ever give it.

Three shapes (docs/design.md, Ray conventions):
- CPU only, or one GPU or a fraction of one: a single Ray task with num_cpus / num_gpus.
  Fractions let small LoRA probes share a GPU (Ray does not isolate their memory).
- num_gpus > 1 (an integer): one Ray Train run of that many workers, one GPU each, which Ray
  Train reserves together as a STRICT_PACK placement group on one node (a DeepSpeed ZeRO
  probe) and releases when it ends (execution/train_probe.py).

num_cpus is per process: per worker of a Train run.
Ray never fails a request no node can satisfy, it waits for ever: `infeasible_reason` checks
up front against the nodes that are alive, so a typo in the spec is an error, not a hang.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from prehoc_ray.spec.candidate import ProbeSettings


@dataclass(frozen=True)
class ProbeResources:
    num_cpus: float  # per process
    num_gpus: float  # per process: 0, a fraction, or 1 per worker of a Train run
    ranks: int = 1  # processes; > 1 only for a multi-GPU probe (Ray Train workers)

    @property
    def gang(self) -> bool:
        """Several processes: the probe runs as one Ray Train run, not as a task."""
        return self.ranks > 1

    @property
    def total_gpus(self) -> float:
        return self.num_gpus * self.ranks

    @property
    def total_cpus(self) -> float:
        return self.num_cpus * self.ranks

    @property
    def devices(self) -> float:
        """Devices a probe holds while it runs: what one second of it costs from the budget
        (GPU-seconds when it has GPUs, else CPU-seconds)."""
        return self.total_gpus if self.total_gpus > 0 else self.total_cpus

    @property
    def device_kind(self) -> str:
        return "GPU" if self.total_gpus > 0 else "CPU"

    def task_options(self) -> dict:
        """Ray options of a single-process probe."""
        opts: dict = {"num_cpus": self.num_cpus}
        if self.num_gpus > 0:
            opts["num_gpus"] = self.num_gpus
        return opts

    def worker_resources(self) -> dict[str, float]:
        """ScalingConfig.resources_per_worker of a multi-worker probe: one worker's share."""
        b = {"CPU": self.num_cpus}
        if self.num_gpus > 0:
            b["GPU"] = self.num_gpus
        return b

    def bundles(self) -> list[dict[str, float]]:
        """The placement group Ray Train reserves for a multi-worker probe: one bundle per worker."""
        return [self.worker_resources() for _ in range(self.ranks)]

    def describe(self) -> str:
        if self.gang:
            return (
                f"{self.ranks} ranks x ({self.num_cpus:g} CPU, {self.num_gpus:g} GPU), STRICT_PACK, one Ray Train run"
            )
        gpu = f", {self.num_gpus:g} GPU" if self.num_gpus > 0 else ""
        return f"{self.num_cpus:g} CPU{gpu}"


def probe_resources(settings: ProbeSettings) -> ProbeResources:
    """ValueError naming the field when the request has no shape Ray can schedule."""
    g = float(settings.num_gpus)
    if g > 1:
        if not math.isclose(g, round(g)):
            raise ValueError(
                f"probe.num_gpus: {g:g} is above 1 but not a whole number; a multi-GPU probe takes whole GPUs "
                "(use a fraction <= 1 to share one GPU, or 2, 3, ... for a multi-GPU ZeRO probe on Ray Train)"
            )
        return ProbeResources(num_cpus=float(settings.num_cpus), num_gpus=1.0, ranks=int(round(g)))
    return ProbeResources(num_cpus=float(settings.num_cpus), num_gpus=g)


def infeasible_reason(res: ProbeResources, nodes: list[dict]) -> str | None:
    """Why no alive node can ever run one probe (None when one can).

    nodes: ray.nodes() entries. A multi-worker probe is STRICT_PACK, so one node must hold all its workers.
    """
    alive = [n for n in nodes if n.get("Alive", n.get("alive", False))]
    need_cpu, need_gpu = res.total_cpus, res.total_gpus
    for n in alive:
        have = n.get("Resources", {}) or {}
        if have.get("CPU", 0.0) + 1e-9 >= need_cpu and have.get("GPU", 0.0) + 1e-9 >= need_gpu:
            return None
    offered = sorted(
        {f"{n.get('Resources', {}).get('CPU', 0):g} CPU/{n.get('Resources', {}).get('GPU', 0):g} GPU" for n in alive}
    )
    where = "; ".join(offered) or "no alive node"
    return (
        f"no node can run one probe: it needs {res.describe()} (probe.num_cpus={res.num_cpus:g}, "
        f"probe.num_gpus={res.total_gpus:g}) but the nodes offer {where}"
    )
