"""rebuilderd's v0 API (``common/src/api/v0/mod.rs``): the records our site writes and every
client reads.

* ``pkgs/list``: a JSON list of :class:`PkgRelease`;
* ``queue/list``: :class:`QueueList` (rebuilderd answers a POST of ``{"limit": n}``; our
  site, a GET);
* ``dashboard``: :class:`Dashboard`;
* ``public-keys``: ``{"current": [<PEM>, ...]}`` (:func:`public_keys`);
* ``builds/<id>/{log,diffoscope,attestation}``: plain files.

Statuses are spelled GOOD, BAD and UNKWN: v0 has no FAIL. rebuilderd 0.28 lists a build
that failed as UNKWN with its ``build_id`` and ``built_at`` (no artifact was compared), and
so do we (:attr:`rebuilder.model.Status.v0`).

>>> p = PkgRelease("hello", "2.10-3", "GOOD", "debian", "main", "amd64",
...                "https://mirror.example/hello.deb", 7, "2024-05-01T10:00:00")
>>> PkgRelease.from_json(p.to_json()) == p
True
>>> import json
>>> json.loads(p.encode()) == p.to_json()
True
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from itertools import chain, islice
from typing import Any

from rebuilder.api import _fields as f
from rebuilder.api._fields import json_few, json_str
from rebuilder.model import format_time

STATUSES = frozenset({"GOOD", "BAD", "UNKWN"})


@dataclass(frozen=True, slots=True)
class PkgRelease:
    """One binary package of ``pkgs/list``: its verdict and the build that made it."""

    name: str
    version: str
    status: str  # GOOD, BAD or UNKWN
    distro: str
    suite: str  # the component (Debian ``main``, Arch ``core``)
    architecture: str
    artifact_url: str
    build_id: int | None = None
    built_at: str | None = None  # naive UTC, ``2024-05-01T10:00:00``
    has_diffoscope: bool = False
    has_attestation: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "status": self.status,
            "distro": self.distro,
            "suite": self.suite,
            "architecture": self.architecture,
            "artifact_url": self.artifact_url,
            "build_id": self.build_id,
            "built_at": self.built_at,
            "has_diffoscope": self.has_diffoscope,
            "has_attestation": self.has_attestation,
        }

    def encode(self) -> str:
        """``json.dumps(self.to_json(), sort_keys=True, ensure_ascii=False)``, a few times
        faster: a Debian-sized render encodes ~80,000 of these on every pass."""
        if self.build_id is None:
            build = '"build_id": null, "built_at": null'
        else:
            when = "null" if self.built_at is None else json_str(self.built_at)
            build = f'"build_id": {int(self.build_id)}, "built_at": {when}'
        return (
            f'{{"architecture": {json_few(self.architecture)}, '
            f'"artifact_url": {json_str(self.artifact_url)}, {build}, '
            f'"distro": {json_few(self.distro)}, '
            f"{_FLAGS[self.has_attestation, self.has_diffoscope]}, "
            f'"name": {json_str(self.name)}, "status": {json_few(self.status)}, '
            f'"suite": {json_few(self.suite)}, "version": {json_str(self.version)}}}'
        )

    @classmethod
    def from_json(cls, d: Any) -> PkgRelease:
        """Parse one PkgRelease; raises ``ValueError`` naming the offending field."""
        d = f.obj(d)
        built_at = f.opt_str(d, "built_at")
        return cls(
            name=f.req_str(d, "name"),
            version=f.req_str(d, "version"),
            status=f.one_of(d, "status", STATUSES, null=False) or "UNKWN",
            distro=f.opt_str(d, "distro") or "",
            suite=f.opt_str(d, "suite") or "",
            architecture=f.req_str(d, "architecture"),
            artifact_url=f.opt_str(d, "artifact_url") or "",
            build_id=f.opt_int(d, "build_id"),
            built_at=built_at,
            has_diffoscope=f.opt_bool(d, "has_diffoscope"),
            has_attestation=f.opt_bool(d, "has_attestation"),
        )


_FLAGS = {
    (att, dif): f'"has_attestation": {str(att).lower()}, "has_diffoscope": {str(dif).lower()}'
    for att in (False, True)
    for dif in (False, True)
}


def pkgs_list(lines: list[bytes]) -> bytes:
    """``pkgs/list`` from encoded :class:`PkgRelease` objects (UTF-8), in order, one per line
    (the file diffs well and still parses as one list)."""
    if not lines:
        return b"[]\n"
    if len(lines) == 1:
        return b"[\n%s\n]\n" % lines[0]
    # the brackets ride on the first and last lines: the whole list (26 MB at Debian's
    # size) is copied once, into the file's bytes
    ends = (b"[\n" + lines[0],), islice(lines, 1, len(lines) - 1), (lines[-1] + b"\n]\n",)
    return b",\n".join(chain(*ends))


@dataclass(frozen=True, slots=True)
class PkgArtifact:
    name: str
    version: str
    url: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "url": self.url}

    @classmethod
    def from_json(cls, d: Any) -> PkgArtifact:
        d = f.obj(d)
        return cls(f.req_str(d, "name"), f.req_str(d, "version"), f.req_str(d, "url", empty=True))


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One job of ``queue/list`` (``QueueItem`` with its ``pkgbase``, a ``PkgGroup``)."""

    id: int
    name: str
    version: str
    distro: str
    suite: str
    architecture: str
    queued_at: _dt.datetime
    input_url: str | None = None
    artifacts: tuple[PkgArtifact, ...] = ()
    worker_id: int | None = None
    started_at: _dt.datetime | None = None
    last_ping: _dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pkgbase": {
                "name": self.name,
                "version": self.version,
                "distro": self.distro,
                "suite": self.suite,
                "architecture": self.architecture,
                "input_url": self.input_url,
                "artifacts": [a.to_json() for a in self.artifacts],
            },
            "version": self.version,
            "queued_at": format_time(self.queued_at),
            "worker_id": self.worker_id,
            "started_at": format_time(self.started_at),
            "last_ping": format_time(self.last_ping),
        }

    @classmethod
    def from_json(cls, d: Any) -> QueueItem:
        d = f.obj(d)
        group = d.get("pkgbase")
        if not isinstance(group, dict):
            raise ValueError("no 'pkgbase' object")
        artifacts = group.get("artifacts", [])
        if not isinstance(artifacts, list):
            raise ValueError("'pkgbase.artifacts' is not a list")
        return cls(
            id=f.req_int(d, "id"),
            name=f.req_str(group, "name"),
            version=f.req_str(d, "version"),
            distro=f.req_str(group, "distro"),
            suite=f.req_str(group, "suite", empty=True),
            architecture=f.req_str(group, "architecture"),
            queued_at=f.req_time(d, "queued_at"),
            input_url=f.opt_str(group, "input_url"),
            artifacts=tuple(PkgArtifact.from_json(a) for a in artifacts),
            worker_id=f.opt_int(d, "worker_id"),
            started_at=f.opt_time(d, "started_at"),
            last_ping=f.opt_time(d, "last_ping"),
        )


