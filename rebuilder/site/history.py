"""Change over time: status changes from each record's attempts, and the dashboard chart.

Two sources of history exist. Each :class:`GroupRecord` keeps its attempts,
so the status changes of a group (first build, GOOD -> BAD, BAD -> GOOD...)
are derived from them: :func:`steps` feeds the dashboard's regressions and
newly reproduced lists and the Atom/JSON feeds. The profile's pass summaries
(``ProfileState.passes``, one :func:`rebuilder.state.history_point` per pass) give the counts
over time, drawn by :func:`chart_svg` as inline SVG at render time, so the
chart needs no script.

>>> import datetime as dt
>>> from rebuilder.model import Artifact, Attempt, BuildGroup, GroupRecord, Status
>>> g = BuildGroup("hello", "1.0", "debian", "r", "main", "amd64", "https://mirror.example/b", ())
>>> def at(i, s): return Attempt(i, "1.0", s, dt.datetime(2024, 1, i), 60.0, "debian")
>>> r = GroupRecord(g, Status.BAD, [at(1, Status.GOOD), at(2, Status.GOOD), at(3, Status.BAD)])
>>> [(a.build_id, before) for a, before in steps(r)]
[(1, None), (3, 'GOOD')]
>>> change("p", r, "x.html", steps(r)[-1]).regression
True
>>> standing(r, steps(r))[0].build_id  # the BAD of build 3 still stands
3
"""

from __future__ import annotations

import datetime as _dt
import heapq
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

from markupsafe import Markup, escape

from rebuilder.model import Attempt, GroupRecord, Status, parse_time

_BROKEN = (Status.BAD.value, Status.FAIL.value)
_NAME = {s: s.value for s in Status}  # Enum.value is a slow property; this is a dict


class Change(NamedTuple):
    """One status change of one group: ``before`` is None for its first build."""

    at: _dt.datetime  # when the attempt that changed it finished (naive UTC)
    profile: str
    key: str
    name: str
    version: str
    suite: str  # release/component/architecture
    before: str | None
    after: str
    build_id: int
    page: str  # the group's page, site-relative

    @property
    def regression(self) -> bool:
        return self.before == Status.GOOD.value and self.after in _BROKEN

    @property
    def reproduced(self) -> bool:
        return self.after == Status.GOOD.value and self.before != Status.GOOD.value


Step = tuple[Attempt, str | None]  # an attempt that changed the status, and the one before


def steps(record: GroupRecord) -> list[Step]:
    """Every attempt of ``record`` whose status differs from the attempt before it."""
    out: list[Step] = []
    before: str | None = None
    for a in record.attempts:
        status = _NAME[a.status]
        if status != before:
            out.append((a, before))
        before = status
    return out


def end(a: Attempt) -> _dt.datetime:
    return a.started_at + _dt.timedelta(seconds=int(a.duration))


def change(profile: str, record: GroupRecord, page: str, step: Step) -> Change:
    g, (a, before) = record.group, step
    suite = f"{g.release}/{g.component}/{g.architecture}"
    return Change(
        end(a), profile, g.key, g.name, a.version, suite, before, _NAME[a.status], a.build_id,
        page,
    )  # fmt: skip


def standing(record: GroupRecord, found: Sequence[Step]) -> Step | None:
    """The change that still stands: the last one, if the group's verdict is still its result."""
    if not found or not record.seen:
        return None
    last = found[-1]
    a = last[0]
    if _NAME[a.status] != _NAME[record.status] or a.version != record.group.version:
        return None
    return last


