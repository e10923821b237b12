"""Where a paused probe lives: <root>/<candidate id>/seed<k>/step_<n>/ plus a `latest.json`
pointer written last (atomically), so a crash mid-save leaves the previous checkpoint usable.

A step directory holds the engine's files (adapter + optimizer + LR schedule) and `meta.json`:
the step reached (which is also the data-order position: batches.py derives every batch from
(seed, step), and dropout is re-seeded from (seed, step) too, so no RNG state has to travel),
the rows emitted so far, the running sums of the evaluation window, cumulative seconds/tokens,
and a fingerprint of everything that shapes the curve.

Checkpoints sit on shared storage (cluster/ray-cluster.yaml mounts one root for every user), so
a resume trusts nothing it finds there: the directories the runner creates are owner-only; the
pointer must name a `step_<n>` directory directly inside the probe's directory (no `..`, no
absolute path, no symlink); it records the sha256 of every file its writer saved, and each is
checked before anything is read; and tensor files are loaded with `torch.load(weights_only=True)`
(`load_tensors`), which builds tensors and plain containers and never runs a pickled callable.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from prehoc_ray.runner.errors import CheckpointMismatchError, CheckpointRefusedError

LATEST = "latest.json"
META = "meta.json"
PRIVATE = 0o700  # what the runner creates: readable and writable by its owner only
STEP_NAME = re.compile(r"step_\d{8}")
SHA256 = re.compile(r"[0-9a-f]{64}")


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
    """(step directory, meta) of the newest complete checkpoint, or None when there is none.
    Raises CheckpointRefusedError for a pointer out of `directory` or a file its writer did not
    record as it is now: nothing of such a checkpoint is loaded."""
    pointer = directory / LATEST
    if not pointer.is_file():
        return None
    step_dir, recorded = _read_pointer(pointer)
    if not os.path.lexists(step_dir):
        return None  # removed since: start the probe over (nothing is loaded)
    verify(pointer, step_dir, recorded)
    return step_dir, json.loads((step_dir / META).read_text())


def _refuse(path: Path, what: str) -> CheckpointRefusedError:
    """One line: the file, what is wrong with it, and how to start the probe over."""
    path = Path(path)
    probe = next((p.parent for p in path.parents if STEP_NAME.fullmatch(p.name)), path.parent)
    return CheckpointRefusedError(
        f"checkpoint {str(path)!r}: {what}; refusing to resume from it (delete {str(probe)!r} to start this probe over)"
    )


def _read_pointer(pointer: Path) -> tuple[Path, dict[str, str]]:
    """The step directory `pointer` names (a direct child of its directory, not a symlink)
    and the digests its writer recorded."""
    try:
        doc = json.loads(pointer.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise _refuse(pointer, f"not a readable JSON pointer ({type(e).__name__})") from e
    name = doc.get("dir") if isinstance(doc, dict) else None
    if not isinstance(name, str) or not STEP_NAME.fullmatch(name):
        shown = _short(name) if isinstance(name, str) else f"a {type(name).__name__}"
        raise _refuse(
            pointer, f"'dir' is {shown}, expected a step_<8 digits> directory beside {LATEST} (it may not leave it)"
        )
    step_dir = pointer.parent / name
    if step_dir.is_symlink() or (step_dir.exists() and step_dir.resolve().parent != pointer.parent.resolve()):
        raise _refuse(pointer, f"'dir' {name!r} resolves outside {str(pointer.parent)!r} (a symlink)")
    files = doc.get("files")
    if (
        not isinstance(files, dict)
        or not files
        or not all(isinstance(k, str) and isinstance(v, str) and SHA256.fullmatch(v) for k, v in files.items())
    ):
        raise _refuse(pointer, "records no sha256 digests of its files (written by an older prehoc-ray, or not by it)")
    return step_dir, files


def _short(text: str, limit: int = 80) -> str:
    """repr of a value read from a file, cut short: an error names it, it does not dump it."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _walk(step_dir: Path) -> dict[str, Path]:
    """Every regular file under `step_dir` by its relative POSIX path; a symlink or anything
    else that is not a plain file or directory is refused (it could lead out of the run)."""
    out: dict[str, Path] = {}
    for top, dirs, names in os.walk(step_dir):
        for name in dirs + names:
            path = Path(top) / name
            if path.is_symlink() or not (path.is_dir() or path.is_file()):
                raise _refuse(path, "is a symlink or special file, expected a plain file the runner wrote")
            if path.is_file():
                out[path.relative_to(step_dir).as_posix()] = path
    return out


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (ZeRO shards can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def digests(step_dir: Path) -> dict[str, str]:
    """sha256 of every file of a step directory, as the pointer records them."""
    return {rel: sha256_file(path) for rel, path in sorted(_walk(step_dir).items())}


def verify(pointer: Path, step_dir: Path, recorded: dict[str, str]) -> None:
    """Every file in `step_dir` is one the writer recorded, with the digest it recorded."""
    found = _walk(step_dir)
    extra = sorted(set(found) - set(recorded))
    if extra:
        raise _refuse(found[extra[0]], f"not among the files {LATEST} records")
    missing = sorted(set(recorded) - set(found))
    if missing:
        raise _refuse(step_dir / missing[0], f"recorded in {LATEST} but missing")
    if META not in recorded:
        raise _refuse(pointer, f"records no {META}")
    for rel, path in sorted(found.items()):
        if sha256_file(path) != recorded[rel]:
            raise _refuse(path, f"its sha256 differs from the one {LATEST} records (changed after it was written)")


def load_tensors(path: Path, *, map_location: Any = "cpu", allow: Iterable[type] = ()) -> Any:
    """torch.load that only builds tensors, plain containers and numbers (weights_only=True),
    plus the few named types in `allow` (built field by field, never by calling into the
    file's choice of code). Anything else in the file -- a pickled callable above all -- is a
    CheckpointRefusedError naming the file, before any of it runs."""
    import torch

    try:
        with torch.serialization.safe_globals(list(allow)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        what = f"a pickled {found.group(1)}" if found else "data other than tensors"
        raise _refuse(Path(path), f"holds {what}, expected plain tensor data") from e


def check_fingerprint(meta: dict, expected: dict, where: Path) -> None:
    found = meta.get("fingerprint", {})
    diffs = {k: (found.get(k), v) for k, v in expected.items() if found.get(k) != v}
    if diffs:
        detail = ", ".join(f"{k}: checkpoint {a!r} vs now {b!r}" for k, (a, b) in diffs.items())
        raise CheckpointMismatchError(
            f"checkpoint {str(where)!r} was written by a different set-up ({detail}); "
            "delete it or use another checkpoint_dir to start this probe over"
        )


def private_dir(path: Path) -> Path:
    """Create `path` and its missing parents owner-only (0o700): on shared storage a directory
    others can write is one they can plant a checkpoint in. Directories that already exist are
    left as they are (the run directory's owner decides for it)."""
    path = Path(path)
    missing: list[Path] = []
    p = path
    while not os.path.lexists(p):
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        try:
            d.mkdir(mode=PRIVATE)
        except FileExistsError:
            continue  # another rank made it
        os.chmod(d, PRIVATE)  # mkdir's mode is masked by the umask
    return path


def new_step_dir(directory: Path, step: int) -> Path:
    private_dir(directory)
    d = directory / f"step_{step:08d}"
    if d.is_symlink():
        d.unlink()
    elif d.exists():
        shutil.rmtree(d)
    return private_dir(d)


def commit(directory: Path, step_dir: Path, meta: dict) -> None:
    """Write meta, then flip the pointer (with the sha256 of every file of the step, which a
    resume checks), then drop older step directories."""
    tmp = step_dir / (META + ".tmp")
    tmp.write_text(json.dumps(meta, indent=1, allow_nan=True))
    os.replace(tmp, step_dir / META)
    ptr_tmp = directory / (LATEST + ".tmp")
    ptr_tmp.write_text(json.dumps({"dir": step_dir.name, "step": meta["step"], "files": digests(step_dir)}, indent=1))
    os.replace(ptr_tmp, directory / LATEST)
    for other in directory.glob("step_*"):
        if other.is_dir() and not other.is_symlink() and other.name != step_dir.name:
            shutil.rmtree(other, ignore_errors=True)
