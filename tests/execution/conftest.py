"""A real local Ray for the execution tests, started once per session.

Ray 2.60 turns token authentication on by default; these tests (and the driver subprocesses
they start against this cluster) run with RAY_AUTH_MODE=disabled on both sides.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from prehoc_ray.core.ask_tell import ProbeOutcome, drive
from prehoc_ray.core.engine import CandidateInfo, Engine, ProbeOrder

os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ray = pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[2]
JOBS = REPO / "jobs"


def child_env() -> dict[str, str]:
    """Environment of a driver subprocess: same auth mode, no inherited RAY_ADDRESS surprises."""
    env = dict(os.environ)
    env["RAY_AUTH_MODE"] = "disabled"
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    env.pop("PREHOC_SIM_OPTIONS", None)
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.fixture(scope="session")
def ray_session():
    """ray.init(num_cpus=2): the cluster every in-process driver and subprocess driver uses."""
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, namespace="prehoc-tests", log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture(scope="session")
def sim_spec():
    from prehoc_ray.spec.job import load_job

    return load_job(JOBS / "simulated.yaml")


class SpecBackend:
    """The spec's simulated curves as a ProbeBackend (what a Ray worker's probe replays)."""

    def __init__(self, spec) -> None:
        from prehoc_ray.execution.simulated import simulation_for

        self.sim = simulation_for(spec)

    def run(self, o: ProbeOrder) -> ProbeOutcome:
        return ProbeOutcome(*self.sim.run(o.candidate, o.seed, o.start_step, o.target_step, o.probe_id))


def reference_engine(spec):
    """The allocation loop in-process against the same simulated curves: what a Ray run of
    `spec` must decide."""
    from prehoc_ray.execution.driver import engine_settings
    from prehoc_ray.execution.simulated import SIM_COST_PER_STEP

    backend = SpecBackend(spec)
    statics = backend.sim.statics
    infos = [
        CandidateInfo(c.id, c.task.name, float(c.config.full_steps), SIM_COST_PER_STEP, dict(statics[c.id]))
        for c in spec.candidate_specs()
    ]
    eng = Engine(infos, engine_settings(spec))
    drive(eng, backend)
    return eng


@pytest.fixture(scope="session")
def reference(sim_spec):
    return reference_engine(sim_spec)


@pytest.fixture(scope="session")
def sim_run(ray_session, sim_spec, tmp_path_factory):
    """One uninterrupted Ray run of jobs/simulated.yaml, shared by the tests that read it."""
    from prehoc_ray.execution.driver import Driver

    run_dir = tmp_path_factory.mktemp("sim") / "run"
    result = Driver(sim_spec, run_dir, spec_path=JOBS / "simulated.yaml").run()
    return result


def copy_run(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst
