"""The run directory's manifest: which job spec it belongs to, and how far it got.

Resuming a run must not silently mix results of two different specs in one store, so a run
directory remembers the hash of the spec that created it and refuses another one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prehoc_ray.io.atomic import write_json_atomic
from prehoc_ray.io.errors import ManifestError, show_text
from prehoc_ray.io.run_dir import MANIFEST as MANIFEST_NAME

RUN_STATUSES = ("running", "finished", "failed", "cancelled")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def spec_hash(spec: Any) -> str:
    """sha256 of the canonical JSON of `spec` (a dict, or anything with model_dump()); the values of
    cluster.runtime_env.env_vars (secrets, redacted in <run>/job.yaml) do not count."""
    if hasattr(spec, "model_dump"):
        spec = spec.model_dump(mode="json")
    env = ((spec.get("cluster") or {}).get("runtime_env") or {}).get("env_vars") if isinstance(spec, dict) else None
    if isinstance(env, dict) and env:  # the rule of prehoc_ray/spec/redact.py (io may not import spec)
        spec = {
            **spec,
            "cluster": {
                **spec["cluster"],
                "runtime_env": {**spec["cluster"]["runtime_env"], "env_vars": dict.fromkeys(env, "<redacted>")},
            },
        }
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class RunManifest:
    """Contents of <run dir>/manifest.json."""

    spec_hash: str
    created_at: str
    status: str = "running"
    updated_at: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    version: int = 1

    def __post_init__(self) -> None:
        if self.status not in RUN_STATUSES:
            raise ValueError(f"run status {self.status!r}: expected one of {', '.join(RUN_STATUSES)}")

    @staticmethod
    def path(root: str | Path) -> Path:
        return Path(root) / MANIFEST_NAME

    @classmethod
    def load(cls, root: str | Path) -> RunManifest | None:
        """The manifest of `root`, or None when the directory has none yet."""
        path = cls.path(root)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
            why = (
                exc.strerror
                if isinstance(exc, OSError)
                else (
                    f"invalid JSON on line {exc.lineno}: {exc.msg}"
                    if isinstance(exc, json.JSONDecodeError)
                    else "not UTF-8 JSON"
                    if isinstance(exc, UnicodeDecodeError)
                    else "JSON nested too deeply"
                )
            )
            raise ManifestError(f"{path}: unreadable manifest ({why}); move it away to start over") from None
        # Field by field, naming the field and never its value (the file may be anyone's).
        if not isinstance(data, dict):
            raise ManifestError(
                f"{path}: expected a JSON object, got {type(data).__name__}; move it away to start over"
            )
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(str(k) for k in data if k not in fields)
        if unknown:
            raise ManifestError(f"{path}: unknown manifest field {show_text(unknown[0])!r}; move it away to start over")
        for name, kind in (
            ("spec_hash", str),
            ("created_at", str),
            ("status", str),
            ("updated_at", str),
            ("info", dict),
            ("version", int),
        ):
            if name in data and not isinstance(data[name], kind):
                raise ManifestError(
                    f"{path}: field {name!r}: expected {kind.__name__}, got {type(data[name]).__name__}"
                )
        if "status" in data and data["status"] not in RUN_STATUSES:
            raise ManifestError(f"{path}: field 'status': expected one of {', '.join(RUN_STATUSES)}")
        try:
            return cls(**data)
        except TypeError:
            missing = sorted(fields - set(data) - {"status", "updated_at", "info", "version"})
            raise ManifestError(f"{path}: missing manifest field(s) {', '.join(missing)}") from None

    @classmethod
    def open(cls, root: str | Path, spec_hash: str, *, info: dict[str, Any] | None = None) -> RunManifest:
        """Create the manifest of a new run, or return the existing one to resume it.

        Raises ManifestError when `root` was created for a different spec.
        """
        existing = cls.load(root)
        if existing is not None:
            if existing.spec_hash != spec_hash:
                raise ManifestError(
                    f"{cls.path(root)}: this run directory belongs to spec "
                    f"{existing.spec_hash[:12]}, the spec given hashes to {spec_hash[:12]}; "
                    "use a new run directory to run it"
                )
            return existing
        now = _now()
        manifest = cls(spec_hash=spec_hash, created_at=now, updated_at=now, info=dict(info or {}))
        manifest.save(root)
        return manifest

    def save(self, root: str | Path) -> None:
        write_json_atomic(self.path(root), asdict(self))

    def with_status(self, status: str, **info: Any) -> RunManifest:
        """A copy with a new status (and extra info merged in); call save() to persist."""
        return replace(self, status=status, updated_at=_now(), info={**self.info, **info})
