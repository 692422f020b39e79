"""Attempt directories removed after the verdict, off the build's critical path.

A real build leaves hundreds of megabytes of files behind (a chroot's changes, the build
tree); removing them on a loaded disk has taken longer than the build itself. The pool's
builds hand their directory to one :class:`Reaper` thread instead and go on to record
their verdict. The backlog is bounded: when it is full, a build waits for room, so
removals can never fall behind far enough to fill the disk.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

log = logging.getLogger(__name__)

Remove = Callable[[Path], None]


class Reaper:
    """One background thread removing directories; :meth:`close` waits for all of them."""

    def __init__(self, backlog: int = 4) -> None:
        self._queue: queue.Queue[tuple[Path, Remove] | None] = queue.Queue(maxsize=backlog)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.removed = 0

    def discard(self, path: Path, remove: Remove) -> float:
        """Queue ``path`` for ``remove``; the seconds spent waiting for room."""
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="reaper", daemon=True)
                self._thread.start()
        t0 = time.monotonic()
        self._queue.put((path, remove))
        return time.monotonic() - t0

    def close(self) -> None:
        """Wait until every queued directory is gone."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            path, remove = item
            try:
                remove(path)
                self.removed += 1
            except Exception as e:  # a leftover directory must not stop the other removals
                log.warning("could not remove %s: %s", path, e)

    def __enter__(self) -> Reaper:
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
