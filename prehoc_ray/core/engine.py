"""The ask/tell allocation engine: which probe to run next, and when to stop.

The engine never runs anything: the execution layer (Ray) or a simulated backend asks it for
the next round of probe orders, runs them, and tells it the results. Decisions are made in
rounds, and a round's orders depend only on the results of earlier rounds, never on the order
in which results arrived. That is what makes a resumed run reach the same decisions as an
uninterrupted one: a fresh engine replays the rounds, the driver answers every order that
the result store already holds from the store, and only the rest is run.

Per round:
1. Candidates not yet at the initial depth get their initial probe (every seed).
2. Every candidate is refitted: seed dispersion U(c), the family's shared alpha, member floors
   shrunk toward the family, the budget-optimal depth c* with the measured cost per step.
3. Stop, with a reason, candidates that are Noise-Dominant, Static-Sufficient, at c*, or at
   the probe cap; the others compete for the budget by marginal variance reduction per unit
   cost (greedy, `slots` at a time), each extended toward min(growth x depth, c*, cap).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from prehoc_ray.core.allocation import greedy_pick, marginal_reduction
from prehoc_ray.core.budget import choose_depth
from prehoc_ray.core.curves import extrapolate
from prehoc_ray.core.decay import DecayFit, predictive_variance
from prehoc_ray.core.family import fit_family
from prehoc_ray.core.learning import learning_not_seen, no_skill_level
from prehoc_ray.core.observations import CandidateCurves, Observations
from prehoc_ray.core.population import HistoryPredictor, population_risk
from prehoc_ray.core.regimes import RegimeThresholds, classify, explain
from prehoc_ray.types import Regime


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

    def __post_init__(self) -> None:
        checks = {
            "budget": self.budget >= 0,
            "seeds": self.seeds >= 2,
            "eval_every": self.eval_every >= 1,
            "initial_depth": self.initial_depth >= 3 * self.eval_every,
            "growth": self.growth > 1,
            "max_depth_fraction": 0 < self.max_depth_fraction <= 1,
            "tolerance": self.tolerance > 0,
            "slots": self.slots >= 1,
            "prior_cost_margin": self.prior_cost_margin >= 1,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(
                f"invalid engine setting(s): {', '.join(bad)} (budget >= 0, seeds >= 2, initial_depth >= 3 x eval_every, "
                "growth > 1, 0 < max_depth_fraction <= 1, tolerance > 0, slots >= 1, prior_cost_margin >= 1)"
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


@dataclass
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
    stop_reason: str | None = None
    value_per_cost: float = float("nan")  # marginal risk reduction per device-second of the next step
    family_L_int_lo: float = float("nan")  # the pooled family fit's floor lower bound
    no_learning: bool = False  # the metric has not yet left its no-skill level (see no_skill_level)

    @property
    def depth(self) -> int:
        """The depth every seed has reached (a probe increment moves all seeds together)."""
        if not self.reached:
            return 0
        return min(self.reached.get(s, 0) for s in self.reached)

    @property
    def cost_per_step(self) -> float:
        """Measured device-seconds per step of one seed; the prior until something ran."""
        return self.cost_s / self.steps_run if self.steps_run > 0 else self.info.prior_cost_per_step

    def curves(self) -> CandidateCurves:
        seeds = {}
        for s, pts in sorted(self.points.items()):
            st = np.array(sorted(pts), float)
            seeds[s] = (st, np.array([pts[int(k)] for k in st], float))
        return CandidateCurves(self.info.id, self.info.group, self.info.horizon, float("nan"), np.zeros(0), seeds)


class Engine:
    """Deterministic given the candidates, the settings and the results it is told."""

    def __init__(self, candidates: list[CandidateInfo], settings: EngineSettings, history: Observations | None = None) -> None:
        """history: completed runs of the candidates' families (group = family, with `final`),
        as `prehoc-ray analyze` reads them. Families with at least MIN_POPULATION finals get
        their predictions and intervals from a population model trained on them (DESIGN.md:
        population risk) instead of from the probes' own decomposition, and their static-only
        risk L(0) (which decides Static-Sufficient and the cost of not probing, J(0)) from its
        cross-validated error. U(c) is still measured by seed dispersion."""
        ids = [c.id for c in candidates]
        if len(set(ids)) != len(ids):
            dup = sorted({i for i in ids if ids.count(i) > 1})
            raise ValueError(f"duplicate candidate id(s): {', '.join(dup)}")
        self.settings = settings
        self.thresholds = RegimeThresholds(settings.tolerance)
        self.states = {c.id: CandidateState(c) for c in sorted(candidates, key=lambda c: c.id)}
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
        self.history: list[dict] = []  # per finished probe: round, candidate, cost, cumulative spend

    # ----- tell -------------------------------------------------------------------------------
    def tell(self, order: ProbeOrder, rows: list[dict], cost_s: float) -> None:
        """A finished probe: its evaluation rows (step, value) and its measured device-seconds."""
        st = self.states[order.candidate]
        pts = st.points.setdefault(order.seed, {})
        for r in rows:
            step = int(r["step"])
            if order.start_step < step <= order.target_step and math.isfinite(float(r["value"])):
                pts[step] = float(r["value"])
        st.reached[order.seed] = max(st.reached.get(order.seed, 0), order.target_step)
        st.cost_s += float(cost_s)
        st.steps_run += order.target_step - order.start_step
        self.spent += float(cost_s)
        self._open.pop(order.probe_id, None)
        self.history.append({"round": order.round, "candidate": order.candidate, "probe_id": order.probe_id,
                             "cost_s": float(cost_s), "spent_s": self.spent})

    def tell_failure(self, order: ProbeOrder, reason: str, cost_s: float = 0.0) -> None:
        """A probe that failed for good (after the driver's retries): the candidate stops."""
        st = self.states[order.candidate]
        st.failed = reason
        st.stop_reason = f"probe failed: {reason}"
        st.cost_s += float(cost_s)
        self.spent += float(cost_s)
        self._open.pop(order.probe_id, None)

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
        fresh = [st for st in self.states.values()
                 if st.failed is None and st.stop_reason is None and st.depth < s.initial_depth]
        # A family whose past runs say static information already predicts a final within
        # tolerance (L(0) <= tau^2 by the history's cross-validated error) needs no probe at
        # all: its members are settled before the first one is bought.
        for st in fresh:
            L0 = self._history_L0.get(st.info.group, float("nan"))
            if st.depth == 0 and math.isfinite(L0) and L0 <= self.thresholds.risk_tolerance:
                st.L0, st.regime = L0, Regime.STATIC_SUFFICIENT
                st.stop_reason = (f"Static-Sufficient from past runs: "
                                  f"{explain(Regime.STATIC_SUFFICIENT, float('nan'), L0, float('nan'), float('nan'), self.thresholds)}"
                                  "; no probe needed")
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
        # The planned cost is accumulated order by order, the same float additions in the same
        # order as summing the list afresh for every candidate (which is quadratic: minutes for
        # 10,000 candidates).
        planned = 0.0  # estimated cost of this round's orders
        cautious = 0.0  # the same with guessed costs times the margin
        factor = self._prior_calibration()
        for st in fresh:
            est = self._cost_per_step_estimate(st, factor) * (s.initial_depth - st.depth) * s.seeds
            if est > self.budget_left - planned:
                st.stop_reason = "probe budget spent before the initial probe"
                continue
            # Nothing measured yet and the cost a guess: plan with a margin, and defer (not stop)
            # what does not fit it; the next round has measured costs to decide with. The first
            # order of a round always runs if it fits at all, so there is something to measure.
            guessed = factor is None and st.steps_run == 0 and not st.info.prior_cost_exact
            margin = s.prior_cost_margin if guessed else 1.0
            if orders and margin * est > self.budget_left - cautious:
                continue
            new = self._orders_for(st, s.initial_depth)
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

    def _order_cost(self, o: ProbeOrder, factor: float | None = None) -> float:
        return self._cost_per_step_estimate(self.states[o.candidate], factor) * (o.target_step - o.start_step)

    def _prior_calibration(self) -> float | None:
        """Median of measured / prior cost over the candidates that ran: how far off the guesses
        are on this cluster (slower devices, loading overhead). None before anything ran."""
        ratios = [st.cost_per_step / st.info.prior_cost_per_step for st in self.states.values()
                  if st.steps_run > 0 and st.info.prior_cost_per_step > 0 and not st.info.prior_cost_exact]
        return float(np.median(ratios)) if ratios else None

    @staticmethod
    def _cost_per_step_estimate(st: CandidateState, factor: float | None) -> float:
        """Measured cost per step; else the prior, scaled by the calibration when it is a guess."""
        if st.steps_run > 0 or st.info.prior_cost_exact or factor is None:
            return st.cost_per_step
        return st.info.prior_cost_per_step * factor

    def _orders_for(self, st: CandidateState, target: int) -> list[ProbeOrder]:
        out = []
        for seed in range(self.settings.seeds):
            start = st.reached.get(seed, 0)
            if start < target:
                pid = f"r{self.round:04d}|{st.info.id}|s{seed}|{start}-{target}"
                out.append(ProbeOrder(pid, self.round, st.info.id, seed, start, target))
        return out

    def _cap(self, st: CandidateState) -> int:
        s = self.settings
        cap = int(st.info.horizon * s.max_depth_fraction)
        return max(s.eval_every, cap - cap % s.eval_every)

    def _round_up(self, c: float) -> int:
        e = self.settings.eval_every
        return int(math.ceil(c / e) * e)

    def _extensions(self) -> list[ProbeOrder]:
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
            # the same test as _identified(st)
            unidentified[i] = st.no_learning or not (ok and f.c_max >= 4 * f.c_min and "floor_unidentified" not in f.diagnostics)
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
                st.stop_reason = "reached the probe cap (max_depth_fraction of the full run)"
            elif cost_l[i] > left:
                st.stop_reason = "probe budget spent" + (
                    f" with no learning seen yet: the metric is still within noise of its no-skill level "
                    f"{self._baseline[st.info.id]:.3g}" if st.no_learning else "")
            elif math.isfinite(gain_l[i]) and gain_l[i] <= gamma * cost_l[i]:
                st.stop_reason = "the next increment removes less risk than it costs (gamma x cost)"
        orders: list[ProbeOrder] = []
        for i in sorted(chosen, key=lambda i: active[i].info.id):
            orders += self._orders_for(active[i], int(targets[i]))
        return orders

    # ----- fitting ----------------------------------------------------------------------------
    def refit(self) -> None:
        """Refit every candidate's decomposition and decide who stops (deterministic)."""
        s = self.settings
        rng_seq = np.random.SeedSequence([s.seed, self.round])
        groups: dict[str, list[CandidateState]] = {}
        for st in self.states.values():
            if st.points:
                groups.setdefault(st.info.group, []).append(st)
        lam_all = [st.cost_per_step * s.seeds for st in self.states.values()]
        horizon_all = [st.info.horizon for st in self.states.values()]
        gamma = s.gamma or s.tolerance**2 / (float(np.median(lam_all)) * float(np.median(horizon_all)))
        self.gamma = gamma
        for g, members in sorted(groups.items()):
            curves = [m.curves() for m in members]
            lo = min(float(c.seeds[k][0][0]) for c in curves for k in c.seeds if c.seeds[k][0].size)
            hi = max(m.depth for m in members)
            steps = np.unique(np.concatenate([c.seeds[k][0] for c in curves for k in c.seeds]))
            grid = steps[(steps >= lo) & (steps <= hi)]
            if grid.size > 10:
                grid = np.unique(grid[np.round(np.geomspace(1, grid.size, 10)).astype(int) - 1])
            fam = fit_family(curves, np.array([m.depth for m in members], float), grid, level=s.level,
                             n_boot=s.n_boot, tolerance=s.tolerance, rng_seq=rng_seq)
            Us, shared, fits = fam.U, fam.shared, fam.fits
            preds = np.array([self._predict(m)[0] for m in members])
            finite = preds[np.isfinite(preds)]
            # Without completed runs, the static-only risk L(0) is the spread of the family's
            # predicted finals: the error of predicting every member by the family mean.
            L0_group = float(np.var(finite, ddof=1)) if finite.size >= 3 else float("nan")
            # With completed runs of the family, L(0) is what it should be: the cross-validated
            # error of predicting a run's final from static information alone.
            L0_group = self._history_L0.get(g, L0_group)
            for m, fit, U in zip(members, fits, Us):
                if m.stop_reason is not None and m.fit is not None:
                    # Settled candidates keep the fit and regime they stopped with, so the
                    # label never contradicts the stop reason; their data still feeds the family.
                    continue
                m.fit = fit
                # A member's own floor interval is wide (few seeds); the family's pooled fit is
                # the stronger evidence that a floor is really above tolerance.
                m.family_L_int_lo = shared.L_int_lo if shared is not None and shared.ok else float("nan")
                m.L0 = L0_group if np.isfinite(L0_group) else float(np.nanmax(U)) if np.isfinite(U).any() else float("nan")
                if fit.ok:
                    ch = choose_depth(fit.L_int, fit.K, fit.alpha, m.L0, gamma, m.cost_per_step * s.seeds,
                                      c_min=max(fit.c_min, 1.0), horizon=self._cap(m))
                    m.c_star, m.J0, m.J_star = float(ch.c_star), float(ch.J0), float(ch.J_star)
                m.regime = Regime(classify(fit.L_int, m.L0, m.J0, m.J_star, self.thresholds, np.fmax(fit.L_int_lo, m.family_L_int_lo)).item())
                m.no_learning = learning_not_seen(
                    [pts[max(pts)] for pts in m.points.values() if pts], self._baseline[m.info.id], s.tolerance)
                if m.no_learning:
                    m.regime = Regime.UNDETERMINED
                self._stop_if_settled(m)

    @staticmethod
    def _identified(st: CandidateState) -> bool:
        """A decay seen over at least a 4x range of depths, with a floor the data can tell apart."""
        f = st.fit
        return f is not None and f.ok and f.c_max >= 4 * f.c_min and "floor_unidentified" not in f.diagnostics

    def _stop_if_settled(self, st: CandidateState) -> None:
        if st.stop_reason is not None or st.failed is not None:
            return
        why = explain(st.regime, st.fit.L_int, st.L0, st.J0, st.J_star, self.thresholds) if st.fit else ""
        static_settled = np.isfinite(st.L0) and st.L0 <= self.thresholds.risk_tolerance
        # A decay seen over less than a 4x range of depths, or one whose floor the data cannot
        # tell from a slow decay, cannot settle anything yet: keep probing if the budget allows.
        if st.no_learning:
            if st.depth >= self._cap(st):
                st.stop_reason = (f"reached the probe cap with no learning seen: the metric is still within noise of its "
                                  f"no-skill level {self._baseline[st.info.id]:.3g}")
            return
        if not self._identified(st) and not static_settled:
            if st.depth >= self._cap(st):
                st.stop_reason = f"reached the probe cap; {st.regime.value}: {why}"
            return
        if st.regime is Regime.NOISE_DOMINANT:
            # Writing a candidate off needs the floor's lower bound above tolerance: early on, a
            # slow decay and a floor look alike and the point estimate of L_int runs high.
            st.stop_reason = f"Noise-Dominant: {why}"
        elif st.regime is Regime.STATIC_SUFFICIENT:
            st.stop_reason = f"Static-Sufficient: {why}"
        elif st.depth >= self._cap(st):
            st.stop_reason = "reached the probe cap (max_depth_fraction of the full run)"
        elif np.isfinite(st.c_star) and st.depth >= st.c_star:
            st.stop_reason = f"reached its budget-optimal depth c*={st.c_star:.0f}"

    # ----- results ----------------------------------------------------------------------------
    def _predict(self, st: CandidateState) -> tuple[float, float]:
        cc = st.curves()
        per_seed = [extrapolate(stp, v, cc.horizon) for stp, v in cc.seeds.values() if stp.size]
        mean = float(np.mean(per_seed)) if per_seed else float("nan")
        if st.no_learning:
            # No learning seen yet: the decomposition says nothing about where the curve goes
            # once it starts, so there is no honest interval (the plan then asks for more probes).
            return mean, float("nan")
        var = predictive_variance(st.fit, st.depth, len(per_seed)) if st.fit is not None and st.fit.ok else float("nan")
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
        return not self._open and all(st.stop_reason is not None or st.failed is not None for st in self.states.values())

    def summary(self) -> list[dict]:
        """One row per candidate: prediction, interval, decomposition, cost and why it stopped."""
        from scipy.stats import norm

        z = float(norm.ppf(0.5 + self.settings.level / 2))
        pop = self._history_predictions()
        rows = []
        for st in self.states.values():
            mean, sd = self._predict(st)
            predictor = "probes"
            if st.info.id in pop and all(math.isfinite(v) for v in pop[st.info.id]):
                (mean, sd), predictor = pop[st.info.id], "history"
            f = st.fit
            rows.append({
                "candidate": st.info.id,
                "group": st.info.group,
                "regime": st.regime.value,
                "predicted_final": mean,
                "predicted_std": sd,
                "predictor": predictor,
                "lower": mean - z * sd,
                "upper": mean + z * sd,
                "probe_steps": int(st.depth),
                "probe_cost_s": st.cost_s,
                "cost_per_step_s": st.cost_per_step,
                "L_int": f.L_int if f else float("nan"),
                "K": f.K if f else float("nan"),
                "alpha": f.alpha if f else float("nan"),
                "L0": st.L0,
                "c_star": st.c_star,
                "J0": st.J0,
                "J_star": st.J_star,
                "value_per_cost": st.value_per_cost,
                "diagnostics": ";".join(f.diagnostics) if f else "",
                "stop_reason": st.stop_reason or "",
            })
        return rows
