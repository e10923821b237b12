"""The ask/tell allocation engine: which probe to run next, and when to stop.

The engine never runs anything: the execution layer (Ray) or a simulated backend asks it for
the next round of probe orders, runs them, and tells it the results. Decisions are made in
rounds, and a round's orders depend only on the results of earlier rounds, never on the order
in which results arrived. That is what makes a resumed run reach the same decisions as an
uninterrupted one: a fresh engine replays the rounds, the driver answers every order that
the result store already holds from the store, and only the rest is run.

Per round:
1. Candidates not yet at the initial depth get their initial probe (every seed). Objective
   "decision": when the budget cannot pay that for every candidate, all get a shallower one
   (fewer seeds only if one evaluation interval does not fit), not full ones for some.
2. Every candidate is refitted: seed dispersion U(c), the family's shared alpha, member floors
   shrunk toward the family, the budget-optimal depth c* with the measured cost per step.
3. objective "prediction": stop, with a reason, candidates that are Noise-Dominant,
   Static-Sufficient, at c*, or at the probe cap; the others compete for the budget by marginal
   variance reduction per unit cost (greedy, `slots` at a time), each extended toward
   min(growth x depth, c*, cap).
   objective "decision" (the default): candidates compete by the expected reduction of their
   task's selection regret per device-second (knowledge gradient, KG(*); core/decision.py);
   a candidate with P(best in its task) below `contention` is out of contention, and the
   allocation stops when no increment's value pays for its cost at the price of regret. These
   two stops are decisions about beliefs that later results can change, so they are revisited
   every round (a stopped candidate whose task leader fell is probed again); probe cap, budget
   and failures are final.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from prehoc_ray.core.allocation import greedy_pick, marginal_reduction
from prehoc_ray.core.backtests import CurveBacktest, candidate_backtest, extrapolation_error, scale_with_gain_error
from prehoc_ray.core.budget import choose_depth
from prehoc_ray.core.curves import extrapolate
from prehoc_ray.core.decay import DIAG_AT_BOUND, DIAG_FLOOR_UNIDENTIFIED, DIAGNOSTIC_HELP, DecayFit, predictive_variance
from prehoc_ray.core.decision import (
    best_other,
    extrapolation_variance,
    group_codes,
    kg_star,
    p_best_by_task,
)
from prehoc_ray.core.evaluation_noise import EVAL_EXAMPLES_KEY, eval_sampling_variance
from prehoc_ray.core.family import FamilyFit, fit_family
from prehoc_ray.core.learning import learning_not_seen, no_skill_level
from prehoc_ray.core.observations import CandidateCurves, Observations
from prehoc_ray.core.population import HistoryPredictor, population_risk
from prehoc_ray.core.regimes import RegimeThresholds, classify, explain
from prehoc_ray.core.summary import CandidateSummary
from prehoc_ray.types import Regime, StopKind

# z of the 90% interval: "too early to tell" compares a 90% interval's width with the task's range.
TOO_EARLY_Z = 1.6448536269514722
TOO_EARLY = "too_early_to_tell"  # a diagnostic: see Engine._decide_task


@dataclass(frozen=True)
class CandidateInfo:
    """What the engine knows about a candidate before any probe."""

    id: str
    group: str
    horizon: float  # steps of the full fine-tune
    prior_cost_per_step: float = 1.0  # device-seconds per step per seed, until measured
    static: dict[str, float] = field(default_factory=dict)
    # True when the prior is the real cost (simulators, replays of recorded curves); otherwise
    # it is a guess that the engine calibrates on measured probes and admits with a margin.
    prior_cost_exact: bool = False
    # The deepest step a probe of it can reach (a replay of recorded curves that stop early);
    # None: only max_depth_fraction of its horizon bounds it.
    probe_cap: float | None = None


@dataclass(frozen=True)
class EngineSettings:
    budget: float  # device-seconds for all probes
    seeds: int = 3
    eval_every: int = 10
    initial_depth: int = 30  # at least three evaluation points
    growth: float = 2.0  # each extension multiplies the depth by at most this
    max_depth_fraction: float = 1.0  # probes never go past this fraction of the horizon
    tolerance: float = 0.02
    gamma: float | None = None  # price of risk per device-second; None: tau^2 / (full-run cost)
    level: float = 0.9
    n_boot: int = 100
    slots: int = 1_000_000  # candidates extended per round (the cluster's parallelism)
    seed: int = 0
    # Before any probe has run, a guessed cost can be several times off (model loading, a slow
    # node): the first round admits guessed initial probes only while margin x guess fits.
    prior_cost_margin: float = 3.0
    # What the probes are for. "decision": the per-task choice of which full fine-tune to run
    # (expected regret reduction per device-second; core/decision.py). "prediction": every
    # candidate's prediction variance (marginal variance reduction per device-second).
    objective: Literal["decision", "prediction"] = "decision"
    # Price of regret per device-second (objective "decision"); None: tolerance / the median
    # task's cost of training all its candidates in full, i.e. one tolerance of regret in a
    # task's pick is worth brute-forcing the task.
    gamma_decision: float | None = None
    contention: float = 0.01  # P(best in task) below which a candidate is out of contention
    # Objective "decision": the initial probes together take at most this share of the budget
    # (shallower ones, down to one evaluation, when full ones would take more); the rest is
    # left for the extensions that tell the contenders apart (see _initial_seeds).
    initial_share: float = 0.3
    # Objective "decision": each extension round spends at most this share of what is left
    # (at least one extension), the most valuable first. The knowledge gradient values each
    # candidate's next probe alone: while the budget is large every contender's next probe
    # pays, and a round that bought them all would probe like uniform. A paced round lets the
    # next one decide with what this one learned (development worlds, benchmarks/peers/NOTES.md).
    round_share: float = 0.35
    # A prediction's extrapolation error is at least the share of its own extrapolated gain that
    # its task's back-tested gains missed by (core/backtests.py, gain_error); False: only the
    # error per unit of curve distance (an ablation switch for the benchmarks).
    gain_error: bool = True
    # The extrapolation error is pooled from the back-tests of the predictor the engine uses
    # (the last value plus gain_trust x the extrapolated gain); False: of the bare curve model,
    # which overstates it wherever the trust is below 1 (an ablation switch for the benchmarks).
    trusted_backtests: bool = True
    mode: Literal["max", "min"] = "max"  # is a larger metric better? (which candidate is "best")

    def __post_init__(self) -> None:
        checks = {
            "budget": self.budget >= 0,
            "seeds": self.seeds >= 1,
            "eval_every": self.eval_every >= 1,
            "initial_depth": self.initial_depth >= 3 * self.eval_every,
            "growth": self.growth > 1,
            "max_depth_fraction": 0 < self.max_depth_fraction <= 1,
            "round_share": 0 < self.round_share <= 1,
            "tolerance": self.tolerance > 0,
            "slots": self.slots >= 1,
            "prior_cost_margin": self.prior_cost_margin >= 1,
            "objective": self.objective in ("decision", "prediction"),
            "gamma_decision": self.gamma_decision is None or self.gamma_decision > 0,
            "contention": 0 <= self.contention < 1,
            "initial_share": 0 < self.initial_share <= 1,
            "mode": self.mode in ("max", "min"),
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"invalid engine setting(s): {', '.join(bad)} (budget >= 0, seeds >= 1, initial_depth >= 3 x eval_every, "
                "growth > 1, 0 < max_depth_fraction <= 1, tolerance > 0, slots >= 1, prior_cost_margin >= 1, "
                "objective 'decision' or 'prediction', gamma_decision > 0, 0 <= contention < 1, 0 < initial_share <= 1, 0 < round_share <= 1, "
                "mode 'max' or 'min')"
            )


@dataclass(frozen=True)
class ProbeOrder:
    """Run `candidate` with `seed` from `start_step` (its checkpoint) to `target_step`."""

    probe_id: str
    round: int
    candidate: str
    seed: int
    start_step: int
    target_step: int


PROBE_CAP_WORDS = "reached the probe cap (max_depth_fraction of the full run)"


@dataclass(slots=True)
class CandidateState:
    info: CandidateInfo
    points: dict[int, dict[int, float]] = field(default_factory=dict)  # seed -> step -> value
    reached: dict[int, int] = field(default_factory=dict)  # seed -> last finished target step
    cost_s: float = 0.0
    steps_run: int = 0
    failed: str | None = None
    fit: DecayFit | None = None
    regime: Regime = Regime.UNDETERMINED
    c_star: float = float("nan")
    L0: float = float("nan")
    J0: float = float("nan")
    J_star: float = float("nan")
    stop_reason: str | None = None  # why it is no longer probed, in words (with stop_kind)
    stop_kind: StopKind | None = None
    value_per_cost: float = float("nan")  # marginal risk reduction per device-second of the next step
    family_L_int_lo: float = float("nan")  # the pooled family fit's floor lower bound
    no_learning: bool = False  # the metric has not yet left its no-skill level (see no_skill_level)
    mu: float = float("nan")  # predicted final (seed-mean extrapolation), set by refit
    p_best: float = float("nan")  # P(best expected final in its task) under the decision beliefs
    probe_value: float = float("nan")  # expected regret reduction per device-second of the next extension
    # The probing it would take next, budget permitting: the best KG(*) look-ahead's device-seconds
    # and depth (the plan's "what a larger budget would settle"); NaN / 0 when nothing is wanted.
    wanted_cost_s: float = float("nan")
    wanted_depth: int = 0
    soft_stop: bool = False  # stop_reason is a decision about beliefs, revisited every round
    backtest: CurveBacktest | None = None  # its own back-tests, for the points it had then
    backtest_version: int = -1  # the version (see `version`) its back-tests were computed at
    bt_scale: float = float("nan")  # the curve model's extrapolation error per unit curve_distance at this depth
    gain_trust: float = 1.0  # share of the extrapolated gain its task's back-tests bore out (core/backtests.py)
    bt_exponent: float = 0.0  # the exponent that error is carried to the horizon with (its task's curves)
    too_early: bool = False  # its interval is wider than all its task's curves have moved (see _decide_task)
    # (version, each seed's (extrapolated final, last value), their mean extrapolated gain)
    finals_cache: tuple[int, list[tuple[float, float]], float] = (-1, [], float("nan"))
    L_eval: float = float("nan")  # evaluation-set sampling variance of its final (NaN: set size unknown)
    seed_var_fallback: float = 0.0  # variance of one seed's extrapolated final, where no usable decay fit (refit)
    # Seeds this candidate is probed with: settings.seeds unless the budget could not pay every
    # candidate's initial probe at that many (objective "decision"; see next_round). 0: not set yet.
    n_seeds: int = 0
    init_depth: int = 0  # its initial probe's depth; 0: settings.initial_depth

    # Kept from points and reached by record / recount: a round reads them for every candidate
    # several times, and at 10,000 candidates recounting each time is a tenth of the round.
    _n_points: int = field(default=0, init=False, repr=False, compare=False)
    _depth: int = field(default=0, init=False, repr=False, compare=False)
    _version: int = field(default=0, init=False, repr=False, compare=False)  # bumped by every record
    _curves: tuple[int, CandidateCurves | None] = field(default=(-1, None), init=False, repr=False, compare=False)
    # (the fit they were computed for, usable, identified): what Engine._usable and
    # Engine._identified say of `fit`, read for every candidate at every decision.
    fit_flags: tuple[DecayFit | None, bool, bool] = field(
        default=(None, False, False), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        self.recount()

    @property
    def depth(self) -> int:
        """The depth every seed has reached (a probe increment moves all seeds together)."""
        return self._depth

    @property
    def version(self) -> int:
        """Bumped by every change of its evaluations: what the caches of derived values key on
        (a re-told step changes a value without changing how many there are)."""
        return self._version

    @property
    def n_points(self) -> int:
        """Evaluations told so far, over all seeds (what the caches below are keyed on)."""
        return self._n_points

    def record(self, seed: int, rows: list[dict], start_step: int, target_step: int) -> None:
        """A finished probe of one seed: its finite evaluations in (start_step, target_step]."""
        pts = self.points.setdefault(seed, {})
        for r in rows:
            step = int(r["step"])
            if start_step < step <= target_step and math.isfinite(float(r["value"])):
                pts[step] = float(r["value"])
        self.reached[seed] = max(self.reached.get(seed, 0), target_step)
        self.recount()

    def recount(self) -> None:
        """Refresh what is kept from `points` and `reached` (after changing them directly)."""
        self._n_points = sum(len(p) for p in self.points.values())
        self._depth = min(self.reached.values()) if self.reached else 0
        self._version += 1

    @property
    def cost_per_step(self) -> float:
        """Measured device-seconds per step of one seed; the prior until something ran."""
        return self.cost_s / self.steps_run if self.steps_run > 0 else self.info.prior_cost_per_step

    def curves(self) -> CandidateCurves:
        """Its evaluations as curves: built once per change, shared, so its arrays are read-only."""
        if self._curves[0] != self._version or self._curves[1] is None:
            seeds = {}
            for s, pts in sorted(self.points.items()):
                st = np.array(sorted(pts), float)
                v = np.array([pts[int(k)] for k in st], float)
                st.flags.writeable = v.flags.writeable = False
                seeds[s] = (st, v)
            cc = CandidateCurves(self.info.id, self.info.group, self.info.horizon, float("nan"), np.zeros(0), seeds)
            self._curves = (self._version, cc)
        return self._curves[1]


def _nan_safe(x: float) -> float | None:
    """A float that compares equal to itself in a cache key (NaN != NaN)."""
    return None if math.isnan(x) else x


@dataclass
class _TaskFit:
    """What a task's last refit computed, and the inputs it computed it from."""

    data_key: tuple  # per member: id, version of its evaluations, depth (what the family fit reads)
    fam: FamilyFit
    moved: float  # how far the task's curves have moved
    L0_group: float = float("nan")  # static-only risk of the task (NaN: from each member's U)
    terms_key: tuple = ()  # the price and per member: steps, cost, seeds, back-test terms
    stops: dict[str, tuple] = field(default_factory=dict)  # the stops the last decision made: (kind, reason, soft)


