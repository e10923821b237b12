"""The driver: the engine's rounds run as Ray probes, with nothing lost.

Per round (core/engine.py explains why decisions are per round):
1. `engine.next_round()` refits every candidate and returns the round's probe orders; the
   fresh summary goes to the metrics, state/candidates.parquet and the slot actors of the
   candidates they serve (execution/pool.py: a pool as large as the probe concurrency, a
   candidate holds a slot while it is probed; settled candidates give theirs back).
2. Orders the store already answers (a 'finished' event) are not run again; orders that
   failed for good before a kill are not retried again. The rest run as Ray tasks, at most
   allocation.max_concurrent_probes at a time, each attempt with its own attempt number;
   a failed attempt (exception, NaN loss, out of memory, a dead worker or node, a timeout) is
   recorded with its reason and retried up to allocation.max_retries times.
   An order starts only when the round's projected spend, with the costs measured so far,
   still fits the budget (execution/admission.py); what never fits is withdrawn at the
   round's end and recorded, and the next round re-plans it (a round that could start
   nothing stops its candidates instead).
3. When the whole round is in, the engine is told every result from the store, in the round's
   order: the rows of finished probes (deduplicated by probe id, the latest attempt wins) and
   the device-seconds charged to them (their failed attempts included), the final failure, or
   the withdrawal. Spend and probes finished show on the progress line as each probe ends.

A killed driver therefore resumes by replaying: the fresh engine asks the same orders (they
depend only on earlier rounds' results, which the store holds), the store answers the finished
ones, and the rest run. Same store contents in, same decisions out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ray
import yaml

from prehoc_ray.core.engine import CandidateInfo, Engine, EngineSettings, ProbeOrder
from prehoc_ray.execution import outputs
from prehoc_ray.execution.admission import CostScale, Estimate, RoundAdmission
from prehoc_ray.execution.cluster import Connection, connect
from prehoc_ray.execution.ledger import probe_history, read_runs, read_withdrawals, record_run, record_withdrawals
from prehoc_ray.execution.pool import CandidatePool, pool_size
from prehoc_ray.execution.probes import probe_task, spec_payload, static_task
from prehoc_ray.execution.progress import Progress
from prehoc_ray.execution.resources import ProbeResources, infeasible_reason, probe_resources
from prehoc_ray.execution.telemetry import RunMetrics
from prehoc_ray.execution.train_probe import train_probe_task
from prehoc_ray.io.errors import ManifestError
from prehoc_ray.io.history import load_history
from prehoc_ray.io.manifest import RunManifest, spec_hash
from prehoc_ray.io.run_dir import RunDir
from prehoc_ray.io.store import ResultStore
from prehoc_ray.report.finish import write_outputs
from prehoc_ray.runner.checkpoint import private_dir
from prehoc_ray.spec.job import JobSpec
from prehoc_ray.spec.redact import redact_env_vars, write_redacted_copy

# Before a probe has measured a candidate's cost, the engine needs a guess (device-seconds
# per step per seed): it decides whether the initial probes fit the budget. Calibrated on this
# project's 2-core machine, one thread per probe, two probes side by side, probe cost charged
# as measured (set-up and evaluations included): a ~0.16M-parameter tiny Llama at 8 x 96
# tokens ~0.1 s/step; SmolLM2-135M at 4 x 96 tokens ~8 s/step. A GPU is far faster: the first
# round's measurement replaces the guess.
PRIOR_BASE_S = 0.05
PRIOR_S_PER_PARAM_TOKEN = 1.5e-10
STATIC_TIMEOUT_S = 1800.0


class RunDirError(ValueError):
    """The run directory cannot be used as asked (already holds a run, another spec, ...)."""


class InfeasibleError(RuntimeError):
    """No node of the cluster can ever run one probe of this spec."""


@dataclass
class RunResult:
    run_dir: Path
    engine: Engine
    candidates: list[dict]
    rounds: int = 0
    submitted: int = 0  # attempts this driver started
    reused: int = 0  # orders answered by the store (finished before a kill)
    failed_attempts: int = 0
    final_failures: int = 0
    wall_s: float = 0.0
    overhead_s: float = 0.0  # driver time outside waiting for probes
    plan_written: bool = False
    connection: str = ""
    nodes: dict[str, int] = field(default_factory=dict)  # node id -> attempts that ran there
    # wall seconds per phase: connect, static, loop (of which wait: blocked in ray.wait,
    # engine: next_round/refit, tell: reading the store and telling), outputs, plan
    timings: dict[str, float] = field(default_factory=dict)


def engine_settings(spec: JobSpec) -> EngineSettings:
    a = spec.allocation
    return EngineSettings(
        budget=float(spec.budget.probe_seconds),
        seeds=a.seeds,
        eval_every=spec.probe.eval_every,
        initial_depth=a.initial_steps,
        growth=a.growth,
        max_depth_fraction=a.max_depth_fraction,
        tolerance=a.tolerance,
        gamma=a.gamma,
        level=a.level,
        slots=a.max_concurrent_probes,
        prior_cost_margin=a.prior_cost_margin,
        seed=a.seed,
        objective=a.objective,
        mode=spec.plan.mode,
    )


def prior_cost_per_step(spec: JobSpec, cand, static: dict[str, float], devices: float) -> float:
    if spec.backend == "simulated":
        from prehoc_ray.execution.simulated import SIM_COST_PER_STEP

        return SIM_COST_PER_STEP
    params = static.get("static_base_params", 0.0) or 0.0
    tokens = cand.config.batch_size * cand.config.max_seq_len
    return (PRIOR_BASE_S + PRIOR_S_PER_PARAM_TOKEN * params * tokens) * devices


def _order_dict(o: ProbeOrder) -> dict:
    return asdict(o)


class Driver:
    def __init__(
        self,
        spec: JobSpec,
        run_dir: str | Path,
        *,
        spec_path: str | Path | None = None,
        resume: bool = False,
        address: str | None = None,
        sim: dict | None = None,
        progress: Progress | None = None,
        on_probe_end: Callable[[dict], None] | None = None,
        actor_restarts: int = 3,
        max_rounds: int = 10_000,
        num_cpus: int | None = None,
    ) -> None:
        self.spec = spec
        self.run_dir = Path(run_dir).resolve()
        self.spec_path = Path(spec_path) if spec_path else None
        self.resume = resume
        self.address = address
        self.sim = dict(sim or {})
        self.progress = progress or Progress(spec.budget.probe_seconds, len(spec.candidate_specs()))
        self.on_probe_end = on_probe_end
        self.actor_restarts = actor_restarts
        self.max_rounds = max_rounds
        self.num_cpus = num_cpus
        self.res: ProbeResources = probe_resources(spec.probe)
        self.cands = {c.id: c for c in spec.candidate_specs()}
        # Past runs of the tasks (spec.history): read now, so a bad file fails before Ray starts.
        self.history = load_history(spec.history) if spec.history else None
        self.store = ResultStore(self.run_dir)
        self.metrics = RunMetrics(spec.name)
        self.pool: CandidatePool | None = None
        self.stats = RunResult(self.run_dir, None, [])  # type: ignore[arg-type]
        self._waiting_s = 0.0
        self._metric_name = "value"
        self._scale = CostScale()  # how far the engine's costs are off, learned as probes end

    # ----- the run ---------------------------------------------------------------------------
    def run(self) -> RunResult:
        t0 = time.perf_counter()
        self._check_run_dir()  # before anything starts or is written
        manifest: RunManifest | None = None
        conn: Connection | None = None
        status, error = "failed", ""
        progress = self.progress
        try:
            t = time.perf_counter()
            conn = connect(
                self.address,
                spec_address=self.spec.cluster.address,
                runtime_env=self.spec.cluster.runtime_env,
                namespace=self.spec.cluster.namespace,
                num_cpus=self.num_cpus,
            )
            self.stats.connection = conn.address
            self._time("connect", t)
            why = infeasible_reason(self.res, ray.nodes())
            if why:
                raise InfeasibleError(why)
            manifest = self._open_run_dir()
            with progress:
                progress.log(
                    f"job {self.spec.name}: {len(self.cands)} candidates, budget {self.spec.budget.probe_seconds:g} "
                    f"{self.res.device_kind}-seconds, probes of {self.res.describe()}, Ray: {conn.address}, "
                    f"run dir {self.run_dir}" + (" (resuming)" if self.resume else "")
                )
                self._payload = ray.put(spec_payload(self.spec))
                t = time.perf_counter()
                statics = self._static_signals()
                self._time("static", t)
                engine = Engine(self._infos(statics), engine_settings(self.spec), history=self.history)
                self.stats.engine = engine
                t = time.perf_counter()
                self._start_actors(engine)
                self._time("actors", t)
                t = time.perf_counter()
                self._loop(engine)
                self._time("loop", t)
                self._finish(engine, t0)
            status = "finished"
            return self.stats
        except KeyboardInterrupt:
            status, error = "cancelled", "interrupted"
            raise
        except BaseException as exc:
            error = " ".join(str(exc).split())[:500]
            raise
        finally:
            self._stop_actors()
            if manifest is not None:
                try:
                    info = {
                        "spent_s": self.stats.engine.spent if self.stats.engine else 0.0,
                        "error": error,
                        "wall_s": time.perf_counter() - t0,
                    }
                    manifest.with_status(status, **info).save(self.run_dir)
                except Exception:
                    pass
            if conn is not None:
                conn.close()

    def _check_run_dir(self) -> None:
        existing = RunManifest.load(self.run_dir)
        if existing is None:
            return
        if not self.resume:
            raise RunDirError(
                f"{self.run_dir}: already holds a run (manifest.json); pass --resume to continue it, "
                "or choose another --out"
            )
        if existing.spec_hash != spec_hash(self.spec):
            raise ManifestError(
                f"{RunManifest.path(self.run_dir)}: this run directory belongs to spec {existing.spec_hash[:12]}, the spec "
                f"given hashes to {spec_hash(self.spec)[:12]}; --resume needs the same spec (use a new --out to run this one)"
            )

    def _time(self, phase: str, since: float) -> None:
        self.stats.timings[phase] = self.stats.timings.get(phase, 0.0) + time.perf_counter() - since

    def _open_run_dir(self) -> RunManifest:
        existing = RunManifest.load(self.run_dir)
        # Owner-only when created here: checkpoints are read back from it (runner/checkpoint.py).
        private_dir(self.run_dir)
        # ManifestError (a ValueError) when the directory belongs to another spec
        manifest = self.store.open_manifest(spec_hash(self.spec), job=self.spec.name, backend=self.spec.backend)
        if existing is None and self.resume:
            self.progress.log(f"{self.run_dir}: nothing to resume, starting a new run")
        job_copy = RunDir(self.run_dir).job
        if self.spec_path is not None and self.spec_path.is_file():
            if not job_copy.exists() or job_copy.resolve() != self.spec_path.resolve():
                write_redacted_copy(self.spec_path, job_copy)  # env_vars values: <redacted>
        else:
            job_copy.write_text(yaml.safe_dump(redact_env_vars(spec_payload(self.spec)), sort_keys=False))
        running = manifest.with_status("running")  # a resumed run is running again
        running.save(self.run_dir)
        return running

    # ----- static signals ----------------------------------------------------------------------
    def _static_signals(self) -> dict[str, dict[str, float]]:
        statics = outputs.read_static(self.run_dir)
        missing = [cid for cid in self.cands if cid not in statics]
        if not missing:
            return statics
        opts = {"num_cpus": self.res.num_cpus}
        if self.res.num_gpus > 0:
            opts["num_gpus"] = self.res.num_gpus
        refs = {
            static_task.options(name=f"prehoc-static:{cid}", **opts).remote(self._payload, cid, self.res.num_cpus): cid
            for cid in missing
        }
        self.progress.log(f"static signals for {len(missing)} candidate(s)")
        deadline = time.monotonic() + STATIC_TIMEOUT_S
        pending = list(refs)
        while pending and time.monotonic() < deadline:
            ready, pending = ray.wait(pending, num_returns=1, timeout=5.0)
            for ref in ready:
                cid = refs[ref]
                try:
                    statics[cid] = ray.get(ref, timeout=60)
                except Exception as exc:  # the candidate still probes; its static signals stay unknown
                    self.progress.log(f"static signals of {cid} failed: {' '.join(str(exc).split())[:200]}")
        for ref in pending:
            ray.cancel(ref, force=True)
            self.progress.log(f"static signals of {refs[ref]} timed out")
        outputs.write_static(self.run_dir, statics)
        return statics

    def _infos(self, statics: dict[str, dict[str, float]]) -> list[CandidateInfo]:
        out = []
        for cid, c in self.cands.items():
            st = statics.get(cid, {})
            out.append(
                CandidateInfo(
                    cid,
                    c.task.name,
                    float(c.config.full_steps),
                    prior_cost_per_step(self.spec, c, st, self.res.devices),
                    dict(st),
                )
            )
        return out

    # ----- actors ------------------------------------------------------------------------------
    def _start_actors(self, engine: Engine) -> None:
        tags = {
            cid: {"task": c.task.name, "model": c.model.name, "config": c.config.name} for cid, c in self.cands.items()
        }
        size = pool_size(len(self.cands), self.spec.allocation.max_concurrent_probes)
        # The engine's points are what it was told from the store: a slot loads them instead of
        # reading the whole store again at every switch of candidate.
        self.pool = CandidatePool(
            str(self.run_dir),
            self.spec.name,
            self.spec.cluster.namespace,
            size,
            tags,
            points_of=engine.points_of,
            max_restarts=self.actor_restarts,
        )
        self.pool.start()

    def _stop_actors(self) -> None:
        if self.pool is not None:
            self.pool.stop()

    # ----- rounds ------------------------------------------------------------------------------
    def _loop(self, engine: Engine) -> None:
        for _ in range(self.max_rounds):
            t = time.perf_counter()
            orders = engine.next_round()
            self._time("engine", t)
            t = time.perf_counter()
            self._publish(engine)
            self._time("publish", t)
            if not orders:
                return
            self.stats.rounds += 1
            self._run_round(engine, orders)
            self.store.maybe_compact()
        raise RuntimeError(f"the run did not settle in {self.max_rounds} rounds")

    def _publish(self, engine: Engine) -> None:
        summary = engine.summary()
        outputs.write_snapshot(self.run_dir, summary, engine.round)
        settled = engine.settled()
        if self.pool is not None:
            self.pool.publish(summary, settled)
            self.metrics.slots(len(self.pool.router.serving()), self.pool.stats.loads)
            self.metrics.candidate_risks(summary, self.pool.tags)
        self.metrics.candidates([r["regime"] for r in summary], len(settled))
        self.metrics.budget(engine.spent, engine.budget_left)
        self.progress.update(round=engine.round, spent=engine.spent, settled=len(settled))

    def _run_round(self, engine: Engine, orders: list[ProbeOrder]) -> None:
        a = self.spec.allocation
        hist = probe_history(self.store)
        replayed = read_withdrawals(self.run_dir)
        adm = RoundAdmission(
            engine.settings.budget,
            engine.spent,
            self._scale,
            devices=self.res.devices,
            wall_clock=self.spec.backend != "simulated",
        )
        by_id = {o.probe_id: o for o in orders}
        attempts: dict[str, int] = {}
        withdrawn: dict[str, str] = {}  # probe id -> stop reason ("" none)
        answered = 0
        for o in orders:
            pid = o.probe_id
            est = Estimate(*engine.order_cost_estimate(o))
            adm.charge(hist.finished_cost.get(pid, 0.0) + hist.failed_cost(pid))
            if pid in hist.finished_cost or hist.is_final_failure(pid, a.max_retries):
                answered += 1
                if pid in hist.finished_cost:
                    self._scale.observe(est, hist.finished_cost[pid])
            elif pid in replayed:  # this round ran before a kill and ended without it
                withdrawn[pid] = replayed[pid]
            else:
                adm.add(pid, o.candidate, est)
                attempts[pid] = hist.next_attempt(pid)
        self.stats.reused += answered
        if self.stats.reused:
            self.progress.update(reused=self.stats.reused)
        self._show_spend(adm, engine)
        failures = {o.probe_id: hist.failed_attempts(o.probe_id) for o in orders}
        inflight: dict = {}
        limit = a.max_concurrent_probes
        timeout = a.probe_timeout_s + (60.0 if self.res.gang else 0.0)
        while adm.waiting or inflight:
            now = time.monotonic()
            while len(inflight) < limit and (pid := adm.next_admissible(now)) is not None:
                adm.start(pid, now)
                inflight[self._submit(by_id[pid], attempts[pid])] = (by_id[pid], attempts[pid], now)
            if not inflight:
                break  # nothing runs and nothing waiting fits: the round ends without it
            self.progress.update(running=len(inflight), queued=adm.waiting)
            t_wait = time.perf_counter()
            ready, _ = ray.wait(list(inflight), num_returns=1, timeout=1.0)
            if ready:
                rest = [r for r in inflight if r not in ready]
                more, _ = ray.wait(rest, num_returns=len(rest), timeout=0) if rest else ([], [])
                ready = list(ready) + list(more)
            self._waiting_s += time.perf_counter() - t_wait
            self._time("wait", t_wait)
            now = time.monotonic()
            ended = [(ref, self._result(ref, inflight[ref])) for ref in ready]
            for ref, (o, attempt, t_sub) in list(inflight.items()):
                if ref not in ready and now - t_sub > timeout:
                    ray.cancel(ref, force=True)
                    ended.append((ref, self._failed(o, attempt, f"timed out after {timeout:g}s", now - t_sub)))
            for ref, out in ended:
                o, attempt, _ = inflight.pop(ref)
                c = self.cands[o.candidate]
                ok = out.get("status") == "finished"
                cost = float(out.get("cost_s") or 0.0)
                self.metrics.probe_ended(c.task.name, c.model.name, ok, out.get("wall_s"))
                node = out.get("node_id")
                if node:
                    self.stats.nodes[node] = self.stats.nodes.get(node, 0) + 1
                if ok:
                    adm.end(o.probe_id, cost, finished=True)
                    if out.get("metric"):
                        self._metric_name = out["metric"]
                    rows = [{"seed": o.seed, "step": r["step"], "value": r["value"]} for r in out.get("rows", [])]
                    self._pool_ended(o.candidate, rows)
                    self.progress.update(finished=self.progress.snap.finished + 1)
                else:
                    self._pool_ended(o.candidate, [])
                    self._record_failure(o, attempt, out)
                    failures[o.probe_id] += 1
                    self.stats.failed_attempts += 1
                    self.progress.update(failed=self.stats.failed_attempts)
                    final = not out.get("retryable", True) or failures[o.probe_id] > a.max_retries
                    self.progress.log(
                        f"probe {o.probe_id} attempt {attempt} failed: {out.get('reason')}"
                        + (" (giving up)" if final else " (retrying)")
                    )
                    adm.end(o.probe_id, cost, finished=False, retry=not final)
                    attempts[o.probe_id] = attempt + 1
                self._show_spend(adm, engine)
                if self.on_probe_end is not None:
                    self.on_probe_end({**out, "probe_id": o.probe_id, "attempt": attempt})
        withdrawn.update(self._withdraw_rest(adm, by_id, ran=answered > 0 or adm.started > 0))
        self.progress.update(running=0, queued=0)
        t = time.perf_counter()
        self._tell(engine, orders, withdrawn)
        self._time("tell", t)

    def _withdraw_rest(self, adm: RoundAdmission, by_id: dict[str, ProbeOrder], ran: bool) -> dict[str, str]:
        """The orders the budget could not pay, withdrawn and recorded (a resumed driver replays
        them). When the round ran nothing at all, their candidates stop: asking for the same
        work again would never end."""
        if not adm.waiting:
            return {}
        left = max(0.0, adm.budget - adm.spent)
        cands = list(dict.fromkeys(by_id[pid].candidate for pid in adm.waiting_keys()))
        stops = {}
        if not ran:
            for cid in cands:
                need = adm.increment_estimate(cid)
                stops[cid] = (
                    f"probe budget spent: its next probe (about {need:.3g} device-s at the costs measured so "
                    f"far) does not fit the {left:.3g} device-s left"
                )
        out = {pid: stops.get(by_id[pid].candidate, "") for pid in adm.withdraw_waiting()}
        record_withdrawals(self.run_dir, out)
        self.progress.log(
            f"round {by_id[next(iter(out))].round + 1}: {len(out)} probe(s) of {len(cands)} candidate(s) not "
            f"started, the budget left ({left:.1f} device-s) cannot pay them at the measured costs; "
            + ("their candidates stop" if stops else "the next round re-plans them")
        )
        return out

    def _show_spend(self, adm: RoundAdmission, engine: Engine) -> None:
        """Spend as probes end (the engine hears of it at the round's end)."""
        self.progress.update(spent=adm.spent)
        self.metrics.budget(adm.spent, engine.settings.budget - adm.spent)

    def _pool_ended(self, cid: str, rows: list[dict]) -> None:
        if self.pool is not None:
            self.pool.ended(cid, rows)

    def _submit(self, o: ProbeOrder, attempt: int):
        c = self.cands[o.candidate]
        if self.pool is not None:
            self.pool.acquire(o.candidate)
        self.metrics.probe_started(c.task.name, c.model.name)
        self.stats.submitted += 1
        od = _order_dict(o)
        name = f"prehoc-probe:{o.candidate}:s{o.seed}"
        if self.res.gang:
            return train_probe_task.options(name=name).remote(
                self._payload,
                str(self.run_dir),
                od,
                attempt,
                self.res,
                self.sim,
                float(self.spec.allocation.probe_timeout_s),
            )
        return probe_task.options(name=name, **self.res.task_options()).remote(
            self._payload, str(self.run_dir), od, attempt, self.res.devices, self.sim, self.res.num_cpus
        )

    def _result(self, ref, entry) -> dict:
        o, attempt, t_sub = entry
        try:
            return ray.get(ref, timeout=60)
        except ray.exceptions.OutOfMemoryError as exc:
            return self._failed(
                o,
                attempt,
                f"out of memory (Ray's memory monitor killed the worker): {_short(exc)}",
                time.monotonic() - t_sub,
            )
        except ray.exceptions.TaskCancelledError:
            return self._failed(o, attempt, "cancelled", time.monotonic() - t_sub)
        except (
            ray.exceptions.WorkerCrashedError,
            ray.exceptions.NodeDiedError,
            ray.exceptions.ActorDiedError,
            ray.exceptions.LocalRayletDiedError,
            ray.exceptions.ObjectLostError,
        ) as exc:
            return self._failed(
                o, attempt, f"worker died ({type(exc).__name__}): {_short(exc)}", time.monotonic() - t_sub
            )
        except ray.exceptions.RayError as exc:
            return self._failed(o, attempt, f"{type(exc).__name__}: {_short(exc)}", time.monotonic() - t_sub)

    def _failed(self, o: ProbeOrder, attempt: int, reason: str, elapsed: float) -> dict:
        # An attempt Ray lost (dead worker, timeout, cancel) is charged the wall seconds since it
        # was submitted. Not on the simulated backend: its costs are simulated (admission's
        # wall_clock), so charging wall seconds would let a killed worker change the plan.
        cost = 0.0 if self.spec.backend == "simulated" else max(0.0, elapsed) * self.res.devices
        return {
            "status": "failed",
            "reason": reason,
            "retryable": True,
            "cost_s": cost,
            "wall_s": elapsed,
            "probe_id": o.probe_id,
            "candidate": o.candidate,
            "seed": o.seed,
            "attempt": attempt,
            "start_step": o.start_step,
            "target_step": o.target_step,
            "devices": self.res.devices,
            "ended_at": time.time(),
        }

    def _record_failure(self, o: ProbeOrder, attempt: int, out: dict) -> None:
        from prehoc_ray.execution.ledger import FINAL_PREFIX

        reason = str(out.get("reason") or "unknown failure")
        if not out.get("retryable", True) and not reason.startswith(FINAL_PREFIX):
            reason = FINAL_PREFIX + reason
        cost = float(out.get("cost_s") or 0.0)
        self.store.record_probe(
            o.probe_id,
            o.candidate,
            o.seed,
            o.start_step,
            o.target_step,
            "failed",
            reason=reason,
            cost_s=cost,
            attempt=attempt,
        )
        record_run(
            self.run_dir,
            {
                **out,
                "probe_id": o.probe_id,
                "candidate": o.candidate,
                "seed": o.seed,
                "attempt": attempt,
                "start_step": o.start_step,
                "target_step": o.target_step,
                "reason": reason,
                "status": "failed",
            },
        )

    def _tell(self, engine: Engine, orders: list[ProbeOrder], withdrawn: dict[str, str]) -> None:
        """The round's results, from the store, in the round's order (see the module doc)."""
        from prehoc_ray.execution.ledger import finished_rows

        hist = probe_history(self.store)
        done = {o.probe_id for o in orders if o.probe_id in hist.finished_cost}
        rows = finished_rows(self.store, done)
        for o in orders:
            pid = o.probe_id
            if pid in done:
                engine.tell(o, rows[pid], hist.finished_cost[pid] + hist.failed_cost(pid))
            elif pid in withdrawn:
                engine.withdraw(o, stop=withdrawn[pid] or None, cost_s=hist.failed_cost(pid))
            else:
                reason = hist.last_reason(pid) or "no result recorded"
                engine.tell_failure(o, reason, hist.failed_cost(pid))
                self.stats.final_failures += 1
        self.progress.update(spent=engine.spent)
        self.metrics.budget(engine.spent, engine.budget_left)

    # ----- the end -----------------------------------------------------------------------------
    def _finish(self, engine: Engine, t0: float) -> None:
        runs = read_runs(self.run_dir)
        metric = next(
            (r["metric"] for r in runs if r.get("status") == "finished" and r.get("metric")), self._metric_name
        )
        # The price the allocation objective compares a probe's value with: of prediction risk
        # (objective "prediction") or of regret (objective "decision").
        if self.spec.allocation.objective == "decision":
            gamma = engine.gamma_decision
        else:
            gamma = engine.gamma
        t = time.perf_counter()
        rows = outputs.candidate_rows(self.spec, engine.summary(), gamma, runs, metric)
        outputs.write_candidates(self.run_dir, rows)
        outputs.write_spend(self.run_dir, outputs.spend_rows(engine.spend_log, runs))
        self.stats.candidates = rows
        self._time("outputs", t)
        t = time.perf_counter()
        write_outputs(self.run_dir, self.spec)
        self.stats.plan_written = True
        self._time("plan", t)
        self.stats.wall_s = time.perf_counter() - t0
        self.stats.overhead_s = max(0.0, self.stats.wall_s - self._waiting_s)
        self.progress.refresh(force=True)


def _short(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300]


def run_job(spec: JobSpec, run_dir: str | Path, **kwargs) -> RunResult:
    return Driver(spec, run_dir, **kwargs).run()
