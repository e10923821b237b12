"""The CLI leaves through `os._exit` after the Python exit handlers (see
prehoc_ray.cli._exit_without_native_teardown): the handlers must still run, the output must
still arrive, and the exit code must be the command's."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _main_with_exit_handler(argv: list[str]) -> subprocess.CompletedProcess:
    code = textwrap.dedent(
        f"""
        import atexit, sys
        atexit.register(lambda: print("exit handler ran", flush=True))
        sys.argv = ["prehoc-ray", *{argv!r}]
        from prehoc_ray.cli import main
        main()
        """
    )
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_bad_input_keeps_its_exit_code_its_message_and_the_exit_handlers(tmp_path):
    table = tmp_path / "t.csv"
    table.write_text("name,score\na,1\n")
    done = _main_with_exit_handler(["analyze", str(table), "--out", str(tmp_path / "out")])
    assert done.returncode == 2, done.stderr
    assert "missing required column 'candidate'" in done.stderr
    assert "exit handler ran" in done.stdout


def test_success_exits_0_with_its_output_flushed():
    done = _main_with_exit_handler(["--help"])
    assert done.returncode == 0, done.stderr
    assert "analyze" in done.stdout and done.stdout.rstrip().endswith("exit handler ran")
