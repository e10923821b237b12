"""The portfolio plan: which full fine-tunes to run, from predictions, intervals, regimes, costs.

Pure decision logic (numpy + scipy, no I/O). The input is one row per candidate (what
Engine.summary() gives, plus task, full_cost_s and gamma); the output is a decision per
candidate with a one-line reason, and the plan's totals.

Decision rules (mode "max": a larger metric is better; "min" mirrors every inequality):

1. The full run's outcome R ~ Normal(predicted_final, sd), with sd = max(predicted_std,
   sqrt(L_int)): a full run carries its own intrinsic noise, so no candidate is treated as
   surer than its floor allows.
2. Risk-adjusted score = the one-sided bound at the plan's confidence q: mean - z_q sd
   (mode max) or mean + z_q sd (mode min). A wide interval lowers the score: a
   Noise-Dominant candidate's width is a risk, never a bonus (an upper bound would reward it).
3. Eligibility, per task:
   - with a baseline b: P(R beats b) >= q. Under the Normal this is the same as "the
     risk-adjusted score beats b", so eligibility and ranking use one number.
   - without a baseline there is no bar to clear: every candidate with a prediction is
     acceptable and the best by risk-adjusted score is preferred (the user asked for one
     model per task; the reason states how sure it is to beat the runner-up,
     P(R_best > R_second) with independent Normals).
   Candidates without a finite prediction or interval are never eligible.
4. At most one run per task: the eligible candidate with the best risk-adjusted score.
5. Full fine-tune budget (budget.full_finetune_seconds, None = no cap): the per-task picks
   are chosen to maximise, in this order, (a) the total risk-adjusted margin over the
   baselines (metric units), (b) the number of tasks funded, (c) a lower total cost.
   Tasks without a baseline have no margin, so they are funded after every task with one,
   as many as fit. Exact at any number of tasks (0-1 integer programs, scipy.optimize.milp).
   A task whose pick did not fit then takes its next eligible candidate that
   fits what is left (greedy, highest margin per second first). A candidate whose full-run
   cost is unknown cannot be fitted under a cap.
6. Decisions:
   - run: picked and funded.
   - probe more: not run, its probing stopped because the probe budget ran out while one
     more probe was still worth its price (value_per_cost > gamma, or the initial probe never
     ran), and the answer could still change: its optimistic bound (the other side of the
     interval) reaches the bar (the baseline, or the task's chosen candidate's risk-adjusted
     score). A candidate the engine wrote off as Noise-Dominant ("do not buy probes") never
     qualifies: its stop reason is the floor, not the budget, and a confirmed floor leaves
     value_per_cost under gamma. A Noise-Dominant label on a budget-stopped candidate is
     provisional (the engine was still probing it) and the reason says so.
   - skip: everything else, with the reason (failed probe, no prediction, below the bar, a
     better candidate in the task, over budget).
7. Totals: recommended = sum of full_cost_s of the runs; all = sum of full_cost_s of every
   candidate (running everything); probe spend = sum of probe_cost_s; undecided = sum of
   full_cost_s of the "probe more" candidates (not decided: they may still have to run, so
   their cost is not saved); saving = all - (recommended + undecided + probe spend), and 0
   when that is negative or nothing was decided: a plan claims only what its decisions saved.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.stats import norm

from prehoc_ray.types import StopKind

RUN = "run"
SKIP = "skip"
PROBE_MORE = "probe more"
DECISIONS = (RUN, SKIP, PROBE_MORE)

NOISE_DOMINANT = "Noise-Dominant"


@dataclass(frozen=True)
class PlanSettings:
    mode: str = "max"  # is a larger metric better?
    confidence: float = 0.8  # required P(beats baseline)
    baselines: Mapping[str, float] = field(default_factory=dict)  # task -> score to beat
    full_budget_s: float | None = None  # device-seconds for the recommended full runs; None: no cap

    def __post_init__(self) -> None:
        if self.mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {self.mode!r}")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must be in (0, 1), got {self.confidence}")
        if self.full_budget_s is not None and not self.full_budget_s > 0:
            raise ValueError(f"full_budget_s must be > 0 or None, got {self.full_budget_s}")
        bad = [t for t, b in self.baselines.items() if not math.isfinite(float(b))]
        if bad:
            raise ValueError(f"baselines: non-finite value for task(s) {', '.join(sorted(bad))}")


@dataclass(frozen=True)
class Decision:
    candidate: str
    task: str
    decision: str
    reason: str
    score: float  # risk-adjusted score (metric units); NaN without a prediction
    p_beat: float  # P(beats the baseline), or P(beats the runner-up) without one; NaN if unknown
    bar: float  # the baseline, NaN without one
    full_cost_s: float


@dataclass(frozen=True)
class Plan:
    decisions: list[Decision]  # in input order
    recommended_cost_s: float
    all_cost_s: float
    probe_spend_s: float
    saving_s: float
    full_budget_s: float | None
    runs: dict[str, str]  # task -> candidate recommended (tasks with none are absent)
    undecided_s: float = 0.0  # full-run cost of the "probe more" candidates (not counted as saved)
    # the probe budget the "probe more" candidates' next probing would take (the engine's estimate)
    to_settle_s: float = 0.0

    @property
    def saving_fraction(self) -> float:
        return self.saving_s / self.all_cost_s if self.all_cost_s > 0 else float("nan")

    def totals(self) -> dict[str, Any]:
        counts = {d: sum(x.decision == d for x in self.decisions) for d in DECISIONS}
        return {
            "recommended_full_cost_s": self.recommended_cost_s,
            "all_full_cost_s": self.all_cost_s,
            "probe_spend_s": self.probe_spend_s,
            "undecided_full_cost_s": self.undecided_s,
            "probe_budget_to_settle_s": self.to_settle_s,
            "saving_s": self.saving_s,
            "saving_fraction": self.saving_fraction,
            "full_finetune_budget_s": self.full_budget_s,
            "n_candidates": len(self.decisions),
            "n_run": counts[RUN],
            "n_skip": counts[SKIP],
            "n_probe_more": counts[PROBE_MORE],
            "runs": dict(self.runs),
        }


def _f(row: Mapping[str, Any], key: str) -> float:
    v = row.get(key)
    try:
        return float(v) if v is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def _fmt(x: float) -> str:
    return f"{x:.4g}" if math.isfinite(x) else "n/a"


def _fmt_s(x: float) -> str:
    return f"{x:,.0f} s" if math.isfinite(x) else "unknown"


def knapsack(values: np.ndarray, costs: np.ndarray, budget: float) -> np.ndarray:
    """Indices of items maximising (sum of values, number of items, -cost) within `budget`.

    Exact at any size: three 0-1 integer programs in turn (scipy.optimize.milp, HiGHS), each
    keeping the optimum of the one before (the most value; among those, the most items; among
    those, the cheapest). Items with a non-finite cost or value never fit.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp

    values = np.asarray(values, float)
    costs = np.asarray(costs, float)
    ok = np.isfinite(costs) & (costs <= budget + 1e-9) & np.isfinite(values)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return np.zeros(0, int)
    v, c, m = values[idx], costs[idx], idx.size
    ones = np.ones(m)
    rows = [LinearConstraint(c[None, :], -np.inf, budget + 1e-9)]

    def best(objective: np.ndarray) -> np.ndarray:  # x = 0 is always feasible: milp finds one
        return np.round(milp(objective, constraints=rows, integrality=ones, bounds=Bounds(0, 1)).x)

    x = best(-v)  # the most value
    top = float(v @ x)
    rows.append(LinearConstraint(v[None, :], top - 1e-9 * max(1.0, abs(top)), np.inf))
    x = best(-ones)  # among those, the most items
    rows.append(LinearConstraint(ones[None, :], float(ones @ x) - 0.5, np.inf))
    x = best(c)  # among those, the cheapest
    return np.sort(idx[x > 0.5])


