"""Reading a job's `history:`: completed past fine-tunes of its tasks, in the trajectory format.

The engine learns from them how a family's probes map to finals (core.population.
HistoryPredictor). A history is only useful with finals and with families named like the
job's tasks, so both are checked here, with messages that name the file and what is missing.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from prehoc_ray.core.observations import Observations
from prehoc_ray.io.errors import TrajectoryError
from prehoc_ray.io.trajectories import read_trajectories


def load_history(path: str | Path) -> Observations:
    """The history file as Observations; TrajectoryError when it has no usable final."""
    table = read_trajectories(path)
    final = np.asarray(table.final, float)
    if not np.isfinite(final).any():
        raise TrajectoryError(
            f"{path}: column 'final' has no value: a history needs the realised final of each past run"
        )
    return table.to_observations()


def finals_per_family(history: Observations) -> dict[str, int]:
    """How many past runs of each family (group) have a final."""
    runs = history.per_candidate()
    return dict(Counter(r.group for r in runs if np.isfinite(r.final)))


def coverage_problems(history: Observations, tasks: list[str]) -> list[str]:
    """One line per task the history cannot serve (no family of that name, or too few finals)."""
    # here, not at the top: core.population loads scipy.stats (seconds); a history file that
    # fails to load should fail without it
    from prehoc_ray.core.population import MIN_POPULATION

    counts = finals_per_family(history)
    out = []
    for t in tasks:
        n = counts.get(t, 0)
        if n < MIN_POPULATION:
            known = ", ".join(sorted(counts)) or "none"
            out.append(
                f"task {t!r}: {n} past run(s) with a final in family {t!r} (needs {MIN_POPULATION}; families in the "
                f"file: {known}); its predictions come from its probes alone"
            )
    return out
