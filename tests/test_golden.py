"""Behaviour pinned for refactors: the engine's decisions (whole runs on a recorded DeBERTa world
with both objectives and on a heterogeneous synthetic world) and analyze()'s outputs on a fixed
synthetic portfolio, against a stored snapshot (tests/data/golden.json). A refactor must leave
them unchanged; a change that is meant to move them regenerates the snapshot on purpose:

    PREHOC_UPDATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/test_golden.py

Floats compare to 1e-9 relative (the last bits of a sum may differ across BLAS builds); strings,
integers, NaN positions and the order of the engine's spending compare exactly.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from prehoc_ray.bench.market import Market
from prehoc_ray.bench.policies.prehoc import run_engine, settings_for
from prehoc_ray.bench.suite import make_world
from prehoc_ray.core.analysis import AnalysisSettings, analyze
from prehoc_ray.sim.synthetic import generate_portfolio

GOLDEN = Path(__file__).parent / "data" / "golden.json"


def _engine_run(dataset: str, seed: int, objective: str) -> dict:
    """A whole run of the engine on a benchmark world at 10% budget: recorded DeBERTa curves and
    a heterogeneous synthetic world, where every allocation setting changes what it does."""
    world = make_world(dataset, seed)
    market = Market(world, 0.1 * Market(world, 0.0).full_cost)
    eng, _ = run_engine(market, settings_for(market, 0, objective=objective))
    return {"summary": eng.summary(), "spend_log": eng.spend_log, "rounds": eng.round, "spent": eng.spent}


def _analysis() -> dict:
    p = generate_portfolio(n_groups=3, candidates_per_group=8, n_seeds=4, horizon=1000, eval_every=10, seed=22)
    res = analyze(p.observations, depth=300.0, settings=AnalysisSettings(tolerance=p.tolerance, n_boot=30, seed=22))
    return {
        "predictions": {k: v.tolist() for k, v in res.predictions.items()},
        "units": res.decomposition_rows(),
        "gamma": res.gamma,
    }


def _current() -> dict:
    return {
        "engine_deberta_decision": _engine_run("deberta", 3, "decision"),
        "engine_deberta_prediction": _engine_run("deberta", 3, "prediction"),
        "engine_hetero_decision": _engine_run("hetero", 5, "decision"),
        "analysis": _analysis(),
    }


def _normalise(x):
    """JSON round trip (tuples -> lists, enums -> their value via str) so both sides compare alike."""
    return json.loads(json.dumps(x, sort_keys=True, default=str))


def _diff(a, b, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{path}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in _diff(a[k], b[k], f"{path}.{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True)) for d in _diff(x, y, f"{path}[{i}]")]
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return []
        return [] if a == b or abs(a - b) <= 1e-9 * max(abs(a), abs(b)) else [f"{path}: {a!r} != {b!r}"]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def test_decisions_and_analysis_match_the_snapshot():
    now = _normalise(_current())
    if os.environ.get("PREHOC_UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps(now, indent=0, sort_keys=True) + "\n")
        pytest.skip(f"snapshot written to {GOLDEN}")
    assert GOLDEN.exists(), f"{GOLDEN} missing: run with PREHOC_UPDATE_GOLDEN=1 to write it"
    differences = _diff(json.loads(GOLDEN.read_text()), now)
    assert not differences, f"{len(differences)} outputs changed, e.g. " + "; ".join(differences[:8])