def make_plan(rows: Sequence[Mapping[str, Any]], settings: PlanSettings) -> Plan:
    """Decide, for every candidate row, run / skip / probe more (see the module docstring).

    Each row needs candidate and task; uses predicted_final, predicted_std, L_int, regime,
    full_cost_s, probe_cost_s, stop_kind (a StopKind value: the rules branch on it), stop_reason
    (the words, quoted in reasons), no_learning, value_per_cost (probe_value when the row's objective
    is "decision": expected regret reduction per device-second) and gamma (the objective's
    price) when present.
    """
    c = _score_rows(rows, settings)
    el = _eligibility(c, settings)
    fu = _fund(c, el, settings.full_budget_s)
    decisions = [_decide(i, c, el, fu, settings) for i in range(len(rows))]

    cost, wanted_cost = c.cost, c.wanted_cost
    all_cost = float(np.nansum(cost))
    probe_spend = float(np.nansum(c.probe_cost))
    runs = {t: c.cand[i] for t, i in sorted(fu.chosen.items())}
    undecided = float(np.nansum([cost[i] for i, d in enumerate(decisions) if d.decision == PROBE_MORE]))
    to_settle = float(np.nansum([wanted_cost[i] for i, d in enumerate(decisions) if d.decision == PROBE_MORE]))
    return Plan(
        decisions,
        fu.recommended,
        all_cost,
        probe_spend,
        saving(all_cost, fu.recommended, undecided, probe_spend, decisions),
        settings.full_budget_s,
        runs,
        undecided,
        to_settle,
    )


