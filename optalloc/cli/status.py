"""A live one-line status of a solve on a terminal: engine, incumbent, bound, gap, elapsed time.

The solver's threads only hand over their latest :class:`~optalloc.core.budget.Progress`
(:meth:`StatusLine.report`); the main thread redraws the line in place (``\\r``) every few tenths of a
second (:meth:`StatusLine.draw`) and erases it at the end, so that nothing of it stays in the output.
``optalloc plan`` shows it only when stderr is a terminal and ``--json`` is not given: a pipe or a log
gets nothing extra.
"""

from __future__ import annotations

import time
from typing import TextIO

from optalloc.cli.render import percent
from optalloc.core.budget import Progress

__all__ = ["StatusLine"]


class StatusLine:
    """The status of one solve with ``method``, drawn on ``stream`` (a terminal) at most ``width`` wide."""

    def __init__(self, stream: TextIO, method: str, width: int = 80) -> None:
        self.stream, self.method, self.width = stream, method, max(20, width)
        self.started = time.monotonic()
        self.latest: Progress | None = None
        self.shown = False

    def report(self, progress: Progress) -> None:
        """``on_progress`` of the solve: keep the news (called from the solver's threads)."""
        self.latest = progress

    def text(self, elapsed: float | None = None) -> str:
        """The line: ``cpsat: objective 310,441  bound 311,092  gap 0.21%  2.4s``."""
        elapsed = time.monotonic() - self.started if elapsed is None else elapsed
        p = self.latest
        if p is None:
            return f"{self.method}: searching  {elapsed:.1f}s"
        parts = [f"objective {p.objective:,.0f}" if p.objective is not None else "no answer yet"]
        if p.bound is not None:
            parts.append(f"bound {p.bound:,.0f}")
        if p.gap is not None:
            parts.append(f"gap {percent(p.gap)}")
        parts.append(f"{elapsed:.1f}s")
        return f"{p.engine}: " + "  ".join(parts)

    def draw(self) -> None:
        """Rewrite the line in place (main thread)."""
        self._write("\r" + self.text()[: self.width - 1] + "\x1b[K")
        self.shown = True

    def clear(self) -> None:
        """Erase the line, leaving the cursor where the line began."""
        if self.shown:
            self._write("\r\x1b[K")
            self.shown = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed terminal: the status is a courtesy, the solve goes on
            pass
