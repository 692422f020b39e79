"""The one walk over a profile's records, and what every page renderer shares.

:func:`walk_profile` reads each record once: it files the seen groups into their suites
(:class:`Suite` of :class:`Item`), gathers what the aggregate pages need into
:class:`Collected` (v0/v1 lines, search entries, maintainers, status changes) and
queues the group pages to render (:mod:`rebuilder.site.groups`).
"""

from __future__ import annotations

import datetime as _dt
from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import jinja2

from rebuilder.config import Profile
from rebuilder.model import Attempt, GroupRecord, Job, Status
from rebuilder.site import api_v0, api_v1, cache, history, html, paths, search
from rebuilder.site.output import Output
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


@dataclass(slots=True)
class Item:
    """One seen group, as the lists need it."""

    key: str
    record: GroupRecord
    page: str  # site path of its page, with .html
    row: html.Row
    attempt: Attempt | None  # the one rebuilderd's v0 names


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

    @property
    def counts(self) -> dict[Status, int]:
        out = {s: 0 for s in Status}
        for s in self.suites:
            for st, n in s.summary.counts.items():
                out[st] += n
        return out


@dataclass
class Collected:
    """What the aggregates need, gathered in the one walk over every record."""

    pkgs: dict[str, list[api_v0.PkgLine]] = field(default_factory=lambda: defaultdict(list))
    v1: dict[str, list[api_v1.EncodedRow]] = field(default_factory=lambda: defaultdict(list))
    # names of the binary packages whose v1 rows were made anew (not the last render's)
    fresh_v1: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    jobs: dict[str, list[tuple[Job, GroupRecord | None]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    queues: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    entries: list[search.Entry] = field(default_factory=list)
    search_suites: list[list[str]] = field(default_factory=list)
    # maintainer key -> (the name as written, profile, item) of each of their groups
    maintainers: dict[str, list[tuple[str, str, Item]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    profiles: list[ProfileWalk] = field(default_factory=list)


@dataclass
class Touched:
    """What an incremental render must redo beyond the changed groups' own pages: the
    suites and maintainers they belong to now, or belonged to before the change."""

    suites: set[tuple[str, str, str, str]] = field(default_factory=set)  # profile + suite
    maintainers: set[str] = field(default_factory=set)


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
    jobs: list[PageJob],
    cached: Mapping[str, cache.Part],
    parts: dict[str, cache.Part],
) -> ProfileWalk:
    """Walk a profile's records: collect what the aggregates need and queue the group
    pages to render (its suite lists are rendered after them, by :func:`render_suites`).

    A group not in ``cfg.changed`` whose part is in ``cached`` (the last render's) is
    taken from there; every group's part goes into ``parts`` for the next render."""
    name, distro = view.profile.name, view.profile.distro
    result = ProfileWalk(view)
    by_suite: dict[tuple[str, str, str], list[Item]] = defaultdict(list)
    suite_ids: dict[tuple[str, str, str], int] = {}
    changed = cfg.changed
    for key in sorted(view.records):
        record = view.records[key]
        g = record.group
        stem = paths.group_page(name, key)
        page = stem + ".html"
        mine = cached.get(key) if changed is not None and key not in changed else None
        if mine is None or mine[0] != _token(record):
            mine = part(record, distro, page, name, cfg.now)
            got.fresh_v1[distro].update(a.name for a in g.artifacts)
        if mine[0] is not None:
            parts[key] = mine
        _, index, row, lines, v1_rows, dirs = mine
        attempt = record.attempts[index] if index >= 0 else None
        found = history.steps(record)
        if record.seen:
            where = (g.release, g.component, g.architecture)
            name_, version, status, built, url, extra, reason, files = row
            when = _dt.datetime.fromisoformat(built) if built else None
            shown = html.Row(name_, version, status, when, url, extra, reason, files)
            item = Item(key, record, page, shown, attempt)
            by_suite[where].append(item)
            if where not in suite_ids:
                suite_ids[where] = len(got.search_suites)
                suite_dir = paths.suite_dir(name, *where)
                got.search_suites.append([name, "/".join(where), paths.url(suite_dir) + "/"])
            got.pkgs[distro] += api_v0.known_lines(record, lines)
            got.v1[distro] += api_v1.known_rows(record, attempt, v1_rows)
            _collect(got, result, record, found, item, suite_ids[where])
        if changed is not None and key not in changed:
            suite_dir = stem.rpartition("/pkg/")[0]
            keep_dirs.update((suite_dir + "/pkg", suite_dir + "/badge"))
            for folder in dirs:
                out.keep_dir(folder)
            out.stats.skipped += 1
            continue
        served = _served(attempt, distro, g.name)
        older = _older(record, attempt, distro)
        jobs.append((name, record, attempt, served, older, found, page))
    for where, items in sorted(by_suite.items()):
        counts = {s: 0 for s in Status}
        causes: dict[str, int] = defaultdict(int)
        for it in items:
            counts[it.record.status] += 1
            for c in bad_causes(it):
                causes[c] += 1
        summary = html.SuiteSummary(*where, counts, paths.suite_dir(name, *where), dict(causes))
        result.suites.append(Suite(summary, items))
    return result


def _token(record: GroupRecord) -> tuple[Any, ...]:
    """A cheap check that a cached part is of this record (``changed`` is trusted; this
    catches a caller that forgot a key whose version, verdict or attempts moved)."""
    return (record.group.version, NAME[record.status], len(record.attempts), record.seen)


def part(
    record: GroupRecord, distro: str, page: str, profile: str, now: _dt.datetime
) -> cache.Part:
    """What the walk derives from one record and keeps for the next render (builtin
    types only, see :mod:`rebuilder.site.cache`): a token, the v0 attempt's index, the
    list row, the encoded v0 lines, the v1 rows (sort key, encoded record) and the
    folders of its build files. The token is None when the part depends on ``now`` and
    must not be kept."""
    attempt = api_v0.v0_attempt(record) if record.seen else None
    index = -1 if attempt is None else _index(record, attempt)
    if not record.seen:
        return (_token(record), index, None, [], [], [])
    g = record.group
    served = _served(attempt, distro, g.name)
    suite_dir = paths.suite_dir(profile, g.release, g.component, g.architecture)
    r = _row(record, page, suite_dir, served)
    row = (*r[:3], r.built.isoformat() if r.built else None, *r[4:])
    lines = [p.line for p in api_v0.pkg_lines(record, attempt, served)]
    v1_rows = api_v1.encoded_rows(api_v1.binary_rows(record, attempt, served, now))
    token = _token(record) if record.last_seen is not None else None  # else v1 shows now
    dirs = list(_build_dirs(record, attempt, distro))
    return (token, index, row, lines, v1_rows, dirs)


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


def _collect(
    got: Collected,
    result: ProfileWalk,
    record: GroupRecord,
    found: list[history.Step],
    item: Item,
    suite_id: int,
) -> None:
    """What the aggregates need from one seen group (but its v0 and v1 lines)."""
    g = record.group
    status = item.row.status
    link = item.row.url
    if link.startswith("pkg/"):
        seg = link[4:-5]  # "pkg/<quoted segment>.html"
        page_ref = "" if seg == g.name else seg
    else:
        page_ref = "/" + paths.url(item.page)  # see search.py: relative to the site root
    entries = got.entries
    entries.append(search.Entry(g.name, g.version, status, suite_id, page_ref, ""))
    for a in g.artifacts:
        if a.name != g.name:  # duplicates are dropped by the index
            entries.append(search.Entry(a.name, g.version, status, suite_id, page_ref, g.name))
    profile = result.view.profile.name
    for m in g.maintainers:
        got.maintainers[html.maintainer_key(m)].append((m, profile, item))
    if found:
        name, page = result.view.profile.name, item.page
        for step in found:
            result.changes.offer(name, record, page, step)
        last = history.standing(record, found)
        if last is not None:
            before, after = last[1], NAME[last[0].status]
            if after == "GOOD" and before != "GOOD":
                result.reproduced.offer(name, record, page, last)
            elif before == "GOOD" and after in ("BAD", "FAIL"):
                result.regressions.offer(name, record, page, last)
            if after != before and after in ("BAD", "FAIL"):  # from anything, first builds too
                news = result.new_bad if after == "BAD" else result.new_fail
                news.offer(name, record, page, last)


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


def _build_dirs(record: GroupRecord, v0: Attempt | None, distro: str) -> Iterator[str]:
    """The folders of the build files :func:`_served` and :func:`_older` name for a group
    (what a group that is not redone keeps), without making their names."""
    if not record.seen:
        return  # no pages, no build files
    if v0 is not None and api_v1.published(v0):
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


def bad_causes(it: Item) -> tuple[str, ...]:
    """The causes a BAD group's current attempt was classified with."""
    if it.record.status is not Status.BAD or it.attempt is None:
        return ()
    return it.attempt.causes


def render_page(env: jinja2.Environment, template: str, ctx: Mapping[str, Any]) -> bytes:
    try:
        text = env.get_template(template).render(ctx)
    except jinja2.TemplateError as e:  # an override template can be broken
        where = (
            f"{e.filename}:{e.lineno}" if isinstance(e, jinja2.TemplateSyntaxError) else template
        )
        raise SiteError(f"template {where}: {e.message or type(e).__name__}") from None
    return text.encode("utf-8", "surrogatepass")
