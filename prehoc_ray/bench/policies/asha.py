"""ASHA as Ray Tune runs it: tune.Tuner + AsyncHyperBandScheduler over replaying trainables.

One trial per candidate (one seed, as users run one trial per configuration). The function
trainable replays the candidate's recorded curve one evaluation at a time and reports the
metric with tune.report; Ray Tune's own AsyncHyperBandScheduler decides which trials stop at
each rung (time_attr = training_iteration = one evaluation interval; Ray's default reduction
factor 4; max_t = the longest full run). A user runs one ASHA per task: candidates of each
family go to their own AsyncHyperBandScheduler instance (PerGroupScheduler only routes the
callbacks; every decision is Ray's).

Budget: before replaying a step, a trainable buys it from a shared `_Bank` actor; once the
budget is spent every trial ends, so ASHA's spend never exceeds it. The grace period is the
largest one whose synchronous successive-halving cost fits the budget (asha_grace_period),
which is how a user would size ASHA for a budget. Trials run `concurrency` at a time; the
order of results, hence ASHA's decisions, depends on timing, so repeated runs can differ a
little (ASHA is asynchronous by design).

Predictor: the prefix each trial reached, extrapolated with core.curves.extrapolate like the
other curve policies; no std (ASHA has no uncertainty model). `native_pick` records ASHA's
own answer as Ray returns it (ResultGrid.get_best_result(scope="last"): the best last
reported value), per family.
"""

from __future__ import annotations

import os
import shutil
import tempfile

import numpy as np

from prehoc_ray.bench.policies import PolicyResult
from prehoc_ray.bench.worlds import World
from prehoc_ray.core.curves import extrapolate

METRIC = "value"
REDUCTION_FACTOR = 4  # Ray Tune's default for AsyncHyperBandScheduler


def asha_expected_iters(n: int, grace: int, eta: float, max_t: int) -> float:
    """Iterations synchronous successive halving spends on n trials (rungs grace * eta^k)."""
    rungs = [grace * eta**k for k in range(int(np.log(max_t / grace) / np.log(eta) + 1))] if max_t >= grace else [max_t]
    total = n * min(grace, max_t)
    for k, r in enumerate(rungs):
        nxt = rungs[k + 1] if k + 1 < len(rungs) else max_t
        total += n / eta ** (k + 1) * max(nxt - r, 0)
    return float(total)


def asha_grace_period(world: World, budget: float, eta: float = REDUCTION_FACTOR) -> int:
    """Largest grace period (in evaluations) whose expected cost fits the budget (at least 1)."""
    e = world.eval_every
    max_t = max(int(np.ceil(world.probe_cap(c) / e)) for c in world.candidates)
    lam = float(np.mean([c.cost_per_step for c in world.candidates])) * e
    best = 1
    for g in range(1, max_t + 1):
        if asha_expected_iters(len(world.candidates), g, eta, max_t) * lam > budget:
            break
        best = g
    return best


def _ensure_ray() -> None:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import ray

    if not ray.is_initialized():
        # address="local": always a private instance, never a cluster someone else started here.
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)


def _bank_class():
    import ray

    @ray.remote(num_cpus=0)
    class _Bank:
        """The probe budget, shared by every trial; logs every step it sells."""

        def __init__(self, budget: float) -> None:
            self.budget, self.spent, self.log = budget, 0.0, []

        def buy(self, candidate: str, step: float, value: float, cost: float) -> bool:
            if self.spent + cost > self.budget * (1 + 1e-12) + 1e-12:
                self.budget = -1.0  # closed: later, cheaper steps must not jump the queue
                return False
            self.spent += cost
            self.log.append((candidate, float(step), float(value)))
            return True

        def state(self) -> tuple[float, list]:
            return self.spent, self.log

    return _Bank


def replay_trainable(config: dict, bank=None, curves=None) -> None:
    """A Ray Tune function trainable: one reported evaluation per recorded eval step."""
    import ray
    from ray import tune

    cid = config["trial"]["candidate"]
    steps, values, lam = curves[cid]
    prev = 0.0
    for st, v in zip(steps, values):
        if not ray.get(bank.buy.remote(cid, st, v, lam * (st - prev))):
            return
        prev = st
        tune.report({METRIC: float(v), "step": float(st)})


