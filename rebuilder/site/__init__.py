"""Render the static site: HTML pages, rebuilderd's v0 API files, our JSON, feeds, badges.

:func:`render` is the stage the pipeline calls after the state is saved. It
reads :class:`ProfileView` values (a profile, its records and pass history)
and the results store (``<site_dir>/builds/``, written by the build runner),
and writes everything else under ``site_dir``; see :mod:`rebuilder.site.paths`
for the layout. A file is written only when its bytes change (atomically:
temp file + rename), so a render of an unchanged state writes nothing, and a
web server or rsync mirror sees only real changes. ``changed`` narrows a
render to the group pages that can differ, and to the suite lists and
maintainer pages those groups are or were on; the other aggregates
(dashboard, search index, feeds, pkgs/list...) are always recomputed
because every change can move them. A full render hands the group pages to
forked worker processes.

One walk over the records collects what every aggregate needs
(:class:`_Collected`); each aggregate is then one small function. The results
store is read, never written: every write goes through
:class:`~rebuilder.site.output.Output`, which refuses any path under ``builds/``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import logging
import multiprocessing
import os
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import jinja2

from rebuilder.api import v0
from rebuilder.config import Profile
from rebuilder.model import Attempt, GroupRecord, Job, Status, utcnow
from rebuilder.site import api_v0, api_v1, badges, feeds, history, html, links, paths, search
from rebuilder.site.history import history_point
from rebuilder.site.output import MAX_SERVED, Output, RenderStats, Transform
from rebuilder.site.paths import SiteError

__all__ = [
    "MAX_SERVED",
    "ProfileView",
    "RenderStats",
    "SiteError",
    "history_point",
    "render",
]

log = logging.getLogger(__name__)

PARALLEL_MIN = 2000  # group pages worth forking worker processes for
MAX_WORKERS = 4
DASHBOARD_CHANGES = 30  # regressions and newly reproduced groups listed on the dashboard
FEED_ITEMS = 100
_STATUS_FILE = {s: s.value.lower() for s in Status}


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


_NAME = {s: s.value for s in Status}  # Enum.value is a slow property; this is a dict


@dataclass(slots=True)
class _Item:
    """One seen group, as the lists need it."""

    key: str
    record: GroupRecord
    page: str  # site path of its page, with .html
    row: html.Row
    attempt: Attempt | None  # the one rebuilderd's v0 names


@dataclass
class _Suite:
    summary: html.SuiteSummary
    items: list[_Item]


@dataclass
class _Profile:
    view: ProfileView
    suites: list[_Suite] = field(default_factory=list)
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
class _Collected:
    """What the aggregates need, gathered in the one walk over every record."""

    pkgs: dict[str, list[api_v0.PkgLine]] = field(default_factory=lambda: defaultdict(list))
    v1: dict[str, list[api_v1.BinaryRow]] = field(default_factory=lambda: defaultdict(list))
    jobs: dict[str, list[tuple[Job, GroupRecord | None]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    queues: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    entries: list[search.Entry] = field(default_factory=list)
    search_suites: list[list[str]] = field(default_factory=list)
    # maintainer key -> (the name as written, profile, item) of each of their groups
    maintainers: dict[str, list[tuple[str, str, _Item]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    profiles: list[_Profile] = field(default_factory=list)


@dataclass
class _Touched:
    """What an incremental render must redo beyond the changed groups' own pages: the
    suites and maintainers they belong to now, or belonged to before the change."""

    suites: set[tuple[str, str, str, str]] = field(default_factory=set)  # profile + suite
    maintainers: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Settings:
    env: jinja2.Environment
    changed: set[str] | None
    touched: _Touched | None  # None: a full render, everything is redone
    site_url: str
    package_pages: Mapping[str, str]
    now: _dt.datetime


def render(
    site_dir: Path,
    views: Sequence[ProfileView],
    *,
    now: _dt.datetime | None = None,
    changed: set[str] | None = None,
    templates: Path | None = None,
    public_keys: Sequence[str] = (),
    site_url: str = "",
    package_pages: Mapping[str, str] | None = None,
) -> RenderStats:
    """Render the site for ``views`` into ``site_dir``.

    ``views`` should hold every published profile: the dashboard, the
    maintainer pages, the search index, the feeds and each distribution's
    ``pkgs/list`` are built from exactly these, and stale files are removed
    only inside the given profiles' and distributions' trees.
    ``now`` is the dashboard's time (default: the latest ``last_pass``, else
    the current time). ``changed``, when given, is the set of group keys whose
    records may differ from the last render (including keys that left the
    state): other group pages and their v0 build files are left as they are,
    and only the suite lists and maintainer pages those groups are (or were)
    on are redone. A template change needs a full render (``changed=None``).
    ``templates`` is a directory whose files shadow the default templates.
    ``public_keys`` (PEM) are published as rebuilderd's ``api/v0/public-keys``.
    ``site_url`` (the site's public URL, may be empty) makes feed links
    absolute. ``package_pages`` maps a distribution to a URL template of its
    own package pages (default :data:`links.PACKAGE_PAGES`).
    """
    started = time.monotonic()
    _check_views(views)
    out = Output(str(site_dir))
    when = now or max((v.last_pass for v in views if v.last_pass), default=None) or utcnow()
    pages = links.PACKAGE_PAGES if package_pages is None else package_pages
    touched = None if changed is None else _touched(out, views, changed)
    cfg = _Settings(html.environment(templates), changed, touched, site_url, pages, when)
    got = _Collected()
    # Leaves first, indexes last: a page is written only after what it links down to, so
    # a visitor (or a crawler) never meets a link to a page not written yet mid-render.
    _copy_static(out, templates)
    _render_status_badges(out)
    keep_dirs: set[str] = set()  # pkg/ and badge/ folders an incremental prune skips
    jobs: list[_Job] = []
    for view in views:
        got.queues[view.profile.distro] += view.queue_length
        got.jobs[view.profile.distro] += [(j, view.records.get(j.group.key)) for j in view.queue]
        got.profiles.append(_render_profile(out, cfg, view, got, keep_dirs, jobs))
    finish_groups = _start_groups(out, cfg, jobs)  # in other processes while we go on
    _render_badges(out, got)
    finish_groups()
    for p in got.profiles:
        _render_suites(out, cfg, p)
    _render_v0(out, got, when, public_keys)
    _render_v1(out, got, views, when, public_keys)
    _render_maintainers(out, cfg, got)
    for name, data in search.build(got.entries, got.search_suites).items():
        out.write(f"{paths.SEARCH}/{name}", data)
    _render_feeds(out, cfg, got)
    _render_dashboard(out, cfg, got, public_keys)
    if changed is not None:
        _remove_stale_groups(out, views, changed)
    out.prune(
        [paths.profile_dir(v.profile.name) for v in views]
        + [paths.MAINTAINERS, paths.SEARCH, paths.FEEDS, paths.BADGES]
        + [b for bases in _arch_bases(got).values() for _, b in bases],  # symlinked builds/
        [b(d) for d in got.pkgs for b in (paths.api_base, paths.api_v1_base, paths.views_base)],
        deep=changed is None,
        skip=keep_dirs if changed is not None else (),
    )
    out.report_missing()
    stats = out.stats
    stats.seconds = round(time.monotonic() - started, 3)
    log.info(
        "site: %d written, %d unchanged, %d removed, %d skipped in %.1fs",
        stats.written, stats.unchanged, stats.removed, stats.skipped, stats.seconds,
    )  # fmt: skip
    return stats


def _check_views(views: Sequence[ProfileView]) -> None:
    names = [v.profile.name for v in views]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise SiteError(f"profile {dup!r} is given twice to the site renderer")
    for v in views:
        paths.api_base(v.profile.distro)  # raises on a reserved distribution name


def _touched(out: Output, views: Sequence[ProfileView], changed: set[str]) -> _Touched:
    """Suites and maintainers of the changed groups: as they are, and as the group JSON
    of the last render says they were (read before this render overwrites it)."""
    t = _Touched()
    for view in views:
        name = view.profile.name
        for key in changed:
            places = []
            record = view.records.get(key)
            if record is not None:
                g = record.group
                places.append((g.release, g.component, g.architecture, g.maintainers))
            before = out.read_json(paths.group_page(name, key) + ".json")
            try:
                g0 = before["record"]["group"]
                places.append(
                    (g0["release"], g0["component"], g0["architecture"], g0.get("maintainers", ()))
                )
            except (TypeError, KeyError):
                pass  # no page yet, or not ours: nothing to redo for it
            for release, component, arch, maintainers in places:
                t.suites.add((name, str(release), str(component), str(arch)))
                t.maintainers.update(html.maintainer_key(str(m)) for m in maintainers)
    return t


def _group_files(profile: str, key: str) -> list[str]:
    stem = paths.group_page(profile, key)
    badge = paths.badge_file(profile, key, "")
    return [stem + ".html", stem + ".json", badge + ".svg", badge + ".json"]


def _remove_stale_groups(out: Output, views: Sequence[ProfileView], changed: set[str]) -> None:
    """Files of changed groups this render did not produce (gone, or no longer seen)."""
    for view in views:
        for key in changed:
            for rel in _group_files(view.profile.name, key):
                if rel not in out.expected:
                    out.remove(rel)


# -- one profile: group pages, v0 build files, suite lists --------------------------------


def _render_profile(
    out: Output,
    cfg: _Settings,
    view: ProfileView,
    got: _Collected,
    keep_dirs: set[str],
    jobs: list[_Job],
) -> _Profile:
    """Walk a profile's records: collect what the aggregates need and queue the group
    pages to render (its suite lists are rendered after them, by :func:`_render_suites`)."""
    name, distro = view.profile.name, view.profile.distro
    result = _Profile(view)
    by_suite: dict[tuple[str, str, str], list[_Item]] = defaultdict(list)
    suite_ids: dict[tuple[str, str, str], int] = {}
    for key in sorted(view.records):
        record = view.records[key]
        g = record.group
        stem = paths.group_page(name, key)
        page = stem + ".html"
        attempt = api_v0.v0_attempt(record) if record.seen else None
        served = _served(attempt, distro)
        older = _older(record, attempt, distro)
        found = history.steps(record)
        if record.seen:
            where = (g.release, g.component, g.architecture)
            suite_dir = paths.suite_dir(name, *where)
            item = _item(key, record, page, suite_dir, attempt, served)
            by_suite[where].append(item)
            if where not in suite_ids:
                suite_ids[where] = len(got.search_suites)
                got.search_suites.append([name, "/".join(where), paths.url(suite_dir) + "/"])
            _collect(got, result, distro, record, attempt, served, found, item, suite_ids[where])
            got.v1[distro].extend(api_v1.binary_rows(record, attempt, served, cfg.now))
        if cfg.changed is not None and key not in cfg.changed:
            suite_dir = stem.rpartition("/pkg/")[0]
            keep_dirs.update((suite_dir + "/pkg", suite_dir + "/badge"))
            for files in (served, *older.values()):
                for folder in {f.rpartition("/")[0] for f in files.values()}:
                    out.keep_dir(folder)
            if served:
                out.keep_dir(api_v1.build_dir(distro, attempt.build_id))  # type: ignore[union-attr]
            out.stats.skipped += 1
            continue
        jobs.append((name, record, attempt, served, older, found, page))
    for where, items in sorted(by_suite.items()):
        counts = {s: 0 for s in Status}
        causes: dict[str, int] = defaultdict(int)
        for it in items:
            counts[it.record.status] += 1
            for c in _causes(it):
                causes[c] += 1
        summary = html.SuiteSummary(*where, counts, paths.suite_dir(name, *where), dict(causes))
        result.suites.append(_Suite(summary, items))
    return result


def _render_suites(out: Output, cfg: _Settings, p: _Profile) -> None:
    """A profile's suite lists: those a changed group is on (every one in a full render)."""
    name = p.view.profile.name
    for suite in p.suites:
        s = suite.summary
        if (
            cfg.touched is None
            or (name, s.release, s.component, s.architecture) in cfg.touched.suites
        ):
            _render_suite(out, cfg, name, suite)
        else:
            out.keep(f"{s.dir}/{f}" for f in _suite_files(suite))


_REASON_SHOWN = 160  # characters of a BAD or FAIL reason in a list row


def _item(
    key: str,
    record: GroupRecord,
    page: str,
    suite_dir: str,
    attempt: Attempt | None,
    served: Mapping[str, str],
) -> _Item:
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
    row = html.Row(g.name, g.version, _NAME[record.status], built, link, reason=why, files=files)
    return _Item(key, record, page, row, attempt)


_ROW_FILES = (("log", "log.html"), ("diffoscope", "diffoscope_html"))


def _collect(
    got: _Collected,
    result: _Profile,
    distro: str,
    record: GroupRecord,
    attempt: Attempt | None,
    served: Mapping[str, str],
    found: list[history.Step],
    item: _Item,
    suite_id: int,
) -> None:
    """What the aggregates need from one seen group."""
    g = record.group
    got.pkgs[distro].extend(api_v0.pkg_lines(record, attempt, served))
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
            before, after = last[1], _NAME[last[0].status]
            if after == "GOOD" and before != "GOOD":
                result.reproduced.offer(name, record, page, last)
            elif before == "GOOD" and after in ("BAD", "FAIL"):
                result.regressions.offer(name, record, page, last)
            if after != before and after in ("BAD", "FAIL"):  # from anything, first builds too
                news = result.new_bad if after == "BAD" else result.new_fail
                news.offer(name, record, page, last)


def _served(attempt: Attempt | None, distro: str) -> dict[str, str]:
    """The v0 build files an attempt gets (name -> site path): those with a safe store
    path, the readable view of each text file, and diffoscope's HTML report."""
    if attempt is None or not attempt.files:
        return {}
    out = {}
    files = attempt.files
    base = paths.api_build_dir(distro, attempt.build_id)
    views = paths.view_build_dir(distro, attempt.build_id)
    for kind in paths.API_KINDS:
        if kind in files and paths.store_rel(files[kind]) is not None:
            out[kind] = f"{base}/{kind}"
            view = paths.VIEWS.get(kind)
            if view:
                out[f"{kind}.html"] = f"{views}/{view}"
            alias = paths.ALIASES.get(kind)
            if alias:
                out[alias] = f"{base}/{alias}"
    report = files.get("diffoscope_html")
    if report and paths.store_rel(report) is not None:
        out["diffoscope_html"] = f"{views}/{paths.REPORT}"
    return out


def _older(record: GroupRecord, v0: Attempt | None, distro: str) -> dict[int, dict[str, str]]:
    """The build files of a seen group's other attempts, served as the v0 one's are (as
    rebuilderd serves any build id), so that their logs are readable pages too."""
    if not record.seen:
        return {}
    return {
        a.build_id: files for a in record.attempts if a is not v0 and (files := _served(a, distro))
    }


_Job = tuple[
    str,
    GroupRecord,
    Attempt | None,
    dict[str, str],
    dict[int, dict[str, str]],
    list[history.Step],
    str,
]
_forked: tuple[str, _Settings, list[_Job]] | None = None  # what forked workers inherit


def _workers(jobs: int) -> int:
    if jobs < PARALLEL_MIN or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(MAX_WORKERS, cores or 1))


