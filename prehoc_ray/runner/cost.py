"""Cost accounting: the per-step cost lambda of the budget model, measured per candidate.

lambda is the training time per optimizer step, evaluation excluded (evaluations are a
probe's own overhead, not part of the full fine-tune's step cost). The first step of each
run is left out when there are others: it pays for allocator and kernel warm-up, which a long
run amortises.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CostMeter:
    train_seconds: float = 0.0
    first_step_seconds: float = 0.0
    eval_seconds: float = 0.0
    steps: int = 0
    tokens: int = 0

    @property
    def seconds_per_step(self) -> float:
        if self.steps == 0:
            return float("nan")
        if self.steps > 1 and 0 < self.first_step_seconds < self.train_seconds:
            return (self.train_seconds - self.first_step_seconds) / (self.steps - 1)
        return self.train_seconds / self.steps

    @property
    def tokens_per_step(self) -> float:
        return self.tokens / self.steps if self.steps else float("nan")


def projected_full_cost_s(seconds_per_step: float, full_steps: int) -> float:
    """Training seconds of the full fine-tune this candidate stands for, on the same hardware."""
    return seconds_per_step * full_steps
