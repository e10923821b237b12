"""Files in and out: trajectory tables users bring, and the run's append-only result store.

pyarrow only (no pandas): the same code reads a laptop CSV and a cluster's Parquet store.
"""

from prehoc_ray.io.atomic import write_json_atomic
from prehoc_ray.io.errors import ManifestError, StoreError, TrajectoryError
from prehoc_ray.io.formats import write_table
from prehoc_ray.io.manifest import RunManifest, spec_hash
from prehoc_ray.io.store import CompactionReport, ResultStore
from prehoc_ray.io.trajectories import read_trajectories
from prehoc_ray.io.trajectory_table import TrajectoryTable

__all__ = [
    "CompactionReport",
    "ManifestError",
    "ResultStore",
    "RunManifest",
    "StoreError",
    "TrajectoryError",
    "TrajectoryTable",
    "read_trajectories",
    "spec_hash",
    "write_json_atomic",
    "write_table",
]