@dataclass(frozen=True)
class _Candidates:
    """The rows as arrays (one entry per candidate, in input order), with the quantities every
    rule reads: the interval, the risk-adjusted score and P(beats the baseline)."""

    sign: float  # +1 for mode "max", -1 for "min": sign * metric is larger-is-better
    z: float  # the one-sided normal quantile of the plan's confidence
    cand: list[str]
    task: list[str]
    mean: np.ndarray
    sd: np.ndarray  # max(predicted_std, sqrt(L_int)); NaN without an interval
    cost: np.ndarray  # full_cost_s
    probe_cost: np.ndarray
    vpc: np.ndarray  # value_per_cost (probe_value for the "decision" objective)
    gamma: np.ndarray
    regime: list[str]
    stop: list[str]
    kind: list[str]  # a StopKind value: what the rules branch on
    no_learning: list[bool]
    wanted_cost: np.ndarray  # the engine's next probing, budget permitting
    wanted_depth: np.ndarray
    valid: np.ndarray  # a finite prediction and interval
    good: np.ndarray  # sign * mean
    score_good: np.ndarray  # pessimistic bound at the plan's confidence (larger is better)
    optimistic_good: np.ndarray
    score: np.ndarray  # score_good back in metric units
    bars: np.ndarray  # the task's baseline, NaN without one
    has_bar: np.ndarray
    p_beat: np.ndarray  # P(beats the baseline); NaN without a baseline or a prediction


def _score_rows(rows: Sequence[Mapping[str, Any]], settings: PlanSettings) -> _Candidates:
    """Read the rows once into arrays and score them (rules 1-3's numbers), so that eligibility,
    funding and the reasons all read the same values."""
    sign = 1.0 if settings.mode == "max" else -1.0
    z = float(norm.ppf(settings.confidence))
    task = [str(r.get("task", "")) for r in rows]
    mean = np.array([_f(r, "predicted_final") for r in rows])
    std = np.array([_f(r, "predicted_std") for r in rows])
    L_int = np.array([_f(r, "L_int") for r in rows])

    with np.errstate(invalid="ignore"):
        # A NaN std means the engine has no interval to give (no learning seen yet, no fit): it
        # stays NaN; sqrt(L_int) only widens an interval that exists.
        sd = np.where(np.isfinite(std) & np.isfinite(L_int) & (L_int > 0), np.maximum(std, np.sqrt(np.abs(L_int))), std)
    valid = np.isfinite(mean) & np.isfinite(sd) & (sd >= 0)
    good = sign * mean  # larger is better in every comparison below
    score_good = good - z * sd  # pessimistic bound at the plan's confidence

    bars = np.array([float(settings.baselines[t]) if t in settings.baselines else np.nan for t in task])
    has_bar = np.isfinite(bars)
    with np.errstate(divide="ignore", invalid="ignore"):
        zb = (good - sign * bars) / sd
        p_beat = np.where(
            sd > 0, norm.cdf(zb), np.where(good > sign * bars, 1.0, np.where(good == sign * bars, 0.5, 0.0))
        )
    return _Candidates(
        sign=sign,
        z=z,
        cand=[str(r.get("candidate", "")) for r in rows],
        task=task,
        mean=mean,
        sd=sd,
        cost=np.array([_f(r, "full_cost_s") for r in rows]),
        probe_cost=np.array([_f(r, "probe_cost_s") for r in rows]),
        vpc=np.array([_f(r, "probe_value" if r.get("objective") == "decision" else "value_per_cost") for r in rows]),
        gamma=np.array([_f(r, "gamma") for r in rows]),
        regime=[str(r.get("regime") or "") for r in rows],
        stop=[str(r.get("stop_reason") or "") for r in rows],
        kind=[str(r.get("stop_kind") or "") for r in rows],
        no_learning=[bool(r.get("no_learning") or False) for r in rows],
        wanted_cost=np.array([_f(r, "wanted_cost_s") for r in rows]),
        wanted_depth=np.array([_f(r, "wanted_depth") for r in rows]),
        valid=valid,
        good=good,
        score_good=score_good,
        optimistic_good=good + z * sd,
        score=sign * score_good,  # back in metric units
        bars=bars,
        has_bar=has_bar,
        p_beat=np.where(valid & has_bar, p_beat, np.nan),
    )


