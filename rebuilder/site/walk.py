"""The one walk over a profile's records, and what every page renderer shares.

:func:`walk_profile` reads each record once: it files the seen groups into their suites
(:class:`Suite` of :class:`Item`) and gathers what the aggregate pages need into
:class:`Collected` (v0/v1 lines, search entries, maintainers, status changes). A group
page needs its record alone (:func:`page_job`): :mod:`rebuilder.site.groups` makes them
apart from the walk, a full render's beside it.
"""

from __future__ import annotations

import datetime as _dt
import heapq
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import and_, ge, itemgetter, not_
from typing import Any, NamedTuple

import jinja2

from rebuilder.config import Profile
from rebuilder.model import Attempt, GroupRecord, Job, Status
from rebuilder.site import api_v0, api_v1, cache, history, html, paths, search
from rebuilder.site.output import Output, made_from
from rebuilder.site.paths import SiteError

DASHBOARD_CHANGES = 30  # regressions and newly reproduced groups listed on the dashboard


FEED_ITEMS = 100


STATUS_FILE = {s: s.value.lower() for s in Status}

# what a group page is rendered from (see groups.render_group)
PageJob = tuple[
    str,
    GroupRecord,
    Attempt | None,
    dict[str, str],
    dict[int, dict[str, str]],
    list[history.Step],
    str,
]


@dataclass(frozen=True)
class ProfileView:
    """What the site shows of one profile: its records (key = ``BuildGroup.key``), its
    queue, when it last ran, and its pass history (``ProfileState.passes``: dicts of
    :func:`history_point`'s shape, oldest first) for the dashboard's chart. ``queue``
    (the planned jobs, in order) is published as the API's build queue."""

    profile: Profile
    records: Mapping[str, GroupRecord]
    queue_length: int = 0
    last_pass: _dt.datetime | None = None  # naive UTC
    history: Sequence[Mapping[str, Any]] = ()
    queue: Sequence[Job] = ()


NAME = {s: s.value for s in Status}  # Enum.value is a slow property; this is a dict
BAD = Status.BAD


@dataclass(slots=True)
class Item:
    """One seen group, as the lists need it. The suite lists read nothing of its record:
    a process forked to make them would copy each memory page of a record it touched
    (CPython writes a reference count into every object it reads)."""

    key: str
    record: GroupRecord
    page: str  # site path of its page, with .html
    row: tuple[Any, ...]  # its html.Row as its part keeps it (Part.row): see shown_row
    status: Status  # the record's
    causes: tuple[str, ...]  # a BAD group's, as its current attempt was classified
    cell: str  # the row's HTML in its suite's lists (Part.cell)
    shard: str  # its row of its suite's JSON (Part.shard)


@dataclass
class Suite:
    summary: html.SuiteSummary
    items: list[Item]


@dataclass
class ProfileWalk:
    view: ProfileView
    suites: list[Suite] = field(default_factory=list)
    regressions: history.Newest = field(default_factory=lambda: history.Newest(DASHBOARD_CHANGES))
    reproduced: history.Newest = field(default_factory=lambda: history.Newest(DASHBOARD_CHANGES))
    new_bad: history.Newest = field(default_factory=lambda: history.Newest(DASHBOARD_CHANGES))
    new_fail: history.Newest = field(default_factory=lambda: history.Newest(DASHBOARD_CHANGES))
    changes: history.Newest = field(default_factory=lambda: history.Newest(FEED_ITEMS))
    fingerprint: str = ""  # of the records walked (see :func:`fingerprint`)
    moved: set[str] = field(default_factory=set)  # keys whose part it made, or dropped

    def news_lists(self) -> tuple[tuple[int, history.Newest], ...]:
        """The dashboard lists with the mask of Part.steps that offers a change to each."""
        return (
            (_REPRODUCED, self.reproduced), (_REGRESSION, self.regressions),
            (_NEW_BAD, self.new_bad), (_NEW_FAIL, self.new_fail),
        )  # fmt: skip

    def least(self, ends: Sequence[int], masks: Sequence[int]) -> list[int]:
        """At each mask of Part.steps, the oldest end (µs) a change of the groups whose
        Part.steps have ``ends`` (newest) and ``masks`` may have to be kept by the feed or a
        list of that mask: an older one is only counted (:meth:`skipped`), without looking
        at its group's attempts. A list keeps its ``n`` newest, and each group's newest
        change is one of its changes, so the ``n``-th newest end among the groups a list
        is offered is the oldest it can end up keeping (the feed, which takes every change
        of a group, keeps no older either). (C-level passes: 42,000 groups in the bench.)"""
        feed = _nth_newest(ends, self.changes.n)
        floors = []
        for bit, news in self.news_lists():
            offered = list(compress(ends, map(and_, masks, repeat(bit))))
            floors.append((bit, _nth_newest(offered, news.n)))
        return [min([feed] + [end for bit, end in floors if mask & bit]) for mask in range(16)]

    def skipped(self, changes: int, masks: Iterable[int]) -> None:
        """Count what was not offered: ``changes`` status changes, and for each group whose
        standing change was not, its mask of Part.steps (the lists it went to)."""
        self.changes.skip(changes)
        by_mask = Counter(masks)
        for bit, news in self.news_lists():
            news.skip(sum(n for mask, n in by_mask.items() if mask & bit))

    @property
    def counts(self) -> dict[Status, int]:
        out = {s: 0 for s in Status}
        for s in self.suites:
            for st, n in s.summary.counts.items():
                out[st] += n
        return out


