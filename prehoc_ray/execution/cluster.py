"""Connecting the driver to Ray: an existing cluster, or an embedded local one.

Address, first found: --address, the job spec's cluster.address, RAY_ADDRESS (set by
`ray job submit`), else an embedded local Ray sized to this machine. A process that already
called ray.init (tests, notebooks) is reused as it is and left running.

A driver killed with SIGKILL cannot stop the embedded Ray it started: its DashboardAgent and
RuntimeEnvAgent (about 200 MB) and whatever else survives stay up. So each embedded Ray is
recorded when it starts, in a per-user state directory (PREHOC_RAY_STATE_DIR, default
~/.cache/prehoc-ray/embedded-ray): the driver's pid and start time, the session directory, the
temp dir, the pids Ray started. The next connect() (the next `prehoc-ray run`, or --resume)
stops every recorded Ray whose driver is gone: the processes of this user that belong to that
session directory (recorded pids with their start times; Ray processes whose command line or open
files, their logs, lie in it), never processes matched by name alone. A clean exit removes its
own record.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from dataclasses import dataclass
from pathlib import Path

import ray


class ClusterError(RuntimeError):
    """Ray could not be reached or started; the message says which address and why."""


@dataclass
class Connection:
    address: str  # what we connected to ("embedded" for a local instance we started)
    embedded: bool
    owned: bool  # we called ray.init, so we call ray.shutdown
    record: Path | None = None  # the embedded Ray's state record, removed once it is shut down

    def close(self) -> None:
        if self.owned and ray.is_initialized():
            ray.shutdown()
        if self.record is not None:
            self.record.unlink(missing_ok=True)
            self.record = None


# ----- embedded Rays left behind by killed drivers ------------------------------------------

STATE_ENV = "PREHOC_RAY_STATE_DIR"


def state_dir() -> Path:
    return Path(os.environ.get(STATE_ENV) or Path.home() / ".cache" / "prehoc-ray" / "embedded-ray")


def _started(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def record_embedded() -> Path | None:
    """Write the state record of the embedded Ray this process just started (None if Ray says nothing)."""
    import psutil

    node = getattr(ray._private.worker, "_global_node", None)
    if node is None:
        return None
    pids = []
    for procs in node.all_processes.values():
        for info in procs:
            pid = getattr(getattr(info, "process", None), "pid", None)
            if pid:
                pids.append(pid)
    with_children = set(pids)
    for pid in pids:
        try:
            with_children.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            pass
    me = psutil.Process()
    rec = {
        "driver_pid": me.pid,
        "driver_started": me.create_time(),
        "session_dir": node.get_session_dir_path(),
        "temp_dir": node.get_temp_dir_path(),
        "pids": [[pid, t] for pid in sorted(with_children) if (t := _started(pid)) is not None],
    }
    d = state_dir()
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = d / f"{me.pid}-{int(me.create_time())}.json"
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(rec, fh)
    os.replace(tmp, path)
    return path


def _is_ray_process(cmdline: list[str]) -> bool:
    """A process of Ray's own (the agents rename themselves ray::DashboardAgent, ...), not a
    `tail -f` or an editor that happens to have a session log open."""
    if cmdline and cmdline[0].startswith("ray::"):
        return True
    ray_dir = os.path.dirname(ray.__file__)
    return any(part.startswith(ray_dir) for part in cmdline)


def session_processes(session_dir: str, recorded: list | None = None) -> list:
    """This user's processes that belong to the Ray session in `session_dir` (psutil.Process list)."""
    import psutil

    root = session_dir.rstrip("/") + "/"
    known = {int(pid): float(t) for pid, t in (recorded or [])}
    uid = os.getuid()
    me = os.getpid()
    found = []
    for p in psutil.process_iter(["pid", "uids", "cmdline", "create_time"]):
        try:
            if p.info["pid"] == me or p.info["uids"] is None or p.info["uids"].real != uid:
                continue
            t = known.get(p.info["pid"])
            if t is not None and abs(t - p.info["create_time"]) < 1.0:
                found.append(p)  # started by that Ray, and still the same process
                continue
            cmdline = p.info["cmdline"] or []
            if not _is_ray_process(cmdline):
                continue
            if any(root in part or part.endswith(session_dir.rstrip("/")) for part in cmdline) or any(
                f.path.startswith(root) for f in p.open_files()
            ):
                found.append(p)
        except psutil.Error:
            continue
    return found


