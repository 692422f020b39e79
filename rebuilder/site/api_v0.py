"""Every JSON shape the site emits, in this one place.

rebuilderd's v0 shapes (``PkgRelease`` in ``pkgs/list`` and
``DashboardResponse`` in ``dashboard``) are reproduced field for field so
that rebuilderd's clients read this site as they read a rebuilderd; our own
``index.json`` sits beside them. Group JSON is ``GroupRecord.to_json()``
(the model owns that shape). Output is deterministic: lists sorted, keys
sorted, so re-rendering an unchanged state produces identical bytes.

>>> from rebuilder.model import Artifact, BuildGroup, GroupRecord
>>> a = Artifact("hello", "1.0-1", "amd64", "https://mirror.example/hello.deb", "0" * 64, 1)
>>> g = BuildGroup("hello", "1.0-1", "debian", "bookworm", "main", "amd64",
...                "https://mirror.example/x", (a,))
>>> pkg_releases(GroupRecord(g))[0]["status"]
'UNKWN'
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Iterable, Mapping, Sequence
from enum import Enum
from typing import Any, Literal

from rebuilder.model import Attempt, GroupRecord, Status, format_time
from rebuilder.site import paths

INDEX_SCHEMA = 1


def dumps(obj: Any, *, indent: int | None = None) -> bytes:
    """Canonical JSON bytes: sorted keys, UTF-8, a final newline."""
    text = json.dumps(obj, sort_keys=True, ensure_ascii=False, indent=indent)
    return (text + "\n").encode("utf-8", "surrogatepass")


def attempt_for_version(record: GroupRecord) -> Attempt | None:
    """The newest attempt at the group's current inputs (else at its current version)."""
    attempt = record.current_attempt()
    if attempt is not None:
        return attempt
    version = record.group.version
    return next((a for a in reversed(record.attempts) if a.version == version), None)


def v0_attempt(record: GroupRecord) -> Attempt | None:
    """The attempt rebuilderd's v0 would name: none while the current version is unbuilt."""
    if record.status is Status.UNKWN:
        return None
    return attempt_for_version(record)


def built_at(attempt: Attempt) -> _dt.datetime:
    """When a build finished (rebuilderd's ``built_at``): its start plus its duration."""
    return attempt.started_at + _dt.timedelta(seconds=int(attempt.duration))


class _Auto(Enum):
    CURRENT = "current"  # pkg_releases: "find the attempt yourself"


def pkg_releases(
    record: GroupRecord,
    attempt: Attempt | Literal[_Auto.CURRENT] | None = _Auto.CURRENT,
    has: Mapping[str, bool] | None = None,
) -> list[dict[str, Any]]:
    """rebuilderd's ``PkgRelease`` objects for every artifact of one group.

    ``attempt`` is :func:`v0_attempt` of the record (found when not given);
    ``suite`` is the group's component (rebuilderd's convention: Debian
    ``main``, Arch ``core``...); ``has`` tells which v0 build files are
    published (``diffoscope``, ``attestation``); by default, those the
    attempt lists with a safe store path.
    """
    if attempt is _Auto.CURRENT:
        attempt = v0_attempt(record)
    if has is None:
        files = attempt.files if attempt else {}
        has = {k: paths.store_rel(files.get(k, "")) is not None for k in paths.API_KINDS}
    g = record.group
    status = record.status.v0
    build_id = attempt.build_id if attempt else None
    when = format_time(built_at(attempt)) if attempt else None
    has_diffoscope = bool(attempt and has.get("diffoscope"))
    has_attestation = bool(attempt and has.get("attestation"))
    return [
        {
            "name": a.name,
            "version": a.version,
            "status": status,
            "distro": g.distro,
            "suite": g.component,
            "architecture": a.architecture,
            "artifact_url": a.url,
            "build_id": build_id,
            "built_at": when,
            "has_diffoscope": has_diffoscope,
            "has_attestation": has_attestation,
        }
        for a in g.artifacts
    ]


def _pkg_sort_key(p: Mapping[str, Any]) -> tuple[str, ...]:
    return (p["name"], p["version"], p["architecture"], p["suite"], p["artifact_url"], p["status"])


def unique_pkgs(pkgs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Sorted, with exact duplicates (the same group in overlapping profiles) dropped."""
    unique = {tuple(p.items()): p for p in pkgs}  # values are str, int, bool or None
    return sorted(unique.values(), key=_pkg_sort_key)


def pkgs_list(pkgs: Sequence[dict[str, Any]]) -> bytes:
    """``api/v0/pkgs/list`` from :func:`unique_pkgs` rows.

    One object per line, so that the file diffs well and still parses as one list.
    """
    if not pkgs:
        return b"[]\n"
    encode = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode
    text = "[\n" + ",\n".join(map(encode, pkgs)) + "\n]\n"
    return text.encode("utf-8", "surrogatepass")


def dashboard(
    pkgs: Sequence[Mapping[str, Any]], queue_length: int, now: _dt.datetime
) -> dict[str, Any]:
    """rebuilderd's ``DashboardResponse``: per suite counts of packages (artifacts)."""
    suites: dict[str, dict[str, int]] = {}
    names = {"GOOD": "good", "BAD": "bad", "UNKWN": "unknown"}
    for p in pkgs:
        stats = suites.setdefault(p["suite"], {"good": 0, "unknown": 0, "bad": 0})
        stats[names[p["status"]]] += 1
    return {
        "suites": dict(sorted(suites.items())),
        "active_builds": [],  # a static site has no builds in flight
        "queue_length": queue_length,
        "now": format_time(now),
    }


def suite_entry(
    release: str,
    component: str,
    architecture: str,
    counts: Mapping[Status, int],
    url: str,
) -> dict[str, Any]:
    """One suite of one profile in ``index.json``."""
    total = sum(counts.values())
    good = counts.get(Status.GOOD, 0)
    return {
        "release": release,
        "component": component,
        "architecture": architecture,
        "counts": {s.value: counts.get(s, 0) for s in Status},
        "total": total,
        "reproduced": round(good / total, 4) if total else None,
        "url": url,
    }


def profile_entry(
    name: str,
    distro: str,
    queue_length: int,
    last_pass: _dt.datetime | None,
    api: str,
    suites: list[dict[str, Any]],
) -> dict[str, Any]:
    """One profile in ``index.json``."""
    return {
        "name": name,
        "distro": distro,
        "queue_length": queue_length,
        "last_pass": format_time(last_pass),
        "api": api,
        "suites": suites,
    }


def index(profiles: list[dict[str, Any]]) -> dict[str, Any]:
    """``index.json``: every profile with its suites, counts and URLs (relative to the site)."""
    return {"schema": INDEX_SCHEMA, "profiles": profiles}


def group(record: GroupRecord) -> bytes:
    """A group's JSON beside its page: the record as the state keeps it."""
    return dumps(record.to_json())


def public_keys(pems: Sequence[str]) -> dict[str, list[str]]:
    """rebuilderd's ``PublicKeys``: the PEM of each current signing key."""
    return {"current": list(pems)}
