"""Two ranks, as inside a Ray Train TorchTrainer: the runner must not assume world size 1."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("dist_probe_worker.py")


def _launch(ckpt: Path, out: Path, world: int = 2) -> list[dict]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out.mkdir(parents=True, exist_ok=True)
    procs = []
    for rank in range(world):
        env = {
            **os.environ,
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world),
            "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": "1",
        }
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), str(ckpt), str(out)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    logs = [p.communicate(timeout=300)[0] for p in procs]
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    return [json.loads((out / f"rank{r}.json").read_text()) for r in range(world)]


def _curve(rows):
    return [{k: v for k, v in r.items() if k not in ("wall_s", "probe_id")} for r in rows]


@pytest.mark.slow
def test_two_ranks_share_batches_and_resume(tmp_path):
    """Both backends, 2 gloo ranks: pause at step 5, resume to 10."""
    r0, r1 = _launch(tmp_path / "ckpt", tmp_path / "out")
    assert r0["world"] == 2
    for backend in ("torch", "deepspeed"):
        first, a, b = r0[f"{backend}-5"], r0[f"{backend}-10"], r1[f"{backend}-10"]
        assert a["start"] == 5 and b["start"] == 5
        # every rank evaluates the same model on the same slice; only rank 0 emits
        assert _curve(a["rows"]) == _curve(b["rows"]) and [r["step"] for r in a["rows"]] == [5, 10]
        assert [r["step"] for r in a["emitted"]] == [10] and b["emitted"] == [] and r1[f"{backend}-5"]["emitted"] == []
        assert _curve(first["rows"]) == _curve(a["rows"][:1])
        # tokens count both ranks' batches, on every rank
        assert a["tokens"] == b["tokens"] > 0
        assert a["rows"][-1]["tokens"] == first["rows"][-1]["tokens"] + a["tokens"]
        assert len(list((tmp_path / "ckpt" / backend).rglob("meta.json"))) == 1
    # the two backends compute the same 2-rank curve
    t, d = _curve(r0["torch-10"]["rows"]), _curve(r0["deepspeed-10"]["rows"])
    for rt, rd in zip(t, d):
        for k in ("eval_loss", "train_loss", "grad_norm"):
            assert rt[k] == pytest.approx(rd[k], rel=1e-5, abs=1e-6)
