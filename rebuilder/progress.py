"""Progress of long work on stderr: live lines on a terminal, plain lines under cron or CI.

On a terminal a block at the bottom is redrawn every second: the bar with counts, then
one line per running build (what, for how long, and what it is doing now, e.g. the
backend's last line "creating base chroot"); each finished build is printed above it
for good. Elsewhere (a cron mail, a CI log) each build gets one line when it starts and
one when it ends.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TextIO

_REFRESH = 1.0  # seconds between redraws of the live block


def elapsed(seconds: float) -> str:
    """``45s``, ``3m05s``, ``2h01m``.

    >>> elapsed(45.2), elapsed(185), elapsed(7260)
    ('45s', '3m05s', '2h01m')
    """
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class Progress:
    """Counts finished items by outcome and shows the running ones (thread-safe)."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None) -> None:
        self.total = total
        self.label = label
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.done = 0
        self.counts: Counter[str] = Counter()
        self.start = time.monotonic()
        # key -> (what, started, describe)
        self.running: dict[object, tuple[str, float, Callable[[], str]]] = {}
        self._lock = threading.Lock()
        self._drawn = 0  # lines of the live block on screen
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if self.tty:
            self._thread = threading.Thread(target=self._refresh, daemon=True, name="progress")
            self._thread.start()

    def started(self, key: object, what: str, describe: Callable[[], str] = lambda: "") -> None:
        """An item started (from any thread); ``describe()`` says what it is doing now."""
        with self._lock:
            self.running[key] = (what, time.monotonic(), describe)
            if self.tty:
                self._draw([])
            else:
                self._write(f"{self.label} started: {what} ({len(self.running)} running)\n")

    def item(
        self, what: str, outcome: str, seconds: float | None = None, key: object = None
    ) -> None:
        """An item finished with ``outcome``."""
        with self._lock:
            self.running.pop(key, None)
            self.done += 1
            self.counts[outcome] += 1
            took = f" ({seconds:.1f} s)" if seconds is not None else ""
            line = f"{self.label} {self.done}/{self.total}: {what} {outcome}{took}"
            if self.tty:
                self._draw([line])
            else:
                self._write(line + "\n")

    def forget(self, key: object) -> None:
        """An item that stopped without an outcome (abandoned)."""
        with self._lock:
            self.running.pop(key, None)

    def note(self, text: str) -> None:
        """A line said at once, above the live block (e.g. "stopping 3 builds...")."""
        with self._lock:
            if self.tty:
                self._draw([text])
            else:
                self._write(text + "\n")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            if self.tty and self._drawn:
                self._write(self._erase())
                self._drawn = 0

    # --- the terminal's live block -----------------------------------------------------------

    def _refresh(self) -> None:
        while not self._stop.wait(_REFRESH):
            with self._lock:
                self._draw([])

    def _block(self) -> list[str]:
        width = max(20, shutil.get_terminal_size((100, 20)).columns - 1)
        filled = 30 * self.done // max(self.total, 1)
        counts = " ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
        now = time.monotonic()
        lines = [
            f"{self.label} [{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} "
            f"{counts} · {len(self.running)} running · {elapsed(now - self.start)}"
        ]
        for what, since, describe in sorted(self.running.values(), key=lambda r: r[1]):
            try:
                doing = describe()
            except Exception:  # a display must never stop a build
                doing = ""
            lines.append(f"  {what} · {elapsed(now - since)}" + (f" · {doing}" if doing else ""))
        return [ln[:width] for ln in lines]  # never wrap: wrapped lines would break the redraw

    def _erase(self) -> str:
        up = f"\x1b[{self._drawn - 1}A" if self._drawn > 1 else ""
        return f"\r{up}\x1b[J"

    def _draw(self, permanent: list[str]) -> None:
        block = self._block()
        text = (self._erase() if self._drawn else "") + "".join(f"{ln}\n" for ln in permanent)
        self._write(text + "\n".join(block))
        self._drawn = len(block)

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr must not stop the pass
            pass