@dataclass(frozen=True)
class _Eligibility:
    """Which candidates could run (rule 3) and how each task ranks them (rule 4)."""

    eligible: np.ndarray
    runner_up_p: np.ndarray  # P(best beats the runner-up), on a no-baseline task's best only
    ranked_by_task: dict[str, list[int]]  # eligible candidates, best risk-adjusted score first
    margin: np.ndarray  # risk-adjusted margin over the baseline (metric units; 0 without one)


def _eligibility(c: _Candidates, settings: PlanSettings) -> _Eligibility:
    """Rule 3 per task: with a baseline, P(beats it) >= confidence; without one, every candidate
    with a prediction (the best preferred). Ranked per task, so funding can fall back to the next."""
    n = len(c.cand)
    tasks = list(dict.fromkeys(c.task))
    members = {t: [i for i in range(n) if c.task[i] == t] for t in tasks}
    eligible = np.zeros(n, bool)
    runner_up_p = np.full(n, np.nan)
    score_good, good, sd = c.score_good, c.good, c.sd
    for t in tasks:
        ids = [i for i in members[t] if c.valid[i]]
        if t in settings.baselines:
            for i in ids:
                eligible[i] = c.p_beat[i] >= settings.confidence
        elif ids:
            # No bar: any candidate with a prediction is acceptable, the best preferred (a
            # cheaper one can stand in when the best does not fit the budget).
            ranked = sorted(ids, key=lambda i: (-score_good[i], c.cand[i]))
            eligible[ranked] = True
            if len(ranked) > 1:
                a, b = ranked[0], ranked[1]
                s = math.hypot(sd[a], sd[b])
                runner_up_p[a] = float(norm.cdf((good[a] - good[b]) / s)) if s > 0 else float(good[a] > good[b])
    ranked_by_task = {
        t: sorted((i for i in members[t] if eligible[i]), key=lambda i: (-score_good[i], c.cand[i])) for t in tasks
    }
    margin = np.where(c.has_bar, score_good - c.sign * c.bars, 0.0)
    return _Eligibility(eligible, runner_up_p, ranked_by_task, margin)


@dataclass(frozen=True)
class _Funding:
    """Which runs the full fine-tune budget pays (rule 5)."""

    first: dict[str, int]  # task -> its best eligible candidate
    chosen: dict[str, int]  # task -> the candidate recommended to run
    over_budget: set[int]  # candidates left out because they did not fit
    run_idx: set[int]
    recommended: float  # total full-run cost of the chosen
    left_after: float  # budget left after the chosen runs (inf without a cap)


def _fund(c: _Candidates, el: _Eligibility, budget: float | None) -> _Funding:
    """Rule 5: each task's best pick, then under a cap the knapsack over the picks' margins, and a
    greedy second chance (best margin per second first) for the tasks whose pick did not fit."""
    cost, margin = c.cost, el.margin
    first = {t: r[0] for t, r in el.ranked_by_task.items() if r}
    chosen: dict[str, int] = {}
    over_budget: set[int] = set()
    if budget is None:
        chosen = dict(first)
    else:
        ts = list(first)
        items = np.array([first[t] for t in ts], int)
        picked = knapsack(margin[items], cost[items], budget) if ts else np.zeros(0, int)
        chosen = {ts[k]: int(items[k]) for k in picked}
        left = budget - sum(cost[i] for i in chosen.values())
        # Tasks left out try their next eligible candidates, best margin per second first.
        alternates = []
        for t in ts:
            if t in chosen:
                continue
            over_budget.add(first[t])
            for i in el.ranked_by_task[t][1:]:
                if np.isfinite(cost[i]) and cost[i] > 0:
                    alternates.append((-(margin[i] / cost[i]), cost[i], c.cand[i], t, i))
        for _, ci, _, t, i in sorted(alternates):
            if t not in chosen and ci <= left + 1e-9:
                chosen[t] = i
                left -= ci
            elif t not in chosen:
                over_budget.add(i)
    run_idx = set(chosen.values())
    recommended = float(sum(cost[i] for i in run_idx))
    left_after = (budget - recommended) if budget is not None else float("inf")
    return _Funding(first, chosen, over_budget, run_idx, recommended, left_after)


