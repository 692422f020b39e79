"""Change over time: status changes from each record's attempts, and the dashboard charts.

Two sources of history exist. Each :class:`GroupRecord` keeps its attempts,
so the status changes of a group (first build, GOOD -> BAD, BAD -> GOOD...)
are derived from them: :func:`steps` feeds the dashboard's regressions and
newly reproduced lists and the Atom/JSON feeds. The profile's pass summaries
(``ProfileState.passes``, one :func:`rebuilder.state.history_point` per pass) give the counts
over time, drawn as inline SVG at render time (no script): :func:`chart_svg` stacks the
statuses' shares, :func:`trends` gives each suite and each cause of BAD a small line of
its own, and :func:`cause_history` gives the cause counts to ``index.json``.

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

from rebuilder import causes
from rebuilder.model import Attempt, GroupRecord, Status, format_time, parse_time

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

    def plain(self) -> tuple[Any, ...]:
        """Its fields as builtin types (``at`` in ISO format): what is kept or digested."""
        return (self.at.isoformat(), *self[1:])

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


_EPOCH = _dt.datetime(1970, 1, 1)
_US = _dt.timedelta(microseconds=1)


def end_us(a: Attempt) -> int:
    """:attr:`Attempt.ended_at` in microseconds since 1970: an int, cheap to keep and to
    compare."""
    return (a.ended_at - _EPOCH) // _US


def change(profile: str, record: GroupRecord, page: str, step: Step) -> Change:
    g, (a, before) = record.group, step
    suite = f"{g.release}/{g.component}/{g.architecture}"
    return Change(
        a.ended_at, profile, g.key, g.name, a.version, suite, before, _NAME[a.status], a.build_id,
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


ANY = -(1 << 63)  # an end (µs) older than any time can have: every change may be kept


class Newest:
    """The ``n`` newest changes offered (newest first from :meth:`items`).

    A Debian-sized profile has tens of thousands of changes and the site
    shows a few dozen: a change is only made into a :class:`Change` when it
    is new enough to be kept.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.total = 0  # how many were offered: a capped list says "n of total"
        self._heap: list[tuple[tuple[int, str, str, int], Change]] = []

    def wants(self, at_us: int) -> bool:
        """Whether a change that ended at ``at_us`` (:func:`end_us`) may be kept: one
        that may not is only counted (:meth:`skip`), never made into a Change."""
        return at_us >= self.least()

    def least(self) -> int:
        """The oldest end (µs) a change may have to be kept (any, while the list is not full)."""
        return ANY if len(self._heap) < self.n else self._heap[0][0][0]

    def skip(self, n: int) -> None:
        self.total += n

    def offer(self, profile: str, record: GroupRecord, page: str, step: Step) -> None:
        self.total += 1
        key = (end_us(step[0]), profile, record.group.key, step[0].build_id)
        if len(self._heap) < self.n:
            heapq.heappush(self._heap, (key, change(profile, record, page, step)))
        elif key > self._heap[0][0]:
            heapq.heapreplace(self._heap, (key, change(profile, record, page, step)))

    def items(self) -> list[Change]:
        return [c for _, c in sorted(self._heap, key=lambda kc: kc[0], reverse=True)]

    def export(self) -> tuple[int, list[tuple[Any, ...]]]:
        """How many were offered and what is kept, as builtin types (the render cache's):
        :meth:`restore` makes the same list again."""
        return self.total, [(key, c.plain()) for key, c in self._heap]

    def restore(self, total: int, kept: Sequence[tuple[Any, ...]]) -> None:
        """Be the list :meth:`export` gave ``total`` and ``kept``."""
        self.total = int(total)
        self._heap = [(tuple(k), Change(_dt.datetime.fromisoformat(c[0]), *c[1:])) for k, c in kept]
        heapq.heapify(self._heap)


