"""Names shared by every layer: the trajectory row format and the regimes.

Kept dependency-free (stdlib only) so that the core, the runners, the store and the CLI can
all agree on column names without importing each other.
"""

from __future__ import annotations

from enum import Enum

# One row per evaluation point of one probe run; `analyze` reads this, runners emit it, the
# result store persists it.
CANDIDATE = "candidate"
STEP = "step"
VALUE = "value"
SEED = "seed"
GROUP = "group"
FINAL = "final"
HORIZON = "horizon"
STATIC_PREFIX = "static_"

REQUIRED_TRAJECTORY_COLUMNS = (CANDIDATE, STEP, VALUE)
OPTIONAL_TRAJECTORY_COLUMNS = (SEED, GROUP, FINAL, HORIZON)

# Extra columns a real probe emits next to `value` (the task metric).
EVAL_LOSS = "eval_loss"
TRAIN_LOSS = "train_loss"
GRAD_NORM = "grad_norm"
WALL_S = "wall_s"
TOKENS = "tokens"
PROBE_ID = "probe_id"


class Regime(str, Enum):
    """Where a candidate sits on the (L_int, alpha) phase diagram (docs/design.md, Regimes)."""

    STATIC_SUFFICIENT = "Static-Sufficient"
    DYNAMIC_CRITICAL = "Dynamic-Critical"
    NOISE_DOMINANT = "Noise-Dominant"
    UNDETERMINED = "Undetermined"  # too little data to fit a decay at all


class Mode(str, Enum):
    """Whether a larger metric value is better (accuracy) or a smaller one (loss)."""

    MAX = "max"
    MIN = "min"


class StopKind(str, Enum):
    """Why a candidate is no longer probed: what the plan branches on (the engine's stop reason
    text says the same in words, with the numbers)."""

    PROBE_FAILED = "probe_failed"  # a probe failed for good: no prediction to act on
    BUDGET = "budget"  # the probe budget could not pay the next probe it wanted
    PROBE_CAP = "probe_cap"  # reached max_depth_fraction of its full run
    OPTIMAL_DEPTH = "optimal_depth"  # reached c*, its budget-optimal depth (objective prediction)
    NOT_WORTH_ITS_COST = "not_worth_its_cost"  # the next increment removes less risk than it costs
    STATIC_SUFFICIENT = "static_sufficient"  # static information already predicts within tolerance
    NOISE_DOMINANT = "noise_dominant"  # a training floor above tolerance: no probe removes it
    OUT_OF_CONTENTION = "out_of_contention"  # P(best in its task) under allocation.contention
    SETTLED = "settled"  # a contender whose next probe is not worth its price of regret


# Process exit codes of the CLI, also raised by the layers below it (execution/jobs_client.py).
EXIT_FAILURE = 1  # something went wrong while running
EXIT_BAD_INPUT = 2  # a file, a field or an option the user can fix
