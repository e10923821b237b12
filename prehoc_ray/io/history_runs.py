"""What every past-run reader hands over: one finished (or stopped) run as plain Python values.

`prehoc-ray history import` reads runs from places that know nothing of each other (a Ray
Tune experiment, a Hugging Face Trainer output directory, a tracker's CSV export). Each
reader turns its format into `ImportedRun`s and a `SourceReport` (what it read, what it
skipped and why); history_assemble.py alone decides how those become the history table.
Keeping the hand-over this small is what lets a reader stay one file about one format.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prehoc_ray.io.errors import TrajectoryError
from prehoc_ray.types import STATIC_PREFIX


class HistoryImportError(TrajectoryError):
    """A source that cannot be imported at all (missing, of no known kind, a column map
    naming a column the file lacks). One line naming the file and what was expected; the
    CLI maps it to exit code 2. A single unusable run inside a source is a skip, not this."""


@dataclass(frozen=True)
class ImportOptions:
    """How to read the sources, shared by every reader.

    metric: the value to predict (Tune result key, Trainer log key such as eval_accuracy,
        or a tracker column when --map has no `value`).
    step_key: the step (None: Tune `training_iteration`, Trainer `step`, tracker `step`).
    group: a constant group (task) name for every run without one; group_by: the config key
        holding it. Neither: group "all".
    seed_key: config key holding the seed; None: seed 0.
    candidate_keys: config keys whose values name a candidate; None: the trial / run id,
        or, with seed_key, every config key but the seed.
    (group_by, seed_key, candidate_keys: Tune and Trainer configs; a tracker export says
    where its seed and group are with column_map.)
    horizon: full-run length in steps for every run; None: derived (history_assemble).
    column_map: tracker exports only: target column -> export column.
    """

    metric: str | None = None
    step_key: str | None = None
    group: str | None = None
    group_by: str | None = None
    seed_key: str | None = None
    candidate_keys: tuple[str, ...] | None = None
    horizon: float | None = None
    column_map: Mapping[str, str] = field(default_factory=dict)


@dataclass
class ImportedRun:
    """One training run: its curve of the metric and what is known about its length.

    planned_steps: the run's own full length when the source records it (Trainer
    `max_steps`); end_step: how far it actually trained (Trainer `global_step`, else the last
    observed step). Finals and horizons are derived from these in history_assemble.py.
    """

    candidate: str
    seed: int
    group: str
    steps: list[float]
    values: list[float]
    static: dict[str, float]
    origin: str  # the trial / run directory or the export file, for messages
    end_step: float
    planned_steps: float | None = None
    final: float | None = None  # given by the source (tracker map), else derived
    horizon: float | None = None  # given by the source (tracker map), else derived
    report: SourceReport | None = field(default=None, repr=False)  # where to count it


@dataclass
class SourceReport:
    """What one source gave: the line the CLI prints for it."""

    kind: str  # tune, hf, tracker
    path: str
    unit: str  # trials, runs
    read: int = 0
    points: int = 0
    finals: int = 0
    ignored_lines: int = 0  # lines or rows inside a run that could not be read
    skipped: Counter[str] = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)

    def skip(self, reason: str) -> None:
        self.skipped[reason] += 1

    def line(self) -> str:
        n_skip = sum(self.skipped.values())
        why = "; ".join(f"{reason}: {n}" if n > 1 else reason for reason, n in self.skipped.most_common())
        unit = self.unit.removesuffix("s") if self.read == 1 else self.unit
        text = (
            f"{self.kind}:{self.path}: {self.read} {unit} read ({plural(self.points, 'point')}, "
            f"{self.finals} with a final), {n_skip} skipped"
        )
        if why:
            text += f" ({why})"
        if self.notes:
            text += "; " + "; ".join(self.notes)
        return text


def plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with '/' between keys (Ray Tune's own spelling in
    progress.csv: config {"opt": {"lr": 1}} is "opt/lr")."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}/"))
        else:
            out[name] = value
    return out


def as_number(value: Any) -> float | None:
    """A finite float for int/float/bool (and numeric strings), else None."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return None
    else:
        return None
    return number if math.isfinite(number) else None


def static_columns(config: Mapping[str, Any], exclude: Sequence[str | None] = ()) -> dict[str, float]:
    """Numeric config values as `static_<key>` features (the seed and group keys, and any key
    called `seed`, excluded: a seed predicts nothing, a group is not a feature)."""
    out = {}
    for key, value in config.items():
        if key in exclude or isinstance(value, str) or key.rsplit("/", 1)[-1] == "seed":
            continue
        number = as_number(value)
        if number is not None:
            out[f"{STATIC_PREFIX}{key}"] = number
    return out


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value == int(value) and abs(value) < 1e15:
        return repr(value)
    return json.dumps(value, sort_keys=True, default=str)


def candidate_name(config: Mapping[str, Any], keys: Sequence[str]) -> str:
    """`k=v,k=v` over `keys` in the given order: the same config gives the same id, so the
    seeds of one configuration land on one candidate."""
    return ",".join(f"{k}={_show(config[k])}" for k in keys)


def identity(config: Mapping[str, Any], options: ImportOptions, default_id: str) -> tuple[str, int, str] | str:
    """(candidate, seed, group) of a run with this flat config, or the reason to skip it.

    default_id names the run when neither --candidate-keys nor --seed-key says otherwise.
    """
    seed = 0
    if options.seed_key is not None:
        if options.seed_key not in config:
            return f"no config key '{options.seed_key}' (--seed-key)"
        number = as_number(config[options.seed_key])
        if number is None or number != int(number):
            return f"config '{options.seed_key}' is not an integer seed"
        seed = int(number)
    group = options.group or "all"
    if options.group_by is not None:
        if options.group_by not in config or config[options.group_by] in (None, ""):
            return f"no config key '{options.group_by}' (--group-by)"
        group = _show(config[options.group_by])
    if options.candidate_keys:
        missing = [k for k in options.candidate_keys if k not in config]
        if missing:
            return f"no config key '{missing[0]}' (--candidate-keys)"
        candidate = candidate_name(config, options.candidate_keys)
    elif options.seed_key is not None:
        keys = sorted(k for k in config if k != options.seed_key)
        candidate = candidate_name(config, keys) if keys else default_id
    else:
        candidate = default_id
    return candidate, seed, group


def clean_curve(points: Mapping[float, float]) -> tuple[list[float], list[float]]:
    """Sorted (steps, values) with step > 0 and a finite value."""
    keep = sorted((s, v) for s, v in points.items() if math.isfinite(s) and s > 0 and math.isfinite(v))
    return [s for s, _ in keep], [v for _, v in keep]
