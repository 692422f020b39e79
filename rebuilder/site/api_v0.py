"""Every JSON shape the site emits (except feeds, badges and search), in this one place.

rebuilderd's v0 shapes (``PkgRelease`` in ``pkgs/list`` and
``DashboardResponse`` in ``dashboard``) are reproduced field for field so
that rebuilderd's clients read this site as they read a rebuilderd; our own
``index.json``, suite shards and group documents sit beside them (their
schema is in ``docs/site.md``). A group document embeds
``GroupRecord.to_json()`` (the model owns that shape). Output is
deterministic: lists sorted, keys sorted, so re-rendering an unchanged state
produces identical bytes.

>>> from rebuilder.model import Artifact, BuildGroup, GroupRecord
>>> a = Artifact("hello", "1.0-1", "amd64", "https://mirror.example/hello.deb", "0" * 64, 1)
>>> g = BuildGroup("hello", "1.0-1", "debian", "bookworm", "main", "amd64",
...                "https://mirror.example/x", (a,))
>>> [p[STATUS] for p in pkg_lines(GroupRecord(g), None, ())]
['UNKWN']
"""

from __future__ import annotations

import datetime as _dt
import json
from collections import Counter
from collections.abc import Container, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any

from rebuilder.api import v0
from rebuilder.model import Attempt, GroupRecord, Status, format_time
from rebuilder.site import paths, splice
from rebuilder.site.api_v1 import sorted_unique

INDEX_SCHEMA = 2
SUITE_SCHEMA = 1
GROUP_SCHEMA = 1


def dumps(obj: Any, *, indent: int | None = None) -> bytes:
    """Canonical JSON bytes: sorted keys, UTF-8, a final newline."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, indent=indent)
    return (text + "\n").encode("utf-8", "surrogatepass")


def attempt_for_version(record: GroupRecord) -> Attempt | None:
    """The newest attempt at the group's current inputs (else at its current version)."""
    return record.version_attempt()


def v0_attempt(record: GroupRecord) -> Attempt | None:
    """The attempt rebuilderd's v0 would name: none while the current version is unbuilt."""
    if record.status is Status.UNKWN:
        return None
    return attempt_for_version(record)


def _releases(
    record: GroupRecord, attempt: Attempt | None, has: Container[str]
) -> list[v0.PkgRelease]:
    """rebuilderd's ``PkgRelease`` for every artifact of one group; ``attempt`` is
    :func:`v0_attempt`'s, ``has`` the v0 build files published for it. ``suite`` is the
    group's component (rebuilderd's convention: Debian ``main``, Arch ``core``)."""
    g = record.group
    status = _V0[record.status]
    build_id = attempt.build_id if attempt else None
    when = format_time(attempt.ended_at) if attempt else None
    dif = attempt is not None and "diffoscope" in has
    att = attempt is not None and "attestation" in has
    make = v0.PkgRelease
    return [
        make(a.name, a.version, status, g.distro, g.component, a.architecture, a.url, *build)
        for a in g.artifacts
        for build in [(build_id, when, dif, att)]
    ]


# One ``PkgRelease`` as the render handles it: its sort key (the fields joined by NUL,
# which sorts as their tuple would), what the dashboard counts, and the object already
# encoded (:meth:`rebuilder.api.v0.PkgRelease.encode`, in UTF-8: ``pkgs/list`` is joined
# from bytes, with no copy of 26 MB to encode). A plain tuple: the render cache keeps it,
# and a Debian-sized render handles 82,000 of them.
PkgLine = tuple[str, str, str, str, bytes]  # (sort, suite, status, architecture, line)
SORT, SUITE, STATUS, ARCH, LINE = range(5)


_V0 = {s: s.v0 for s in Status}


