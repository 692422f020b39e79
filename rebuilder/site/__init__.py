"""Render the static site: HTML pages, rebuilderd's v0 API files and our JSON.

:func:`render` is the stage the pipeline calls after the state is saved. It
reads :class:`ProfileView` values (a profile and its records) and the results
store (``<site_dir>/builds/``, written by the build runner), and writes
everything else under ``site_dir``; see :mod:`rebuilder.site.paths` for the
layout. A file is written only when its bytes change (atomically: temp file +
rename), so a render of an unchanged state writes nothing, and a web server or
rsync mirror sees only real changes. ``changed`` narrows a render to the
group pages that can differ; aggregates (index, suite lists, pkgs/list,
dashboard) are always recomputed because every change can move them.

The results store is read, never written: every write goes through
:class:`_Output`, which refuses any path under ``builds/``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
import time
import zlib
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from rebuilder.config import Profile
from rebuilder.model import Attempt, GroupRecord, Status, utcnow
from rebuilder.site import api_v0, html, paths
from rebuilder.site.paths import SiteError

__all__ = ["ProfileView", "RenderStats", "SiteError", "render"]

log = logging.getLogger(__name__)

MAX_SERVED = 256 * 1024 * 1024  # bytes of a decompressed store file served; guards gzip bombs


@dataclass(frozen=True)
class ProfileView:
    """What the site shows of one profile: its records (key = ``BuildGroup.key``)."""

    profile: Profile
    records: Mapping[str, GroupRecord]
    queue_length: int = 0
    last_pass: _dt.datetime | None = None  # naive UTC


@dataclass
class RenderStats:
    """What a render did: files written, files already up to date, stale files removed,
    and group pages not looked at because they were not in ``changed``."""

    written: int = 0
    unchanged: int = 0
    removed: int = 0
    skipped: int = 0
    seconds: float = 0.0


def render(
    site_dir: Path,
    views: Sequence[ProfileView],
    *,
    now: _dt.datetime | None = None,
    changed: set[str] | None = None,
    templates: Path | None = None,
    public_keys: Sequence[str] = (),
) -> RenderStats:
    """Render the site for ``views`` into ``site_dir``.

    ``views`` should hold every published profile: ``index.html`` and each
    distribution's ``pkgs/list`` are built from exactly these, and stale files
    are removed only inside the given profiles' and distributions' trees.
    ``now`` is the dashboard's time (default: the latest ``last_pass``, else
    the current time). ``changed``, when given, is the set of group keys whose
    records may differ from the last render: other group pages and their v0
    build files are left as they are (a template change needs a full render).
    ``templates`` is a directory whose files shadow the default templates.
    ``public_keys`` (PEM) are published as rebuilderd's ``api/v0/public-keys``.
    """
    started = time.monotonic()
    site_dir = Path(site_dir)
    _check_views(views)
    out = _Output(site_dir)
    env = html.environment(templates)
    when = now or max((v.last_pass for v in views if v.last_pass), default=None) or utcnow()
    pkgs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    queues: dict[str, int] = defaultdict(int)
    profiles_html, profiles_json = [], []
    for view in views:
        distro = view.profile.distro
        queues[distro] += view.queue_length
        suites = _render_profile(out, env, view, changed, pkgs[distro])
        profiles_html.append(_profile_html(view, suites))
        profiles_json.append(_profile_json(view, suites))
    for distro, all_rows in sorted(pkgs.items()):
        base = paths.api_base(distro)
        rows = api_v0.unique_pkgs(all_rows)
        out.write(f"{base}/pkgs/list", api_v0.pkgs_list(rows))
        board = api_v0.dashboard(rows, queues[distro], when)
        out.write(f"{base}/dashboard", api_v0.dumps(board))
        out.write(f"{base}/public-keys", api_v0.dumps(api_v0.public_keys(public_keys)))
    out.write("index.html", _page(env, "index.html", html.index_context(profiles_html)))
    out.write("index.json", api_v0.dumps(api_v0.index(profiles_json), indent=1))
    _copy_static(out, templates)
    out.prune(
        [paths.profile_dir(v.profile.name) for v in views],
        [paths.api_base(d) for d in pkgs],
        deep=changed is None,
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


def _render_profile(
    out: _Output,
    env: jinja2.Environment,
    view: ProfileView,
    changed: set[str] | None,
    pkgs: list[dict[str, Any]],
) -> list[html.SuiteSummary]:
    """Group pages, v0 rows and suite lists of one profile; returns its suite summaries."""
    name, distro = view.profile.name, view.profile.distro
    by_suite: dict[tuple[str, str, str], list[tuple[str, GroupRecord]]] = defaultdict(list)
    pages: dict[str, str] = {}
    for key in sorted(view.records):
        record = view.records[key]
        page = paths.group_page(name, key)
        pages[key] = page
        g = record.group
        attempt = api_v0.v0_attempt(record) if record.seen else None
        served = _served(attempt, distro)
        if record.seen:
            by_suite[(g.release, g.component, g.architecture)].append((key, record))
            has = {k: k in served for k in paths.API_KINDS}
            pkgs.extend(api_v0.pkg_releases(record, attempt, has))
        html_page, json_page = page + ".html", page + ".json"
        if changed is not None and key not in changed:
            out.keep(html_page, json_page, *served.values())
            out.stats.skipped += 1
            continue
        for kind, target in served.items():
            assert attempt is not None  # served is empty without an attempt
            out.serve(attempt.files[kind], target)
        v0 = {attempt.build_id: served} if attempt and served else {}
        suite_page = paths.suite_dir(name, g.release, g.component, g.architecture) + "/index.html"
        ctx = html.group_context(name, record, html_page, suite_page, v0)
        out.write(html_page, _page(env, "group.html", ctx))
        out.write(json_page, api_v0.group(record))
    summaries = []
    for (release, component, arch), members in sorted(by_suite.items()):
        counts = {s: 0 for s in Status}
        for _, r in members:
            counts[r.status] += 1
        directory = paths.suite_dir(name, release, component, arch)
        summary = html.SuiteSummary(release, component, arch, counts, directory)
        _render_suite(out, env, name, summary, members, pages)
        summaries.append(summary)
    return summaries


def _served(attempt: Attempt | None, distro: str) -> dict[str, str]:
    """The v0 build files an attempt gets (kind -> site path): those with a safe store path."""
    if attempt is None:
        return {}
    return {
        kind: paths.api_build_file(distro, attempt.build_id, kind)
        for kind in paths.API_KINDS
        if kind in attempt.files and paths.store_rel(attempt.files[kind]) is not None
    }


def _render_suite(
    out: _Output,
    env: jinja2.Environment,
    profile: str,
    summary: html.SuiteSummary,
    members: list[tuple[str, GroupRecord]],
    pages: Mapping[str, str],
) -> None:
    """A suite's full list and one list per status."""
    index = f"{summary.dir}/index.html"
    pkg_dir = f"{summary.dir}/pkg/"
    rows = []
    for key, record in sorted(members, key=lambda kr: (kr[1].group.name, kr[0])):
        page = pages[key] + ".html"
        # the short link is the common case; the general one covers keys with odd parts
        if page.startswith(pkg_dir) and "/" not in page[len(pkg_dir) :]:
            link = "pkg/" + paths.url(page[len(pkg_dir) :])
        else:
            link = paths.href(index, page)
        rows.append(html.suite_row(record, link))
    cells = html.rows_html(rows)
    ctx = html.suite_context(profile, summary, index, cells, None)
    out.write(index, _page(env, "suite.html", ctx))
    for status, name in zip(Status, paths.STATUS_PAGES, strict=True):
        page = f"{summary.dir}/{name}.html"
        subset = [c for r, c in zip(rows, cells, strict=True) if r.status == status.value]
        ctx = html.suite_context(profile, summary, page, subset, status)
        out.write(page, _page(env, "suite.html", ctx))


