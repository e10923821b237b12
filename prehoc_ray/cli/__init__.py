"""The `prehoc-ray` command. One module per sub-command; each registers itself on `app`.

Exit codes: 0 success, 2 bad input (the message names the field, column or file), 1 a failure
the message explains.
"""

from __future__ import annotations

import atexit
import os
import sys

import typer

from prehoc_ray.types import EXIT_BAD_INPUT, EXIT_FAILURE  # noqa: F401 (the commands import them from here)

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Decide which fine-tunes are worth running, before paying for them.",
)


def _register() -> None:
    # Imported for their side effect of adding commands; kept cheap (heavy imports inside commands).
    from prehoc_ray.cli import (  # noqa: F401
        analyze,
        backtest,
        history,
        report,
        run,
        simulate,
        submit,
        validate,
    )


def main() -> None:
    _register()
    try:
        app()
        code = 0
    except SystemExit as done:
        code = _exit_code(done)
    _exit_without_native_teardown(code)


def _exit_code(done: SystemExit) -> int:
    if done.code is None:
        return 0
    if isinstance(done.code, int):
        return done.code
    print(done.code, file=sys.stderr)
    return EXIT_FAILURE


def _exit_without_native_teardown(code: int) -> None:
    """Run the Python exit handlers (Ray's shutdown, temporary directories), flush, and leave
    before C++ static destructors run. pyarrow's CPU thread pool can still be winding down
    there, and a joinable std::thread destroyed at exit aborts the process ("terminate called
    without an active exception", exit -6) after the command has done its work
    (apache/arrow#34314): an intermittent non-zero exit that scripts and CI would read as a
    failure."""
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe: nothing more can be said on it
                pass
        os._exit(code)
