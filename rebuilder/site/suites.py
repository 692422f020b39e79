"""Suite lists: every status and each one, by name and by date, paged; per cause; and
the suite's JSON shard."""

from __future__ import annotations

from collections import defaultdict

from rebuilder.model import Status
from rebuilder.site import api_v0, html, paths
from rebuilder.site.output import Output
from rebuilder.site.walk import (
    ROW_BUILT,
    ROW_NAME,
    ROW_URL,
    STATUS_FILE,
    ProfileWalk,
    Settings,
    Suite,
    render_page,
)


def render_suites(out: Output, cfg: Settings, p: ProfileWalk) -> None:
    """A profile's suite lists: those a changed group is on (every one in a full render)."""
    name = p.view.profile.name
    for suite in p.suites:
        s = suite.summary
        if cfg.touched is None or cfg.touched.has_suite(name, s):
            _render_suite(out, cfg, name, suite)
        else:
            out.keep(f"{s.dir}/{f}" for f in _suite_files(suite))


def _list_pages(suite: Suite) -> list[tuple[str, str, Status | None, int, int]]:
    """(file name, sort, status, page, pages) of every list page of a suite."""
    counts = suite.summary.counts
    out = []
    for sort in paths.SORTS:
        for status in (None, *Status):
            n = suite.summary.total if status is None else counts.get(status, 0)
            pages = html.pages_of(n)
            st = STATUS_FILE[status] if status else None
            out += [
                (paths.list_page(st, sort, i), sort, status, i, pages) for i in range(1, pages + 1)
            ]
    return out


def _cause_pages(suite: Suite) -> list[tuple[str, str, int, int]]:
    """(file name, cause, page, pages) of the lists of the BAD groups of each cause."""
    out = []
    for cause, n in sorted(suite.summary.causes.items()):
        pages = html.pages_of(n)
        out += [(paths.cause_page(cause, i), cause, i, pages) for i in range(1, pages + 1)]
    return out


def _suite_files(suite: Suite) -> list[str]:
    pages = [name for name, *_ in _list_pages(suite)] + [n for n, *_ in _cause_pages(suite)]
    return [*pages, "index.json"]


def _render_suite(out: Output, cfg: Settings, profile: str, suite: Suite) -> None:
    """A suite's lists: every status and each one, by name and by date, paged; and its JSON."""
    s = suite.summary
    items = sorted(suite.items, key=lambda it: (it.row[ROW_NAME], it.row[ROW_URL]))
    by_name = [(it, it.cell) for it in items]
    by_date = [x for x in by_name if x[0].row[ROW_BUILT]]
    by_date.sort(key=lambda x: x[0].row[ROW_BUILT], reverse=True)
    by_date += [x for x in by_name if not x[0].row[ROW_BUILT]]  # never built: last
    lists: dict[tuple[str, Status | None], list[str]] = {}
    for sort, rows in (("name", by_name), ("date", by_date)):
        lists[sort, None] = [h for _, h in rows]
        for status in Status:
            lists[sort, status] = []
        for it, h in rows:
            lists[sort, it.status].append(h)
    for name, sort, only, n, pages in _list_pages(suite):
        chunk = lists[sort, only][(n - 1) * html.PAGE_SIZE : n * html.PAGE_SIZE]
        ctx = html.list_context(profile, s, f"{s.dir}/{name}", chunk, only, sort, n, pages)
        out.write(f"{s.dir}/{name}", render_page(cfg.env, "suite.html", ctx))
    by_cause: dict[str, list[str]] = defaultdict(list)
    for it, h in by_name:
        for c in it.causes:
            by_cause[c].append(h)
    for name, cause, n, pages in _cause_pages(suite):
        chunk = by_cause[cause][(n - 1) * html.PAGE_SIZE : n * html.PAGE_SIZE]
        ctx = html.list_context(
            profile, s, f"{s.dir}/{name}", chunk, Status.BAD, "name", n, pages, cause
        )
        out.write(f"{s.dir}/{name}", render_page(cfg.env, "suite.html", ctx))
    shard_rows = [it.shard for it in items]
    shard = api_v0.suite_shard(
        profile, s.release, s.component, s.architecture, s.counts, shard_rows
    )
    out.write(f"{s.dir}/index.json", shard)
