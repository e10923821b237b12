"""Where a paused probe lives: <root>/<candidate id>/seed<k>/step_<n>/ plus a `latest.json`
pointer written last (atomically), so a crash mid-save leaves the previous checkpoint usable.

A step directory holds the engine's files (adapter + optimizer + LR schedule) and `meta.json`:
the step reached (which is also the data-order position: batches.py derives every batch from
(seed, step), and dropout is re-seeded from (seed, step) too, so no RNG state has to travel),
the rows emitted so far, the running sums of the evaluation window, cumulative seconds/tokens,
and a fingerprint of everything that shapes the curve.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path
from typing import Any

from prehoc_ray.runner.errors import CheckpointMismatchError

LATEST = "latest.json"
META = "meta.json"


def probe_dir(root: Path, candidate_id: str, seed: int) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.\-]", "__", candidate_id)
    return Path(root).expanduser() / safe / f"seed{seed}"


def fingerprint(candidate, seed: int, backend: str, zero_stage: int, precision: str, world: int) -> dict[str, Any]:
    """What must match for a checkpoint's curve to continue: the candidate (task, model,
    config), the seed, the backend and its numerics, and the data-parallel world size (it sets
    the global batch)."""
    spec = json.loads(candidate.model_dump_json())
    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    return {
        "candidate": candidate.id,
        "candidate_sha": digest,
        "seed": seed,
        "backend": backend,
        "zero_stage": zero_stage if backend == "deepspeed" else None,
        "precision": precision,
        "world_size": world,
    }


def latest(directory: Path) -> tuple[Path, dict] | None:
    """(step directory, meta) of the newest complete checkpoint, or None."""
    pointer = directory / LATEST
    if not pointer.is_file():
        return None
    name = json.loads(pointer.read_text())["dir"]
    step_dir = directory / name
    meta_path = step_dir / META
    if not meta_path.is_file():
        return None
    return step_dir, json.loads(meta_path.read_text())


def check_fingerprint(meta: dict, expected: dict, where: Path) -> None:
    found = meta.get("fingerprint", {})
    diffs = {k: (found.get(k), v) for k, v in expected.items() if found.get(k) != v}
    if diffs:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diffs.items())
        raise CheckpointMismatchError(
            f"checkpoint {str(where)!r} was written by a different set-up ({detail}); "
            "delete it or use another checkpoint_dir to start this probe over"
        )


def new_step_dir(directory: Path, step: int) -> Path:
    d = directory / f"step_{step:08d}"
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def commit(directory: Path, step_dir: Path, meta: dict) -> None:
    """Write meta, then flip the pointer, then drop older step directories."""
    tmp = step_dir / (META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1, allow_nan=True))
    os.replace(tmp, step_dir / META)
    ptr_tmp = directory / (LATEST + ".tmp")
    ptr_tmp.write_text(json.dumps({"dir": step_dir.name, "step": meta["step"]}))
    os.replace(ptr_tmp, directory / LATEST)
    for other in directory.glob("step_*"):
        if other.is_dir() and other.name != step_dir.name:
            shutil.rmtree(other, ignore_errors=True)
