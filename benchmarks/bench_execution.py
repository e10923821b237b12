"""Execution layer: how fast it decides, what it costs next to the probes, how much it holds.

    RAY_AUTH_MODE=disabled RAY_USAGE_STATS_ENABLED=0 .venv/bin/python benchmarks/bench_execution.py
        [--candidates 10000] [--skip-demo] [--demo-dir DIR] [--actors 8] [--portfolio 5000]

1. Allocation decision time for N candidates (default 10,000; target < 50 ms a round): a
   synthetic portfolio after its initial probes; the engine's refit (every decay fit, timed on
   its own) and then the decision that follows it (Engine._extensions: who gets the next
   increment), repeated; plus the initial round's decision (next_round with nothing run); and
   whole later rounds (refit + decision, target < 1 s) after the engine's own picks came back
   for 64 candidates, with how many tasks the refit had to fit again.
2. Driver and actor overhead as a fraction of probe time, on jobs/demo.yaml (embedded Ray):
   driver time spent deciding, reading the store and telling the engine (everything in the
   loop except waiting for probes), CPU seconds the candidate actors used, and the
   bookkeeping inside each probe task (store writes around run_probe); target < 5%.
3. Memory per candidate actor (USS and RSS of slot actors each loaded with a candidate from a
   real store: the process an actor per candidate was) and the largest portfolio this machine
   would hold with one actor per candidate, from the measured per-actor memory.
4. `--portfolio N`: a simulated portfolio of N candidates through the real driver on an embedded
   Ray (2 seeds, 4 probes at a time, a budget for the initial round and a few more): peak RSS
   of the Ray session's processes (workers, slot actors) and of the driver, live actors, time
   per round, slot loads. With only this option (`--candidates 0 --skip-demo --actors 0`) it
   is the only measurement. Run from a tree of the previous design (one actor per candidate)
   it measures that design the same way (its actors are counted by their class name).
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
    p = generate_portfolio(
        n_groups=groups,
        candidates_per_group=n // groups,
        n_seeds=3,
        horizon=1000,
        eval_every=10,
        probe_depth=120,
        seed=0,
    )
    backend = SimulatedBackend(p)
    settings = EngineSettings(
        budget=1e9,
        seeds=3,
        eval_every=10,
        initial_depth=30,
        tolerance=p.tolerance,
        n_boot=n_boot,
        slots=64,
        objective=objective,
    )
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
    for cid, st in eng.states.items():
        st.stop_reason = saved[cid]
    # A whole later round at organisation scale: the engine's own next picks, of which the first
    # 64 candidates' results come back (the rest withdrawn), then refit + decision, repeated.
    orders = eng.next_round()
    incremental = []
    for _ in range(repeats):
        touched = set(list(dict.fromkeys(o.candidate for o in orders))[:64])
        for o in orders:
            if o.candidate in touched:
                tell(eng, o, backend.run(o))
            else:
                eng.withdraw(o)
        t = time.perf_counter()
        orders = eng.next_round()
        elapsed = time.perf_counter() - t
        refit_tasks = eng.tasks_refit
        incremental.append((elapsed, len(touched), refit_tasks))
        if not orders:
            break
    round_s = [x[0] for x in incremental]
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
        "round_after_64_s_median": statistics.median(round_s),
        "round_after_64_s": round_s,
        "round_after_64_touched": [x[1] for x in incremental],
        "round_after_64_tasks_refit": [x[2] for x in incremental],
        "tasks": len({st.info.group for st in eng.states.values()}),
        "round_target_s": 1.0,
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
                states = ray.get([h.state.remote() for h in self.pool.handles], timeout=60)
                actor_stats.extend(_proc_stats([s["pid"] for s in states]))
            except Exception as exc:
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

    from prehoc_ray.execution.actors import create_slot

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
        # each slot loaded with a candidate from the store: the process one actor per candidate was
        actors = [create_slot(str(run_dir), "bench", i, "prehoc-bench") for i in range(n_actors)]
        ray.get(
            [
                a.load.remote(cands[i % len(cands)], {"task": "t", "model": "m", "config": "c"})
                for i, a in enumerate(actors)
            ],
            timeout=300,
        )
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


# --------------------------------------------------------------------------------------------
# 4. a large portfolio through the driver


def portfolio_spec(n: int, concurrency: int = 4, rounds_after_initial: int = 3):
    """n candidates (tasks x models, one config) of the simulated backend, all three regimes."""
    from prehoc_ray.execution.simulated import SIM_COST_PER_STEP
    from prehoc_ray.spec.job import JobSpec

    n_tasks = min(10, n)
    n_models = max(1, n // n_tasks)
    kinds = [
        {"builtin": "tweet_sentiment"},
        {"builtin": "synthetic_copy"},
        {"builtin": "tweet_sentiment", "label_noise": 0.6},
    ]
    seeds, initial = 2, 50
    # the initial round (costs spread up to 1.5x the base) and a few extension rounds; the
    # engine then stops for the budget: a bounded, repeatable run
    step_cost = SIM_COST_PER_STEP * 1.25
    budget = (
        n_tasks * n_models * seeds * initial * step_cost
        + rounds_after_initial * concurrency * seeds * initial * 2 * step_cost
    )
    return JobSpec.model_validate(
        {
            "name": f"portfolio-{n_tasks * n_models}",
            "backend": "simulated",
            "tasks": [{"name": f"t{i}", **kinds[i % 3]} for i in range(n_tasks)],
            "models": [
                {"name": f"m{j}", "tiny": {"arch": "llama", "hidden_size": 64, "num_hidden_layers": 2}}
                for j in range(n_models)
            ],
            "configs": [{"name": "default", "full_steps": 1000}],
            "probe": {"eval_every": 10, "num_cpus": 1},
            "budget": {"probe_seconds": budget},
            "allocation": {
                "objective": "prediction",
                "seeds": seeds,
                "initial_steps": initial,
                "max_depth_fraction": 0.5,
                "max_concurrent_probes": concurrency,
                "max_retries": 2,
                "probe_timeout_s": 600,
                "seed": 1,
            },
            "plan": {"mode": "max"},
        }
    )


class SessionSampler:
    """Peak memory of this process's Ray session: every process under the driver (the embedded
    Ray's gcs, raylet, workers and actors), sampled every `every_s` in a thread."""

    ACTOR_TITLES = ("SlotActor", "CandidateActor")  # the pool's slots; the previous design's actors

    def __init__(self, every_s: float = 0.5) -> None:
        import threading

        self.every_s = every_s
        self.peak_rss = self.peak_worker_rss = self.peak_actor_rss = self.peak_driver_rss = 0
        self.peak_actors = 0
        self.actor_cpu: dict[int, float] = {}  # pid -> CPU seconds, last seen
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> SessionSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(self.every_s):
            total = workers = actors_rss = actors = 0
            for p in me.children(recursive=True):
                try:
                    rss = p.memory_info().rss
                    title = (p.cmdline() or [""])[0]
                    total += rss
                    if title.startswith("ray::"):
                        workers += rss
                    if any(t in title for t in self.ACTOR_TITLES):
                        actors += 1
                        actors_rss += rss
                        cpu = p.cpu_times()
                        self.actor_cpu[p.pid] = cpu.user + cpu.system
                except psutil.Error:
                    continue
            driver = me.memory_info().rss
            self.peak_rss = max(self.peak_rss, total)
            self.peak_worker_rss = max(self.peak_worker_rss, workers)
            self.peak_actor_rss = max(self.peak_actor_rss, actors_rss)
            self.peak_actors = max(self.peak_actors, actors)
            self.peak_driver_rss = max(self.peak_driver_rss, driver)


