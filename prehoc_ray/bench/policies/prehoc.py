"""prehoc-ray's budget-optimal allocation: the project's real engine, driven through a Replay.

Settings as shipped (EngineSettings defaults) except what the world dictates: the budget,
the seed count (world.probe_seeds), the evaluation interval, the smallest initial depth the
engine accepts (3 evaluations) and the world's tolerance. The engine is told each candidate's
true cost per step up front (the replay charges exactly that), so its budget arithmetic is
exact. Predictions and intervals are Engine.summary()'s.
"""

from __future__ import annotations

import numpy as np

from prehoc_ray.bench.policies import PolicyResult
from prehoc_ray.bench.replay import BudgetExceeded, Replay
from prehoc_ray.bench.worlds import World
from prehoc_ray.core.engine import CandidateInfo, Engine, EngineSettings
from prehoc_ray.core.observations import Observations


def settings_for(world: World, budget: float, seed: int = 0, **overrides) -> EngineSettings:
    kw = dict(budget=budget, seeds=world.probe_seeds, eval_every=world.eval_every,
              initial_depth=3 * world.eval_every, tolerance=world.tolerance, seed=seed)
    if world.max_probe_depth is not None:
        # Recorded probes stop short of the horizon: the engine's probe cap must too.
        kw["max_depth_fraction"] = min(1.0, world.max_probe_depth / max(c.horizon for c in world.candidates))
    kw.update(overrides)
    return EngineSettings(**kw)


def history_observations(world: World) -> Observations | None:
    """The world's completed past runs in the trajectory format (None when it has none)."""
    if not world.history:
        return None
    cols: dict[str, list] = {k: [] for k in ("candidate", "step", "value", "group", "final", "horizon")}
    names = sorted(world.history[0].static)
    static: dict[str, list] = {f"static_{k}" if not k.startswith("static_") else k: [] for k in names}
    for h in world.history:
        st, v = h.curve(0)
        n = len(st)
        cols["candidate"] += [h.id] * n
        cols["step"] += list(st)
        cols["value"] += list(v)
        cols["group"] += [h.group] * n
        cols["final"] += [h.true_final] * n
        cols["horizon"] += [float(h.horizon)] * n
        for k, key in zip(names, static):
            static[key] += [float(h.static[k])] * n
    return Observations(candidate=np.array(cols["candidate"], dtype=object), step=np.array(cols["step"], float),
                        value=np.array(cols["value"], float), group=np.array(cols["group"], dtype=object),
                        final=np.array(cols["final"], float), horizon=np.array(cols["horizon"], float),
                        static={k: np.array(v, float) for k, v in static.items()})


def _static_for_engine(c) -> dict[str, float]:
    # The engine looks static features up by their trajectory-format names (static_*).
    return {k if k.startswith("static_") else f"static_{k}": float(v) for k, v in c.static.items()}


def run_engine(world: World, settings: EngineSettings, max_rounds: int = 1000,
               history: Observations | None = None) -> tuple[Engine, Replay]:
    replay = Replay(world, settings.budget)
    idx = world.index()
    infos = [CandidateInfo(c.id, c.group, float(c.horizon), prior_cost_per_step=c.cost_per_step, static=_static_for_engine(c),
                           prior_cost_exact=True)
             for c in world.candidates]
    engine = Engine(infos, settings, history=history)
    refused = 0
    for _ in range(max_rounds):
        orders = engine.next_round()
        if not orders:
            break
        for o in orders:
            try:
                st, v, cost = replay.probe(idx[o.candidate], o.seed, o.start_step, o.target_step)
            except BudgetExceeded as e:
                refused += 1
                engine.tell_failure(o, f"refused by the replay: {e}")
                continue
            engine.tell(o, [{"step": float(s), "value": float(x)} for s, x in zip(st, v)], cost)
    engine.refused_ = refused  # orders the replay refused: the engine asked past its budget
    return engine, replay


def run(world: World, budget: float, *, seed: int = 0, **overrides) -> PolicyResult:
    return _run(world, budget, seed, None, "prehoc", **overrides)


def run_with_history(world: World, budget: float, *, seed: int = 0, **overrides) -> PolicyResult:
    """The engine told the world's completed past runs (as `history:` in a job spec)."""
    return _run(world, budget, seed, history_observations(world), "prehoc_history", **overrides)


def _run(world: World, budget: float, seed: int, history: Observations | None, name: str, **overrides) -> PolicyResult:
    engine, replay = run_engine(world, settings_for(world, budget, seed, **overrides), history=history)
    rows = {r["candidate"]: r for r in engine.summary()}
    ids = [c.id for c in world.candidates]
    pred = np.array([rows[i]["predicted_final"] for i in ids], float)
    std = np.array([rows[i]["predicted_std"] for i in ids], float)
    steps = np.array([rows[i]["probe_steps"] for i in ids], float)
    regime = np.array([rows[i]["regime"] for i in ids], dtype=object)
    return PolicyResult(name, pred, std, replay.spent, steps, regime=regime,
                        info={"rounds": engine.round, "refused": engine.refused_, "rows": [rows[i] for i in ids]})