class Engine:
    """Deterministic given the candidates, the settings and the results it is told."""

    def __init__(
        self, candidates: list[CandidateInfo], settings: EngineSettings, history: Observations | None = None
    ) -> None:
        """history: completed runs of the candidates' families (group = family, with `final`),
        as `prehoc-ray analyze` reads them. Families with at least MIN_POPULATION finals get
        their predictions and intervals from a population model trained on them (docs/design.md,
        Measuring U(c)) instead of from the probes' own decomposition, and their static-only
        risk L(0) (which decides Static-Sufficient and the cost of not probing, J(0)) from its
        cross-validated error. U(c) is still measured by seed dispersion."""
        ids = [c.id for c in candidates]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"duplicate candidate id(s): {', '.join(dup)}")
        self.settings = settings
        self.thresholds = RegimeThresholds(settings.tolerance)
        self.states = {c.id: CandidateState(c) for c in sorted(candidates, key=lambda c: c.id)}
        # Every decision reads the tasks of all candidates, in this fixed order.
        self._groups = [st.info.group for st in self.states.values()]
        self._group_codes = group_codes(self._groups)
        self._group_codes.flags.writeable = False
        self._baseline = {c.id: no_skill_level(c.static) for c in candidates}
        self._history: dict[str, HistoryPredictor] = {}
        self._history_L0: dict[str, float] = {}
        self._static_names: list[str] = history.static_names if history is not None else []
        if history is not None and len(history.candidate):
            families = {c.group for c in candidates}
            runs: dict[str, list[CandidateCurves]] = {}
            for cc in history.per_candidate():
                runs.setdefault(cc.group, []).append(cc)
            for g in sorted(families & set(runs)):
                hp = HistoryPredictor(runs[g], level=settings.level, seed=settings.seed)
                if hp.usable:
                    self._history[g] = hp
                    self._history_L0[g] = float(population_risk(hp.known, np.array([0.0]), seed=settings.seed)[0])
        self.round = 0
        self._open: dict[str, ProbeOrder] = {}
        self.spent = 0.0
        self.spend_log: list[dict] = []  # per finished probe: round, candidate, cost, cumulative spend
        self.gamma = self.gamma_decision = float("nan")
        self._task_fits: dict[str, _TaskFit] = {}
        # task -> (its beliefs, P(best)): core/decision.py p_best_by_task
        self._p_best_cache: dict[str, tuple[tuple, np.ndarray]] = {}
        self._caps: dict[str, int] = {}  # candidate -> its probe depth cap (_cap)
        self.tasks_refit = 0  # tasks whose decay fits the last refit computed again (the others had no new data)
        self._update_prices()  # exist from construction; every refit updates them with measured costs

    # ----- tell -------------------------------------------------------------------------------
    def tell(self, order: ProbeOrder, rows: list[dict], cost_s: float) -> None:
        """A finished probe: its evaluation rows (step, value) and its measured device-seconds."""
        st = self.states[order.candidate]
        st.record(order.seed, rows, order.start_step, order.target_step)
        st.cost_s += float(cost_s)
        st.steps_run += order.target_step - order.start_step
        self.spent += float(cost_s)
        self._open.pop(order.probe_id, None)
        self.spend_log.append(
            {
                "round": order.round,
                "candidate": order.candidate,
                "probe_id": order.probe_id,
                "cost_s": float(cost_s),
                "spent_s": self.spent,
            }
        )

    def tell_failure(self, order: ProbeOrder, reason: str, cost_s: float = 0.0) -> None:
        """A probe that failed for good (after the driver's retries): the candidate stops."""
        st = self.states[order.candidate]
        st.failed = reason
        self._stop(st, StopKind.PROBE_FAILED, f"probe failed: {reason}")
        st.cost_s += float(cost_s)
        self.spent += float(cost_s)
        self._open.pop(order.probe_id, None)

    def withdraw(self, order: ProbeOrder, stop: str | None = None, cost_s: float = 0.0) -> None:
        """An order the driver did not run: the budget could not pay it once costs were known
        (execution/admission.py). Its candidate's probes stay as they were, so the next round
        plans again with what this round measured. `stop`: the candidate stops with this reason
        instead (a round that could run none of its orders must not ask for them again).
        `cost_s`: what its failed attempts cost before a retry was withdrawn (charged)."""
        st = self.states[order.candidate]
        st.cost_s += float(cost_s)
        self.spent += float(cost_s)
        self._open.pop(order.probe_id, None)
        if stop is not None:
            self._stop(st, StopKind.BUDGET, stop)
        elif not st.reached:
            # An initial probe that never started: its depth and seeds were sized on guessed
            # costs; the next round sizes them again on the measured ones (_initial_seeds), so
            # every task can still get a probe it can pay for.
            st.n_seeds = st.init_depth = 0

    def order_cost_estimate(self, order: ProbeOrder) -> tuple[float, bool]:
        """(device-seconds, guessed) of an order: its candidate's measured cost per step x the
        order's steps, or before the candidate ran its prior, uncalibrated (guessed True unless
        the prior is exact). The driver scales it by what the run has measured."""
        st = self.states[order.candidate]
        guessed = st.steps_run == 0 and not st.info.prior_cost_exact
        return st.cost_per_step * (order.target_step - order.start_step), guessed

    # ----- ask --------------------------------------------------------------------------------
    @property
    def budget_left(self) -> float:
        return self.settings.budget - self.spent

    def next_round(self) -> list[ProbeOrder]:
        """Orders of the next round; empty when every candidate has stopped.

        Raises if orders of the current round are still open: a round's decisions need all
        of the previous round's results.
        """
        if self._open:
            raise RuntimeError(f"{len(self._open)} probe(s) of round {self.round} still open; tell their results first")
        s = self.settings
        orders: list[ProbeOrder] = []
        # A candidate the budget already stopped is not fresh any more: it must neither get
        # an initial probe later nor keep the others in the initial phase for ever.
        fresh = [
            st
            for st in self.states.values()
            if st.failed is None and st.stop_reason is None and st.depth < self._init_depth(st)
        ]
        # A family whose past runs say static information already predicts a final within
        # tolerance (L(0) <= tau^2 by the history's cross-validated error) needs no probe at
        # all: its members are settled before the first one is bought.
        for st in fresh:
            L0 = self._history_L0.get(st.info.group, float("nan"))
            if st.depth == 0 and math.isfinite(L0) and L0 <= self.thresholds.risk_tolerance:
                st.L0, st.regime = L0, Regime.STATIC_SUFFICIENT
                self._stop(
                    st,
                    StopKind.STATIC_SUFFICIENT,
                    f"Static-Sufficient from past runs: "
                    f"{explain(Regime.STATIC_SUFFICIENT, float('nan'), L0, float('nan'), float('nan'), self.thresholds)}"
                    "; no probe needed",
                )
        fresh = [st for st in fresh if st.stop_reason is None]
        # When the budget cannot pay every initial probe, families take turns (the first
        # candidate of each, then the second, ...): in id order the families sorting last
        # would get no probe at all and their selection would be blind.
        turn: dict[str, int] = {}
        keyed = []
        for st in fresh:
            turn[st.info.group] = turn.get(st.info.group, -1) + 1
            keyed.append(((turn[st.info.group], st.info.group, st.info.id), st))
        fresh = [st for _, st in sorted(keyed, key=lambda kv: kv[0])]
        if s.objective == "decision":
            self._initial_seeds(fresh)
        # The planned cost is accumulated order by order, the same float additions in the same
        # order as summing the list afresh for every candidate (which is quadratic: minutes for
        # 10,000 candidates).
        planned = 0.0  # estimated cost of this round's orders
        cautious = 0.0  # the same with guessed costs times the margin
        factor = self._prior_calibration()
        for st in fresh:
            est = self._cost_per_step_estimate(st, factor) * (self._init_depth(st) - st.depth) * self._seeds(st)
            if est > self.budget_left - planned:
                if orders and est <= self.budget_left:
                    # The orders before it may not all run (the driver withdraws what the budget
                    # cannot pay once costs are measured): defer it to the next round, not stop it.
                    continue
                self._stop(st, StopKind.BUDGET, "probe budget spent before the initial probe")
                continue
            # Nothing measured yet and the cost a guess: plan with a margin, and defer (not stop)
            # what does not fit it; the next round has measured costs to decide with. The first
            # order of a round always runs if it fits at all, so there is something to measure.
            guessed = factor is None and st.steps_run == 0 and not st.info.prior_cost_exact
            margin = s.prior_cost_margin if guessed else 1.0
            if orders and margin * est > self.budget_left - cautious:
                continue
            new = self._orders_for(st, self._init_depth(st))
            cost = 0.0
            for o in new:
                cost += self._order_cost(o, factor)
            planned += cost
            cautious += margin * cost
            orders += new
        if not orders:
            self.refit()
            orders = self._extensions()
        self.round += 1 if orders else 0
        self._open = {o.probe_id: o for o in orders}
        return orders

    def _seeds(self, st: CandidateState) -> int:
        return st.n_seeds or self.settings.seeds

    def _init_depth(self, st: CandidateState) -> int:
        return st.init_depth or self.settings.initial_depth

    def _initial_seeds(self, fresh: list[CandidateState]) -> None:
        """Depth and seeds of the initial probes not yet started (objective "decision").

        When `initial_share` of the budget cannot pay every such candidate's initial probe
        (`seeds` seeds to `initial_depth`), they all get a shallower one: the deepest multiple of
        eval_every that the share pays for all of them at `seeds` seeds (at least one
        evaluation), and fewer seeds only when not even one evaluation interval fits the whole
        budget (the rule of uniform probing). The share keeps most of a tight budget for the
        extensions, as successive halving's first rung takes about 1/rungs of it (development
        worlds, share 0.3 against 1: heterogeneous 10% regret 2.19 -> 1.56 points, paired
        -0.63 +- 0.41 over 30 worlds; 5% and 20%, synthetic and DeBERTa: no significant change,
        synthetic 5% +0.49 +- 0.56). Fewer seeds would have helped the heterogeneous worlds more
        and cost the synthetic ones 0.9 points at 5%: a candidate keeps its seed count, and one
        seed has no dispersion to fit a decay law to. Full initial probes for some and
        none for the rest would leave the rest to be picked blind; a shallow probe already gives
        a belief (with fewer than three evaluations no decay fit, but the curve model's
        back-tested extrapolation error, which `backtest_error` measures from one point), and
        the extensions deepen whoever is worth it. A candidate keeps the seed count it started
        with (its extensions move the seeds it has). Decided once, on the first round that sees
        them (on development worlds at a 5% budget, where full initial probes cost 6%: regret
        2.47 -> 0.87 points on the synthetic worlds, 2.85 -> 2.43 on the heterogeneous ones).
        """
        s = self.settings
        new = [st for st in fresh if st.depth == 0 and st.n_seeds == 0]
        if not new:
            return
        factor = self._prior_calibration()
        per_seed = 0.0
        for st in new:
            per_seed += self._cost_per_step_estimate(st, factor) * s.initial_depth
        started = 0.0  # what the candidates already started still need to reach the initial depth
        for st in fresh:
            if st.n_seeds:
                started += (
                    self._cost_per_step_estimate(st, factor) * (self._init_depth(st) - st.depth) * self._seeds(st)
                )
        room = self.budget_left - started
        share_room = min(self.budget_left, s.initial_share * s.budget) - started
        k, d, e = s.seeds, s.initial_depth, s.eval_every
        unit = per_seed / s.initial_depth  # one seed, one step, for all of them
        while d > e and k * unit * d > share_room:
            d -= e
        # Fewer seeds only when one evaluation with all of them does not fit the budget at all:
        # a candidate keeps its seed count, and one seed has no dispersion to fit a decay law.
        while k > 1 and k * unit * d > room:
            k -= 1
        for st in new:
            st.n_seeds, st.init_depth = k, d

    def _order_cost(self, o: ProbeOrder, factor: float | None = None) -> float:
        return self._cost_per_step_estimate(self.states[o.candidate], factor) * (o.target_step - o.start_step)

    def _prior_calibration(self) -> float | None:
        """Median of measured / prior cost over the candidates that ran: how far off the guesses
        are on this cluster (slower devices, loading overhead). None before anything ran."""
        ratios = [
            st.cost_per_step / st.info.prior_cost_per_step
            for st in self.states.values()
            if st.steps_run > 0 and st.info.prior_cost_per_step > 0 and not st.info.prior_cost_exact
        ]
        return float(np.median(ratios)) if ratios else None

    @staticmethod
    def _cost_per_step_estimate(st: CandidateState, factor: float | None) -> float:
        """Measured cost per step; else the prior, scaled by the calibration when it is a guess."""
        if st.steps_run > 0 or st.info.prior_cost_exact or factor is None:
            return st.cost_per_step
        return st.info.prior_cost_per_step * factor

    def _orders_for(self, st: CandidateState, target: int) -> list[ProbeOrder]:
        out = []
        for seed in range(self._seeds(st)):
            start = st.reached.get(seed, 0)
            if start < target:
                pid = f"r{self.round:04d}|{st.info.id}|s{seed}|{start}-{target}"
                out.append(ProbeOrder(pid, self.round, st.info.id, seed, start, target))
        return out

    def _cap(self, st: CandidateState) -> int:
        """The deepest a probe of `st` may go: max_depth_fraction of its horizon (and its own
        probe_cap, where it has one), on the evaluation grid."""
        cap = self._caps.get(st.info.id)
        if cap is None:
            s = self.settings
            cap = int(st.info.horizon * s.max_depth_fraction)
            if st.info.probe_cap is not None:
                cap = min(cap, int(st.info.probe_cap))
            cap = self._caps[st.info.id] = max(s.eval_every, cap - cap % s.eval_every)
        return cap

    def _round_up(self, c: float) -> int:
        e = self.settings.eval_every
        return int(math.ceil(c / e) * e)

    def _extensions(self) -> list[ProbeOrder]:
        if self.settings.objective == "decision":
            return self._decision_extensions()
        s = self.settings
        active = [st for st in self.states.values() if st.stop_reason is None and st.failed is None]
        if not active:
            return []
        # One pass over the candidates in plain Python (depth, fit.ok and the targets once each),
        # then numpy: a round over 10,000 candidates stays in tens of milliseconds.
        n = len(active)
        K, alpha, depth = np.full(n, np.nan), np.full(n, np.nan), np.empty(n)
        targets, lam, unidentified = np.empty(n), np.empty(n), np.empty(n, bool)
        nan = float("nan")
        for i, st in enumerate(active):
            f = st.fit
            ok = f is not None and math.isfinite(f.L_int) and math.isfinite(f.K) and math.isfinite(f.alpha)
            if ok:
                K[i], alpha[i] = f.K, f.alpha
            d = st.depth
            depth[i] = d
            want = d * s.growth
            if math.isfinite(st.c_star):
                want = min(want, max(st.c_star, d + s.eval_every))
            targets[i] = min(self._cap(st), self._round_up(want))
            lam[i] = st.cost_per_step * s.seeds
            unidentified[i] = st.no_learning or not self._identified(st)
        inc = targets - depth
        cost = lam * inc
        gain = marginal_reduction(K, alpha, depth, inc)
        # Too few depths to fit, a floor the data cannot yet tell from a slow decay, or no learning
        # seen yet: the next increment is what makes the decision possible, so it runs first
        # (infinite value) as long as the budget allows; the price-of-risk test applies once the
        # fit is identified.
        gain = np.where(unidentified | ~np.isfinite(K), np.inf, gain)
        gain_l, cost_l, inc_l = gain.tolist(), cost.tolist(), inc.tolist()
        for st, g, c in zip(active, gain_l, cost_l):
            st.value_per_cost = g / c if c > 0 else nan
        picked = greedy_pick(gain, cost, self.budget_left, s.slots, eligible=inc > 0, gamma=self.gamma)
        chosen = set(int(i) for i in picked)
        left, gamma = self.budget_left, self.gamma
        for i, st in enumerate(active):
            if i in chosen:
                continue
            if inc_l[i] <= 0:
                self._stop(st, StopKind.PROBE_CAP, PROBE_CAP_WORDS)
            elif cost_l[i] > left:
                self._stop_for_budget(st)
            elif math.isfinite(gain_l[i]) and gain_l[i] <= gamma * cost_l[i]:
                self._stop(
                    st, StopKind.NOT_WORTH_ITS_COST, "the next increment removes less risk than it costs (gamma x cost)"
                )
        orders: list[ProbeOrder] = []
        for i in sorted(chosen, key=lambda i: active[i].info.id):
            orders += self._orders_for(active[i], int(targets[i]))
        return orders

    # ----- decision-aware allocation ----------------------------------------------------------
    _MAX_LOOKAHEAD = 12  # KG(*) looks at most this many growth steps ahead

    def _belief_arrays(self, states: list[CandidateState]) -> dict[str, np.ndarray]:
        """Per candidate: mean (sign-adjusted so larger is better), the pieces of its belief variance."""
        s = self.settings
        sign = 1.0 if s.mode == "max" else -1.0
        n = len(states)
        nan = float("nan")
        a: dict[str, np.ndarray] = {}
        # one pass in Python over the states, then whole arrays (a loop writing 13 arrays
        # element by element cost a tenth of a round at 10,000 candidates)
        fits = [st.fit for st in states]
        flags = [st.fit_flags if st.fit_flags[0] is f else self._fit_flags(st) for st, f in zip(states, fits)]
        usable = [fl[1] for fl in flags]
        fallback = [not u and st.seed_var_fallback > 0 for st, u in zip(states, usable)]
        a["mu"] = sign * np.fromiter((st.mu for st in states), float, n)
        # No usable decay law: the seeds' dispersion, which deeper probes of the same seeds are
        # not assumed to shrink (K = 0).
        a["L"] = np.fromiter(
            (
                f.L_int if u else st.seed_var_fallback if fb else nan
                for st, f, u, fb in zip(states, fits, usable, fallback)
            ),
            float,
            n,
        )
        a["K"] = np.fromiter((f.K if u else 0.0 if fb else nan for f, u, fb in zip(fits, usable, fallback)), float, n)
        a["alpha"] = np.fromiter(
            (f.alpha if u else 1.0 if fb else nan for f, u, fb in zip(fits, usable, fallback)), float, n
        )
        a["ok_fit"] = np.array(usable, bool).reshape(n)
        a["identified"] = np.array([fl[2] for fl in flags], bool).reshape(n)
        a["fallback"] = np.array(fallback, bool).reshape(n)
        a["no_learning"] = np.array([st.no_learning for st in states], bool).reshape(n)
        a["scale"] = np.fromiter((st.bt_scale for st in states), float, n)
        a["exponent"] = np.fromiter((st.bt_exponent for st in states), float, n)
        a["depth"] = np.fromiter((st.depth for st in states), float, n)
        a["horizon"] = np.fromiter((st.info.horizon for st in states), float, n)
        a["cap"] = np.fromiter((self._cap(st) for st in states), float, n)
        seeds = [self._seeds(st) for st in states]
        a["lam"] = np.fromiter((st.cost_per_step * k for st, k in zip(states, seeds)), float, n)
        a["seeds"] = np.fromiter(seeds, float, n)
        return a

    def _belief_variance(self, a: dict[str, np.ndarray], depth: np.ndarray) -> np.ndarray:
        """Variance of the belief about each candidate's expected final m_i after probing to `depth`.

        S seeds to depth c estimate m_i by their mean extrapolation with variance
        (L_int + K c^-alpha) / S (the floor's share of it never goes; the engine does not add
        seeds). Without a decay fit (one seed: no dispersion), the curve model's extrapolation
        error from the task's back-test, which reaches zero at the horizon. No learning seen
        yet: no belief (NaN), the decomposition says nothing about where the curve goes.
        depth broadcasts against (n,) or (n, m).
        """
        d = np.maximum(np.asarray(depth, float), 1e-9)
        extra = d.ndim - 1
        col = lambda k: a[k].reshape(a[k].shape + (1,) * extra)  # noqa: E731
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            seed_var = (col("L") + col("K") * d ** (-col("alpha"))) / col("seeds")
            ext_var = extrapolation_variance(col("scale"), col("horizon"), d, col("exponent"))
        # The seeds share the curve model's extrapolation error: seed dispersion cannot see it.
        # The two add: the seeds' own noise and the model error they share (the back-test sees
        # some of the seeds' noise too, so the sum errs on the wide side).
        # A decay law measured: its seed part, plus the extrapolation error where known. The
        # seeds' dispersion without a decay law: only with the extrapolation error beside it.
        var = np.where(
            col("ok_fit"),
            seed_var + np.where(np.isfinite(ext_var), ext_var, 0.0),
            np.where(col("fallback"), seed_var + ext_var, ext_var),
        )
        return np.where(col("no_learning"), np.nan, var)

    def _fit_flags(self, st: CandidateState) -> tuple[DecayFit | None, bool, bool]:
        """st.fit_flags for its current fit (kept until refit replaces the fit)."""
        usable = self._usable(st.fit)
        st.fit_flags = (st.fit, usable, usable and self._identified(st))
        return st.fit_flags

    def _decision_values(self, states: list[CandidateState], budget_left: float) -> dict[str, np.ndarray]:
        """p_best, KG(*) value per device-second and the increments, for every candidate."""
        s = self.settings
        a = self._belief_arrays(states)
        n = len(states)
        whole = len(states) == len(self.states)  # callers pass every state, in order
        groups = self._groups if whole else [st.info.group for st in states]
        codes = self._group_codes if whole else group_codes(groups)
        var_now = self._belief_variance(a, a["depth"])
        # enough draws for a stable 1% threshold; fewer per candidate for huge portfolios
        draws = int(np.clip(4_000_000 // max(n, 1), 128, 1024))
        # Candidates without a belief yet still need a place in the queue and a contention
        # test: a provisional one (below), used for nothing else. Each task's draws are seeded
        # by the task, so a task whose beliefs did not move keeps its probabilities (cached).
        pb = p_best_by_task(
            a["mu"],
            np.sqrt(self._provisional_variance(a, var_now, codes)),
            groups,
            s.seed,
            draws,
            self._p_best_cache,
        )
        gap = a["mu"] - best_other(a["mu"], codes)
        # KG(*): increments of 1..m growth steps, on the evaluation grid, clipped to the cap
        e = s.eval_every
        k = np.arange(1, self._MAX_LOOKAHEAD + 1, dtype=float)
        d = a["depth"][:, None]
        targets = np.minimum(a["cap"][:, None], np.ceil(np.maximum(d, 1.0) * s.growth ** k[None, :] / e) * e)
        cost = a["lam"][:, None] * (targets - d)
        feasible = (targets > d) & (cost <= budget_left)
        var_after = self._belief_variance(a, targets)
        ratio, kgv, kbest = kg_star(gap, var_now, var_after, cost, feasible)
        # What the next extension would be worth with budget to pay for it: the plan's "probe
        # more" says whether a budget-stopped candidate was still worth probing.
        if (~feasible & (targets > d)).any():
            ratio_any, _, kbest_any = kg_star(gap, var_now, var_after, cost, targets > d)
        else:
            ratio_any, kbest_any = ratio, kbest
        # No belief yet (no decay fit and no back-test, or no learning seen): the next increment
        # is what makes one possible. A fit that is not yet identified (a 4x range of depths, a
        # floor told from a slow decay) still gives a belief once the back-test's extrapolation
        # error is part of it; it competes by its value like the rest.
        unidentified = a["no_learning"] | ~np.isfinite(var_now)
        return {
            "p_best": pb,
            "ratio": ratio,
            "ratio_any": ratio_any,
            "kg": kgv,
            "k": kbest,
            "target1": targets[:, 0],
            "cost1": cost[:, 0],
            "cost_k": np.where(kbest >= 0, cost[np.arange(n), np.maximum(kbest, 0)], np.nan),
            # the best look-ahead without the budget's limit: what a larger budget would buy
            "cost_any": np.where(kbest_any >= 0, cost[np.arange(n), np.maximum(kbest_any, 0)], cost[:, 0]),
            "target_any": np.where(kbest_any >= 0, targets[np.arange(n), np.maximum(kbest_any, 0)], targets[:, 0]),
            "unidentified": unidentified,
            "var_now": var_now,
            "K": a["K"],
            "alpha": a["alpha"],
            "depth": a["depth"],
        }

    @staticmethod
    def _provisional_variance(a: dict[str, np.ndarray], var_now: np.ndarray, codes: np.ndarray) -> np.ndarray:
        """var_now, with a provisional variance for candidates that have a prediction but no
        belief (one or two evaluations, nothing back-tested yet): the variance of their task's
        current predictions. Before any curve says how far a candidate will move, it is taken
        to be as uncertain as the differences between the task's candidates, so only one far
        behind all of them falls out of contention, as successive halving drops a rung's tail."""
        out = var_now.copy()
        need = ~np.isfinite(var_now) & np.isfinite(a["mu"]) & ~a["no_learning"]
        for c in np.unique(codes[need]):
            members = (codes == c) & np.isfinite(a["mu"])
            if members.sum() >= 3:
                spread = float(np.var(a["mu"][members], ddof=1))
                if spread > 0:
                    out[need & (codes == c)] = spread
        return out

    def _decision_extensions(self) -> list[ProbeOrder]:
        """Who gets the next increment when the probes serve the per-task choice (core/decision.py).

        Every candidate takes part in its task's beliefs (stopped ones too: they are still
        choices). Out of contention: P(best in task) < contention, not probed however uncertain.
        Not yet identified (too few depths, an unidentified floor, no learning seen) and in
        contention: the next increment is what makes a belief possible, so it runs first. The
        rest compete by KG(*) value per device-second, and only while it pays at the price of
        regret gamma_decision.
        """
        s = self.settings
        states = list(self.states.values())
        if not states:
            return []
        gamma = self.gamma_decision
        left = self.budget_left
        v = self._decision_values(states, left)
        pb, ratio, unident = v["p_best"], v["ratio"], v["unidentified"]
        depth, target1, cost1 = v["depth"], v["target1"], v["cost1"]
        active = np.array([st.stop_reason is None and st.failed is None for st in states])
        capped = active & (target1 <= depth)
        out = active & ~capped & np.isfinite(pb) & (pb < s.contention)
        priority = active & ~capped & ~out & unident
        pays = active & ~capped & ~out & ~unident & (ratio > gamma)
        fits = cost1 <= left
        score = np.where(priority, np.inf, np.where(pays, ratio, -np.inf))
        # Highest value first; among the candidates without a belief (all +inf), the likeliest best.
        order = np.lexsort((np.arange(len(states)), -np.where(np.isfinite(pb), pb, 1.0), -score))
        chosen: list[int] = []
        room = left
        round_cap = left * s.round_share
        for i in order.tolist():
            if len(chosen) >= s.slots or score[i] == -np.inf:
                break
            if chosen and (left - room) + cost1[i] > round_cap:
                continue  # paced: it competes again next round
            if cost1[i] <= room:
                chosen.append(i)
                room -= cost1[i]
        with np.errstate(invalid="ignore", divide="ignore"):
            var_gain = np.where(
                np.isfinite(v["K"]),
                v["K"] * (np.maximum(depth, 1e-9) ** -v["alpha"] - np.maximum(target1, 1e-9) ** -v["alpha"]),
                np.nan,
            )
        with np.errstate(invalid="ignore", divide="ignore"):
            per_cost = np.where(cost1 > 0, var_gain / np.where(cost1 > 0, cost1, 1.0), np.nan)
        # What each candidate would want next, budget permitting. A candidate stopped for good
        # earlier keeps what it wanted then; no further probe would pay: nothing (NaN, 0); no
        # belief yet: the next increment; else the best look-ahead without the budget's limit.
        keep = ~active & np.array([st.stop_kind is not StopKind.BUDGET for st in states], bool).reshape(-1)
        nothing = capped | out | ~(unident | (v["ratio_any"] > gamma))
        wanted_cost = np.where(nothing, np.nan, np.where(unident, cost1, v["cost_any"]))
        wanted_depth = np.where(nothing, 0, np.where(unident, target1, v["target_any"]))
        # No belief yet (no learning seen, nothing to fit): the next probe is what makes the
        # decision possible, worth more than any price (+inf, as value_per_cost says it).
        probe_value = np.where(capped, 0.0, np.where(unident, np.inf, v["ratio_any"]))
        # One pass of plain assignments over Python lists (indexing numpy arrays element by
        # element, or branching per candidate, was a third of the decision at 10,000).
        for st, p, pv, vc, kp, wc, wd in zip(
            states,
            pb.tolist(),
            probe_value.tolist(),
            per_cost.tolist(),
            keep.tolist(),
            wanted_cost.tolist(),
            wanted_depth.astype(int).tolist(),
        ):
            st.p_best, st.probe_value, st.value_per_cost = p, pv, vc
            if not kp:
                st.wanted_cost_s, st.wanted_depth = wc, wd
        chosen_mask = np.zeros(len(states), bool)
        chosen_mask[chosen] = True
        priority_or_pays = priority | pays
        to_stop = np.flatnonzero(active & ~chosen_mask & (capped | out | ~fits | ~priority_or_pays))
        # Python scalars for the loop (a numpy element read costs several times a list's).
        pb_l, depth_l = pb[to_stop].tolist(), depth[to_stop].astype(int).tolist()
        capped_l, out_l, fits_l = capped[to_stop].tolist(), out[to_stop].tolist(), fits[to_stop].tolist()
        settle_l = (~priority_or_pays[to_stop]).tolist()
        kg_l, ck_l = v["kg"][to_stop].tolist(), v["cost_k"][to_stop].tolist()
        for j, i in enumerate(to_stop.tolist()):
            st = states[i]
            g = st.info.group
            if capped_l[j]:
                self._stop(st, StopKind.PROBE_CAP, PROBE_CAP_WORDS)
            elif out_l[j]:
                self._stop(
                    st,
                    StopKind.OUT_OF_CONTENTION,
                    f"out of contention: P(best in {g}) = {pb_l[j]:.2%} < {s.contention:.0%} after {depth_l[j]} steps",
                    soft=True,
                )
            elif not fits_l[j]:
                # wanted an increment the budget cannot pay (the cheapest one left does not fit)
                self._stop_for_budget(st)
            elif settle_l[j]:
                kg, ck = kg_l[j], ck_l[j]
                if math.isfinite(ck) and kg > 0:
                    why = (
                        f"contender, settled: P(best in {g}) = {pb_l[j]:.1%}; the best further probe ({ck:.3g} device-s) "
                        f"removes {kg:.2g} of expected regret, less than its cost at the price of regret ({gamma * ck:.2g})"
                    )
                else:
                    why = (
                        f"contender, settled: P(best in {g}) = {pb_l[j]:.1%}; no further probe changes the choice "
                        "(nothing left to learn within the budget and the probe cap)"
                    )
                self._stop(st, StopKind.SETTLED, why, soft=True)
            # else: it fits and is wanted but the round's slots are full; it competes again next round
        orders: list[ProbeOrder] = []
        for i in sorted(chosen, key=lambda i: states[i].info.id):
            orders += self._orders_for(states[i], int(target1[i]))
        return orders

    # ----- fitting ----------------------------------------------------------------------------
    def refit(self) -> None:
        """Refit every task's decomposition and decide who stops (deterministic).

        A task whose inputs did not change since its last refit (its members' evaluations,
        costs, seeds and back-test terms, and the price gamma) keeps what that refit computed:
        its fits are a function of those inputs alone (the bootstrap is seeded by the task's
        data, not by the round), so skipping it gives exactly what refitting it would. A task
        whose data did not change but whose price did is only re-priced (c*, regimes, stops)."""
        s = self.settings
        if s.objective == "decision":
            # Out of contention and settled are decisions about the current beliefs: revisit them.
            for st in self.states.values():
                if st.soft_stop:
                    st.stop_reason, st.stop_kind, st.soft_stop = None, None, False
        # The curve model's extrapolation error first: the predictions below carry it.
        self._update_backtests()
        groups: dict[str, list[CandidateState]] = {}
        for st in self.states.values():
            if any(st.points.values()):  # a probe whose rows were all non-finite left nothing to fit
                groups.setdefault(st.info.group, []).append(st)
        self._update_prices()
        price = _nan_safe(self.gamma)
        self.tasks_refit = 0
        for g, members in sorted(groups.items()):
            data_key = tuple((m.info.id, m.version, m.depth) for m in members)
            terms_key = (price,) + tuple(
                (
                    m.steps_run,
                    m.cost_s,
                    self._seeds(m),
                    _nan_safe(m.bt_scale),
                    _nan_safe(m.bt_exponent),
                    _nan_safe(m.gain_trust),
                )
                for m in members
            )
            done = self._task_fits.get(g)
            if done is None or done.data_key != data_key:
                done = self._fit_task(g, members, data_key)
                self._task_fits[g] = done
                self.tasks_refit += 1
            elif done.terms_key == terms_key:
                # Unchanged: restore the stops the refit itself made (revisited ones were reset).
                for m in members:
                    made = done.stops.get(m.info.id)
                    if made is not None and m.stop_reason is None and m.failed is None:
                        self._stop(m, *made)
                continue
            self._predict_task(g, members, done)
            self._decide_task(members, done)
            done.terms_key = terms_key

    def _fit_task(self, g: str, members: list[CandidateState], data_key: tuple) -> _TaskFit:
        """The task's family fit from its members' evaluations (the expensive part of a refit)."""
        s = self.settings
        curves = [m.curves() for m in members]
        lo = min(float(c.seeds[k][0][0]) for c in curves for k in c.seeds if c.seeds[k][0].size)
        hi = max(m.depth for m in members)
        steps = np.unique(np.concatenate([c.seeds[k][0] for c in curves for k in c.seeds]))
        grid = steps[(steps >= lo) & (steps <= hi)]
        if grid.size > 10:
            grid = np.unique(grid[np.round(np.geomspace(1, grid.size, 10)).astype(int) - 1])
        # Seeded by the task and its data: the same data gives the same fit in any round.
        rng_seq = np.random.SeedSequence([s.seed, zlib.crc32(g.encode()), sum(m.n_points for m in members)])
        fam = fit_family(
            curves,
            np.array([m.depth for m in members], float),
            grid,
            level=s.level,
            n_boot=s.n_boot,
            tolerance=s.tolerance,
            rng_seq=rng_seq,
        )
        seen = [v for m in members for pts in m.points.values() for v in pts.values()]
        moved = float(np.ptp(seen)) if seen else 0.0  # how far the task's curves have moved so far
        return _TaskFit(data_key, fam, moved)

    def _predict_task(self, g: str, members: list[CandidateState], done: _TaskFit) -> None:
        """Each member's predicted final and the task's static-only risk L(0)."""
        preds = np.full(len(members), np.nan)
        for k, m in enumerate(members):
            # a few seeds each: plain Python beats numpy's per-call overhead at 10,000 candidates
            finals = self._seed_finals(m)
            n = len(finals)
            mean = math.fsum(finals) / n if n else float("nan")
            m.mu = preds[k] = mean
            m.seed_var_fallback = math.fsum((f - mean) ** 2 for f in finals) / (n - 1) if n >= 2 else 0.0
        finite = preds[np.isfinite(preds)]
        # Without completed runs, the static-only risk L(0) is the spread of the family's
        # predicted finals: the error of predicting every member by the family mean.
        L0_group = float(np.var(finite, ddof=1)) if finite.size >= 3 else float("nan")
        # With completed runs of the family, L(0) is what it should be: the cross-validated
        # error of predicting a run's final from static information alone.
        done.L0_group = self._history_L0.get(g, L0_group)

    def _decide_task(self, members: list[CandidateState], done: _TaskFit) -> None:
        """Each member's fit, c*, regime and stop at today's price, from its task's fit. The
        numerics are vectorised over the task's members (one call each, not one per member)."""
        s = self.settings
        fam, L0_group = done.fam, done.L0_group
        shared = fam.shared
        done.stops = {}
        live = [k for k, m in enumerate(members) if not (m.stop_reason is not None and m.fit is not None)]
        # Settled candidates keep the fit and regime they stopped with, so the label never
        # contradicts the stop reason; their data still feeds the family.
        if not live:
            return
        ms = [members[k] for k in live]
        fits = [fam.fits[k] for k in live]
        # A member's own floor interval is wide (few seeds); the family's pooled fit is the
        # stronger evidence that a floor is really above tolerance.
        fam_lo = shared.L_int_lo if shared is not None and shared.ok else float("nan")
        U = fam.U[live]
        with np.errstate(all="ignore"):
            own_L0 = np.where(np.isfinite(U).any(1), np.nanmax(np.where(np.isfinite(U), U, -np.inf), 1), np.nan)
        L0 = np.full(len(ms), L0_group) if np.isfinite(L0_group) else own_L0
        mu = np.array([m.mu for m in ms])
        L_eval = eval_sampling_variance(mu, np.array([float(m.info.static.get(EVAL_EXAMPLES_KEY, 0.0)) for m in ms]))
        decides = np.array([self._decides_regime(f) for f in fits])
        nan = np.full(len(ms), np.nan)
        L_int, K, alpha, L_lo, c_min = (
            np.array([getattr(f, a) if d else np.nan for f, d in zip(fits, decides)])
            for a in ("L_int", "K", "alpha", "L_int_lo", "c_min")
        )
        lam = np.array([m.cost_per_step * self._seeds(m) for m in ms])
        cap = np.array([self._cap(m) for m in ms], float)
        ch = choose_depth(
            np.where(decides, L_int, 0.0),
            np.where(decides, K, 0.0),
            np.where(decides, alpha, 1.0),
            L0,
            self.gamma,
            lam,
            c_min=np.maximum(np.where(decides, c_min, 1.0), 1.0),
            horizon=cap,
        )
        c_star, J0, J_star = (np.where(decides, v, nan) for v in (ch.c_star, ch.J0, ch.J_star))
        # Regimes are decided on the training floor: the evaluation set's sampling noise is part
        # of L_int, but it is the evaluation's, not the training's. A floor the data cannot tell
        # from a slow decay, or a fit on a bound, decides neither c* nor a regime that rests on
        # the fit (the diagnostics say why); static-only risk within tolerance still settles it.
        floor = self._training_floors(L_eval, L_int)
        floor_lo = self._training_floors(L_eval, np.fmax(L_lo, fam_lo))
        regimes = classify(floor, L0, J0, J_star, self.thresholds, floor_lo)
        depth = np.array([float(m.depth) for m in ms])
        with np.errstate(invalid="ignore"):
            ext = extrapolation_variance(
                np.array([m.bt_scale for m in ms]),
                np.array([float(m.info.horizon) for m in ms]),
                depth,
                np.array([m.bt_exponent for m in ms]),
            )
            too_early = np.isfinite(ext) & (done.moved > 0) & (2 * TOO_EARLY_Z * np.sqrt(ext) > done.moved)
        for i, (m, fit) in enumerate(zip(ms, fits)):
            m.fit = fit
            m.family_L_int_lo = fam_lo
            m.L0, m.L_eval = float(L0[i]), float(L_eval[i])
            m.c_star, m.J0, m.J_star = float(c_star[i]), float(J0[i]), float(J_star[i])
            m.regime = regimes[i]
            m.no_learning = learning_not_seen(
                [pts[max(pts)] for pts in m.points.values() if pts], self._baseline[m.info.id], s.tolerance
            )
            m.too_early = bool(too_early[i])
            if m.no_learning or m.too_early:
                m.regime = Regime.UNDETERMINED
            self._stop_if_settled(m)
            if m.stop_reason is not None:
                done.stops[m.info.id] = (m.stop_kind, m.stop_reason, m.soft_stop)

    @staticmethod
    def _training_floors(L_eval: np.ndarray, L_int: np.ndarray) -> np.ndarray:
        """L_int less the evaluation set's sampling variance where both are known (arrays)."""
        known = np.isfinite(L_eval) & np.isfinite(L_int)
        return np.where(known, np.maximum(L_int - np.where(known, L_eval, 0.0), 0.0), L_int)

    def _update_backtests(self) -> None:
        """The curve model's extrapolation error per candidate (core/backtests.py), from the
        rolling-origin back-tests of its task. Each candidate's own back-test is cached until
        it has new points."""
        states = list(self.states.values())
        for st in states:
            if st.n_points and st.backtest_version != st.version:
                st.backtest = candidate_backtest(st.curves())
                st.backtest_version = st.version
        err = extrapolation_error(
            [st.info.group for st in states],
            np.array([float(st.depth) for st in states]),
            [st.backtest for st in states],
            trusted=self.settings.trusted_backtests,
        )
        for st, sc, ex, tr in zip(states, err.scale.tolist(), err.exponent.tolist(), err.gain_trust.tolist()):
            st.bt_scale, st.bt_exponent, st.gain_trust = sc, ex, tr
        if self.settings.gain_error:
            # only where a floor can apply (gain_error > 0): the rest would not read it
            gain = np.array(
                [
                    self._extrapolated_gain(st) if ge > 0 else float("nan")
                    for st, ge in zip(states, err.gain_error.tolist())
                ]
            )
            scale = scale_with_gain_error(
                np.array([st.bt_scale for st in states]),
                err.gain_error,
                np.array([st.gain_trust for st in states]),
                gain,
                np.array([float(st.depth) for st in states]),
                np.array([float(st.info.horizon) for st in states]),
                np.array([st.bt_exponent for st in states]),
            )
            for st, sc in zip(states, scale.tolist()):
                st.bt_scale = sc

    def _update_prices(self) -> None:
        """gamma (price of prediction risk) and gamma_decision (price of regret) per device-second,
        from the costs per step known now (priors until probes measure them)."""
        s = self.settings
        states = list(self.states.values())
        if not states:
            self.gamma = s.gamma or float("nan")
            self.gamma_decision = s.gamma_decision or float("nan")
            return
        lam_all = [st.cost_per_step * s.seeds for st in states]
        horizon_all = [st.info.horizon for st in states]
        self.gamma = s.gamma or s.tolerance**2 / (float(np.median(lam_all)) * float(np.median(horizon_all)))
        # Price of regret: one tolerance of regret in a task's pick is worth training every
        # candidate of the task in full (brute force, the way to remove that regret for sure).
        task_full: dict[str, float] = {}
        for st in states:
            task_full[st.info.group] = task_full.get(st.info.group, 0.0) + st.cost_per_step * st.info.horizon
        self.gamma_decision = s.gamma_decision or s.tolerance / float(np.median(list(task_full.values())))

    def _stop_for_budget(self, st: CandidateState) -> None:
        """Stop `st`: the increment it wanted does not fit what is left of the budget."""
        why = "probe budget spent"
        if st.no_learning:
            why += (
                f" with no learning seen yet: the metric is still within noise of its no-skill level "
                f"{self._baseline[st.info.id]:.3g}"
            )
        self._stop(st, StopKind.BUDGET, why)

    @staticmethod
    def _stop(st: CandidateState, kind: StopKind, why: str, soft: bool = False) -> None:
        """Stop probing `st`: the kind the plan branches on, the words the user reads. soft: a
        decision about the current beliefs, revisited at every refit."""
        st.stop_kind, st.stop_reason, st.soft_stop = kind, why, soft

    @staticmethod
    def _training_floor(st: CandidateState, L_int: float) -> float:
        """L_int less the evaluation set's sampling variance, where that is known."""
        return float(Engine._training_floors(np.float64(st.L_eval), np.float64(L_int)))

    @staticmethod
    def _seed_finals(st: CandidateState) -> list[float]:
        """Each probed seed's curve extrapolated to the horizon (cached until it has new points:
        refit and summary ask for every candidate's, and most did not move this round)."""
        Engine._fill_finals(st)
        # The extrapolated gain over the last value, as far as the task's back-tests bore such
        # gains out: a curve model that overshoots would otherwise pick its worst overshooter.
        t = st.gain_trust
        return [last + t * (f - last) if math.isfinite(f) else f for f, last in st.finals_cache[1]]

    @staticmethod
    def _fill_finals(st: CandidateState) -> None:
        """Compute st.finals_cache if `st`'s evaluations changed since it was computed."""
        if st.finals_cache[0] != st.version:
            pairs = [
                (extrapolate(stp, v, st.info.horizon), float(v[-1]))
                for stp, v in st.curves().seeds.values()
                if stp.size
            ]
            gains = [f - last for f, last in pairs if math.isfinite(f)]
            st.finals_cache = (st.version, pairs, math.fsum(gains) / len(gains) if gains else float("nan"))

    def _extrapolated_gain(self, st: CandidateState) -> float:
        """Mean over seeds of the curve model's extrapolated final less the last value seen."""
        self._fill_finals(st)
        return st.finals_cache[2]

    @staticmethod
    def _usable(fit: DecayFit | None) -> bool:
        """A decay fit that measured something: fitted, and not stopped on a parameter bound
        (alpha at its limit, K = 0 with a decay seen), which is the optimizer giving up."""
        return fit is not None and fit.ok and DIAG_AT_BOUND not in fit.diagnostics

    def _floor_settled(self, fit: DecayFit) -> bool:
        """The floor is known well enough to decide a regime: the data tell it from a slow
        decay, or its whole interval lies under the tolerance. A floor bounded below tau^2 is
        not Noise-Dominant whatever its exact value, and c* does not depend on it (docs/design.md,
        Budget-optimal probing), so not knowing it more precisely changes no decision."""
        if DIAG_FLOOR_UNIDENTIFIED not in fit.diagnostics:
            return True
        return bool(np.isfinite(fit.L_int_hi) and fit.L_int_hi <= self.thresholds.risk_tolerance)

    def _decides_regime(self, fit: DecayFit | None) -> bool:
        """A usable fit whose floor is settled (_floor_settled)."""
        return self._usable(fit) and self._floor_settled(fit)

    def _identified(self, st: CandidateState) -> bool:
        """A decay seen over at least a 4x range of depths, with a settled floor."""
        f = st.fit
        return self._decides_regime(f) and f.c_max >= 4 * f.c_min

    def _regime_words(self, st: CandidateState) -> str:
        """Why `st` has its regime, in words (for the stop reasons that name the regime)."""
        why = (
            explain(st.regime, self._training_floor(st, st.fit.L_int), st.L0, st.J0, st.J_star, self.thresholds)
            if st.fit
            else ""
        )
        if st.too_early:
            why = (
                "too early to tell: the curve model's back-tested extrapolation error from this depth is wider than "
                "everything the task's curves have moved so far"
            )
        if st.regime is Regime.NOISE_DOMINANT and math.isfinite(st.L_eval):
            why += f" (evaluation-set noise sqrt(L_eval)={math.sqrt(st.L_eval):.3g} already taken out)"
        if st.regime is Regime.UNDETERMINED and st.fit is not None and st.fit.ok:
            unknown = [DIAGNOSTIC_HELP[DIAG_AT_BOUND]] if DIAG_AT_BOUND in st.fit.diagnostics else []
            if not self._floor_settled(st.fit):
                unknown.append(DIAGNOSTIC_HELP[DIAG_FLOOR_UNIDENTIFIED])
            why = "; ".join(unknown) or why
        return why

    def _stop_if_settled(self, st: CandidateState) -> None:
        if st.stop_reason is not None or st.failed is not None:
            return
        static_settled = math.isfinite(st.L0) and st.L0 <= self.thresholds.risk_tolerance
        # A decay seen over less than a 4x range of depths, or one whose floor the data cannot
        # tell from a slow decay, cannot settle anything yet: keep probing if the budget allows.
        if st.no_learning:
            if st.depth >= self._cap(st):
                self._stop(
                    st,
                    StopKind.PROBE_CAP,
                    f"reached the probe cap with no learning seen: the metric is still "
                    f"within noise of its no-skill level {self._baseline[st.info.id]:.3g}",
                )
            return
        if self.settings.objective == "decision":
            # The decision rule (_decision_extensions) stops the rest, with reasons it revisits.
            if st.depth >= self._cap(st):
                self._stop(st, StopKind.PROBE_CAP, PROBE_CAP_WORDS)
            elif static_settled:
                # The task's predicted finals spread less than the tolerance (L(0) <= tau^2): any
                # pick is within what the user said a wrong prediction may cost. Revisited every
                # round, since L(0) moves with the predictions.
                # The words are the task's, not the candidate's regime: its own decay may still
                # be unidentified, which does not matter once any pick is within tolerance.
                self._stop(
                    st,
                    StopKind.STATIC_SUFFICIENT,
                    f"task within tolerance: static-only risk sqrt(L0)={math.sqrt(max(st.L0, 0.0)):.3g} is within tolerance "
                    f"{self.settings.tolerance:g}: the task's predicted finals are all within tolerance of each other",
                    soft=True,
                )
            return
        if not self._identified(st) and not static_settled:
            if st.depth >= self._cap(st):
                self._stop(
                    st, StopKind.PROBE_CAP, f"reached the probe cap; {st.regime.value}: {self._regime_words(st)}"
                )
            return
        if st.regime is Regime.NOISE_DOMINANT:
            # Writing a candidate off needs the floor's lower bound above tolerance: early on, a
            # slow decay and a floor look alike and the point estimate of L_int runs high.
            self._stop(st, StopKind.NOISE_DOMINANT, f"Noise-Dominant: {self._regime_words(st)}")
        elif st.regime is Regime.STATIC_SUFFICIENT:
            self._stop(st, StopKind.STATIC_SUFFICIENT, f"Static-Sufficient: {self._regime_words(st)}")
        elif st.depth >= self._cap(st):
            self._stop(st, StopKind.PROBE_CAP, PROBE_CAP_WORDS)
        elif math.isfinite(st.c_star) and st.depth >= st.c_star:
            self._stop(st, StopKind.OPTIMAL_DEPTH, f"reached its budget-optimal depth c*={st.c_star:.0f}")

    # ----- results ----------------------------------------------------------------------------
    def _predict(self, st: CandidateState) -> tuple[float, float]:
        per_seed = self._seed_finals(st)
        mean = float(np.mean(per_seed)) if per_seed else float("nan")
        if st.no_learning:
            # No learning seen yet: the decomposition says nothing about where the curve goes
            # once it starts, so there is no honest interval (the plan then asks for more probes).
            return mean, float("nan")
        n = len(per_seed)
        if not self._usable(st.fit) and not (st.backtest is not None and st.backtest.errors):
            # Neither a decay law nor a back-test of its own (one or two evaluations): nothing
            # says how this curve goes on. The task's back-tests come from the candidates probed
            # deeper, chosen for looking best early, which are not this one's curve.
            return mean, float("nan")
        var = predictive_variance(st.fit, st.depth, n) if self._usable(st.fit) else float("nan")
        # The seeds share the curve model's extrapolation error, which their dispersion cannot
        # see: it adds. With one seed it is all there is. Unknown (nothing to back-test yet)
        # and no usable decay fit: no interval.
        ext = float(extrapolation_variance(st.bt_scale, st.info.horizon, st.depth, st.bt_exponent))
        if np.isfinite(ext):
            if not np.isfinite(var) and n >= 2:
                # Seeds without a usable decay fit (fewer than three depths, or a fit on a
                # bound): their own dispersion.
                var = (1 + 1 / n) * float(np.var(per_seed, ddof=1))
            var = ext + (var if np.isfinite(var) else 0.0)
        return mean, float(np.sqrt(var)) if np.isfinite(var) else float("nan")

    def _history_predictions(self) -> dict[str, tuple[float, float]]:
        """Population-model predictions (mean, std) of the members of families with history."""
        out: dict[str, tuple[float, float]] = {}
        for g, hp in self._history.items():
            members = [st for st in self.states.values() if st.info.group == g]
            curves = []
            for st in members:
                cc = st.curves()
                static = np.array([float(st.info.static.get(k, float("nan"))) for k in self._static_names], float)
                curves.append(CandidateCurves(cc.candidate, cc.group, cc.horizon, float("nan"), static, cc.seeds))
            mean, std = hp.predict(curves, np.array([float(st.depth) for st in members]))
            for st, m, sd in zip(members, mean, std):
                out[st.info.id] = (float(m), float(sd))
        return out

    @property
    def finished(self) -> bool:
        return not self._open and all(
            st.stop_reason is not None or st.failed is not None for st in self.states.values()
        )

    # ----- read-only views for callers (the driver, the Tune scheduler): never `states` itself ---
    def points_of(self, candidate: str) -> dict[int, dict[int, float]]:
        """A copy of the evaluations told about `candidate` (seed -> step -> value): the caller
        may keep it or send it to another process without reaching into the engine's state."""
        return {s: dict(p) for s, p in self.states[candidate].points.items()}

    def settled(self) -> set[str]:
        """Candidates that are not probed any further as things stand (stopped or failed)."""
        return {cid for cid, st in self.states.items() if st.stop_reason is not None or st.failed is not None}

    def may_order_again(self, candidate: str) -> bool:
        """Could a later round still order `candidate`? Not after a failure or a stop for good;
        yes while it is active or its stop is a decision about beliefs that every refit revisits."""
        st = self.states[candidate]
        return st.failed is None and (st.stop_reason is None or st.soft_stop)

    def summary(self) -> list[dict]:
        """One flat row per candidate (CandidateSummary.as_row): what the plan and tables store."""
        return [c.as_row() for c in self.summaries()]

    def summaries(self) -> list[CandidateSummary]:
        """Per candidate: prediction, interval, decomposition, cost and why it stopped."""
        from scipy.stats import norm

        z = float(norm.ppf(0.5 + self.settings.level / 2))
        pop = self._history_predictions()
        states = list(self.states.values())
        if self.settings.objective == "prediction" and states:
            # The decision quantities are not what this objective allocates by; report them anyway.
            v = self._decision_values(states, self.budget_left)
            decision = {st.info.id: (float(v["p_best"][i]), float(v["ratio"][i])) for i, st in enumerate(states)}
        else:
            decision = {st.info.id: (st.p_best, st.probe_value) for st in states}
        out = []
        nan = float("nan")
        for st in states:
            mean, sd = self._predict(st)
            predictor = "probes"
            if st.info.id in pop and all(math.isfinite(v) for v in pop[st.info.id]):
                (mean, sd), predictor = pop[st.info.id], "history"
            f = st.fit
            out.append(
                CandidateSummary(
                    candidate=st.info.id,
                    group=st.info.group,
                    regime=st.regime,
                    predicted_final=mean,
                    predicted_std=sd,
                    predictor=predictor,
                    lower=mean - z * sd,
                    upper=mean + z * sd,
                    probe_steps=int(st.depth),
                    probe_cost_s=st.cost_s,
                    cost_per_step_s=st.cost_per_step,
                    L_int=f.L_int if f else nan,
                    too_early=st.too_early,
                    L_eval=st.L_eval,
                    K=f.K if f else nan,
                    alpha=f.alpha if f else nan,
                    L0=st.L0,
                    c_star=st.c_star,
                    J0=st.J0,
                    J_star=st.J_star,
                    value_per_cost=st.value_per_cost,
                    p_best=decision[st.info.id][0],
                    probe_value=decision[st.info.id][1],
                    wanted_cost_s=st.wanted_cost_s,
                    wanted_depth=st.wanted_depth,
                    diagnostics=(tuple(f.diagnostics) if f else ()) + ((TOO_EARLY,) if st.too_early else ()),
                    stop_reason=st.stop_reason or "",
                    stop_kind=st.stop_kind,
                    no_learning=bool(st.no_learning),
                )
            )
        return out
