"""Has a candidate started to learn? Its metric against the no-skill level of its task.

The risk decomposition describes a run in its locally regular phase (docs/design.md). A randomly
initialised model evaluated before it learns anything sits at chance, and its seeds' spread
there is evaluation noise: flat, so the decay fit would read it as a high floor. The engine
uses this check to keep probing such candidates instead of writing them off.
"""

from __future__ import annotations

import math

import numpy as np


def no_skill_level(static: dict[str, float]) -> float:
    """The metric a model reaches before it learns the task, from the static signals.

    The larger of its measured zero-shot metric and chance (1 / labels) for classification;
    NaN when the static signals say neither (then the learning check never fires).
    """
    vals = []
    z = static.get("static_zero_shot_metric", float("nan"))
    k = static.get("static_num_labels", float("nan"))
    if math.isfinite(z):
        vals.append(float(z))
    if math.isfinite(k) and k >= 2:
        vals.append(1.0 / k)
    return max(vals) if vals else float("nan")


def learning_not_seen(seed_last: list[float], baseline: float, tolerance: float) -> bool:
    """The seeds' latest values are not above the no-skill level by more than their noise.

    Seed dispersion measures how much runs differ, not whether they have started to learn: a
    randomly initialised model evaluated before it learns anything gives a flat dispersion
    (evaluation noise) that the decay fit reads as a high floor, so the candidate would be
    written off as Noise-Dominant, or stopped at c*, with a prediction near chance. Such a
    candidate is outside the model the decomposition rests on (docs/design.md, The decay law:
    locally regular phase); the engine keeps probing it, as it does an unidentified fit.
    """
    if not math.isfinite(baseline) or len(seed_last) < 2:
        return False
    v = np.asarray(seed_last, float)
    se = float(v.std(ddof=1)) / math.sqrt(v.size)
    return float(v.mean()) <= baseline + max(2.0 * se, tolerance)
