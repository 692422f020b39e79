"""The per-distribution lists an incremental render rebuilds from every group (v1's
``packages/binary``, v0's ``pkgs/list`` and dashboards, the search index): their fast
paths give the bytes the plain rules they stand for give."""

from __future__ import annotations

import datetime as dt
import json
import random
import sys
from collections import defaultdict

from rebuilder.site import api_v0, api_v1, search

NOW = dt.datetime(2024, 6, 1)


def _reference_index(entries: list[search.Entry], leaf: int) -> dict[str, bytes]:
    """The index as its rule reads: names sorted lowercased (ties in their order), a
    prefix of more than ``leaf`` entries split by the next character, one entry at a time."""
    keyed = sorted(((e.name.lower(), e) for e in entries), key=lambda t: t[0])
    nodes: dict[str, list[int]] = {}
    files: dict[str, bytes] = {}

    def dump(part: list[tuple[str, search.Entry]]) -> bytes:
        return _json({"e": [list(e) for _, e in part]})

    stack = [("", keyed)]
    while stack:
        prefix, part = stack.pop()
        shard = len(nodes)
        if len(part) <= leaf or len(prefix) >= search.MAX_PREFIX:
            nodes[prefix] = [shard, len(part), 1]
            files[f"{shard}.json"] = dump(part)
            continue
        exact = [t for t in part if t[0] == prefix]
        nodes[prefix] = [shard, len(part), 0]
        files[f"{shard}.json"] = dump(part[: max(search.HEAD, len(exact))])
        children: dict[str, list[tuple[str, search.Entry]]] = {}
        for t in part[len(exact) :]:
            children.setdefault(prefix + t[0][len(prefix)], []).append(t)
        stack.extend(reversed(children.items()))
    suites = [["p", "r/c/a", "p/"]]
    manifest = {"v": search.VERSION, "head": search.HEAD, "suites": suites, "nodes": nodes}
    files["index.json"] = _json(manifest)
    return files


def _json(doc: object) -> bytes:
    text = json.dumps(doc, ensure_ascii=False, separators=(",", ":"))
    return (text + "\n").encode("utf-8", "replace")


def test_search_shards_are_cut_as_the_rule_reads() -> None:
    rng = random.Random(5)
    top = chr(sys.maxunicode)
    stems = ["lib", "Lib", "python3-", "x", "é", "\u2028", top, top + top, "a\ud800"]
    entries = []
    for i in range(3000):
        name = rng.choice(stems) + "".join(
            rng.choice("ab-" + top) for _ in range(rng.randint(0, 4))
        )
        entries.append(search.Entry(name, str(i), "GOOD", i % 3, "", rng.choice(["", "src"])))
    entries += [search.Entry(s, "0", "BAD", 0, "", "") for s in stems]  # a name = a prefix
    for leaf in (1, 7, 60, 5000):
        assert search.build(entries, [["p", "r/c/a", "p/"]], leaf=leaf) == _reference_index(
            entries, leaf
        ), leaf


def test_sorted_unique_drops_exact_duplicates_only() -> None:
    rows = [("b\0x", 2, "b", "t2"), ("a\0x", 1, "a", "t1"), ("b\0x", 2, "b", "t2")]
    rows += [("b\0x", 2, "b", "t3"), ("a\0x", 1, "a", "t1"), ("c\0x", 0, "c", "t")]
    assert api_v1.sorted_unique(rows) == sorted(set(rows))
    assert api_v1.sorted_unique(rows[:1]) == rows[:1] and api_v1.sorted_unique([]) == []


def test_v0_dashboard_counts_each_architecture_and_all() -> None:
    rng = random.Random(3)
    lines = [
        ("s", rng.choice(["main", "contrib"]), rng.choice(["GOOD", "BAD", "UNKWN"]),
         rng.choice(["amd64", "all", "arm64"]), b"{}")
        for _ in range(500)
    ]  # fmt: skip
    counts = api_v0.line_counts(lines)
    for arch in (None, "amd64", "all", "arm64", "s390x"):
        want: dict[str, dict[str, int]] = defaultdict(lambda: {"good": 0, "unknown": 0, "bad": 0})
        for _, suite, status, a, _ in lines:
            if arch in (None, a):
                want[suite][{"UNKWN": "unknown"}.get(status, status.lower())] += 1
        board = api_v0.dashboard(counts, 4, NOW, arch)
        assert board["suites"] == dict(sorted(want.items())), arch
        assert list(board["suites"]) == sorted(want)
