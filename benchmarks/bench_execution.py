"""Execution layer: how fast it decides, what it costs next to the probes, how much it holds.

    RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 .venv/bin/python benchmarks/bench_execution.py
        [--candidates 10000] [--skip-demo] [--demo-dir DIR] [--actors 8]

1. Allocation decision time for N candidates (default 10,000; target < 50 ms a round): a
   synthetic portfolio after its initial probes; the engine's refit (every decay fit, timed on
   its own) and then the decision that follows it (Engine._extensions: who gets the next
   increment), repeated; plus the initial round's decision (next_round with nothing run).
2. Driver and actor overhead as a fraction of probe time, on jobs/demo.yaml (embedded Ray):
   driver time spent deciding, reading the store and telling the engine (everything in the
   loop except waiting for probes), CPU seconds the candidate actors used, and the
   bookkeeping inside each probe task (store writes around run_probe); target < 5%.
3. Memory per candidate actor (USS and RSS of the actor processes, holding a real store) and
   the largest portfolio this machine holds, from the measured per-actor memory.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


# --------------------------------------------------------------------------------------------
# 1. allocation decision time


def bench_allocation(n: int, repeats: int = 5, n_boot: int = 20, objective: str = "decision") -> dict:
    import numpy as np

    from prehoc_ray.core.ask_tell import tell
    from prehoc_ray.core.engine import Engine, EngineSettings
    from prehoc_ray.sim.backend import SimulatedBackend
    from prehoc_ray.sim.synthetic import generate_portfolio

    groups = max(1, n // 200)
    p = generate_portfolio(n_groups=groups, candidates_per_group=n // groups, n_seeds=3, horizon=1000, eval_every=10,
                           probe_depth=120, seed=0)
    backend = SimulatedBackend(p)
    settings = EngineSettings(budget=1e9, seeds=3, eval_every=10, initial_depth=30, tolerance=p.tolerance, n_boot=n_boot,
                              slots=64, objective=objective)
    eng = Engine(backend.candidates(), settings)
    t = time.perf_counter()
    orders = eng.next_round()
    initial_s = time.perf_counter() - t
    for o in orders:
        tell(eng, o, backend.run(o))
    # a second round so every candidate has two depths and the fits are real
    t = time.perf_counter()
    orders = eng.next_round()
    first_round_s = time.perf_counter() - t
    for o in orders:
        tell(eng, o, backend.run(o))
    t = time.perf_counter()
    eng.refit()
    refit_s = time.perf_counter() - t
    saved = {cid: st.stop_reason for cid, st in eng.states.items()}
    times, picked = [], 0
    for _ in range(repeats):
        for cid, st in eng.states.items():
            st.stop_reason = saved[cid]
            if hasattr(st, "soft_stop"):
                st.soft_stop = False
        t = time.perf_counter()
        ext = eng._extensions()
        times.append(time.perf_counter() - t)
        picked = len({o.candidate for o in ext})
    active = sum(1 for st in eng.states.values() if saved[st.info.id] is None)
    return {
        "candidates": len(eng.states),
        "active_after_refit": active,
        "initial_round_decision_s": initial_s,
        "refit_s": refit_s,
        "refit_n_boot": n_boot,
        "first_refit_and_decision_s": first_round_s,
        "decision_s_median": statistics.median(times),
        "decision_s_max": max(times),
        "picked": picked,
        "target_s": 0.05,
        "pass": statistics.median(times) < 0.05,
        "orders_per_round": len(ext),
        "np": np.__version__,
        "objective": objective,
    }


# --------------------------------------------------------------------------------------------
# 2. overhead on the demo


def _proc_stats(pids: list[int]) -> list[dict]:
    import psutil

    out = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            mem = p.memory_full_info()
            cpu = p.cpu_times()
            out.append({"pid": pid, "uss": mem.uss, "rss": mem.rss, "cpu_s": cpu.user + cpu.system})
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return out


def bench_demo(out_dir: Path) -> dict:
    import ray

    from prehoc_ray.execution.driver import Driver
    from prehoc_ray.execution.ledger import read_runs
    from prehoc_ray.spec.job import load_job

    spec = load_job(REPO / "jobs" / "demo.yaml")
    actor_stats: list[dict] = []

    class MeasuredDriver(Driver):
        def _stop_actors(self) -> None:
            try:
                states = ray.get([a.state.remote() for a in self.actors.values()], timeout=60)
                actor_stats.extend(_proc_stats([s["pid"] for s in states]))
            except Exception as exc:  # noqa: BLE001
                print("actor stats failed:", exc)
            super()._stop_actors()

    if out_dir.exists():
        shutil.rmtree(out_dir)
    t = time.perf_counter()
    ray.init(include_dashboard=False, log_to_driver=False, namespace="prehoc")
    init_s = time.perf_counter() - t
    try:
        res = MeasuredDriver(spec, out_dir, spec_path=REPO / "jobs" / "demo.yaml").run()
    finally:
        ray.shutdown()
    runs = [r for r in read_runs(out_dir) if r["status"] == "finished"]
    probe_wall = sum(r["wall_s"] for r in runs)
    runner_s = sum(r["runner_s"] for r in runs)
    tm = res.timings
    loop_overhead = tm.get("loop", 0.0) - tm.get("wait", 0.0)
    actor_cpu = sum(a["cpu_s"] for a in actor_stats)
    return {
        "wall_s": res.wall_s + init_s,
        "ray_init_s": init_s,
        "timings": tm,
        "probes": len(runs),
        "probe_wall_s": probe_wall,
        "probe_runner_s": runner_s,
        "driver_loop_overhead_s": loop_overhead,
        "driver_loop_overhead_frac": loop_overhead / probe_wall,
        "actor_cpu_s": actor_cpu,
        "actor_cpu_frac": actor_cpu / probe_wall,
        "task_bookkeeping_s": probe_wall - runner_s,
        "task_bookkeeping_frac": (probe_wall - runner_s) / probe_wall,
        "total_overhead_frac": (loop_overhead + actor_cpu + probe_wall - runner_s) / probe_wall,
        "actors": actor_stats,
        "spent_s": res.engine.spent,
        "regimes": {r["candidate"]: r["regime"] for r in res.candidates},
    }


# --------------------------------------------------------------------------------------------
# 3. memory per actor


def bench_actor_memory(n_actors: int, run_dir: Path | None) -> dict:
    import psutil
    import ray

    from prehoc_ray.execution.actors import create_actor

    tmp = None
    if run_dir is None or not (run_dir / "points").is_dir():
        # a store with a simulated run's points in it, so the actors rebuild real state
        from prehoc_ray.execution.driver import Driver
        from prehoc_ray.spec.job import load_job

        tmp = Path(tempfile.mkdtemp())
        run_dir = tmp / "sim"
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        Driver(load_job(REPO / "jobs" / "simulated.yaml"), run_dir).run()
    else:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        import pyarrow.parquet as pq

        cands = [r["candidate"] for r in pq.read_table(run_dir / "candidates.parquet").to_pylist()]
        actors = [create_actor(str(run_dir), cands[i % len(cands)] if i < len(cands) else f"{cands[0]}-x{i}",
                               {"task": "t", "model": "m", "config": "c"}, f"prehoc-bench-{i}")
                  for i in range(n_actors)]
        states = ray.get([a.state.remote() for a in actors], timeout=300)
        time.sleep(2)
        stats = _proc_stats([s["pid"] for s in states])
        for a in actors:
            ray.kill(a)
    finally:
        ray.shutdown()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    uss = statistics.median(s["uss"] for s in stats)
    rss = statistics.median(s["rss"] for s in stats)
    vm = psutil.virtual_memory()
    # what the machine can give to actors: total minus what Ray's own processes, the driver and
    # two probe workers need here (measured: ~2.5 GiB with torch loaded in the workers)
    reserve = 2.5 * 2**30
    return {
        "actors": len(stats),
        "uss_mib_median": uss / 2**20,
        "rss_mib_median": rss / 2**20,
        "points_per_actor": statistics.median(s["points"] for s in states),
        "total_mib": vm.total / 2**20,
        "largest_portfolio_uss": int((vm.total - reserve) // uss),
        "largest_portfolio_rss": int((vm.total - reserve) // rss),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=10_000)
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--demo-dir", type=Path, default=REPO / "runs" / "bench-demo")
    ap.add_argument("--actors", type=int, default=8, help="candidate actors for the memory figure; 0 skips it")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    figures: dict = {}
    for objective in ("decision", "prediction"):
        print(f"# allocation decision time, {args.candidates} candidates, objective {objective}", flush=True)
        a = figures[f"allocation_{objective}"] = bench_allocation(args.candidates, objective=objective)
        print(f"  initial round (next_round, nothing run yet): {a['initial_round_decision_s'] * 1e3:.1f} ms")
        print(f"  refit of all candidates (n_boot={a['refit_n_boot']}): {a['refit_s']:.1f} s")
        print(f"  decision after the refit (Engine._extensions, {a['active_after_refit']} active, {a['picked']} picked): "
              f"median {a['decision_s_median'] * 1e3:.1f} ms, max {a['decision_s_max'] * 1e3:.1f} ms "
              f"(target < 50 ms: {'PASS' if a['pass'] else 'MISS'})", flush=True)
    if not args.skip_demo:
        print("# jobs/demo.yaml on an embedded Ray", flush=True)
        d = figures["demo"] = bench_demo(args.demo_dir)
        print(f"  wall {d['wall_s']:.1f} s (ray.init {d['ray_init_s']:.1f} s); {d['probes']} probes, "
              f"{d['probe_wall_s']:.1f} probe-seconds; phases: " + ", ".join(f"{k} {v:.1f}" for k, v in d["timings"].items()))
        print(f"  driver loop overhead {d['driver_loop_overhead_s']:.2f} s = {d['driver_loop_overhead_frac']:.2%} of probe time")
        print(f"  candidate actors' CPU {d['actor_cpu_s']:.2f} s = {d['actor_cpu_frac']:.2%}")
        print(f"  bookkeeping inside probe tasks {d['task_bookkeeping_s']:.2f} s = {d['task_bookkeeping_frac']:.2%}")
        print(f"  total {d['total_overhead_frac']:.2%} (target < 5%: {'PASS' if d['total_overhead_frac'] < 0.05 else 'MISS'})")
        print("  regimes: " + ", ".join(f"{k} {v}" for k, v in d["regimes"].items()), flush=True)
    if args.actors > 0:  # --actors 0 skips the memory measurement
        print(f"# memory per candidate actor ({args.actors} actors)", flush=True)
        m = figures["memory"] = bench_actor_memory(args.actors, None if args.skip_demo else args.demo_dir)
        print(f"  USS median {m['uss_mib_median']:.1f} MiB, RSS median {m['rss_mib_median']:.1f} MiB "
              f"({m['points_per_actor']:.0f} points each)")
        print(f"  largest portfolio on this machine ({m['total_mib'] / 1024:.1f} GiB, 2.5 GiB reserved): "
              f"~{m['largest_portfolio_uss']} candidate actors by USS (~{m['largest_portfolio_rss']} by RSS)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))


if __name__ == "__main__":
    main()
