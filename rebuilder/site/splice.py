"""A sorted list file patched where it changed, rather than made again.

An incremental render redoes a few hundred of the 82,000 records of a Debian-sized
``pkgs/list`` (and of each architecture's copy of it): sorting and joining them all again
cost more than the rest of such a render, and keeping each one in the render cache as
objects cost as much to read back. So the file the last render wrote is patched: the
records of the groups redone are found by bisection in its bytes (a record is one line
of JSON, and only the lines a search lands on are parsed), taken out, and their new ones
put in where the sort puts them; the rest of the file is not copied at all: the new file is
written from slices of the old one's bytes and the new records, never joined into one.

A record that two groups give (the same package in two profiles of one distribution) is
listed once; ``multi`` counts the records given more than once, so that one group that
drops it leaves it listed.

>>> f = Layout(b"[\\n", b",\\n", b"\\n]\\n", b"[]\\n")
>>> kw = {"head": b"[\\n"}
>>> key = lambda r: r
>>> multi = {b'"c"': 2}
>>> gone = [(b'"c"', b'"c"'), (b'"e"', b'"e"')]
>>> new = [(b'"d"', b'"d"'), (b'"a"', b'"a"'), (b'"0"', b'"0"')]
>>> done = patch(f, b'[\\n"a",\\n"c",\\n"e"\\n]\\n', key, gone, new, multi, **kw)
>>> data = done.join()
>>> data
b'[\\n"0",\\n"a",\\n"c",\\n"d"\\n]\\n'
>>> done.dropped, done.came, multi
([(b'"e"', b'"e"')], [(b'"d"', b'"d"'), (b'"0"', b'"0"')], {b'"a"': 2})
>>> done.between([(b'"a"', b'"d"'), (b'"d"', b'"z"')])  # as between() of data
[[b'"a"', b'"c"'], [b'"d"']]
>>> patch(f, data, key, [(b'"z"', b'"z"')], [], {}, **kw) is None  # not the list it was
True
>>> patch(f, data, key, [(k, k) for k in (b'"0"', b'"a"', b'"c"', b'"d"')], [], {}, **kw).join()
b'[]\\n'
"""

from __future__ import annotations

import operator
import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from operator import itemgetter
from typing import Any

Keyed = tuple[Any, bytes]  # a record and its sort key (which sorts equal records together)


@dataclass(frozen=True)
class Layout:
    """How a list file holds its records: a head line (it starts with ``opening``), the
    records (one line of JSON each: no newline in them) joined by ``sep`` (which ends in
    a newline), then ``tail`` (which starts with one); ``empty`` is the file of no record.
    A record may start with what ``prefix`` matches and is not the record's own (v1's
    ids)."""

    opening: bytes
    sep: bytes
    tail: bytes
    empty: bytes
    prefix: re.Pattern[bytes] | None = None

    def file(self, head: bytes, pieces: Sequence[bytes | memoryview]) -> list[bytes | memoryview]:
        """The file of ``head`` and the records in ``pieces`` (each run of them followed by
        ``sep``), in pieces."""
        if not any(map(len, pieces)):
            return [self.empty]
        last = pieces[-1][: len(pieces[-1]) - len(self.sep)]  # (no separator after it)
        return [head, *pieces[:-1], last, self.tail]


