"""What PrehocScheduler knows, kept so that a restored experiment can rebuild it: the trial ledger.

Why a ledger and not a pickled engine: the engine (core/engine.py) is deterministic given its
candidates, its settings and the results it is told, and a round's orders depend only on the
results of earlier rounds. So the state worth saving is the evidence, not the allocator: which
trials exist (candidate = trial, task = group), the (step, value) rows each one reported, and
which ones ended. Replaying that evidence through a fresh engine (every order answered from
the ledger, until an order the ledger cannot answer) gives back the engine exactly as it was,
the open orders included: the same rule as `prehoc-ray run --resume`. It also lets the
scheduler take trials that arrive late (a searcher that suggests one trial at a time): a new
candidate means a new engine, replayed over the same evidence.

The ledger is an append-only JSON-lines file (one event a line: `trial`, `row`, `end`), so a
result costs one short append however long the experiment; `Ledger.load` folds the lines back.
No Ray here: the replay is testable without a cluster.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prehoc_ray.core.engine import CandidateInfo, Engine, EngineSettings, ProbeOrder

FORMAT_VERSION = 1


@dataclass
class TrialRecord:
    """One trial as a candidate: its task, what it reported, and whether it can run on."""

    trial_id: str
    group: str
    rows: dict[int, float] = field(default_factory=dict)  # step -> value (NaN: reported without the metric)
    ended: str | None = None  # why it can run no more (completed, errored, stopped); None while it can

    @property
    def reached(self) -> int:
        """The deepest step it reported (0 before its first result)."""
        return max(self.rows) if self.rows else 0


@dataclass
class Ledger:
    """Trial records plus the file they are appended to (None: in memory only)."""

    path: Path | None = None
    header: dict[str, Any] = field(default_factory=dict)
    trials: dict[str, TrialRecord] = field(default_factory=dict)

    # ----- events ---------------------------------------------------------------------------
    def add_trial(self, trial_id: str, group: str) -> bool:
        """Register a trial; False if it was known (a restored trial: keeps its record)."""
        if trial_id in self.trials:
            return False
        self.trials[trial_id] = TrialRecord(trial_id, str(group))
        self._append({"e": "trial", "id": trial_id, "group": str(group)})
        return True

    def add_row(self, trial_id: str, step: int, value: float) -> None:
        rec = self.trials[trial_id]
        value = float(value)
        if rec.rows.get(step, None) == value:
            return  # the repeat Tune sends when a trainable returns
        rec.rows[step] = value
        self._append({"e": "row", "id": trial_id, "step": int(step), "value": value if math.isfinite(value) else None})

    def end(self, trial_id: str, why: str) -> None:
        rec = self.trials[trial_id]
        if rec.ended is None:
            rec.ended = why
            self._append({"e": "end", "id": trial_id, "why": why})

    # ----- persistence ----------------------------------------------------------------------
    def attach(self, path: Path, header: dict[str, Any]) -> None:
        """Write to `path` from now on: the header first if the file is new, then every event so far."""
        self.path = Path(path)
        self.header = dict(header, e="scheduler", version=FORMAT_VERSION)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "w") as fh:
            for ev in self.events():
                fh.write(json.dumps(ev) + "\n")

    def events(self) -> Iterable[dict[str, Any]]:
        """Every event of the ledger as it stands (the header first): what `save` writes."""
        if self.header:
            yield self.header
        for rec in self.trials.values():
            yield {"e": "trial", "id": rec.trial_id, "group": rec.group}
            for s, v in sorted(rec.rows.items()):
                yield {"e": "row", "id": rec.trial_id, "step": s, "value": v if math.isfinite(v) else None}
            if rec.ended is not None:
                yield {"e": "end", "id": rec.trial_id, "why": rec.ended}

    def save(self, path: Path) -> None:
        with open(path, "w") as fh:
            for ev in self.events():
                fh.write(json.dumps(ev) + "\n")

    @classmethod
    def load(cls, path: Path) -> Ledger:
        """The ledger a file holds (a torn last line, from a crash mid-write, is skipped)."""
        led = cls()
        with open(path) as fh:
            lines = fh.read().splitlines()
        for line in lines:
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                continue
            kind = ev.get("e")
            if kind == "scheduler":
                led.header = ev
            elif kind == "trial":
                led.trials.setdefault(ev["id"], TrialRecord(ev["id"], str(ev["group"])))
            elif kind == "row" and ev["id"] in led.trials:
                v = ev["value"]
                led.trials[ev["id"]].rows[int(ev["step"])] = float("nan") if v is None else float(v)
            elif kind == "end" and ev["id"] in led.trials:
                led.trials[ev["id"]].ended = led.trials[ev["id"]].ended or str(ev["why"])
        return led

    def _append(self, ev: dict[str, Any]) -> None:
        if self.path is not None:
            with open(self.path, "a") as fh:
                fh.write(json.dumps(ev) + "\n")


class Replay:
    """An engine over the ledger's trials, with its open orders answered from the ledger.

    `advance()` answers every open order the ledger can (rows up to the target, or the trial
    ended short of it) and asks for the next round while it can; it stops at the first round
    with an order that needs a trial to run on. `open` then maps trial id -> its order.
    """

    def __init__(self, ledger: Ledger, settings: EngineSettings, horizon: float) -> None:
        self.ledger = ledger
        infos = [
            CandidateInfo(r.trial_id, r.group, float(horizon), prior_cost_per_step=1.0, prior_cost_exact=True)
            for r in ledger.trials.values()
        ]
        self.engine = Engine(infos, settings)
        self.open: dict[str, ProbeOrder] = {}
        self.finished = False
        self.rounds_started = 0

    def advance(self) -> bool:
        """Tell the engine what the ledger holds; True if a new round started."""
        new_round = False
        while not self.finished:
            if not self.open:
                orders = self.engine.next_round()
                if not orders:
                    self.finished = True
                    break
                self.open = {o.candidate: o for o in orders}
                self.rounds_started += 1
                new_round = True
            for cid in list(self.open):
                if self._answer(self.open[cid]):
                    del self.open[cid]
            if self.open:
                break
        return new_round

    def _answer(self, o: ProbeOrder) -> bool:
        rec = self.ledger.trials[o.candidate]
        if rec.reached >= o.target_step:
            self.engine.tell(o, _rows(rec, o.start_step, o.target_step), float(o.target_step - o.start_step))
            return True
        if rec.ended is not None:
            # It can run no more: what it reached counts, then the candidate stops for good.
            if rec.reached > o.start_step:
                part = dataclasses.replace(o, target_step=rec.reached)
                self.engine.tell(part, _rows(rec, o.start_step, rec.reached), float(rec.reached - o.start_step))
            self.engine.tell_failure(
                o, f"trial ended at step {rec.reached} before the probe's target {o.target_step}: {rec.ended}"
            )
            return True
        return False

    def wants_more(self, trial_id: str) -> bool:
        """Could the engine still order this trial on? (not finished, not stopped for good)"""
        if self.finished:
            return False
        if trial_id in self.open:
            return True
        return self.engine.may_order_again(trial_id)


def _rows(rec: TrialRecord, start: int, target: int) -> list[dict[str, float]]:
    return [
        {"step": float(s), "value": v} for s, v in sorted(rec.rows.items()) if start < s <= target and math.isfinite(v)
    ]
