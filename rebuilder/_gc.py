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
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    """No collection inside the block; the collector's state is restored after it."""
    enabled = gc.isenabled()
    gc.disable()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()
