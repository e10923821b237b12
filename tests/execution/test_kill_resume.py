"""SIGKILL the driver mid-run, resume it: nothing finished runs again, nothing is lost, and the
decisions are the uninterrupted run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pyarrow.parquet as pq
import pytest

from tests.execution.conftest import JOBS, REPO, child_env
from tests.execution.test_loop import decisions


def _driver(address: str, out, *extra, sim: dict | None = None, **kw):
    env = child_env()
    if sim:
        env["PREHOC_SIM_OPTIONS"] = json.dumps(sim)
    cmd = [
        sys.executable,
        "-m",
        "prehoc_ray",
        "run",
        str(JOBS / "simulated.yaml"),
        "--out",
        str(out),
        "--address",
        address,
        *extra,
    ]
    return cmd, env


@pytest.mark.slow
def test_sigkill_then_resume_reaches_the_uninterrupted_decisions(ray_session, sim_run, tmp_path):
    from prehoc_ray.io.store import ResultStore

    # kill half-way through the probes the uninterrupted run finished
    kill_after = len(sim_run.engine.spend_log) // 2

    out = tmp_path / "run"
    cmd, env = _driver(ray_session, out, sim={"sleep_s": 0.3})
    proc = subprocess.Popen(
        cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True
    )
    store = ResultStore(out)
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "probes").is_dir() and len(store.finished_probe_ids()) >= kill_after:
                break
            time.sleep(0.2)
        assert proc.poll() is None, (
            "the driver ended before it could be killed:\n" + proc.stdout.read().decode()[-3000:]
        )
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    time.sleep(1.0)  # a probe task of the dead driver may still land its last write
    finished_before = store.finished_probe_ids()
    started_before = Counter(e["probe_id"] for e in store.read_probes().to_pylist() if e["status"] == "started")
    assert len(finished_before) >= kill_after
    assert not (out / "candidates.parquet").exists()
    assert json.loads((out / "manifest.json").read_text())["status"] == "running"

    cmd, env = _driver(ray_session, out, "--resume")
    done = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "answered by the store" in done.stdout

    # same decisions, same spend, same probes as the run that was never killed
    resumed = pq.read_table(out / "candidates.parquet").to_pylist()
    assert decisions(resumed) == decisions(sim_run.candidates)
    spend = pq.read_table(out / "spend.parquet").to_pylist()
    assert [s["probe_id"] for s in spend] == [h["probe_id"] for h in sim_run.engine.spend_log]
    assert spend[-1]["spent_s"] == pytest.approx(sim_run.engine.spent, abs=1e-9)
    # no probe that had finished was started again
    events = store.read_probes().to_pylist()
    started_after = Counter(e["probe_id"] for e in events if e["status"] == "started")
    for pid in finished_before:
        assert started_after[pid] == started_before[pid] == 1, pid
    # probes the kill interrupted were re-run with a higher attempt, whose points won
    interrupted = set(started_before) - finished_before
    finished_events = {e["probe_id"]: e for e in events if e["status"] == "finished"}
    for pid in interrupted:
        assert finished_events[pid]["attempt"] >= 2
    pts = store.read_points(finished_only=True).to_pylist()
    keys = [(p["probe_id"], p["step"]) for p in pts]
    assert len(keys) == len(set(keys))
    assert json.loads((out / "manifest.json").read_text())["status"] == "finished"
