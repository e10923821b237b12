"""Exceptions raised by the io layer.

They subclass ValueError so callers that already catch bad-input errors keep working, and
their messages are single lines: a CLI prints them as they are, a log line stays one line.
"""

from __future__ import annotations


class TrajectoryError(ValueError):
    """A trajectory table that cannot be analysed as it is.

    The message names the file, the column and the first offending data row (1-based), and
    what was expected, so the user can open the file and fix that row.
    """


class StoreError(RuntimeError):
    """The result store on disk is in a state the reader cannot use (never a half write:
    those are ignored by design)."""


class ManifestError(ValueError):
    """A run directory that belongs to another job spec, or whose manifest is unreadable."""