def stop_processes(procs: list, grace_s: float = 5.0) -> int:
    import psutil

    for p in procs:
        try:
            p.send_signal(signal.SIGTERM)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace_s)
    return len(procs)


def stop_stale_embedded(log=None) -> list[dict]:
    """Stop the embedded Rays whose driver is gone (see the module docstring); what was stopped."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    d = state_dir()
    stopped = []
    for path in sorted(d.glob("*.json")) if d.is_dir() else []:
        try:
            rec = json.loads(path.read_text())
            pid, started, session = int(rec["driver_pid"]), float(rec["driver_started"]), str(rec["session_dir"])
        except (OSError, ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)  # unreadable: nothing can be matched by it
            continue
        t = _started(pid)
        if t is not None and abs(t - started) < 1.0:
            continue  # that driver is still running: its Ray is not stale
        procs = session_processes(session, rec.get("pids"))
        if procs:
            n = stop_processes(procs)
            log(
                f"stopped the embedded Ray a killed prehoc-ray run left behind (driver pid {pid}, {session}): "
                f"{n} process(es)"
            )
            stopped.append({"driver_pid": pid, "session_dir": session, "processes": n})
        path.unlink(missing_ok=True)
    return stopped


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def connect(
    address: str | None = None,
    *,
    spec_address: str | None = None,
    runtime_env: dict | None = None,
    namespace: str = "prehoc",
    num_cpus: int | None = None,
) -> Connection:
    if ray.is_initialized():
        return Connection(address="existing", embedded=False, owned=False)
    try:
        stop_stale_embedded()
    except Exception as exc:  # cleanup must never stop a run from starting
        print(
            f"prehoc-ray: could not check for a stale embedded Ray: {' '.join(str(exc).split())[:200]}", file=sys.stderr
        )
    target = address or spec_address or os.environ.get("RAY_ADDRESS") or None
    # Worker output would tear the progress bar; it stays in Ray's session logs
    # (PREHOC_RAY_LOG_TO_DRIVER=1 shows it here).
    log_to_driver = _env_flag("PREHOC_RAY_LOG_TO_DRIVER")
    kwargs: dict = {"namespace": namespace, "log_to_driver": log_to_driver}
    if runtime_env:
        kwargs["runtime_env"] = runtime_env
    if target and target.startswith(("http://", "https://")):
        raise ClusterError(
            f"--address {target}: that is the dashboard / job-submission address; ray.init needs the GCS address "
            "(HOST:6379, or 'auto' on a cluster node), or submit with `ray job submit --address {target} -- prehoc-ray run ...`"
        )
    try:
        if target:
            ray.init(address=target, **kwargs)
            return Connection(address=target, embedded=False, owned=True)
        ray.init(num_cpus=num_cpus, include_dashboard=_env_flag("PREHOC_RAY_DASHBOARD"), **kwargs)
        conn = Connection(address="embedded", embedded=True, owned=True)
        try:
            conn.record = record_embedded()
        except Exception as exc:  # the run goes on; only a later cleanup is lost
            print(f"prehoc-ray: could not record the embedded Ray: {' '.join(str(exc).split())[:200]}", file=sys.stderr)
        return conn
    except ClusterError:
        raise
    except Exception as exc:  # ConnectionError, RuntimeError, ... from ray.init
        where = target or "an embedded local Ray"
        hint = ""
        if "auth" in str(exc).lower() or "token" in str(exc).lower():
            hint = " (Ray 2.60 enables token authentication by default: set RAY_AUTH_MODE the same on both sides)"
        raise ClusterError(f"cannot start or reach {where}: {' '.join(str(exc).split())[:400]}{hint}") from exc
