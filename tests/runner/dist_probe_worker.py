"""One rank of a 2-process probe (what a Ray Train TorchTrainer worker does): the process group
exists before run_probe is called. Launched by test_runner_distributed.py."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
torch.set_num_threads(1)

from prehoc_ray.runner.probe import ProbeRequest, run_probe  # noqa: E402
from prehoc_ray.spec.candidate import CandidateSpec, FinetuneConfig, ModelSpec, ProbeSettings, TaskSpec  # noqa: E402


def main() -> None:
    ckpt, out = Path(sys.argv[1]), Path(sys.argv[2])
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    cand = CandidateSpec(
        task=TaskSpec(name="copy", builtin="synthetic_copy", max_train_examples=256, eval_examples=16),
        model=ModelSpec(name="tiny", tiny={"hidden_size": 64, "num_hidden_layers": 2, "vocab_size": 384}),
        config=FinetuneConfig(learning_rate=1e-2, batch_size=4, max_seq_len=32, full_steps=200),
    )
    result = {"world": dist.get_world_size()}
    for backend in ("torch", "deepspeed"):
        settings = ProbeSettings(backend=backend, eval_every=5, precision="fp32")
        for target in (5, 10):  # pause at 5, resume to 10
            emitted = []
            res = run_probe(
                ProbeRequest(cand, 0, target, ckpt / backend, settings, f"r{rank}"), on_point=emitted.append
            )
            result[f"{backend}-{target}"] = {
                "rows": res.rows,
                "emitted": emitted,
                "tokens": res.tokens,
                "start": res.start_step,
            }
    (out / f"rank{rank}.json").write_text(json.dumps(result))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