def _start_groups(out: Output, cfg: _Settings, jobs: list[_Job]) -> Callable[[], None]:
    """Render the queued group pages; returns the function that waits for them.

    Many pages (a full render) are split between forked processes, one per
    core: they inherit the records, so nothing but the list of files each
    wrote comes back. Few pages are rendered here and now.
    """
    workers = _workers(len(jobs))
    if workers < 2:
        for job in jobs:
            _render_group(out, cfg, *job)
        return lambda: None
    global _forked
    _forked = (out.root, cfg, jobs)
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    step = -(-len(jobs) // workers)
    futures = [pool.submit(_group_worker, lo, lo + step) for lo in range(0, len(jobs), step)]

    def finish() -> None:
        global _forked
        try:
            for f in futures:
                out.merge(*f.result())
        finally:
            pool.shutdown(cancel_futures=True)
            _forked = None

    return finish


def _group_worker(lo: int, hi: int) -> tuple[set[str], set[str], RenderStats, list[str]]:
    assert _forked is not None, "a worker must be forked from render()"
    root, cfg, jobs = _forked
    out = Output(root)
    for job in jobs[lo:hi]:
        _render_group(out, cfg, *job)
    return out.expected, out.expected_dirs, out.stats, out.missing


def _render_group(
    out: Output,
    cfg: _Settings,
    profile: str,
    record: GroupRecord,
    attempt: Attempt | None,
    served: dict[str, str],
    older: dict[int, dict[str, str]],
    found: list[history.Step],
    page: str,
) -> None:
    g = record.group
    v0 = {}
    for a in record.attempts:
        mine = served if a is attempt else older.get(a.build_id)
        if mine:
            _serve_build(out, cfg, record, a, mine)
            v0[a.build_id] = mine
    if attempt is not None and served:
        api_v1.write_build(out, record, attempt, served)
    suite_page = paths.suite_dir(profile, g.release, g.component, g.architecture) + "/index.html"
    distro_page = links.package_page(
        cfg.package_pages, g.distro, name=g.name, version=g.version, release=g.release,
        component=g.component, architecture=g.architecture,
    )  # fmt: skip
    if record.seen:  # the page's badge and JSON before the page that links them
        target = _status_badge(_NAME[record.status])
        out.link(paths.badge_file(profile, g.key, ".svg"), target + ".svg")
        out.link(paths.badge_file(profile, g.key, ".json"), target + ".json")
    files = {a.build_id: {**_store_urls(a), **v0.get(a.build_id, {})} for a in record.attempts}
    changes = [
        {"at": c.at.isoformat(), "before": c.before, "after": c.after, "build_id": c.build_id}
        for c in (history.change(profile, record, page, st) for st in found)
    ]
    out.write(page[:-5] + ".json", api_v0.group(profile, record, page, files, changes))
    tail = _log_end(out, served) if record.status is Status.FAIL else ""
    ctx = html.group_context(profile, record, page, suite_page, v0, distro_page, tail)
    out.write(page, _page(cfg.env, "group.html", ctx))


def _serve_build(
    out: Output, cfg: _Settings, record: GroupRecord, attempt: Attempt, served: dict[str, str]
) -> None:
    """Publish one attempt's build files (plain copies, views, report, .txt/.json names);
    those whose store file is missing are dropped from ``served``."""
    for kind in list(served):
        if kind not in attempt.files:
            continue  # a view or an alias: made with its file
        alias = served.get(paths.ALIASES.get(kind, ""))
        if alias:  # the same file under a name any server sends as text or JSON; made
            out.symlink(alias, kind)  # first, as the view links to it
        if not out.serve(attempt.files[kind], _outputs(cfg, record, attempt, kind, served)):
            if alias:
                out.expected.discard(alias)
                out.remove(alias)
            for name in (kind, f"{kind}.html", paths.ALIASES.get(kind)):
                served.pop(name or "", None)


def _log_end(out: Output, served: Mapping[str, str], size: int = 16 << 10) -> str:
    """The last lines of a FAIL's plain v0 log copy (just served): its end, not all of it."""
    rel = served.get("log")
    if rel is None:
        return ""
    try:
        with open(f"{out.root}/{rel}", "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - size))
            return html.log_tail(f.read(size))
    except OSError:
        return ""


def _store_urls(a: Attempt) -> dict[str, str]:
    return {k: t for k, rel in a.files.items() if (t := paths.store_rel(rel)) is not None}


def _outputs(
    cfg: _Settings,
    record: GroupRecord,
    attempt: Attempt,
    kind: str,
    served: Mapping[str, str],
) -> list[tuple[str, Transform | None]]:
    """Where a store file goes: its plain copy, its readable view, or the wrapped report;
    the views and the report name the package and link back to its page."""
    target = served[kind]
    name = f"{record.group.name} {attempt.version}"
    # a build id's files are shared by every profile holding the group: the way back is the
    # search for its name (which lists it in each), not one profile's page
    query = "index.html?q=" + quote(record.group.name, safe="")
    if kind == "diffoscope_html":
        title = f"diffoscope: {name} (build {attempt.build_id})"
        root = paths.root_prefix(target)
        return [(target, functools.partial(html.report_page, title=title,
                                           back=(name, root + query), root=root))]  # fmt: skip
    outputs: list[tuple[str, Transform | None]] = [(target, None)]
    view = served.get(f"{kind}.html")
    if view:
        title = f"{kind}: {name} (build {attempt.build_id})"
        back = (name, paths.root_prefix(view) + query)
        plain = paths.href(view, served.get(paths.ALIASES.get(kind, ""), target))

        def as_page(data: bytes) -> bytes:
            text = data.decode("utf-8", "replace")
            return _page(cfg.env, "text.html", html.text_context(view, title, text, plain, back))

        outputs.append((view, as_page))
    return outputs


def _list_pages(suite: _Suite) -> list[tuple[str, str, Status | None, int, int]]:
    """(file name, sort, status, page, pages) of every list page of a suite."""
    counts = suite.summary.counts
    out = []
    for sort in paths.SORTS:
        for status in (None, *Status):
            n = suite.summary.total if status is None else counts.get(status, 0)
            pages = html.pages_of(n)
            st = _STATUS_FILE[status] if status else None
            out += [
                (paths.list_page(st, sort, i), sort, status, i, pages) for i in range(1, pages + 1)
            ]
    return out


def _causes(it: _Item) -> tuple[str, ...]:
    """The causes a BAD group's current attempt was classified with."""
    if it.record.status is not Status.BAD or it.attempt is None:
        return ()
    return it.attempt.causes


def _cause_pages(suite: _Suite) -> list[tuple[str, str, int, int]]:
    """(file name, cause, page, pages) of the lists of the BAD groups of each cause."""
    out = []
    for cause, n in sorted(suite.summary.causes.items()):
        pages = html.pages_of(n)
        out += [(paths.cause_page(cause, i), cause, i, pages) for i in range(1, pages + 1)]
    return out


def _suite_files(suite: _Suite) -> list[str]:
    pages = [name for name, *_ in _list_pages(suite)] + [n for n, *_ in _cause_pages(suite)]
    return [*pages, "index.json"]


def _render_suite(out: Output, cfg: _Settings, profile: str, suite: _Suite) -> None:
    """A suite's lists: every status and each one, by name and by date, paged; and its JSON."""
    s = suite.summary
    items = sorted(suite.items, key=lambda it: (it.row.name, it.row.url))
    root = paths.root_prefix(f"{s.dir}/index.html")
    cells = [html.row_html(it.row, root) for it in items]
    by_name = list(zip(items, cells, strict=True))
    by_date = [x for x in by_name if x[0].row.built]
    by_date.sort(key=lambda x: x[0].row.built, reverse=True)  # type: ignore[arg-type,return-value]
    by_date += [x for x in by_name if not x[0].row.built]  # never built: last
    lists: dict[tuple[str, Status | None], list[str]] = {}
    for sort, rows in (("name", by_name), ("date", by_date)):
        lists[sort, None] = [h for _, h in rows]
        for status in Status:
            lists[sort, status] = []
        for it, h in rows:
            lists[sort, it.record.status].append(h)
    for name, sort, only, n, pages in _list_pages(suite):
        chunk = lists[sort, only][(n - 1) * html.PAGE_SIZE : n * html.PAGE_SIZE]
        ctx = html.list_context(profile, s, f"{s.dir}/{name}", chunk, only, sort, n, pages)
        out.write(f"{s.dir}/{name}", _page(cfg.env, "suite.html", ctx))
    by_cause: dict[str, list[str]] = defaultdict(list)
    for it, h in by_name:
        for c in _causes(it):
            by_cause[c].append(h)
    for name, cause, n, pages in _cause_pages(suite):
        chunk = by_cause[cause][(n - 1) * html.PAGE_SIZE : n * html.PAGE_SIZE]
        ctx = html.list_context(
            profile, s, f"{s.dir}/{name}", chunk, Status.BAD, "name", n, pages, cause
        )
        out.write(f"{s.dir}/{name}", _page(cfg.env, "suite.html", ctx))
    shard_rows = []
    for it in items:
        a, r = it.attempt, it.row
        built, build_id = (api_v0.built_at(a).isoformat(), a.build_id) if a else (None, None)
        shard_rows.append(api_v0.suite_row(r.name, r.version, r.status, built, build_id, it.page))
    shard = api_v0.suite_shard(
        profile, s.release, s.component, s.architecture, s.counts, shard_rows
    )
    out.write(f"{s.dir}/index.json", shard)


# -- aggregates ---------------------------------------------------------------------------


def _render_v0(out: Output, got: _Collected, now: _dt.datetime, public_keys: Sequence[str]) -> None:
    """Each distribution's v0 tree, and one per architecture sharing its builds folder."""
    keys = api_v0.dumps(api_v0.public_keys(public_keys))
    for distro, all_lines in sorted(got.pkgs.items()):
        base = paths.api_base(distro)
        lines = api_v0.unique_lines(all_lines)
        queue = got.queues[distro]
        _write_v0(out, base, lines, queue, now, keys)
        by_arch: dict[str, list[api_v0.PkgLine]] = defaultdict(list)
        built = any(p.status != Status.UNKWN.value for p in lines)
        for p in lines:
            by_arch[p.architecture].append(p)
        for arch, subset in sorted(by_arch.items()):
            arch_base = paths.arch_api_base(distro, arch)
            if arch_base is None:
                log.warning("site: no per-architecture tree for an architecture named %r", arch)
                continue
            _write_v0(out, arch_base, subset, queue, now, keys)
            # build ids are unique per distribution: every tree shares the one folder, once
            # there is one (a dangling link breaks the Pages upload, which dereferences links)
            if built:
                out.symlink(f"{arch_base}/builds", "../../../api/v0/builds")


def _write_v0(
    out: Output,
    base: str,
    lines: Sequence[api_v0.PkgLine],
    queue: int,
    now: _dt.datetime,
    keys: bytes,
) -> None:
    out.write(f"{base}/pkgs/list", v0.pkgs_list([p.line for p in lines]))
    out.write(f"{base}/dashboard", api_v0.dumps(api_v0.dashboard(lines, queue, now)))
    out.write(f"{base}/public-keys", keys)
    for name in ("pkgs/list", "dashboard", "public-keys"):  # .json names beside them
        out.symlink(f"{base}/{name}.json", name.rpartition("/")[2])


def _render_v1(
    out: Output,
    got: _Collected,
    views: Sequence[ProfileView],
    now: _dt.datetime,
    public_keys: Sequence[str],
) -> None:
    """Each distribution's v1 tree (rebuildctl's), and v0's build queue."""
    for distro in sorted(got.pkgs):
        api_v1.write_packages(out, distro, got.v1[distro])
        api_v1.write_queue(out, distro, got.jobs[distro], now)
        records = [r for v in views if v.profile.distro == distro for r in v.records.values()]
        api_v1.write_meta(out, distro, records, got.queues[distro], now, public_keys)


def _arch_bases(got: _Collected) -> dict[str, list[tuple[str, str]]]:
    """(architecture, v0 base) of each distribution's per-architecture trees."""
    out: dict[str, list[tuple[str, str]]] = {}
    for distro, lines in got.pkgs.items():
        archs = sorted({p.architecture for p in lines})
        out[distro] = [(a, b) for a in archs if (b := paths.arch_api_base(distro, a))]
    return out


def _render_maintainers(out: Output, cfg: _Settings, got: _Collected) -> None:
    """A page per maintainer (redone when one of their groups changed) and the index."""
    index = []
    for key, items in sorted(got.maintainers.items()):
        page = paths.maintainer_page(key)
        names = sorted({m for m, _, _ in items})
        counts = {s: 0 for s in Status}
        for _, _, it in items:
            counts[it.record.status] += 1
        if cfg.touched is None or key in cfg.touched.maintainers:
            rows = html.maintainer_rows([_maintainer_row(p, it) for _, p, it in items])
            ctx = html.maintainer_context(names, page, rows, counts)
            out.write(page, _page(cfg.env, "maintainer.html", ctx))
        else:
            out.keep([page])
        attention = counts[Status.BAD] + counts[Status.FAIL]
        index.append(html.MaintainerLink(names[0], paths.url(page), len(items), attention))
    index.sort(key=lambda m: (-m.attention, m.name.lower(), m.url))
    ctx = html.maintainers_context(index)
    out.write("maintainers.html", _page(cfg.env, "maintainers.html", ctx))


def _maintainer_row(profile: str, it: _Item) -> tuple[html.Row, Status]:
    g = it.record.group
    where = f"{g.release}/{g.component}/{g.architecture}"
    extra = f"<td>{html.e(profile)}</td><td>{html.e(where)}</td>"
    return it.row._replace(url="../" + paths.url(it.page), extra=extra), it.record.status  # from m/


def _render_feeds(out: Output, cfg: _Settings, got: _Collected) -> None:
    everything: list[history.Change] = []
    for p in got.profiles:
        name = p.view.profile.name
        items = p.changes.items()
        everything.extend(items)
        title = f"rebuilder: {name}"
        for suffix, make in ((".atom", _atom), (".json", _json_feed)):
            target = paths.profile_feed(name, suffix)
            out.write(target, make(cfg, title, items, target))
    items = history.newest(everything, FEED_ITEMS)
    out.write("feed.atom", _atom(cfg, "rebuilder: status changes", items, "feed.atom"))
    out.write("feed.json", _json_feed(cfg, "rebuilder: status changes", items, "feed.json"))


def _atom(cfg: _Settings, title: str, items: list[history.Change], target: str) -> bytes:
    return feeds.atom(
        title, items, feed=target, page="index.html", site_url=cfg.site_url, updated=cfg.now
    )


def _json_feed(cfg: _Settings, title: str, items: list[history.Change], target: str) -> bytes:
    return feeds.json_feed(title, items, feed=target, page="index.html", site_url=cfg.site_url)


def _status_badge(status: str) -> str:
    return f"{paths.STATUS_BADGES}/{status}"


def _render_status_badges(out: Output) -> None:
    """The four package badges, which every package's badge links to."""
    for status in Status:
        svg, endpoint = badges.status_badges(status.value)
        out.write(_status_badge(status.value) + ".svg", svg)
        out.write(_status_badge(status.value) + ".json", endpoint)


def _render_badges(out: Output, got: _Collected) -> None:
    for p in got.profiles:
        counts = p.counts
        total = sum(counts.values())
        share = counts[Status.GOOD] / total if total else None
        svg, endpoint = badges.share_badges(share)
        out.write(paths.profile_badge(p.view.profile.name, ".svg"), svg)
        out.write(paths.profile_badge(p.view.profile.name, ".json"), endpoint)


def _render_dashboard(
    out: Output, cfg: _Settings, got: _Collected, public_keys: Sequence[str]
) -> None:
    blocks, entries = [], []
    arch_bases = _arch_bases(got)
    for p in got.profiles:
        view, prof = p.view, p.view.profile
        hist = list(view.history) or [history_point(cfg.now, view.records.values())]
        chart = history.chart_svg(hist, f"{prof.name}: share of each status over time")
        archs = arch_bases.get(prof.distro, [])
        summaries = [s.summary for s in p.suites]
        blocks.append(
            html.profile_context(
                prof.name, prof.distro, view.queue_length, view.last_pass, summaries, chart,
                history.suite_legend(hist),
                p.regressions.items(), p.reproduced.items(), archs,
                new_bad=p.new_bad.items(), new_fail=p.new_fail.items(),
                offered={"regressions": p.regressions.total, "reproduced": p.reproduced.total,
                        "new_bad": p.new_bad.total, "new_fail": p.new_fail.total},
            )
        )  # fmt: skip
        suites = [
            api_v0.suite_entry(
                s.release, s.component, s.architecture, s.counts,
                paths.url(f"{s.dir}/index.html"), paths.url(f"{s.dir}/index.json"), s.causes,
            )
            for s in summaries
        ]  # fmt: skip
        urls = {
            "api": paths.url(paths.api_base(prof.distro)) + "/",
            "arch_api": {a: paths.url(b) + "/" for a, b in archs},
            "feeds": {
                "atom": paths.url(paths.profile_feed(prof.name, ".atom")),
                "json": paths.url(paths.profile_feed(prof.name, ".json")),
            },
            "badge": {
                "svg": paths.url(paths.profile_badge(prof.name, ".svg")),
                "shields": paths.url(paths.profile_badge(prof.name, ".json")),
            },
        }
        entries.append(
            api_v0.profile_entry(
                prof.name,
                prof.distro,
                view.queue_length,
                view.last_pass,
                urls,
                p.counts,
                suites,
                _sum_causes(summaries),
            )
        )
    page = html.index_context(blocks, signed=bool(public_keys))
    out.write("index.html", _page(cfg.env, "index.html", page))
    top = {
        "search": f"{paths.SEARCH}/index.json",
        "feeds": {"atom": "feed.atom", "json": "feed.json"},
        "maintainers": "maintainers.html",
        "public_keys": list(public_keys),  # the attestation signing keys (PEM)
        "attestations": "signed" if public_keys else "unsigned",
    }
    out.write("index.json", api_v0.dumps(api_v0.index(entries, top), indent=1))


def _sum_causes(suites: Sequence[html.SuiteSummary]) -> dict[str, int]:
    total: dict[str, int] = defaultdict(int)
    for s in suites:
        for c, n in s.causes.items():
            total[c] += n
    return dict(sorted(total.items()))


def _page(env: jinja2.Environment, template: str, ctx: Mapping[str, Any]) -> bytes:
    try:
        text = env.get_template(template).render(ctx)
    except jinja2.TemplateError as e:  # an override template can be broken
        where = (
            f"{e.filename}:{e.lineno}" if isinstance(e, jinja2.TemplateSyntaxError) else template
        )
        raise SiteError(f"template {where}: {e.message or type(e).__name__}") from None
    return text.encode("utf-8", "surrogatepass")


def _copy_static(out: Output, templates: Path | None) -> None:
    """Copy ``static/`` of the template directories (an override file wins)."""
    seen: set[str] = set()
    for directory in html.template_dirs(templates):
        static = directory / paths.STATIC
        if not static.is_dir():
            continue
        for f in sorted(static.iterdir()):
            if f.is_file() and f.name not in seen:
                seen.add(f.name)
                out.write(f"{paths.STATIC}/{paths.segment(f.name)}", f.read_bytes())
