"""prehoc-ray: decide, before paying for them, which fine-tunes are worth running.

Layers (imports point one way only; tests/test_layers.py enforces them):
    types -> core -> {sim, io} -> execution -> cli
    runner depends only on spec and types (heavy imports stay inside functions).

The Python API (prehoc_ray/api.py) is importable from here; it loads on first use, so that
`import prehoc_ray.core` stays free of ray, torch and pyarrow.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = (
    "CandidateInfo",
    "Engine",
    "EngineSettings",
    "ProbeOrder",
    "analyze_curves",
    "load_job",
    "read_plan",
    "read_plan_pandas",
    "run",
)
__all__ = list(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        from prehoc_ray import api

        return getattr(api, name)
    raise AttributeError(f"module 'prehoc_ray' has no attribute {name!r}")
