"""HTML pages: the Jinja2 environment and what each page shows.

Templates live in ``<repo>/site_templates``; ``rebuilder/site_templates`` links to them in a
checkout and is their copy in a wheel (package data). An override
directory may shadow any of them, file by file. Autoescape is on for every template, so names,
versions and maintainers from hostile indexes are always escaped; links to
outside URLs are only made for ``http``/``https`` (never ``javascript:``).
Page contexts are built here, so templates stay logic-free. Rows are
NamedTuples rather than dicts: Jinja2 looks ``row.name`` up as an attribute
first, and on a dict that miss costs an exception per cell. The rows of long
lists (suite lists, maintainer pages: tens of thousands of rows) are escaped
HTML made by :func:`row_html`, not template loops.
"""

from __future__ import annotations

import datetime as _dt
import functools
import html
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jinja2
import markupsafe

import rebuilder
from rebuilder import causes
from rebuilder.model import Attempt, GroupRecord, Status
from rebuilder.site import api_v0, history, paths

_PACKAGE = Path(rebuilder.__file__).resolve().parent
# a wheel's package data, or in a checkout the symlink to the repository's folder
DEFAULT_TEMPLATES = _PACKAGE / "site_templates"
# what an attempt's page links to, in this order, with the label shown
FILE_LABELS = (
    ("log", "log"),
    ("diffoscope", "diffoscope"),
    ("diffoscope_html", "diffoscope (html)"),
    ("attestation", "attestation"),
    ("buildinfo", "buildinfo"),
    ("environment", "environment"),
)
PAGE_SIZE = 500  # rows of one list page
TAIL_LINES = 15  # last lines of a FAIL's log shown on its page
MAX_TEXT_VIEW = 4 * 1024 * 1024  # characters of a log shown in its HTML view
_BROKEN_FIRST = {Status.BAD: 0, Status.FAIL: 0, Status.UNKWN: 1, Status.GOOD: 2}


def template_dirs(override: Path | None) -> list[Path]:
    """Where templates are looked up, first match wins."""
    return [override, DEFAULT_TEMPLATES] if override else [DEFAULT_TEMPLATES]


def environment(override: Path | None = None, compiled: str | None = None) -> jinja2.Environment:
    """The Jinja2 environment of one render: autoescape always on, undefined names are
    errors. ``compiled``: a folder keeping the compiled templates for the next render
    (Jinja2 checks each against its source when it loads it). A template is loaded once
    per render: not asked again whether its file changed (a stat per page, and one per
    page it extends)."""
    if override is not None and not override.is_dir():
        raise paths.SiteError(f"{override}: no such template directory")
    bytecode = None
    if compiled is not None:
        try:
            os.makedirs(compiled, exist_ok=True)
            bytecode = jinja2.FileSystemBytecodeCache(compiled)
        except OSError:
            pass  # compiled again each render: slower, no worse
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in template_dirs(override)]),
        bytecode_cache=bytecode,
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )


@dataclass(frozen=True, slots=True)
class SuiteSummary:
    """Counts of one profile's suite (release/component/architecture), seen groups only."""

    release: str
    component: str
    architecture: str
    counts: Mapping[Status, int]
    dir: str  # site-relative
    causes: Mapping[str, int] = field(default_factory=dict)  # BAD groups per cause

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def reproduced(self) -> str:
        """GOOD / all seen, as a percentage for people."""
        return percent(self.counts.get(Status.GOOD, 0), self.total)

    @property
    def label(self) -> str:
        return f"{self.release}/{self.component}/{self.architecture}"


def percent(part: int, total: int) -> str:
    """``"93.1 %"``; a dash when there is nothing to divide.

    >>> percent(1, 3), percent(0, 0)
    ('33.3 %', '–')
    """
    return f"{100 * part / total:.1f} %" if total else "–"


def duration(seconds: float) -> str:
    """A build's duration for people.

    >>> duration(5), duration(83.4), duration(3723)
    ('5s', '1m 23s', '1h 02m 03s')
    """
    s = round(seconds)
    h, rest = divmod(s, 3600)
    m, sec = divmod(rest, 60)
    if h:
        return f"{h}h {m:02d}m {sec:02d}s"
    return f"{m}m {sec:02d}s" if m else f"{sec}s"


