"""The layers, enforced: which prehoc_ray packages each package may import, and a core that
loads none of the heavy libraries (read from the source, so a new import breaks this test)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "prehoc_ray"

# types -> core -> {sim, io} -> ... -> cli; runner sees only spec and types.
ALLOWED: dict[str, set[str]] = {
    "types": set(),
    "core": {"types"},
    "sim": {"core", "types"},
    "io": {"core", "types"},
    "spec": {"types"},
    "runner": {"spec", "types"},
    "bench": {"core", "io", "sim", "types"},
    "plan": {"core", "io", "sim", "spec", "types"},
    "report": {"core", "io", "plan", "spec", "types"},
    "execution": {"core", "io", "plan", "report", "runner", "sim", "spec", "types"},
    "cli": {"bench", "core", "execution", "io", "plan", "report", "runner", "sim", "spec", "types"},
    "__main__": {"cli"},
    "__init__": {"api"},  # lazily, on first use of an API name
    # the Python API sits beside the CLI: it may reach every layer (heavy ones inside functions)
    "api": {"core", "execution", "io", "spec", "types"},
    # the Ray Tune scheduler: the engine behind Tune's TrialScheduler interface (nothing imports it)
    "tune": {"core", "types"},
}


def _imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("prehoc_ray"):
            names = [node.module] if node.module != "prehoc_ray" else [f"prehoc_ray.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("prehoc_ray")]
        out |= {n.split(".")[1] for n in names if "." in n}
    return out


def test_packages_import_only_the_layers_below_them():
    bad = []
    for f in sorted(PKG.rglob("*.py")):
        rel = f.relative_to(PKG).parts
        pkg = rel[0] if len(rel) > 1 else rel[0].removesuffix(".py")
        assert pkg in ALLOWED, f"new package {pkg!r}: give it a place in ALLOWED"
        for dep in sorted(_imports(f) - {pkg} - ALLOWED[pkg]):
            bad.append(f"{f.relative_to(PKG.parent)} imports prehoc_ray.{dep}")
    assert not bad, "\n".join(bad)


def test_the_core_loads_no_heavy_library():
    code = (
        "import sys, prehoc_ray.core.engine, prehoc_ray.core.analysis, prehoc_ray.core.decisions, "
        "prehoc_ray.core.backtests, prehoc_ray.core.decision, prehoc_ray.core.population; "
        "print(','.join(m for m in ('ray', 'torch', 'pyarrow', 'pydantic', 'transformers', 'pandas', 'matplotlib') "
        "if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PKG.parent)
    assert out.stdout.strip() == "", f"prehoc_ray.core pulled in: {out.stdout.strip()}"
