"""rebuilderd's v1 API (``common/src/api/v1``), the read side: what rebuildctl asks for.

* ``packages/binary``: a :class:`ResultPage` of :class:`BinaryPackage`, walked by rebuildctl
  with ``?limit=1000&sort=name&after=<last id>`` until a page comes back empty, and asked
  ``?name=X`` to find one package (``pkgs log|diffoscope|attestation``);
* ``queue``: a ResultPage of :class:`QueuedJob`, walked the same way (``queue ls``);
* ``workers``: a ResultPage of workers (``status``);
* ``dashboard``: :class:`Dashboard`;
* ``meta/public-keys``: ``{"current": [<PEM>, ...]}``;
* ``builds/<id>/log``, ``builds/<id>/artifacts`` (a list of :class:`RebuildArtifact`),
  ``builds/<id>/artifacts/<artifact id>/{diffoscope,attestation}``.

A binary package's ``status`` is its artifact's (GOOD, BAD, UNKWN) or null: null with a
``build_id`` is a build that failed (it compared nothing). Builds (:class:`Rebuild`) carry
GOOD, BAD, FAIL or UNKWN. Times are naive UTC.

>>> p = BinaryPackage(1, "hello", "2.10-3", "debian", "bookworm", "main", "amd64",
...                   "https://mirror.example/hello.deb", None, 7, None)
>>> p.failed, BinaryPackage.from_json(p.to_json()) == p
(True, True)
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from rebuilder.api import _fields as f
from rebuilder.api._fields import json_few, json_str
from rebuilder.model import format_time

ARTIFACT_STATUSES = frozenset({"GOOD", "BAD", "UNKWN"})
BUILD_STATUSES = frozenset({"GOOD", "BAD", "FAIL", "UNKWN"})
PAGE_LIMIT = 1000  # rebuilderd's default page and rebuildctl's choice


def _opt(s: str | None) -> str:
    return "null" if s is None else json_few(s)  # (releases, components, statuses, times)


def _int(n: int | None) -> str:
    return "null" if n is None else str(int(n))


T = TypeVar("T")


def result_page(records: Sequence[dict[str, Any]], total: int | None = None) -> dict[str, Any]:
    """A ``ResultPage``: ``{"total", "records"}``."""
    return {"total": len(records) if total is None else total, "records": list(records)}


def parse_page(doc: Any) -> tuple[list[Any], int | None]:
    """The records of a ResultPage and its total (None when it gives none)."""
    records = doc.get("records") if isinstance(doc, dict) else None
    if not isinstance(records, list):
        raise ValueError("not a page (an object with a 'records' list was expected)")
    total = doc.get("total")
    return records, total if isinstance(total, int) and not isinstance(total, bool) else None


def parse_list(items: Any, parse: Callable[[Any], T]) -> list[T]:
    if not isinstance(items, list):
        raise ValueError("not a JSON list")
    return [parse(i) for i in items]


@dataclass(frozen=True, slots=True)
class BinaryPackage:
    """One binary package (``models/package.rs``); ``component`` is v0's ``suite``."""

    id: int
    name: str
    version: str
    distribution: str
    release: str | None
    component: str | None
    architecture: str
    url: str
    status: str | None  # the artifact's: GOOD, BAD, UNKWN; null: not compared
    build_id: int | None = None
    artifact_id: int | None = None
    diffoscope_log_id: int | None = None
    attestation_log_id: int | None = None
    last_seen: _dt.datetime | None = None
    seen_in_last_sync: bool = True

    @property
    def failed(self) -> bool:
        """Built, but no artifact was compared: the build failed."""
        return self.status is None and self.build_id is not None

    def encode(self) -> str:
        """:meth:`to_json` as compact JSON (keys in its order, no ASCII escapes), a few
        times faster than ``json.dumps``: a Debian-sized render encodes ~80,000 of these."""
        return (
            f'{{"id":{int(self.id)},"name":{json_str(self.name)},'
            f'"version":{json_str(self.version)},"distribution":{json_few(self.distribution)},'
            f'"release":{_opt(self.release)},"component":{_opt(self.component)},'
            f'"architecture":{json_few(self.architecture)},"url":{json_str(self.url)},'
            f'"status":{_opt(self.status)},"build_id":{_int(self.build_id)},'
            f'"artifact_id":{_int(self.artifact_id)},'
            f'"diffoscope_log_id":{_int(self.diffoscope_log_id)},'
            f'"attestation_log_id":{_int(self.attestation_log_id)},'
            f'"last_seen":{_opt(format_time(self.last_seen))},'
            f'"seen_in_last_sync":{"true" if self.seen_in_last_sync else "false"}}}'
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "release": self.release,
            "component": self.component,
            "architecture": self.architecture,
            "url": self.url,
            "status": self.status,
            "build_id": self.build_id,
            "artifact_id": self.artifact_id,
            "diffoscope_log_id": self.diffoscope_log_id,
            "attestation_log_id": self.attestation_log_id,
            "last_seen": format_time(self.last_seen),
            "seen_in_last_sync": self.seen_in_last_sync,
        }

    @classmethod
    def from_json(cls, d: Any) -> BinaryPackage:
        d = f.obj(d)
        return cls(
            id=f.req_int(d, "id"),
            name=f.req_str(d, "name"),
            version=f.req_str(d, "version"),
            distribution=f.req_str(d, "distribution"),
            release=f.opt_str(d, "release"),
            component=f.opt_str(d, "component"),
            architecture=f.req_str(d, "architecture"),
            url=f.req_str(d, "url", empty=True),
            status=f.one_of(d, "status", ARTIFACT_STATUSES, null=True),
            build_id=f.opt_int(d, "build_id"),
            artifact_id=f.opt_int(d, "artifact_id"),
            diffoscope_log_id=f.opt_int(d, "diffoscope_log_id"),
            attestation_log_id=f.opt_int(d, "attestation_log_id"),
            last_seen=f.opt_time(d, "last_seen"),
            seen_in_last_sync=d.get("seen_in_last_sync") is not False,
        )