def _probe_more(i: int, c: _Candidates, fu: _Funding) -> bool:
    """Rule 6's "probe more": not run, stopped by the probe budget while one more probe was worth
    its price, and its optimistic bound still reaches the bar (the answer could change)."""
    vpc, gamma = c.vpc, c.gamma
    budget_stopped = c.kind[i] == StopKind.BUDGET.value
    # value_per_cost is +inf where the engine could not decide yet (a fit not identified, no
    # learning seen): the next probe is worth more than any price.
    pays = bool(not np.isnan(vpc[i]) and np.isfinite(gamma[i]) and vpc[i] > gamma[i])
    worth_more = (not np.isfinite(vpc[i]) or pays) if not c.valid[i] else pays
    chosen_i = fu.chosen.get(c.task[i])
    if c.has_bar[i]:
        bar_good = c.sign * c.bars[i]
    elif chosen_i is not None and chosen_i != i:
        bar_good = c.score_good[chosen_i]
    else:
        bar_good = -np.inf
    could_change = (not c.valid[i]) or c.optimistic_good[i] >= bar_good
    return (i not in fu.run_idx) and budget_stopped and worth_more and could_change


def _decide(i: int, c: _Candidates, el: _Eligibility, fu: _Funding, settings: PlanSettings) -> Decision:
    """Candidate i's decision and its one-line reason (rule 6), first matching case wins."""
    t = c.task[i]
    base = settings.baselines.get(t)
    q = settings.confidence
    bound = "lower" if c.sign > 0 else "upper"
    s_txt = f"risk-adjusted {_fmt(c.score[i])} ({q:.0%} {bound} bound)"
    risk_note = " (Noise-Dominant: its wide interval counts against it)" if c.regime[i] == NOISE_DOMINANT else ""
    probe_more = _probe_more(i, c, fu)

    if c.kind[i] == StopKind.PROBE_FAILED.value:
        decision, reason = SKIP, f"{c.stop[i]}: no prediction to act on"
    elif not c.valid[i]:
        decision, reason = _no_prediction(i, c, probe_more)
    elif i in fu.run_idx:
        decision, reason = RUN, _run_reason(i, c, el, fu, base, q, s_txt)
    elif probe_more:
        decision, reason = PROBE_MORE, _probe_more_reason(i, c, fu, base)
    else:
        decision, reason = SKIP, _skip_reason(i, c, el, fu, base, q, s_txt, risk_note)
    p_out = c.p_beat[i] if c.has_bar[i] else el.runner_up_p[i]
    return Decision(
        c.cand[i],
        t,
        decision,
        reason,
        float(c.score[i]) if c.valid[i] else float("nan"),
        float(p_out),
        float(c.bars[i]),
        float(c.cost[i]),
    )


def _no_prediction(i: int, c: _Candidates, probe_more: bool) -> tuple[str, str]:
    """A candidate without a prediction or interval: probe more when the probe budget cut it
    short while a probe was still worth it, else skip."""
    why = c.stop[i] or "no probe data"
    if np.isfinite(c.mean[i]) and not c.no_learning[i]:
        why = f"no interval: too little data to fit the uncertainty decay; {why}"
    if probe_more:
        return (
            PROBE_MORE,
            (
                f"no prediction yet ({why}); the probe budget ran out before one was possible"
                + _settle_note(c.wanted_cost[i], c.wanted_depth[i])
            ),
        )
    return SKIP, f"no prediction ({why})"