def newest(items: Iterable[Change], n: int) -> list[Change]:
    """The ``n`` newest changes, newest first, in a stable order."""
    return sorted(items, key=lambda c: (c.at, c.profile, c.key, c.build_id), reverse=True)[:n]


class Point(NamedTuple):
    at: _dt.datetime
    counts: dict[str, int]
    suites: dict[str, dict[str, int]]
    causes: dict[str, int] | None  # BAD groups by cause; None: stored before causes were


def points(history: Sequence[Mapping[str, Any]]) -> list[Point]:
    """The usable points of a pass history, oldest first (malformed entries are skipped)."""
    out = []
    for h in history:
        try:
            at = parse_time(h["at"])
            counts = _counts(h["counts"])
            raw = h.get("suites") or {}
            suites = {str(k): _counts(v) for k, v in raw.items()}
            found = h.get("causes")
            by_cause = None if found is None else {str(k): max(0, int(v)) for k, v in found.items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            continue
        if at is not None:
            out.append(Point(at, counts, suites, by_cause))
    out.sort(key=lambda p: p.at)
    return out


def _counts(d: Mapping[str, Any]) -> dict[str, int]:
    return {s: max(0, int(d.get(s, 0))) for s in _STATUSES}


_STATUSES = tuple(s.value for s in Status)  # (a pass history holds thousands of counts)


def _thin(pts: Sequence[Point], n: int) -> list[Point]:
    """At most ``n`` points: the newest and an evenly thinned past (the page stays small)."""
    if len(pts) <= n:
        return list(pts)
    step = len(pts) / n
    return [pts[int(i * step)] for i in range(n - 1)] + [pts[-1]]


# the chart's geometry, in SVG user units
_W, _H, _LEFT, _TOP, _BOTTOM = 640, 180, 44, 8, 22
_MAX_POINTS = 200


def chart_svg(pts: Sequence[Point], title: str) -> Markup:
    """An inline SVG: shares of GOOD/BAD/FAIL/UNKWN over the passes, stacked.

    Suites and causes get a small line each (:func:`trends`), not a line in this chart:
    suites with close shares would draw one line over the other.
    Colours come from the stylesheet (classes), so the page needs no inline style.
    """
    pts = _thin(pts, _MAX_POINTS)
    label = escape(title)
    if not pts:
        return Markup("")
    xs = _xs([p.at for p in pts], _LEFT, _W - _LEFT)
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
    first, last = pts[0], pts[-1]
    share = _share(last.counts, "GOOD")
    parts.append(
        f'<text class="axis" x="{_LEFT}" y="{_H - 6}">{first.at:%Y-%m-%d}</text>'
        f'<text class="axis" x="{_W}" y="{_H - 6}" text-anchor="end">{last.at:%Y-%m-%d} · '
        f"{100 * share:.1f}% GOOD</text></svg>"
    )
    return Markup("".join(parts))


class Trend(NamedTuple):
    """One small line of the dashboard: a suite's GOOD share, or a cause's share of the BAD
    groups, after each pass. Each line is scaled to its own range (``low``..``high``), so
    lines of close values stay apart: each has its own row."""

    name: str
    svg: Markup
    now: str  # the last value, "97.3%"
    change: str  # since the first point, "+0.4 pts"
    low: str
    high: str
    groups: int  # groups behind the last value (the suite's, or BAD groups of that cause)
    url: str = ""  # the suite's list, when the caller knows it


_SW, _SH, _PAD = 120, 24, 2  # a small line's geometry
_SPARK_POINTS = 60
_MIN_SPAN = 0.02  # the smallest range a small line is scaled to: 2 points of share
MAX_TRENDS = 24  # small lines per kind on one dashboard


def trends(pts: Sequence[Point]) -> dict[str, list[Trend]]:
    """The dashboard's small lines: ``suites`` (GOOD share of each suite in the newest
    point, when there are several) and ``causes`` (the share of BAD groups each cause
    explains, from the points that counted causes; a group may have several causes)."""
    pts = _thin(pts, _SPARK_POINTS)
    out: dict[str, list[Trend]] = {"suites": [], "causes": []}
    if not pts:
        return out
    current = sorted(pts[-1].suites)[:MAX_TRENDS]
    if len(current) > 1:
        for suite in current:
            series = [
                (p.at, _share(p.suites[suite], "GOOD"))
                for p in pts
                if suite in p.suites and any(p.suites[suite].values())
            ]
            n = sum(pts[-1].suites[suite].values())
            if series:
                out["suites"].append(_trend(suite, series, n, f"{suite}: GOOD share"))
    counted = [p for p in pts if p.causes is not None and p.counts["BAD"]]
    if counted:
        seen = {c for p in counted for c in p.causes or ()}
        rank = {c: i for i, c in enumerate(causes.ORDER)}
        for cause in sorted(seen, key=lambda c: (rank.get(c, len(rank)), c))[:MAX_TRENDS]:
            series = [(p.at, (p.causes or {}).get(cause, 0) / p.counts["BAD"]) for p in counted]
            n = (counted[-1].causes or {}).get(cause, 0)
            name = causes.label(cause)
            out["causes"].append(_trend(name, series, n, f"{name}: share of the BAD groups"))
    return out


def _trend(name: str, series: Sequence[tuple[_dt.datetime, float]], n: int, title: str) -> Trend:
    values = [v for _, v in series]
    low, high = min(values), max(values)
    if high - low < _MIN_SPAN:  # a flat line sits mid-height, not on an edge
        mid = min(max((low + high) / 2, _MIN_SPAN / 2), 1 - _MIN_SPAN / 2)
        low, high = mid - _MIN_SPAN / 2, mid + _MIN_SPAN / 2
    t0, t1 = series[0][0], series[-1][0]
    xs = _xs([t for t, _ in series], _PAD, _SW - 2 * _PAD)
    height = _SH - 2 * _PAD
    coords = [
        (x, _PAD + height * (high - v) / (high - low)) for x, v in zip(xs, values, strict=True)
    ]
    what = f"{escape(title)}, {100 * low:.1f}% to {100 * high:.1f}%, {t0:%Y-%m-%d} to {t1:%Y-%m-%d}"
    x, y = coords[-1]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    svg = Markup(
        f'<svg class="spark" viewBox="0 0 {_SW} {_SH}" preserveAspectRatio="none" role="img" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{what}</title>'
        f'<polyline class="line" points="{line}"/>'
        f'<circle class="dot" cx="{x:.1f}" cy="{y:.1f}" r="2"/></svg>'
    )
    delta = 100 * (values[-1] - values[0])
    return Trend(
        name, svg, f"{100 * values[-1]:.1f}%", f"{delta:+.1f} pts", f"{100 * low:.1f}%",
        f"{100 * high:.1f}%", n,
    )  # fmt: skip


def cause_history(pts: Sequence[Point]) -> dict[str, Any]:
    """The BAD groups by cause after each pass that counted them, for ``index.json``:
    columns ``at``, ``BAD`` and one per cause (a count per point), thinned as the chart."""
    counted = [p for p in _thin(pts, _MAX_POINTS) if p.causes is not None]
    names = sorted({c for p in counted for c in p.causes or ()})
    return {
        "at": [format_time(p.at) for p in counted],
        "BAD": [p.counts["BAD"] for p in counted],
        "causes": {c: [(p.causes or {}).get(c, 0) for p in counted] for c in names},
    }


def _xs(times: Sequence[_dt.datetime], left: float, width: float) -> list[float]:
    """x of each time (oldest first) across ``width``: by time, else evenly."""
    t0, t1 = times[0], times[-1]
    span = (t1 - t0).total_seconds()
    if len(times) == 1:
        return [left + width / 2]
    if span <= 0:
        return [left + width * i / (len(times) - 1) for i in range(len(times))]
    return [left + width * (t - t0).total_seconds() / span for t in times]


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
