"""Pages built from every profile at once: rebuilderd's v0 and v1 trees, maintainer
pages, feeds, badges, the dashboard and its JSON, the static files."""

from __future__ import annotations

import datetime as _dt
import logging
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from itertools import compress
from operator import itemgetter
from pathlib import Path
from typing import Any

from rebuilder import _fs
from rebuilder.api import v0
from rebuilder.model import Status
from rebuilder.site import api_v0, api_v1, badges, cache, feeds, history, html, paths, queue, splice
from rebuilder.site.groups import status_badge
from rebuilder.site.output import Output
from rebuilder.site.walk import (
    FEED_ITEMS,
    Collected,
    ListPatch,
    ProfileView,
    Settings,
    render_page,
)
from rebuilder.state import history_point

log = logging.getLogger(__name__)


def render_v0(out: Output, got: Collected, now: _dt.datetime, public_keys: Sequence[str]) -> None:
    """Each distribution's v0 tree, and one per architecture with its lists only: the
    clients that read those (debian-repro-status, pacman-bintrans) fetch no build files,
    and a ``builds`` link there would be a full copy of every build's files on a host that
    copies links (GitHub Pages). A render that walked no group (``got.pkgs`` empty) writes
    the dashboards from the last render's counts and leaves the lists as they are; an
    incremental one patches the lists the last render wrote (:mod:`splice`)."""
    keys = api_v0.dumps(api_v0.public_keys(public_keys))
    for distro in sorted(got.pkgs.keys() | got.v0_counts.keys()):
        base = paths.api_base(distro)
        lists: Mapping[str | None, _fs.Data | None] | None = None
        if distro in got.pkgs:
            patch = None if got.v0_patch is None else got.v0_patch.get(distro)
            lists = None if patch is None else _patched(out, got, distro, patch)
            if lists is None:
                lines = got.pkgs[distro] if patch is None else _all_lines(got, patch)
                lists = _made(got, distro, lines)
        counts, queue = got.v0_counts[distro], got.queues[distro]
        _write_v0(out, got, base, _list(lists, None), api_v0.dashboard(counts, queue, now), keys)
        for arch in sorted({a for a, _, _ in counts}):
            arch_base = paths.arch_api_base(distro, arch)
            if arch_base is None:
                log.warning("site: no per-architecture tree for an architecture named %r", arch)
                continue
            board = api_v0.dashboard(counts, queue, now, arch)
            _write_v0(out, got, arch_base, _list(lists, arch), board, keys)


def _made(got: Collected, distro: str, lines: list[api_v0.PkgLine]) -> dict[str | None, bytes]:
    """The lists of a distribution made from all its lines (counted, and indexed for the
    next render to patch)."""
    ordered = sorted(lines)
    texts = list(map(itemgetter(api_v0.LINE), ordered))
    multi = splice.repeated(texts)
    if multi:  # (the same group in overlapping profiles)
        ordered = api_v0.unique_lines(ordered)
        texts = list(map(itemgetter(api_v0.LINE), ordered))
    got.v0_counts[distro] = api_v0.line_counts(ordered)
    _index(got, distro, multi)
    archs = list(map(itemgetter(api_v0.ARCH), ordered))
    # one C-level pass per architecture (a few), not a Python loop over the lines
    lists: dict[str | None, bytes] = {None: v0.pkgs_list(texts)}
    for arch in set(archs):
        lists[arch] = v0.pkgs_list(list(compress(texts, map(arch.__eq__, archs))))
    return lists


def _all_lines(got: Collected, patch: ListPatch) -> list[api_v0.PkgLine]:
    log.info("site: the v0 lists are not as the last render left them: made anew")
    return [line for blob in patch.blobs for line in api_v0.lines_of(got.blob(blob))]


