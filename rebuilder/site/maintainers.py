"""Maintainer pages: a page per maintainer with its feeds and badge, the index of them all,
and the search index's entries for them.

At Debian's size (a thousand maintainers, each page with two feeds of up to 100 status
changes) the pages are seconds of work: a full render has them made by forked processes
while it writes the suite lists, the v0 trees, the search index and the feeds, then makes
those they have not taken yet (they are handed out one at a time). They are started once
every group page is written, since each links to its maintainer's groups.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Mapping, Sequence

from rebuilder.model import Status
from rebuilder.site import badges, feeds, forks, history, html, paths, search
from rebuilder.site.forks import Work
from rebuilder.site.output import Output, made_from
from rebuilder.site.walk import FEED_ITEMS, Collected, Item, Settings, render_page, shown_row

PARALLEL_MIN = 200  # maintainer pages worth forking worker processes for
MAX_WORKERS = 2  # beside the driver, which goes on with the suite lists and the rest

Maintainer = tuple[str, list[tuple[str, str, Item]]]  # key, (name as written, profile, item)


def start(out: Output, cfg: Settings, got: Collected) -> tuple[Work, int, Callable[[], None]]:
    """The maintainer pages to redo (those of a changed group; all in a full render) as
    one piece of work that any number of processes run at once (each makes the pages no
    other has taken: :class:`rebuilder.site.forks.Share`), how many processes they are
    worth beside the driver (1: none, it makes them itself), and the function that
    writes the index of maintainers once they are done. Their search entries go into
    ``got`` now."""
    index, redo = [], []
    for key, items in sorted(got.maintainers.items()):
        page = paths.maintainer_page(key)
        names = sorted({m for m, _, _ in items})
        statuses = [it.status for _, _, it in items]
        attention = statuses.count(Status.BAD) + statuses.count(Status.FAIL)
        if cfg.touched is None or key in cfg.touched.maintainers:
            redo.append((key, items))
        else:
            out.keep([page, *_files(key).values()])
        url = paths.url(page)
        index.append(html.MaintainerLink(names[0], url, len(items), attention))
        got.entries.extend(search.maintainer_entries(names, key, url, len(items), attention))
    index.sort(key=lambda m: (-m.attention, m.name.lower(), m.url))
    share = forks.Share(len(redo))

    def pages(out: Output) -> None:
        _render_pages(out, cfg=cfg, redo=(redo[i] for i in share.take()))

    def write_index() -> None:
        ctx = html.maintainers_context(index)
        out.write("maintainers.html", render_page(cfg.env, "maintainers.html", ctx))

    return pages, forks.workers(len(redo), PARALLEL_MIN, MAX_WORKERS), write_index


def _files(key: str) -> dict[str, str]:
    return {
        "feed": paths.maintainer_feed(key, ".atom"),
        "json_feed": paths.maintainer_feed(key, ".json"),
        "badge": paths.maintainer_badge(key, ".svg"),
        "shields": paths.maintainer_badge(key, ".json"),
    }


def _render_pages(out: Output, *, cfg: Settings, redo: Iterable[Maintainer]) -> None:
    for key, items in redo:
        page = paths.maintainer_page(key)
        names = sorted({m for m, _, _ in items})
        counts = {s: 0 for s in Status}
        for _, _, it in items:
            counts[it.status] += 1
        files = _files(key)
        _feeds_and_badge(out, cfg, names[0], page, items, counts, files)
        rows = html.maintainer_rows([_row(p, it) for _, p, it in items])
        links = {k: paths.href(page, f) for k, f in files.items()}
        ctx = html.maintainer_context(names, page, rows, counts, links)
        out.write(page, render_page(cfg.env, "maintainer.html", ctx))


def _feeds_and_badge(
    out: Output,
    cfg: Settings,
    name: str,
    page: str,
    items: Sequence[tuple[str, str, Item]],
    counts: Mapping[Status, int],
    files: Mapping[str, str],
) -> None:
    """A maintainer's feeds (the status changes of their groups) and badge (their share
    of GOOD groups), as a profile's."""
    changes = history.Newest(FEED_ITEMS)
    for _, profile, it in items:
        for step in history.steps(it.record):
            changes.offer(profile, it.record, it.page, step)
    found = changes.items()
    title = f"rebuilder: {name}"
    # an empty feed's time comes from its groups, not the render's: a render that does not
    # touch the maintainer leaves the feed as it is, and a full one must make the same
    first = [it.record.first_seen for _, _, it in items if it.record.first_seen is not None]
    updated = max(first, default=_dt.datetime(1970, 1, 1))
    # a change to a group that moves no status (a rebuild with the same verdict, a new
    # version not built yet) leaves its maintainers' feeds as they were: not made again
    source = _feed_source(title, found, files, page, cfg.site_url, updated)
    out.write_made(files["feed"], source, lambda: feeds.atom(
        title, found, feed=files["feed"], page=page, site_url=cfg.site_url, updated=updated
    ))  # fmt: skip
    out.write_made(files["json_feed"], source, lambda: feeds.json_feed(
        title, found, feed=files["json_feed"], page=page, site_url=cfg.site_url
    ))  # fmt: skip
    total = sum(counts.values())
    svg, endpoint = badges.share_badges(counts[Status.GOOD] / total if total else None)
    out.write(files["badge"], svg)
    out.write(files["shields"], endpoint)


def _feed_source(
    title: str,
    found: Sequence[history.Change],
    files: Mapping[str, str],
    page: str,
    site_url: str,
    updated: _dt.datetime,
) -> bytes:
    """A digest of what a maintainer's two feeds are made of (see Output.write_made)."""
    made = [c.plain() for c in found]
    return made_from((title, sorted(files.items()), page, site_url, updated.isoformat(), made))


def _row(profile: str, it: Item) -> tuple[html.Row, Status]:
    g = it.record.group
    where = f"{g.release}/{g.component}/{g.architecture}"
    extra = f"<td>{html.e(profile)}</td><td>{html.e(where)}</td>"
    # (its link from m/, the maintainer pages' folder)
    return shown_row(it)._replace(url="../" + paths.url(it.page), extra=extra), it.status
