"""Exceptions raised by the io layer.

They subclass ValueError so callers that already catch bad-input errors keep working, and
their messages are single lines: a CLI prints them as they are, a log line stays one line.
"""

from __future__ import annotations

TEXT_CHARS = 40  # the most of a name or cell an error message shows


def show_text(value: object, limit: int = TEXT_CHARS) -> str:
    """A key, column name or cell as a message may show it: one line, printable, at most
    `limit` characters. The file may not be the one the user meant (a credentials file),
    and messages end up in logs."""
    text = str(value)[: limit + 1]
    text = "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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


class TruthError(ValueError):
    """A recorded-truth source (spec `truth:`) that cannot be read as full fine-tune results."""