def _patched(
    out: Output, got: Collected, distro: str, patch: ListPatch
) -> dict[str | None, _fs.Data | None] | None:
    """A distribution's lists, the last render's patched with the lines of the groups
    redone (None for a list left as it was); None when they are not as it left them."""
    index = got.v0_index.get(distro)
    data = splice.read_same(out.root, f"{paths.api_base(distro)}/pkgs/list", got.list_files)
    if index is None or data is None:
        return None
    multi = dict(index["multi"])
    layout, key = api_v0.PKGS_LIST, api_v0.line_key
    removed, added = _keyed(patch.removed), _keyed(patch.added)
    done = splice.patch(layout, data, key, removed, added, multi, head=b"[\n")
    if done is None:
        return None
    lists: dict[str | None, _fs.Data | None] = {None: done.pieces}
    line = {t[api_v0.LINE]: t for t in (*patch.removed, *patch.added)}
    last = Counter({(a, suite, st): n for a, suite, st, n in index["counts"]})
    counts = last.copy()
    by_arch: dict[str, tuple[list[splice.Keyed], list[splice.Keyed]]] = defaultdict(
        lambda: ([], [])
    )
    for side, sign, moved in ((0, -1, done.dropped), (1, 1, done.came)):
        for k, text in moved:
            _, suite, status, arch, _ = line[text]
            counts[arch, suite, status] += sign
            by_arch[arch][side].append((k, text))
    for arch in sorted({a for a, _, _ in counts} | by_arch.keys()):
        arch_base = paths.arch_api_base(distro, arch)
        if arch_base is None:
            continue
        if arch not in by_arch:
            lists[arch] = None  # (nothing of it moved)
            continue
        own = splice.read_same(out.root, f"{arch_base}/pkgs/list", got.list_files)
        if own is None and not any(a == arch for a, _, _ in last):
            own = layout.empty  # (a list new to this render)
        mine = (
            None if own is None else splice.patch(layout, own, key, *by_arch[arch], {}, head=b"[\n")
        )
        if mine is None:
            return None
        lists[arch] = mine.pieces
    got.v0_counts[distro] = +counts  # (the architectures and suites left with a line)
    _index(got, distro, multi)
    return lists


def _keyed(lines: Sequence[api_v0.PkgLine]) -> list[splice.Keyed]:
    """Lines as :func:`splice.patch` takes them: each with its key (``api_v0.line_key``)."""
    return [((sort, line), line) for sort, _, _, _, line in lines]


def _index(got: Collected, distro: str, multi: dict[bytes, int]) -> None:
    """What the next render patches a distribution's lists from, but the files: the
    lines given more than once, and the counts."""
    counts = sorted(got.v0_counts[distro].items())
    got.v0_index[distro] = {"multi": multi, "counts": [[*k, n] for k, n in counts]}


def _list(lists: Mapping[str | None, _fs.Data | None] | None, arch: str | None) -> _fs.Data | None:
    return None if lists is None else lists.get(arch)


def _write_v0(
    out: Output,
    got: Collected,
    base: str,
    data: _fs.Data | None,
    dashboard: dict[str, Any],
    keys: bytes,
) -> None:
    rel = f"{base}/pkgs/list"
    if data is not None:
        out.write(rel, data)
    elif rel in got.list_files:  # (None: the last render's list stands)
        out.keep([rel])
    if rel in out.expected:  # what the next render checks before it patches the list
        got.list_files_now[rel] = splice.identity(out.root, rel)
    out.write(f"{base}/dashboard", api_v0.dumps(dashboard))
    out.write(f"{base}/public-keys", keys)
    for name in ("pkgs/list", "dashboard", "public-keys"):  # .json names beside them
        out.symlink(f"{base}/{name}.json", name.rpartition("/")[2])


def render_queues(
    out: Output,
    got: Collected,
    views: Sequence[ProfileView],
    now: _dt.datetime,
    public_keys: Sequence[str],
    queues: tuple[cache.Memo, cache.Memo] | None = None,
) -> int:
    """Each distribution's build queue (v0's and v1's: ``queues`` holds the last render's
    memo of it, and the one of this render, see :mod:`queue`) and v1's dashboard and
    keys: made of the views alone, with no walk. (Written before it: a render then
    forks its lists, and every object the driver touches after the fork costs it a copy
    of its memory page.) Returns how many entries this render's memo holds that the last
    one's lacks (:func:`queue.write_queue`)."""
    new = 0
    for distro in sorted({v.profile.distro for v in views}):
        new += queue.write_queue(out, distro, got.jobs[distro], now, *(queues or ({}, None)))
        records = [r for v in views if v.profile.distro == distro for r in v.records.values()]
        api_v1.write_meta(out, distro, records, got.queues[distro], now, public_keys)
    return new


