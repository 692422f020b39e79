"""rebuilder._gc: a pause of the collector, and what it leaves freed by a thread."""

from __future__ import annotations

import gc
import os
import threading
import weakref

import pytest

from rebuilder import _gc


class Built:
    """An object of a step's own, with containers in its fields."""

    def __init__(self, shared: dict[str, list[int]]) -> None:
        self.rows = [[i] for i in range(3000)]
        self.index = {str(i): (i,) for i in range(3000)}
        self.names = {str(i) for i in range(3000)}
        self.shared = shared  # not its own: a container of the caller's, in another object
        self.holder = Holder(shared)


class Holder:
    def __init__(self, shared: dict[str, list[int]]) -> None:
        self.shared = shared


def test_what_a_pause_leaves_is_freed_and_only_that(monkeypatch) -> None:
    shared = {"kept": list(range(100))}
    built = Built(shared)
    alive = weakref.ref(built)
    row = weakref.ref(built.holder)
    left: list[object] = [built]
    del built
    with _gc.paused(freed_later=left):
        assert not gc.isenabled()
    assert left == []  # taken from the caller's list at once
    _gc.wait_freed()
    assert alive() is None and row() is None
    assert gc.isenabled() and gc.get_freeze_count() == 0
    assert shared == {"kept": list(range(100))}  # held by an object given: left whole


def _held(monkeypatch) -> threading.Event:
    """Have the thread wait for the event before it frees anything; then pause and leave
    it something to free."""
    go = threading.Event()
    real = _gc._take_apart

    def held(objects: list[object]) -> None:
        go.wait(10)
        real(objects)

    monkeypatch.setattr(_gc, "_take_apart", held)
    with _gc.paused(freed_later=[[1, 2, 3]]):
        pass
    return go


def test_the_collector_stays_paused_until_the_thread_is_done(monkeypatch) -> None:
    go = _held(monkeypatch)
    try:
        assert not gc.isenabled()  # its objects are in the youngest generation still
    finally:
        go.set()
    _gc.wait_freed()
    assert gc.isenabled()


def test_the_next_pause_waits_for_the_last_ones_thread(monkeypatch) -> None:
    freed = []
    real = _gc._take_apart

    def counted(objects: list[object]) -> None:
        real(objects)
        freed.append(1)

    monkeypatch.setattr(_gc, "_take_apart", counted)
    with _gc.paused(freed_later=[[1]]):
        pass
    with _gc.paused():
        assert freed == [1] and not gc.isenabled()
    assert gc.isenabled()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_process_forked_while_the_thread_frees_has_its_collector_back(monkeypatch) -> None:
    go = _held(monkeypatch)
    try:
        pid = os.fork()
        if pid == 0:  # the child: no such thread here; its collector must be back
            os._exit(0 if gc.isenabled() and gc.get_freeze_count() == 0 else 1)
        _, status = os.waitpid(pid, 0)
    finally:
        go.set()
        _gc.wait_freed()
    assert os.waitstatus_to_exitcode(status) == 0


def test_the_collector_comes_back_even_if_freeing_fails(monkeypatch) -> None:
    def broken(objects: list[object]) -> None:
        raise MemoryError

    seen: list[type[BaseException]] = []
    monkeypatch.setattr(_gc, "_take_apart", broken)
    monkeypatch.setattr(threading, "excepthook", lambda args: seen.append(args.exc_type))
    with _gc.paused(freed_later=[[1]]):
        pass
    _gc.wait_freed()
    assert seen == [MemoryError]
    assert gc.isenabled() and gc.get_freeze_count() == 0