def pkg_lines(record: GroupRecord, attempt: Attempt | None, has: Container[str]) -> list[PkgLine]:
    """:func:`_releases`, encoded (``has`` holds the v0 build files published)."""
    g = record.group
    status, suite = _V0[record.status], g.component
    return [
        ("\0".join((a.name, a.version, a.architecture, suite, a.url, status)), suite, status,
         a.architecture, p.encode().encode("utf-8", "surrogatepass"))
        for a, p in zip(g.artifacts, _releases(record, attempt, has), strict=True)
    ]  # fmt: skip


def blob(lines: Sequence[PkgLine]) -> bytes:
    """A group's lines as the render cache keeps them: their JSON, one per line (what
    :func:`lines_of` reads back). One object, read back only for a group redone: not
    five per line for all 82,000 of them (see :mod:`rebuilder.site.splice`)."""
    return b"\n".join(map(itemgetter(LINE), lines))


def lines_of(data: bytes) -> list[PkgLine]:
    """The lines of :func:`blob`'s ``data``.

    >>> from rebuilder.model import Artifact, BuildGroup, GroupRecord
    >>> a = Artifact("hello", "1.0-1", "amd64", "https://mirror.example/h.deb", "0" * 64, 1)
    >>> g = BuildGroup("hello", "1.0-1", "debian", "sid", "main", "amd64", "", (a, a))
    >>> lines = pkg_lines(GroupRecord(g), None, ())
    >>> lines_of(blob(lines)) == lines, lines_of(b"")
    (True, [])
    """
    return [line_of(line) for line in data.split(b"\n")] if data else []


def line_of(line: bytes) -> PkgLine:
    """A :class:`PkgLine` from its JSON (:data:`LINE`)."""
    d = json.loads(line.decode("utf-8", "surrogatepass"))
    suite, status, arch = d["suite"], d["status"], d["architecture"]
    sort = "\0".join((d["name"], d["version"], arch, suite, d["artifact_url"], status))
    return (sort, suite, status, arch, line)


# how ``pkgs/list`` holds its lines (rebuilder.api.v0.pkgs_list), for splice.patch
PKGS_LIST = splice.Layout(b"[\n", b",\n", b"\n]\n", b"[]\n")


def line_key(line: bytes) -> tuple[str, bytes]:
    """What :func:`unique_lines` sorts a line by: its sort key, then its bytes."""
    return line_of(line)[0], line


def unique_lines(lines: Iterable[PkgLine]) -> list[PkgLine]:
    """Sorted by name, version, architecture, suite, URL and status; exact duplicates (the
    same group in overlapping profiles) dropped. A line's fields all come from its
    encoded object, so the line itself breaks a tie and equal lines are equal tuples."""
    return sorted_unique(lines)


# (architecture, suite, status) -> how many lines have them: what every v0 dashboard of a
# distribution counts, counted once for its whole tree and its per-architecture ones
LineCounts = Mapping[tuple[str, str, str], int]


def line_counts(lines: Iterable[PkgLine]) -> LineCounts:
    return Counter(map(itemgetter(ARCH, SUITE, STATUS), lines))


def dashboard(
    counts: LineCounts, queue_length: int, now: _dt.datetime, arch: str | None = None
) -> dict[str, Any]:
    """rebuilderd's ``DashboardResponse``: per suite counts of packages (artifacts), of
    one architecture or (None) of all."""
    suites: dict[str, dict[str, int]] = {}
    names = {"GOOD": "good", "BAD": "bad", "UNKWN": "unknown"}
    for (a, suite, status), n in counts.items():
        if arch is None or a == arch:
            stats = suites.setdefault(suite, {"good": 0, "unknown": 0, "bad": 0})
            stats[names[status]] += n
    return {
        "suites": dict(sorted(suites.items())),
        "active_builds": [],  # a static site has no builds in flight
        "queue_length": queue_length,
        "now": format_time(now),
    }


def counts_entry(counts: Mapping[Status, int]) -> dict[str, Any]:
    """Counts, total and share of GOOD (None when there is nothing to count)."""
    total = sum(counts.values())
    good = counts.get(Status.GOOD, 0)
    return {
        "counts": {s.value: counts.get(s, 0) for s in Status},
        "total": total,
        "reproduced": round(good / total, 4) if total else None,
    }


