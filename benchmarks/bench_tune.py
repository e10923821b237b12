"""Inside Ray Tune: PrehocScheduler against Tune's own ASHA, on the same trainables and steps.

    RAY_AUTH_MODE=disabled .venv/bin/python benchmarks/bench_tune.py [--quick] [--datasets hetero,synthetic]
        [--worlds N] [--concurrency C] [--stride S] [--out results.json]

Why: the peer benchmark (benchmarks/peers) compares the allocators through a Market that
replays curves without Tune. A Tune user wants to know what happens inside Tune: the same
trials, the same trainable, Tune's controller pausing, resuming and stopping them.

Protocol, per world (the report-split worlds of prehoc_ray/bench/suite.py, never tuned on):

- Trials: one per candidate; a function trainable (prehoc_ray.tune.make_replay_trainable)
  replays the candidate's recorded curve (seed 0), one report per evaluation, with a
  checkpoint at every report (so a paused trial resumes where it stopped). A report is the
  curve's value at k x e steps (e = the world's evaluation interval x --stride; the last
  recorded value at or before that step), so a full run is T = horizon / e reports. Trials are
  created task by task in turn (the grid interleaves the tasks).
- Concurrency: Ray is started with C logical CPUs and every trial asks for one: at most C
  trials run at a time, for both schedulers, and Tune starts the rest as slots free.
- ASHA as its users run it: Ray Tune's AsyncHyperBandScheduler with its defaults
  (grace_period 1, reduction_factor 4), max_t = T, time_attr training_iteration, one ASHA per
  task (a user compares configurations of one task with each other, not across tasks; the
  per-task router of prehoc_ray/bench/policies/asha.py), every trial created at once. Its pick
  per task: the best last reported value among the trials at the deepest rung level (ASHA's
  own answer, `native_picks`).
- PrehocScheduler (group_by = the task, tolerance = the world's) gets as budget the training
  iterations ASHA used in the same world: the same total training steps. Its pick per task:
  the best predicted final of its plan.
- Steps used: the results Tune delivered (a Tune callback counts them), times e.
- Regret of a task's pick: the best true final in the task minus the pick's true final (an
  independent full run; points = 100 x metric). A world's regret is the mean over its tasks.

Paired over worlds: the mean difference PrehocScheduler - ASHA with a studentized bootstrap
95% interval and a sign-flip permutation p (prehoc_ray/bench/stats.py); PASS / TIE / LOSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")

from prehoc_ray.bench.policies.asha import REDUCTION_FACTOR, _make_scheduler, _per_group_scheduler, native_picks  # noqa: E402
from prehoc_ray.bench.stats import paired_difference  # noqa: E402
from prehoc_ray.bench.suite import REPORT_SEEDS, SuiteConfig, make_world  # noqa: E402
from prehoc_ray.bench.worlds import World  # noqa: E402
from prehoc_ray.bench.worlds_hetero import heterogeneous_world  # noqa: E402

METRIC = "value"


def replay_curves(world: World, e: int) -> tuple[list[list[float]], int]:
    """Per candidate (world order), its seed-0 value at every k x e steps up to its probe cap; T."""
    out = []
    for c in world.candidates:
        st, v = c.curve(0)
        cap = world.probe_cap(c)
        n = max(1, int(np.ceil(cap / e)))
        idx = np.searchsorted(st, np.minimum(np.arange(1, n + 1) * e, cap), side="right") - 1
        out.append([float(v[max(i, 0)]) for i in idx])
    return out, max(len(x) for x in out)


def interleaved(world: World) -> list[int]:
    """Candidate indices, one task after another in turn (the order Tune creates the trials in)."""
    by: dict[str, list[int]] = {}
    for i, c in enumerate(world.candidates):
        by.setdefault(c.group, []).append(i)
    lists = list(by.values())
    return [lst[k] for k in range(max(map(len, lists))) for lst in lists if k < len(lst)]


def regret_points(world: World, picks: dict[str, int]) -> float:
    """Mean over tasks of best true final - the pick's true final, in points (a task without a
    pick scores its worst candidate)."""
    finals = world.true_finals
    groups = world.groups
    regs = []
    for g in sorted(set(groups)):
        members = np.flatnonzero(groups == g)
        best = finals[members].max()
        i = picks.get(g)
        regs.append(best - (finals[i] if i is not None else finals[members].min()))
    return 100.0 * float(np.mean(regs))


def _counter():
    from ray import tune

    class Count(tune.Callback):
        """Results Tune delivered, per trial index (what the trainables trained)."""

        def __init__(self) -> None:
            self.n: dict[int, int] = {}
            self.last: dict[int, tuple[int, float]] = {}
            self.index_of: dict[str, int] = {}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            i = int(trial.config["trial"]["index"])
            self.index_of[trial.trial_id] = i
            self.n[i] = self.n.get(i, 0) + 1
            self.last[i] = (int(result["training_iteration"]), float(result[METRIC]))

    return Count()


def run_tuner(world: World, curves: list[list[float]], scheduler, storage: str, name: str):
    from ray import tune

    from prehoc_ray.tune import make_replay_trainable

    count = _counter()
    trainable = tune.with_resources(
        make_replay_trainable({str(i): c for i, c in enumerate(curves)}, key="trial/index", metric=METRIC), {"cpu": 1}
    )
    space = {"trial": tune.grid_search([{"index": i, "group": world.candidates[i].group} for i in interleaved(world)])}
    tuner = tune.Tuner(
        trainable,
        param_space=space,
        tune_config=tune.TuneConfig(scheduler=scheduler, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=storage, name=name, verbose=0, log_to_file=False, callbacks=[count]),
    )
    t0 = time.perf_counter()
    grid = tuner.fit()
    errors = [str(r.error) for r in grid if r.error is not None]
    if errors:
        raise RuntimeError(f"{name}: trials failed: {errors[:3]}")
    return count, time.perf_counter() - t0


def one_world(world: World, stride: int, log) -> dict:
    from prehoc_ray.tune import PrehocScheduler

    e = world.eval_every * stride
    curves, T = replay_curves(world, e)
    tasks: dict[str, list[int]] = {}
    for i, c in enumerate(world.candidates):
        tasks.setdefault(c.group, []).append(i)
    storage = tempfile.mkdtemp(prefix="prehoc-bench-tune-")
    try:
        # ASHA, Ray's defaults, one per task
        grace, eta = 1, REDUCTION_FACTOR
        max_t = {g: T for g in tasks}
        asha = _per_group_scheduler(lambda g: _make_scheduler(grace, T, eta))
        a_count, a_s = run_tuner(world, curves, asha, storage, "asha")
        iters = np.zeros(len(curves), int)
        last = np.full(len(curves), np.nan)
        for i, (k, v) in a_count.last.items():
            iters[i], last[i] = k, v
        a_picks = native_picks(tasks, iters, last, {g: grace for g in tasks}, max_t, eta)
        a_iters = sum(a_count.n.values())
        # PrehocScheduler with the same training iterations
        sched = PrehocScheduler(
            metric=METRIC, mode="max", budget=a_iters, max_t=T, group_by="trial/group", tolerance=world.tolerance
        )
        p_count, p_s = run_tuner(world, curves, sched, storage, "prehoc")
        plan = sched.plan()
        p_picks = {r["group"]: p_count.index_of[r["candidate"]] for r in plan if r["pick"]}
        p_iters = sum(p_count.n.values())
        out = {
            "world": world.name,
            "tasks": len(tasks),
            "trials": len(curves),
            "T": T,
            "e": e,
            "asha_regret": regret_points(world, a_picks),
            "prehoc_regret": regret_points(world, p_picks),
            "asha_steps": a_iters * e,
            "prehoc_steps": p_iters * e,
            "full_steps": sum(len(c) for c in curves) * e,
            "asha_s": a_s,
            "prehoc_s": p_s,
            "prehoc_rounds": sched.state()["round"],
            "prehoc_spent": sched.state()["spent"],
        }
        log(
            f"  {world.name}: regret ASHA {out['asha_regret']:.2f} / prehoc {out['prehoc_regret']:.2f} pts; "
            f"iterations {a_iters} / {p_iters} of {sum(len(c) for c in curves)}; {a_s:.0f} s / {p_s:.0f} s"
        )
        return out
    finally:
        shutil.rmtree(storage, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 small heterogeneous worlds (3 tasks x 6 candidates)")
    ap.add_argument("--datasets", default="hetero,synthetic")
    ap.add_argument("--worlds", type=int, default=10, help="report-split worlds per dataset (the first N)")
    ap.add_argument("--concurrency", type=int, default=4, help="trials running at a time (logical CPUs)")
    ap.add_argument("--stride", type=int, default=2, help="report every stride x the world's evaluation interval")
    ap.add_argument("--out", type=Path, default=None, help="write the per-world rows as JSON")
    args = ap.parse_args(argv)

    import ray

    ray.init(num_cpus=args.concurrency, include_dashboard=False, log_to_driver=False, configure_logging=False)
    cfg = SuiteConfig()
    plan: list[tuple[str, World]] = []
    if args.quick:
        for s in REPORT_SEEDS["hetero"][:2]:
            plan.append(("hetero", heterogeneous_world(s, n_tasks=3, candidates_per_task=6, n_history=0)))
    else:
        for ds in args.datasets.split(","):
            for s in REPORT_SEEDS[ds][: args.worlds]:
                plan.append((ds, make_world(ds, s, cfg)))
    rows = []
    t0 = time.perf_counter()
    for ds, w in plan:
        r = one_world(w, args.stride, print)
        r["dataset"] = ds
        rows.append(r)
    ray.shutdown()
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    print(
        f"\n{len(rows)} worlds in {time.perf_counter() - t0:.0f} s; concurrency {args.concurrency}, "
        f"reports every {args.stride} x the world's evaluation interval\n"
    )
    print(table(rows))
    return 0


def table(rows: list[dict]) -> str:
    lines = [
        "| dataset | worlds | regret ASHA (pts) | regret PrehocScheduler | paired diff prehoc - ASHA [95% CI] | verdict | "
        "steps ASHA (% of full) | steps prehoc | steps diff [95% CI] |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ds in sorted({r["dataset"] for r in rows}):
        sub = [r for r in rows if r["dataset"] == ds]
        a = {r["world"]: r["asha_regret"] for r in sub}
        p = {r["world"]: r["prehoc_regret"] for r in sub}
        d = paired_difference(p, a)
        sa = {r["world"]: r["asha_steps"] / r["full_steps"] * 100 for r in sub}
        sp = {r["world"]: r["prehoc_steps"] / r["full_steps"] * 100 for r in sub}
        ds_ = paired_difference(sp, sa)
        lines.append(
            f"| {ds} | {len(sub)} | {np.mean(list(a.values())):.2f} | {np.mean(list(p.values())):.2f} | "
            f"{d.mean:+.2f} [{d.lo:+.2f}, {d.hi:+.2f}] (wins {d.wins}, losses {d.losses}, p={d.p:.2f}) | "
            f"{d.verdict.value} | {np.mean(list(sa.values())):.1f}% | {np.mean(list(sp.values())):.1f}% | "
            f"{ds_.mean:+.1f} [{ds_.lo:+.1f}, {ds_.hi:+.1f}] pp |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
