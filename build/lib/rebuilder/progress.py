"""Progress of long work on stderr: a bar on a terminal, plain lines under cron or CI."""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import TextIO


class Progress:
    """Counts finished items by outcome and shows them.

    On a terminal one line is redrawn in place; elsewhere each finished item
    gets one plain line, which is what a cron mail or a CI log wants.
    """

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.done = 0
        self.counts: Counter[str] = Counter()
        self.start = time.monotonic()

    def item(self, what: str, outcome: str, seconds: float | None = None) -> None:
        self.done += 1
        self.counts[outcome] += 1
        if self.tty:
            self._bar()
        else:
            took = f" ({seconds:.1f} s)" if seconds is not None else ""
            self.stream.write(f"{self.label} {self.done}/{self.total}: {what} {outcome}{took}\n")
            self.stream.flush()

    def _bar(self) -> None:
        width = 30
        filled = width * self.done // max(self.total, 1)
        elapsed = time.monotonic() - self.start
        eta = elapsed / self.done * (self.total - self.done) if self.done else 0
        counts = " ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] "
            f"{self.done}/{self.total} {counts} ETA {eta:.0f} s\x1b[K"
        )
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.done:
            self.stream.write("\n")
            self.stream.flush()