def suite_entry(
    release: str,
    component: str,
    architecture: str,
    counts: Mapping[Status, int],
    url: str,
    shard: str,
    causes: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """One suite of one profile in ``index.json``: its list page and its JSON shard, and
    its BAD groups counted by cause (:mod:`rebuilder.causes`)."""
    return {
        "release": release,
        "component": component,
        "architecture": architecture,
        **counts_entry(counts),
        "causes": dict(sorted((causes or {}).items())),
        "url": url,
        "json": shard,
    }


def profile_entry(
    name: str,
    distro: str,
    queue_length: int,
    last_pass: _dt.datetime | None,
    links: Mapping[str, Any],
    counts: Mapping[Status, int],
    suites: list[dict[str, Any]],
    causes: Mapping[str, int] | None = None,
    cause_history: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One profile in ``index.json``; ``links`` holds ``api``, ``arch_api``, ``feeds``,
    ``badge``...; ``causes`` counts its BAD groups by cause, ``cause_history`` after each
    pass (:func:`rebuilder.site.history.cause_history`)."""
    return {
        "name": name,
        "distro": distro,
        "queue_length": queue_length,
        "last_pass": format_time(last_pass),
        **counts_entry(counts),
        "causes": dict(sorted((causes or {}).items())),
        "cause_history": dict(cause_history or {"at": [], "BAD": [], "causes": {}}),
        **links,
        "suites": suites,
    }


def index(profiles: list[dict[str, Any]], links: Mapping[str, object]) -> dict[str, Any]:
    """``index.json``: every profile with its suites, counts and URLs (relative to the site)."""
    return {"schema": INDEX_SCHEMA, "profiles": profiles, **links}


SUITE_FIELDS = ("name", "version", "status", "built_at", "build_id", "url")


def suite_row(
    name: str, version: str, status: str, built: str | None, build_id: int | None, page: str
) -> str:
    """One group of a suite's JSON (``SUITE_FIELDS``), encoded."""
    when = "null" if built is None else f'"{built}"'
    bid = "null" if build_id is None else str(int(build_id))
    url = v0.json_str(paths.url(page))
    return f'[{v0.json_str(name)},{v0.json_str(version)},"{status}",{when},{bid},{url}]'


def suite_shard(
    profile: str,
    release: str,
    component: str,
    architecture: str,
    counts: Mapping[Status, int],
    rows: Sequence[str],
) -> bytes:
    """A suite's JSON: one :func:`suite_row` per group, one per line."""
    head = {
        "schema": SUITE_SCHEMA,
        "profile": profile,
        "release": release,
        "component": component,
        "architecture": architecture,
        **counts_entry(counts),
        "fields": list(SUITE_FIELDS),
    }
    encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    text = encode(head)[:-1] + ',"groups":[\n' + ",\n".join(rows) + "\n]}\n"
    return text.encode("utf-8", "surrogatepass")


def group(
    profile: str,
    record: GroupRecord,
    page: str,
    files: Mapping[int, Mapping[str, str]],
    changes: Sequence[Mapping[str, Any]],
) -> bytes:
    """A group's JSON beside its page: the record as the state keeps it (every attempt),
    its status changes, and the URLs of its page and build files (relative to the site)."""
    doc = {
        "schema": GROUP_SCHEMA,
        "profile": profile,
        "key": record.group.key,
        "page": page,
        "record": record.to_json(),
        "changes": list(changes),
        "files": {str(k): dict(sorted(v.items())) for k, v in sorted(files.items())},
    }
    return dumps(doc)


def public_keys(pems: Sequence[str]) -> dict[str, list[str]]:
    """rebuilderd's ``PublicKeys``: the PEM of each current signing key."""
    return v0.public_keys(list(pems))
