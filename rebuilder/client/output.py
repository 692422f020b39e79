"""The client's output for people: lines in the manner of rebuildctl and debian-repro-status."""

from __future__ import annotations

import json

from rebuilder.client.records import Dashboard, PkgEntry, QueueEntry
from rebuilder.client.verify import PackageVerdict, VerifyReport
from rebuilder.model import Status


def format_pkg_line(entry: PkgEntry) -> str:
    """One line of ``rebuildctl pkgs ls`` (without colours); FAIL is FAIL.

    >>> e = PkgEntry("hello", "2.10-3", Status.FAIL, "debian", "main", "amd64",
    ...              "https://mirror.example/hello_2.10-3_amd64.deb", 7, release="trixie")
    >>> format_pkg_line(e)  # doctest: +NORMALIZE_WHITESPACE
    '[FAIL ] hello 2.10-3 (debian, trixie, main, amd64) "https://mirror.example/hello_2.10-3_amd64.deb"'
    """
    info = ", ".join(
        (entry.distro, entry.release or "<none>", entry.suite or "<none>", entry.architecture)
    )
    pkg = f"{entry.name} {entry.version}"
    url = json.dumps(entry.artifact_url, ensure_ascii=False)
    return f"[{entry.status.value:<5}] {pkg:<60} ({info}) {url}"


def format_queue_line(entry: QueueEntry) -> str:
    """One line of ``rebuildctl queue ls`` (v0 layout, without colours).

    Queued at, name and version, for how long it has been building, since
    when, then distro, suite and architecture as quoted strings.

    >>> import datetime as dt
    >>> t = dt.datetime(2024, 5, 1, 10, 0)
    >>> e = QueueEntry(3, "hello", "2.10-3", "debian", "main", "amd64", t,
    ...                now=t + dt.timedelta(hours=1, seconds=5), started_at=t)
    >>> format_queue_line(e)  # doctest: +NORMALIZE_WHITESPACE
    '2024-05-01 10:00:00 hello 2.10-3 1h 5s 2024-05-01 10:00:00 "debian" "main" "amd64"'
    """
    started = entry.started_at.strftime(_CLOCK) if entry.started_at else ""
    running = ""
    if entry.started_at is not None:
        running = _secs_to_human(int((entry.now - entry.started_at).total_seconds()))
    pkg = f"{entry.name} {entry.version}"
    where = " ".join(
        json.dumps(x, ensure_ascii=False) for x in (entry.distro, entry.suite, entry.architecture)
    )
    return f"{entry.queued_at.strftime(_CLOCK)} {pkg:<60} {running:>11} {started:<19} {where}"


_CLOCK = "%Y-%m-%d %H:%M:%S"


def _secs_to_human(secs: int) -> str:
    """rebuilderd's ``utils::secs_to_human``: ``1h 2m 3s``, leading zero units left out."""
    secs = max(secs, 0)  # a server clock behind ours is not a negative build time
    hours, rest = divmod(secs, 3600)
    mins, secs = divmod(rest, 60)
    parts = [f"{hours}h"] if hours else []
    if mins:
        parts.append(f"{mins}m")
    return " ".join([*parts, f"{secs}s"])


def format_dashboard(d: Dashboard) -> list[str]:
    """The dashboard as lines: one per suite, the queue, the builds in progress.

    >>> board = Dashboard({"main": {Status.GOOD: 3, Status.BAD: 1, Status.UNKWN: 0}}, 4, 0)
    >>> for line in format_dashboard(board):
    ...     print(line)
    main             GOOD 3  BAD 1  UNKWN 0  (75.00% of 4 reproduced)
    queue: 4 jobs, 0 building
    """
    lines = []
    for name, counts in sorted(d.suites.items()):
        total = sum(counts.values())
        parts = "  ".join(f"{s.value} {counts[s]}" for s in _DASHBOARD_ORDER if s in counts)
        share = (
            f"{counts.get(Status.GOOD, 0) / total:.2%} of {total} reproduced" if total else "empty"
        )
        lines.append(f"{name or 'all suites':<16} {parts}  ({share})")
    queue = (
        f"queue: {d.queue_length} job{'s' if d.queue_length != 1 else ''}, {d.building} building"
    )
    if d.waiting:
        queue += f", {d.waiting} waiting to be retried"
    lines.append(queue)
    for e in d.active_builds:
        where = f"{e.distro}, {e.suite}, {e.architecture}"
        since = ""
        if e.started_at is not None:
            since = f" for {_secs_to_human(int((e.now - e.started_at).total_seconds()))}"
        lines.append(f"  building {e.name} {e.version} ({where}){since}")
    if d.now is not None:
        lines.append(f"as of {d.now.strftime(_CLOCK)} UTC")
    return lines


_DASHBOARD_ORDER = (Status.GOOD, Status.BAD, Status.FAIL, Status.UNKWN)


def format_verify_line(verdict: PackageVerdict) -> str:
    """``[+] name version GOOD  (arch; 2/3 GOOD; ...)`` in debian/arch-repro-status style."""
    icon = {Status.GOOD: "+", Status.BAD: "-"}.get(verdict.status, "?")
    p = verdict.package
    details = [p.architecture, f"{len(verdict.good)}/{len(verdict.statuses)} GOOD"]
    if verdict.disagreement:
        said = ", ".join(
            f"{r} {s.value}" for r, s in verdict.statuses.items() if s is not Status.UNKWN
        )
        details.append(f"rebuilders disagree: {said}")
    for r, c in (verdict.checks or {}).items():
        if not c.ok:
            details.append(f"{r}: {c.message or c.outcome}")
    return f"[{icon}] {p.name} {p.version} {verdict.status.value:<5} ({'; '.join(details)})"


def format_verify_summary(report: VerifyReport) -> str:
    """The closing lines: how many packages could not be reproduced, and the share."""
    if not report.total:
        return "No installed packages found."
    who = f"by at least {report.require} of {len(report.rebuilders)} rebuilder(s)"
    if report.files_checked:
        who += ", checked against the local package files"
    lines = []
    n = report.not_reproduced
    if n == 0:
        lines.append(f"All {report.total} packages have been reproduced {who}.")
    else:
        noun = "package" if n == 1 else "packages"
        lines.append(f"{n}/{report.total} {noun} could not be reproduced {who}.")
    lines.append(f"{report.share * 100:.2f}% of the installed packages have been reproduced.")
    if report.disagreements:
        names = ", ".join(v.package.name for v in report.disagreements[:10])
        more = "…" if len(report.disagreements) > 10 else ""
        lines.append(f"Rebuilders disagree on {len(report.disagreements)}: {names}{more}")
    return "\n".join(lines)
