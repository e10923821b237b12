"""Probe runners: static signals and short LoRA fine-tunes of real candidates.

Importing this package is cheap (no torch). The heavy pieces live in submodules that import
torch / transformers / peft / deepspeed when they are first used:

    from prehoc_ray.runner.probe import ProbeRequest, ProbeResult, run_probe
    from prehoc_ray.runner.static import compute_static_signals
"""

from prehoc_ray.runner.errors import (
    CheckpointMismatchError,
    CheckpointRefusedError,
    ProbeDivergedError,
    RunnerInputError,
)

__all__ = ["CheckpointMismatchError", "CheckpointRefusedError", "ProbeDivergedError", "RunnerInputError"]
