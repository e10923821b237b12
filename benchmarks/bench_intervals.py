"""Benchmark of the engine's intervals: are the plan's 90% intervals honest at every probe depth?

    .venv/bin/python benchmarks/bench_intervals.py [--split development|report] [--write-readme] [--quick]

For each world of the benchmark suite (prehoc_ray/bench/suite.py: heterogeneous synthetic
worlds with late bloomers, the same with misspecified noise, the plain synthetic worlds,
DeBERTa selections and the recorded demo), every candidate is probed with the world's probe
seeds to the same depth (a fraction of its own horizon, rounded to the evaluation grid, at most
the deepest recorded probe), through the `Market` (the engine sees only what was bought). The
real `Engine` (as the main job builds it, objective "decision") is told every probe and refitted
once; its `summary()` gives each candidate's predicted final and interval, as the plan shows
them. Scored against each candidate's true final (an independent full run), per family kind:

- coverage: share of true finals inside the 90% interval, among candidates that got one;
- no interval: share of candidates the engine gave no interval (Undetermined, "too early to
  tell": an honest answer, not a miss);
- too early to tell: share the engine marked Undetermined because its interval is wider than
  everything its task's curves have moved so far (it still has that wide interval);
- RMSE of the point prediction (candidates with one).

Kinds: hetero worlds split candidates into late bloomers (a plateau, then a late rise) and
the rest, and are also scored with the world's past runs told to the engine ("+ past runs",
the population model a job's `history:` enables); DeBERTa by base model; the rest are one kind. Target (issue 12): coverage within
0.85-0.95 for every kind at every depth from 2.5% to 25% of the horizon.

Development worlds are the ones to tune on (--split development); the report split is scored
once, for the table in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy.stats import norm

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from prehoc_ray.bench.market import Market  # noqa: E402
from prehoc_ray.bench.policies.prehoc import _static_for_engine, history_observations, settings_for  # noqa: E402
from prehoc_ray.bench.suite import SuiteConfig, make_world  # noqa: E402
from prehoc_ray.core.engine import CandidateInfo, Engine, ProbeOrder  # noqa: E402

LEVEL = 0.9
FRACTIONS = (0.025, 0.05, 0.10, 0.25)
TARGET = (0.85, 0.95)
DATASETS = ("hetero", "hetero_miss", "synthetic", "deberta", "demo")
# Also scored with the world's past runs told to the engine (`history:` in a job spec).
WITH_HISTORY = ("hetero",)
README = ROOT / "benchmarks" / "README.md"
COMMAND = ".venv/bin/python benchmarks/bench_intervals.py --split report --write-readme"


def kinds_of(world) -> list[str]:
    """Family kind per candidate, in world order."""
    t = world.truth
    if "late_bloomer" in t:
        return ["late bloomer" if b else "steady" for b in np.asarray(t["late_bloomer"], bool)]
    if world.name.startswith("deberta") or "deberta" in world.name.lower():
        return [c.group.split("|")[0] for c in world.candidates]
    return ["all"] * len(world.candidates)


def engine_at_depth(world, frac: float, seed: int = 0, with_history: bool = False) -> list[dict]:
    """The engine's summary after every candidate was probed to `frac` of its horizon (told the
    world's past runs, as a job's `history:`, when with_history)."""
    market = Market(world, budget=math.inf)
    settings = settings_for(market, seed)
    infos = [
        CandidateInfo(
            o.id,
            o.group,
            float(o.horizon),
            prior_cost_per_step=o.cost_per_step,
            static=_static_for_engine(o.static),
            prior_cost_exact=True,
        )
        for o in market.candidates
    ]
    engine = Engine(infos, settings, history=history_observations(market) if with_history else None)
    e = market.eval_every
    for i, o in enumerate(market.candidates):
        depth = min(o.probe_cap, max(e, int(round(frac * o.horizon / e)) * e))
        for s in range(market.probe_seeds):
            st, v, cost = market.probe(i, s, 0, depth)
            order = ProbeOrder(f"bench|{o.id}|s{s}|0-{depth}", 0, o.id, s, 0, depth)
            engine.tell(order, [{"step": float(a), "value": float(b)} for a, b in zip(st, v)], cost)
    engine.refit()
    by_id = {r["candidate"]: r for r in engine.summary()}
    return [by_id[o.id] for o in market.candidates]


def score(cfg: SuiteConfig, datasets: tuple[str, ...], fractions: tuple[float, ...], log=print) -> list[dict]:
    z = float(norm.ppf(0.5 + LEVEL / 2))
    acc: dict[tuple[str, str, float], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for ds in datasets:
        for ws in cfg.world_seeds(ds):
            world = make_world(ds, ws, cfg)
            kinds = kinds_of(world)
            truth = world.true_finals
            variants = [(ds, False)] + ([(f"{ds} + past runs", True)] if ds in WITH_HISTORY and world.history else [])
            for frac in fractions:
                for name, hist in variants:
                    t0 = time.perf_counter()
                    rows = engine_at_depth(world, frac, with_history=hist)
                    for r, k, y in zip(rows, kinds, truth):
                        a = acc[(name, k, frac)]
                        mu, sd = float(r["predicted_final"]), float(r["predicted_std"])
                        has = math.isfinite(mu) and math.isfinite(sd)
                        a["has"].append(has)
                        a["early"].append(bool(r.get("too_early")))
                        if has:
                            a["inside"].append(abs(y - mu) <= z * sd)
                            a["err"].append(y - mu)
                            a["width"].append(2 * z * sd)
                    log(f"  {name} world {ws} depth {frac:.1%}: {time.perf_counter() - t0:.1f} s")
    out = []
    for (ds, k, frac), a in sorted(
        acc.items(), key=lambda kv: (DATASETS.index(kv[0][0].split(" ")[0]), kv[0][0], kv[0][1], kv[0][2])
    ):
        n = len(a["has"])
        m = len(a["inside"])
        out.append(
            {
                "dataset": ds,
                "kind": k,
                "depth": frac,
                "n": n,
                "coverage": float(np.mean(a["inside"])) if m else float("nan"),
                "no_interval": 1.0 - m / n if n else float("nan"),
                "too_early": float(np.mean(a["early"])) if n else float("nan"),
                "rmse": float(np.sqrt(np.mean(np.square(a["err"])))) if m else float("nan"),
                "width": float(np.mean(a["width"])) if m else float("nan"),
            }
        )
    return out


def markdown(rows: list[dict], split: str, seeds: dict[str, tuple[int, ...]]) -> str:
    head = "| data | kind | depth | n | 90% coverage | target | no interval | too early to tell | RMSE | mean width |"
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        ok = TARGET[0] <= r["coverage"] <= TARGET[1]
        lines.append(
            f"| {r['dataset']} | {r['kind']} | {r['depth']:.1%} | {r['n']} | {r['coverage']:.3f} | "
            f"{'PASS' if ok else 'MISS'} | {r['no_interval']:.3f} | {r['too_early']:.3f} | {r['rmse']:.4f} | {r['width']:.4f} |"
        )
    used = "; ".join(f"{d} {s[0]}-{s[-1]}" for d, s in seeds.items())
    return (
        f"Command: `{COMMAND}`. Split: {split} (world seeds {used}). Every candidate probed with the world's "
        "probe seeds to the depth shown (a fraction of its horizon; the demo's probes stop at 10%), the engine "
        "refitted once; coverage among candidates with an interval, `no interval` = Undetermined with no "
        'interval ("too early to tell").\n\n' + "\n".join(lines) + "\n"
    )


def write_readme(text: str) -> None:
    head = "## Intervals"
    body = README.read_text()
    block = f"{head}\n\n{text}\n"
    if head in body:
        start = body.index(head)
        nxt = body.find("\n## ", start + len(head))
        body = body[:start] + block + (body[nxt + 1 :] if nxt >= 0 else "")
    else:
        body = body.rstrip("\n") + "\n\n" + block
    README.write_text(body)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--split", choices=("development", "report"), default="development")
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--quick", action="store_true", help="two worlds per dataset")
    p.add_argument("--write-readme", action="store_true")
    args = p.parse_args()
    datasets = tuple(d for d in args.datasets.split(",") if d)
    cfg = SuiteConfig(split=args.split)
    seeds = {d: cfg.world_seeds(d)[:2] if args.quick else cfg.world_seeds(d) for d in datasets}
    cfg = SuiteConfig(split=args.split, seeds=seeds)
    rows = score(cfg, datasets, FRACTIONS)
    text = markdown(rows, args.split, seeds)
    print(text)
    if args.write_readme:
        write_readme(text)


if __name__ == "__main__":
    main()
