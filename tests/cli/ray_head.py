"""A real Ray head for CLI tests: started with `ray start --head --block` in its own process
group, stopped by signalling that group and then any process left holding its private temp
dir (never `ray stop`, which would stop every Ray instance on the machine)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def free_ports(n: int) -> list[int]:
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def _pids_using(marker: str) -> list[int]:
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and int(p.name) != os.getpid():
            out.append(int(p.name))
    return out


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                if r.status == 200:
                    return
        except Exception as exc:
            last = exc
        time.sleep(1)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f} s: {last}")


@contextmanager
def ray_head(num_cpus: int = 2, timeout_s: float = 180):
    """Yield (dashboard_url, env) of a fresh head; always stopped afterwards."""
    temp = tempfile.mkdtemp(prefix="prh-", dir="/tmp")  # short: Ray's socket paths have a length limit
    gcs, dash, agent_http, agent_grpc, metrics, rt_env, client, nm, om = free_ports(9)
    env = {**os.environ, **RAY_ENV}
    env.pop("RAY_ADDRESS", None)
    env["PATH"] = (
        str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    )  # jobs run `python` from this venv
    ray_bin = str(Path(sys.executable).parent / "ray")
    cmd = [
        ray_bin,
        "start",
        "--head",
        f"--port={gcs}",
        f"--dashboard-port={dash}",
        f"--num-cpus={num_cpus}",
        "--include-dashboard=true",
        "--dashboard-host=127.0.0.1",
        "--node-ip-address=127.0.0.1",
        f"--dashboard-agent-listen-port={agent_http}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--metrics-export-port={metrics}",
        f"--runtime-env-agent-port={rt_env}",
        f"--ray-client-server-port={client}",
        f"--node-manager-port={nm}",
        f"--object-manager-port={om}",
        f"--temp-dir={temp}",
        "--disable-usage-stats",
        "--block",
    ]
    log = open(Path(temp) / "ray-start.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{dash}"
    try:
        _wait_http(url + "/api/version", timeout_s, proc)
        _wait_http(url + "/api/jobs/", timeout_s, proc)
        yield url, env
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=30)
        for sig in (signal.SIGTERM, signal.SIGKILL):
            left = _pids_using(temp)
            for pid in left:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            if left:
                time.sleep(3)
        log.close()
