"""Record the demo portfolio's real curves once: probe seeds and a full fine-tune per candidate.

    .venv/bin/python benchmarks/record_demo.py [--job jobs/demo.yaml] [--out data/demo-recorded]
        [--probe-seeds 4] [--probe-depth CAP] [--workers 2]

For every candidate of the job (tasks x models x configs), this runs the real probe runner
(LoRA on DeepSpeed, CPU) for
- `--probe-seeds` probe seeds (0, 1, ...) to `--probe-depth` steps, evaluated every
  `probe.eval_every` steps: what a probe would see;
- one full fine-tune (seed 1000) to the config's `full_steps`, evaluated every `--full-eval-every`
  steps: its last value is the candidate's true final, independent of every probe seed.

Each candidate's static signals (runner.static.compute_static_signals: zero-shot metric, label
statistics, sizes; what the driver computes before probing) go to `<out>/static.parquet`.
Rows go to `<out>/curves.parquet` (candidate, group = task, model, seed, kind = probe|full,
step, value, horizon, train_s_per_step) and are flushed per finished run into
`<out>/runs/<candidate>__<seed>.parquet`, so a killed recording resumes where it stopped and
never loses a finished run. `prehoc_ray.bench.worlds.demo_world` replays the result, which is
how the peers benchmark compares policies on real probes without re-training anything.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FULL_SEED = 1000


def run_one(job_path: str, cand_id: str, seed: int, target: int, eval_every: int, out_dir: str, horizon: int) -> dict:
    """One run of one candidate, in its own process (DeepSpeed sets up a process group)."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from prehoc_ray.runner.probe import ProbeRequest, run_probe
    from prehoc_ray.spec.job import load_job

    torch.set_num_threads(1)
    port = 29500 + (os.getpid() % 2000)
    for k, v in {
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
        "RANK": "0",
        "LOCAL_RANK": "0",
        "WORLD_SIZE": "1",
    }.items():
        os.environ[k] = v
    job = load_job(job_path)
    cand = next(c for c in job.candidate_specs() if c.id == cand_id)
    settings = job.probe.model_copy(update={"eval_every": eval_every})
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="prehoc-record-") as ckpt:
        res = run_probe(
            ProbeRequest(candidate=cand, seed=seed, target_step=target, checkpoint_dir=Path(ckpt), settings=settings)
        )
    kind = "full" if seed == FULL_SEED else "probe"
    rows = {
        "candidate": [cand_id] * len(res.rows),
        "group": [cand.task.name] * len(res.rows),
        "model": [cand.model.name] * len(res.rows),
        "seed": [seed] * len(res.rows),
        "kind": [kind] * len(res.rows),
        "step": [float(r["step"]) for r in res.rows],
        "value": [float(r["value"]) for r in res.rows],
        "horizon": [float(horizon)] * len(res.rows),
        "train_s_per_step": [float(res.seconds_per_step)] * len(res.rows),
    }
    path = Path(out_dir) / "runs" / f"{cand_id.replace(':', '__')}__{seed}.parquet"
    tmp = path.with_suffix(".tmp")
    pq.write_table(pa.table(rows), tmp)
    tmp.replace(path)  # atomic: a killed recording never leaves half a run behind
    return {
        "candidate": cand_id,
        "seed": seed,
        "steps": target,
        "wall_s": time.perf_counter() - t0,
        "train_s_per_step": res.seconds_per_step,
        "last": rows["value"][-1] if rows["value"] else None,
    }


def record_static(job_path: str, out: Path) -> None:
    """The static signals the driver computes before any probe, one row per candidate."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from prehoc_ray.runner.static import compute_static_signals
    from prehoc_ray.spec.job import load_job

    rows: dict[str, list] = {"candidate": []}
    for cand in load_job(job_path).candidate_specs():
        sig = compute_static_signals(cand)
        rows["candidate"].append(cand.id)
        for k, v in sig.items():
            rows.setdefault(k, []).append(float(v))
    pq.write_table(pa.table(rows), out / "static.parquet")
    print(f"wrote {out / 'static.parquet'}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--job", default=str(ROOT / "jobs" / "demo.yaml"))
    ap.add_argument("--out", default=str(ROOT / "data" / "demo-recorded"))
    ap.add_argument("--probe-seeds", type=int, default=4)
    ap.add_argument(
        "--probe-depth", type=int, default=None, help="default: the job's probe cap (max_depth_fraction x full_steps)"
    )
    ap.add_argument("--full-eval-every", type=int, default=250)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--full-steps", type=int, default=None, help="override the config's full_steps (smoke runs only)")
    ap.add_argument("--static-only", action="store_true", help="(re)compute the static signals only")
    args = ap.parse_args()

    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from prehoc_ray.spec.job import load_job

    job = load_job(args.job)
    out = Path(args.out)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    if args.static_only or not (out / "static.parquet").exists():
        record_static(args.job, out)
    if args.static_only:
        return
    if args.probe_depth is None:
        args.probe_depth = max(
            int(job.allocation.max_depth_fraction * (args.full_steps or c.config.full_steps))
            for c in job.candidate_specs()
        )
    todo = []
    for cand in job.candidate_specs():
        runs = [(s, args.probe_depth, job.probe.eval_every) for s in range(args.probe_seeds)]
        runs.append((FULL_SEED, args.full_steps or cand.config.full_steps, args.full_eval_every))
        for seed, target, every in runs:
            if not (out / "runs" / f"{cand.id.replace(':', '__')}__{seed}.parquet").exists():
                todo.append((cand.id, seed, target, every, args.full_steps or cand.config.full_steps))
    # Longest runs first, so the two workers finish together.
    todo.sort(key=lambda r: -r[2] * (4 if "h128" in r[0] else 1))
    print(f"{len(todo)} run(s) to record into {out}", flush=True)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futs = [pool.submit(run_one, args.job, c, s, t, e, str(out), h) for c, s, t, e, h in todo]
        for f in as_completed(futs):
            r = f.result()
            print(f"[{time.perf_counter() - t0:7.0f} s] {json.dumps(r)}", flush=True)
    table = ds.dataset(str(out / "runs"), format="parquet").to_table()
    table = table.sort_by([("candidate", "ascending"), ("seed", "ascending"), ("step", "ascending")])
    pq.write_table(table, out / "curves.parquet")
    meta = {
        "job": os.path.relpath(args.job, ROOT),
        "spec_hash": job.spec_hash(),
        "probe_seeds": args.probe_seeds,
        "probe_depth": args.probe_depth,
        "full_steps": args.full_steps,
        "full_seed": FULL_SEED,
        "full_eval_every": args.full_eval_every,
        "eval_every": job.probe.eval_every,
        "tolerance": job.allocation.tolerance,
        "horizon": args.full_steps or max(c.config.full_steps for c in job.candidate_specs()),
        "rows": table.num_rows,
        "recorded": time.strftime("%Y-%m-%d"),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    # the spec itself, so the recording stays replayable after the job file changes
    (out / "job.yaml").write_text(Path(args.job).read_text())
    print(f"wrote {out / 'curves.parquet'} ({table.num_rows} rows) in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
