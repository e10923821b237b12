"""What the engine says about one candidate at a point of the run (Engine.summaries()).

The typed record is what code reads; `as_row()` is the flat record the plan and the run
directory's tables store (enums as their values, diagnostics joined by ';').
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from prehoc_ray.types import Regime, StopKind


@dataclass(frozen=True)
class CandidateSummary:
    candidate: str
    group: str
    regime: Regime
    predicted_final: float
    predicted_std: float
    predictor: Literal["probes", "history"]  # the probes' decomposition, or a population model of past runs
    lower: float  # the central interval at the engine's level
    upper: float
    probe_steps: int  # depth every seed has reached
    probe_cost_s: float
    cost_per_step_s: float
    L_int: float
    too_early: bool  # its interval is wider than everything its task's curves have moved
    L_eval: float  # sampling variance of the metric on the evaluation set (part of L_int)
    K: float
    alpha: float
    L0: float
    c_star: float
    J0: float
    J_star: float
    value_per_cost: float  # marginal prediction-risk reduction per device-second of the next step
    p_best: float  # P(its expected final is its task's best)
    probe_value: float  # expected regret reduction per device-second of the next extension
    wanted_cost_s: float  # device-seconds of the probing it would take next (NaN: none)
    wanted_depth: int
    diagnostics: tuple[str, ...]
    stop_reason: str  # why it is not probed further, in words ("" while it is)
    stop_kind: StopKind | None  # the same, for code to branch on
    no_learning: bool

    def as_row(self) -> dict:
        row = asdict(self)
        row["regime"] = self.regime.value
        row["diagnostics"] = ";".join(self.diagnostics)
        row["stop_kind"] = self.stop_kind.value if self.stop_kind is not None else ""
        return row