def bench_portfolio(n: int, out_dir: Path, concurrency: int = 4) -> dict:
    import ray

    from prehoc_ray.execution.driver import Driver

    spec = portfolio_spec(n, concurrency)
    rounds: list[float] = []

    class RoundTimer(Driver):
        def _publish(self, engine) -> None:  # once per round, after the refit: round boundaries
            rounds.append(time.perf_counter())
            super()._publish(engine)

    if out_dir.exists():
        shutil.rmtree(out_dir)
    t0 = time.perf_counter()
    # address="local": a Ray of its own, never one another process on this machine started
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, namespace="prehoc-bench")
    try:
        with SessionSampler() as sampler:
            driver = RoundTimer(spec, out_dir)
            res = driver.run()
    finally:
        ray.shutdown()
    per_round = [b - a for a, b in zip(rounds, rounds[1:])]
    pool = getattr(driver, "pool", None)
    return {
        "candidates": len(res.candidates),
        "wall_s": time.perf_counter() - t0,
        "rounds": res.rounds,
        "probes": res.submitted,
        "timings": res.timings,
        "round_s": per_round,
        "first_round_s": per_round[0] if per_round else float("nan"),
        "later_round_s_median": statistics.median(per_round[1:]) if len(per_round) > 1 else float("nan"),
        "peak_actors": sampler.peak_actors,
        "peak_actor_rss_mib": sampler.peak_actor_rss / 2**20,
        "peak_worker_rss_mib": sampler.peak_worker_rss / 2**20,
        "peak_session_rss_mib": sampler.peak_rss / 2**20,
        "peak_driver_rss_mib": sampler.peak_driver_rss / 2**20,
        "actor_cpu_s": sum(sampler.actor_cpu.values()),
        "slot_loads": pool.stats.loads if pool is not None else None,
        "spent_s": res.engine.spent,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--candidates", type=int, default=10_000)
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--demo-dir", type=Path, default=REPO / "runs" / "bench-demo")
    ap.add_argument("--actors", type=int, default=8, help="candidate actors for the memory figure; 0 skips it")
    ap.add_argument(
        "--portfolio", type=int, default=0, help="candidates of a simulated run through the driver; 0 skips it"
    )
    ap.add_argument("--portfolio-dir", type=Path, default=Path(tempfile.gettempdir()) / "prehoc-bench-portfolio")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()

    figures: dict = {}
    for objective in ("decision", "prediction") if args.candidates > 0 else ():
        print(f"# allocation decision time, {args.candidates} candidates, objective {objective}", flush=True)
        a = figures[f"allocation_{objective}"] = bench_allocation(args.candidates, objective=objective)
        print(f"  initial round (next_round, nothing run yet): {a['initial_round_decision_s'] * 1e3:.1f} ms")
        print(f"  refit of all candidates (n_boot={a['refit_n_boot']}): {a['refit_s']:.1f} s")
        print(
            f"  decision after the refit (Engine._extensions, {a['active_after_refit']} active, {a['picked']} picked): "
            f"median {a['decision_s_median'] * 1e3:.1f} ms, max {a['decision_s_max'] * 1e3:.1f} ms "
            f"(target < 50 ms: {'PASS' if a['pass'] else 'MISS'})",
            flush=True,
        )
        print(
            f"  a whole later round (refit + decision) after {a['round_after_64_touched']} candidates' results: median "
            f"{a['round_after_64_s_median']:.2f} s ({', '.join(f'{x:.2f}' for x in a['round_after_64_s'])}); tasks refit "
            f"{a['round_after_64_tasks_refit']} of {a['tasks']} (target < 1 s: "
            f"{'PASS' if a['round_after_64_s_median'] < 1.0 else 'MISS'})",
            flush=True,
        )
    if not args.skip_demo:
        print("# jobs/demo.yaml on an embedded Ray", flush=True)
        d = figures["demo"] = bench_demo(args.demo_dir)
        print(
            f"  wall {d['wall_s']:.1f} s (ray.init {d['ray_init_s']:.1f} s); {d['probes']} probes, "
            f"{d['probe_wall_s']:.1f} probe-seconds; phases: "
            + ", ".join(f"{k} {v:.1f}" for k, v in d["timings"].items())
        )
        print(
            f"  driver loop overhead {d['driver_loop_overhead_s']:.2f} s = {d['driver_loop_overhead_frac']:.2%} of probe time"
        )
        print(f"  candidate actors' CPU {d['actor_cpu_s']:.2f} s = {d['actor_cpu_frac']:.2%}")
        print(f"  bookkeeping inside probe tasks {d['task_bookkeeping_s']:.2f} s = {d['task_bookkeeping_frac']:.2%}")
        print(
            f"  total {d['total_overhead_frac']:.2%} (target < 5%: {'PASS' if d['total_overhead_frac'] < 0.05 else 'MISS'})"
        )
        print("  regimes: " + ", ".join(f"{k} {v}" for k, v in d["regimes"].items()), flush=True)
    if args.actors > 0:  # --actors 0 skips the memory measurement
        print(
            f"# memory per actor holding a candidate ({args.actors} slot actors, each loaded from a store)", flush=True
        )
        m = figures["memory"] = bench_actor_memory(args.actors, None if args.skip_demo else args.demo_dir)
        print(
            f"  USS median {m['uss_mib_median']:.1f} MiB, RSS median {m['rss_mib_median']:.1f} MiB "
            f"({m['points_per_actor']:.0f} points each)"
        )
        print(
            f"  largest portfolio on this machine ({m['total_mib'] / 1024:.1f} GiB, 2.5 GiB reserved): "
            f"~{m['largest_portfolio_uss']} candidates by USS (~{m['largest_portfolio_rss']} by RSS) with one actor each"
        )
    if args.portfolio > 0:
        print(f"# a simulated portfolio of {args.portfolio} candidates through the driver", flush=True)
        f = figures["portfolio"] = bench_portfolio(args.portfolio, args.portfolio_dir)
        print(
            f"  {f['candidates']} candidates, {f['rounds']} rounds, {f['probes']} probes, wall {f['wall_s']:.1f} s; "
            f"phases: " + ", ".join(f"{k} {v:.1f}" for k, v in f["timings"].items())
        )
        print(
            f"  time per round: first {f['first_round_s']:.1f} s, later median {f['later_round_s_median']:.1f} s "
            f"({', '.join(f'{x:.1f}' for x in f['round_s'])})"
        )
        print(
            f"  live actors at most {f['peak_actors']} ({f['slot_loads']} slot loads, {f['actor_cpu_s']:.1f} CPU-s in them), "
            f"their peak RSS {f['peak_actor_rss_mib']:.0f} MiB"
        )
        print(
            f"  peak RSS: Ray workers {f['peak_worker_rss_mib']:.0f} MiB, whole Ray session {f['peak_session_rss_mib']:.0f} MiB, "
            f"driver {f['peak_driver_rss_mib']:.0f} MiB",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1, default=str))


if __name__ == "__main__":
    main()