@dataclass(frozen=True, slots=True)
class QueueList:
    now: _dt.datetime
    queue: tuple[QueueItem, ...]

    def to_json(self) -> dict[str, Any]:
        return {"now": format_time(self.now), "queue": [q.to_json() for q in self.queue]}

    @classmethod
    def from_json(cls, d: Any) -> QueueList:
        d = f.obj(d)
        if not isinstance(d.get("queue"), list):
            raise ValueError("no 'queue' list")
        return cls(f.req_time(d, "now"), tuple(QueueItem.from_json(q) for q in d["queue"]))


SUITE_COUNTS = ("good", "unknown", "bad")


@dataclass(frozen=True, slots=True)
class Dashboard:
    """``dashboard``: per suite, the packages (artifacts) that are GOOD, UNKWN and BAD."""

    suites: dict[str, dict[str, int]]  # suite -> {good, unknown, bad}
    queue_length: int
    now: _dt.datetime
    active_builds: tuple[QueueItem, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "suites": {k: dict(v) for k, v in sorted(self.suites.items())},
            "active_builds": [q.to_json() for q in self.active_builds],
            "queue_length": self.queue_length,
            "now": format_time(self.now),
        }

    @classmethod
    def from_json(cls, d: Any) -> Dashboard:
        d = f.obj(d)
        suites, active = d.get("suites"), d.get("active_builds", [])
        if not isinstance(suites, dict) or not isinstance(active, list):
            raise ValueError("'suites' is not an object or 'active_builds' not a list")
        return cls(
            suites={
                name: {k: f.count(f.obj(stats), k) for k in SUITE_COUNTS}
                for name, stats in suites.items()
            },
            queue_length=f.count(d, "queue_length"),
            now=f.req_time(d, "now"),
            active_builds=tuple(QueueItem.from_json(q) for q in active),
        )


def public_keys(pems: list[str]) -> dict[str, list[str]]:
    """``public-keys`` (v0) and ``meta/public-keys`` (v1): the PEM of each current key."""
    return {"current": list(pems)}
