"""Write a benchmark world as the trajectory table `prehoc-ray backtest` reads.

    .venv/bin/python -m prehoc_ray.bench.export deberta runs/deberta-runs.parquet [--candidates 64] [--seed 0]
    .venv/bin/python -m prehoc_ray.bench.export demo runs/demo-runs.parquet

`deberta`: recorded DeBERTa / DeBERTaV3 fine-tunes on MultiNLI (data/opda-deberta, CC BY-SA
4.0), `--candidates` random configurations per base model (a task), one curve each.
`demo`: the recorded demo portfolio (data/demo-recorded): 4 probe seeds to 300 steps per
candidate, the final of its independent full fine-tune, the measured CPU-seconds per step.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa

from prehoc_ray.bench.worlds import World


def world_table(world: World) -> pa.Table:
    cols: dict[str, list] = {
        k: [] for k in ("candidate", "seed", "step", "value", "group", "horizon", "final", "cost_per_step")
    }
    names = sorted(world.candidates[0].static) if world.candidates else []
    static: dict[str, list] = {n: [] for n in names}
    for c in world.candidates:
        for s, (st, v) in enumerate(c.curves):
            k = len(st)
            cols["candidate"] += [c.id] * k
            cols["seed"] += [s] * k
            cols["step"] += np.asarray(st, float).tolist()
            cols["value"] += np.asarray(v, float).tolist()
            cols["group"] += [c.group] * k
            cols["horizon"] += [float(c.horizon)] * k
            cols["final"] += [float(c.true_final)] * k
            cols["cost_per_step"] += [float(c.cost_per_step)] * k
            for n in names:
                static[n] += [float(c.static.get(n, np.nan))] * k
    return pa.table({**cols, **{n if n.startswith("static_") else f"static_{n}": v for n, v in static.items()}})


def main(argv: list[str] | None = None) -> int:
    from prehoc_ray.bench.worlds import deberta_world, demo_world
    from prehoc_ray.io import write_table

    ap = argparse.ArgumentParser(description="Write a benchmark world as a backtest table.")
    ap.add_argument("world", choices=("deberta", "demo"))
    ap.add_argument("out", type=Path)
    ap.add_argument("--candidates", type=int, default=64, help="deberta: configurations per base model")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    if a.world == "deberta":
        world = deberta_world(a.candidates, 2, seed=a.seed, n_history=0)
    else:
        import pyarrow.parquet as pq

        from prehoc_ray.bench.worlds import DEMO_DIR

        # every recorded probe seed, not only the pair one benchmark world plays
        t = pq.read_table(DEMO_DIR / "curves.parquet", columns=["seed", "kind"]).to_pydict()
        seeds = {int(s) for s, k in zip(t["seed"], t["kind"]) if k == "probe"}
        world = demo_world(0, probe_seeds=len(seeds))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    write_table(world_table(world), a.out)
    print(f"wrote {a.out}: {len(world.candidates)} candidates, {len(set(world.groups))} tasks")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
