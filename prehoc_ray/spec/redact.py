"""Secrets in a job spec: `cluster.runtime_env.env_vars` values never leave the process that
needs them. Copies meant for people or for the run directory (`<run>/job.yaml`, `submit
--dry-run`) keep the keys and read "<redacted>" for every value; the spec hash ignores those
values, so a redacted copy names the same run as the original."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

import yaml

REDACTED = "<redacted>"


def _env_vars(spec: Any) -> dict | None:
    cluster = spec.get("cluster") if isinstance(spec, dict) else None
    renv = cluster.get("runtime_env") if isinstance(cluster, dict) else None
    env = renv.get("env_vars") if isinstance(renv, dict) else None
    return env if isinstance(env, dict) else None


def redact_env_vars(spec: dict) -> dict:
    """A deep copy of a spec dict whose cluster.runtime_env.env_vars values read "<redacted>"."""
    out = copy.deepcopy(spec)
    env = _env_vars(out)
    if env:
        for key in env:
            env[key] = REDACTED
    return out


def write_redacted_copy(src: Path, dest: Path) -> None:
    """Copy a job spec file to `dest`: verbatim when it sets no env_vars, else re-written with
    their values redacted (comments are then lost; keys, order and every other value stay)."""
    raw = yaml.safe_load(Path(src).read_text(encoding="utf-8"))
    if not _env_vars(raw):
        shutil.copyfile(src, dest)
        return
    text = yaml.safe_dump(redact_env_vars(raw), sort_keys=False, allow_unicode=True)
    Path(dest).write_text(
        f"# copied from {Path(src).name}; cluster.runtime_env.env_vars values redacted\n" + text, encoding="utf-8"
    )
