"""Exceptions the runner raises on purpose (stdlib only, so callers can catch them cheaply)."""

from __future__ import annotations


class RunnerInputError(ValueError):
    """A task or model the runner cannot use: a missing path, an unreadable file, an empty
    split, a column that does not exist. The message names the thing and what was expected."""


class CheckpointMismatchError(RunnerInputError):
    """A checkpoint exists for this (candidate, seed) but was written by a different set-up
    (config, backend, world size): continuing it would splice two different curves."""


class CheckpointRefusedError(RunnerInputError):
    """A checkpoint this process will not load: its `latest.json` points out of the probe's
    directory, a file differs from the digest its writer recorded, or a file holds more than
    plain tensor data. Checkpoints sit in a shared run directory; loading such a file could run
    code someone else wrote."""


class ProbeDivergedError(RuntimeError):
    """The training loss became NaN or infinite. Rows evaluated before that point were already
    emitted through `on_point`; they are also kept on the exception as `rows`."""

    def __init__(self, message: str, *, step: int, rows: list[dict] | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.rows = list(rows or [])
