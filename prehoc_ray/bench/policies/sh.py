"""Synchronous successive halving: one Hyperband bracket, with the engine's predictor.

Per task: every candidate to r0 evaluations (of market.eval_every steps), keep the best
1/eta by the engine's predictor (core.curves.extrapolate of each seed's prefix, averaged over
the seeds probed), continue those to eta*r0 evaluations, keep 1/eta again, ... ; the last rung
is at the task's probe cap (its longest run, in evaluations), or earlier when the next rung
would hold a single candidate (probing a lone survivor further cannot change the pick, and the
benchmark trains the pick fully anyway). Survivors per rung: n_{k+1} = max(1, floor(n_k / eta))
(Hyperband's top-k). Pick: the best predicted among the candidates evaluated at the last rung
(the finalists), after the leftover is spent on them (below).

Leftover. r0 is a whole number of evaluations, so the bracket alone plans only part of the
budget (0.6-0.8 of it at 5-10% budgets on the synthetic and heterogeneous worlds). A user with
a budget spends the rest, and the finalists are where it decides something: after the bracket,
the finalists of every task with two or more deepen together, one evaluation interval (all
seeds) at a time, round-robin (the first finalist of every task, then the second, ...), pass
after pass, as long as the next interval fits what is left and the probe cap. Then they are
ranked again by the same predictor. Candidates dropped at a rung stay at that rung's depth, so
the rungs' counts are those of the bracket.

eta = 4: Ray Tune's default reduction factor, the one the ASHA peer runs with, so that SH
and ASHA differ only in being synchronous and in the predictor that ranks a rung (SH: the
extrapolated final; ASHA: the last reported value), not in how hard they halve.

Seeds: market.probe_seeds per candidate (the engine's count), falling back to 1 when not even
r0 = 1 fits with them. Sizing: r0 is the largest number of evaluations whose whole bracket,
summed over the tasks, fits the budget; a rung's expected cost uses the mean over the task's
candidates of each one's cost to that depth (cost_per_step x min(depth, probe cap) x seeds),
since which candidates survive is unknown in advance. When even r0 = 1 does not fit at the
full horizon, the top rung is lowered until it fits (the bracket then stops short of the
horizon). At run time a rung whose actual survivors cost more than planned goes only as deep
as what is left allows (a multiple of eval_every), so the budget is never exceeded. When not
even one evaluation of every candidate fits, the bracket is one rung of one evaluation over the
first m candidates of each task (market order), m the largest that fits.
"""

from __future__ import annotations

import numpy as np

from prehoc_ray.bench.market import Market
from prehoc_ray.bench.policies import PolicyResult
from prehoc_ray.core.curves import extrapolate

ETA = 4


def _iters(o, e: int) -> int:
    return max(1, int(np.ceil(o.probe_cap / e)))


