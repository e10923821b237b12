"""Connecting the driver to Ray: an existing cluster, or an embedded local one.

Address, first found: --address, the job spec's cluster.address, RAY_ADDRESS (set by
`ray job submit`), else an embedded local Ray sized to this machine. A process that already
called ray.init (tests, notebooks) is reused as it is and left running.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import ray


class ClusterError(RuntimeError):
    """Ray could not be reached or started; the message says which address and why."""


@dataclass
class Connection:
    address: str  # what we connected to ("embedded" for a local instance we started)
    embedded: bool
    owned: bool  # we called ray.init, so we call ray.shutdown

    def close(self) -> None:
        if self.owned and ray.is_initialized():
            ray.shutdown()


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def connect(address: str | None = None, *, spec_address: str | None = None, runtime_env: dict | None = None,
            namespace: str = "prehoc", num_cpus: int | None = None) -> Connection:
    if ray.is_initialized():
        return Connection(address="existing", embedded=False, owned=False)
    target = address or spec_address or os.environ.get("RAY_ADDRESS") or None
    # Worker output would tear the progress bar; it stays in Ray's session logs
    # (PREHOC_RAY_LOG_TO_DRIVER=1 shows it here).
    log_to_driver = _env_flag("PREHOC_RAY_LOG_TO_DRIVER")
    kwargs: dict = {"namespace": namespace, "log_to_driver": log_to_driver}
    if runtime_env:
        kwargs["runtime_env"] = runtime_env
    if target and target.startswith(("http://", "https://")):
        raise ClusterError(
            f"--address {target}: that is the dashboard / job-submission address; ray.init needs the GCS address "
            "(HOST:6379, or 'auto' on a cluster node), or submit with `ray job submit --address {target} -- prehoc-ray run ...`"
        )
    try:
        if target:
            ray.init(address=target, **kwargs)
            return Connection(address=target, embedded=False, owned=True)
        ray.init(num_cpus=num_cpus, include_dashboard=_env_flag("PREHOC_RAY_DASHBOARD"), **kwargs)
        return Connection(address="embedded", embedded=True, owned=True)
    except ClusterError:
        raise
    except Exception as exc:  # ConnectionError, RuntimeError, ... from ray.init
        where = target or "an embedded local Ray"
        hint = ""
        if "auth" in str(exc).lower() or "token" in str(exc).lower():
            hint = " (Ray 2.60 enables token authentication by default: set RAY_AUTH_MODE the same on both sides)"
        raise ClusterError(f"cannot start or reach {where}: {' '.join(str(exc).split())[:400]}{hint}") from exc
