"""A/B of engine settings on DEVELOPMENT worlds only: paired regret differences over worlds.

    .venv/bin/python benchmarks/peers/dev_ab.py --dataset hetero --budgets 0.05,0.1 \
        --variant 'share1={"initial_share": 1.0}' --variant 'cont5={"contention": 0.05}'

Each variant is the shipped engine (bench/policies/prehoc.py) with EngineSettings overrides;
"shipped" is the baseline. Prints, per budget and variant: mean regret (points), spent share,
and the paired difference to the baseline with +- 1.96 standard errors over worlds. Worlds are
bench.suite's DEVELOPMENT_SEEDS (never the report set): tune here, then run run_all.py once.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor

import numpy as np


def one(args: tuple[str, int, float, str, dict]) -> tuple[int, float, str, float, float]:
    dataset, seed, frac, name, overrides = args
    from prehoc_ray.bench.market import Market
    from prehoc_ray.bench.metrics import regret_of, select
    from prehoc_ray.bench.policies.prehoc import run_engine, settings_for
    from prehoc_ray.bench.suite import make_world

    world = make_world(dataset, seed)
    market = Market(world, frac * Market(world, 0.0).full_cost)
    engine, _ = run_engine(market, settings_for(market, 0, **overrides))
    rows = {r["candidate"]: r for r in engine.summary()}
    pred = np.array([rows[c.id]["predicted_final"] for c in world.candidates], float)
    return seed, frac, name, regret_of(world, select(world, pred)), market.spent / market.budget


def main() -> None:
    from prehoc_ray.bench.suite import DEVELOPMENT_SEEDS

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="hetero", choices=sorted(DEVELOPMENT_SEEDS))
    ap.add_argument("--budgets", default="0.05,0.1,0.2")
    ap.add_argument("--variant", action="append", default=[], help="NAME=JSON of EngineSettings overrides")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args()
    variants = {"shipped": {}}
    for v in a.variant:
        name, _, js = v.partition("=")
        variants[name] = json.loads(js)
    budgets = [float(b) for b in a.budgets.split(",")]
    seeds = DEVELOPMENT_SEEDS[a.dataset]
    jobs = [(a.dataset, s, f, n, o) for n, o in variants.items() for s in seeds for f in budgets]
    with ProcessPoolExecutor(a.jobs, mp_context=mp.get_context("spawn")) as pool:
        res = list(pool.map(one, jobs))
    print(f"{a.dataset}: {len(seeds)} development worlds")
    for f in budgets:
        base = {s: r for s, ff, n, r, _ in res if ff == f and n == "shipped"}
        for name in variants:
            got = {s: (r, sp) for s, ff, n, r, sp in res if ff == f and n == name}
            d = np.array([got[s][0] - base[s] for s in sorted(got)]) * 100
            half = 1.96 * d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else float("nan")
            print(
                f"  budget {f:g} {name:>12}: regret {100 * np.mean([g[0] for g in got.values()]):.2f}  "
                f"spent {np.mean([g[1] for g in got.values()]):.2f}  paired diff {d.mean():+.2f} +- {half:.2f}"
            )


if __name__ == "__main__":
    main()
