"""Policies: given a world and a probe budget, predict every candidate's final.

Common signature (one small module per policy, registered in POLICIES):

    run(world: World, budget: float, *, seed: int = 0) -> PolicyResult

`budget` is in device-seconds (worlds.World.full_cost x a fraction); every observation is
bought through bench.replay.Replay, so no policy can spend more than `budget`. Predictors,
documented per module:

- prehoc:           the project's engine (core.engine.Engine) as shipped; its own predictor
                    (mean over seeds of core.curves.extrapolate) and its interval.
- prehoc_history:   the same engine, also told the family's past runs (world.history), as a
                    job spec's `history:` tells it: predictions and intervals from the
                    population model, static-only risk L(0) from its cross-validated error.
- uniform:          every candidate probed to the same depth with the engine's seed count;
                    the engine's predictor; std from the spread of the seeds' predictions.
- tuneahead:        TuneAhead-style: one fixed-depth probe per candidate, static features +
                    probe features into a regressor trained on the family's past runs (the
                    core's calibrated GP instead of gradient boosting).
- lc_extrapolation: one seed per candidate to a fixed depth, each curve extrapolated alone
                    (core.curves.extrapolate) with a residual-bootstrap std.
- static_only:      no probe; the calibrated GP on static features trained on past runs.
- asha:             Ray Tune's AsyncHyperBandScheduler over trainables replaying the curves;
                    the prefix each trial reached is extrapolated like the others; no std.
- oracle:           the true finals (regret 0 by definition); it is a reference, not a
                    policy, and its cost is reported as fully training everything.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from prehoc_ray.bench.worlds import World


@dataclass
class PolicyResult:
    policy: str
    predicted: np.ndarray  # per candidate of world.candidates; NaN where the policy has none
    std: np.ndarray  # predictive std of the final; NaN where the policy gives none
    spent: float  # device-seconds of probes bought
    probe_steps: np.ndarray  # deepest step reached per candidate (0: never probed)
    regime: np.ndarray | None = None  # engine regimes (object array), where the policy has them
    native_pick: dict[str, int] | None = None  # group -> index chosen by the peer's own rule
    info: dict = field(default_factory=dict)


Policy = Callable[..., PolicyResult]


def _registry() -> dict[str, Policy]:
    from prehoc_ray.bench.policies import asha, lc_extrapolation, oracle, prehoc, static_only, tuneahead, uniform

    return {
        "prehoc": prehoc.run,
        "prehoc_history": prehoc.run_with_history,
        "uniform": uniform.run,
        "tuneahead": tuneahead.run,
        "lc_extrapolation": lc_extrapolation.run,
        "static_only": static_only.run,
        "asha": asha.run,
        "oracle": oracle.run,
    }


POLICY_NAMES = ("prehoc", "prehoc_history", "uniform", "tuneahead", "lc_extrapolation", "static_only", "asha", "oracle")


def get_policy(name: str) -> Policy:
    reg = _registry()
    if name not in reg:
        raise ValueError(f"policy must be one of {', '.join(POLICY_NAMES)}, got {name!r}")
    return reg[name]


def uniform_depth(world: World, budget: float, seeds: int) -> int:
    """Deepest multiple of eval_every that every candidate can reach with `seeds` seeds.

    A candidate whose full run is shorter stops at its last evaluation before the horizon.
    0 when not even one evaluation interval fits.
    """
    e = world.eval_every
    caps = np.array([world.probe_cap(c) - world.probe_cap(c) % e for c in world.candidates], float)
    lam = np.array([c.cost_per_step for c in world.candidates]) * seeds
    best = 0
    for d in range(e, int(caps.max()) + 1, e):
        if float((lam * np.minimum(d, caps)).sum()) > budget * (1 + 1e-12):
            break
        best = d
    return best
