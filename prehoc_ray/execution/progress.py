"""What the driver's terminal shows: a rich progress bar on a terminal, plain log lines
otherwise (a Ray job's log, CI, a pipe)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass


@dataclass
class Snapshot:
    round: int = 0
    spent: float = 0.0
    budget: float = 0.0
    finished: int = 0
    reused: int = 0
    running: int = 0
    queued: int = 0
    failed: int = 0
    settled: int = 0
    candidates: int = 0

    def line(self) -> str:
        return (
            f"round {self.round}: spent {self.spent:.1f}/{self.budget:.1f} device-s, probes {self.finished} finished"
            f" ({self.reused} from the store), {self.running} running, {self.queued} queued, {self.failed} failed attempts,"
            f" {self.settled}/{self.candidates} candidates settled"
        )


class Progress:
    """Rich progress bar when `stream` is a terminal (or `rich=True`), else log lines."""

    def __init__(
        self,
        budget: float,
        candidates: int,
        stream=None,
        rich: bool | None = None,
        quiet: bool = False,
        log_every_s: float = 10.0,
    ) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.use_rich = (self.stream.isatty() if rich is None else rich) and not quiet
        self.snap = Snapshot(budget=budget, candidates=candidates)
        self.log_every_s = log_every_s
        self._last_log = 0.0
        self._last_line = ""
        self._bar = None
        self._task = None

    def __enter__(self) -> Progress:
        if self.use_rich:
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress
            from rich.table import Column

            fixed = {"no_wrap": True}
            self._bar = RichProgress(
                TextColumn("[bold]budget", table_column=Column(**fixed)),
                BarColumn(bar_width=20),
                TextColumn("{task.completed:.0f}/{task.total:.0f} device-s", table_column=Column(**fixed)),
                TimeElapsedColumn(table_column=Column(**fixed)),
                TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
                console=Console(file=self.stream, log_path=False),
                transient=False,
                expand=True,
            )
            self._bar.start()
            self._task = self._bar.add_task("budget", total=max(self.snap.budget, 1e-9), info="")
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self.refresh(force=True)
            self._bar.stop()
            self._bar = None

    def log(self, message: str) -> None:
        if self.quiet:
            return
        if self._bar is not None:
            self._bar.console.log(message, markup=False, highlight=False)
        else:
            print(f"[prehoc-ray {time.strftime('%H:%M:%S')}] {message}", file=self.stream, flush=True)

    def update(self, **fields) -> None:
        for k, v in fields.items():
            setattr(self.snap, k, v)
        self.refresh()

    def refresh(self, force: bool = False) -> None:
        s = self.snap
        if self._bar is not None:
            info = (
                f"round {s.round} | probes {s.finished} done ({s.reused} reused), {s.running} running,"
                f" {s.failed} failed | settled {s.settled}/{s.candidates}"
            )
            self._bar.update(self._task, completed=min(s.spent, s.budget), info=info)
            return
        # a line when something changed (at most every log_every_s), else one a minute
        now = time.monotonic()
        line = s.line()
        since = now - self._last_log
        if force or (line != self._last_line and since >= self.log_every_s) or since >= max(60.0, self.log_every_s):
            self._last_log, self._last_line = now, line
            self.log(line)
