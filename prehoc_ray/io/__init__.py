"""Files in and out: trajectory tables users bring, and the run's append-only result store.

pyarrow only (no pandas): the same code reads a laptop CSV and a cluster's Parquet store.

Names are loaded on first use: the result store needs pyarrow.dataset (which loads pandas,
~1 s), and a command that only reads a trajectory table, or fails on one, should not pay it.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

_WHERE = {
    "write_json_atomic": "prehoc_ray.io.atomic",
    "ManifestError": "prehoc_ray.io.errors",
    "StoreError": "prehoc_ray.io.errors",
    "TrajectoryError": "prehoc_ray.io.errors",
    "write_table": "prehoc_ray.io.formats",
    "RunManifest": "prehoc_ray.io.manifest",
    "spec_hash": "prehoc_ray.io.manifest",
    "CompactionReport": "prehoc_ray.io.store",
    "ResultStore": "prehoc_ray.io.store",
    "read_trajectories": "prehoc_ray.io.trajectories",
    "TrajectoryTable": "prehoc_ray.io.trajectory_table",
}

__all__ = sorted(_WHERE)

if TYPE_CHECKING:  # what type checkers see; `as` marks each name a re-export
    from prehoc_ray.io.atomic import write_json_atomic as write_json_atomic
    from prehoc_ray.io.errors import ManifestError as ManifestError
    from prehoc_ray.io.errors import StoreError as StoreError
    from prehoc_ray.io.errors import TrajectoryError as TrajectoryError
    from prehoc_ray.io.formats import write_table as write_table
    from prehoc_ray.io.manifest import RunManifest as RunManifest
    from prehoc_ray.io.manifest import spec_hash as spec_hash
    from prehoc_ray.io.store import CompactionReport as CompactionReport
    from prehoc_ray.io.store import ResultStore as ResultStore
    from prehoc_ray.io.trajectories import read_trajectories as read_trajectories
    from prehoc_ray.io.trajectory_table import TrajectoryTable as TrajectoryTable


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'prehoc_ray.io' has no attribute {name!r}")
    value = getattr(import_module(_WHERE[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
