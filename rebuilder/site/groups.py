"""Group pages: a group's HTML page and JSON, its badge links, and its attempts' build
files (plain copies, readable views, the wrapped diffoscope report, v1 build records).

A group page is made from its record alone, so a full render's thousands are started
before the walk over the records, split between forked processes that inherit them (only
the list of files each wrote comes back): the walk, seconds at Debian's size, no longer
leaves a core idle.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from rebuilder.model import Attempt, GroupRecord, Status
from rebuilder.site import api_v0, api_v1, forks, history, html, links, paths
from rebuilder.site.forks import Work
from rebuilder.site.output import Output, Transform
from rebuilder.site.walk import (
    NAME,
    ProfileView,
    Settings,
    page_job,
    render_page,
)

PARALLEL_MIN = 2000  # group pages worth forking worker processes for
MAX_WORKERS = 4


def work(cfg: Settings, views: Sequence[ProfileView]) -> tuple[list[Work], bool]:
    """The group pages to make (the changed groups', every group's in a full render) as
    pieces of work, and whether each is worth a forked process of its own
    (:func:`rebuilder.site.forks.write`): many are split in one piece per core. (An
    incremental render's hundred pages beside its walk: no faster, at more CPU.)"""
    todo = [
        (view, key)
        for view in views
        for key in sorted(view.records)
        if cfg.changed is None or key in cfg.changed
    ]
    workers = forks.workers(len(todo), PARALLEL_MIN, MAX_WORKERS)
    pieces: list[Work] = [
        functools.partial(_render_groups, cfg=cfg, todo=todo, part=part)
        for part in forks.chunks(len(todo), workers)
    ]
    return pieces, workers > 1


def _render_groups(
    out: Output, *, cfg: Settings, todo: Sequence[tuple[ProfileView, str]], part: range
) -> None:
    for i in part:
        view, key = todo[i]
        job = page_job(view.profile.name, view.profile.distro, key, view.records[key])
        _render_group(out, cfg, *job)


def _render_group(
    out: Output,
    cfg: Settings,
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
            _serve_build(out, record, a, mine)
            v0[a.build_id] = mine
    if attempt is not None and served:
        api_v1.write_build(out, record, attempt, served)
    suite_page = paths.suite_dir(profile, g.release, g.component, g.architecture) + "/index.html"
    distro_page = links.package_page(
        cfg.package_pages, g.distro, name=g.name, version=g.version, release=g.release,
        component=g.component, architecture=g.architecture,
    )  # fmt: skip
    if record.seen:  # the page's badge and JSON before the page that links them
        target = status_badge(NAME[record.status])
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
    out.write(page, render_page(cfg.env, "group.html", ctx))


def _serve_build(
    out: Output, record: GroupRecord, attempt: Attempt, served: dict[str, str]
) -> None:
    """Publish one attempt's build files: the plain v0 copies and diffoscope's wrapped
    report (text files are read through the one viewer page, which loads the results
    store's file). Those whose store file is missing are dropped from ``served``."""
    for kind in [k for k in served if k in attempt.files]:
        alias = paths.ALIASES.get(kind, "")
        if not out.serve(attempt.files[kind], _outputs(record, attempt, kind, served)):
            for name in (kind, f"{kind}.html", alias):
                served.pop(name, None)
        elif alias in served:
            # a hard link, not a symlink: no inode of its own to allocate, which costs the
            # file system some ten times a link (a tenth of a millisecond: seconds in a
            # full render's 28,000 attestations), and no symlink for a server to refuse
            out.link(served[alias], served[kind])
    for kind in paths.VIEWS:  # the viewer must not be sent to a store file that is gone
        if f"{kind}.html" in served and kind not in served:  # (a served copy was read)
            rel = attempt.files[kind]
            if paths.store_file(out.root, rel) is None:
                out.missing.append(rel)
                del served[f"{kind}.html"]


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


def _search(record: GroupRecord) -> str:
    # a build id's files are shared by every profile holding the group: the way back is the
    # search for its name (which lists it in each), not one profile's page
    return "index.html?q=" + quote(record.group.name, safe="")


def _outputs(
    record: GroupRecord,
    attempt: Attempt,
    kind: str,
    served: Mapping[str, str],
) -> list[tuple[str, Transform | None]]:
    """Where a store file goes: its plain copy, or diffoscope's report wrapped in a page
    that names the package and links back to its page."""
    target = served[kind]
    if kind != "diffoscope_html":
        return [(target, None)]
    name = f"{record.group.name} {attempt.version}"
    title = f"diffoscope: {name} (build {attempt.build_id})"
    root = paths.root_prefix(target)
    back = (name, root + _search(record))
    return [(target, functools.partial(html.report_page, title=title, back=back, root=root))]


def status_badge(status: str) -> str:
    return f"{paths.STATUS_BADGES}/{status}"
