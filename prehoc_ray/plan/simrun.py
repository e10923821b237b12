"""A finished (or interrupted) run directory built in-process from a synthetic portfolio.

What `prehoc-ray run` leaves behind, without Ray: job.yaml, manifest.json, the result store
(points/, probes/), spend.parquet and candidates.parquet, from the simulated backend and the
ask/tell engine. Tests and demos of the plan and the report use it; the execution layer
writes the same files for real.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pyarrow as pa
import yaml

from prehoc_ray.core.ask_tell import ProbeOutcome, drive
from prehoc_ray.core.engine import Engine, EngineSettings, ProbeOrder
from prehoc_ray.core.observations import Observations
from prehoc_ray.io import ResultStore, write_table
from prehoc_ray.io.run_dir import RunDir
from prehoc_ray.sim.backend import SimulatedBackend
from prehoc_ray.sim.synthetic import SyntheticPortfolio, generate_portfolio
from prehoc_ray.spec.job import JobSpec, load_job
from prehoc_ray.types import Regime

T0 = 1_700_000_000.0  # a fixed clock: the fixture is deterministic

TASK_NAMES = {
    Regime.STATIC_SUFFICIENT: "glue-like",
    Regime.DYNAMIC_CRITICAL: "gsm8k-like",
    Regime.NOISE_DOMINANT: "noisy-labels",
}


def _rename(pf: SyntheticPortfolio, mapping: dict[str, str], groups: dict[str, str]) -> SyntheticPortfolio:
    o = pf.observations
    obs = Observations(
        candidate=np.array([mapping[c] for c in o.candidate], dtype=object),
        step=o.step,
        value=o.value,
        seed=o.seed,
        group=np.array([groups[g] for g in o.group], dtype=object),
        final=o.final,
        horizon=o.horizon,
        static=o.static,
    )
    truth = dict(pf.truth)
    truth["candidate"] = np.array([mapping[c] for c in truth["candidate"]], dtype=object)
    truth["group"] = np.array([groups[g] for g in truth["group"]], dtype=object)
    return replace(pf, observations=obs, truth=truth)


@dataclass(frozen=True)
class _StoredBackend:
    """The simulated backend writing to the result store what a Ray probe writes: a 'started'
    event, the points, a 'finished' event with the cost."""

    backend: SimulatedBackend
    store: ResultStore

    def run(self, order: ProbeOrder) -> ProbeOutcome:
        o = order
        self.store.record_probe(o.probe_id, o.candidate, o.seed, o.start_step, o.target_step, "started")
        outcome = self.backend.run(o)
        self.store.append(outcome.rows)
        self.store.record_probe(
            o.probe_id, o.candidate, o.seed, o.start_step, o.target_step, "finished", cost_s=outcome.cost_s
        )
        return outcome


def simulated_spec_dict(
    name: str = "sim-portfolio",
    models_per_task: int = 4,
    horizon: int = 1000,
    probe_seconds: float = 60.0,
    full_finetune_seconds: float | None = None,
    baselines: dict[str, float] | None = None,
    regimes: tuple[Regime, ...] = (Regime.STATIC_SUFFICIENT, Regime.DYNAMIC_CRITICAL, Regime.NOISE_DOMINANT),
) -> dict:
    """A job spec (as a dict) whose candidates are the synthetic portfolio's."""
    tasks = [TASK_NAMES[r] for r in regimes]
    models = [f"m{i:02d}" for i in range(models_per_task)]
    return {
        "name": name,
        "description": "synthetic portfolio (simulated backend)",
        "backend": "simulated",
        "tasks": [{"name": t, "builtin": "synthetic_copy"} for t in tasks],
        "models": [{"name": m, "tiny": {"arch": "llama", "hidden_size": 32}} for m in models],
        "configs": [{"name": "default", "full_steps": horizon}],
        "probe": {"eval_every": 10, "backend": "torch"},
        "budget": {"probe_seconds": probe_seconds, "full_finetune_seconds": full_finetune_seconds},
        "allocation": {"seeds": 3, "initial_steps": 30, "max_depth_fraction": 0.5, "tolerance": 0.02},
        "plan": {"mode": "max", "confidence": 0.8, "baselines": dict(baselines or {})},
    }


