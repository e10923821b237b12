"""Read a user's trajectory table (CSV, Parquet or JSON Lines) into a TrajectoryTable.

The file is the product's front door (`prehoc-ray analyze trajectories.csv`): a bad file must
fail at once with the file, column and row to fix, never later inside a fit.
"""

from __future__ import annotations

from pathlib import Path

from prehoc_ray.io.errors import TrajectoryError
from prehoc_ray.io.formats import read_table_file, write_table
from prehoc_ray.io.trajectory_table import TrajectoryTable

__all__ = ["TrajectoryError", "TrajectoryTable", "read_trajectories", "write_table"]


def read_trajectories(path: str | Path) -> TrajectoryTable:
    """Read and validate one trajectory file; the file type comes from its extension
    (.csv, .parquet/.pq, .jsonl/.ndjson/.json).

    Raises TrajectoryError (a ValueError) with a one-line message naming the file, column
    and first offending row.
    """
    table = read_table_file(path)
    return TrajectoryTable.from_arrow(table, Path(path), name=str(path))