@dataclass
class ListPatch:
    """What an incremental render changes in a distribution's v0 lines (or v1 rows): those
    of the groups redone as the last render had them, and as they are now; and every seen
    group's as the cache keeps them (:func:`api_v0.blob`, :func:`api_v1.blob`), to make
    the lists anew from when the last render's files are not as it left them."""

    removed: list[Any] = field(default_factory=list)
    added: list[Any] = field(default_factory=list)
    blobs: list[bytes | int] = field(default_factory=list)  # (see Collected.blob)


@dataclass
class Collected:
    """What the aggregates need, gathered in the one walk over every record."""

    pkgs: dict[str, list[api_v0.PkgLine]] = field(default_factory=lambda: defaultdict(list))
    # the counts of each distribution's v0 lines (render_v0's, or the last render's when
    # this one walks no group: see rebuilder.site.quiet)
    v0_counts: dict[str, api_v0.LineCounts] = field(default_factory=dict)
    # in an incremental render, each distribution's v0 lines and v1 rows to patch its lists
    # with (see aggregates.render_v0 and render_v1); None in a full render, which sorts
    # ``pkgs`` and ``v1``
    v0_patch: dict[str, ListPatch] | None = None
    v1_patch: dict[str, ListPatch] | None = None
    # each distribution's index of its v0 lists (see aggregates._index) and of its v1 list
    # (api_v1.write_packages): the last render's, then this one's; and the size, time and
    # inode of each list file the last render wrote, and this one wrote (an incremental
    # render patches a list only while it is that file: splice.read_same)
    v0_index: dict[str, dict[str, Any]] = field(default_factory=dict)
    v1_index: dict[str, dict[str, Any]] = field(default_factory=dict)
    list_files: dict[str, list[int]] = field(default_factory=dict)
    list_files_now: dict[str, list[int]] = field(default_factory=dict)
    v1: dict[str, list[api_v1.EncodedRow]] = field(default_factory=lambda: defaultdict(list))
    # names of the binary packages whose v1 rows were made anew (not the last render's)
    fresh_v1: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    # in an incremental render, names whose last render's rows were dropped (see
    # api_v1.write_packages); None in a full render
    gone_v1: dict[str, set[str]] | None = None
    # in an incremental render, the build folders the last render's parts of the changed
    # groups named: the only ones it may have to remove (see Output.prune)
    gone_dirs: set[str] = field(default_factory=set)
    jobs: dict[str, list[tuple[Job, GroupRecord | None]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    queues: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    entries: list[search.Fields] = field(default_factory=list)
    search_suites: list[list[str]] = field(default_factory=list)
    # the last render's search_suites: a cached part's entries carry its suite's number
    # then, which they keep while the suite has the same one (see walk_profile)
    last_suites: list[list[str]] = field(default_factory=list)
    # maintainer key -> (the name as written, profile, item) of each of their groups
    maintainers: dict[str, list[tuple[str, str, Item]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    profiles: list[ProfileWalk] = field(default_factory=list)
    # a cached part's blob field as bytes (cache.RenderCache.blob: it may be its number in
    # the cache's blob file)
    blob: Callable[[bytes | int], bytes] = field(default=cache.RenderCache().blob)


@dataclass
class Touched:
    """What an incremental render must redo beyond the changed groups' own pages: the
    suites and maintainers they belong to now, or belonged to before the change."""

    suites: set[tuple[str, str, str, str]] = field(default_factory=set)  # profile + suite
    maintainers: set[str] = field(default_factory=set)

    def has_suite(self, profile: str, s: html.SuiteSummary) -> bool:
        return (profile, s.release, s.component, s.architecture) in self.suites


@dataclass(frozen=True)
class Settings:
    env: jinja2.Environment
    changed: set[str] | None
    touched: Touched | None  # None: a full render, everything is redone
    site_url: str
    package_pages: Mapping[str, str]
    now: _dt.datetime


def walk_profile(
    out: Output,
    cfg: Settings,
    view: ProfileView,
    got: Collected,
    keep_dirs: set[str],
    cached: Mapping[str, cache.Part],
    parts: dict[str, cache.Part],
) -> ProfileWalk:
    """Walk a profile's records: collect what the aggregates need (the group pages are
    made apart from it, from :func:`page_job`; its suite lists after them, by
    :func:`render_suites`).

    A group not in ``cfg.changed`` whose part is in ``cached`` (the last render's) is
    taken from there; every group's part goes into ``parts`` for the next render."""
    name, distro = view.profile.name, view.profile.distro
    result = ProfileWalk(view)
    by_suite: dict[tuple[str, str, str], list[Item]] = defaultdict(list)
    suite_ids: dict[tuple[str, str, str], int] = {}
    changed = cfg.changed
    pkgs, v1, fresh = got.pkgs[distro], got.v1[distro], got.fresh_v1[distro]
    patch: ListPatch | None = None  # (the v0 lines')
    if changed is not None:
        if got.gone_v1 is None or got.v0_patch is None or got.v1_patch is None:
            got.gone_v1, got.v0_patch, got.v1_patch = defaultdict(set), {}, {}
        patch = got.v0_patch.setdefault(distro, ListPatch())
        v1_patch = got.v1_patch.setdefault(distro, ListPatch())
        gone = got.gone_v1[distro]

        def drop(old: cache.Part) -> None:
            """The last render's part of a group redone: what it listed goes."""
            assert patch is not None
            got.gone_dirs.update(build_dirs(old))
            patch.removed += api_v0.lines_of(got.blob(old[_PART_LINES]))
            rows = api_v1.rows_of(got.blob(old[_PART_V1]))
            v1_patch.removed += rows
            gone.update(row[2] for row in rows)  # (sort, build id, name, tail)

        left = cached.keys() - view.records.keys()
        result.moved.update(left)
        for key in changed.union(left):
            if (old := cached.get(key)) is not None:
                drop(old)
    kept: set[str] = set()  # suite folders of groups not redone
    kept_builds: list[str] = []  # their build folders
    changing: list[tuple[tuple[int, int, int], GroupRecord, Item]] = []  # (offered after)
    entries_, maintainers_ = got.entries, got.maintainers  # (the hot loop's)
    last_ids = {(p, where): i for i, (p, where, _) in enumerate(got.last_suites)}
    numbered: dict[tuple[str, str, str], bool] = {}  # each suite's: the same number as then
    not_redone = 0
    keys = sorted(view.records)
    tokens: list[tuple[Any, ...]] = []
    for key in keys:
        record = view.records[key]
        g = record.group
        where = (g.release, g.component, g.architecture)
        redo = changed is None or key in changed
        raw = None if redo else cached.get(key)
        token = _token(record)
        tokens.append(token)
        new: tuple[list[api_v0.PkgLine], list[api_v1.EncodedRow]] | None = None
        if raw is None or raw[0] != token:
            # a part not of this record after all (parts are taken only in an incremental
            # render, where the patch it is dropped from is set)
            if raw is not None:
                drop(raw)
            stem = paths.group_page(name, key)
            suite = (
                _suite_id(got, suite_ids, numbered, last_ids, name, where) if record.seen else -1
            )
            raw, new = part(record, token, distro, stem + ".html", name, cfg.now, suite)
            fresh.update(a.name for a in g.artifacts)
            result.moved.add(key)
        parts[key] = raw  # (one of token None is never taken: only its v1 names are)
        _, index, page, row, blob, v1_blob, dirs, entries, maintainers, steps, cell, shard = raw
        if record.seen:
            status = record.status
            causes = record.attempts[index].causes if status is BAD and index >= 0 else ()
            item = Item(key, record, page, row, status, causes, cell, shard)
            by_suite[where].append(item)
            suite_id = suite_ids.get(where)
            if suite_id is None:
                suite_id = _suite_id(got, suite_ids, numbered, last_ids, name, where)
            if patch is None:  # (a full render makes every part anew)
                pkgs += new[0] if new else ()
                v1 += new[1] if new else ()
            else:
                if new is not None:
                    patch.added += new[0]
                    v1_patch.added += new[1]
                patch.blobs.append(blob)
                v1_patch.blobs.append(v1_blob)
            if new is None and not numbered[where]:  # (a suite new to the index before it)
                entries = [(n, v, st, suite_id, ref, src) for n, v, st, _, ref, src in entries]
                raw = parts[key] = (*raw[:_PART_ENTRIES], entries, *raw[_PART_ENTRIES + 1 :])
                result.moved.add(key)
            entries_ += entries
            for m, m_key in maintainers:
                maintainers_[m_key].append((m, name, item))
            if steps[0]:
                changing.append((steps, record, item))
        if not redo:
            kept.add(page.rpartition("/pkg/")[0])  # (one suite's for most: made a set first)
            kept_builds.append(dirs)
            not_redone += 1
    out.stats.skipped += not_redone
    for suite_dir in kept:
        keep_dirs.update((suite_dir + "/pkg", suite_dir + "/badge"))
    out.keep_dirs(_joined_dirs(kept_builds))
    _offer_newest(result, changing)
    result.suites = [_suite(name, where, items) for where, items in sorted(by_suite.items())]
    result.fingerprint = _fingerprint(keys, tokens)
    return result


def _suite_id(
    got: Collected,
    suite_ids: dict[tuple[str, str, str], int],
    numbered: dict[tuple[str, str, str], bool],
    last_ids: Mapping[tuple[str, str], int],
    profile: str,
    where: tuple[str, str, str],
) -> int:
    """The number of a suite (``where``: release, component, architecture) in the search
    index (``suite_ids``: the numbers given so far, in the order the walk meets the
    suites); ``numbered``: whether each suite has the number it had in the last render
    (``last_ids``)."""
    found = suite_ids.get(where)
    if found is None:
        found = suite_ids[where] = len(got.search_suites)
        joined = "/".join(where)
        suite_dir = paths.suite_dir(profile, *where)
        got.search_suites.append([profile, joined, paths.url(suite_dir) + "/"])
        numbered[where] = last_ids.get((profile, joined)) == found
    return found


def _suite(profile: str, where: tuple[str, str, str], items: list[Item]) -> Suite:
    counts = {s: 0 for s in Status}
    causes: dict[str, int] = defaultdict(int)
    for it in items:
        counts[it.status] += 1
        for c in it.causes:
            causes[c] += 1
    summary = html.SuiteSummary(*where, counts, paths.suite_dir(profile, *where), dict(causes))
    return Suite(summary, items)


# what suite lists sort by, in Part.row (``built`` in ISO format, which sorts as the time)
ROW_NAME, ROW_BUILT, ROW_URL = (html.Row._fields.index(f) for f in ("name", "built", "url"))


def shown_row(item: Item) -> html.Row:
    """An item's list row, ``built`` a time again (as few lists need: not made for all)."""
    name, version, status, built, url, extra, reason, files = item.row
    when = _dt.datetime.fromisoformat(built) if built else None
    return html.Row(name, version, status, when, url, extra, reason, files)


def _token(record: GroupRecord) -> tuple[Any, ...]:
    """A cheap check that a cached part is of this record (``changed`` is trusted; this
    catches a caller that forgot a key whose version, verdict or attempts moved)."""
    return (record.group.version, NAME[record.status], len(record.attempts), record.seen)


def fingerprint(records: Mapping[str, GroupRecord]) -> str:
    """Every record's key and :func:`_token`, digested: what a render that walks no group
    checks that the records are the last walk's (the same net as the parts' tokens).
    The walk digests the tokens it made (:attr:`ProfileWalk.fingerprint`)."""
    keys = sorted(records)
    return _fingerprint(keys, [_token(records[k]) for k in keys])


def _fingerprint(keys: list[str], tokens: list[tuple[Any, ...]]) -> str:
    return made_from((keys, tokens)).hex()  # (a third of repr's time)


class Part(NamedTuple):
    """What the walk derives from one record and keeps for the next render (stored as
    a plain tuple of builtin types, see :mod:`rebuilder.site.cache`)."""

    token: tuple[Any, ...] | None  # see _token; None: depends on ``now``, not taken
    v0_index: int  # of the attempt v0 names, -1 for none
    page: str  # the group page's site path
    row: tuple[Any, ...]  # its list row (html.Row, ``built`` in ISO format), () unseen
    lines: bytes  # one per artifact (api_v0.blob: the lines read back from it)
    v1: bytes  # one per artifact (api_v1.blob: the rows read back from it)
    dirs: str  # folders of its build files, joined by NUL (one object: see build_dirs)
    entries: list[tuple[Any, ...]]  # search.Fields, numbered as the render that made it did
    maintainers: list[tuple[str, str]]  # (as written, html.maintainer_key)
    steps: tuple[int, int, int]  # history.steps' count, newest end (µs), standing's list
    cell: str  # its list row's HTML, from its suite's folder (html.row_html)
    shard: str  # its row of its suite's JSON (api_v0.suite_row)


_PART_LINES, _PART_V1, _PART_DIRS, _PART_ENTRIES = (
    Part._fields.index(f) for f in ("lines", "v1", "dirs", "entries")
)
# a part's folders are one string joined by NUL (which no site path holds: Output refuses
# one), not a list of two or three: the render cache reads every part back on every render
_DIRS_SEP = "\0"


def build_dirs(part: cache.Part) -> list[str]:
    r"""The folders of a part's build files (:attr:`Part.dirs`).

    >>> build_dirs((None,) * _PART_DIRS + ("a/1\0b/1",)), build_dirs((None,) * _PART_DIRS + ("",))
    (['a/1', 'b/1'], [])
    """
    dirs: str = part[_PART_DIRS]
    return dirs.split(_DIRS_SEP) if dirs else []


def _joined_dirs(dirs: list[str]) -> list[str]:
    """The folders of many parts' :attr:`Part.dirs` (one C-level split of them all)."""
    return list(filter(None, _DIRS_SEP.join(dirs).split(_DIRS_SEP)))


def page_job(profile: str, distro: str, key: str, record: GroupRecord) -> PageJob:
    """What a group's page is rendered from (:func:`rebuilder.site.groups.work`)."""
    attempt = api_v0.v0_attempt(record) if record.seen else None
    served = _served(attempt, distro, record.group.name)
    older = _older(record, attempt, distro)
    page = paths.group_page(profile, key) + ".html"
    return (profile, record, attempt, served, older, history.steps(record), page)


def part(
    record: GroupRecord,
    token: tuple[Any, ...],
    distro: str,
    page: str,
    profile: str,
    now: _dt.datetime,
    suite: int = -1,
) -> tuple[cache.Part, tuple[list[api_v0.PkgLine], list[api_v1.EncodedRow]]]:
    """A record's :class:`Part`, as the plain tuple the cache keeps (``token``: its
    :func:`_token`, which the walk made; ``suite``: its suite's number in the search
    index), and its v0 lines and v1 rows (which the part keeps as one blob each:
    :func:`api_v0.blob`, :func:`api_v1.blob`)."""
    attempt = api_v0.v0_attempt(record) if record.seen else None
    index = -1 if attempt is None else _index(record, attempt)
    if not record.seen:
        return (token, index, page, (), b"", b"", "", [], [], (0, 0, 0), "", ""), ([], [])
    g = record.group
    served = _served(attempt, distro, g.name)
    suite_dir = paths.suite_dir(profile, g.release, g.component, g.architecture)
    r = _row(record, page, suite_dir, served)
    row = (*r[:3], r.built.isoformat() if r.built else None, *r[4:])
    lines = api_v0.pkg_lines(record, attempt, served)
    v1_rows = api_v1.encoded_rows(api_v1.binary_rows(record, attempt, served, now), attempt)
    kept = token if api_v1.last_seen(record) else None  # else v1 shows now: never taken
    dirs = _DIRS_SEP.join(_build_dirs(record, attempt, distro, served))
    entries = _entries(record, page, r.url, suite)
    maintainers = [(m, html.maintainer_key(m)) for m in g.maintainers]
    cell = html.row_html(r, paths.root_prefix(f"{suite_dir}/index.html"))
    built, build_id = (attempt.ended_at.isoformat(), attempt.build_id) if attempt else (None, None)
    shard = api_v0.suite_row(r.name, r.version, r.status, built, build_id, page)
    steps = _steps(record)
    blobs = api_v0.blob(lines), api_v1.blob(v1_rows)
    made = (kept, index, page, row, *blobs, dirs, entries, maintainers, steps, cell, shard)
    return made, (lines, v1_rows)


def _index(record: GroupRecord, attempt: Attempt) -> int:
    return next(i for i, a in enumerate(record.attempts) if a is attempt)


_REASON_SHOWN = 160  # characters of a BAD or FAIL reason in a list row


def _row(record: GroupRecord, page: str, suite_dir: str, served: Mapping[str, str]) -> html.Row:
    g, last = record.group, record.last_attempt
    built = last.started_at if last else None
    pkg_dir = suite_dir + "/pkg/"
    name = page[len(pkg_dir) :] if page.startswith(pkg_dir) else ""
    if name and "/" not in name:
        link = "pkg/" + paths.url(name)  # the common case, from the suite's folder
    else:  # a key whose parts are not the group's own (a release holding '/'...)
        link = paths.href(suite_dir + "/index.html", page)
    why = last.reason if last and record.status in (Status.BAD, Status.FAIL) else ""
    why = why if len(why) <= _REASON_SHOWN else why[: _REASON_SHOWN - 1] + "…"
    files: tuple[tuple[str, str], ...] = ()
    if record.status in (Status.BAD, Status.FAIL):  # the way to why, from every list
        files = tuple((label, served[k]) for label, k in _ROW_FILES if k in served)
    return html.Row(g.name, g.version, NAME[record.status], built, link, reason=why, files=files)


_ROW_FILES = (("log", "log.html"), ("diffoscope", "diffoscope_html"))


def _entries(record: GroupRecord, page: str, link: str, suite: int) -> list[search.Fields]:
    """A seen group's search entries (:class:`search.Entry`'s fields, ``suite`` its suite's
    number): its source name and each binary's. ``link`` is its list row's."""
    g = record.group
    status = NAME[record.status]
    if link.startswith("pkg/"):
        seg = link[4:-5]  # "pkg/<quoted segment>.html"
        page_ref = "" if seg == g.name else seg
    else:
        page_ref = "/" + paths.url(page)  # see search.py: relative to the site root
    out: list[search.Fields] = [(g.name, g.version, status, suite, page_ref, "")]
    # duplicates are dropped by the index
    out += [
        (a.name, g.version, status, suite, page_ref, g.name)
        for a in g.artifacts
        if a.name != g.name
    ]
    return out


# the dashboard lists a standing change is offered to (Part.steps: a mask of these)
_REPRODUCED, _REGRESSION, _NEW_BAD, _NEW_FAIL = 1, 2, 4, 8


def _steps(record: GroupRecord) -> tuple[int, int, int]:
    """How many status changes a seen group has, when the newest ended (µs), and the
    dashboard lists its standing change goes to: enough to skip a group whose changes
    are all older than what the lists hold, without looking at its attempts."""
    found = history.steps(record)
    if not found:
        return (0, 0, 0)
    last = history.standing(record, found)
    goes = 0
    if last is not None:
        before, after = last[1], NAME[last[0].status]
        if after == "GOOD" and before != "GOOD":
            goes |= _REPRODUCED
        elif before == "GOOD" and after in ("BAD", "FAIL"):
            goes |= _REGRESSION
        if after != before and after in ("BAD", "FAIL"):  # from anything, first builds too
            goes |= _NEW_BAD if after == "BAD" else _NEW_FAIL
    return (len(found), history.end_us(found[-1][0]), goes)


def _offer_newest(
    result: ProfileWalk, changing: Sequence[tuple[tuple[int, int, int], GroupRecord, Item]]
) -> None:
    """Offer the status changes of the groups in ``changing`` that a list may keep, and
    count the others (most: of the bench's 42,000 with status changes, 113 are offered)."""
    steps = list(map(itemgetter(0), changing))
    counts, ends, masks = (list(map(itemgetter(i), steps)) for i in range(3))
    least = result.least(ends, masks)
    kept = list(map(ge, ends, map(least.__getitem__, masks)))
    for steps_, record, item in compress(changing, kept):
        _offer(result, record, item, steps_)
    left = list(map(not_, kept))
    result.skipped(sum(compress(counts, left)), compress(masks, left))


def _nth_newest(ends: Sequence[int], n: int) -> int:
    """The ``n``-th largest of ``ends`` (the oldest of the ``n`` newest), or an end older
    than any when there are fewer."""
    return heapq.nlargest(n, ends)[-1] if len(ends) >= n else history.ANY


def _offer(result: ProfileWalk, record: GroupRecord, item: Item, steps: Sequence[int]) -> None:
    """Offer a seen group's status changes to the feed and its standing one to the
    dashboard lists it goes to; its steps are only looked up when one may be kept."""
    count, newest, goes = steps
    lists = [result.changes]
    if goes:
        lists += (news for bit, news in result.news_lists() if goes & bit)
    for newest_list in lists:
        if newest_list.wants(newest):
            break
    else:  # none may keep it: counted only
        result.changes.skip(count)
        for news in lists[1:]:
            news.skip(1)
        return
    name, page = result.view.profile.name, item.page
    found = history.steps(record)
    for step in found:
        result.changes.offer(name, record, page, step)
    for news in lists[1:]:
        news.offer(name, record, page, found[-1])


def _served(attempt: Attempt | None, distro: str, name: str, *, api: bool = True) -> dict[str, str]:
    """The build files an attempt (of group ``name``) gets (name -> site path): with
    ``api``, the plain v0 copy of each file with a safe store path; the viewer's address
    for each text file (:func:`paths.text_view`); and diffoscope's HTML report. Only the
    attempt v0 names gets ``api`` copies: clients learn no other build id, and each copy
    is a file more on a host that copies links."""
    if attempt is None or not attempt.files:
        return {}
    out = {}
    files = attempt.files
    base = paths.api_build_dir(distro, attempt.build_id)
    for kind in paths.API_KINDS:
        if kind in files and paths.store_rel(files[kind]) is not None:
            if api:
                out[kind] = f"{base}/{kind}"
                if alias := paths.ALIASES.get(kind):
                    out[alias] = f"{base}/{alias}"
            if kind in paths.VIEWS:
                out[f"{kind}.html"] = paths.text_view(
                    kind, files[kind], attempt.build_id, name, attempt.version
                )
    report = files.get("diffoscope_html")
    if report and paths.store_rel(report) is not None:
        views = paths.view_build_dir(distro, attempt.build_id)
        out["diffoscope_html"] = f"{views}/{paths.REPORT}"
    return out


def _build_dirs(
    record: GroupRecord, v0: Attempt | None, distro: str, served: Mapping[str, str]
) -> Iterator[str]:
    """The folders of the build files :func:`_served` (``served``: its answer for ``v0``)
    and :func:`_older` name for a group (what a group that is not redone keeps)."""
    if not record.seen:
        return  # no pages, no build files
    if v0 is not None and any(k in served for k in paths.API_KINDS):  # api_v1.published
        yield paths.api_build_dir(distro, v0.build_id)
        yield api_v1.build_dir(distro, v0.build_id)
    for a in record.attempts:
        report = a.files.get("diffoscope_html")
        if report and paths.store_rel(report) is not None:
            yield paths.view_build_dir(distro, a.build_id)


def _older(record: GroupRecord, v0: Attempt | None, distro: str) -> dict[int, dict[str, str]]:
    """The pages of a seen group's other attempts' build files (views and report, no v0
    copies), so that their logs are readable too."""
    if not record.seen:
        return {}
    return {
        a.build_id: files
        for a in record.attempts
        if a is not v0 and (files := _served(a, distro, record.group.name, api=False))
    }


def render_page(env: jinja2.Environment, template: str, ctx: Mapping[str, Any]) -> bytes:
    try:
        text = env.get_template(template).render(ctx)
    except jinja2.TemplateError as e:  # an override template can be broken
        where = (
            f"{e.filename}:{e.lineno}" if isinstance(e, jinja2.TemplateSyntaxError) else template
        )
        raise SiteError(f"template {where}: {e.message or type(e).__name__}") from None
    return text.encode("utf-8", "surrogatepass")
