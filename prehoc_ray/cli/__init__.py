"""The `prehoc-ray` command. One module per sub-command; each registers itself on `app`.

Exit codes: 0 success, 2 bad input (the message names the field, column or file), 1 a failure
the message explains.
"""

from __future__ import annotations

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
    app()
