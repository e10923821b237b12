"""One small real run end to end: two candidates, a tiny Llama built from a config, LoRA probes
through the runner on Ray, points streamed into the store, an extension continued from its
checkpoint, candidates.parquet with the task's real metric."""

from __future__ import annotations

import json
import math

import pyarrow.parquet as pq
import pytest
import yaml

pytest.importorskip("torch")
pytest.importorskip("peft")

from tests.weather_data import write_weather

SPEC = {
    "name": "real-e2e",
    "tasks": [{"name": "weather", "path": "weather.jsonl", "eval_examples": 32}],
    "models": [
        {
            "name": "tiny-a",
            "tiny": {
                "arch": "llama",
                "hidden_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 4,
                "vocab_size": 384,
            },
        },
        {
            "name": "tiny-b",
            "tiny": {
                "arch": "llama",
                "hidden_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "vocab_size": 384,
            },
        },
    ],
    "configs": [{"name": "default", "learning_rate": 0.01, "batch_size": 8, "max_seq_len": 32, "full_steps": 60}],
    "probe": {"backend": "torch", "eval_every": 5, "num_cpus": 1},
    "budget": {"probe_seconds": 60},
    "allocation": {
        "seeds": 2,
        "initial_steps": 15,
        "max_depth_fraction": 0.5,
        "max_concurrent_probes": 2,
        "tolerance": 0.001,
        "probe_timeout_s": 300,
    },
}


@pytest.mark.slow
def test_real_tiny_probes_end_to_end(ray_session, tmp_path):
    from prehoc_ray.execution.driver import Driver
    from prehoc_ray.execution.ledger import read_runs
    from prehoc_ray.io.store import ResultStore
    from prehoc_ray.spec.job import load_job

    write_weather(tmp_path / "weather.jsonl", n=300)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(SPEC))
    spec = load_job(path)
    res = Driver(spec, tmp_path / "run", spec_path=path).run()
    assert res.engine.finished and res.failed_attempts == 0
    store = ResultStore(tmp_path / "run")
    pts = store.read_points(finished_only=True).to_pylist()
    assert pts and all(p["eval_loss"] is not None and math.isfinite(p["eval_loss"]) for p in pts)
    assert {p["candidate"] for p in pts} == {"weather:tiny-a", "weather:tiny-b"}
    runs = [r for r in read_runs(tmp_path / "run") if r["status"] == "finished"]
    assert all(r["cost_s"] > 0 and r["metric"] == "accuracy" for r in runs)
    # set-up is measured apart: charged cost + set-up = the runner's own time, and the first
    # probes of each worker carry the data, model and engine builds
    assert all(r["setup_s"] >= 0 and r["cost_s"] + r["setup_s"] == pytest.approx(r["runner_s"], rel=1e-6) for r in runs)
    assert sum(r["setup_s"] for r in runs) > 0
    # an extension (start > 0) continued from the checkpoint the previous probe left
    ext = [r for r in runs if r["start_step"] > 0]
    assert ext, "the budget should buy at least one extension"
    assert all(r["resumed_from"] == r["start_step"] for r in ext)
    assert all(r["steps_run"] == r["target_step"] - r["start_step"] for r in runs)
    for cid in ("weather__tiny-a", "weather__tiny-b"):
        assert (tmp_path / "run" / "checkpoints" / cid / "seed0" / "latest.json").is_file()
    cand = pq.read_table(tmp_path / "run" / "candidates.parquet").to_pylist()
    assert {c["metric"] for c in cand} == {"accuracy"}
    for c in cand:
        assert c["probe_cost_s"] > 0 and math.isfinite(c["cost_per_step_s"])
        assert c["full_cost_s"] == pytest.approx(c["train_cost_per_step_s"] * 60)
        assert c["stop_reason"]
    static = pq.read_table(tmp_path / "run" / "static.parquet").to_pylist()
    assert all(math.isfinite(s["static_zero_shot_loss"]) for s in static)
    assert res.engine.spent <= spec.budget.probe_seconds
    totals = json.loads((tmp_path / "run" / "plan.json").read_text())["totals"]
    assert totals["setup_s"] == pytest.approx(sum(c["setup_s"] for c in cand))
    assert totals["setup_s"] == pytest.approx(sum(r["setup_s"] for r in read_runs(tmp_path / "run")))