def render_v1(out: Output, got: Collected) -> None:
    """Each distribution's list of v1 packages (rebuildctl's), from the walk: an
    incremental render patches the last render's (:func:`api_v1.patch_packages`)."""
    for distro in sorted(got.pkgs):
        rel = f"{paths.api_v1_base(distro)}/packages/binary"
        patch = None if got.v1_patch is None else got.v1_patch.get(distro)
        index = None
        if patch is not None and distro in got.v1_index:
            data = splice.read_same(out.root, rel, got.list_files)
            if data is not None:
                last = got.v1_index[distro]
                index = api_v1.patch_packages(out, distro, data, last, patch.removed, patch.added)
        if index is None:
            rows = got.v1[distro]
            if patch is not None:
                log.info("site: the v1 list cannot be patched: made anew")
                rows = [row for blob in patch.blobs for row in api_v1.rows_of(got.blob(blob))]
            gone = None if got.gone_v1 is None else got.gone_v1[distro]
            index = api_v1.write_packages(out, distro, rows, got.fresh_v1[distro], gone)
        got.v1_index[distro] = index
        got.list_files_now[rel] = splice.identity(out.root, rel)


def arch_trees(got: Collected) -> dict[str, list[tuple[str, str]]]:
    """(architecture, v0 base) of each distribution's per-architecture trees (once
    :func:`render_v0` counted the lines)."""
    out: dict[str, list[tuple[str, str]]] = {}
    for distro, counts in got.v0_counts.items():
        archs = sorted({a for a, _, _ in counts})
        out[distro] = [(a, b) for a in archs if (b := paths.arch_api_base(distro, a))]
    return out


def render_feeds(out: Output, cfg: Settings, got: Collected) -> None:
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


def _atom(cfg: Settings, title: str, items: list[history.Change], target: str) -> bytes:
    return feeds.atom(
        title, items, feed=target, page="index.html", site_url=cfg.site_url, updated=cfg.now
    )


def _json_feed(cfg: Settings, title: str, items: list[history.Change], target: str) -> bytes:
    return feeds.json_feed(title, items, feed=target, page="index.html", site_url=cfg.site_url)


def render_status_badges(out: Output) -> None:
    """The four package badges, which every package's badge links to."""
    for status in Status:
        svg, endpoint = badges.status_badges(status.value)
        out.write(status_badge(status.value) + ".svg", svg)
        out.write(status_badge(status.value) + ".json", endpoint)


def render_badges(out: Output, got: Collected) -> None:
    for p in got.profiles:
        counts = p.counts
        total = sum(counts.values())
        share = counts[Status.GOOD] / total if total else None
        svg, endpoint = badges.share_badges(share)
        out.write(paths.profile_badge(p.view.profile.name, ".svg"), svg)
        out.write(paths.profile_badge(p.view.profile.name, ".json"), endpoint)


def render_dashboard(
    out: Output, cfg: Settings, got: Collected, public_keys: Sequence[str]
) -> None:
    blocks, entries = [], []
    arch_bases = arch_trees(got)
    for p in got.profiles:
        view, prof = p.view, p.view.profile
        hist = history.points(view.history or [history_point(cfg.now, view.records.values())])
        chart = history.chart_svg(hist, f"{prof.name}: share of each status over time")
        archs = arch_bases.get(prof.distro, [])
        summaries = [s.summary for s in p.suites]
        trends = history.trends(hist)
        lists = {f"{s.release}/{s.component}/{s.architecture}": s.dir for s in summaries}
        trends["suites"] = [
            t._replace(url=paths.url(f"{lists[t.name]}/index.html")) if t.name in lists else t
            for t in trends["suites"]
        ]
        blocks.append(
            html.profile_context(
                prof.name, prof.distro, view.queue_length, view.last_pass, summaries, chart,
                trends,
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
                history.cause_history(hist),
            )
        )
    page = html.index_context(blocks, signed=bool(public_keys))
    out.write("index.html", render_page(cfg.env, "index.html", page))
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


def render_viewer(out: Output, cfg: Settings) -> None:
    """The one page every build's log and diffoscope text is read through."""
    out.write(paths.VIEWER, render_page(cfg.env, "text.html", html.viewer_context()))


def copy_static(out: Output, templates: Path | None) -> None:
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
