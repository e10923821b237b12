"""The linter's rules and the formatter (pyproject.toml [tool.ruff]) hold for the whole tree: a
finding fails here, not in a reviewer's reading."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PATHS = ["prehoc_ray", "tests", "benchmarks", "scripts"]


def _ruff(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "ruff", *args, "--no-cache", *PATHS], cwd=ROOT, capture_output=True, text=True
    )


def test_ruff_finds_nothing():
    out = _ruff("check")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


def test_the_tree_is_formatted():
    """`ruff format` leaves nothing to change: run it before committing."""
    out = _ruff("format", "--check")
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
