"""PrehocScheduler: prehoc-ray's probe allocation as a Ray Tune TrialScheduler.

Why: a Ray Tune user already has a trainable, a search space and a cluster. Dropping this
scheduler into `tune.TuneConfig(scheduler=...)` turns the Tune run into prehoc-ray's probe
phase: every trial is a candidate fine-tune, trials of the same task compete, and the
engine (core/engine.py, the same ask/tell allocator as `prehoc-ray run`) decides which trial
is worth more training steps, pausing the rest. What comes out is the plan: per task, the
trial to train in full, every trial's predicted final with an interval, its regime and
P(best in its task). Decisions are Tune's constants (CONTINUE / PAUSE / STOP), as a
syne-tune scheduler or an Optuna pruner returns them; the class only translates.

How engine rounds map onto Tune's per-result callbacks:

- One trial = one candidate, probed with one seed (the trial itself). Its task is
  `group_by(config)` (a config key, a "/"-separated path into nested config, or a callable);
  without one, all trials form one task.
- A step is `result[time_attr]` (default `training_iteration`: one report = one step).
  `max_t` is the full run's length in those units (the horizon the engine predicts the final
  at), and `budget` is in the same units summed over trials: a budget of 300 buys 300
  training iterations in all, whichever trials run them. (Wall-clock time would make the
  decisions depend on the machine; iterations keep a restored run on the same path.)
- An engine order (candidate, seed 0, start -> target) means "let this trial run until it
  reports a step >= target". While a trial has an open order, its results get CONTINUE. The
  result that reaches the target is told to the engine (its rows in (start, target], costing
  target - start); the trial then gets PAUSE (Tune saves its last reported checkpoint) unless
  the engine's next round orders it on, which gets CONTINUE.
- A round closes when its last order is told; `Engine.next_round()` then gives the next
  orders. Paused trials with an order are handed back by `choose_trial_to_run` and resume
  from their checkpoint. Trials without one stay paused: a soft stop (out of contention,
  settled) is revisited by the engine every round, so they may still be resumed.
- STOP: the candidate is stopped for good (probe cap, budget, a failed probe), or the engine
  has finished (then every paused trial is stopped too, and Tune's run ends). While Tune's
  searcher may still add trials, a finished engine pauses instead: a new trial rebuilds the
  engine (a replay of everything reported so far, prehoc_ray/tune/ledger.py) and may reopen
  the contest.
- Tune starts every PENDING trial on its own; one without an order (the budget could not pay
  its initial probe, or it arrived late) is paused at its first result, which is kept.
- A trial that ends before its order's target (its function returned, it errored, a user's
  stopper) counts with the rows it reached; its candidate then stops (a failed probe).

Trainables must report a checkpoint with every result (as for PBT): a paused trial resumes
from its latest checkpoint and, without one, starts again from zero.

Save and restore: Tune pickles the scheduler once, when the Tuner is built, and
`Tuner.restore` unpickles that blank copy (tune/impl/tuner_internal.py); the controller's own
experiment state does not include the scheduler. So the scheduler keeps its evidence itself:
the ledger (trials, tasks, reported rows, ends) is appended to `prehoc_scheduler.jsonl` in the
experiment's driver staging directory, which Tune syncs to the experiment directory with its
own state and downloads again before a restore re-adds the trials. The first `on_trial_add` of
a restored run finds the file, loads it and replays it through a fresh engine, which reaches
the state it had (rounds, spend, open orders): the engine is deterministic given what it is
told. Restored trials the engine does not want running are put back to PAUSED before Tune
starts them, and the others resume from their checkpoints. `save(path)` / `restore(path)`
(TrialScheduler's API) write and read the same ledger.

The plan: `plan()` (one row per trial: Engine.summary()'s prediction, interval, regime,
p_best and stop reason, plus the trial id and whether it is its task's pick) and `picks()`
(task -> trial id), also written to `prehoc_plan.json` in the experiment directory after every
round and when the engine finishes.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ray.tune.experiment import Trial
from ray.tune.schedulers import TrialScheduler

from prehoc_ray.core.engine import EngineSettings
from prehoc_ray.tune.ledger import Ledger, Replay

if TYPE_CHECKING:
    from ray.tune.execution.tune_controller import TuneController

logger = logging.getLogger(__name__)

LEDGER_FILE = "prehoc_scheduler.jsonl"
PLAN_FILE = "prehoc_plan.json"
NO_GROUP = "all"


class PrehocScheduler(TrialScheduler):
    """prehoc-ray's allocation over Tune trials (module docstring: the mapping, save/restore).

    metric / mode: the reported metric and whether larger ("max") is better; given here or in
    TuneConfig. budget: training steps (units of `time_attr`) for all trials together. max_t:
    a full run's length in those units. group_by: the task of a trial (config key, "a/b" path,
    or callable(config) -> str). eval_every: steps between two reports. initial_depth: the
    first probe of every trial (at least 3 reports). tolerance: the regret, in metric units, a
    pick may be off by. engine: further EngineSettings fields (e.g. objective="prediction").
    """

    _supports_buffered_results = False  # a PAUSE must land on the result that reached the target

    def __init__(
        self,
        *,
        budget: float,
        max_t: int,
        metric: str | None = None,
        mode: Literal["max", "min"] | None = None,
        group_by: str | Callable[[dict], Any] | None = None,
        time_attr: str = "training_iteration",
        eval_every: int = 1,
        initial_depth: int | None = None,
        tolerance: float = 0.02,
        seed: int = 0,
        engine: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if mode is not None and mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        if not (budget > 0 and max_t >= 1 and eval_every >= 1):
            raise ValueError(f"need budget > 0, max_t >= 1 and eval_every >= 1 (got {budget}, {max_t}, {eval_every})")
        self._metric = metric
        self._mode = mode
        self.budget = float(budget)
        self.max_t = int(max_t)
        self.group_by = group_by
        self.time_attr = time_attr
        self.eval_every = int(eval_every)
        self.initial_depth = int(initial_depth if initial_depth is not None else 3 * self.eval_every)
        if self.initial_depth > self.max_t:
            raise ValueError(f"initial_depth {self.initial_depth} is past max_t {self.max_t}")
        self.tolerance = float(tolerance)
        self.seed = int(seed)
        self.engine_overrides = dict(engine or {})
        self.settings()  # invalid engine settings fail here, not at the first result
        self._ledger = Ledger()
        self._replay: Replay | None = None
        self._dir: Path | None = None  # the experiment's driver staging directory, once known
        self._attached = False
        self._experiment_path: str | None = None  # where Tune syncs that directory to (ResultGrid.experiment_path)
        self._restores = 0  # how many times a ledger was loaded (Tuner.restore or restore())
        self._rows_loaded = 0
        self._warned_no_checkpoint = False

    # ----- configuration ----------------------------------------------------------------------
    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        if (self._metric and metric) or (self._mode and mode):
            return False  # given twice: Tune reports the conflict
        self._metric = self._metric or metric
        self._mode = self._mode or mode
        return True

    def settings(self) -> EngineSettings:
        """The engine's settings: one seed per candidate, unit cost per step, exact prior."""
        kw: dict[str, Any] = dict(
            budget=self.budget,
            seeds=1,
            eval_every=self.eval_every,
            initial_depth=self.initial_depth,
            tolerance=self.tolerance,
            mode=self._mode or "max",
            seed=self.seed,
        )
        kw.update(self.engine_overrides)
        return EngineSettings(**kw)

    def _group(self, config: dict) -> str:
        g = self.group_by
        if g is None:
            return NO_GROUP
        if callable(g):
            return str(g(config))
        if g in config:
            return str(config[g])
        node: Any = config
        for part in str(g).split("/"):
            if not isinstance(node, dict) or part not in node:
                raise KeyError(f"group_by={g!r}: no such key in the trial config {sorted(config)}")
            node = node[part]
        return str(node)

    # ----- Tune callbacks ---------------------------------------------------------------------
    def on_trial_add(self, tune_controller: TuneController, trial: Trial) -> None:
        if not self._attached:
            self._attach(trial)
        tid = trial.trial_id
        if self._ledger.add_trial(tid, self._group(trial.config)):
            self._replay = None  # a new candidate: the engine is rebuilt (replayed) when next needed
            return
        # A trial the ledger knows: a restored run re-adding it. If it ran before and the engine
        # does not want it running now, it waits paused as it was, instead of Tune starting it
        # and running one more iteration before the scheduler can pause it.
        rec = self._ledger.trials[tid]
        if trial.status == Trial.PENDING and rec.rows and rec.ended is None:
            rp = self._ensure()
            if rp is not None and tid not in rp.open:
                trial.set_status(Trial.PAUSED)

    def on_trial_result(self, tune_controller: TuneController, trial: Trial, result: dict) -> str:
        tid = trial.trial_id
        if tid not in self._ledger.trials:
            self.on_trial_add(tune_controller, trial)
        self._record(tid, result)
        rp = self._ensure()
        if rp is None:
            return TrialScheduler.CONTINUE
        new_round = rp.advance()
        if new_round or rp.finished:
            self._write_plan()
        if rp.finished and self._searcher_done(tune_controller):
            self._stop_waiting(tune_controller, exclude=tid)
            return TrialScheduler.STOP
        if tid in rp.open:
            return TrialScheduler.CONTINUE
        if not rp.wants_more(tid) and self._searcher_done(tune_controller):
            return TrialScheduler.STOP
        if not self._warned_no_checkpoint and not result.get("should_checkpoint", False) and trial.checkpoint is None:
            self._warned_no_checkpoint = True
            logger.warning(
                "PrehocScheduler pauses trial %s, which reported no checkpoint: it will start again from "
                "zero when resumed. Report a checkpoint with every result (tune.report(..., checkpoint=)).",
                tid,
            )
        return TrialScheduler.PAUSE

    def on_trial_complete(self, tune_controller: TuneController, trial: Trial, result: dict) -> None:
        tid = trial.trial_id
        if tid not in self._ledger.trials:
            return
        if result:
            self._record(tid, result)
        self._ledger.end(tid, "completed" if result.get("done") else "stopped")
        self._after_end(tune_controller)

    def on_trial_error(self, tune_controller: TuneController, trial: Trial) -> None:
        if trial.trial_id in self._ledger.trials:
            self._ledger.end(trial.trial_id, "errored")
            self._after_end(tune_controller)

    def on_trial_remove(self, tune_controller: TuneController, trial: Trial) -> None:
        if trial.trial_id in self._ledger.trials:
            self._ledger.end(trial.trial_id, "removed")

    def choose_trial_to_run(self, tune_controller: TuneController) -> Trial | None:
        rp = self._ensure()
        trials = tune_controller.get_trials()
        if rp is None:
            return next((t for t in trials if t.status == Trial.PENDING), None)
        if rp.finished and self._searcher_done(tune_controller):
            self._stop_waiting(tune_controller)
            return None
        for status in (Trial.PAUSED, Trial.PENDING):
            for t in trials:
                if t.status == status and t.trial_id in rp.open:
                    return t
        # Fresh trials Tune will start anyway (the engine has not ordered them yet): oldest first.
        for t in trials:
            rec = self._ledger.trials.get(t.trial_id)
            if t.status == Trial.PENDING and (rec is None or not rec.rows):
                return t
        return None

    def debug_string(self) -> str:
        rp = self._replay
        if rp is None:
            return f"PrehocScheduler: {len(self._ledger.trials)} trials, no round yet"
        eng = rp.engine
        state = "finished" if rp.finished else f"{len(rp.open)} probing"
        return (
            f"PrehocScheduler: round {eng.round}, {eng.spent:.0f} of {self.budget:.0f} {self.time_attr} spent, {state}"
        )

    # ----- save / restore (TrialScheduler API) ------------------------------------------------
    def save(self, checkpoint_path: str) -> None:
        """Write the ledger (everything the scheduler's state is rebuilt from) to a file."""
        self._ledger.save(Path(checkpoint_path))

    def restore(self, checkpoint_path: str) -> None:
        """Load a ledger written by `save` (or the experiment's prehoc_scheduler.jsonl)."""
        led = Ledger.load(Path(checkpoint_path))
        self._adopt(led)
        if self._dir is not None:
            self._ledger.attach(self._dir / LEDGER_FILE, self._header())

    # ----- the plan -----------------------------------------------------------------------------
    def plan(self) -> list[dict[str, Any]]:
        """One row per trial: Engine.summary() (predicted_final, lower, upper, regime, p_best,
        probe_steps, stop_reason, ...) plus trial_id, reached (deepest step it reported),
        ended (why it can run no more) and pick (it is its task's best predicted final)."""
        rp = self._ensure()
        if rp is None:
            return []
        rows = rp.engine.summary()
        picks = set(_picks(rows, self._mode or "max").values())
        for r in rows:
            rec = self._ledger.trials[r["candidate"]]
            r.update(trial_id=rec.trial_id, reached=rec.reached, ended=rec.ended or "", pick=r["candidate"] in picks)
        return rows

    def picks(self) -> dict[str, str]:
        """Task -> the trial to train in full (best predicted final; ties: the first trial id)."""
        rp = self._ensure()
        return {} if rp is None else _picks(rp.engine.summary(), self._mode or "max")

    def state(self) -> dict[str, Any]:
        """Where the allocation stands: rounds, spend, finished, and what a restore loaded."""
        rp = self._ensure()
        eng = rp.engine if rp is not None else None
        return {
            "trials": len(self._ledger.trials),
            "round": eng.round if eng else 0,
            "spent": eng.spent if eng else 0.0,
            "budget": self.budget,
            "finished": bool(rp.finished) if rp else False,
            "probing": sorted(rp.open) if rp else [],
            "steps_reported": sum(r.reached for r in self._ledger.trials.values()),
            "rows": sum(len(r.rows) for r in self._ledger.trials.values()),
            "restores": self._restores,
            "rows_loaded": self._rows_loaded,
            "experiment_path": self._experiment_path,
        }

    @staticmethod
    def read_plan(experiment_dir: str | Path) -> dict[str, Any]:
        """The plan a run left in its experiment directory (prehoc_plan.json)."""
        with open(Path(experiment_dir) / PLAN_FILE) as fh:
            return json.load(fh)

    # ----- internals ----------------------------------------------------------------------------
    def _header(self) -> dict[str, Any]:
        return {
            "metric": self._metric,
            "mode": self._mode,
            "time_attr": self.time_attr,
            "max_t": self.max_t,
            "budget": self.budget,
            "eval_every": self.eval_every,
            "initial_depth": self.initial_depth,
            "tolerance": self.tolerance,
            "seed": self.seed,
            "engine": self.engine_overrides,
        }

    def _attach(self, trial: Trial) -> None:
        """Find the experiment's driver staging directory (synced with the experiment directory);
        load the ledger a previous run of this experiment left there, then append to it."""
        self._attached = True
        try:
            d = Path(trial.storage.experiment_driver_staging_path)
        except Exception:  # a Trial without storage (driven by hand): stay in memory
            logger.warning(
                "PrehocScheduler: trial %s has no experiment storage; the scheduler state is not saved", trial.trial_id
            )
            return
        self._dir = d
        try:
            self._experiment_path = str(trial.storage.experiment_fs_path)
        except Exception:
            self._experiment_path = None
        path = d / LEDGER_FILE
        if path.is_file() and path.stat().st_size:
            self._adopt(Ledger.load(path))
        self._ledger.attach(path, self._header())

    def _adopt(self, led: Ledger) -> None:
        mine = self._header()
        theirs = {k: led.header.get(k) for k in mine}
        if led.header and json.dumps(theirs, sort_keys=True, default=str) != json.dumps(
            mine, sort_keys=True, default=str
        ):
            logger.warning(
                "PrehocScheduler: the saved state was made with other settings (%s); this run uses %s", theirs, mine
            )
        for tid, rec in self._ledger.trials.items():  # trials added before the load keep their rows
            mine_rec = led.trials.setdefault(tid, rec)
            for s, v in rec.rows.items():
                mine_rec.rows.setdefault(s, v)
        self._ledger = led
        self._replay = None
        self._restores += 1
        self._rows_loaded = sum(len(r.rows) for r in led.trials.values())

    def _record(self, tid: str, result: dict) -> None:
        if self.time_attr not in result:
            return
        step = int(round(float(result[self.time_attr])))
        if step <= 0:
            return
        v = result.get(self._metric) if self._metric else None
        try:
            value = float(v) if v is not None else float("nan")
        except (TypeError, ValueError):
            value = float("nan")
        self._ledger.add_row(tid, step, value)

    def _ensure(self) -> Replay | None:
        """The engine over every known trial, replayed up to now (built when first needed)."""
        if self._replay is None and self._ledger.trials:
            rp = Replay(self._ledger, self.settings(), float(self.max_t))
            rp.advance()
            self._replay = rp
            self._write_plan()
        return self._replay

    def _after_end(self, tune_controller: TuneController) -> None:
        rp = self._replay
        if rp is None:
            return
        new_round = rp.advance()
        if new_round or rp.finished:
            self._write_plan()
        if rp.finished and self._searcher_done(tune_controller):
            self._stop_waiting(tune_controller)

    @staticmethod
    def _searcher_done(tune_controller: TuneController | None) -> bool:
        """No more trials will come (Tune's searcher has finished); True when unknown."""
        try:
            return bool(tune_controller.search_alg.is_finished())
        except Exception:  # driven without a controller
            return True

    def _stop_waiting(self, tune_controller: TuneController, exclude: str | None = None) -> None:
        """The engine has finished: stop every trial that waits (paused, or restored and pending)."""
        for t in list(tune_controller.get_trials()):
            if t.trial_id != exclude and t.status in (Trial.PAUSED, Trial.PENDING):
                tune_controller.stop_trial(t)

    def _write_plan(self) -> None:
        if self._dir is None or self._replay is None:
            return
        out = {
            "state": self.state(),
            "settings": self._header(),
            "picks": self.picks(),
            "candidates": [{k: _json_safe(v) for k, v in r.items()} for r in self.plan()],
        }
        tmp = self._dir / (PLAN_FILE + ".tmp")
        tmp.write_text(json.dumps(out, indent=1))
        tmp.replace(self._dir / PLAN_FILE)


def _picks(rows: list[dict], mode: str) -> dict[str, str]:
    sign = 1.0 if mode == "max" else -1.0
    best: dict[str, tuple[float, str]] = {}
    for r in rows:
        v = r["predicted_final"]
        if not (isinstance(v, float) and math.isfinite(v)):
            continue
        key = (sign * v, r["candidate"])
        g = r["group"]
        if g not in best or key[0] > best[g][0] or (key[0] == best[g][0] and key[1] < best[g][1]):
            best[g] = key
    return {g: cid for g, (_, cid) in sorted(best.items())}


def _json_safe(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (str, int, float, bool)) or v is None:
        return v
    try:
        return float(v)
    except (TypeError, ValueError):
        return str(v)
