"""The render driver: what a render redoes, and the order pages are written in.

A file is written only when its bytes change (atomically: temp file + rename), so a
render of an unchanged state writes nothing, and a web server or rsync mirror sees
only real changes. ``changed`` narrows a render to the group pages that can differ,
and to the suite lists and maintainer pages those groups are or were on; the other
aggregates (dashboard, search index, feeds...) are always recomputed because every
change can move them, and the v0 and v1 package lists are patched where the changed
groups' records go and come (:mod:`rebuilder.site.splice`). When no group changed
(``changed=set()``), only the pages that move with the time, the queue and the pass
history are made, from what the last render kept of the walk
(:mod:`rebuilder.site.quiet`): no group is walked.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import hashlib
import json
import logging
import marshal
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from rebuilder import _fs, _gc
from rebuilder.model import Job, utcnow
from rebuilder.site import (
    aggregates,
    cache,
    forks,
    groups,
    html,
    links,
    maintainers,
    paths,
    quiet,
    search,
    suites,
    walk,
)
from rebuilder.site.output import Output, RenderStats
from rebuilder.site.paths import SiteError
from rebuilder.site.walk import Collected, ProfileView, Settings, Touched

log = logging.getLogger(__name__)


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
    on are redone. With other code or templates than the last render's (or no cache of
    it), ``changed`` is ignored: every page is redone.
    ``templates`` is a directory whose files shadow the default templates.
    ``public_keys`` (PEM) are published as rebuilderd's ``api/v0/public-keys``.
    ``site_url`` (the site's public URL, may be empty) makes feed links
    absolute. ``package_pages`` maps a distribution to a URL template of its
    own package pages (default :data:`links.PACKAGE_PAGES`).
    """
    # The records, the last render's cache and what the walk collects are millions of
    # objects that live through the render (forked workers, which render many pages,
    # turn the collector on again: see forks); a thread frees what it built once it has
    # returned (``built``). The old versions of the files it rewrites are removed beside
    # it (see _fs.swap_in).
    built: list[object] = []
    with _gc.paused(freed_later=built), _fs.removing_later():
        return _render(
            site_dir, views, now, changed, templates, public_keys, site_url, package_pages, built
        )


