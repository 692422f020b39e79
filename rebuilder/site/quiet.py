"""A render that walks no group: the next pass over a state in which nothing changed.

An hourly pass whose indexes did not move still renders: its dashboard shows the new
pass, retries fall due and the queue moves, the v0 and v1 dashboards carry the time. None
of that needs the groups, yet reading their parts from the render cache and walking them
costs seconds at Debian's size. So a render that walks them also keeps what those pages
are made of (:func:`summary`: the suites' counts, the dashboard's and the feeds' lists of
status changes, the counts of the v0 lines), in the render cache's small file. A render
told that nothing changed (``changed=set()``), with the code and the profiles of the last
render, makes those pages from it (:func:`restore`) and leaves every other file as the
last render left it: a walk would have made each of them again, byte for byte, as no
group changed and no part depends on the time (see :func:`summary`). As the walk checks
each cached part against its record, the summary is checked against the records (their
keys, versions, verdicts and attempt counts, :func:`walk.fingerprint`): a caller that
forgot a changed key costs a walk, not a stale site.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from rebuilder.model import Status
from rebuilder.site import cache, history, html
from rebuilder.site.walk import Collected, ProfileView, ProfileWalk, Suite, fingerprint

log = logging.getLogger(__name__)

_STATUS = {s.value: s for s in Status}


def summary(got: Collected, parts: Mapping[str, Mapping[str, cache.Part]]) -> dict[str, Any] | None:
    """What :func:`restore` needs of a render that walked every group (``got``, after the
    v0 lists are counted), as builtin types; None when a group's part depends on the
    render's time (v1 then shows the time as the package's ``last_seen``): every render
    must walk."""
    if any(part[0] is None for by_key in parts.values() for part in by_key.values()):
        return None
    return {
        "profiles": [
            [
                p.view.profile.name,
                p.view.profile.distro,
                [_suite(s.summary) for s in p.suites],
                [news.export() for news in _news(p)],
                p.fingerprint,
            ]
            for p in got.profiles
        ],
        "v0": {d: [[*k, n] for k, n in sorted(c.items())] for d, c in got.v0_counts.items()},
    }


def restore(doc: Mapping[str, Any], views: Sequence[ProfileView]) -> Collected | None:
    """What the pages that move with the time are made of, as the last render that walked
    the groups collected it (None: of other profiles, or not readable)."""
    try:
        profiles = doc["profiles"]
        if [(v.profile.name, v.profile.distro) for v in views] != [
            (name, distro) for name, distro, *_ in profiles
        ]:
            return None
        got = Collected()
        for view, (_, _, suites, lists, records) in zip(views, profiles, strict=True):
            if records != fingerprint(view.records):  # a key the caller did not name moved
                log.info("site: records not in the change-set changed: walking every group")
                return None
            p = ProfileWalk(view)
            p.suites = [Suite(_summary(s), []) for s in suites]
            for news, (total, kept) in zip(_news(p), lists, strict=True):
                news.restore(total, kept)
            got.profiles.append(p)
        got.v0_counts = {
            d: {(a, suite, st): int(n) for a, suite, st, n in rows} for d, rows in doc["v0"].items()
        }
    except (KeyError, TypeError, ValueError) as e:  # (a cache of another version)
        log.info("site: render cache unreadable (%s): walking every group", e)
        return None
    return got


def _news(p: ProfileWalk) -> list[history.Newest]:
    """The dashboard's lists of status changes, then the feed's."""
    return [news for _, news in p.news_lists()] + [p.changes]


def _suite(s: html.SuiteSummary) -> list[Any]:
    counts = {st.value: n for st, n in s.counts.items()}
    return [s.release, s.component, s.architecture, counts, s.dir, dict(s.causes)]


def _summary(row: Sequence[Any]) -> html.SuiteSummary:
    release, component, arch, counts, folder, causes = row
    by_status = {s: 0 for s in Status} | {_STATUS[k]: int(n) for k, n in counts.items()}
    return html.SuiteSummary(release, component, arch, by_status, folder, dict(causes))
