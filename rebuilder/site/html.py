"""HTML pages: the Jinja2 environment and what each page shows.

Templates live in ``<repo>/site_templates`` (an override directory may shadow
any of them, file by file). Autoescape is on for every template, so names,
versions and maintainers from hostile indexes are always escaped; links to
outside URLs are only made for ``http``/``https`` (never ``javascript:``).
Page contexts are built here, so templates stay logic-free. Rows are
NamedTuples rather than dicts: Jinja2 looks ``row.name`` up as an attribute
first, and on a dict that miss costs an exception per cell. The rows of a
suite list (tens of thousands) are escaped HTML made by :func:`rows_html`.
"""

from __future__ import annotations

import datetime as _dt
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jinja2
import markupsafe

import rebuilder
from rebuilder.model import Attempt, GroupRecord, Status
from rebuilder.site import api_v0, paths

DEFAULT_TEMPLATES = Path(rebuilder.__file__).resolve().parent.parent / "site_templates"
# what an attempt's page links to, in this order, with the label shown
FILE_LABELS = (
    ("log", "log"),
    ("diffoscope", "diffoscope"),
    ("diffoscope_html", "diffoscope (html)"),
    ("attestation", "attestation"),
    ("buildinfo", "buildinfo"),
    ("environment", "environment"),
)


def template_dirs(override: Path | None) -> list[Path]:
    """Where templates are looked up, first match wins."""
    return [override, DEFAULT_TEMPLATES] if override else [DEFAULT_TEMPLATES]


def environment(override: Path | None = None) -> jinja2.Environment:
    """The Jinja2 environment: autoescape always on, undefined names are errors."""
    if override is not None and not override.is_dir():
        raise paths.SiteError(f"{override}: no such template directory")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in template_dirs(override)]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env


@dataclass(frozen=True, slots=True)
class SuiteSummary:
    """Counts of one profile's suite (release/component/architecture), seen groups only."""

    release: str
    component: str
    architecture: str
    counts: Mapping[Status, int]
    dir: str  # site-relative

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def reproduced(self) -> str:
        """GOOD / all seen, as a percentage for people."""
        return percent(self.counts.get(Status.GOOD, 0), self.total)


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


def _e(s: str) -> str:
    return html.escape(s, quote=True)


def outside_link(u: str) -> str | None:
    """``u`` if it is safe to put in an ``href`` (http or https), else None."""
    return u if u.startswith(("https://", "http://")) else None


class SuiteCounts(NamedTuple):
    """One suite's line on the index page (links relative to the site root)."""

    release: str
    component: str
    architecture: str
    url: str
    counts: list[tuple[str, int, str]]  # (status, count, url of that status's list)
    total: int
    reproduced: str


class SuiteRow(NamedTuple):
    """One line of a suite list: cheap, there are tens of thousands of them."""

    name: str
    version: str
    status: str
    url: str
    built: str


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


def index_context(profiles: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {"root": "", "profiles": profiles}


def profile_context(
    name: str,
    distro: str,
    queue_length: int,
    last_pass: _dt.datetime | None,
    suites: Sequence[SuiteSummary],
) -> dict[str, Any]:
    """One profile's block on the index page."""
    rows = []
    for s in suites:
        base = paths.url(s.dir)
        counts = [
            (st.value, s.counts.get(st, 0), f"{base}/{st.value.lower()}.html") for st in Status
        ]
        rows.append(
            SuiteCounts(
                s.release,
                s.component,
                s.architecture,
                f"{base}/index.html",
                counts,
                s.total,
                s.reproduced,
            )
        )
    return {
        "name": name,
        "distro": distro,
        "queue_length": queue_length,
        "last_pass": when(last_pass),
        "api": paths.url(paths.api_base(distro)) + "/",
        "suites": rows,
    }


def suite_row(record: GroupRecord, link: str) -> SuiteRow:
    g, attempt = record.group, record.last_attempt
    built = when(attempt.started_at) if attempt else "–"
    return SuiteRow(g.name, g.version, record.status.value, link, built)


def rows_html(rows: Sequence[SuiteRow]) -> list[str]:
    """Each suite row as escaped HTML.

    Built here rather than in a template loop: a Debian suite has tens of
    thousands of rows, shown twice (all, and by status), and a Jinja2 loop
    spent most of a small render escaping them cell by cell.
    """
    return [
        f'<tr><td><a href="{_e(r.url)}">{_e(r.name)}</a></td><td>{_e(r.version)}</td>'
        f'<td class="s-{_e(r.status)}">{_e(r.status)}</td><td>{_e(r.built)}</td></tr>\n'
        for r in rows
    ]


def suite_context(
    profile: str,
    summary: SuiteSummary,
    page: str,
    rows: Sequence[str],
    status: Status | None,
) -> dict[str, Any]:
    """A suite's list page (all groups, or those of one status); ``rows`` from :func:`rows_html`."""
    return {
        "root": paths.root_prefix(page),
        "profile": profile,
        "suite": summary,
        "status": status.value if status else None,
        "statuses": [
            (s.value, f"{s.value.lower()}.html", summary.counts.get(s, 0)) for s in Status
        ],
        "reproduced": summary.reproduced,
        "rows": markupsafe.Markup("".join(rows)),
    }


def attempt_links(attempt: Attempt, page: str, v0: Mapping[str, str]) -> list[tuple[str, str]]:
    """(label, href) of an attempt's files: the v0 plain text copy when there is one,
    else the results store file as the runner wrote it."""
    links = []
    for kind, label in FILE_LABELS:
        if kind in v0:
            links.append((label, paths.href(page, v0[kind])))
            continue
        rel = attempt.files.get(kind)
        target = paths.store_rel(rel) if rel else None
        if target is not None:
            suffix = " (gz)" if rel and rel.endswith(".gz") else ""
            links.append((label + suffix, paths.href(page, target)))
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
        match = None if r is None else built == a.sha256
        rows.append(
            ArtifactRow(
                a.name, a.version, a.architecture, outside_link(a.url), a.sha256, shown, match
            )
        )
    return rows


def group_context(
    profile: str,
    record: GroupRecord,
    page: str,
    suite_page: str,
    v0_files: Mapping[int, Mapping[str, str]],
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
        )
        for t in reversed(record.attempts)
    ]
    return {
        "root": paths.root_prefix(page),
        "profile": profile,
        "g": g,
        "status": record.status.value,
        "seen": record.seen,
        "input_link": outside_link(g.input_url),
        "first_seen": when(record.first_seen),
        "last_seen": when(record.last_seen),
        "next_retry": when(record.next_retry) if record.next_retry else None,
        "retries": record.retries,
        "artifacts": artifact_rows(record),
        "attempts": attempts,
        "json": paths.href(page, page.removesuffix(".html") + ".json"),
        "suite_url": paths.href(page, suite_page),
    }
