"""rebuilderd's v1 read API as static files, for rebuildctl (which speaks only v1).

Per distribution, beside ``api/v0``::

    api/v1/packages/binary            every binary package, one ResultPage, sorted by name
    api/v1/packages/by-name/<name>    the page of one name (what ``?name=<name>`` answers)
    api/v1/page-end                   an empty page (what ``?after=<id>`` answers)
    api/v1/queue                      the build queue, one ResultPage (see site/queue.py)
    api/v1/workers                    an empty page: a static site has no workers
    api/v1/dashboard                  builds by status, jobs available and pending
    api/v1/meta/public-keys           the signing keys
    api/v1/builds/<id>/artifacts/<artifact id>/attestation   one artifact's link, where
                                      the build's attestation holds several

A record's ``id`` comes from the package alone (a digest of its name, version,
architecture, release, component and URL: :func:`package_ids`), so a package new to the
archive or gone from it changes no other package's id, nor its by-name page; an
``artifact_id`` is the artifact's place in its group (1..n). A plain static server ignores
query strings: rebuildctl walks a list until a page comes back empty, so against such a
server ``pkgs ls`` and ``queue ls`` (of a non-empty queue) never end, and ``--name`` finds
the whole list. docs/site.md gives the nginx and Caddy rules that route ``?after=`` to
``page-end`` and ``?name=`` to ``by-name/``; our own client stops at ``total``.

A build's v1 files (``builds/<id>/log``, ``builds/<id>/artifacts/<n>/attestation`` and
``diffoscope``) are its v0 copies: the same rules answer them from ``api/v0/builds/<id>/``
rather than the site holding a link and three folders for each (rebuildctl reaches a build
only through ``?name=``, which needs the rules anyway; our client falls back to v0). Only
one artifact's piece of an attestation that links several is a file of its own.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import hashlib
import json
import logging
import operator
import os
import re
from array import array
from collections import defaultdict
from collections.abc import Container, Iterable, Mapping, Sequence
from itertools import compress, islice
from operator import itemgetter
from typing import Any, NamedTuple, TypeVar

from rebuilder import attest
from rebuilder.api import v0, v1
from rebuilder.model import Artifact, Attempt, BuildGroup, GroupRecord, Status
from rebuilder.site import paths, splice
from rebuilder.site.output import Output

log = logging.getLogger(__name__)

PAGE_END = "page-end"
MAX_ATTESTATION = 64 << 20  # bytes read of a build's attestation to split it
_PEEK = 4096  # bytes read first: whether the attestation is a list of links
_JSON_SPACE = b" \t\n\r"


class BinaryRow(NamedTuple):
    """One binary package before it gets its id: its sort key and its record."""

    sort: str  # see _sort
    record: v1.BinaryPackage


def last_seen(record: GroupRecord) -> _dt.datetime | None:
    """A package's ``last_seen``: for a group gone from the repository, the last sync that
    saw it; for one in it (``seen_in_last_sync``), when it was first seen, a time it was
    seen at like every sync since. Not the time of the latest sync, which would rewrite
    every package's records (82,000 by-name pages at Debian's size) on every pass. None
    for a record that knows neither (the render's time is shown)."""
    return record.last_seen or record.first_seen


def binary_rows(
    record: GroupRecord, attempt: Attempt | None, served: Container[str], now: _dt.datetime
) -> list[BinaryRow]:
    """The v1 binary packages of one seen group, id 0 (set by :func:`write_packages`).

    ``attempt`` is the one v0 names (None while the current version is unbuilt);
    an artifact's status is its own comparison's; a failed build gives null.
    """
    g = record.group
    results = {r.name: r for r in attempt.artifacts} if attempt else {}
    rows = []
    for i, a in enumerate(g.artifacts, start=1):
        status: str | None = None
        artifact_id = None
        if attempt is not None and attempt.status in (Status.GOOD, Status.BAD):
            result = results.get(a.name)
            good = result.identical if result else attempt.status is Status.GOOD
            status, artifact_id = ("GOOD" if good else "BAD"), i
        has_log = (status == "GOOD" and "attestation" in served) or (
            status == "BAD" and "diffoscope" in served
        )
        p = v1.BinaryPackage(
            id=0,
            name=a.name,
            version=a.version,
            distribution=g.distro,
            release=g.release or None,
            component=g.component or None,
            architecture=a.architecture,
            url=a.url,
            status=status,
            build_id=attempt.build_id if attempt else None,
            artifact_id=artifact_id,
            diffoscope_log_id=artifact_id if has_log and status == "BAD" else None,
            attestation_log_id=artifact_id if has_log and status == "GOOD" else None,
            last_seen=last_seen(record) or now,
            seen_in_last_sync=record.seen,
        )
        rows.append(BinaryRow(_sort(g, a, status), p))
    return rows


def _sort(g: BuildGroup, a: Artifact, status: str | None) -> str:
    # one string, its fields joined by NUL (which no field holds): it sorts as their tuple
    # would, for less (82,000 rows at Debian's size, sorted on every render)
    return "\0".join(
        (a.name, a.version, a.architecture, g.release, g.component, a.url, status or "")
    )


# A :class:`BinaryRow` encoded but for its id: its line is ``{"id":<id>,`` + ``tail`` (UTF-8:
# pages are joined from bytes). A plain tuple: the render cache keeps it, and a
# Debian-sized render handles 82,000.
EncodedRow = tuple[str, int, str, bytes, int]  # (sort, build_id, name, tail, its id's digest)


_NO_ID = '{"id":0,'


def blob(rows: Sequence[EncodedRow]) -> bytes:
    """A group's rows as the render cache keeps them: their tails, one per line (what
    :func:`rows_of` reads back; see :func:`rebuilder.site.api_v0.blob`)."""
    return b"\n".join(map(itemgetter(3), rows))


def rows_of(data: bytes) -> list[EncodedRow]:
    """The rows of :func:`blob`'s ``data``."""
    return [row_of(tail) for tail in data.split(b"\n")] if data else []


def row_of(tail: bytes) -> EncodedRow:
    """An :data:`EncodedRow` from its tail (its JSON but for the id)."""
    sort, build_id, name, tail = _key(tail)
    return (sort, build_id, name, tail, _digest_id(sort))


_SORTED_BY = ("name", "version", "architecture", "release", "component", "url", "status")


def _key(tail: bytes) -> tuple[str, int, str, bytes]:
    d = json.loads("{" + tail.decode("utf-8", "surrogatepass"))
    sort = "\0".join([d[f] or "" for f in _SORTED_BY])
    return sort, d["build_id"] or 0, d["name"], tail


_ID = re.compile(rb'\{"id":(\d+),')


def line_key(line: bytes) -> tuple[str, int, str, bytes]:
    """What the list sorts a line of ``packages/binary`` by (its id aside: a bisection
    over the list reads a dozen lines for each package it looks for, and needs no id)."""
    found = _ID.match(line)
    return _key(line[found.end() if found else 0 :])


# how ``packages/binary`` holds its records (:func:`numbered_page`), for splice.patch
ROWS = splice.Layout(b'{"total": ', b",\n", b"\n]}\n", b'{"total": 0, "records": []}\n', _ID)
_Row = TypeVar("_Row", bound=tuple[Any, ...])


def encoded_rows(rows: Iterable[BinaryRow], attempt: Attempt | None) -> list[EncodedRow]:
    """Each row of a group (``attempt``: the one v0 names) as :class:`EncodedRow`'s
    tuples: what the render cache keeps."""
    build_id = attempt.build_id if attempt else 0
    out = []
    for r in rows:
        text = r.record.encode()  # "id" is the first key, 0 until numbered
        assert text.startswith(_NO_ID)
        tail = text[len(_NO_ID) :].encode("utf-8", "surrogatepass")
        out.append((r.sort, build_id, r.record.name, tail, _digest_id(r.sort)))
    return out


ID_SPACE = (1 << 31) - 1  # rebuilderd's ids are i32: 1..2^31-1


def _digest_id(sort: str) -> int:
    """The id a package's identity (its sort key but the status) asks for."""
    identity = sort.rpartition("\0")[0].encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(identity, digest_size=8).digest()
    return int.from_bytes(digest, "big") % ID_SPACE + 1


def package_ids(wanted: Sequence[int]) -> tuple[list[int], list[int]]:
    """The ids of the packages of a list (``wanted``: each one's :func:`_digest_id`, in
    the list's order), and the places of those that could not have theirs.

    Two packages asking for the same id (about one pair in 80,000 packages) are settled in
    list order: the later one takes the next free id.

    >>> package_ids([7, 3, 7, 8])
    ([7, 3, 8, 9], [2, 3])
    """
    ids = list(wanted)
    if len(set(ids)) == len(ids):
        return ids, []  # (all but always: one C-level look)
    moved, used = [], set()
    for place, i in enumerate(wanted):
        if i in used:
            moved.append(place)
            while i in used:
                i = i % ID_SPACE + 1
        used.add(i)
        ids[place] = i
    return ids, moved


def published(attempt: Attempt | None) -> set[str]:
    """The v0 build files an attempt has a safe store path for."""
    files = attempt.files if attempt else {}
    return {k for k in paths.API_KINDS if paths.store_rel(files.get(k, "")) is not None}


def write_packages(
    out: Output,
    distro: str,
    rows: Iterable[EncodedRow],
    fresh: Container[str],
    gone: Iterable[str] | None = None,
) -> dict[str, Any]:
    """``packages/binary``, the by-name pages and ``page-end`` of one distribution, made
    from all its rows; returns what the next render patches them from (see
    :func:`patch_packages`).

    ``fresh``: the names of the packages whose rows were made anew by this render (the
    rest are the last render's, byte for byte). Only their pages can differ while no
    package had to take another id than its own: the others are not looked at (most passes
    change a few groups of tens of thousands). ``gone``, in an incremental render: names whose rows
    this render dropped (their pages go unless the name is still in ``rows``); the
    by-name folder is then not pruned, so every page this render leaves is kept."""
    base = paths.api_v1_base(distro)
    # a group in overlapping profiles: once; then by sort key, build id (and the rest)
    ordered = sorted(rows)
    multi = splice.repeated(list(map(itemgetter(3), ordered)))
    if multi:
        ordered = sorted_unique(ordered)
    names = list(map(itemgetter(2), ordered))
    tails = list(map(itemgetter(3), ordered))
    ids, moved = package_ids(list(map(itemgetter(4), ordered)))
    out.write(f"{base}/packages/binary", numbered_page(ids, tails))
    out.write(f"{base}/{PAGE_END}", _page([], total=0))
    # A name not in ``fresh`` has the same rows as in the last render (each from a group
    # left as it was, and no more of them than then), so the same ids, unless one of them
    # was or is now moved off its own by another asking for the same. The key is no site
    # path; NUL is in no name.
    moved_key = f"\0moved {base}"
    out.set_digest(
        moved_key,
        hashlib.blake2b(
            "".join(f"{names[i]}\0{ids[i]}\0" for i in moved).encode("utf-8", "surrogatepass"),
            digest_size=16,
        ).digest(),
    )
    folder = f"{base}/packages/by-name/"
    if gone is not None and out.known.get(moved_key) == out.digests[moved_key]:
        # the other pages are as the last render left them (and so are their digests, which
        # an incremental render starts from: see Output.digests)
        places: Iterable[int] = compress(range(len(names)), map(fresh.__contains__, names))
    else:
        places = range(len(names))
    if gone is not None:
        for name in set(gone).difference(names):  # (a few names, so no set of them all)
            for page in _by_name_files(folder, name):
                out.remove(page)
    by_name: dict[str, list[bytes]] = defaultdict(list)
    for i in places:
        by_name[names[i]].append(b'{"id":%d,%s' % (ids[i], tails[i]))
    for name, own in by_name.items():
        _write_by_name(out, folder, name, own)
    moved_ids = {tails[i]: ids[i] for i in moved}
    return {"multi": multi, "moved": moved_ids, "ids": array("i", sorted(ids)).tobytes()}


def patch_packages(
    out: Output,
    distro: str,
    data: bytes,
    index: Mapping[str, Any],
    removed: Sequence[EncodedRow],
    added: Sequence[EncodedRow],
) -> dict[str, Any] | None:
    """:func:`write_packages` of an incremental render: ``data``, the last render's
    ``packages/binary`` (``index``: what it returned), without the rows of the groups
    redone as that render had them (``removed``) and with them as they are (``added``);
    only the by-name pages of the names whose rows moved are made again. None (nothing
    written) when that is not what a render of every row would write: the file is not
    the one ``index`` is of, or a package asks for an id another one holds, or frees
    the id one that could not have its own asked for (then every id is dealt anew)."""
    base = paths.api_v1_base(distro)
    multi, moved = dict(index["multi"]), index["moved"]
    own_id = {row[3]: row[4] for row in (*removed, *added)}
    done = splice.patch(
        ROWS, data, line_key,
        [(row[:4], row[3]) for row in removed], [(row[:4], row[3]) for row in added], multi,
        head=lambda n: b'{"total": %d, "records": [\n' % n,
        make=lambda tail: b'{"id":%d,' % own_id[tail] + tail,
    )  # fmt: skip
    if done is None:
        return None
    dropped, came = done.dropped, done.came
    if any(tail in moved for _, tail in dropped):
        return None
    freed = {own_id[tail] for _, tail in dropped}
    ids = array("i")  # every id held, sorted: patched in place (sorting 82,000: 0.1 s)
    ids.frombytes(index["ids"])
    for i in freed:
        if _holds(ids, i):
            del ids[bisect.bisect_left(ids, i)]
    asked = [own_id[tail] for _, tail in came]
    if len(set(asked)) < len(asked) or any(_holds(ids, i) for i in asked):
        return None  # (at Debian's size, about one new package in 26,000)
    if any(row_of(tail)[4] in freed for tail in moved):
        return None
    out.write(f"{base}/packages/binary", done.pieces)
    out.write(f"{base}/{PAGE_END}", _page([], total=0))
    folder = f"{base}/packages/by-name/"
    names = sorted({k[2] for k, _ in (*dropped, *came)})
    ranges = [((name + "\0",), (name + "\x01",)) for name in names]  # (NUL is in no name)
    for name, own in zip(names, done.between(ranges), strict=True):
        if own:
            _write_by_name(out, folder, name, own)
        else:
            for page in _by_name_files(folder, name):
                out.remove(page)
    for i in asked:
        bisect.insort(ids, i)
    return {"multi": multi, "moved": moved, "ids": ids.tobytes()}


def _holds(ids: array[int], i: int) -> bool:
    """Whether the sorted ``ids`` hold ``i``."""
    at = bisect.bisect_left(ids, i)
    return at < len(ids) and ids[at] == i


def _write_by_name(out: Output, folder: str, name: str, lines: list[bytes]) -> None:
    files = paths.by_name(name)
    if files is None:
        log.warning("site: no v1 by-name page for a package named %.60r", name)
        return
    encoded, plain = files
    out.write_known(folder + encoded, _page(lines))
    if plain is not None:
        out.symlink(folder + plain, encoded)


def sorted_unique(rows: Iterable[_Row]) -> list[_Row]:
    """``rows`` sorted, exact duplicates (a group in overlapping profiles) dropped.

    Sorted first: equal rows are then neighbours, and one C-level look at the neighbours
    finds there are none (one profile per distribution), with no dict of every row."""
    ordered = sorted(rows)
    if any(map(operator.eq, ordered, islice(ordered, 1, None))):
        ordered = [r for i, r in enumerate(ordered) if not i or r != ordered[i - 1]]
    return ordered


def _by_name_files(folder: str, name: str) -> list[str]:
    files = paths.by_name(name)
    if files is None:
        return []
    return [folder + f for f in files if f is not None]


def _page(lines: Sequence[bytes], total: int | None = None) -> bytes:
    """A ResultPage from encoded records (UTF-8), one per line."""
    n = len(lines) if total is None else total
    if not lines:
        return b'{"total": %d, "records": []}\n' % n
    return b'{"total": %d, "records": [\n%s\n]}\n' % (n, b",\n".join(lines))


def numbered_page(ids: Sequence[int], tails: Sequence[bytes]) -> bytes:
    """:func:`_page` of the records whose lines are ``{"id":<id>,`` and their tail: each
    tail is copied once, into the page (82,000 of them, 33 MB at Debian's size), rather
    than into a line first."""
    n = len(tails)
    if not n:
        return _page([])
    head = b'{"total": %d, "records": [\n' % n
    return join_numbered(head, (b'{"id":%d,', b',\n{"id":%d,'), ids, tails, b"\n]}\n")


def join_numbered(
    head: bytes, starts: tuple[bytes, bytes], ids: Sequence[int], tails: Sequence[bytes], end: bytes
) -> bytes:
    """``head``, each tail after its start (``starts``: the first one's and the others'
    formats, given its id), then ``end``; each tail copied once, into the result."""
    n = len(tails)
    pieces = [b""] * (2 * n + 2)
    pieces[0], pieces[-1] = head, end
    if n:
        pieces[1 : 2 * n : 2] = map(starts[1].__mod__, ids)
        pieces[1] = starts[0] % ids[0]
        pieces[2 : 2 * n + 1 : 2] = tails
    return b"".join(pieces)


def write_meta(
    out: Output,
    distro: str,
    records: Iterable[GroupRecord],
    queue_length: int,
    now: _dt.datetime,
    public_keys: Sequence[str],
) -> None:
    """``dashboard``, ``workers`` and ``meta/public-keys`` of one distribution."""
    base = paths.api_v1_base(distro)
    counts = {s: 0 for s in Status}
    pending = 0
    for r in records:
        if r.seen:
            counts[r.status] += 1
            if r.next_retry is not None and r.next_retry > now:
                pending += 1
    board = v1.Dashboard(
        good=counts[Status.GOOD], bad=counts[Status.BAD], fail=counts[Status.FAIL],
        unknown=counts[Status.UNKWN], running=0, available=queue_length, pending=pending,
    )  # fmt: skip
    out.write(f"{base}/dashboard", _dumps(board.to_json()))
    out.write(f"{base}/workers", _page([], total=0))
    out.write(f"{base}/meta/public-keys", _dumps(v0.public_keys(list(public_keys))))


def _dumps(doc: Any) -> bytes:
    return (json.dumps(doc, sort_keys=True, ensure_ascii=False) + "\n").encode(
        "utf-8", "surrogatepass"
    )


def build_dir(distro: str, build_id: int) -> str:
    return f"{paths.api_v1_base(distro)}/builds/{int(build_id)}"


def write_build(
    out: Output, record: GroupRecord, attempt: Attempt, served: Mapping[str, str]
) -> None:
    """One build's v1 files that are not its v0 copies (see the module doc): each artifact's
    own link, where the build's attestation holds several."""
    links = _links(out, served.get("attestation"))
    if not links:
        return
    base = build_dir(record.group.distro, attempt.build_id)
    for row in binary_rows(record, attempt, served, attempt.started_at):
        p = row.record
        if p.artifact_id is None or p.attestation_log_id is None:
            continue
        result = next((r for r in attempt.artifacts if r.name == p.name), None)
        link = links.get(result.filename if result else p.url.rpartition("/")[2])
        if link is not None:
            out.write(f"{base}/artifacts/{p.artifact_id}/attestation", link)


def _links(out: Output, v0_attestation: str | None) -> dict[str, bytes]:
    """The links of a build's attestation by product file name, when it holds several
    (one per artifact, :func:`rebuilder.attest.encode_links`); empty for a single link
    (served as it is) or none."""
    if v0_attestation is None:
        return {}
    try:
        with open(os.path.join(out.root, v0_attestation), "rb") as f:
            head = f.read(_PEEK)
            start = head.lstrip(_JSON_SPACE)[:1]
            if start != b"[" and (start or len(head) < _PEEK):
                return {}  # one link (the common case), not a list of them: not parsed
            rest = f.read(MAX_ATTESTATION + 1 - len(head)) if len(head) == _PEEK else b""
            links = attest.decode_links((head + rest)[:MAX_ATTESTATION])
    except (OSError, attest.AttestationError):
        return {}
    if len(links) < 2:
        return {}
    found: dict[str, bytes] = {}
    for link in links:
        signed = link.get("signed") if isinstance(link, dict) else None
        products = signed.get("products") if isinstance(signed, dict) else None
        if isinstance(products, dict):
            for name in products:
                found[str(name)] = attest.canonical_json(link)
    return found