class _Records:
    """The records of a file, found by bisection in its bytes (not copied: 26 MB).

    Places are offsets in the file. The last record is taken to be followed by a
    separator too, past the end of the records (``stop``): so is every record, and a run
    of them is a slice of the file (:meth:`run`)."""

    def __init__(self, layout: Layout, data: bytes, key_of: Callable[[bytes], Any]) -> None:
        self.layout, self.data, self.key_of = layout, data, key_of
        self.memo: dict[int, tuple[int, Any]] = {}  # start of a record -> its end, its key
        if data == layout.empty:
            self.start = self.end = self.stop = 0
        elif data.startswith(layout.opening) and data.endswith(layout.tail):
            self.start = data.index(b"\n") + 1
            self.end = len(data) - len(layout.tail)  # (where the tail's newline is)
            self.stop = self.end + len(layout.sep)
        else:
            raise ValueError("not a list file of this layout")

    def count(self) -> int:
        return self.data.count(b"\n", self.start, self.end) + 1 if self.stop else 0

    def record(self, at: int) -> tuple[int, int, Any]:
        """The record that holds byte ``at`` (of the records): its start, end and key."""
        data = self.data
        start = data.rfind(b"\n", 0, min(at, self.end - 1)) + 1
        found = self.memo.get(start)
        if found is None:
            end = data.index(b"\n", start)
            end -= len(self.layout.sep) - 1 if end < self.end else 0
            found = self.memo[start] = (end, self.key_of(data[start:end]))
        return start, *found

    def first_not_below(self, k: Any) -> int:
        """Where the first record whose key is not below ``k`` starts (else ``stop``)."""
        lo, hi, step = self.start, self.stop, len(self.layout.sep)
        while lo < hi:
            start, end, key = self.record((lo + hi) // 2)
            if key < k:
                lo = end + step
            else:
                hi = start
        return lo

    def holds(self, at: int, rec: bytes) -> int:
        """Where the record at ``at`` ends, its separator included, if it is ``rec``;
        else -1."""
        if at >= self.stop:
            return -1
        start = at
        if self.layout.prefix is not None:
            found = self.layout.prefix.match(self.data, at)
            start = -1 if found is None else found.end()
        end = start + len(rec)
        if start < 0 or not self.data.startswith(rec, start):
            return -1
        if end == self.end or self.data.startswith(self.layout.sep, end):
            return end + len(self.layout.sep)
        return -1

    def run(self, start: int, stop: int) -> list[bytes | memoryview]:
        """The records from ``start`` to ``stop`` (places of records, or ``stop``), each
        followed by a separator."""
        if stop <= start:
            return []
        if stop <= self.end:
            return [memoryview(self.data)[start:stop]]
        return [memoryview(self.data)[start : self.end], self.layout.sep]


def between(
    layout: Layout, data: bytes, key_of: Callable[[bytes], Any], ranges: Sequence[tuple[Any, Any]]
) -> list[list[bytes]]:
    """For each (low, high) of ``ranges``: the records of ``data`` (as the file has them,
    prefix and all) whose keys are not below ``low`` and below ``high``."""
    return _between(_Records(layout, data, key_of), ranges)


def _between(found: _Records, ranges: Sequence[tuple[Any, Any]]) -> list[list[bytes]]:
    """:func:`between` of the records of a file already looked into."""
    out, data, sep = [], found.data, found.layout.sep
    for lo, hi in ranges:
        start, stop = found.first_not_below(lo), found.first_not_below(hi)
        records = data[start : min(stop, found.end)].split(sep) if stop > start else []
        out.append(records[:-1] if records and not records[-1] else records)
    return out


@dataclass(frozen=True)
class Patched:
    """A list file patched (:func:`patch`): the new file as ``pieces`` (to write as they
    are: most are slices of the old file's bytes), the records that left it and those
    that came into it."""

    pieces: list[bytes | memoryview]
    dropped: list[Keyed]
    came: list[Keyed]
    old: _Records
    make: Callable[[bytes], bytes]

    def join(self) -> bytes:
        return b"".join(self.pieces)

    def between(self, ranges: Sequence[tuple[Any, Any]]) -> list[list[bytes]]:
        """:func:`between` of the new file, found in the old one and what moved (the new
        one is never joined to be searched)."""
        layout, key_of = self.old.layout, self.old.key_of
        gone = {rec for _, rec in self.dropped}
        out = []
        for (lo, hi), records in zip(ranges, _between(self.old, ranges), strict=True):
            kept = [(key_of(r), r) for r in records if _own(layout, r) not in gone]
            kept += [(k, self.make(rec)) for k, rec in self.came if lo <= k < hi]
            out.append([r for _, r in sorted(kept, key=itemgetter(0))])
        return out


def _own(layout: Layout, record: bytes) -> bytes:
    """A record of a file without its prefix (as :func:`patch` is given it)."""
    found = layout.prefix.match(record) if layout.prefix is not None else None
    return record[found.end() :] if found else record


def patch(
    layout: Layout,
    data: bytes,
    key_of: Callable[[bytes], Any],
    removed: Sequence[Keyed],
    added: Sequence[Keyed],
    multi: dict[bytes, int],
    *,
    head: bytes | Callable[[int], bytes] = b"",
    make: Callable[[bytes], bytes] = bytes,
) -> Patched | None:
    """``data`` (a file of ``layout`` whose records are sorted by ``key_of``) without
    ``removed`` and with ``added``; and the records that left it and those that came into
    it (a record another group still gives stays; one it already holds is not listed
    twice: see ``multi``). None when a record to take out is not there: the file is not
    the one that held it. ``head`` is the new file's head line (or makes it from the
    count of records it holds), ``make`` a new record's line (its prefix and it). The
    pieces refer to ``data``, which must not change while they are in use.

    A record is found by ``key_of`` (of its line, prefix and all) and ``removed`` and
    ``added`` give each one's key."""
    try:
        found = _Records(layout, data, key_of)
    except ValueError:
        return None
    first_not_below, holds = found.first_not_below, found.holds
    cut: dict[int, int] = {}  # start -> end (separator included) of each record taken out
    taken: dict[int, Keyed] = {}
    for k, rec in removed:
        n = multi.get(rec)
        if n:
            multi[rec] = n - 1
            if n == 2:
                del multi[rec]
            continue
        at = first_not_below(k)
        end = holds(at, rec)
        if end < 0 or at in cut:
            return None
        cut[at] = end
        taken[at] = (k, rec)
    put: dict[bytes, tuple[int, Any]] = {}  # each record put in: where, and its key
    for k, rec in added:
        at = -1 if rec in put else first_not_below(k)
        there = at >= 0 and holds(at, rec) >= 0
        if there and at in cut:
            del cut[at]  # taken out and put back (a rebuild that moved nothing of it)
        elif at < 0 or there:
            multi[rec] = multi.get(rec, 1) + 1  # (another group gives it too)
        else:
            put[rec] = (at, k)
    # at one place, what is put in (in key order) before what is taken out
    edits = sorted(
        [(at, 0, k, rec) for rec, (at, k) in put.items()] + [(at, 1, None, b"") for at in cut]
    )
    pieces: list[bytes | memoryview] = []
    done = found.start
    for at, kind, _, rec in edits:
        pieces += found.run(done, at)
        if kind:
            done = cut[at]
        else:
            pieces.append(make(rec) + layout.sep)
            done = at
    pieces += found.run(done, found.stop)
    dropped = [taken[at] for at in sorted(cut)]
    came = [(k, rec) for rec, (_, k) in put.items()]
    if callable(head):
        head = head(found.count() - len(cut) + len(put))
    return Patched(layout.file(head, pieces), dropped, came, found, make)


def read_same(root: str, rel: str, known: Mapping[str, list[int]]) -> bytes | None:
    """The bytes of the list file ``rel`` of the site at ``root`` while it is the one a
    render wrote (its size, time and inode as :func:`identity` gave them in ``known``);
    None when it is not (changed since, copied, gone) or cannot be read."""
    try:
        fd = os.open(f"{root}/{rel}", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if known.get(rel) != _identity(os.fstat(fd)):
            return None
        with os.fdopen(os.dup(fd), "rb") as f:
            return f.read()
    except OSError:
        return None
    finally:
        os.close(fd)


def identity(root: str, rel: str) -> list[int]:
    """What :func:`read_same` checks of a file a render just wrote."""
    return _identity(os.stat(f"{root}/{rel}"))


def _identity(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def repeated(records: list[bytes]) -> dict[bytes, int]:
    """How many times each record given more than once is in ``records`` (sorted: equal
    records are neighbours), for :func:`patch`.

    >>> repeated([b"a", b"b", b"b", b"c", b"c", b"c"]), repeated([b"a", b"b"])
    ({b'b': 2, b'c': 3}, {})
    """
    out: dict[bytes, int] = {}
    if not any(map(operator.eq, records, islice(records, 1, None))):
        return out  # (one C-level look: one profile per distribution, the common case)
    last = None
    for record in records:
        if record == last:
            out[record] = out.get(record, 1) + 1
        last = record
    return out