def _run_reason(
    i: int, c: _Candidates, el: _Eligibility, fu: _Funding, base: float | None, q: float, s_txt: str
) -> str:
    """Why candidate i runs: how sure it is to beat the bar, and whether it stands in for a first
    choice the budget could not fit."""
    t = c.task[i]
    if base is not None:
        reason = f"P(beats baseline {_fmt(base)})={c.p_beat[i]:.2f} >= {q:.2f}; {s_txt}, best in task {t}"
    else:
        p2 = el.runner_up_p[i]
        vs = f"; P(beats the runner-up)={p2:.2f}" if np.isfinite(p2) else ""
        reason = f"no baseline for task {t}: best {s_txt}{vs}"
    if i != fu.first.get(t):
        reason += f"; the task's first choice {c.cand[fu.first[t]]} did not fit the full fine-tune budget"
    return reason + (f"; {c.regime[i]}" if c.regime[i] else "")


def _probe_more_reason(i: int, c: _Candidates, fu: _Funding, base: float | None) -> str:
    """Why candidate i is undecided: its interval still reaches the bar and a probe was worth it."""
    chosen_i = fu.chosen.get(c.task[i])
    mean, sd, z = c.mean, c.sd, c.z
    target = (
        f"baseline {_fmt(base)}"
        if base is not None
        else (f"{c.cand[chosen_i]}'s {_fmt(c.score[chosen_i])}" if chosen_i is not None else "the bar")
    )
    return (
        f"undecided: interval {_fmt(mean[i] - z * sd[i])}..{_fmt(mean[i] + z * sd[i])} still reaches {target}; "
        f"the probe budget ran out while one more probe was worth its cost "
        f"(value/cost {_fmt(c.vpc[i])} > gamma {_fmt(c.gamma[i])})"
        + (
            "; Noise-Dominant so far, not confirmed: if the floor holds, probes will not narrow it"
            if c.regime[i] == NOISE_DOMINANT
            else ""
        )
        + _settle_note(c.wanted_cost[i], c.wanted_depth[i])
    )


def _skip_reason(
    i: int,
    c: _Candidates,
    el: _Eligibility,
    fu: _Funding,
    base: float | None,
    q: float,
    s_txt: str,
    risk_note: str,
) -> str:
    """Why a candidate with a prediction is skipped: over budget, outranked in its task, below
    the baseline, or (no baseline) not the task's best."""
    t = c.task[i]
    chosen_i = fu.chosen.get(t)
    if i in fu.over_budget:
        what = "would run" if i == fu.first.get(t) else f"next choice for task {t}"
        return (
            f"{what} ({s_txt}) but its full fine-tune ({_fmt_s(c.cost[i])}) "
            f"does not fit the full fine-tune budget ({_fmt_s(fu.left_after)} left after higher-value runs)"
        )
    if el.eligible[i] and chosen_i is not None:
        return (
            f"eligible ({s_txt}) but {c.cand[chosen_i]} ranks higher in task {t} ({_fmt(c.score[chosen_i])}){risk_note}"
        )
    if base is not None:
        return f"P(beats baseline {_fmt(base)})={c.p_beat[i]:.2f} < {q:.2f} required; {s_txt}{risk_note}"
    other = c.cand[chosen_i] if chosen_i is not None else (c.cand[fu.first[t]] if t in fu.first else None)
    return (
        f"no baseline for task {t}: {other} has the better risk-adjusted score; this one {_fmt(c.score[i])}{risk_note}"
        if other
        else f"not selected ({s_txt})"
    )


def _settle_note(cost_s: float, depth: float) -> str:
    """What a larger probe budget would buy an undecided candidate: the engine's next probing."""
    if not (np.isfinite(cost_s) and cost_s > 0):
        return ""
    to = f" (its probes to step {int(depth)})" if np.isfinite(depth) and depth > 0 else ""
    amount = f"{cost_s:,.0f}" if cost_s >= 100 else f"{cost_s:.3g}"
    return f"; about {amount} device-s more probe budget{to} would settle it"


def saving(
    all_cost: float, recommended: float, undecided: float, probe_spend: float, decisions: Sequence[Decision]
) -> float:
    """What the plan's decisions saved against running every candidate: the undecided ("probe
    more") candidates may still have to run, and a plan that decided nothing saved nothing.
    Never negative (the probe spend is reported beside it)."""
    if not any(d.decision in (RUN, SKIP) for d in decisions):
        return 0.0
    return max(0.0, all_cost - (recommended + undecided + probe_spend))
