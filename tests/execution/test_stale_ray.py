"""A SIGKILLed embedded driver leaves its Ray behind (DashboardAgent, RuntimeEnvAgent, ...); the
next `prehoc-ray run --resume` finds that Ray by its session directory and stops it.

Also the run directory's job.yaml: cluster.runtime_env.env_vars values redacted, as the driver
writes it (the run itself gets the real values through ray.init's runtime_env)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import yaml

from tests.execution.conftest import JOBS, REPO

SECRET = "s3cret-value-that-must-not-land-on-disk"


def _env(state: Path, ray_tmp: str, sim: dict | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "PREHOC_SIM_OPTIONS")}
    # the embedded Rays' sessions under a temp root of this test's own (short: socket path limits)
    env.update(
        {
            "RAY_AUTH_MODE": "disabled",
            "RAY_USAGE_STATS_ENABLED": "0",
            "PREHOC_RAY_STATE_DIR": str(state),
            "RAY_TMPDIR": ray_tmp,
        }
    )
    if sim:
        env["PREHOC_SIM_OPTIONS"] = json.dumps(sim)
    return env


def session_procs(session_dir: str) -> list[psutil.Process]:
    """This user's processes holding files in, or naming, the session directory (no name matching)."""
    root = session_dir.rstrip("/") + "/"
    out = []
    for p in psutil.process_iter(["pid", "uids", "cmdline"]):
        try:
            if p.info["pid"] == os.getpid() or p.info["uids"].real != os.getuid():
                continue
            cmd = p.info["cmdline"] or []
            if any(root in c or c.endswith(session_dir) for c in cmd) or any(
                f.path.startswith(root) for f in p.open_files()
            ):
                out.append(p)
        except psutil.Error:
            continue
    return out


def _kill(procs: list[psutil.Process]) -> None:
    for p in procs:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=10)


def _title(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:
        return ""


@pytest.mark.slow
@pytest.mark.ray
def test_next_run_stops_the_ray_a_killed_embedded_driver_left(tmp_path):
    state = tmp_path / "state"
    out = tmp_path / "run"
    spec = yaml.safe_load((JOBS / "simulated.yaml").read_text())
    spec["cluster"] = {"runtime_env": {"env_vars": {"PREHOC_TEST_SECRET": SECRET}}}
    spec_path = tmp_path / "job.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    cmd = [sys.executable, "-m", "prehoc_ray", "run", str(spec_path), "--out", str(out)]  # no --address: embedded
    ray_tmp = tempfile.mkdtemp(prefix="prs-", dir="/tmp")
    sessions: list[str] = [ray_tmp]
    proc = subprocess.Popen(
        cmd,
        env=_env(state, ray_tmp, {"sleep_s": 0.3}),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 240
        records: list[Path] = []
        while time.monotonic() < deadline and proc.poll() is None:
            records = sorted(state.glob("*.json")) if state.is_dir() else []
            if records and (out / "probes").is_dir() and any((out / "probes").iterdir()):
                break
            time.sleep(0.3)
        assert proc.poll() is None and records, "the driver ended or never recorded its Ray:\n" + (
            proc.stdout.read().decode()[-3000:] if proc.poll() is not None else ""
        )
        rec = json.loads(records[0].read_text())
        assert rec["driver_pid"] == proc.pid
        session = rec["session_dir"]
        assert session.startswith(ray_tmp)
        sessions.append(session)
        os.kill(proc.pid, signal.SIGKILL)  # the driver only, as a killed terminal or OOM killer would
        proc.wait(timeout=30)
        assert proc.returncode == -signal.SIGKILL

        # what the killed driver leaves: its Ray's agents, still running
        time.sleep(3)
        left = session_procs(session)
        titles = [_title(p) for p in left]
        assert any("DashboardAgent" in t for t in titles) and any("RuntimeEnvAgent" in t for t in titles), titles
        assert sum(p.memory_info().rss for p in left if p.is_running()) > 50e6

        # the next run (--resume) stops them, and says so
        done = subprocess.run(
            cmd + ["--resume"], env=_env(state, ray_tmp), cwd=REPO, capture_output=True, text=True, timeout=420
        )
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
        assert "stopped the embedded Ray a killed prehoc-ray run left behind" in done.stderr, done.stderr[-3000:]
        assert f"driver pid {proc.pid}" in done.stderr
        gone_deadline = time.monotonic() + 15
        while session_procs(session) and time.monotonic() < gone_deadline:
            time.sleep(0.5)
        assert session_procs(session) == [], [_title(p) for p in session_procs(session)]
        # the resumed run shut its own Ray down and removed its record; the stale record is gone too
        assert list(state.glob("*.json")) == []
        assert session_procs(ray_tmp) == [], [_title(p) for p in session_procs(ray_tmp)]

        # job.yaml in the run directory: keys kept, the value redacted; the spec given keeps it
        job_copy = (out / "job.yaml").read_text()
        assert SECRET not in job_copy and "PREHOC_TEST_SECRET: <redacted>" in job_copy
        assert SECRET in spec_path.read_text()
        assert not [f for f in out.rglob("*") if f.is_file() and SECRET.encode() in f.read_bytes()]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        for s in sessions:
            _kill(session_procs(s))
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_only_dead_drivers_rays_and_only_ray_processes_are_stopped(tmp_path, monkeypatch):
    """A record whose driver still runs is left alone; a stale record stops nothing that is not
    Ray's, even a process with that session's log open (`tail -f`)."""
    from prehoc_ray.execution import cluster

    state = tmp_path / "state"
    state.mkdir()
    monkeypatch.setenv(cluster.STATE_ENV, str(state))
    session = tmp_path / "session_x"
    (session / "logs").mkdir(parents=True)
    (session / "logs" / "raylet.out").write_text("log\n")
    tail = subprocess.Popen(["tail", "-f", str(session / "logs" / "raylet.out")], stdout=subprocess.DEVNULL)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    try:
        me = psutil.Process()
        alive_rec = state / "alive.json"
        alive_rec.write_text(
            json.dumps(
                {"driver_pid": me.pid, "driver_started": me.create_time(), "session_dir": str(session), "pids": []}
            )
        )
        stale_rec = state / "stale.json"
        stale_rec.write_text(
            json.dumps(
                {"driver_pid": dead.pid, "driver_started": 1.0, "session_dir": str(session), "pids": [[tail.pid, 2.0]]}
            )
        )  # a recorded pid, but not the same process
        time.sleep(0.5)
        assert cluster.stop_stale_embedded(log=lambda m: None) == []
        assert tail.poll() is None  # not Ray's: still running
        assert alive_rec.exists() and not stale_rec.exists()
    finally:
        tail.kill()
        tail.wait()
