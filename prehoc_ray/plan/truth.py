"""A plan next to the recorded truth: what each candidate's full fine-tune really reached.

Given the plan's rows and recorded full fine-tune results (io/truth.py), per candidate: the
true result and whether the plan's interval [lower, upper] holds it; per task: the truly best
candidate, the plan's picks (decision "run") and the regret of keeping the best of them
(best true result minus the best pick's, in the direction of plan.mode). A task where the
plan runs nothing has no regret of a pick: it says so, and what the best candidate reached.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

from prehoc_ray.core.decisions import RUN


@dataclass(frozen=True)
class CandidateTruth:
    candidate: str
    task: str
    decision: str
    predicted_final: float
    lower: float
    upper: float
    true_final: float
    inside: bool | None  # None: the plan gives no interval


@dataclass(frozen=True)
class TaskTruth:
    task: str
    best: str  # the candidate whose recorded full fine-tune is best
    best_final: float
    picks: tuple[str, ...]  # the plan's "run" candidates with a recorded result
    pick_final: float  # the best of the picks' true results (NaN: no pick)
    regret: float  # best_final - pick_final in the direction of mode (NaN: no pick)
    unrecorded_picks: tuple[str, ...] = ()  # the plan's "run" candidates of the task without a recorded result


@dataclass(frozen=True)
class TruthComparison:
    source: str
    candidates: tuple[CandidateTruth, ...]
    tasks: tuple[TaskTruth, ...]
    missing: tuple[str, ...]  # plan candidates without a recorded result

    @property
    def n_inside(self) -> int:
        return sum(c.inside is True for c in self.candidates)

    @property
    def n_with_interval(self) -> int:
        return sum(c.inside is not None for c in self.candidates)

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "candidates": [asdict(c) for c in self.candidates],
            "tasks": [
                asdict(t) | {"picks": list(t.picks), "unrecorded_picks": list(t.unrecorded_picks)} for t in self.tasks
            ],
            "missing": list(self.missing),
            "n_inside": self.n_inside,
            "n_with_interval": self.n_with_interval,
        }


def _f(v: Any) -> float:
    try:
        return float(v) if v is not None else float("nan")
    except (TypeError, ValueError):
        return float("nan")


def compare_to_truth(
    rows: Sequence[Mapping[str, Any]], truth: Mapping[str, float], mode: Literal["max", "min"], source: str = ""
) -> TruthComparison:
    """The plan's rows (plan/outputs.py) against `truth` (candidate -> recorded final)."""
    sign = 1.0 if mode == "max" else -1.0
    cands: list[CandidateTruth] = []
    missing: list[str] = []
    unrecorded: dict[str, list[str]] = {}
    for r in rows:
        cid = str(r["candidate"])
        if cid not in truth:
            missing.append(cid)
            if str(r.get("decision") or "") == RUN:
                unrecorded.setdefault(str(r["task"]), []).append(cid)
            continue
        lo, hi, y = _f(r.get("lower")), _f(r.get("upper")), float(truth[cid])
        inside = (lo <= y <= hi) if math.isfinite(lo) and math.isfinite(hi) else None
        cands.append(
            CandidateTruth(
                cid, str(r["task"]), str(r.get("decision") or ""), _f(r.get("predicted_final")), lo, hi, y, inside
            )
        )
    tasks = []
    for task in sorted({c.task for c in cands}):
        members = [c for c in cands if c.task == task]
        best = max(members, key=lambda c: (sign * c.true_final, c.candidate))
        picks = [c for c in members if c.decision == RUN]
        if picks:
            top = max(picks, key=lambda c: sign * c.true_final)
            pick_final, regret = top.true_final, sign * (best.true_final - top.true_final)
        else:
            pick_final = regret = float("nan")
        tasks.append(
            TaskTruth(
                task,
                best.candidate,
                best.true_final,
                tuple(c.candidate for c in picks),
                pick_final,
                regret,
                tuple(unrecorded.get(task, ())),
            )
        )
    return TruthComparison(source, tuple(cands), tuple(tasks), tuple(missing))


def truth_lines(cmp: TruthComparison, saving_s: float | None = None) -> list[str]:
    """The comparison in sentences, for the console and the report."""
    out = []
    for t in cmp.tasks:
        if t.picks:
            verdict = "the best" if t.regret <= 0 else f"regret {t.regret:.3g} (best: {t.best} at {t.best_final:.3g})"
            out.append(f"{t.task}: the plan runs {', '.join(t.picks)}, which reached {t.pick_final:.3g}: {verdict}")
        else:
            runs = t.unrecorded_picks
            did = f"the plan runs {', '.join(runs)} (no recorded result)" if runs else "the plan runs nothing"
            out.append(f"{t.task}: {did}; its best recorded candidate {t.best} reached {t.best_final:.3g}")
    if cmp.n_with_interval:
        out.append(
            f"{cmp.n_inside} of {cmp.n_with_interval} recorded results lie inside the plan's interval [lower, upper]"
        )
    if saving_s is not None and math.isfinite(saving_s):
        out.append(f"compute saved against running every full fine-tune: {saving_s:,.0f} device-s")
    if cmp.missing:
        out.append(f"no recorded result for {len(cmp.missing)} candidate(s): {', '.join(cmp.missing[:5])}")
    return out
