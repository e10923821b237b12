"""PrehocScheduler inside a real `tune.Tuner`, over a replayed-curve trainable.

The trainable reports one curve value per training iteration with a checkpoint each time, so
PAUSE / resume is real: a paused trial that resumed from zero would report iteration 1 again.
The plan Tune's run leaves must be the engine's own (a Replay of the full curves: the engine
driven directly), and an interrupted run restored with `Tuner.restore` must reach that same
plan without restarting any trial from zero.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from prehoc_ray.core.engine import EngineSettings
from prehoc_ray.tune import LEDGER_FILE, PLAN_FILE, Ledger, PrehocScheduler, Replay, make_replay_trainable
from tests.tune.conftest import synthetic_curves

pytestmark = [pytest.mark.slow, pytest.mark.ray]

MAX_T = 15
BUDGET = 45
CURVES = synthetic_curves(n_tasks=2, per_task=3, max_t=MAX_T)


class ResultLog:
    """A Tune callback appending (phase, trial, iteration) per result to a file; phase 2 once
    `marker` exists. With interrupt_after=N it creates the marker and sends this process SIGINT
    (Ctrl+C: Tune saves the experiment state and returns) at the N-th result."""

    def __new__(cls, *args, **kwargs):  # a tune.Callback subclass, built when ray.tune is importable
        from ray import tune

        class _ResultLog(tune.Callback):
            def __init__(self, log: str, marker: str, interrupt_after: int | None = None) -> None:
                self.log, self.marker, self.after, self.n = log, marker, interrupt_after, 0

            def on_trial_result(self, iteration, trials, trial, result, **info):
                phase = 2 if os.path.exists(self.marker) else 1
                with open(self.log, "a") as fh:
                    fh.write(
                        json.dumps({"phase": phase, "trial": trial.trial_id, "it": int(result["training_iteration"])})
                        + "\n"
                    )
                self.n += 1
                if phase == 1 and self.after is not None and self.n == self.after:
                    Path(self.marker).touch()
                    os.kill(os.getpid(), signal.SIGINT)

        return _ResultLog(*args, **kwargs)


def _trainable():
    from ray import tune

    return tune.with_resources(make_replay_trainable(CURVES), {"cpu": 0.5})


def _tuner(storage: Path, name: str, callbacks: list):
    from ray import tune

    sched = PrehocScheduler(
        metric="value", mode="max", budget=BUDGET, max_t=MAX_T, group_by=lambda config: config["curve"].split("-")[0]
    )
    tuner = tune.Tuner(
        _trainable(),
        param_space={"curve": tune.grid_search(sorted(CURVES))},
        tune_config=tune.TuneConfig(scheduler=sched, reuse_actors=True),
        run_config=tune.RunConfig(
            storage_path=str(storage), name=name, verbose=0, log_to_file=False, callbacks=callbacks
        ),
    )
    return sched, tuner


def _reference(ledger: Ledger, curve_of: dict[str, str]) -> dict:
    """The engine driven directly over the same trial ids, every order answered from the full curves."""
    full = Ledger()
    for tid, rec in ledger.trials.items():
        full.add_trial(tid, rec.group)
        for k, v in enumerate(CURVES[curve_of[tid]], 1):
            full.add_row(tid, k, v)
    rp = Replay(full, EngineSettings(budget=BUDGET, seeds=1, eval_every=1, initial_depth=3, tolerance=0.02), MAX_T)
    rp.advance()
    assert rp.finished
    return {r["candidate"]: (r["probe_steps"], r["predicted_final"]) for r in rp.engine.summary()}


def _log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_tuner_runs_the_engines_allocation_with_pause_and_resume(ray_local, tmp_path):
    log = tmp_path / "results.jsonl"
    sched, tuner = _tuner(tmp_path, "plain", [ResultLog(str(log), str(tmp_path / "never"))])
    grid = tuner.fit()
    assert not [r.error for r in grid if r.error is not None]
    curve_of = {r.metrics["trial_id"]: r.config["curve"] for r in grid}
    state = sched.state()
    assert state["finished"] and 0 < state["spent"] <= BUDGET
    # Every trial stopped (Tune's run ended), each at the depth the engine probed it to.
    plan = sched.plan()
    assert len(plan) == len(CURVES)
    assert all(r["reached"] == r["probe_steps"] for r in plan)
    assert sum(r["reached"] for r in plan) == state["steps_reported"] == state["spent"]
    # The plan is the engine's: the same as driving it directly over the full curves.
    ref = _reference(Ledger.load(Path(grid.experiment_path) / LEDGER_FILE), curve_of)
    assert {r["candidate"]: (r["probe_steps"], r["predicted_final"]) for r in plan} == ref
    # Paused trials resumed from their checkpoints: each trial's iterations run 1, 2, 3, ...
    # once each, and some went past the initial probe after a pause (a later round).
    its: dict[str, list[int]] = {}
    for e in _log(log):
        its.setdefault(e["trial"], []).append(e["it"])
    assert all(v == list(range(1, len(v) + 1)) for v in its.values())
    assert max(len(v) for v in its.values()) > 3 and state["round"] >= 2
    # One pick per task, the best predicted final; the plan file says the same.
    picks = sched.picks()
    assert set(picks) == {"t0", "t1"}
    for g, tid in picks.items():
        best = max((r for r in plan if r["group"] == g), key=lambda r: r["predicted_final"])
        assert best["trial_id"] == tid and best["pick"]
    saved = PrehocScheduler.read_plan(grid.experiment_path)
    assert saved["picks"] == picks and saved["state"]["finished"]
    assert {c["candidate"]: c["regime"] for c in saved["candidates"]} == {r["candidate"]: r["regime"] for r in plan}


def test_restore_after_interruption_keeps_the_scheduler_state(ray_local, tmp_path):
    log, marker = tmp_path / "results.jsonl", tmp_path / "interrupted"
    # Ctrl+C at the 21st result: after the initial probes (6 x 3 results), so that every trial
    # has checkpoints (Tune resumes a trial from its last one Tune had saved), mid-round 2.
    _, tuner = _tuner(tmp_path, "broken", [ResultLog(str(log), str(marker), interrupt_after=21)])
    tuner.fit()
    assert marker.exists()
    exp = tmp_path / "broken"
    before = Ledger.load(exp / LEDGER_FILE)
    rows_before = sum(len(r.rows) for r in before.trials.values())
    reached_before = {t: r.reached for t, r in before.trials.items()}
    assert 0 < rows_before < BUDGET
    assert (exp / PLAN_FILE).exists() and not PrehocScheduler.read_plan(exp)["state"]["finished"]

    from ray import tune

    restored = tune.Tuner.restore(str(exp), trainable=_trainable())
    grid = restored.fit()
    assert not [r.error for r in grid if r.error is not None]
    curve_of = {r.metrics["trial_id"]: r.config["curve"] for r in grid}
    plan = PrehocScheduler.read_plan(exp)
    st = plan["state"]
    # The restored scheduler (Tune unpickles a blank one) loaded the ledger and replayed it.
    assert st["restores"] == 1 and st["rows_loaded"] >= rows_before
    assert st["finished"] and st["spent"] <= BUDGET
    # No trial started again from zero: a trial that had run continues after its checkpoint.
    first_after: dict[str, int] = {}
    for e in _log(log):
        if e["phase"] == 2:
            first_after.setdefault(e["trial"], e["it"])
    assert first_after, "nothing ran after the restore"
    for tid, it in first_after.items():
        if reached_before.get(tid, 0) > 0:
            assert 1 < it <= reached_before[tid] + 1, (tid, it, reached_before[tid])
    # ... and the run ends where an uninterrupted one does: the engine's own plan.
    ref = _reference(Ledger.load(exp / LEDGER_FILE), curve_of)
    assert {c["candidate"]: (c["probe_steps"], c["predicted_final"]) for c in plan["candidates"]} == ref
    assert sum(c["reached"] for c in plan["candidates"]) == st["spent"]
