"""Ray Tune tests: a local Ray without token auth, started once for the module that needs it."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")


def synthetic_curves(n_tasks: int = 2, per_task: int = 3, max_t: int = 15, seed: int = 0) -> dict[str, list[float]]:
    """name -> values at steps 1..max_t: saturating curves with a little noise; task = name before '-'."""
    rng = np.random.default_rng(seed)
    out = {}
    for g in range(n_tasks):
        for i in range(per_task):
            top = 0.70 + 0.04 * i + 0.02 * g
            s = np.arange(1, max_t + 1)
            out[f"t{g}-{i}"] = [float(x) for x in top - 0.4 * np.exp(-s / 4) + 0.004 * rng.standard_normal(max_t)]
    return out


@pytest.fixture(scope="module")
def ray_local():
    ray = pytest.importorskip("ray")
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()
