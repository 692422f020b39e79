"""Work of a render split between forked processes.

The processes inherit the render's state (the records, what the walk collected) rather
than receiving it: only what each call returns is pickled back. Each call gets its own
process, started now; the function :func:`start` returns waits for them.
"""

from __future__ import annotations

import functools
import gc
import itertools
import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from rebuilder import _fs
from rebuilder.site.output import Done, Output
from rebuilder.site.paths import SiteError

Work = Callable[[Output], None]  # a piece of a render: pages written into the site


class Gate:
    """What processes forked before the pages theirs link down to are written are held by
    (:meth:`Output.hold`): they make their pages meanwhile, and write none until the
    driver opens it, once those pages are written; when it failed first, it shuts it, and
    they write nothing and stop."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("fork")
        self._done = context.Event()
        self._open = context.Value("b", 0, lock=False)

    def open(self) -> None:
        self._open.value = 1
        self._done.set()

    def shut(self) -> None:
        self._done.set()

    def is_open(self) -> bool:
        return bool(self._open.value)

    def wait(self) -> None:
        self._done.wait()
        if not self._open.value:
            raise SiteError("the render stopped before the pages this process links to")


class Share:
    """Numbers ``0 .. n-1`` handed out one at a time to whichever process asks first, the
    processes forked after it was made and the one that made it: pieces of work of
    uneven weight (maintainer pages of 3 groups or of 300) split between processes that
    each have other work first, none of them waiting while another has pieces left.

    >>> share = Share(3)
    >>> next(share.take()), list(share.take()), list(share.take())
    (0, [1, 2], [])
    """

    def __init__(self, n: int) -> None:
        self._n = n
        # (where processes cannot be forked, this process takes them all)
        forked = "fork" in multiprocessing.get_all_start_methods()
        self._next = multiprocessing.get_context("fork").Value("q", 0) if forked else None
        self._here = itertools.count()

    def take(self) -> Iterator[int]:
        """The numbers this process takes, one each time it asks for the next."""
        while (i := self._take()) < self._n:
            yield i

    def _take(self) -> int:
        if self._next is None:
            return next(self._here)
        with self._next.get_lock():
            i = self._next.value
            self._next.value = i + 1
        return int(i)


_calls: dict[int, Callable[[], Any]] = {}  # what forked processes inherit, by id
_ids = itertools.count()


def workers(jobs: int, least: int, most: int) -> int:
    """Processes worth forking for ``jobs`` (1: do it here): one per core, at most ``most``,
    none under ``least`` jobs or where processes cannot be forked."""
    if jobs < least or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(most, cores or 1, jobs))


def chunks(n: int, parts: int) -> list[range]:
    """``range(n)`` cut into ``parts`` runs of (nearly) equal length.

    >>> chunks(5, 2)
    [range(0, 3), range(3, 5)]
    """
    step = -(-n // max(1, parts)) or 1
    return [range(lo, min(n, lo + step)) for lo in range(0, n, step)]


def start(calls: Sequence[Callable[[], Any]]) -> Callable[[], list[Any]]:
    """Run each of ``calls`` in a forked process of its own; returns the function that
    waits for them and returns what each returned, in order (or raises the first error)."""
    ids = [next(_ids) for _ in calls]
    _calls.update(zip(ids, calls, strict=True))  # before the fork: the processes inherit them
    pool = ProcessPoolExecutor(len(ids), mp_context=multiprocessing.get_context("fork"))
    try:
        futures = [pool.submit(_run, i) for i in ids]
    except BaseException:
        _forget(pool, ids)
        raise

    def finish() -> list[Any]:
        try:
            return [f.result() for f in futures]
        finally:
            _forget(pool, ids)

    return finish


def write(
    out: Output, work: Sequence[Work], *, fork: bool, gate: Gate | None = None
) -> Callable[[], None]:
    """Do each piece of ``work``: with ``fork``, each in a forked process of its own,
    writing into ``out``'s site (once ``gate`` is open, when given); else here and now.
    Returns the function that waits for them and takes in what they wrote."""
    if not fork or not work:
        for w in work:
            w(out)
        return lambda: None
    wait = start([functools.partial(_write, out.root, out.known, w, gate) for w in work])

    def finish() -> None:
        for done in wait():
            out.merge(*done)

    return finish


def _write(root: str, known: Mapping[str, bytes], work: Work, gate: Gate | None) -> Done:
    out = Output(root)
    out.known = known  # (the last render's digests: inherited, not copied)
    if gate is not None:
        out.hold(gate)
    with _fs.removing_later():  # (the driver's thread is not in this process)
        work(out)
        out.release()
    return out.done()


def _forget(pool: ProcessPoolExecutor, ids: Sequence[int]) -> None:
    pool.shutdown(cancel_futures=True)
    for i in ids:
        _calls.pop(i, None)


def _run(i: int) -> Any:
    call = _calls.get(i)
    assert call is not None, "a call must be registered before its process is forked"
    gc.freeze()  # what it inherits stays out of the collector (see rebuilder._gc)...
    gc.enable()  # ...which its thousands of pages need: their templates make cycles
    return call()
