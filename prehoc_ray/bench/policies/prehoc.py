"""prehoc-ray's allocation: the project's real engine, driven through a Market.

Settings as shipped (EngineSettings defaults) except what the market dictates: the budget,
the seed count (market.probe_seeds: one when the table has one curve per candidate), the
evaluation interval, the smallest initial depth the engine accepts (3 evaluations) and the
tolerance. The engine is told each candidate's cost per step up front (the market charges
exactly that), so its budget arithmetic is exact. Predictions and intervals are
Engine.summary()'s; the pick per task is the best predicted final.
"""

from __future__ import annotations

import numpy as np

from prehoc_ray.bench.market import BudgetExceeded, Market
from prehoc_ray.bench.policies import PolicyResult
from prehoc_ray.core.engine import CandidateInfo, Engine, EngineSettings
from prehoc_ray.core.observations import Observations


def settings_for(market: Market, seed: int = 0, **overrides) -> EngineSettings:
    kw = dict(
        budget=market.budget,
        seeds=market.probe_seeds,
        eval_every=market.eval_every,
        initial_depth=3 * market.eval_every,
        tolerance=market.tolerance,
        seed=seed,
    )
    caps = [o.probe_cap / o.horizon for o in market.candidates]
    if caps and max(caps) < 1:
        # Recorded probes stop short of the horizon: the engine's probe cap must too.
        kw["max_depth_fraction"] = max(caps)
    kw.update(overrides)
    return EngineSettings(**kw)


def history_observations(market: Market) -> Observations | None:
    """The market's past runs in the trajectory format (None when it has none)."""
    if not market.history:
        return None
    cols: dict[str, list] = {k: [] for k in ("candidate", "step", "value", "group", "final", "horizon")}
    names = sorted(market.history[0].static)
    static: dict[str, list] = {f"static_{k}" if not k.startswith("static_") else k: [] for k in names}
    for h in market.history:
        n = len(h.steps)
        cols["candidate"] += [h.id] * n
        cols["step"] += list(h.steps)
        cols["value"] += list(h.values)
        cols["group"] += [h.group] * n
        cols["final"] += [h.final] * n
        cols["horizon"] += [float(h.horizon)] * n
        for k, key in zip(names, static):
            static[key] += [float(h.static[k])] * n
    return Observations(
        candidate=np.array(cols["candidate"], dtype=object),
        step=np.array(cols["step"], float),
        value=np.array(cols["value"], float),
        group=np.array(cols["group"], dtype=object),
        final=np.array(cols["final"], float),
        horizon=np.array(cols["horizon"], float),
        static={k: np.array(v, float) for k, v in static.items()},
    )


def _static_for_engine(static: dict[str, float]) -> dict[str, float]:
    # The engine looks static features up by their trajectory-format names (static_*).
    return {k if k.startswith("static_") else f"static_{k}": float(v) for k, v in static.items()}


def run_engine(
    market: Market, settings: EngineSettings, max_rounds: int = 1000, history: Observations | None = None
) -> tuple[Engine, int]:
    """Drive the engine to its end; returns it and the number of orders the market refused."""
    idx = market.index()
    infos = [
        CandidateInfo(
            o.id,
            o.group,
            float(o.horizon),
            prior_cost_per_step=o.cost_per_step,
            static=_static_for_engine(o.static),
            prior_cost_exact=True,
            # its own recorded curve's end: with horizons that differ, the largest share of a
            # horizon (max_depth_fraction above) would reach past a shorter-lived curve
            probe_cap=float(o.probe_cap) if o.probe_cap < o.horizon else None,
        )
        for o in market.candidates
    ]
    from prehoc_ray.core.ask_tell import FunctionBackend, ProbeOutcome, drive
    from prehoc_ray.core.engine import ProbeOrder

    def probe(o: ProbeOrder) -> ProbeOutcome:
        try:
            st, v, cost = market.probe(idx[o.candidate], o.seed, o.start_step, o.target_step)
        except BudgetExceeded as e:
            return ProbeOutcome.failed(f"refused by the replay: {e}")
        return ProbeOutcome([{"step": float(s), "value": float(x)} for s, x in zip(st, v)], cost)

    engine = Engine(infos, settings, history=history)
    done = drive(engine, FunctionBackend(probe), max_rounds=max_rounds)
    return engine, done.failures  # the only failures here are the market's refusals


def run(market: Market, *, seed: int = 0, **overrides) -> PolicyResult:
    return _run(market, seed, None, "prehoc", **overrides)


def run_with_history(market: Market, *, seed: int = 0, **overrides) -> PolicyResult:
    """The engine told the market's past runs (as `history:` in a job spec)."""
    return _run(market, seed, history_observations(market), "prehoc_history", **overrides)


def _run(market: Market, seed: int, history: Observations | None, name: str, **overrides) -> PolicyResult:
    engine, refused = run_engine(market, settings_for(market, seed, **overrides), history=history)
    rows = {r["candidate"]: r for r in engine.summary()}
    ids = [o.id for o in market.candidates]
    pred = np.array([rows[i]["predicted_final"] for i in ids], float)
    std = np.array([rows[i]["predicted_std"] for i in ids], float)
    steps = np.array([rows[i]["probe_steps"] for i in ids], float)
    regime = np.array([rows[i]["regime"] for i in ids], dtype=object)
    return PolicyResult(
        name,
        pred,
        std,
        market.spent,
        steps,
        regime=regime,
        info={"rounds": engine.round, "refused": refused, "rows": [rows[i] for i in ids]},
    )


def run_prediction_objective(market: Market, *, seed: int = 0, **overrides) -> PolicyResult:
    """The engine spending to shrink every candidate's prediction variance (objective=prediction)."""
    return _run(market, seed, None, "prehoc_prediction", objective="prediction", **overrides)
