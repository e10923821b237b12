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


def settings_for(world: World, budget: float, seed: int = 0, **overrides) -> EngineSettings:
    kw = dict(budget=budget, seeds=world.probe_seeds, eval_every=world.eval_every,
              initial_depth=3 * world.eval_every, tolerance=world.tolerance, seed=seed)
    if world.max_probe_depth is not None:
        # Recorded probes stop short of the horizon: the engine's probe cap must too.
        kw["max_depth_fraction"] = min(1.0, world.max_probe_depth / max(c.horizon for c in world.candidates))
    kw.update(overrides)
    return EngineSettings(**kw)


def run_engine(world: World, settings: EngineSettings, max_rounds: int = 1000) -> tuple[Engine, Replay]:
    replay = Replay(world, settings.budget)
    idx = world.index()
    infos = [CandidateInfo(c.id, c.group, float(c.horizon), prior_cost_per_step=c.cost_per_step, static=c.static,
                           prior_cost_exact=True)
             for c in world.candidates]
    engine = Engine(infos, settings)
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
    engine, replay = run_engine(world, settings_for(world, budget, seed, **overrides))
    rows = {r["candidate"]: r for r in engine.summary()}
    ids = [c.id for c in world.candidates]
    pred = np.array([rows[i]["predicted_final"] for i in ids], float)
    std = np.array([rows[i]["predicted_std"] for i in ids], float)
    steps = np.array([rows[i]["probe_steps"] for i in ids], float)
    regime = np.array([rows[i]["regime"] for i in ids], dtype=object)
    return PolicyResult("prehoc", pred, std, replay.spent, steps, regime=regime,
                        info={"rounds": engine.round, "refused": engine.refused_, "rows": [rows[i] for i in ids]})
