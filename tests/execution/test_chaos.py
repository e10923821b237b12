"""Chaos: a real `prehoc-ray run` of the simulated job on a Ray head of this test's own, during
which probe workers, slot actors (the pool mirroring the live candidates' state) and the driver
are SIGKILLed at seeded-random moments;
after each driver kill the run continues with --resume. At the end: no finished probe lost,
none recorded twice, and the plan of an uninterrupted run of the same spec (run meanwhile, on an
embedded Ray of its own).

Only processes of the Ray session this test starts are killed: the children of its raylet
(found by its private --temp-dir), never processes matched by name alone (other Rays run on
this machine). Every process the test starts is stopped afterwards, even when it fails: the
head's process group, the drivers' process groups, and whatever is left of the two Ray sessions
(the processes naming the head's or the embedded Ray's private temp dir, and their children;
never `ray stop`, which would stop every Ray of this user).

Determinism (checked by hand: two uninterrupted runs agree in plan.json but for
generated_at, and in candidates.parquet and spend.parquet but for wall-clock columns): the
simulated backend's curves and costs depend only on the spec. What a kill may legitimately
change is when and where things ran: wall_s, ended_at, node_id, timings, generated_at. (Until
this test, a dead worker's attempt was charged the wall seconds since its submission, on the
simulated backend too, so one killed worker could spend half the budget and change the plan:
execution/driver.py `_failed` charges it nothing there now, as admission.py's wall_clock
already treats simulated costs.)
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest

from prehoc_ray.execution.pool import pool_size
from tests.execution.conftest import JOBS, REPO, child_env

SEED = int(os.environ.get("PREHOC_CHAOS_SEED", "20261202"))  # another seed: other moments, same checks
# Six kills: two of each kind, in a seeded order, at seeded-random moments (see the test).
KILLS = ["worker", "worker", "actor", "actor", "driver", "driver"]
# Probes the uninterrupted run still has to finish after the last kill's moment: its last rounds
# run 3 at a time, so 6 leave two rounds in which a worker or an actor can still be killed. The
# moments count from the in-process reference loop (24 probes), and a Ray run, which decides on
# the costs it measures, settled in 20 under load: 4 more keep the 6 there.
PROBES_AFTER_LAST_KILL = 10
DELAY_S = (0.2, 1.0)
SLEEP_S = 1.0  # wall seconds per simulated probe, points spread over it: kills land mid-probe
RUN_TIMEOUT_S = 420.0  # each, the chaos run and the uninterrupted one beside it
VENV_BIN = Path(sys.executable).parent
# The run's slot actors (execution/pool.py): jobs/simulated.yaml's 6 candidates, 4 probes at a time -> 4
SLOTS = pool_size(6, 4)

pytestmark = [pytest.mark.slow, pytest.mark.ray]


# ----- a Ray head of our own -----------------------------------------------------------------------


def _free_ports(n: int) -> list[int]:
    import socket

    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _mine(p: psutil.Process) -> bool:
    try:
        return p.uids().real == os.getuid()
    except psutil.Error:
        return False


def _under(marker: str) -> list[psutil.Process]:
    """This user's processes naming `marker` (a temp dir of this test's) in their command line."""
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.pid != os.getpid() and _mine(p) and any(marker in c for c in (p.info["cmdline"] or [])):
                out.append(p)
        except psutil.Error:
            continue
    return out


def kill_session(marker: str, known: set[psutil.Process] | frozenset = frozenset()) -> None:
    """SIGKILL a Ray session of this test's: the processes naming its temp dir (gcs_server,
    raylet, ...), their descendants (the workers, whose titles name nothing), and `known`."""
    for _ in range(2):  # again for anything started meanwhile
        procs = set(known) | set(_under(marker))
        for p in list(procs):
            try:
                procs.update(p.children(recursive=True))
            except psutil.Error:
                pass
        for p in procs:
            try:
                p.kill()  # psutil checks the pid still names the process it found (create time)
            except psutil.Error:
                pass
        psutil.wait_procs(list(procs), timeout=15)
        known = frozenset()


class Head:
    """`ray start --head --block` in its own process group and its own temp dir."""

    def __init__(self, num_cpus: int = 4) -> None:
        self.temp = tempfile.mkdtemp(prefix="prc-", dir="/tmp")  # short: Ray's socket paths have a length limit
        gcs, dash, agent_http, agent_grpc, metrics, rt_env, client, nm, om = _free_ports(9)
        self.address = f"127.0.0.1:{gcs}"
        self.env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        self.env.pop("RAY_ADDRESS", None)
        cmd = [
            str(VENV_BIN / "ray"),
            "start",
            "--head",
            f"--port={gcs}",
            f"--num-cpus={num_cpus}",
            "--include-dashboard=false",
            f"--dashboard-port={dash}",
            "--node-ip-address=127.0.0.1",
            f"--dashboard-agent-listen-port={agent_http}",
            f"--dashboard-agent-grpc-port={agent_grpc}",
            f"--metrics-export-port={metrics}",
            f"--runtime-env-agent-port={rt_env}",
            f"--ray-client-server-port={client}",
            f"--node-manager-port={nm}",
            f"--object-manager-port={om}",
            f"--temp-dir={self.temp}",
            "--disable-usage-stats",
            "--block",
        ]
        self.log = open(Path(self.temp) / "ray-start.log", "w")
        self.proc = subprocess.Popen(
            cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.raylet: psutil.Process | None = None
        self.seen: set[psutil.Process] = set()  # every process of this session ever seen, for the clean-up

    def wait_raylet(self, timeout_s: float = 120.0) -> psutil.Process:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (
                "ray start exited:\n" + (Path(self.temp) / "ray-start.log").read_text()[-3000:]
            )
            for p in _under(self.temp):
                try:
                    cmd = p.cmdline()
                except psutil.Error:
                    continue
                if cmd and os.path.basename(cmd[0]) == "raylet":
                    self.raylet = p
                    return p
            time.sleep(0.5)
        raise TimeoutError(f"no raylet under {self.temp} after {timeout_s:.0f}s")

    def workers(self) -> list[tuple[psutil.Process, str]]:
        """(process, title) of the raylet's children: this session's workers, and only them."""
        assert self.raylet is not None
        out = []
        try:
            kids = self.raylet.children()
        except psutil.Error:
            return out
        for k in kids:
            try:
                title = (k.cmdline() or [""])[0]
            except psutil.Error:
                continue
            self.seen.add(k)
            out.append((k, title))
        return out

    def stop(self) -> None:
        """SIGKILL, no graceful shutdown: nothing of this throw-away cluster needs saving (a
        SIGTERMed `ray start --block` takes half a minute on a busy machine)."""
        known = set(self.seen)
        if self.raylet is not None:
            known.add(self.raylet)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        kill_session(self.temp, known)
        self.proc.wait(timeout=30)
        self.log.close()
        shutil.rmtree(self.temp, ignore_errors=True)


@pytest.fixture(scope="module")
def head():
    t = time.monotonic()
    h = Head()
    try:
        h.wait_raylet()
        print(f"Ray head up in {time.monotonic() - t:.0f}s")
        yield h
    finally:
        t = time.monotonic()
        h.stop()
        print(f"Ray head stopped in {time.monotonic() - t:.0f}s")


# ----- drivers -------------------------------------------------------------------------------------


class Drivers:
    """`prehoc-ray run` subprocesses, each in its own process group; all killed at the end."""

    def __init__(self, head: Head, state: Path) -> None:
        self.head = head
        self.state = state
        self.procs: list[subprocess.Popen] = []

    def start(
        self, out: Path, log: Path, *extra: str, sim: dict | None = None, embedded_in: str | None = None
    ) -> subprocess.Popen:
        """A driver on the head, or (embedded_in: a temp dir) on an embedded Ray of its own there."""
        env = child_env()
        env["PREHOC_RAY_STATE_DIR"] = str(self.state)  # nothing of another run's state is touched
        if sim:
            env["PREHOC_SIM_OPTIONS"] = json.dumps(sim)
        where = ["--address", self.head.address]
        if embedded_in:
            env["RAY_TMPDIR"], where = embedded_in, []
        cmd = [str(VENV_BIN / "prehoc-ray"), "run", str(JOBS / "simulated.yaml"), "--out", str(out), *where, *extra]
        fh = open(log, "w")
        p = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)
        fh.close()
        self.procs.append(p)
        return p

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(timeout=30)


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


# ----- what the store says ---------------------------------------------------------------------------


def finished_state(out: Path) -> dict[str, tuple[int, dict[float, float]]]:
    """probe id -> (finished attempt, {step: value} of its points), as a reader sees it now."""
    from prehoc_ray.io.store import ResultStore

    if not (out / "probes").is_dir():
        return {}
    store = ResultStore(out)
    attempt = {e["probe_id"]: int(e["attempt"]) for e in store.completed_probes().to_pylist()}
    points: dict[str, dict[float, float]] = {pid: {} for pid in attempt}
    if (out / "points").is_dir():
        for p in store.read_points(finished_only=True).to_pylist():
            if p["probe_id"] in points:
                points[p["probe_id"]][float(p["step"])] = p["value"]
    return {pid: (attempt[pid], points[pid]) for pid in attempt}


def same(a, b) -> bool:
    """Equal, NaN equal to NaN (candidates.parquet keeps NaN for what was not fitted)."""
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def rows(path: Path, drop: tuple[str, ...] = ()) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in drop} for r in pq.read_table(path).to_pylist()]


# What a kill (or another Ray) may change: when and where things ran (see the module doc).
WALL = ("wall_s", "ended_at", "node_id")


def _targets(head: Head, kind: str, driver: subprocess.Popen) -> list[tuple[psutil.Process, str]]:
    """What a kill of `kind` may hit now: a worker running a probe, a slot actor (most of the
    run each serves a candidate), or the driver while a probe runs (so the kill lands mid-probe)."""
    procs = head.workers()
    probes = [(w, t) for w, t in procs if t.startswith("ray::prehoc-probe:")]
    if kind == "worker":
        return probes
    if kind == "actor":
        return [(w, t) for w, t in procs if "SlotActor" in t]
    return [(psutil.Process(driver.pid), "driver")] if probes and driver.poll() is None else []


def _brief(journal: list[dict]) -> str:
    return json.dumps([{k: v for k, v in j.items() if k != "snapshot"} for j in journal])


# ----- the test --------------------------------------------------------------------------------------


def test_random_sigkills_of_workers_actors_and_driver_lose_nothing_and_change_no_decision(head, reference, tmp_path):
    from prehoc_ray.io.store import ResultStore

    rng = random.Random(SEED)
    kills = KILLS[:]
    rng.shuffle(kills)
    # the moments: after a seeded-random number of probes has finished, spread over the run (how
    # many the uninterrupted run finishes is the in-process reference loop's count), plus a
    # seeded-random delay once a target of the kind exists
    max_threshold = len(reference.spend_log) - PROBES_AFTER_LAST_KILL
    assert max_threshold >= len(kills), (
        f"jobs/simulated.yaml runs {len(reference.spend_log)} probes: too few to kill in"
    )
    after = sorted(rng.sample(range(1, max_threshold + 1), len(kills)))
    drivers = Drivers(head, tmp_path / "ray-state")
    journal: list[dict] = []  # what was killed, when, and what the store held just after
    ref, out = tmp_path / "reference", tmp_path / "chaos"
    ref_tmp = tempfile.mkdtemp(prefix="prr-", dir="/tmp")
    watch = ResultStore(out)  # one instance: it reads only the fragments new since its last read
    t_ref = t_chaos = float("nan")
    try:
        # The uninterrupted run of the same spec, meanwhile: a plain `prehoc-ray run` on an
        # embedded Ray of its own (on the head, its actors' names would collide with the chaos
        # run's, and run after it, the test would take a minute longer).
        t0 = time.monotonic()
        deadline = t0 + RUN_TIMEOUT_S
        uninterrupted = drivers.start(ref, tmp_path / "reference.log", embedded_in=ref_tmp)

        # the run under fire
        sim = {"sleep_s": SLEEP_S}
        log = tmp_path / "chaos-1.log"
        p = drivers.start(out, log, sim=sim)

        def alive() -> None:
            assert time.monotonic() < deadline, f"the chaos run is not done after {RUN_TIMEOUT_S:.0f}s: {journal}"
            assert p.poll() is None, (
                f"the driver ended (rc {p.returncode}) before kill {len(journal) + 1} of "
                f"{kills}; kills so far: {_brief(journal)}\n{_tail(log)}"
            )

        for kind, threshold in zip(kills, after):
            while len(watch.finished_probe_ids()) < threshold:
                alive()
                time.sleep(0.3)
            while not _targets(head, kind, p):
                alive()
                time.sleep(0.1)
            time.sleep(rng.uniform(*DELAY_S))
            while True:
                while not (pool := _targets(head, kind, p)):  # the one running a moment ago ended: the next
                    alive()
                    time.sleep(0.05)
                victim, title = rng.choice(pool)
                before = len(watch.finished_probe_ids())
                try:
                    if kind == "driver":
                        os.killpg(p.pid, signal.SIGKILL)
                        p.wait(timeout=30)
                        assert p.returncode == -signal.SIGKILL, _tail(log)
                    elif victim.ppid() == head.raylet.pid:  # a worker of this test's Ray session, still
                        victim.kill()
                    else:
                        continue
                    break
                except psutil.NoSuchProcess:
                    continue  # it ended a moment ago: the next
            entry = {
                "kind": kind,
                "title": title,
                "pid": victim.pid,
                "t": round(time.monotonic() - t0, 1),
                "finished_before": before,
            }
            time.sleep(1.0)  # what the victim was writing lands, or never will
            if kind == "actor":  # Ray restarts it (max_restarts), while the driver runs on
                back = time.monotonic() + 10
                while time.monotonic() < back and p.poll() is None:
                    actors = [w.pid for w, _ in _targets(head, "actor", p)]
                    if len(actors) == SLOTS and victim.pid not in actors:
                        entry["restarted"] = True
                        break
                    time.sleep(0.2)
            entry["snapshot"] = finished_state(out)
            entry["finished_after"] = len(entry["snapshot"])
            journal.append(entry)
            if kind == "driver":
                log = tmp_path / f"chaos-{len(journal) + 1}.log"
                p = drivers.start(out, log, "--resume", sim=sim)
        p.wait(timeout=max(10.0, deadline - time.monotonic()))
        assert p.returncode == 0, _tail(log)
        t_chaos = time.monotonic() - t0
        uninterrupted.wait(timeout=max(10.0, deadline - time.monotonic()))
        assert uninterrupted.returncode == 0, _tail(tmp_path / "reference.log")
        t_ref = float(json.loads((ref / "manifest.json").read_text())["info"]["wall_s"])
    finally:
        drivers.close()
        kill_session(ref_tmp)  # nothing, when its driver ended: it stops the Ray it started
        shutil.rmtree(ref_tmp, ignore_errors=True)
        print(
            f"seed {SEED}: reference run {t_ref:.0f}s, chaos run {t_chaos:.0f}s, kill after {after} finished probes: "
            f"{_brief(journal)}"
        )

    # the kills: at least five, each kind at least once
    assert len(journal) >= 5 and Counter(j["kind"] for j in journal) == Counter(KILLS)
    assert any(j.get("restarted") for j in journal if j["kind"] == "actor"), "no killed actor came back"
    store = ResultStore(out)
    events = store.read_probes().to_pylist()
    # a killed probe worker is a failed attempt, recorded as a dead worker, and retried
    died = [e for e in events if e["status"] == "failed" and "worker died" in (e["reason"] or "")]
    assert died, "no worker kill landed on a running probe"
    assert "answered by the store" in _tail(log, 20000)

    # 0 lost: what was finished after each kill is finished at the end, same attempt, same points
    final = finished_state(out)
    for j in journal:
        for pid, (attempt, pts) in j["snapshot"].items():
            assert pid in final, f"probe {pid} finished before kill {j['kind']}@{j['t']}s and is lost"
            assert final[pid][0] == attempt, (pid, attempt, final[pid][0])
            assert final[pid][1] == pts, pid
    # and every probe the uninterrupted run finished, with the same points
    ref_finished = finished_state(ref)
    assert set(final) == set(ref_finished)
    for pid, (_, pts) in ref_finished.items():
        assert final[pid][1] == pts, pid

    # 0 twice: one 'finished' event per probe; nothing started again once finished; within the
    # finished attempt each step written once (an exact copy from a compaction is one write)
    assert [
        pid for pid, n in Counter(e["probe_id"] for e in events if e["status"] == "finished").items() if n > 1
    ] == []
    for pid, (attempt, _) in final.items():
        started = [e["attempt"] for e in events if e["probe_id"] == pid and e["status"] == "started"]
        assert started.count(attempt) == 1 and max(started) == attempt, (pid, started, attempt)
    raw = store._points.read().to_pylist()
    writes = Counter(
        (r["probe_id"], r["step"], r["attempt"])
        for r in {(r["probe_id"], r["step"], r["attempt"], r["_written_ns"]): r for r in raw}.values()
    )
    twice = [k for k, n in writes.items() if n > 1 and k[0] in final and k[2] == final[k[0]][0]]
    assert twice == []
    # the engine was told each probe once (spend.parquet: one row per probe it was told of)
    spend = pq.read_table(out / "spend.parquet").column("probe_id").to_pylist()
    assert len(spend) == len(set(spend))

    # the same plan, the same decisions, the same spend, probe by probe
    plan, ref_plan = (json.loads((d / "plan.json").read_text()) for d in (out, ref))
    plan.pop("generated_at"), ref_plan.pop("generated_at")
    assert same(plan, ref_plan), json.dumps({"chaos": plan, "reference": ref_plan}, default=str)[:4000]
    assert same(rows(out / "candidates.parquet"), rows(ref / "candidates.parquet"))
    assert same(rows(out / "spend.parquet", WALL), rows(ref / "spend.parquet", WALL))
    assert json.loads((out / "manifest.json").read_text())["status"] == "finished"