def _per_group_scheduler(make):
    from ray.tune.schedulers import FIFOScheduler

    class PerGroupScheduler(FIFOScheduler):
        """Routes each trial's callbacks to its family's own AsyncHyperBandScheduler."""

        def __init__(self) -> None:
            super().__init__()
            self.by_group: dict = {}

        def _of(self, trial):
            g = trial.config["trial"]["group"]
            if g not in self.by_group:
                self.by_group[g] = make()
            return self.by_group[g]

        def set_search_properties(self, metric, mode, **spec) -> bool:
            return True  # every family's scheduler is built with metric and mode

        def on_trial_add(self, tune_controller, trial):
            self._of(trial).on_trial_add(tune_controller, trial)

        def on_trial_result(self, tune_controller, trial, result):
            return self._of(trial).on_trial_result(tune_controller, trial, result)

        def on_trial_complete(self, tune_controller, trial, result):
            self._of(trial).on_trial_complete(tune_controller, trial, result)

        def on_trial_error(self, tune_controller, trial):
            self._of(trial).on_trial_error(tune_controller, trial)

        def on_trial_remove(self, tune_controller, trial):
            self._of(trial).on_trial_remove(tune_controller, trial)

        def debug_string(self) -> str:
            return "; ".join(f"{g}: {s.debug_string()}" for g, s in sorted(self.by_group.items()))

    return PerGroupScheduler()


def run(world: World, budget: float, *, seed: int = 0, concurrency: int = 4, grace_period: int | None = None) -> PolicyResult:
    _ensure_ray()
    import ray
    from ray import tune
    from ray.tune.schedulers import AsyncHyperBandScheduler

    e = world.eval_every
    max_t = max(int(np.ceil(world.probe_cap(c) / e)) for c in world.candidates)
    grace = grace_period or asha_grace_period(world, budget)
    order = np.random.default_rng(seed).permutation(len(world.candidates))
    curves = {c.id: (*c.curve(0), c.cost_per_step) for c in world.candidates}
    bank = _bank_class().remote(float(budget))
    sched = _per_group_scheduler(lambda: AsyncHyperBandScheduler(
        time_attr="training_iteration", metric=METRIC, mode="max", max_t=max_t,
        grace_period=grace, reduction_factor=REDUCTION_FACTOR))
    trainable = tune.with_resources(tune.with_parameters(replay_trainable, bank=bank, curves=curves),
                                    {"cpu": 1.0 / concurrency})
    storage = tempfile.mkdtemp(prefix="prehoc-asha-")
    try:
        tuner = tune.Tuner(
            trainable,
            param_space={"trial": tune.grid_search([{"candidate": world.candidates[i].id, "group": world.candidates[i].group}
                                                    for i in order])},
            tune_config=tune.TuneConfig(scheduler=sched, max_concurrent_trials=concurrency, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=storage, name="asha", verbose=0, log_to_file=False),
        )
        grid = tuner.fit()
        spent, log = ray.get(bank.state.remote())
    finally:
        shutil.rmtree(storage, ignore_errors=True)
        ray.kill(bank)
    errors = [str(r.error) for r in grid if r.error is not None]
    if errors:
        raise RuntimeError(f"ASHA trials failed: {errors[:3]}")
    idx = world.index()
    bought: dict[int, list[tuple[float, float]]] = {}
    for cid, st, v in log:
        bought.setdefault(idx[cid], []).append((st, v))
    n = len(world.candidates)
    pred, steps = np.full(n, np.nan), np.zeros(n)
    last = np.full(n, -np.inf)
    for i, pts in bought.items():
        pts.sort()
        st, v = np.array(pts).T
        pred[i] = extrapolate(st, v, world.candidates[i].horizon)
        steps[i], last[i] = st[-1], v[-1]
    native = {}
    for g in sorted(set(world.groups)):
        members = [i for i in range(n) if world.candidates[i].group == g and np.isfinite(last[i])]
        if members:
            native[g] = max(members, key=lambda i: (last[i], -i))
    info_log = log
    return PolicyResult("asha", pred, np.full(n, np.nan), float(spent), steps, native_pick=native,
                        info={"grace_period": grace, "max_t": max_t, "trials": len(grid), "concurrency": concurrency, "log": info_log})
