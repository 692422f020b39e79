"""Explaining a BAD build: run diffoscope on the published and the rebuilt artifacts.

diffoscope runs under the same supervisor as a backend (own process group,
killed at its timeout, never outliving the pass). Its reports are capped: the
text report by diffoscope's own ``--max-text-report-size`` and then by us, the
HTML one by ``--max-report-size``; the JSON one (for :mod:`rebuilder.causes`) is
kept only whole, up to the same limit. Several differing artifacts are compared as
two directories (``published/`` and ``rebuilt/``) so that one build has one
report that names every differing file.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
from dataclasses import dataclass
from pathlib import Path

from rebuilder.build._supervise import LogCap, run_supervised

log = logging.getLogger(__name__)

# diffoscope refuses HTML page sizes below its own minimum; keep our cap above it.
_MIN_HTML_LIMIT = 1 << 16
_OUTPUT_LIMIT = 8 << 10  # diffoscope's own chatter kept for the build log


@dataclass(frozen=True)
class DiffoscopeReport:
    """What a diffoscope run left: the reports (None when not produced) and notes for the log."""

    text: bytes | None
    html: bytes | None
    notes: tuple[str, ...]
    json: bytes | None = None  # whole, or None: a cut JSON report is no JSON


def available() -> str | None:
    """The diffoscope executable, or None when it is not installed."""
    return shutil.which("diffoscope")


def compare(
    pairs: list[tuple[Path, Path]],
    scratch: Path,
    *,
    timeout: float,
    limit: int,
    cancel: threading.Event | None = None,
) -> DiffoscopeReport:
    """Compare each ``(published, rebuilt)`` pair; ``scratch`` is an empty-able work dir."""
    exe = available()
    if exe is None:
        return DiffoscopeReport(None, None, ("diffoscope is not installed: no report",))
    scratch.mkdir(parents=True, exist_ok=True)
    left, right = _operands(pairs, scratch)
    text_path, html_path = scratch / "report.txt", scratch / "report.html"
    json_path = scratch / "report.json"
    cmd = [
        exe,
        "--text",
        str(text_path),
        "--html",
        str(html_path),
        "--json",
        str(json_path),
        "--max-text-report-size",
        str(max(limit, 1)),
        "--max-report-size",
        str(max(limit, _MIN_HTML_LIMIT)),
        "--exclude-directory-metadata=yes",
        "--no-progress",
        "--",
        str(left),
        str(right),
    ]
    output = LogCap(_OUTPUT_LIMIT)
    env = {**os.environ, "LC_ALL": "C.UTF-8", "TZ": "UTC"}
    outcome = run_supervised(
        cmd, cwd=str(scratch), env=env, timeout=timeout, grace=2.0, log=output, cancel=cancel
    )
    notes = [
        f"diffoscope: {line}"
        for line in output.getvalue().decode(errors="replace").split("\n")
        if line
    ]
    if outcome.how == "timeout":
        notes.append(f"diffoscope timed out after {timeout:g} s")
    elif outcome.how == "cancel":
        notes.append("diffoscope skipped: the pass ran out of time")
    elif outcome.how != "exit":
        notes.append(f"diffoscope failed: {outcome.detail or outcome.how}")
    elif outcome.code not in (0, 1):
        notes.append(f"diffoscope exited with {outcome.code}")
    text = _read_capped(text_path, limit)
    html = _read_capped(html_path, max(limit, _MIN_HTML_LIMIT))
    data = _read_capped(json_path, limit)
    whole = data if data is not None and json_path.stat().st_size <= limit else None
    return DiffoscopeReport(text, html, tuple(notes), whole)


def _operands(pairs: list[tuple[Path, Path]], scratch: Path) -> tuple[Path, Path]:
    if len(pairs) == 1:
        return pairs[0]
    left, right = scratch / "published", scratch / "rebuilt"
    left.mkdir(exist_ok=True)
    right.mkdir(exist_ok=True)
    for published, rebuilt in pairs:
        _link_or_copy(published, left / published.name)
        _link_or_copy(rebuilt, right / published.name)
    return left, right


def _link_or_copy(src: Path, dest: Path) -> None:
    try:
        os.link(src, dest)
    except OSError:
        shutil.copyfile(src, dest)


def _read_capped(path: Path, limit: int) -> bytes | None:
    try:
        with path.open("rb") as f:
            data = f.read(limit + 1)
    except FileNotFoundError:
        return None
    if len(data) > limit:
        size = path.stat().st_size
        marker = f"\n[rebuilder] diffoscope report truncated: {size - limit} bytes omitted\n"
        data = data[:limit] + marker.encode()
    return data
