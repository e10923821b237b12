"""Static-only: decide from static signals with no probe (cost 0).

Predictor: the core's calibrated GP (core.population.predict_from_history with no curve) on
the candidates' static features, trained per task on the market's past runs. Without at
least MIN_POPULATION past runs in a task there is nothing to learn the mapping from, and the
task gets no prediction (the metrics then treat it as a blind pick).
"""

from __future__ import annotations

import numpy as np

from prehoc_ray.bench.market import Market, PastRun
from prehoc_ray.bench.policies import PolicyResult
from prehoc_ray.core.observations import CandidateCurves
from prehoc_ray.core.population import predict_from_history


def _curves(
    id_: str,
    group: str,
    horizon: int,
    static: dict[str, float],
    names: list[str],
    final: float,
    prefix: tuple[np.ndarray, np.ndarray],
) -> CandidateCurves:
    st, v = prefix
    return CandidateCurves(
        id_,
        group,
        float(horizon),
        final,
        np.array([static[k] for k in names], float),
        {0: (np.asarray(st, float), np.asarray(v, float))},
    )


def _past_curves(h: PastRun, names: list[str]) -> CandidateCurves:
    return _curves(h.id, h.group, h.horizon, h.static, names, h.final, (h.steps, h.values))


def population_predict(
    market: Market,
    depth: float,
    prefixes: dict[int, tuple[np.ndarray, np.ndarray]] | None,
    use_curve: bool,
    level: float = 0.9,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Per task: core.population.predict_from_history on the market's past runs, every
    candidate at `depth` (its prefix in `prefixes`; none when use_curve is False)."""
    n = len(market.candidates)
    pred, std = np.full(n, np.nan), np.full(n, np.nan)
    names = sorted(market.candidates[0].static) if market.candidates else []
    d = float(depth) if use_curve else 0.0
    empty = (np.zeros(0), np.zeros(0))
    groups = market.groups
    for g in sorted(set(groups)):
        hist = [_past_curves(h, names) for h in market.history if h.group == g]
        idx = [i for i in range(n) if groups[i] == g]
        pool = [
            _curves(
                o.id,
                o.group,
                o.horizon,
                o.static,
                names,
                float("nan"),
                prefixes.get(i, empty) if prefixes and use_curve else empty,
            )
            for i, o in ((i, market.candidates[i]) for i in idx)
        ]
        pred[idx], std[idx] = predict_from_history(hist, pool, np.full(len(idx), d), level=level, seed=seed)
    return pred, std


def run(market: Market, *, seed: int = 0) -> PolicyResult:
    pred, std = population_predict(market, 0.0, None, use_curve=False, seed=seed)
    n = len(market.candidates)
    return PolicyResult("static_only", pred, std, 0.0, np.zeros(n), info={"history": len(market.history)})