def when(t: _dt.datetime | None) -> str:
    """A naive UTC time for people (``2024-01-02 03:04 UTC``), a dash when unknown."""
    return t.strftime("%Y-%m-%d %H:%M UTC") if t else "–"


def e(s: str) -> str:
    """HTML-escape ``s`` (quotes too); fast when there is nothing to escape.

    >>> e("hello"), e('<a href="x">')
    ('hello', '&lt;a href=&quot;x&quot;&gt;')
    """
    if "&" in s or "<" in s or ">" in s or '"' in s or "'" in s:
        return html.escape(s, quote=True)
    return s  # the common case: five scans in C beat a regular expression


def outside_link(u: str) -> str | None:
    """``u`` if it is safe to put in an ``href`` (http or https), else None."""
    return u if u.startswith(("https://", "http://")) else None


@functools.lru_cache(maxsize=65536)  # a few thousand people maintain every package
def maintainer_key(m: str) -> str:
    """Who a maintainer string names: the e-mail address (lowercased) when there is one.

    >>> maintainer_key("Jane Doe <Jane@Example.org>"), maintainer_key("team")
    ('jane@example.org', 'team')
    """
    m = m.strip()
    lt, gt = m.rfind("<"), m.rfind(">")
    if 0 <= lt < gt and "@" in m[lt:gt]:
        return m[lt + 1 : gt].strip().lower()
    return m


# -- rows of long lists ----------------------------------------------------------------


class Row(NamedTuple):
    """One group in a list: enough to sort, filter and show it."""

    name: str
    version: str
    status: str
    built: _dt.datetime | None  # start of the newest attempt
    url: str  # link from the list page's folder
    extra: str = ""  # escaped HTML of further cells (maintainer pages: profile and suite)
    reason: str = ""  # why the newest attempt is BAD or FAIL
    files: tuple[tuple[str, str], ...] = ()  # (label, site path): a BAD/FAIL's log, report


def row_html(r: Row, root: str = "") -> str:
    """One list row; ``root`` leads from the list's folder to the site root."""
    # (isoformat: a tenth of strftime's time, for the same text of a naive time)
    built = r.built.isoformat(" ", "minutes")[:16] if r.built else "–"
    files = "".join(f' <a href="{e(root + paths.url(f))}">{label}</a>' for label, f in r.files)
    return (
        f'<tr><td><a href="{e(r.url)}">{e(r.name)}</a></td><td>{e(r.version)}</td>'
        f'<td class="s-{r.status}">{r.status}{files}</td>{r.extra}'
        f'<td class="reason">{e(r.reason)}</td><td>{built}</td></tr>\n'
    )