def _render(
    site_dir: Path,
    views: Sequence[ProfileView],
    now: _dt.datetime | None,
    changed: set[str] | None,
    templates: Path | None,
    public_keys: Sequence[str],
    site_url: str,
    package_pages: Mapping[str, str] | None,
    built: list[object],
) -> RenderStats:
    started = time.monotonic()
    _check_views(views)
    out = Output(str(site_dir))
    lap = _laps(out.stats, started)
    empty = _holds_nothing(site_dir)  # then nothing in it can be stale: no prune
    when = now or max((v.last_pass for v in views if v.last_pass), default=None) or utcnow()
    pages = links.PACKAGE_PAGES if package_pages is None else package_pages
    dirs = html.template_dirs(templates)
    # what makes a page of a record: the code, and the templates (static files included);
    # and what the last render's files are trusted for: this run of the machine (a system
    # crash may have emptied what it wrote, see _fs.swap_in)
    templates_ = (f for d in dirs for f in d.rglob("*"))
    code = cache.files_digest([cache.code_digest(), _fs.boot_id(), *templates_])
    inputs = _inputs(code, views, when, dirs, public_keys, site_url, pages)
    if changed is not None and not changed:
        if cache.inputs_of(out.root) == (code, inputs):
            # nothing the site is made of moved since the last render, which finished
            out.stats.skipped = sum(len(v.records) for v in views)
            return _done(out, started)
        small = cache.load_quiet(out.root)
        if small is not None and small[0] == code and small[2] is not None:
            walked = quiet.restore(small[2], views)
            if walked is not None:  # no group changed: the pages that move with the time
                now_cache = cache.RenderCache(code, inputs, summary=small[2])
                cfg = Settings(html.environment(templates, f"{out.root}/{cache.COMPILED}"),
                               changed, Touched(), site_url, pages, when)  # fmt: skip
                _render_quiet(out, cfg, views, walked, public_keys, templates, now_cache)
                return _done(out, started)
    lap("inputs")
    last = cache.load(out.root)
    lap("cache read")
    if changed is not None and last.code != code:
        # an upgrade, other templates, a restart, or no cache (a first render, a trimmed
        # site, one stopped half-way): the pages of groups outside ``changed`` are not as
        # this code would make them (or not known to be), so every page is redone
        log.info("site: the code, the templates or the machine's boot changed since the last "
                 "render (or it left no cache): a full render")  # fmt: skip
        changed = None
    cache.begin(out.root)
    now_cache = cache.RenderCache(code, inputs, digests=out.digests)
    now_cache.blobs = last.blobs  # (of the parts it takes over: see cache.BLOB_FIELDS)
    if last.code == code:
        out.known = last.digests
        if changed is not None:  # the files it leaves keep their digests (one C-level copy)
            out.digests.update(last.digests)
            out.moved = now_cache.moved_digests = set()
            now_cache.moved_parts = {}
    touched = None if changed is None else _touched(out, views, changed)
    env = html.environment(templates, f"{out.root}/{cache.COMPILED}")
    cfg = Settings(env, changed, touched, site_url, pages, when)
    lap("touched+templates")
    got = Collected(blob=last.blob)
    if last.code == code:  # what the v0 and v1 lists are patched from (see splice)
        got.v0_index, got.v1_index = dict(last.lists.get("v0", {})), dict(last.lists.get("v1", {}))
        got.list_files = last.list_files
        got.last_suites = last.lists.get("search", [])
    # Leaves first, indexes last: a page is written only after what it links down to, so
    # a visitor (or a crawler) never meets a link to a page not written yet mid-render.
    aggregates.copy_static(out, templates)
    aggregates.render_viewer(out, cfg)
    aggregates.render_status_badges(out)
    page_work, fork = groups.work(cfg, views)
    if changed is None:  # forked: beside the walk
        finish_groups = forks.write(out, page_work, fork=fork)
        lap("static+group pages" + (" started" if fork else ""))
    else:  # (once the lists that link to them are started: see _start_lists)
        lap("static")
    keep_dirs: set[str] = set()  # pkg/ and badge/ folders an incremental prune skips
    _queues(got, views)
    queues = (last.queue if last.code == code else {}, now_cache.queue)
    now_cache.queue_new = aggregates.render_queues(out, got, views, when, public_keys, queues)
    lap("queue")
    for view in views:
        mine = f"{view.profile.name}\0{view.profile.distro}"
        cached = last.parts.get(mine, {}) if last.code == code else {}
        parts = now_cache.parts[mine] = {}
        profile_walk = walk.walk_profile(out, cfg, view, got, keep_dirs, cached, parts)
        got.profiles.append(profile_walk)
        if now_cache.moved_parts is not None:
            now_cache.moved_parts[mine] = profile_walk.moved
    if changed is not None:  # see api_v1.write_packages
        keep_dirs.update(f"{paths.api_v1_base(d)}/packages/by-name" for d in got.pkgs)
    lap("walk")
    aggregates.render_badges(out, got)
    # v1's files link no page and name no file but through the server's rules: in a full
    # render, they are written while the group pages are (82,000 by-name files at Debian's
    # size); in an incremental one, beside the suite lists and maintainer pages
    if changed is None:
        aggregates.render_v1(out, got)
        finish_groups()
        lap("v1 lists+group pages")
        finish_lists = _start_lists(out, cfg, got)  # they link to group pages
        lap("lists started")
    else:
        lap("badges")

        def group_pages() -> None:
            forks.write(out, page_work, fork=fork)()

        finish_lists = _start_lists(out, cfg, got, group_pages, lap)
    if changed is not None:
        aggregates.render_v1(out, got)
    aggregates.render_v0(out, got, when, public_keys)
    now_cache.lists = {
        "v0": {d: got.v0_index[d] for d in got.pkgs},
        "v1": {d: got.v1_index[d] for d in got.pkgs},
        "search": got.search_suites,  # (how the parts' search entries are numbered)
    }
    now_cache.list_files = got.list_files_now
    lap("v1+v0 lists")
    found = search.shards(got.entries, got.search_suites)
    aggregates.render_feeds(out, cfg, got)
    lap("search+feeds")
    finish_lists()
    lap("maintainer pages+wait")
    for name, (source, make) in found.items():
        out.write_made(f"{paths.SEARCH}/{name}", source, make)
    aggregates.render_dashboard(out, cfg, got, public_keys)
    if changed is not None:
        _remove_stale_groups(out, views, changed)
    _fs.wait_removed()  # (the prune would meet them)
    if not empty:
        # a distribution's folder holds its per-architecture trees, those of an
        # architecture whose last package left too (their lists would be read for ever);
        # its own API trees below it are pruned as such (their build folders)
        own = {f"{paths.distro_dir(d)}/{paths.API}" for d in got.pkgs}
        out.prune(
            [paths.profile_dir(v.profile.name) for v in views]
            + [paths.MAINTAINERS, paths.SEARCH, paths.FEEDS, paths.BADGES]
            + [paths.distro_dir(d) for d in got.pkgs],
            [b(d) for d in got.pkgs for b in (paths.api_base, paths.api_v1_base, paths.views_base)],
            skip=own | (keep_dirs if changed is not None else set()),
            gone=got.gone_dirs if changed is not None else None,
        )
    out.report_missing()
    lap("search files+dashboard+prune")
    now_cache.summary = quiet.summary(got, now_cache.parts)
    cache.finish(out.root, last, now_cache)
    lap("cache saved")
    # (what the render made; the thread takes apart only the lists, dicts and sets in them
    # that nothing else holds, so the caller's records and ``changed`` are left whole)
    built += [out, last, now_cache, got, touched, keep_dirs, found]
    return _done(out, started)