@dataclass(frozen=True, slots=True)
class QueuedJob:
    """One job of the build queue (``models/queue.rs``); ``url`` is its build input."""

    id: int
    name: str
    version: str
    distribution: str
    release: str | None
    architecture: str
    backend: str
    url: str
    queued_at: _dt.datetime
    priority: int = 1
    next_retry: _dt.datetime | None = None
    started_at: _dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "version": self.version,
            "distribution": self.distribution,
            "release": self.release,
            "architecture": self.architecture,
            "backend": self.backend,
            "url": self.url,
            "next_retry": format_time(self.next_retry),
            "priority": self.priority,
            "queued_at": format_time(self.queued_at),
            "started_at": format_time(self.started_at),
        }

    @classmethod
    def from_json(cls, d: Any) -> QueuedJob:
        d = f.obj(d)
        return cls(
            id=f.req_int(d, "id"),
            name=f.req_str(d, "name"),
            version=f.req_str(d, "version"),
            distribution=f.req_str(d, "distribution"),
            release=f.opt_str(d, "release"),
            architecture=f.req_str(d, "architecture"),
            backend=f.opt_str(d, "backend") or "",
            url=f.opt_str(d, "url") or "",
            queued_at=f.req_time(d, "queued_at"),
            priority=f.opt_int(d, "priority") or 0,
            next_retry=f.opt_time(d, "next_retry"),
            started_at=f.opt_time(d, "started_at"),
        )


REBUILD_COUNTS = ("good", "bad", "fail", "unknown")
JOB_COUNTS = ("running", "available", "pending")


@dataclass(frozen=True, slots=True)
class Dashboard:
    """``dashboard`` (``DashboardState``): builds by status over every source package,
    and jobs running, available now, and pending (waiting for their retry time)."""

    good: int
    bad: int
    fail: int
    unknown: int
    running: int
    available: int
    pending: int

    def to_json(self) -> dict[str, Any]:
        return {
            "rebuilds": {k: getattr(self, k) for k in REBUILD_COUNTS},
            "jobs": {k: getattr(self, k) for k in JOB_COUNTS},
        }

    @classmethod
    def from_json(cls, d: Any) -> Dashboard:
        d = f.obj(d)
        rebuilds, jobs = f.obj(d.get("rebuilds")), f.obj(d.get("jobs"))
        counts = {k: f.count(rebuilds, k) for k in REBUILD_COUNTS}
        return cls(**counts, **{k: f.count(jobs, k) for k in JOB_COUNTS})


@dataclass(frozen=True, slots=True)
class RebuildArtifact:
    """One artifact of a build (``models/build.rs``)."""

    id: int
    name: str
    has_diffoscope: bool
    has_attestation: bool
    status: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "has_diffoscope": self.has_diffoscope,
            "has_attestation": self.has_attestation,
            "status": self.status,
        }

    @classmethod
    def from_json(cls, d: Any) -> RebuildArtifact:
        d = f.obj(d)
        return cls(
            id=f.req_int(d, "id"),
            name=f.req_str(d, "name"),
            has_diffoscope=f.opt_bool(d, "has_diffoscope"),
            has_attestation=f.opt_bool(d, "has_attestation"),
            status=f.one_of(d, "status", ARTIFACT_STATUSES, null=True),
        )


@dataclass(frozen=True, slots=True)
class Rebuild:
    """One build (``models/build.rs``, ``builds/<id>``): what was built, and how it ended."""

    id: int
    name: str
    version: str
    distribution: str
    architecture: str
    status: str | None
    release: str | None = None
    backend: str = ""
    built_at: _dt.datetime | None = None

    @classmethod
    def from_json(cls, d: Any) -> Rebuild:
        d = f.obj(d)
        return cls(
            id=f.req_int(d, "id"),
            name=f.req_str(d, "name"),
            version=f.req_str(d, "version"),
            distribution=f.req_str(d, "distribution"),
            architecture=f.req_str(d, "architecture"),
            status=f.one_of(d, "status", BUILD_STATUSES, null=True),
            release=f.opt_str(d, "release"),
            backend=f.opt_str(d, "backend") or "",
            built_at=f.opt_time(d, "built_at"),
        )
