"""Backtests: every policy on the same worlds and budgets, scored against what really happened.

One evaluation = (world, budget fraction, policy, repeat). The policy gets a fresh
`Market(world, fraction x full_cost)` and its repeat number as its seed (ASHA's arrival order,
the engine's bootstrap), never the world. The harness scores its picks against the world's
finals. Rows:

- `Evaluation.row`: world, policy, budget, repeat, regret (mean over tasks, metric units),
  spent (fraction of full_cost), spearman, rmse, coverage, r_full (regret of choosing by the
  mean of the probe seeds at full depth: the floor no probing removes), oracle_regret (the
  expected-final oracle, where the world knows expected finals);
- `Evaluation.picks`: one row per task: the candidate the policy would run and its regret.

ASHA yields two evaluations: `asha` (its own pick: the best reported value, as Tune users
read it) and `asha_extrapolated` (the harness's best-prediction rule on its bought prefixes).
`oracle` is not a policy: it is the expected-final oracle where the world has expected
finals (synthetic worlds), else the realised finals (regret 0), at the cost of training all.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from prehoc_ray.bench.market import Market
from prehoc_ray.bench.metrics import evaluate, expected_oracle_regret, full_depth_regret, picks_of, select
from prehoc_ray.bench.policies import PolicyResult, get_policy
from prehoc_ray.bench.worlds import World

ORACLE = "oracle"
# Policies whose runs differ by seed (ASHA: the order in which asynchronous results arrive);
# the others are deterministic given the market, so their repeats would be copies.
STOCHASTIC = ("asha",)


@dataclass
class Evaluation:
    row: dict
    picks: list[dict]


def _task_rows(world: World, picks: dict[str, int], base: dict) -> list[dict]:
    y = world.true_finals
    groups = world.groups
    return [
        {**base, "group": g, "candidate": world.candidates[i].id, "regret": float(y[groups == g].max() - y[i])}
        for g, i in sorted(picks.items())
    ]


def oracle_result(world: World) -> PolicyResult:
    m = world.truth.get("expected_final") if world.truth else None
    pred = np.asarray(m, float) if m is not None and len(m) == len(world.candidates) else world.true_finals
    n = len(world.candidates)
    return PolicyResult(
        ORACLE,
        pred.copy(),
        np.full(n, np.nan),
        world.full_cost,
        np.array([c.horizon for c in world.candidates], float),
        info={"reference": True},
    )


def world_floors(world: World) -> tuple[float, float]:
    """(R_full, the expected-final oracle's regret): what no probe budget removes."""
    return full_depth_regret(world, world.probe_seeds), expected_oracle_regret(world)


def evaluate_policy(
    world: World, policy: str, frac: float, repeat: int = 0, floors: tuple[float, float] | None = None, **kw
) -> list[Evaluation]:
    """One policy on one world at one budget: one Evaluation (two for ASHA). `floors`: the
    world's world_floors(), when the caller has them already."""
    budget = frac * world.full_cost
    t0 = time.perf_counter()
    if policy == ORACLE:
        results = [oracle_result(world)]
    else:
        res = get_policy(policy)(Market(world, budget), seed=repeat, **kw)
        results = [res]
        if policy == "asha":
            results.append(
                PolicyResult(
                    "asha_extrapolated",
                    res.predicted,
                    res.std,
                    res.spent,
                    res.probe_steps,
                    picks=select(world, res.predicted),
                    info=res.info,
                )
            )
    seconds = time.perf_counter() - t0
    out = []
    r_full, floor = floors if floors is not None else world_floors(world)
    for res in results:
        row = evaluate(world, res, budget)
        picks = picks_of(world, res)
        row.update(
            policy=res.policy,
            budget_frac=frac,
            repeat=repeat,
            seconds=seconds,
            r_full=r_full,
            oracle_regret=floor,
            spent_frac=res.spent / world.full_cost,
        )
        if "refused" in res.info:
            row["refused"] = res.info["refused"]
        base = {"world": world.name, "policy": res.policy, "budget_frac": frac, "repeat": repeat}
        out.append(Evaluation(row, _task_rows(world, picks, base)))
    return out


class PolicyFailed(RuntimeError):
    """A policy raised during run_backtest(on_policy=...); `policy` names it, and the error it
    raised is the __cause__."""

    def __init__(self, policy: str, message: str) -> None:
        super().__init__(message)
        self.policy = policy


def _replay(
    world: World,
    floors: tuple[float, float],
    frac: float,
    name: str,
    n_rep: int,
    log: Callable[[str], None],
    tags: dict,
) -> tuple[list[dict], list[dict]]:
    """Every repeat of one policy on one world at one budget: (rows, pick rows)."""
    rows: list[dict] = []
    picks: list[dict] = []
    for rep in range(n_rep):
        for ev in evaluate_policy(world, name, frac, rep, floors):
            ev.row.update(tags)
            rows.append(ev.row)
            picks += [{**p, **tags} for p in ev.picks]
            log(
                f"{world.name:14s} budget={frac:<5g} {ev.row['policy']:18s} rep={rep} "
                f"regret={100 * ev.row['regret']:6.2f} spent={ev.row['spent_frac']:.3f} ({ev.row['seconds']:.1f}s)"
            )
    return rows, picks


def _in_order(done: dict[tuple[int, int, int], tuple[list[dict], list[dict]]]) -> tuple[list[dict], list[dict]]:
    rows: list[dict] = []
    picks: list[dict] = []
    for key in sorted(done):
        rows += done[key][0]
        picks += done[key][1]
    return rows, picks


def run_backtest(
    worlds: Iterable[World],
    budgets: Iterable[float],
    policies: Iterable[str],
    repeats: int = 1,
    log: Callable[[str], None] = print,
    repeats_for: Callable[[str], int] | None = None,
    on_policy: Callable[[str, list[dict], list[dict]], None] | None = None,
    **tags,
) -> tuple[list[dict], list[dict]]:
    """Every (world, budget, policy, repeat); returns (rows, pick rows). `tags` are copied
    into every row (e.g. dataset="synthetic"). Deterministic policies run once per world and
    budget (their repeats would be copies); the stochastic ones `repeats` times.

    Each policy runs on every world and budget before the next one starts, and
    `on_policy(policy, rows, picks)` receives the rows and picks of every policy finished so
    far, so a caller can save them before a later policy fails; a policy that raises is
    re-raised as PolicyFailed naming it. The rows come back in the same order either way
    (world, budget, policy, repeat), so the results do not depend on the schedule."""
    budgets, policies = list(budgets), list(policies)

    def n_rep(name: str) -> int:
        return repeats_for(name) if repeats_for else (repeats if name in STOCHASTIC else 1)

    worlds = list(worlds)
    all_floors = [world_floors(w) for w in worlds]
    done: dict[tuple[int, int, int], tuple[list[dict], list[dict]]] = {}
    for k, name in enumerate(policies):
        try:
            for i, world in enumerate(worlds):
                for j, frac in enumerate(budgets):
                    done[i, j, k] = _replay(world, all_floors[i], frac, name, n_rep(name), log, tags)
        except Exception as exc:
            raise PolicyFailed(name, f"policy {name!r} raised {type(exc).__name__}: {exc}") from exc
        if on_policy is not None:
            on_policy(name, *_in_order(done))
    return _in_order(done)