def _render_quiet(
    out: Output,
    cfg: Settings,
    views: Sequence[ProfileView],
    got: Collected,
    public_keys: Sequence[str],
    templates: Path | None,
    now_cache: cache.RenderCache,
) -> None:
    """A render that walks no group (see :mod:`quiet`): ``got`` is the last walk's summary."""
    cache.begin(out.root)
    _queues(got, views)
    aggregates.copy_static(out, templates)
    aggregates.render_viewer(out, cfg)
    aggregates.render_status_badges(out)
    aggregates.render_badges(out, got)
    last_queue = cache.load_queue(out.root, now_cache.code)
    queues = (last_queue, now_cache.queue)
    now_cache.queue_new = aggregates.render_queues(out, got, views, cfg.now, public_keys, queues)
    aggregates.render_v0(out, got, cfg.now, public_keys)
    aggregates.render_feeds(out, cfg, got)
    aggregates.render_dashboard(out, cfg, got, public_keys)
    out.stats.skipped = sum(len(v.records) for v in views)
    out.report_missing()
    cache.finish_quiet(out.root, now_cache, last_queue)


def _queues(got: Collected, views: Sequence[ProfileView]) -> None:
    """The queue of each distribution, and its length (the jobs not planned too)."""
    for view in views:
        got.queues[view.profile.distro] += view.queue_length
        got.jobs[view.profile.distro] += [(j, view.records.get(j.group.key)) for j in view.queue]


LISTS_PARALLEL_MIN = 5_000  # rows of the touched suite lists worth a process of their own


def _start_lists(
    out: Output,
    cfg: Settings,
    got: Collected,
    group_pages: Callable[[], None] = lambda: None,
    lap: Callable[[str], None] = lambda phase: None,
) -> Callable[[], None]:
    """Start the suite lists and the maintainer pages (those a changed group is on, in an
    incremental render); returns the function that makes what is left of the maintainer
    pages, waits for the processes and then writes the index of maintainers.
    ``group_pages`` writes the pages they link down to (an incremental render's changed
    groups': a full render's are written before).

    The maintainer pages are handed out one at a time (:class:`forks.Share`) to every
    process that makes some: the processes forked for them, the one forked for the suite
    lists once it has made those, and the driver once it has made the v1 and v0 lists,
    the search index and the feeds. None waits while another has pages left, however
    the work falls (a maintainer of 300 groups or of 3, a slow hour or a fast one).

    A full render forks processes for the maintainer pages and writes the suite lists
    here. An incremental one gives the suite lists a process of their own when they hold
    5,000 rows or more (at Debian's size a hundred changes touch most suites, a few
    tenths of a second of work), and the maintainer pages processes when it redoes as
    many as a full render forks for (:data:`maintainers.PARALLEL_MIN`, a thousand
    changes). The processes are forked before those group pages are written: they make
    their pages meanwhile, kept in memory until the group pages are written (a gate,
    :meth:`Output.hold`).

    Processes cost the driver a copy of every memory page it writes while they run (the
    walk's millions of objects, whose reference counts it writes as it reads them), so
    only what is long is forked (docs/site.md, the session 22 and 23 paragraphs, compare
    the ways)."""
    pages, processes, write_index = maintainers.start(out, cfg, got)
    lists = functools.partial(_suite_lists, cfg=cfg, profiles=got.profiles)
    beside = [pages] * processes if processes > 1 else []
    if cfg.touched is None:
        group_pages()
        wait = forks.write(out, beside, fork=True)
        lists(out)
    else:
        long = forks.workers(_touched_rows(cfg.touched, got), LISTS_PARALLEL_MIN, 2) > 1
        forked = [*beside, *([_then(lists, pages)] if long else [])]
        gate = forks.Gate() if forked else None
        wait = forks.write(out, forked, fork=True, gate=gate)  # (none: nothing to wait for)
        if forked:
            lap("lists started")
        try:
            group_pages()
        except BaseException:
            if gate is not None:
                gate.shut()  # (they must not write lists that link to pages not written)
                with contextlib.suppress(Exception):
                    wait()  # (they stop at the gate: their error is not the render's)
            raise
        if gate is not None:
            gate.open()
        lap("group pages")
        if not long:
            lists(out)
            lap("lists")

    def finish() -> None:
        pages(out)  # (what no process has taken yet)
        wait()
        write_index()

    return finish


