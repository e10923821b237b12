"""Policies: given a market of probe observations, pick one fine-tune per task.

Common signature (one small module per policy, registered in POLICIES):

    run(market: Market, *, seed: int = 0) -> PolicyResult

A policy sees only a `bench.market.Market`: the candidates' public facts, the tasks' past
runs, and the observations it buys (market.probe charges cost_per_step x steps per seed and
refuses anything past market.budget). It never sees a World, true finals or unbought points.
It returns a prediction per candidate and, where its own rule differs from "the best
prediction per task", its picks. Predictors, documented per module:

- prehoc:           the project's engine (core.engine.Engine) as shipped; its own predictor
                    (mean over seeds of core.curves.extrapolate) and its interval.
- prehoc_history:   the same engine, also told the family's past runs (world.history), as a
                    job spec's `history:` tells it: predictions and intervals from the
                    population model, static-only risk L(0) from its cross-validated error.
- prehoc_prediction: the same engine with allocation.objective = prediction (spend to shrink
                    every candidate's prediction variance), for the comparison of objectives.
- uniform:          every candidate probed to the same depth with the engine's seed count
                    (one seed when two do not fit); the engine's predictor; std from the
                    spread of the seeds' predictions.
- sh:               synchronous successive halving (one Hyperband bracket) with the
                    engine's predictor; picks the best survivor of the last rung.
- tuneahead:        TuneAhead-style: one fixed-depth probe per candidate, static features +
                    probe features into a regressor trained on the family's past runs (the
                    core's calibrated GP instead of gradient boosting).
- lc_extrapolation: one seed per candidate to a fixed depth, each curve extrapolated alone
                    (core.curves.extrapolate) with a residual-bootstrap std.
- static_only:      no probe; the calibrated GP on static features trained on past runs.
- asha:             Ray Tune's AsyncHyperBandScheduler deciding over every trial of a task
                    at once; picks its best reported value; the prefix each trial reached
                    is also extrapolated (the harness reports that pick as asha_extrapolated).

The oracle is not a policy (it reads the truth): bench.backtest scores it as a reference.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from prehoc_ray.bench.market import Market


@dataclass
class PolicyResult:
    policy: str
    predicted: np.ndarray  # per candidate of market.candidates; NaN where the policy has none
    std: np.ndarray  # predictive std of the final; NaN where the policy gives none
    spent: float  # device-seconds of probes bought
    probe_steps: np.ndarray  # deepest step reached per candidate (0: never probed)
    regime: np.ndarray | None = None  # engine regimes (object array), where the policy has them
    native_pick: dict[str, int] | None = None  # group -> index chosen by the peer's own rule
    picks: dict[str, int] | None = None  # group -> index the policy runs; None: best prediction
    info: dict = field(default_factory=dict)


Policy = Callable[..., PolicyResult]


# name -> (module, function): imported on first use, so a policy's heavy imports (Ray Tune)
# cost nothing to the others.
_REGISTRY: dict[str, tuple[str, str]] = {
    "prehoc": ("prehoc", "run"),
    "prehoc_prediction": ("prehoc", "run_prediction_objective"),
    "prehoc_history": ("prehoc", "run_with_history"),
    "uniform": ("uniform", "run"),
    "sh": ("sh", "run"),
    "asha": ("asha", "run"),
    "static_only": ("static_only", "run"),
    "tuneahead": ("tuneahead", "run"),
    "lc_extrapolation": ("lc_extrapolation", "run"),
}

POLICY_NAMES = tuple(_REGISTRY)


def get_policy(name: str) -> Policy:
    if name not in _REGISTRY:
        raise ValueError(f"policy must be one of {', '.join(POLICY_NAMES)}, got {name!r}")
    import importlib

    module, fn = _REGISTRY[name]
    return getattr(importlib.import_module(f"prehoc_ray.bench.policies.{module}"), fn)


def uniform_depth(market: Market, budget: float, seeds: int) -> int:
    """Deepest multiple of eval_every that every candidate can reach with `seeds` seeds.

    A candidate whose full run is shorter stops at its last evaluation before the horizon.
    0 when not even one evaluation interval fits.
    """
    e = market.eval_every
    caps = np.array([o.probe_cap - o.probe_cap % e for o in market.candidates], float)
    lam = np.array([o.cost_per_step for o in market.candidates]) * seeds
    best = 0
    for d in range(e, int(caps.max()) + 1, e):
        if float((lam * np.minimum(d, caps)).sum()) > budget * (1 + 1e-12):
            break
        best = d
    return best
