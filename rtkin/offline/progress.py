"""Progress output for the long offline steps: a ``rich`` progress bar on a terminal, and plain
lines (at most one per 10 % of a step, or per 2000 items when the total is unknown) otherwise,
so logs of batch jobs stay readable. One object serves many steps: ``progress(step, done, total)``.
"""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = ["ConsoleProgress"]


class ConsoleProgress:
    """``progress(step, done, total)`` (total 0 = unknown); call :meth:`close` at the end (or use
    it as a context manager). ``prefix``: text before each line (e.g. the session name)."""

    def __init__(self, stream: TextIO | None = None, prefix: str = "", bar: bool | None = None):
        self.stream = stream or sys.stderr
        self.prefix = prefix
        self.bar = self.stream.isatty() if bar is None else bar
        self._rich = None
        self._tasks: dict[str, int] = {}
        self._last: dict[str, int] = {}

    def __call__(self, step: str, done: int, total: int) -> None:
        label = f"{self.prefix}{step}"
        if self.bar:
            self._bar(label, done, total)
            return
        last = self._last.get(label)
        every = max(total // 10, 1) if total else 2000
        if last is None or done - last >= every or (total and done >= total and last < total):
            self._last[label] = done
            of = f"/{total}" if total else ""
            print(f"rtkin: {label}: {done}{of}", file=self.stream, flush=True)

    def _bar(self, label: str, done: int, total: int) -> None:
        if self._rich is None:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._rich = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=Console(file=self.stream), transient=False)
            self._rich.start()
        task = self._tasks.get(label)
        if task is None:
            task = self._tasks[label] = self._rich.add_task(label, total=total or None)
        self._rich.update(task, completed=done, total=total or None)

    def close(self) -> None:
        if self._rich is not None:
            self._rich.stop()
            self._rich = None

    def __enter__(self) -> "ConsoleProgress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
