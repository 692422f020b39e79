"""The collector paused while a step builds a large, acyclic object graph.

CPython's full collections walk every tracked object, and a step that makes
hundreds of thousands of them (a Debian sync: ~80,000 artifacts, ~46,000 groups
and the parsed stanzas behind them; loading its state: the records of those
groups; a render: the records and the pages made of them) sets off one full
collection after another: seconds of walking objects that are never garbage.
Such steps make few reference cycles, so for their duration the collector is
off, and what lived before them is frozen out of its reach. Both come back as
they were when the step ends, even by an exception.

>>> import gc
>>> with paused():
...     gc.isenabled()
False
>>> gc.isenabled()
True
>>> try:
...     with paused():
...         raise ValueError("a step that fails")
... except ValueError:
...     pass
>>> gc.isenabled(), gc.get_freeze_count()
(True, 0)

A step may leave what it built to be freed by a thread after it (``freed_later``):
millions of objects take a quarter of a second to free, which its caller need not wait
for. The collector comes back once they are freed, and the next pause waits for that.

>>> import weakref
>>> class Page: ...
>>> built = [Page() for _ in range(1000)]
>>> one = weakref.ref(built[0])
>>> with paused(freed_later=built):
...     pass
>>> built
[]
>>> wait_freed()
>>> one() is None, gc.isenabled()
(True, True)
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeGuard

_freeing: threading.Thread | None = None  # freeing what a pause left (see paused)
_pending: bool | None = None  # while it runs: whether it turns the collector on again


@contextmanager
def paused(*, freed_later: list[object] | None = None) -> Iterator[None]:
    """No collection inside the block; the collector's state is restored after it.

    What the block leaves in ``freed_later`` is taken out of it and freed by a thread; the
    collector is restored once that is done (not before: the objects made in the block are
    all in its youngest generation, which its first collection would walk)."""
    wait_freed()
    enabled = gc.isenabled()
    gc.disable()
    gc.freeze()
    try:
        yield
    finally:
        left = list(freed_later or ())
        if freed_later:
            freed_later.clear()
        if left:
            _free_later(left, enabled)
        else:
            _restore(enabled)


def wait_freed() -> None:
    """Return once what the last pause left to free is freed."""
    if _freeing is not None:
        _freeing.join()


def _free_later(objects: list[object], enabled: bool) -> None:
    global _freeing, _pending

    def free() -> None:
        global _pending
        time.sleep(0.001)  # (the caller goes on first: start() waits for the thread)
        try:
            _take_apart(objects)
        finally:  # (the collector comes back whatever happens)
            _restore(enabled)
            _pending = None

    _pending = enabled
    # not a daemon: the interpreter's exit waits for it, as it would have freed them
    _freeing = threading.Thread(target=free, name="rebuilder-free")
    _freeing.start()


_Container = list[Any] | dict[Any, Any] | set[Any]
_PIECE = 500  # elements freed in one go: the interpreter lock changes hands between them


def _take_apart(objects: list[object]) -> None:
    """Free ``objects`` a piece at a time. Freeing a container frees all it holds in one
    step of the interpreter, which keeps its lock all the while: a render's cache of
    45,000 parts held the caller a quarter of a second. So the lists, dicts and sets given,
    those in the fields of the objects given, and the large ones they hold are emptied in
    pieces, each only once nothing else refers to it (a render's objects hold the caller's
    records and set of changed keys too: those are left as they are)."""
    todo = _containers(objects)
    objects.clear()  # (the objects given go: what they held is in ``todo``)
    while todo:
        obj = todo.pop()
        if sys.getrefcount(obj) > 2:  # (``obj`` and the call's argument): not ours alone
            continue
        if isinstance(obj, list):
            while obj:
                piece = obj[-_PIECE:]
                del obj[-_PIECE:]
                todo += [o for o in piece if _large(o)]
                del piece
        else:  # a dict or a set: its keys and values go to lists first, emptied as above
            todo.append(list(obj))
            if isinstance(obj, dict):
                todo.append(list(obj.values()))
            obj.clear()


def _containers(objects: list[object]) -> list[_Container]:
    """The lists, dicts and sets in ``objects`` and in the fields of the objects in it,
    each once."""
    found: dict[int, _Container] = {}
    for obj in objects:
        fields = vars(obj).values() if hasattr(obj, "__dict__") else (obj,)
        found.update((id(v), v) for v in fields if isinstance(v, (list, dict, set)))
    return list(found.values())


def _large(obj: object) -> TypeGuard[_Container]:
    return isinstance(obj, (list, dict, set)) and len(obj) > 64


def _restore(enabled: bool) -> None:
    gc.unfreeze()
    if enabled:
        gc.enable()


def _in_child() -> None:
    """A process forked while the thread frees has no such thread: it restores the
    collector itself (what was to be freed stays, as the copy the child never uses)."""
    global _freeing, _pending
    if _pending is not None:
        _restore(_pending)
    _freeing = _pending = None


os.register_at_fork(after_in_child=_in_child)