def plan_rungs(n: int, r0: int, top: int, eta: int = ETA) -> list[tuple[int, int]]:
    """(depth in evaluations, candidates evaluated) per rung of one task's bracket.

    Depths r0, eta*r0, ... capped at `top` (the last rung); counts n, then
    max(1, floor(previous / eta)). The bracket ends at `top` or at the last rung that still
    ranks two or more candidates: probing a lone survivor further cannot change the pick.
    """
    out, d, k = [], min(r0, top), n
    while True:
        out.append((d, k))
        nxt = max(1, k // eta)
        if d >= top or nxt <= 1:
            return out
        d, k = min(d * eta, top), nxt


def _tasks(market: Market) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, o in enumerate(market.candidates):
        out.setdefault(o.group, []).append(i)
    return out


def bracket_cost(market: Market, r0: int, cap: int, seeds: int, eta: int = ETA) -> float:
    """Expected cost of the bracket over all tasks (top rung = min(cap, the task's longest run))."""
    e = market.eval_every
    total = 0.0
    for members in _tasks(market).values():
        offers = [market.candidates[i] for i in members]
        top = min(cap, max(_iters(o, e) for o in offers))
        lam = np.array([o.cost_per_step for o in offers]) * seeds
        caps = np.array([o.probe_cap for o in offers], float)
        prev = np.zeros(len(offers))
        for d, k in plan_rungs(len(offers), r0, top, eta):
            to = np.minimum(d * e, caps)
            total += k * float(np.mean(lam * (to - prev)))
            prev = to
    return total


def size_bracket(market: Market, seeds: int, eta: int = ETA) -> tuple[int, int] | None:
    """(r0, cap) in evaluations: the largest r0 at the full horizon, else the deepest cap with r0 = 1."""
    e = market.eval_every
    full = max(_iters(o, e) for o in market.candidates)
    tol = market.budget * (1 + 1e-12) + 1e-12
    fits = [r for r in range(1, full + 1) if bracket_cost(market, r, full, seeds, eta) <= tol]
    if fits:
        return max(fits), full
    for cap in range(full - 1, 0, -1):
        if bracket_cost(market, 1, cap, seeds, eta) <= tol:
            return 1, cap
    return None


def _predict(market: Market, i: int, seeds: int) -> float:
    p = []
    for s in range(seeds):
        st, v = market.prefix(i, s)
        if st.size:
            p.append(extrapolate(st, v, market.candidates[i].horizon))
    return float(np.mean(p)) if p else float("nan")


def _probe_to(market: Market, i: int, seeds: int, step: int) -> None:
    reached = market.reached()
    for s in range(seeds):
        have = reached.get((i, s), 0)
        if step > have:
            market.probe(i, s, have, step)


def run(market: Market, *, seed: int = 0, eta: int = ETA, seeds: int | None = None) -> PolicyResult:
    """One synchronous successive-halving bracket per task (see the module docstring); `seed` is
    unused (nothing is random: ties go to the first candidate)."""
    e = market.eval_every
    S = seeds or market.probe_seeds
    sized = size_bracket(market, S, eta)
    while sized is None and S > 1:
        S -= 1
        sized = size_bracket(market, S, eta)
    r0, cap = sized if sized is not None else (1, 1)
    tasks = _tasks(market) if sized is not None else _subsample(market)
    n = len(market.candidates)
    pred = np.full(n, np.nan)
    info_rungs: dict[str, list[tuple[int, int]]] = {}
    picks: dict[str, int] = {}
    plan = []
    for g, members in tasks.items():
        if not members:
            continue
        top = min(cap, max(_iters(market.candidates[i], e) for i in members))
        rungs = plan_rungs(len(members), r0, top, eta)
        plan.append((g, members, [d for d, _ in rungs], [k for _, k in rungs]))
    # Rung by rung across tasks (a rung of every task before the next), so that a budget short
    # of the plan cuts the last rungs, not a whole task.
    alive = {g: list(members) for g, members, _, _ in plan}
    for k in range(max((len(p[2]) for p in plan), default=0)):
        for g, _members, depths, counts in plan:
            if k >= len(depths):
                continue
            if k > 0:  # keep the best counts[k] by the predictor
                ranked = sorted(alive[g], key=lambda i: (-_score(pred[i]), i))
                alive[g] = sorted(ranked[: counts[k]])
            d = depths[k]
            want = [(i, min(d * e, market.candidates[i].probe_cap)) for i in alive[g]]
            need = sum(market.cost(i, market.depth(i), t) * S for i, t in want)
            if need > market.left * (1 + 1e-12) + 1e-12:  # survivors dearer than planned: as deep as fits
                d = _affordable(market, alive[g], S, d, e)
                want = [(i, min(d * e, market.candidates[i].probe_cap)) for i in alive[g]]
            for i, t in want:
                if t > market.depth(i):
                    _probe_to(market, i, S, t)
                pred[i] = _predict(market, i, S)
            info_rungs.setdefault(g, []).append((d, len(alive[g])))
    bracket_spent = float(market.spent)
    deepened = _deepen_finalists(market, [alive[g] for g, _, _, _ in plan], S)
    for i in deepened:
        pred[i] = _predict(market, i, S)
    for g, _, _, _ in plan:
        last = [i for i in alive[g] if np.isfinite(pred[i])]
        if last:
            picks[g] = max(last, key=lambda i: (pred[i], -i))
    steps = np.array([market.depth(i) for i in range(n)], float)
    return PolicyResult(
        "sh",
        pred,
        np.full(n, np.nan),
        float(market.spent),
        steps,
        picks=picks,
        info={
            "eta": eta,
            "r0": r0,
            "cap": cap,
            "seeds": S,
            "rungs": info_rungs,
            "finalists": {g: list(alive[g]) for g, _, _, _ in plan},
            "bracket_spent": bracket_spent,
        },
    )


def _deepen_finalists(market: Market, finalists: list[list[int]], seeds: int) -> set[int]:
    """Spend what the bracket left on the last rung's candidates (two or more in a task; a lone
    finalist is the pick whatever it shows): one evaluation interval at a time, all seeds,
    round-robin (the first finalist of every task, then the second, ...), pass after pass, until
    no finalist's next interval fits the budget or its probe cap. Returns the candidates deepened."""
    e = market.eval_every
    tasks = [sorted(fin) for fin in finalists if len(fin) >= 2]
    turn = [fin[k] for k in range(max((len(f) for f in tasks), default=0)) for fin in tasks if k < len(fin)]
    deepened: set[int] = set()
    progress = True
    while progress:
        progress = False
        for i in turn:
            cap_i = market.candidates[i].probe_cap
            reached = market.reached()
            have = min(reached.get((i, s), 0) for s in range(seeds))
            if have >= cap_i:
                continue
            t = min((have // e + 1) * e, cap_i)
            need = sum(market.cost(i, reached.get((i, s), 0), t) for s in range(seeds))
            if need <= market.left * (1 + 1e-12) + 1e-12:  # the market's own round-off allowance
                _probe_to(market, i, seeds, t)
                deepened.add(i)
                progress = True
    return deepened


def _subsample(market: Market) -> dict[str, list[int]]:
    """When not every candidate fits one evaluation (one seed): the first m of every task (market
    order, random w.r.t. quality), m the largest that fits, as a user would run SH on a sample."""
    tasks = _tasks(market)
    e = market.eval_every
    for m in range(max(len(v) for v in tasks.values()), 0, -1):
        sub = {g: v[:m] for g, v in tasks.items()}
        cost = sum(market.cost(i, 0, min(e, market.candidates[i].probe_cap)) for v in sub.values() for i in v)
        if cost <= market.budget * (1 + 1e-12) + 1e-12:
            return sub
    return {g: [] for g in tasks}


def _score(p: float) -> float:
    return p if np.isfinite(p) else -np.inf


def _affordable(market: Market, alive: list[int], seeds: int, d: int, e: int) -> int:
    """The deepest depth <= d (evaluations) that the survivors can all reach with what is left."""
    best = 0
    for dd in range(1, d + 1):
        need = sum(market.cost(i, market.depth(i), min(dd * e, market.candidates[i].probe_cap)) * seeds for i in alive)
        if need > market.left * (1 + 1e-12) + 1e-12:
            break
        best = dd
    return best