class Newest:
    """The ``n`` newest changes offered (newest first from :meth:`items`).

    A Debian-sized profile has tens of thousands of changes and the site
    shows a few dozen: a change is only made into a :class:`Change` when it
    is new enough to be kept.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.total = 0  # how many were offered: a capped list says "n of total"
        self._heap: list[tuple[tuple[_dt.datetime, str, str, int], Change]] = []

    def offer(self, profile: str, record: GroupRecord, page: str, step: Step) -> None:
        self.total += 1
        key = (end(step[0]), profile, record.group.key, step[0].build_id)
        if len(self._heap) < self.n:
            heapq.heappush(self._heap, (key, change(profile, record, page, step)))
        elif key > self._heap[0][0]:
            heapq.heapreplace(self._heap, (key, change(profile, record, page, step)))

    def items(self) -> list[Change]:
        return [c for _, c in sorted(self._heap, key=lambda kc: kc[0], reverse=True)]


def newest(items: Iterable[Change], n: int) -> list[Change]:
    """The ``n`` newest changes, newest first, in a stable order."""
    return sorted(items, key=lambda c: (c.at, c.profile, c.key, c.build_id), reverse=True)[:n]


class Point(NamedTuple):
    at: _dt.datetime
    counts: dict[str, int]
    suites: dict[str, dict[str, int]]


def points(history: Sequence[Mapping[str, Any]]) -> list[Point]:
    """The usable points of a pass history, oldest first (malformed entries are skipped)."""
    out = []
    for h in history:
        try:
            at = parse_time(h["at"])
            counts = _counts(h["counts"])
            raw = h.get("suites") or {}
            suites = {str(k): _counts(v) for k, v in raw.items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        if at is not None:
            out.append(Point(at, counts, suites))
    out.sort(key=lambda p: p.at)
    return out


def _counts(d: Mapping[str, Any]) -> dict[str, int]:
    return {s.value: max(0, int(d.get(s.value, 0))) for s in Status}


# the chart's geometry, in SVG user units
_W, _H, _LEFT, _TOP, _BOTTOM = 640, 180, 44, 8, 22
_MAX_POINTS = 200
_MAX_LINES = 12


def chart_svg(history: Sequence[Mapping[str, Any]], title: str) -> Markup:
    """An inline SVG: shares of GOOD/BAD/FAIL/UNKWN over the passes, stacked, and one
    line per suite (GOOD share) when the points carry per-suite counts.

    Colours come from the stylesheet (classes), so the page needs no inline style.
    """
    pts = points(history)
    if len(pts) > _MAX_POINTS:  # keep the newest and a thinned past: the file stays small
        step = len(pts) / _MAX_POINTS
        pts = [pts[int(i * step)] for i in range(_MAX_POINTS - 1)] + [pts[-1]]
    label = escape(title)
    if not pts:
        return Markup("")
    xs = _xs(pts)
    plot_h = _H - _TOP - _BOTTOM
    parts = [
        f'<svg class="chart" viewBox="0 0 {_W} {_H}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{label}</title>'
    ]
    for pct in (0, 50, 100):
        y = _TOP + plot_h * (1 - pct / 100)
        parts.append(
            f'<line class="grid" x1="{_LEFT}" y1="{y:.1f}" x2="{_W}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{_LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{pct}%</text>'
        )
    lower = [0.0] * len(pts)
    for status in (Status.GOOD, Status.BAD, Status.FAIL, Status.UNKWN):
        upper = [lo + _share(p.counts, status.value) for lo, p in zip(lower, pts, strict=True)]
        parts.append(_band(xs, lower, upper, plot_h, status.value))
        lower = upper
    suites = sorted({s for p in pts for s in p.suites})[:_MAX_LINES]
    if len(suites) > 1:
        for i, suite in enumerate(suites):
            coords = [
                (x, _y(_share(p.suites[suite], "GOOD"), plot_h))
                for x, p in zip(xs, pts, strict=True)
                if suite in p.suites and any(p.suites[suite].values())
            ]
            if coords:
                d = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
                parts.append(
                    f'<polyline class="line l{i % 6}" points="{d}">'
                    f"<title>{escape(suite)}: GOOD share</title></polyline>"
                )
    first, last = pts[0], pts[-1]
    share = _share(last.counts, "GOOD")
    parts.append(
        f'<text class="axis" x="{_LEFT}" y="{_H - 6}">{first.at:%Y-%m-%d}</text>'
        f'<text class="axis" x="{_W}" y="{_H - 6}" text-anchor="end">{last.at:%Y-%m-%d} · '
        f"{100 * share:.1f}% GOOD</text></svg>"
    )
    return Markup("".join(parts))


def suite_legend(history: Sequence[Mapping[str, Any]]) -> list[tuple[str, str]]:
    """(css class, suite) of the lines :func:`chart_svg` draws, for a legend beside it."""
    suites = sorted({s for p in points(history) for s in p.suites})[:_MAX_LINES]
    if len(suites) < 2:
        return []
    return [(f"l{i % 6}", s) for i, s in enumerate(suites)]


def _xs(pts: Sequence[Point]) -> list[float]:
    width = _W - _LEFT
    t0, t1 = pts[0].at, pts[-1].at
    span = (t1 - t0).total_seconds()
    if len(pts) == 1:
        return [_LEFT + width / 2]
    if span <= 0:
        return [_LEFT + width * i / (len(pts) - 1) for i in range(len(pts))]
    return [_LEFT + width * (p.at - t0).total_seconds() / span for p in pts]


def _share(counts: Mapping[str, int], status: str) -> float:
    total = sum(counts.values())
    return counts.get(status, 0) / total if total else 0.0


def _y(share: float, plot_h: float) -> float:
    return _TOP + plot_h * (1 - share)


def _band(
    xs: Sequence[float], lower: Sequence[float], upper: Sequence[float], plot_h: float, cls: str
) -> str:
    if len(xs) == 1:  # one pass: a bar
        x = xs[0]
        y0, y1 = _y(upper[0], plot_h), _y(lower[0], plot_h)
        return (
            f'<rect class="c-{cls}" x="{x - 12:.1f}" y="{y0:.1f}" width="24" '
            f'height="{y1 - y0:.1f}"/>'
        )
    top = [f"{x:.1f},{_y(u, plot_h):.1f}" for x, u in zip(xs, upper, strict=True)]
    bottom = [f"{x:.1f},{_y(lo, plot_h):.1f}" for x, lo in zip(xs, lower, strict=True)]
    return f'<polygon class="c-{cls}" points="{" ".join(top + bottom[::-1])}"/>'
