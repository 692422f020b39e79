"""The search index: a small manifest and prefix shards, fetched as the user types.

Every source and binary package name of every profile is an entry. Entries
are sorted by their lowercased name and cut into a trie of prefixes: a
prefix with at most :data:`LEAF` entries is a *leaf* shard holding them
all; a larger one is an *inner* shard holding only its first :data:`HEAD`
entries (what a query equal to that prefix shows first) and is split by
the next character. ``search/index.json`` (the manifest) maps each prefix
to its shard's number, entry count and kind. The script
(``static/search.js``) fetches the manifest once, then for a query the one
shard of its longest prefix in the manifest: a few kilobytes per keystroke,
never the whole package list.

Manifest (``search/index.json``)::

    {"v": 1, "head": 50, "suites": [[profile, "release/component/arch", url], ...],
     "nodes": {prefix: [shard, count, leaf (1) or inner (0)], ...}}

Shard (``search/<shard>.json``)::

    {"e": [[name, version, status, suite, page, source], ...]}

``suite`` indexes ``suites``, except in a maintainer's entry (:func:`maintainer_entries`),
whose ``suite`` is :data:`MAINTAINER`. The group's page is ``url + "pkg/" + page +
".html"``, where an empty ``page`` stands for the source's name (the name
itself when ``source`` is empty: the entry is a source package). A ``page``
starting with ``/`` is the page's whole path instead (a group whose key does
not match its fields). URLs are relative to the site root and already quoted.

>>> e = [Entry("hello", "1", "GOOD", 0, "", ""), Entry("hello-doc", "1", "GOOD", 0, "", "hello")]
>>> files = build(e, [["p", "r/c/a", "p/p/r/c/a/"]], leaf=1)
>>> nodes = json.loads(files["index.json"])["nodes"]
>>> nodes["hello"], nodes["hello-"]  # "hello" is inner (2 entries), "hello-" a leaf
([5, 2, 0], [6, 1, 1])
"""

from __future__ import annotations

import bisect
import json
import sys
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, NamedTuple

from rebuilder.site.output import content_digest, made_from

LEAF = 800  # entries of a leaf shard at most: ~8 KB compressed
HEAD = 50  # entries an inner shard shows for a query equal to its prefix
MAX_PREFIX = 64  # a prefix this long is a leaf however many names share it
VERSION = 1


class Entry(NamedTuple):
    name: str
    version: str
    status: str
    suite: int
    page: str  # quoted page segment, "" when it is the source name itself, or "/<path>"
    source: str  # "" for a source package


# An entry as the render gathers them: :class:`Entry`'s fields in a plain tuple (130,000 of
# them at Debian's size, made on every render).
Fields = tuple[str, str, str, int, str, str]


MAINTAINER = -1  # the suite of a maintainer's entry: its page is in ``page``


def maintainer_entries(
    names: Sequence[str], key: str, page: str, total: int, attention: int
) -> list[Entry]:
    """A maintainer's entries: one per name as written (without the address) and one for
    the address (``key``), each giving ``"<n> packages"`` as the version, ``"<n> BAD/FAIL"``
    as the status and ``"/" + page`` (their page, quoted) as the page.

    >>> [e.name for e in maintainer_entries(["Jane <j@x.org>", "jane <J@x.org>"], "j@x.org",
    ...                                     "m/j%2540x.org.html", 3, 1)]
    ['j@x.org', 'Jane']
    """
    shown = {n.partition("<")[0].strip() or n for n in names} | {key}
    unique = {n.lower(): n for n in sorted(shown, reverse=True)}  # one per lowercased name
    status = f"{attention} BAD/FAIL" if attention else ""
    return [
        Entry(n, f"{total} packages", status, MAINTAINER, "/" + page, "")
        for n in sorted(unique.values(), key=str.lower)
    ]


_LAST = chr(sys.maxunicode)


def _after(ch: str) -> str:
    """The character after ``ch``: every name that starts with a prefix and ``ch`` sorts
    before the prefix and it."""
    return chr(ord(ch) + 1)


def _dump(obj: Any) -> bytes:
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return (text + "\n").encode("utf-8", "replace")


def build(
    entries: Sequence[Fields], suites: Sequence[Sequence[str]], *, leaf: int | None = None
) -> dict[str, bytes]:
    """The files of the index, by name relative to ``search/`` (``leaf``: :data:`LEAF`)."""
    return {name: make() for name, (_, make) in shards(entries, suites, leaf=leaf).items()}


# a file of the index yet to be made: a digest of what it is made from, and what makes it
Shard = tuple[bytes, Callable[[], bytes]]


def shards(
    entries: Sequence[Fields], suites: Sequence[Sequence[str]], *, leaf: int | None = None
) -> dict[str, Shard]:
    """:func:`build`'s files, each made only when asked: a render makes again only those
    whose entries moved (a change touches a few of the 500-odd shards at Debian's size; the
    JSON of all of them costs more than their digests)."""
    leaf = leaf or LEAF
    lower = list(map(str.lower, map(itemgetter(0), entries)))
    order = sorted(range(len(entries)), key=lower.__getitem__)  # stable: ties keep their order
    # C-level passes over the 130,000 entries at Debian's size, and a shard is cut by
    # bisecting the sorted names, not by looking at each of its entries
    ordered = list(map(entries.__getitem__, order))
    key = lower.__getitem__
    nodes: dict[str, list[int]] = {}
    files: dict[str, Shard] = {}

    stack = [("", 0, len(order))]  # a loop, not recursion: hostile names can be long
    while stack:
        prefix, lo, hi = stack.pop()
        shard = len(nodes)
        count = hi - lo
        if count <= leaf or len(prefix) >= MAX_PREFIX:  # long shared prefixes: hostile names
            nodes[prefix] = [shard, count, 1]
            files[f"{shard}.json"] = _shard(ordered[lo:hi])
            continue
        depth = len(prefix)
        exact = bisect.bisect_right(order, prefix, lo, hi, key=key)  # the prefix sorts first
        head = ordered[lo : min(hi, max(lo + HEAD, exact))]
        nodes[prefix] = [shard, count, 0]
        files[f"{shard}.json"] = _shard(head)
        children = []
        start = exact
        while start < hi:
            ch = lower[order[start]][depth]
            end = hi
            if ch != _LAST:
                end = bisect.bisect_left(order, prefix + _after(ch), start, hi, key=key)
            children.append((prefix + ch, start, end))
            start = end
        stack.extend(reversed(children))

    manifest = {"v": VERSION, "head": HEAD, "suites": [list(s) for s in suites], "nodes": nodes}
    data = _dump(manifest)
    files["index.json"] = (content_digest(data), lambda: data)
    return files


def _shard(entries: list[Fields]) -> Shard:
    # (marshal takes no tuple of a subclass, an Entry, and tuple() of a tuple is that tuple)
    source = made_from(list(map(tuple, entries)))
    return source, lambda: _dump({"e": entries})  # (tuples dump as JSON lists)