def write_simulated_run(
    run_dir: str | Path,
    spec: dict | None = None,
    *,
    seed: int = 1,
    interrupt_after_rounds: int | None = None,
    full_cost_factor: float = 20.0,
) -> JobSpec:
    """Run the engine against a synthetic portfolio and write a run directory; returns the spec.

    interrupt_after_rounds: stop after that many rounds and leave no candidates.parquet (an
    interrupted run: the store holds points and probe events, one probe left 'started').
    full_cost_factor: a full fine-tune step costs this many probe steps (bigger batches, full
    data), so the projected full-run cost is cost_per_step_s x full_steps x the factor.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    spec_d = spec or simulated_spec_dict()
    (RunDir(run_dir).job).write_text(yaml.safe_dump(spec_d, sort_keys=False))
    job = load_job(RunDir(run_dir).job)
    tasks = [t.name for t in job.tasks]
    models = [m.name for m in job.models]
    regime_of = {v: k for k, v in TASK_NAMES.items()}
    regimes = [regime_of.get(t, Regime.DYNAMIC_CRITICAL) for t in tasks]
    horizon = float(job.configs[0].full_steps)
    pf = generate_portfolio(
        n_groups=len(tasks),
        candidates_per_group=len(models),
        n_seeds=job.allocation.seeds,
        horizon=horizon,
        eval_every=job.probe.eval_every,
        probe_depth=horizon * job.allocation.max_depth_fraction,
        tolerance=job.allocation.tolerance,
        regimes=regimes,
        seed=seed,
    )
    groups = {g: tasks[k] for k, g in enumerate(dict.fromkeys(pf.truth["group"]))}
    mapping = {}
    for c, g in zip(pf.truth["candidate"], pf.truth["group"]):
        i = int(str(c).rsplit("-c", 1)[1])
        mapping[c] = f"{groups[g]}:{models[i]}"
    pf = _rename(pf, mapping, groups)
    backend = SimulatedBackend(pf)
    a = job.allocation
    settings = EngineSettings(
        budget=job.budget.probe_seconds,
        seeds=a.seeds,
        eval_every=job.probe.eval_every,
        initial_depth=a.initial_steps,
        growth=a.growth,
        max_depth_fraction=a.max_depth_fraction,
        tolerance=a.tolerance,
        gamma=a.gamma,
        level=a.level,
        n_boot=50,
        slots=a.max_concurrent_probes,
        seed=a.seed,
        objective=a.objective,
        mode=job.plan.mode,
    )
    engine = Engine(backend.candidates(), settings)
    store = ResultStore(run_dir)
    manifest = store.open_manifest(job.spec_hash(), name=job.name, backend=job.backend)
    spend = []
    wall = 0.0

    def log_spend(order: ProbeOrder, outcome: ProbeOutcome) -> None:
        nonlocal wall
        wall += outcome.cost_s / max(1, a.max_concurrent_probes)
        spend.append({**engine.spend_log[-1], "wall_s": outcome.cost_s, "ended_at": T0 + wall})

    done = drive(engine, _StoredBackend(backend, store), max_rounds=interrupt_after_rounds, on_result=log_spend)
    rounds = done.rounds
    interrupted = False
    if not done.finished and (orders := engine.next_round()):
        # killed as the next round began: its first probe is on record as started, never ended
        o = orders[0]
        store.record_probe(o.probe_id, o.candidate, o.seed, o.start_step, o.target_step, "started")
        interrupted = True
    if spend:
        cols = {
            k: [r[k] for r in spend]
            for k in ("round", "candidate", "probe_id", "cost_s", "spent_s", "wall_s", "ended_at")
        }
        write_table(pa.table(cols), RunDir(run_dir).spend)
    if interrupted:
        manifest.with_status("running").save(run_dir)
        return job
    decision = a.objective == "decision"
    gamma = float(engine.gamma_decision if decision else engine.gamma)
    rows = []
    cfg = job.configs[0]
    for r in engine.summary():
        t, m = r["candidate"].split(":")[:2]
        rows.append(
            {
                **r,
                "task": t,
                "model": m,
                "config": cfg.name,
                "full_steps": int(cfg.full_steps),
                "full_cost_s": float(r["cost_per_step_s"]) * cfg.full_steps * full_cost_factor,
                "gamma": gamma,
                "objective": a.objective,
                "metric": "accuracy",
            }
        )
    write_table(pa.Table.from_pylist(rows), RunDir(run_dir).candidates)
    manifest.with_status("finished", rounds=rounds, spent_s=engine.spent).save(run_dir)
    return job
