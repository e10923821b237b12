"""TrajectoryTable: validated observations, one row per (candidate, seed, step), as numpy.

The analysis core works on numpy arrays, not on files or Arrow; this is the hand-over point.
Construction always goes through the validator (from_arrow / from_arrays), so holding a
TrajectoryTable means the contract of trajectory_parse.py holds, except that `take` and
`truncate` may return an empty table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from prehoc_ray.io.errors import TrajectoryError
from prehoc_ray.io.trajectory_parse import factorize, first_step_past_horizon, parse_trajectory_columns

if TYPE_CHECKING:
    from prehoc_ray.core.observations import Observations
from prehoc_ray.types import CANDIDATE, FINAL, GROUP, HORIZON, SEED, STEP, VALUE


def _frozen(values: np.ndarray) -> np.ndarray:
    values.flags.writeable = False
    return values


def _nullable(values: np.ndarray) -> pa.Array:
    """NaN means 'unknown' for final/horizon/static: store it as null so CSV writes an
    empty cell and JSON writes null (JSON has no NaN)."""
    return pa.array(values, type=pa.float64(), mask=np.isnan(values))


def _to_arrow_array(values: Any) -> pa.Array:
    if isinstance(values, (pa.Array, pa.ChunkedArray)):
        return values
    if isinstance(values, np.ndarray) and values.dtype.kind != "U":
        return pa.array(values)
    return pa.array(list(np.asarray(values).tolist() if isinstance(values, np.ndarray) else values))


@dataclass(frozen=True, eq=False)
class TrajectoryTable:
    """Columns of equal length; `static` and `extra` map column name -> per-row array."""

    candidate: np.ndarray
    step: np.ndarray
    value: np.ndarray
    seed: np.ndarray
    group: np.ndarray
    final: np.ndarray
    horizon: np.ndarray
    static: Mapping[str, np.ndarray] = field(default_factory=dict)
    extra: Mapping[str, np.ndarray] = field(default_factory=dict)
    source: Path | None = None

    def __post_init__(self) -> None:
        n = len(self.candidate)
        for name, values in self._columns().items():
            if len(values) != n:
                raise ValueError(f"column {name!r} has {len(values)} rows, expected {n}")
            _frozen(values)

    def _columns(self) -> dict[str, np.ndarray]:
        base = {
            CANDIDATE: self.candidate,
            SEED: self.seed,
            GROUP: self.group,
            STEP: self.step,
            VALUE: self.value,
            FINAL: self.final,
            HORIZON: self.horizon,
        }
        return {**base, **self.static, **self.extra}

    def to_observations(self) -> Observations:
        """The core's view: plain numpy columns (static features by name)."""
        from prehoc_ray.core.observations import Observations

        return Observations(
            candidate=self.candidate,
            step=self.step,
            value=self.value,
            seed=self.seed,
            group=self.group,
            final=self.final,
            horizon=self.horizon,
            static=dict(self.static),
        )

    def __repr__(self) -> str:
        return (
            f"TrajectoryTable(rows={len(self)}, candidates={len(self.candidates())}, "
            f"static={self.static_names()}, extra={list(self.extra)}, source={self.source})"
        )

    def __len__(self) -> int:
        return len(self.candidate)

    # construction -----------------------------------------------------------------------

    @classmethod
    def from_arrow(
        cls, table: pa.Table, source: str | Path | None = None, *, name: str | None = None
    ) -> TrajectoryTable:
        """Validate an Arrow table (as read from a file or the result store)."""
        label = name or (str(source) if source is not None else "<table>")
        cols = parse_trajectory_columns(table, label)
        return cls(
            candidate=cols.candidate,
            step=cols.step,
            value=cols.value,
            seed=cols.seed,
            group=cols.group,
            final=cols.final,
            horizon=cols.horizon,
            static=cols.static,
            extra=cols.extra,
            source=Path(source) if source is not None else None,
        )

    @classmethod
    def from_arrays(
        cls,
        candidate: Sequence[str] | np.ndarray,
        step: Sequence[float] | np.ndarray,
        value: Sequence[float] | np.ndarray,
        *,
        seed: Sequence[int] | np.ndarray | None = None,
        group: Sequence[str] | np.ndarray | None = None,
        final: Sequence[float] | np.ndarray | None = None,
        horizon: Sequence[float] | np.ndarray | None = None,
        static: Mapping[str, Sequence[float] | np.ndarray] | None = None,
        extra: Mapping[str, Sequence[Any] | np.ndarray] | None = None,
        source: str | Path | None = None,
    ) -> TrajectoryTable:
        """Build from in-memory columns with the same checks as a file (simulators, tests).

        `static` keys must start with 'static_'.
        """
        columns: dict[str, Any] = {CANDIDATE: list(map(str, candidate)), STEP: step, VALUE: value}
        for name, values in ((SEED, seed), (GROUP, group), (FINAL, final), (HORIZON, horizon)):
            if values is not None:
                columns[name] = values
        for name, values in (static or {}).items():
            if not name.startswith("static_"):
                raise ValueError(f"static column {name!r} must start with 'static_'")
            columns[name] = values
        columns.update(extra or {})
        arrays = {k: _to_arrow_array(v) for k, v in columns.items()}
        return cls.from_arrow(pa.table(arrays), source, name="<arrays>" if source is None else None)

    def to_arrow(self) -> pa.Table:
        """Arrow table that `from_arrow` (or a written file + `read_trajectories`) restores."""
        cols: dict[str, pa.Array] = {
            CANDIDATE: pa.array(self.candidate, type=pa.string()),
            SEED: pa.array(self.seed, type=pa.int64()),
            GROUP: pa.array(self.group, type=pa.string()),
            STEP: pa.array(self.step, type=pa.float64()),
            VALUE: pa.array(self.value, type=pa.float64()),
            FINAL: _nullable(self.final),
            HORIZON: _nullable(self.horizon),
        }
        for name, values in self.static.items():
            cols[name] = _nullable(values)
        for name, values in self.extra.items():
            cols[name] = pa.array(values, from_pandas=True)
        return pa.table(cols)

    def check_within_horizon(self, horizon: float | None = None) -> None:
        """TrajectoryError naming the first row whose step is past its horizon (the `horizon`
        column, or `horizon` for every row when given): what an analysis cannot use."""
        h = self.horizon if horizon is None else np.full(len(self), float(horizon))
        row = first_step_past_horizon(self.step, h)
        if row is None:
            return
        label = str(self.source) if self.source is not None else "<table>"
        source = "--horizon" if horizon is not None else "its horizon"
        raise TrajectoryError(
            f"{label}: column 'step' row {row + 1}: expected a step <= {source} ({float(h[row]):g}), "
            f"got {float(self.step[row]):g}"
        )

    # views ------------------------------------------------------------------------------

    def candidates(self) -> list[str]:
        """Sorted unique candidate ids."""
        return factorize(self.candidate)[0].tolist() if len(self) else []

    def static_names(self) -> list[str]:
        return list(self.static)

    def static_matrix(self) -> tuple[list[str], list[str], np.ndarray]:
        """(candidate ids, static column names, matrix[candidate, feature]).

        Static columns are validated constant within a candidate, so the first row stands
        for the candidate. NaN marks a missing feature.
        """
        ids, codes = factorize(self.candidate)
        first = np.full(len(ids), len(self), dtype=np.int64)
        np.minimum.at(first, codes, np.arange(len(self)))
        names = self.static_names()
        matrix = np.empty((len(ids), len(names)), dtype=np.float64)
        for j, name in enumerate(names):
            matrix[:, j] = self.static[name][first]
        return ids.tolist(), names, matrix

    def take(self, rows: np.ndarray) -> TrajectoryTable:
        """Subset by boolean mask or integer indices (row order kept as given)."""

        def pick(values: np.ndarray) -> np.ndarray:
            return values[rows].copy()

        return TrajectoryTable(
            candidate=pick(self.candidate),
            step=pick(self.step),
            value=pick(self.value),
            seed=pick(self.seed),
            group=pick(self.group),
            final=pick(self.final),
            horizon=pick(self.horizon),
            static={k: pick(v) for k, v in self.static.items()},
            extra={k: pick(v) for k, v in self.extra.items()},
            source=self.source,
        )

    def select(self, candidates: Sequence[str]) -> TrajectoryTable:
        """Rows of the given candidates only."""
        return self.take(np.isin(self.candidate, np.asarray(list(candidates), dtype=object)))

    def truncate(self, depth: float | Mapping[str, float], *, default: float | None = None) -> TrajectoryTable:
        """Rows with step <= depth: what a predictor sees after a probe of that depth.

        `depth` is one number for every candidate or a mapping candidate -> depth; a candidate
        missing from the mapping gets `default`, and without a default that is an error (a
        silent 'keep all' or 'drop all' would bias whatever is computed next).
        """
        if isinstance(depth, Mapping):
            ids, codes = factorize(self.candidate)
            nan = math.nan
            per_id = np.array([float(depth.get(c, nan if default is None else default)) for c in ids])
            missing = [c for c in ids.tolist() if c not in depth] if default is None else []
            if missing:
                shown = ", ".join(map(repr, missing[:5])) + (" ..." if len(missing) > 5 else "")
                raise ValueError(
                    f"truncate: no depth for candidate(s) {shown}; pass them in the mapping or give default="
                )
            return self.take(self.step <= per_id[codes])
        return self.take(self.step <= float(depth))
