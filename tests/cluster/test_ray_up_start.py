"""cluster/ray-cluster.yaml's own start commands, run on this machine: the token made as its
header says, shipped as its file_mounts say, its head command, then its worker command joining
with the token, then a job submitted to the result with the token.

What is substituted, and only that (a laptop is not a cloud): each "node" gets its own HOME and
temp dir; ports are free ones instead of 6379/8080/8265 (plus the ports Ray would pick itself,
pinned so that two nodes on one machine do not collide); `--autoscaling-config` is dropped (no
cloud to scale into); `--node-ip-address=127.0.0.1` and `--num-cpus=1` fit this machine; `ray
stop` is skipped (it would stop every Ray of this user, other tests' too); the repository mount is
skipped (prehoc-ray is installed here already). The shell logic, the environment the commands
export and their ray flags are the yaml's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

CLUSTER = Path(__file__).resolve().parents[2] / "cluster"
VENV_BIN = Path(sys.executable).parent


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def non_loopback_ip() -> str | None:
    import ipaddress

    import psutil

    for addrs in psutil.net_if_addrs().values():
        for a in addrs:
            if a.family == socket.AF_INET and not ipaddress.ip_address(a.address).is_loopback:
                return a.address
    return None


def sub(pattern: str, repl: str, text: str) -> str:
    """re.sub that insists the yaml still says what is being substituted."""
    out, n = re.subn(pattern, repl, text)
    assert n == 1, f"the yaml's command no longer contains {pattern!r}: {text}"
    return out


def token_command(cfg_text: str) -> str:
    """The token-making command the yaml's header documents."""
    lines = [
        ln.lstrip("#").strip()
        for ln in cfg_text.splitlines()
        if ln.startswith("#") and "prehoc-ray-cluster.token)" in ln
    ]
    assert len(lines) == 1, "ray-cluster.yaml's header no longer documents how to make the token"
    return lines[0]


def ship_file_mounts(cfg: dict, laptop: Path, node_home: Path) -> list[str]:
    """What `ray up` does with file_mounts that name files under ~ (the token): copy, mode kept (rsync -a)."""
    shipped = []
    for remote, local in cfg["file_mounts"].items():
        if not remote.startswith("~/"):
            continue  # the repository mount: prehoc-ray is installed here already
        src = Path(local.replace("~", str(laptop), 1)) if local.startswith("~") else Path(local)
        assert src.is_file(), f"file_mounts {remote}: {local} does not exist on the machine running `ray up`"
        dest = node_home / remote[2:]
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
        shipped.append(remote)
    return shipped


def node_env(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}  # CI exports RAY_AUTH_MODE=disabled
    env.update(
        {"HOME": str(home), "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}", "RAY_USAGE_STATS_ENABLED": "0"}
    )
    env.update(extra or {})
    return env


def run_commands(commands: list[str], env: dict[str, str], sids: list[int], log: Path) -> None:
    for cmd in commands:
        if cmd.strip() == "ray stop":
            continue
        with open(log, "a") as fh:
            fh.write(f"$ {cmd}\n")
            fh.flush()
            p = subprocess.Popen(
                ["bash", "-c", cmd], env=env, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )
            sids.append(p.pid)
            rc = p.wait(timeout=240)
        assert rc == 0, f"`{cmd}` exited {rc}:\n{log.read_text()[-4000:]}"


def ray_pids(root: str, sids: list[int]) -> list[int]:
    """Processes of the nodes started here: in the sessions we started, or holding files under root."""
    import psutil

    me = os.getpid()
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        if p.info["pid"] == me:
            continue
        try:
            mine = os.getsid(p.info["pid"]) in sids or root in " ".join(p.info["cmdline"] or [])
            if not mine:
                mine = any(f.path.startswith(root) for f in p.open_files())
        except (psutil.Error, OSError):
            continue
        if mine:
            out.append(p.info["pid"])
    return out


