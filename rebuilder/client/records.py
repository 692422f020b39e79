"""What a rebuilder publishes, as the client holds it whichever API version it came from."""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from typing import Any

from rebuilder.api import v0, v1
from rebuilder.model import Status, format_time


@dataclass(frozen=True, slots=True)
class PkgEntry:
    """One binary package a rebuilder lists, from either API version.

    ``status`` is ours: a v1 package whose build left no artifact result is
    FAIL; v0 cannot say FAIL (rebuilderd 0.28 and our site say UNKWN, with
    the build id). ``suite`` is v0's suite, v1's component; ``release``,
    ``id`` and ``artifact_id`` (which v1's per-artifact diffoscope and
    attestation URLs need) are known from v1 only.
    """

    name: str
    version: str
    status: Status
    distro: str
    suite: str
    architecture: str
    artifact_url: str
    build_id: int | None = None
    built_at: str | None = None
    has_diffoscope: bool = False
    has_attestation: bool = False
    artifact_id: int | None = None
    release: str | None = None
    id: int | None = None
    source: str = ""  # the source package, when known (our local state; in neither API)

    def to_v0(self) -> v0.PkgRelease:
        return v0.PkgRelease(
            self.name,
            self.version,
            self.status.v0,
            self.distro,
            self.suite,
            self.architecture,
            self.artifact_url,
            self.build_id,
            self.built_at,
            self.has_diffoscope,
            self.has_attestation,
        )

    def to_v1(self, id: int) -> v1.BinaryPackage:
        """As rebuildctl prints it with ``--json``; ``id`` when the source had none (v0)."""
        status = {Status.GOOD: "GOOD", Status.BAD: "BAD"}.get(self.status)
        if self.status is Status.UNKWN and self.build_id is not None:
            status = "UNKWN"  # built, nothing compared: what v0 calls a failed build
        aid = self.artifact_id
        return v1.BinaryPackage(
            self.id if self.id is not None else id,
            self.name,
            self.version,
            self.distro,
            self.release,
            self.suite or None,
            self.architecture,
            self.artifact_url,
            status,
            self.build_id,
            aid,
            diffoscope_log_id=(aid or 0) if self.has_diffoscope else None,
            attestation_log_id=(aid or 0) if self.has_attestation else None,
            last_seen=_dt.datetime.fromisoformat(self.built_at) if self.built_at else None,
        )

    def to_json(self) -> dict[str, Any]:
        """The v0 ``PkgRelease`` object."""
        return self.to_v0().to_json()

    @classmethod
    def from_json(cls, d: Any) -> PkgEntry:
        """Parse one v0 PkgRelease; raises ``ValueError`` naming the offending field."""
        p = v0.PkgRelease.from_json(d)
        return cls(
            p.name,
            p.version,
            Status(p.status),
            p.distro,
            p.suite,
            p.architecture,
            p.artifact_url,
            p.build_id,
            p.built_at,
            p.has_diffoscope,
            p.has_attestation,
        )

    @classmethod
    def from_v1(cls, d: Any) -> PkgEntry:
        """Parse one v1 ``BinaryPackage``; null status with a build id is a failed build."""
        p = v1.BinaryPackage.from_json(d)
        if p.status is not None:
            status = Status(p.status)
        else:
            status = Status.UNKWN if p.build_id is None else Status.FAIL
        if "diffoscope_log_id" in d or "attestation_log_id" in d:
            has_diffoscope = p.diffoscope_log_id is not None
            has_attestation = p.attestation_log_id is not None
        else:
            # Older v1 daemons list neither log id: assume what a worker uploads with a result.
            has_diffoscope = p.artifact_id is not None and status is Status.BAD
            has_attestation = p.artifact_id is not None and status is Status.GOOD
        return cls(
            p.name,
            p.version,
            status,
            p.distribution,
            p.component or "",
            p.architecture,
            p.url,
            p.build_id,
            None,
            has_diffoscope,
            has_attestation,
            p.artifact_id,
            p.release,
            p.id,
        )


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One job in a rebuilder's build queue (v0 QueueItem or v1 QueuedJob).

    ``suite`` is v0's suite, v1's component; ``release`` is known from v1
    only. ``now`` is the clock a running build is measured against: the
    server's (v0 ``QueueList.now``) or, for v1, which does not send one,
    ours when the queue was fetched (as rebuildctl does). ``artifacts`` are
    ``(name, version, url)``.
    """

    id: int
    name: str
    version: str
    distro: str
    suite: str
    architecture: str
    queued_at: _dt.datetime
    now: _dt.datetime
    started_at: _dt.datetime | None = None
    worker_id: int | None = None
    last_ping: _dt.datetime | None = None
    release: str | None = None
    input_url: str | None = None
    artifacts: tuple[tuple[str, str, str], ...] = ()

    def to_v0(self) -> v0.QueueItem:
        return v0.QueueItem(
            self.id,
            self.name,
            self.version,
            self.distro,
            self.suite,
            self.architecture,
            self.queued_at,
            self.input_url,
            tuple(v0.PkgArtifact(n, v, u) for n, v, u in self.artifacts),
            self.worker_id,
            self.started_at,
            self.last_ping,
        )

    def to_json(self) -> dict[str, Any]:
        """rebuilderd's v0 ``QueueItem``, its ``pkgbase`` a ``PkgGroup``."""
        return self.to_v0().to_json()

    @classmethod
    def from_v0(cls, q: v0.QueueItem, now: _dt.datetime) -> QueueEntry:
        return cls(
            q.id,
            q.name,
            q.version,
            q.distro,
            q.suite,
            q.architecture,
            q.queued_at,
            now,
            q.started_at,
            q.worker_id,
            q.last_ping,
            None,
            q.input_url,
            tuple((a.name, a.version, a.url) for a in q.artifacts),
        )

    @classmethod
    def from_v1(cls, q: v1.QueuedJob, now: _dt.datetime) -> QueueEntry:
        return cls(
            q.id,
            q.name,
            q.version,
            q.distribution,
            "",
            q.architecture,
            q.queued_at,
            now,
            q.started_at,
            release=q.release,
            input_url=q.url or None,
        )