def _profile_html(view: ProfileView, suites: list[html.SuiteSummary]) -> dict[str, Any]:
    p = view.profile
    return html.profile_context(p.name, p.distro, view.queue_length, view.last_pass, suites)


def _profile_json(view: ProfileView, suites: list[html.SuiteSummary]) -> dict[str, Any]:
    p = view.profile
    entries = [
        api_v0.suite_entry(
            s.release, s.component, s.architecture, s.counts, paths.url(f"{s.dir}/index.html")
        )
        for s in suites
    ]
    api = paths.url(paths.api_base(p.distro)) + "/"
    return api_v0.profile_entry(p.name, p.distro, view.queue_length, view.last_pass, api, entries)


def _page(env: jinja2.Environment, template: str, ctx: Mapping[str, Any]) -> bytes:
    try:
        text = env.get_template(template).render(ctx)
    except jinja2.TemplateError as e:  # an override template can be broken
        where = (
            f"{e.filename}:{e.lineno}" if isinstance(e, jinja2.TemplateSyntaxError) else template
        )
        raise SiteError(f"template {where}: {e.message or type(e).__name__}") from None
    return text.encode("utf-8", "surrogatepass")


def _copy_static(out: _Output, templates: Path | None) -> None:
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


class _Output:
    """Every write of a render: only changed bytes, atomically, never into ``builds/``.

    It also remembers every path the render produces, so that stale files
    (a group that left the state, an old build's v0 copy) can be pruned.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.stats = RenderStats()
        self.expected: set[str] = set()
        self.expected_dirs: set[str] = set()  # folders of v0 build files kept or served
        self._dirs: set[str] = set()
        self._missing: list[str] = []

    def _path(self, rel: str) -> str:
        parts = rel.split("/")
        if parts[0] in ("", paths.STORE) or ".." in parts or "\x00" in rel:
            raise SiteError(f"refusing to write {rel!r} (outside the site's own files)")
        return f"{self.root}/{rel}"

    def keep(self, *rels: str) -> None:
        """Files this render leaves as they are but that still belong to the site."""
        self.expected.update(rels)
        self.expected_dirs.update(r.rpartition("/")[0] for r in rels)

    def write(self, rel: str, data: bytes) -> bool:
        """Write ``data`` at ``rel`` unless the file already holds exactly it."""
        path = self._path(rel)
        self.expected.add(rel)
        if _same_content(path, data):
            self.stats.unchanged += 1
            return False
        self._replace(path, data)
        self.stats.written += 1
        return True

    def _replace(self, path: str, data: bytes) -> None:
        directory = os.path.dirname(path)
        tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp")
        try:
            if directory not in self._dirs:
                os.makedirs(directory, exist_ok=True)
                self._dirs.add(directory)
            # no fsync: the site is derived data, re-rendered from the state at will
            with open(tmp, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except OSError as e:
            raise SiteError(f"{path}: cannot write: {e.strerror or e}") from None

    def serve(self, store_rel: str, rel: str) -> None:
        """Publish a results store file at ``rel`` as plain bytes (``.gz`` decompressed).

        Store files are written once per build id, so a copy newer than its
        source is current and is not read again.
        """
        found = paths.store_file(self.root, store_rel)
        if found is None:
            self._missing.append(store_rel)
            return
        src, src_stat = found
        path = self._path(rel)
        self.expected.add(rel)
        self.expected_dirs.add(rel.rpartition("/")[0])
        try:
            if os.stat(path).st_mtime_ns >= src_stat.st_mtime_ns:
                self.stats.unchanged += 1
                return
        except FileNotFoundError:
            pass
        data = _read_store(src)
        if data is None:
            self.expected.discard(rel)
            self._missing.append(store_rel)
            return
        if not self.write(rel, data):
            os.utime(path)  # same bytes: mark the copy current so the next render skips it

    def prune(self, page_roots: Iterable[str], api_roots: Iterable[str], *, deep: bool) -> None:
        """Remove files this render did not produce under the given trees, then empty folders.

        A build's v0 folder is immutable once written (build ids are never
        reused), so only ``deep`` (full) renders look inside the folders of
        builds still referenced; any render removes the folders of builds
        no longer referenced. That keeps a small render from listing
        tens of thousands of folders.
        """
        for root in page_roots:
            self._prune_tree(root)
        for base in api_roots:
            builds = f"{base}/builds"
            self._prune_tree(base, skip=builds)
            self._prune_builds(builds, deep=deep)

    def _prune_tree(self, rel: str, skip: str | None = None) -> None:
        try:
            with os.scandir(f"{self.root}/{rel}") as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            return
        for e in entries:
            child = f"{rel}/{e.name}"
            if e.is_dir(follow_symlinks=False):
                if child != skip:
                    self._prune_tree(child)
                    with contextlib.suppress(OSError):
                        os.rmdir(e.path)  # only succeeds when empty
            elif child not in self.expected:
                os.unlink(e.path)
                self.stats.removed += 1

    def _prune_builds(self, rel: str, *, deep: bool) -> None:
        try:
            with os.scandir(f"{self.root}/{rel}") as it:
                entries = list(it)
        except (FileNotFoundError, NotADirectoryError):
            return
        for e in entries:
            child = f"{rel}/{e.name}"
            if not e.is_dir(follow_symlinks=False):
                if child not in self.expected:
                    os.unlink(e.path)
                    self.stats.removed += 1
            elif deep or child not in self.expected_dirs:
                self._prune_tree(child)
                with contextlib.suppress(OSError):
                    os.rmdir(e.path)

    def report_missing(self) -> None:
        if self._missing:
            log.warning(
                "site: %d results store file(s) missing or unreadable, e.g. builds/%s",
                len(self._missing), self._missing[0],
            )  # fmt: skip


def _same_content(path: str, data: bytes) -> bool:
    try:
        if os.stat(path).st_size != len(data):
            return False
        with open(path, "rb") as f:
            return f.read() == data
    except FileNotFoundError:
        return False
    except OSError as e:
        raise SiteError(f"{path}: cannot read: {e.strerror or e}") from None


def _read_store(src: str) -> bytes | None:
    """A store file's bytes, decompressed when it ends in ``.gz``, capped at MAX_SERVED."""
    try:
        fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
        with open(fd, "rb") as f:
            data = f.read(MAX_SERVED + 1)
        if src.endswith(".gz"):
            data = _gunzip(data, MAX_SERVED + 1)
    except (OSError, zlib.error) as e:
        log.warning("site: cannot read %s: %s", src, e)
        return None
    if len(data) > MAX_SERVED:
        data = data[:MAX_SERVED] + b"\n[rebuilder: cut at %d bytes]\n" % MAX_SERVED
    return data


def _gunzip(raw: bytes, limit: int) -> bytes:
    """Every gzip member of ``raw``, decompressed up to ``limit`` bytes.

    zlib directly rather than the gzip module: a tenth of the time on small
    logs, and the limit bounds a decompression bomb.
    """
    out: list[bytes] = []
    size = 0
    while raw.strip(b"\x00") and size < limit:
        d = zlib.decompressobj(wbits=31)  # 31: gzip header and trailer
        chunk = d.decompress(raw, limit - size)
        out.append(chunk)
        size += len(chunk)
        if not d.eof:
            if d.unconsumed_tail:
                break  # the limit is reached
            raise zlib.error("truncated gzip data")
        raw = d.unused_data
    return b"".join(out)