def pages_of(n: int) -> int:
    return max(1, -(-n // PAGE_SIZE))


def pager(
    status: str | None, sort: str, page: int, pages: int, cause: str | None = None
) -> list[tuple[str, str | None]]:
    """(label, href or None for the current page) for a page list: first, last and
    the pages near the current one."""
    if pages <= 1:
        return []
    show = sorted({1, pages, *range(max(1, page - 3), min(pages, page + 3) + 1)})
    out: list[tuple[str, str | None]] = []
    prev = 0
    for n in show:
        if n - prev > 1:
            out.append(("…", None))
        target = paths.cause_page(cause, n) if cause else paths.list_page(status, sort, n)
        out.append((str(n), None if n == page else target))
        prev = n
    return out


def list_context(
    profile: str,
    summary: SuiteSummary,
    page_file: str,
    rows: Sequence[str],
    status: Status | None,
    sort: str,
    page: int,
    pages: int,
    cause: str | None = None,
) -> dict[str, Any]:
    """One page of a suite's list (every status, or one, or the BAD of one cause), sorted
    by name or date (a cause's list: by name)."""
    st = status.value.lower() if status else None
    return {
        "root": paths.root_prefix(page_file),
        "profile": profile,
        "suite": summary,
        "status": status.value if status else None,
        "statuses": [("all", paths.list_page(None, sort, 1), summary.total, st is None)]
        + [
            (
                s.value,
                paths.list_page(s.value.lower(), sort, 1),
                summary.counts.get(s, 0),
                s.value.lower() == st,
            )
            for s in Status
        ],
        "sorts": [(s, paths.list_page(st, s, 1), s == sort) for s in paths.SORTS],
        "sort": sort,
        "page": page,
        "pages": pages,
        "pager": pager(st, sort, page, pages, cause),
        "cause": (cause, causes.label(cause)) if cause else None,
        "causes": [
            (c, causes.label(c), n, paths.cause_page(c, 1), c == cause)
            for c, n in _by_order(summary.causes)
        ],
        "json": "index.json",
        "reproduced": summary.reproduced,
        "rows": markupsafe.Markup("".join(rows)),
    }


def _by_order(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    """Cause counts in :data:`causes.ORDER` (names it does not know last, by name)."""
    rank = {c: i for i, c in enumerate(causes.ORDER)}
    return sorted(counts.items(), key=lambda x: (rank.get(x[0], len(rank)), x[0]))


# -- the dashboard ----------------------------------------------------------------------


class SuiteCounts(NamedTuple):
    """One suite's line on the dashboard (links relative to the site root)."""

    release: str
    component: str
    architecture: str
    url: str
    counts: list[tuple[str, int, str]]  # (status, count, url of that status's list)
    total: int
    reproduced: str
    bar: list[tuple[str, int]]  # (status, width in permille) for the share bar


class ChangeRow(NamedTuple):
    name: str
    version: str
    suite: str
    before: str | None
    after: str
    at: str
    url: str


def change_rows(changes: Sequence[history.Change]) -> list[ChangeRow]:
    return [
        ChangeRow(c.name, c.version, c.suite, c.before, c.after, when(c.at), paths.url(c.page))
        for c in changes
    ]


def bar(counts: Mapping[Status, int]) -> list[tuple[str, int]]:
    """Widths (per mille, summing to 1000) of each status in a share bar."""
    total = sum(counts.values())
    if not total:
        return []
    out, used = [], 0
    for s in Status:
        w = round(1000 * (used + counts.get(s, 0)) / total) - round(1000 * used / total)
        used += counts.get(s, 0)
        if w:
            out.append((s.value, w))
    return out


def profile_context(
    name: str,
    distro: str,
    queue_length: int,
    last_pass: _dt.datetime | None,
    suites: Sequence[SuiteSummary],
    chart: markupsafe.Markup,
    trends: Mapping[str, Sequence[history.Trend]],
    regressions: Sequence[history.Change],
    reproduced: Sequence[history.Change],
    arch_apis: Sequence[tuple[str, str]],
    *,
    new_bad: Sequence[history.Change] = (),
    new_fail: Sequence[history.Change] = (),
    offered: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """One profile's block on the dashboard; ``offered`` says how many changes each capped
    list (``regressions``, ``reproduced``, ``new_bad``, ``new_fail``) had in all."""
    rows = []
    totals = {s: 0 for s in Status}
    for s in suites:
        base = paths.url(s.dir)
        counts = []
        for st in Status:
            n = s.counts.get(st, 0)
            totals[st] += n
            counts.append((st.value, n, f"{base}/{paths.list_page(st.value.lower(), 'name', 1)}"))
        rows.append(
            SuiteCounts(
                s.release, s.component, s.architecture, f"{base}/index.html", counts,
                s.total, s.reproduced, bar(s.counts),
            )
        )  # fmt: skip
    total = sum(totals.values())
    cause_rows = [
        (f"{s.release}/{s.component}/{s.architecture}", f"{paths.url(s.dir)}/index.html",
         [(causes.label(c), n, f"{paths.url(s.dir)}/{paths.cause_page(c, 1)}")
          for c, n in _by_order(s.causes)])
        for s in suites if s.causes
    ]  # fmt: skip
    return {
        "name": name,
        "distro": distro,
        "causes": cause_rows,
        "queue_length": queue_length,
        "last_pass": when(last_pass),
        "api": paths.url(paths.api_base(distro)) + "/",
        "arch_apis": [(a, paths.url(u) + "/") for a, u in arch_apis],
        "suites": rows,
        "counts": [(s.value, totals[s]) for s in Status],
        "total": total,
        "reproduced": percent(totals[Status.GOOD], total),
        "chart": chart,
        "trends": trends,
        "regressions": change_rows(regressions),
        "newly_reproduced": change_rows(reproduced),
        "new_bad": change_rows(new_bad),
        "new_fail": change_rows(new_fail),
        "totals": {
            k: (len(v), (offered or {}).get(k, len(v)))
            for k, v in (
                ("regressions", regressions),
                ("reproduced", reproduced),
                ("new_bad", new_bad),
                ("new_fail", new_fail),
            )
        },
        "feed": paths.url(paths.profile_feed(name, ".atom")),
        "json_feed": paths.url(paths.profile_feed(name, ".json")),
        "badge": paths.url(paths.profile_badge(name, ".svg")),
        "shields": paths.url(paths.profile_badge(name, ".json")),
    }


def index_context(profiles: Sequence[Mapping[str, Any]], signed: bool = True) -> dict[str, Any]:
    return {"root": "", "profiles": profiles, "signed": signed}


# -- maintainers ------------------------------------------------------------------------


class MaintainerLink(NamedTuple):
    name: str
    url: str
    total: int
    attention: int  # BAD + FAIL


def maintainer_rows(items: Sequence[tuple[Row, Status]]) -> list[str]:
    """A maintainer's packages: those needing attention (BAD, FAIL) first, then by name."""
    ordered = sorted(items, key=lambda x: (_BROKEN_FIRST[x[1]], x[0].name, x[0].extra))
    return [row_html(r, "../") for r, _ in ordered]  # from m/


def maintainer_context(
    names: Sequence[str],
    page: str,
    rows: Sequence[str],
    counts: Mapping[Status, int],
    links: Mapping[str, str],
) -> dict[str, Any]:
    """A maintainer's page; ``links`` (relative to it): ``feed``, ``json_feed``, ``badge``,
    ``shields``."""
    return {
        **links,
        "root": paths.root_prefix(page),
        "names": names,
        "counts": [(s.value, counts.get(s, 0)) for s in Status],
        "attention": counts.get(Status.BAD, 0) + counts.get(Status.FAIL, 0),
        "rows": markupsafe.Markup("".join(rows)),
    }


def maintainers_context(links: Sequence[MaintainerLink]) -> dict[str, Any]:
    return {"root": "", "maintainers": links}


# -- a build group ----------------------------------------------------------------------


class ArtifactRow(NamedTuple):
    name: str
    version: str
    architecture: str
    url: str | None  # only http(s)
    sha256: str
    rebuilt: str
    match: bool | None  # None: not rebuilt


class AttemptRow(NamedTuple):
    build_id: int
    version: str
    status: str
    started_at: str
    duration: str
    backend: str
    reason: str
    links: list[tuple[str, str]]  # (label, href)
    phases: str = ""  # where the duration went, e.g. "prepare 2.1 s · build 6.0 s · ..."


def phases_text(phases: Mapping[str, float]) -> str:
    """An attempt's phases for people.

    >>> phases_text({"prepare": 2.14, "build": 61, "compare": 0.04, "cleanup": 0.2})
    'prepare 2.1s · build 1m 01s · compare 0.0s · cleanup 0.2s'
    """
    return " · ".join(
        f"{name} {duration(s) if s >= 60 else f'{s:.1f}s'}" for name, s in phases.items()
    )


def attempt_links(attempt: Attempt, page: str, v0: Mapping[str, str]) -> list[tuple[str, str]]:
    """(label, href) of an attempt's files: the readable view of a text and the results
    store's file; the plain v0 copy of an attestation (and its key); else the store's file."""
    links = []
    for kind, label in FILE_LABELS:
        view = v0.get(f"{kind}.html")
        if view:  # and the results store's file: GitHub Pages publishes no v0 copy of a text
            links.append((label, paths.href(page, view)))
        elif kind in v0:  # under its .json name where it has one: no download dialog
            links.append((label, paths.href(page, v0.get(paths.ALIASES.get(kind, ""), v0[kind]))))
            if kind == "attestation":  # what it is checked with
                keys = v0[kind].rpartition("/builds/")[0] + "/public-keys.json"
                links.append(("public key", paths.href(page, keys)))
            continue
        rel = attempt.files.get(kind)
        target = paths.store_rel(rel) if rel else None
        if target is not None:
            suffix = " (gz)" if rel and rel.endswith(".gz") else " (plain)" if view else ""
            links.append((label + suffix, paths.href(page, target)))
    # the build's recorded environment (installed packages, our .buildinfo), beside the log
    for kind in sorted(k for k in attempt.files if k.startswith("meta/")):
        target = paths.store_rel(attempt.files[kind])
        if target is not None:
            links.append((kind.removeprefix("meta/"), paths.href(page, target)))
    return links


def artifact_rows(record: GroupRecord) -> list[ArtifactRow]:
    """Published and rebuilt digests, side by side (rebuilt: from the current version's
    newest attempt)."""
    current = api_v0.attempt_for_version(record)
    rebuilt = {r.name: r for r in current.artifacts} if current else {}
    rows = []
    for a in record.group.artifacts:
        r = rebuilt.get(a.name)
        built = r.built_sha256 if r else None
        shown = built or ("missing" if r else "–")
        # an index that publishes no digest (Alpine, Tails): the one the build compared with
        published = a.sha256 or (r.expected_sha256 if r else "")
        match = None if r is None else built == published
        rows.append(
            ArtifactRow(
                a.name, a.version, a.architecture, outside_link(a.url), published, shown, match
            )
        )
    return rows


class Why(NamedTuple):
    """What a BAD or FAIL page says first: the causes and differing files (BAD) or the
    reason and the log's last lines (FAIL), and where to read more."""

    status: str
    reason: str
    causes: list[tuple[str, str]]  # (name, label)
    files: list[tuple[str, str]]  # (file, label of its cause)
    tail: str
    links: list[tuple[str, str]]  # (label, href)


def why(record: GroupRecord, page: str, v0: Mapping[str, str], tail: str) -> Why | None:
    """The top of a BAD or FAIL group page, from the attempt at its current inputs."""
    if record.status not in (Status.BAD, Status.FAIL):
        return None
    attempt = api_v0.attempt_for_version(record)
    if attempt is None:
        return None
    labels = dict(attempt_links(attempt, page, v0))
    wanted = ("diffoscope (html)", "diffoscope", "log") if record.status is Status.BAD else ("log",)
    links = [(k, labels[k]) for k in wanted if k in labels]
    return Why(
        record.status.value,
        attempt.reason,
        [(c, causes.label(c)) for c in attempt.causes],
        [(f, causes.label(c) if c else "") for f, c in attempt.differences],
        tail,
        links,
    )


def log_tail(data: bytes, lines: int = TAIL_LINES) -> str:
    """The last ``lines`` lines of a log's end.

    >>> log_tail(b"a\\nb\\nc\\n", 2)
    'b\\nc'
    """
    text = data.decode("utf-8", "replace").rstrip("\n")
    return "\n".join(text.split("\n")[-lines:])


def group_context(
    profile: str,
    record: GroupRecord,
    page: str,
    suite_page: str,
    v0_files: Mapping[int, Mapping[str, str]],
    distro_page: str | None,
    tail: str = "",
) -> dict[str, Any]:
    """A build group's page: where it lives, its artifacts, every attempt (newest first)."""
    g = record.group
    attempts = [
        AttemptRow(
            t.build_id,
            t.version,
            t.status.value,
            t.started_at.strftime("%Y-%m-%d %H:%M:%S"),
            duration(t.duration),
            t.backend,
            t.reason,
            attempt_links(t, page, v0_files.get(t.build_id, {})),
            phases_text(t.phases),
        )
        for t in reversed(record.attempts)
    ]
    stem = page.removesuffix(".html")
    maintainers = [(m, paths.href(page, paths.maintainer_page(maintainer_key(m))))
                   for m in g.maintainers]  # fmt: skip
    badge = paths.badge_file(profile, g.key, ".svg") if record.seen else None
    return {
        "root": paths.root_prefix(page),
        "profile": profile,
        "g": g,
        "status": record.status.value,
        "seen": record.seen,
        "input_link": outside_link(g.input_url),
        "distro_page": distro_page,
        "maintainers": maintainers,
        "first_seen": when(record.first_seen),
        "last_seen": when(record.last_seen),
        "why": why(record, page, _v0_of(record, v0_files), tail),
        "next_retry": when(record.next_retry) if record.next_retry else None,
        "retries": record.retries,
        "artifacts": artifact_rows(record),
        "attempts": attempts,
        "json": paths.href(page, stem + ".json"),
        "badge": paths.href(page, badge) if badge else None,
        "shields": paths.href(page, badge.removesuffix(".svg") + ".json") if badge else None,
        "suite_url": paths.href(page, suite_page),
    }


def _v0_of(record: GroupRecord, v0_files: Mapping[int, Mapping[str, str]]) -> Mapping[str, str]:
    attempt = api_v0.attempt_for_version(record)
    return v0_files.get(attempt.build_id, {}) if attempt else {}


def viewer_context() -> dict[str, Any]:
    """The one page that shows any build's log or diffoscope text, and holds none:
    ``static/text.js`` reads which store file from its query (:func:`paths.text_view`),
    loads it (gzip'd or not) and shows it, cut when huge."""
    return {"root": paths.root_prefix(paths.VIEWER), "max_chars": MAX_TEXT_VIEW}


# -- diffoscope's own HTML report ---------------------------------------------------------

REPORT_CSP = (
    b'<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
    b"style-src 'unsafe-inline'; img-src data:; form-action 'none'; base-uri 'none'\">\n"
)
# our bar on top, and on a phone the side-by-side tables wrap instead of scrolling sideways
_REPORT_HEAD = b"""<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
.rb-nav{font:15px/1.4 system-ui,sans-serif;padding:.4rem 0;margin:0 0 .6rem;
border-bottom:1px solid #ccc}
@media (max-width:40rem){
body.diffoscope{margin:.4rem}
.diffoscope table.diff{table-layout:fixed;width:100%}
.diffoscope col.colines{width:2.2em}
.diffoscope td,.diffoscope .diffheader div,.diffoscope .source{word-break:break-all;
white-space:pre-wrap}
}
</style>
"""
_BODY = re.compile(rb"<body[^>]*>")


def report_page(data: bytes, *, title: str, back: tuple[str, str], root: str) -> bytes:
    """diffoscope's report behind a CSP that allows its inline styles and nothing else,
    titled by us, with a bar linking back to the package's page and the site.

    Our ``<meta>``, ``<title>`` and ``<style>`` go first: an HTML parser puts them
    into the implied ``<head>`` before any of the report's own markup, so no script
    can run, and the first ``<title>`` (ours) is the page's.
    """
    head = data[:64].lstrip().lower()
    if head.startswith(b"<!doctype"):
        data = data[data.index(b">") + 1 :]
    label, href = back
    nav = (
        f'<p class="rb-nav"><a href="{e(root)}index.html">rebuilder</a> › '
        f'<a href="{e(href)}">{e(label)}</a> › diffoscope report</p>\n'
    ).encode("utf-8", "surrogateescape")
    m = _BODY.search(data, 0, 1 << 16)
    data = data[: m.end()] + b"\n" + nav + data[m.end() :] if m else nav + data
    top = f"<title>{e(title)}</title>\n".encode("utf-8", "surrogateescape")
    return b"<!DOCTYPE html>\n" + REPORT_CSP + top + _REPORT_HEAD + data