@dataclass(frozen=True, slots=True)
class Dashboard:
    """A rebuilder's status at a glance (v1 ``DashboardState`` or v0 ``DashboardResponse``).

    ``suites`` maps a suite to its counts by status: v0 counts GOOD, BAD and
    UNKWN packages per suite; v1 counts GOOD, BAD, FAIL and UNKWN builds over
    all suites, in one row named ``""``. ``queue_length`` is v0's
    ``queue_length`` or v1's jobs running + available + pending; ``building``
    the jobs running; ``waiting`` is v1's jobs held back until their retry time.
    """

    suites: dict[str, dict[Status, int]]
    queue_length: int
    building: int
    active_builds: tuple[QueueEntry, ...] = ()
    waiting: int | None = None
    now: _dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "suites": {
                name: {s.value: n for s, n in counts.items()}
                for name, counts in sorted(self.suites.items())
            },
            "queue_length": self.queue_length,
            "building": self.building,
            "waiting": self.waiting,
            "active_builds": [e.to_json() for e in self.active_builds],
            "now": format_time(self.now),
        }

    @classmethod
    def from_v0(cls, d: v0.Dashboard) -> Dashboard:
        names = {"good": Status.GOOD, "bad": Status.BAD, "unknown": Status.UNKWN}
        return cls(
            suites={s: {names[k]: n for k, n in c.items()} for s, c in d.suites.items()},
            queue_length=d.queue_length,
            building=len(d.active_builds),
            active_builds=tuple(QueueEntry.from_v0(q, d.now) for q in d.active_builds),
            now=d.now,
        )

    @classmethod
    def from_v1(cls, d: v1.Dashboard) -> Dashboard:
        counts = {
            Status.GOOD: d.good,
            Status.BAD: d.bad,
            Status.FAIL: d.fail,
            Status.UNKWN: d.unknown,
        }
        return cls(
            suites={"": counts},
            queue_length=d.running + d.available + d.pending,
            building=d.running,
            waiting=d.pending,
        )
