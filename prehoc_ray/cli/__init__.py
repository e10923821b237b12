"""The `prehoc-ray` command. One module per sub-command; each registers itself on `app`.

Exit codes: 0 success, 2 bad input (the message names the field, column or file), 1 a failure
the message explains.
"""

from __future__ import annotations

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Decide which fine-tunes are worth running, before paying for them.")

EXIT_BAD_INPUT = 2
EXIT_FAILURE = 1


def _register() -> None:
    # Imported for their side effect of adding commands; kept cheap (heavy imports inside commands).
    from prehoc_ray.cli import analyze  # noqa: F401
    from prehoc_ray.cli import backtest  # noqa: F401
    from prehoc_ray.cli import history  # noqa: F401
    from prehoc_ray.cli import report, submit, validate  # noqa: F401
    from prehoc_ray.cli import run  # noqa: F401
    from prehoc_ray.cli import simulate  # noqa: F401


def main() -> None:
    _register()
    app()