def _then(*work: forks.Work) -> forks.Work:
    """One piece of work that does each of ``work`` in turn."""

    def run(out: Output) -> None:
        for w in work:
            w(out)

    return run


def _suite_lists(out: Output, *, cfg: Settings, profiles: Sequence[walk.ProfileWalk]) -> None:
    for p in profiles:
        suites.render_suites(out, cfg, p)


def _touched_rows(touched: Touched, got: Collected) -> int:
    """Rows of the suite lists an incremental render redoes."""
    rows = 0
    for p in got.profiles:
        name = p.view.profile.name
        rows += sum(len(s.items) for s in p.suites if touched.has_suite(name, s.summary))
    return rows


def _holds_nothing(site_dir: Path) -> bool:
    """Whether the site holds nothing but the results store (or is not there yet)."""
    try:
        with os.scandir(site_dir) as it:
            return all(e.name == paths.STORE for e in it)
    except FileNotFoundError:
        return True
    except OSError as e:
        raise SiteError(f"{site_dir}: cannot read the site folder: {e.strerror or e}") from None


def _laps(stats: RenderStats, started: float) -> Callable[[str], None]:
    """The function that ends a phase of the driver: its time goes into ``stats.phases``
    (what ``bench/render.py`` prints, and a ``-v`` run logs)."""
    at = started

    def lap(phase: str) -> None:
        nonlocal at
        now = time.monotonic()
        stats.phases[phase] = round(now - at, 3)
        at = now

    return lap


def _done(out: Output, started: float) -> RenderStats:
    stats = out.stats
    stats.seconds = round(time.monotonic() - started, 3)
    log.info(
        "site: %d written, %d unchanged, %d removed, %d skipped in %.1fs",
        stats.written, stats.unchanged, stats.removed, stats.skipped, stats.seconds,
    )  # fmt: skip
    if stats.phases:
        laps = " · ".join(f"{k} {v:.2f}s" for k, v in stats.phases.items())
        log.debug("site: by phase: %s", laps)
    return stats


def _inputs(
    code: str,
    views: Sequence[ProfileView],
    now: _dt.datetime,
    template_dirs: Sequence[Path],
    public_keys: Sequence[str],
    site_url: str,
    package_pages: Mapping[str, str],
) -> str:
    """A digest of everything a render reads but the records (see :mod:`cache`); ``code``
    covers the package's modules and the templates' files.

    Digested as marshal's bytes (28 ms for a year of pass history and a queue of 11,000
    jobs, where JSON took 40 ms of every render); JSON when something is not of the
    builtin types marshal takes. Two equal inputs with their keys in another order give
    two digests: a render that could have been skipped is made, which costs time only."""
    parts: list[object] = [code, [str(d) for d in template_dirs], now.isoformat()]
    parts += [list(public_keys), site_url, sorted(package_pages.items())]
    for v in views:
        when = v.last_pass.isoformat() if v.last_pass else None
        parts += [repr(v.profile), v.queue_length, when, list(v.history), _queue(v.queue)]
    try:
        data = b"m" + marshal.dumps(parts, 0)  # (version 0: no references, same bytes)
    except ValueError:  # (a history point of another mapping type, say)
        text = json.dumps(parts, default=repr, sort_keys=True)
        data = b"j" + text.encode("utf-8", "surrogatepass")
    return hashlib.sha256(data).hexdigest()


def _queue(jobs: Sequence[Job]) -> list[tuple[object, ...]]:
    """What the published queue depends on beyond the records: which groups, in which
    order, why, and their build ids (a group's own fields change with its record, which
    ``changed`` names). Not each job's repr: Debian's first queue, 46,000 jobs, is 44 MB of
    it, 1.5 s of every render."""
    return [
        (j.profile, j.group.key, j.group.inputs_digest, j.reason, j.priority, j.build_id,
         j.estimate)
        for j in jobs
    ]  # fmt: skip


def _check_views(views: Sequence[ProfileView]) -> None:
    names = [v.profile.name for v in views]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise SiteError(f"profile {dup!r} is given twice to the site renderer")
    for v in views:
        paths.api_base(v.profile.distro)  # raises on a reserved distribution name


def _touched(out: Output, views: Sequence[ProfileView], changed: set[str]) -> Touched:
    """Suites and maintainers of the changed groups: as they are, and as the group JSON
    of the last render says they were (read before this render overwrites it)."""
    t = Touched()
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
            for release, component, arch, people in places:
                t.suites.add((name, str(release), str(component), str(arch)))
                t.maintainers.update(html.maintainer_key(str(m)) for m in people)
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