def stop_nodes(root: str, sids: list[int]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = ray_pids(root, sids)
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if pids:
            time.sleep(3)


def wait_http(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=5)
            return
        except urllib.error.HTTPError:
            return  # it answers (401 is an answer)
        except OSError:
            time.sleep(1)
    raise TimeoutError(url)


CLIENT = """
import json, sys, time
from ray.job_submission import JobSubmissionClient
c = JobSubmissionClient(sys.argv[1])
sid = c.submit_job(entrypoint=sys.argv[2])
deadline = time.time() + 240
while time.time() < deadline:
    st = str(c.get_job_status(sid).value)
    if st in ("SUCCEEDED", "FAILED", "STOPPED"):
        break
    time.sleep(1)
print("RESULT " + json.dumps({"status": st, "logs": c.get_job_logs(sid)}))
"""

JOB = (
    "python -c \"import ray; ray.init(); print('NODES', sum(1 for n in ray.nodes() if n['Alive'])); "
    "print('CPUS', ray.cluster_resources().get('CPU'))\""
)


@pytest.mark.slow
@pytest.mark.ray
def test_ray_up_start_commands_make_a_token_cluster_that_runs_a_job():
    text = (CLUSTER / "ray-cluster.yaml").read_text()
    cfg = yaml.safe_load(text)
    root = tempfile.mkdtemp(prefix="pru-", dir="/tmp")  # short: Ray's socket paths have a length limit
    laptop, head_home, worker_home = (Path(root) / n for n in ("laptop", "head-home", "worker-home"))
    for d in (laptop, head_home, worker_home):
        d.mkdir()
    log = Path(root) / "commands.log"
    sids: list[int] = []
    try:
        # 1. the token, made once on "your machine" exactly as the header says
        r = subprocess.run(
            ["bash", "-c", token_command(text)], env=node_env(laptop), capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 0, r.stderr
        token_file = laptop / ".ray" / "prehoc-ray-cluster.token"
        token = token_file.read_text().strip()
        assert len(token) >= 32 and oct(token_file.stat().st_mode & 0o777) == "0o600"

        # 2. ray up ships file_mounts to each node
        for home in (head_home, worker_home):
            assert "~/.ray/auth_token" in ship_file_mounts(cfg, laptop, home)
            assert (home / ".ray" / "auth_token").read_text().strip() == token

        gcs, dash, metrics_h, metrics_w, *p = free_ports(15)
        head_cmds = []
        for cmd in cfg["head_start_ray_commands"]:
            if "ray start" in cmd:
                cmd = sub(r"--port=6379\b", f"--port={gcs}", cmd)
                cmd = sub(r"--metrics-export-port=8080\b", f"--metrics-export-port={metrics_h}", cmd)
                cmd = sub(r"\s--autoscaling-config=\S+", "", cmd)
                cmd = sub(
                    r"ray start --head",
                    f"ray start --head --temp-dir={root}/head --dashboard-port={dash} "
                    f"--node-ip-address=127.0.0.1 --num-cpus=1 --dashboard-agent-listen-port={p[0]} "
                    f"--dashboard-agent-grpc-port={p[1]} --runtime-env-agent-port={p[2]} "
                    f"--ray-client-server-port={p[3]} --node-manager-port={p[4]} --object-manager-port={p[5]} "
                    "--disable-usage-stats",
                    cmd,
                )
            head_cmds.append(cmd)
        worker_cmds = []
        for cmd in cfg["worker_start_ray_commands"]:
            if "ray start" in cmd:
                cmd = sub(r":6379\b", f":{gcs}", cmd)
                cmd = sub(r"--metrics-export-port=8080\b", f"--metrics-export-port={metrics_w}", cmd)
                cmd = sub(
                    r"ray start ",
                    f"ray start --temp-dir={root}/worker --node-ip-address=127.0.0.1 --num-cpus=1 "
                    f"--dashboard-agent-listen-port={p[6]} --dashboard-agent-grpc-port={p[7]} "
                    f"--runtime-env-agent-port={p[8]} --node-manager-port={p[9]} --object-manager-port={p[10]} "
                    "--disable-usage-stats ",
                    cmd,
                )
            worker_cmds.append(cmd)

        # 3. the head's commands, then the worker's (ray up exports RAY_HEAD_IP to workers)
        run_commands(head_cmds, node_env(head_home), sids, log)
        url = f"http://127.0.0.1:{dash}"
        wait_http(url + "/api/version", 120)
        run_commands(worker_cmds, node_env(worker_home, {"RAY_HEAD_IP": "127.0.0.1"}), sids, log)

        # token mode is on: no token, no job API
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "/api/jobs/", timeout=10)
        assert refused.value.code == 401

        # item 4: the dashboard answers on loopback only (what `ray dashboard`'s SSH forward reaches)
        ip = non_loopback_ip()
        if ip:
            with pytest.raises(OSError):
                socket.create_connection((ip, dash), timeout=5).close()

        # 4. a job, submitted from "your machine" with the token the way the header says
        client_env = node_env(laptop, {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)})
        deadline = time.monotonic() + 120
        while True:  # the worker registers a few seconds after `ray start` returns
            r = subprocess.run(
                [sys.executable, "-c", CLIENT, url, JOB],
                env=client_env,
                capture_output=True,
                text=True,
                timeout=300,
                cwd=root,
            )
            line = [ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")]
            assert line, r.stdout[-2000:] + r.stderr[-4000:]
            res = json.loads(line[-1][len("RESULT ") :])
            if "NODES 2" in res["logs"] or time.monotonic() > deadline:
                break
            time.sleep(3)
        assert res["status"] == "SUCCEEDED", res["logs"][-3000:]
        assert "NODES 2" in res["logs"] and "CPUS 2.0" in res["logs"], res["logs"][-3000:]
    finally:
        stop_nodes(root, sids)
        left = ray_pids(root, sids)
        shutil.rmtree(root, ignore_errors=True)
    assert not left, f"Ray processes left running: {left}"
