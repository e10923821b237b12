"""ASHA as its users run it: Ray Tune's own AsyncHyperBandScheduler, every trial of a task at once.

One trial per candidate (seed 0: users run one trial per configuration), one scheduler per task
(a user runs one ASHA per task), every trial of a task launched at once. Ray Tune's
`AsyncHyperBandScheduler` (time_attr = training_iteration = one evaluation interval of
`market.eval_every` steps, Ray's default reduction factor 4, one bracket) makes every
stop/continue decision; nothing here second-guesses it.

Two drivers feed the same scheduler:

- `run` (the benchmark's): the scheduler object is driven directly, which is what Tune's
  controller does with it (on_trial_add when a trial is created, on_trial_result per report,
  on_trial_complete when it returns STOP), without an actor per trial: hundreds of runs on 2
  cores would otherwise take hours. Trials advance in lockstep rounds: in each round every
  live trial buys its next evaluation from the Market and reports it, in an order drawn from
  `default_rng(seed)` (trials of similar cost progress at similar speeds; the shuffled order
  models the jitter of asynchronous arrivals). A trial ends when the scheduler says STOP; the
  whole run ends when the Market refuses a step (the budget is spent).
- `run_tuner`: a real `tune.Tuner`, one function trainable per candidate replaying the curve
  through a Ray actor that holds a copy of the Market (so a trial sees only what it bought);
  the purchases are charged to the caller's Market afterwards. Slow (seconds per task); used
  to check the emulation (tests/bench/test_asha.py) and for the reference check.

A trial's k-th report is its value at step min(k * eval_every, probe cap) (the last recorded
value in that interval, e.g. the 7,000-step checkpoint of a run with an epoch-boundary point at
6,771). A trial whose run is shorter than max_t holds its last value until max_t at no cost, as
the reference protocol's trainable does (shared/reference/deberta-asha.md): a short run that
has finished competes at later rungs with its final value.

Sizing (`size_asha`): grace period and max_t, in evaluations, are chosen as a user sizes ASHA
for a budget: the expected cost of one bracket of synchronous successive halving (n trials to
grace, n/rf on to grace*rf, ... , n/rf^K to max_t; `bracket_cost`, with each candidate's own
cost per step and run length) summed over the tasks must fit the budget. max_t is the full
horizon (each task's longest run, in evaluations) and grace the largest that fits; if even
grace = 1 does not fit at the full horizon, max_t is lowered until grace = 1 fits (then
survivors stop at max_t, short of a full run). ASHA's asynchronous rule promotes more than 1/rf
of a rung (early arrivals compare against few recorded values), so a run can spend more than
the synchronous estimate; the Market then refuses and the run ends where it stands.

Picks: `native_pick` = ASHA's own answer, the reference's rule: the best last reported value
among the trials that reached the deepest level of the task (levels = the rung milestones and
max_t; without a binding budget that is "the trials that ran the most iterations", i.e. the
ones that reached max_t, as get_best_result(scope="last") among finished trials would). `picks`
= the native pick. `predicted` = every bought prefix extrapolated with core.curves.extrapolate
(the harness's default argmax of it is the "extrapolated" ASHA pick); no std.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import deque

import numpy as np

from prehoc_ray.bench.market import BudgetExceeded, Market
from prehoc_ray.bench.policies import PolicyResult
from prehoc_ray.core.curves import extrapolate

METRIC = "value"
TIME_ATTR = "training_iteration"
REDUCTION_FACTOR = 4  # Ray Tune's default for AsyncHyperBandScheduler


# ----- sizing ----------------------------------------------------------------------------------
def rung_milestones(grace: int, max_t: int, eta: float = REDUCTION_FACTOR) -> list[float]:
    """The rungs of Ray's single ASHA bracket, ascending (the same expression as ray's _Bracket)."""
    n = int(np.log(max_t / grace) / np.log(eta) + 1)
    return [grace * eta**k for k in range(n)]


def asha_expected_iters(n: int, grace: int, eta: float, max_t: int) -> float:
    """Iterations synchronous successive halving spends on n trials (rungs grace * eta^k)."""
    rungs = [grace * eta**k for k in range(int(np.log(max_t / grace) / np.log(eta) + 1))] if max_t >= grace else [max_t]
    total = n * min(grace, max_t)
    for k, r in enumerate(rungs):
        nxt = rungs[k + 1] if k + 1 < len(rungs) else max_t
        total += n / eta ** (k + 1) * max(nxt - r, 0)
    return float(total)


def bracket_cost(mean_cost_to: np.ndarray, n: int, grace: int, max_t: int, eta: float = REDUCTION_FACTOR) -> float:
    """Expected cost of one synchronous successive-halving bracket of n trials.

    mean_cost_to[d] = the mean over the task's candidates of the cost of reaching evaluation d
    (d = 0 .. max_t), so that candidates of different costs and lengths are counted as they are.
    n trials to grace, n/eta^(k+1) of them on from rung k to rung k+1 (the last to max_t), as
    asha_expected_iters counts iterations.
    """
    grace = min(grace, max_t)
    rungs = [int(round(r)) for r in rung_milestones(grace, max_t, eta)]
    A = lambda d: float(mean_cost_to[min(int(d), max_t)])  # noqa: E731
    total = n * A(grace)
    for k, r in enumerate(rungs):
        nxt = rungs[k + 1] if k + 1 < len(rungs) else max_t
        total += n / eta ** (k + 1) * max(A(nxt) - A(r), 0.0)
    return total


def _iters(o, e: int) -> int:
    """Evaluations a full probe of offer o takes (the last one may be a partial interval)."""
    return max(1, int(np.ceil(o.probe_cap / e)))


def _cost_to(market: Market, members: list[int], depth: int) -> np.ndarray:
    """Mean cost of reaching evaluation d = 0..depth over `members` (one seed)."""
    e = market.eval_every
    d = np.arange(depth + 1) * e
    caps = np.array([market.candidates[i].probe_cap for i in members], float)
    lam = np.array([market.candidates[i].cost_per_step for i in members], float)
    return (lam[:, None] * np.minimum(d[None, :], caps[:, None])).mean(axis=0)


def _task_members(market: Market) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, o in enumerate(market.candidates):
        out.setdefault(o.group, []).append(i)
    return out


def size_asha(market: Market, budget: float | None = None, eta: float = REDUCTION_FACTOR) -> tuple[int, int, float]:
    """(grace, max_t, expected cost): the sizing rule of the module docstring.

    max_t is a cap: task g runs to min(max_t, its longest run), in evaluations.
    """
    budget = market.budget if budget is None else budget
    e = market.eval_every
    tasks = _task_members(market)
    longest = {g: max(_iters(market.candidates[i], e) for i in m) for g, m in tasks.items()}
    full = max(longest.values())
    prof = {g: _cost_to(market, m, longest[g]) for g, m in tasks.items()}

    def cost(grace: int, cap: int) -> float:
        return sum(
            bracket_cost(prof[g], len(m), min(grace, min(cap, longest[g])), min(cap, longest[g]), eta)
            for g, m in tasks.items()
        )

    tol = budget * (1 + 1e-12) + 1e-12
    fits = [g for g in range(1, full + 1) if cost(g, full) <= tol]
    if fits:
        return max(fits), full, cost(max(fits), full)
    for cap in range(full - 1, 0, -1):  # grace = 1 does not fit a full run: lower max_t
        if cost(1, cap) <= tol:
            return 1, cap, cost(1, cap)
    return 1, 1, cost(1, 1)  # not even one evaluation of every trial fits: the Market ends the run


# ----- the emulated controller -------------------------------------------------------------------
class _Trial:
    """What AsyncHyperBandScheduler reads of a trial: its id (and config, for routing)."""

    __slots__ = ("trial_id", "config", "index", "group", "iters", "step", "last", "done")

    def __init__(self, index: int, group: str) -> None:
        self.trial_id = f"trial_{index:05d}"
        self.config = {"trial": {"index": index, "group": group}}
        self.index, self.group = index, group
        self.iters, self.step, self.last, self.done = 0, 0, None, False


def _make_scheduler(grace: int, max_t: int, eta: float):
    from ray.tune.schedulers import AsyncHyperBandScheduler

    return AsyncHyperBandScheduler(
        time_attr=TIME_ATTR,
        metric=METRIC,
        mode="max",
        max_t=max_t,
        grace_period=min(grace, max_t),
        reduction_factor=eta,
    )


class AshaEmulator:
    """Ray's AsyncHyperBandScheduler (one per task) driven directly over a Market.

    `report(i)`: trial i buys its next evaluation and reports it; returns Ray's decision.
    `run_lockstep(rng)`: rounds in which every live trial reports once, in shuffled order.
    With max_concurrent=k, a task runs k trials at a time, started in market order as slots
    free up (Tune's max_concurrent_trials); None launches every trial of a task at once.
    """

    def __init__(
        self, market: Market, grace: int, max_t: int, eta: float = REDUCTION_FACTOR, max_concurrent: int | None = None
    ) -> None:
        from ray.tune.schedulers import TrialScheduler

        self._STOP = TrialScheduler.STOP
        self.market, self.e, self.eta = market, market.eval_every, eta
        self.tasks = _task_members(market)
        self.max_t = {
            g: min(max_t, max(_iters(market.candidates[i], self.e) for i in m)) for g, m in self.tasks.items()
        }
        self.grace = {g: min(grace, t) for g, t in self.max_t.items()}
        self.schedulers = {g: _make_scheduler(self.grace[g], self.max_t[g], eta) for g in self.tasks}
        self.trials = [_Trial(i, o.group) for i, o in enumerate(market.candidates)]
        self.pending = {g: deque(m) for g, m in self.tasks.items()}
        self.live: list[int] = []
        self.events: list[tuple[int, int, float | None, str]] = []  # (index, iteration, value, decision)
        self.rounds = 0
        self.ended_by_budget = False
        # on_trial_add draws a bracket with np.random even when there is one: keep the global
        # generator as the caller left it.
        state = np.random.get_state()
        try:
            for t in self.trials:
                self.schedulers[t.group].on_trial_add(None, t)
        finally:
            np.random.set_state(state)
        self.max_concurrent = max_concurrent
        for g in self.tasks:
            self._start(g, max_concurrent)

    def _start(self, g: str, k: int | None) -> None:
        q = self.pending[g]
        n = len(q) if k is None else k
        for _ in range(min(n, len(q))):
            self.live.append(q.popleft())

    def report(self, i: int) -> str:
        t = self.trials[i]
        o = self.market.candidates[i]
        k = t.iters + 1
        target = min(k * self.e, o.probe_cap)
        if target > t.step:  # held iterations past the end of the run cost nothing
            _, v, _ = self.market.probe(i, 0, t.step, target)  # raises BudgetExceeded
            t.step = target
            if v.size:
                t.last = float(v[-1])
        t.iters = k
        result = {TIME_ATTR: k, "step": t.step}
        if t.last is not None:
            result[METRIC] = t.last
        sched = self.schedulers[t.group]
        decision = sched.on_trial_result(None, t, result)
        if decision != self._STOP and t.last is None and k >= self.max_t[t.group]:
            # A run that never reported the metric (its recorded curve ends before its first
            # evaluation) gets CONTINUE from Ray's ASHA for ever; at max_t its training function
            # has returned, and Tune completes the trial.
            decision = self._STOP
        self.events.append((i, k, t.last, decision))
        if decision == self._STOP:
            sched.on_trial_complete(None, t, result)  # what Tune's stop_trial does
            t.done = True
            if self.max_concurrent is not None:
                self._start(t.group, 1)
        return decision

    def run_lockstep(self, rng: np.random.Generator) -> None:
        while self.live and not self.ended_by_budget:
            self.rounds += 1
            batch = list(self.live)
            for j in rng.permutation(len(batch)):
                try:
                    self.report(batch[j])
                except BudgetExceeded:
                    self.ended_by_budget = True
                    break
            self.live = [i for i in self.live if not self.trials[i].done]

    # ----- outcome -----
    def iters(self) -> np.ndarray:
        return np.array([t.iters for t in self.trials])

    def last(self) -> np.ndarray:
        return np.array([np.nan if t.last is None else t.last for t in self.trials])

    def native_pick(self) -> dict[str, int]:
        return native_picks(self.tasks, self.iters(), self.last(), self.grace, self.max_t, self.eta)


def native_picks(
    tasks: dict[str, list[int]],
    iters: np.ndarray,
    last: np.ndarray,
    grace: dict[str, int],
    max_t: dict[str, int],
    eta: float = REDUCTION_FACTOR,
) -> dict[str, int]:
    """ASHA's own pick per task: the best last reported value among the trials at the deepest level.

    Levels are the rung milestones and max_t: a trial's level is the deepest one its iteration
    count reached. Without a binding budget every trial past the last rung runs to max_t, so
    these are the trials that ran the most iterations (the reference's rule).
    """
    out = {}
    for g, members in tasks.items():
        marks = np.array(sorted({*rung_milestones(grace[g], max_t[g], eta), max_t[g]}), float)
        lev = {i: int(np.searchsorted(marks, iters[i], side="right")) for i in members if np.isfinite(last[i])}
        if not lev:
            continue
        top = max(lev.values())
        out[g] = max((i for i in lev if lev[i] == top), key=lambda i: (last[i], -i))
    return out


def _predictions(market: Market) -> tuple[np.ndarray, np.ndarray]:
    n = len(market.candidates)
    pred = np.full(n, np.nan)
    for i, o in enumerate(market.candidates):
        st, v = market.prefix(i, 0)
        if st.size:
            pred[i] = extrapolate(st, v, o.horizon)
    return pred, np.array([market.depth(i) for i in range(n)], float)


def run(
    market: Market,
    *,
    seed: int = 0,
    grace_period: int | None = None,
    max_t: int | None = None,
    max_concurrent: int | None = None,
    reduction_factor: float = REDUCTION_FACTOR,
) -> PolicyResult:
    """ASHA over every trial of each task at once (see the module docstring).

    grace_period / max_t (evaluations) override the sizing rule (max_t alone: the largest
    grace that fits under it); max_concurrent=k runs k trials of a task at a time (the
    reference protocol uses 2), None all at once.
    """
    t0 = time.perf_counter()
    g, T = _settings(market, grace_period, max_t, reduction_factor)
    expected = _sized_cost(market, g, T, reduction_factor)
    emu = AshaEmulator(market, g, T, reduction_factor, max_concurrent)
    emu.run_lockstep(np.random.default_rng(seed))
    pred, steps = _predictions(market)
    native = emu.native_pick()
    stopped_at = {}
    for _i, k, _, d in emu.events:
        if d == "STOP":
            stopped_at[k] = stopped_at.get(k, 0) + 1
    info = {
        "grace_period": g,
        "max_t": T,
        "max_t_by_task": dict(emu.max_t),
        "rounds": emu.rounds,
        "reduction_factor": reduction_factor,
        "expected_cost": expected,
        "ended_by_budget": emu.ended_by_budget,
        "max_concurrent": max_concurrent,
        "iters": emu.iters(),
        "stopped_at": dict(sorted(stopped_at.items())),
        "seconds": time.perf_counter() - t0,
    }
    return PolicyResult(
        "asha",
        pred,
        np.full(len(pred), np.nan),
        float(market.spent),
        steps,
        native_pick=native,
        picks=dict(native),
        info=info,
    )


def _settings(market: Market, grace_period: int | None, max_t: int | None, eta: float) -> tuple[int, int]:
    """(grace, max_t): the sizing rule, or the caller's overrides (max_t alone: the largest grace
    that fits under it; grace alone: max_t = the full horizon)."""
    if grace_period is None and max_t is None:
        g, T, _ = size_asha(market, eta=eta)
        return g, T
    full = max(_iters(o, market.eval_every) for o in market.candidates)
    if grace_period is None:
        T = int(max_t)
        fits = [h for h in range(1, T + 1) if _sized_cost(market, h, T, eta) <= market.budget * (1 + 1e-12)]
        return max(fits, default=1), T
    g = int(grace_period)
    return g, (full if max_t is None else int(max_t))


def _sized_cost(market: Market, grace: int, cap: int, eta: float) -> float:
    e = market.eval_every
    total = 0.0
    for m in _task_members(market).values():
        T = min(cap, max(_iters(market.candidates[i], e) for i in m))
        total += bracket_cost(_cost_to(market, m, T), len(m), min(grace, T), T, eta)
    return total


# ----- the real Tuner ----------------------------------------------------------------------------
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
        """A copy of the Market that sells to every trial; logs every purchase for the caller."""

        def __init__(self, market: Market) -> None:
            self.market, self.log, self.closed = market, [], False

        def buy(self, i: int, start: int, target: int):
            if self.closed:
                return None
            try:
                _, v, _ = self.market.probe(i, 0, start, target)
            except BudgetExceeded:
                self.closed = True  # once refused, the run is over for every trial
                return None
            self.log.append((i, start, target))
            return v

        def state(self) -> list:
            return self.log

    return _Bank


def replay_trainable(config: dict, bank=None, plan=None) -> None:
    """A Ray Tune function trainable: one report per evaluation interval, values bought from the bank."""
    import ray
    from ray import tune

    i = config["trial"]["index"]
    cap, e, max_t, pace = plan[i]
    step, last = 0, None
    for k in range(1, max_t + 1):
        target = min(k * e, cap)
        if target > step:
            v = ray.get(bank.buy.remote(i, step, target))
            if v is None:
                return
            step = target
            if len(v):
                last = float(v[-1])
        if pace:
            time.sleep(pace)
        tune.report({METRIC: last, "step": float(step)})


def _per_group_scheduler(make):
    from ray.tune.schedulers import FIFOScheduler

    class PerGroupScheduler(FIFOScheduler):
        """Routes each trial's callbacks to its task's own AsyncHyperBandScheduler; logs results."""

        def __init__(self) -> None:
            super().__init__()
            self.by_group: dict = {}
            self.events: list = []  # (index, iteration, value, decision) in the order Tune saw them
            self.seen: dict = {}

        def _of(self, trial):
            g = trial.config["trial"]["group"]
            if g not in self.by_group:
                self.by_group[g] = make(g)
            return self.by_group[g]

        def set_search_properties(self, metric, mode, **spec) -> bool:
            return True  # every task's scheduler is built with metric and mode

        def on_trial_add(self, tune_controller, trial):
            self._of(trial).on_trial_add(tune_controller, trial)

        def on_trial_result(self, tune_controller, trial, result):
            d = self._of(trial).on_trial_result(tune_controller, trial, result)
            i, k = trial.config["trial"]["index"], int(result[TIME_ATTR])
            if k > self.seen.get(i, 0):  # not the repeat Tune sends when a trainable returns
                self.seen[i] = k
                self.events.append((i, k, result.get(METRIC), d))
            return d

        def on_trial_complete(self, tune_controller, trial, result):
            self._of(trial).on_trial_complete(tune_controller, trial, result)

        def on_trial_error(self, tune_controller, trial):
            self._of(trial).on_trial_error(tune_controller, trial)

        def on_trial_remove(self, tune_controller, trial):
            self._of(trial).on_trial_remove(tune_controller, trial)

        def debug_string(self) -> str:
            return "; ".join(f"{g}: {s.debug_string()}" for g, s in sorted(self.by_group.items()))

    return PerGroupScheduler()


def run_tuner(
    market: Market,
    *,
    seed: int = 0,
    grace_period: int | None = None,
    max_t: int | None = None,
    max_concurrent: int | None = None,
    reduction_factor: float = REDUCTION_FACTOR,
    pace_s: float = 0.0,
) -> PolicyResult:
    """The same ASHA through a real `tune.Tuner` (one actor per running trial).

    max_concurrent=None: one Tuner, every trial of every task launched at once (each trial asks
    for 1/n of a CPU). max_concurrent=k: one Tuner per task, in turn, with
    max_concurrent_trials=k (the reference protocol; a binding budget then favours the first
    task). Trials are created in market order. pace_s: seconds each evaluation sleeps (models
    training time, so that concurrent trials interleave). `seed` is unused: Tune's timing
    decides the arrival order. info["events"] = the (index, iteration, value, decision)
    sequence the schedulers saw.
    """
    _ensure_ray()
    import ray
    from ray import tune

    g0, T = _settings(market, grace_period, max_t, reduction_factor)
    e = market.eval_every
    tasks = _task_members(market)
    max_t_by = {g: min(T, max(_iters(market.candidates[i], e) for i in m)) for g, m in tasks.items()}
    grace_by = {g: min(g0, t) for g, t in max_t_by.items()}
    plan = {i: (o.probe_cap, e, max_t_by[o.group], pace_s) for i, o in enumerate(market.candidates)}
    bank = _bank_class().remote(market)
    batches = [list(range(len(market.candidates)))] if max_concurrent is None else list(tasks.values())
    events: list = []
    iters, last = np.zeros(len(plan), int), np.full(len(plan), np.nan)
    t0 = time.perf_counter()
    try:
        for members in batches:
            conc = len(members) if max_concurrent is None else max_concurrent
            sched = _per_group_scheduler(lambda g: _make_scheduler(grace_by[g], max_t_by[g], reduction_factor))
            trainable = tune.with_resources(
                tune.with_parameters(replay_trainable, bank=bank, plan=plan), {"cpu": 1.0 / conc}
            )
            storage = tempfile.mkdtemp(prefix="prehoc-asha-")
            try:
                tuner = tune.Tuner(
                    trainable,
                    param_space={
                        "trial": tune.grid_search([{"index": i, "group": market.candidates[i].group} for i in members])
                    },
                    tune_config=tune.TuneConfig(scheduler=sched, max_concurrent_trials=conc, reuse_actors=True),
                    run_config=tune.RunConfig(storage_path=storage, name="asha", verbose=0, log_to_file=False),
                )
                grid = tuner.fit()
            finally:
                shutil.rmtree(storage, ignore_errors=True)
            errors = [str(r.error) for r in grid if r.error is not None]
            if errors:
                raise RuntimeError(f"ASHA trials failed: {errors[:3]}")
            events.extend(sched.events)
        log = ray.get(bank.state.remote())
    finally:
        ray.kill(bank)
    for i, k, v, _ in events:
        if k > iters[i]:
            iters[i], last[i] = k, np.nan if v is None else v
    for i, start, target in log:  # charge the caller's Market for what the trials bought
        market.probe(i, 0, start, target)
    pred, steps = _predictions(market)
    native = native_picks(tasks, iters, last, grace_by, max_t_by, reduction_factor)
    info = {
        "grace_period": g0,
        "max_t": T,
        "max_t_by_task": max_t_by,
        "reduction_factor": reduction_factor,
        "max_concurrent": max_concurrent,
        "iters": iters,
        "events": events,
        "purchases": log,
        "seconds": time.perf_counter() - t0,
    }
    return PolicyResult(
        "asha",
        pred,
        np.full(len(pred), np.nan),
        float(market.spent),
        steps,
        native_pick=native,
        picks=dict(native),
        info=info,
    )
