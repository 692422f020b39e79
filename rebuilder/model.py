"""The domain, as plain dataclasses, and their JSON shape (in this one place).

A :class:`BuildGroup` is one source package at one version for one
architecture, with the build input and every binary artifact it produces.
An :class:`Attempt` is one rebuild of a group. A :class:`GroupRecord` is what
the state remembers of a group: its latest snapshot, its attempts and its
place in the queue. Every ``to_json``/``from_json`` pair below is the only
code that knows a JSON shape; the state file, the journal, shard files and
our own site JSON all go through it.

>>> a = Artifact("hello", "2.10-3", "amd64", "https://mirror.example/pool/h/hello_2.10-3_amd64.deb",
...              "0" * 64, 1024)
>>> a.filename
'hello_2.10-3_amd64.deb'
>>> Artifact.from_json(a.to_json()) == a
True
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any
from urllib.parse import unquote, urlsplit

SCHEMA_VERSION = 1
# the FAIL reason of a build whose source is gone from the mirror: retried only for new inputs
SOURCE_UNAVAILABLE = "source unavailable"


class Status(StrEnum):
    """Verdict of a build group, in rebuilderd's vocabulary."""

    GOOD = "GOOD"  # every artifact identical
    BAD = "BAD"  # built, but an artifact differs or is missing
    FAIL = "FAIL"  # the build did not complete
    UNKWN = "UNKWN"  # not built yet

    @property
    def v0(self) -> str:
        """The status as rebuilderd's v0 API spells it: it has no FAIL, and rebuilderd 0.28
        lists a build that failed as UNKWN (with its build id: nothing was compared)."""
        return "UNKWN" if self is Status.FAIL else self.value


def utcnow() -> _dt.datetime:
    """Now, as a naive UTC datetime truncated to seconds (rebuilderd's convention)."""
    return _dt.datetime.now(_dt.UTC).replace(tzinfo=None, microsecond=0)


def format_time(t: _dt.datetime | None) -> str | None:
    """``2024-01-02T03:04:05`` (naive UTC, as rebuilderd's JSON has it)."""
    return None if t is None else t.replace(microsecond=0).isoformat()


def parse_time(s: str | None) -> _dt.datetime | None:
    return None if s is None else _dt.datetime.fromisoformat(s).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class Artifact:
    """One published binary package file."""

    name: str
    version: str
    architecture: str
    url: str
    sha256: str
    size: int

    @property
    def filename(self) -> str:
        """The file's base name, as the backend must write it into ``REBUILDERD_OUTDIR``."""
        return unquote(urlsplit(self.url).path.rsplit("/", 1)[-1])

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "architecture": self.architecture,
            "url": self.url,
            "sha256": self.sha256,
            "size": self.size,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Artifact:
        return cls(
            d["name"], d["version"], d["architecture"], d["url"], d["sha256"], int(d["size"])
        )


@dataclass(frozen=True, slots=True)
class BuildGroup:
    """One source package at one version for one architecture, and what it builds.

    ``distro``/``release``/``component``/``architecture`` place it;
    ``input_url`` is the build input the backend receives (Debian: a
    ``.buildinfo`` or a ``.dsc``; Arch: the first package file; Tails: the
    ``.img``). ``input_sha256`` is known for some distributions and checked
    when it is. ``sources`` lists extra input files the backend needs beside
    the input (e.g. every file a ``.dsc`` names), as artifacts with checksums.
    ``maintainers`` feeds the per-maintainer view; ``method`` names the build
    method (e.g. ``debrebuild`` or ``suite-chroot``) shown beside results.
    """

    name: str
    version: str
    distro: str
    release: str
    component: str
    architecture: str
    input_url: str
    artifacts: tuple[Artifact, ...]
    input_sha256: str | None = None
    sources: tuple[Artifact, ...] = ()
    maintainers: tuple[str, ...] = ()
    method: str = ""
    # :attr:`inputs_digest`, once asked for (a pass asks for each group's several times):
    # kept on the group, not in a cache keyed by it, whose every look-up hashed every field
    _inputs: str | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def key(self) -> str:
        """Identity of the group across versions: where it lives and its source name."""
        return f"{self.release}/{self.component}/{self.architecture}/{self.name}"

    @property
    def inputs_digest(self) -> str:
        """What the group was built from: a change here means a rebuild is due.

        >>> g = BuildGroup("hello", "1", "debian", "sid", "main", "amd64", "https://x/a", ())
        >>> kept = g.inputs_digest
        >>> newer = replace(g, version="2")  # made after g's digest was kept: its own
        >>> kept == replace(g).inputs_digest != newer.inputs_digest, g == replace(g)
        (True, True)
        """
        digest = self._inputs
        if digest is None:
            digest = _inputs_digest(self)
            object.__setattr__(self, "_inputs", digest)  # (frozen: a memo, not a change)
        return digest

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "distro": self.distro,
            "release": self.release,
            "component": self.component,
            "architecture": self.architecture,
            "input_url": self.input_url,
            "artifacts": [a.to_json() for a in self.artifacts],
        }
        if self.input_sha256:
            d["input_sha256"] = self.input_sha256
        if self.sources:
            d["sources"] = [s.to_json() for s in self.sources]
        if self.maintainers:
            d["maintainers"] = list(self.maintainers)
        if self.method:
            d["method"] = self.method
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> BuildGroup:
        return cls(
            name=d["name"],
            version=d["version"],
            distro=d["distro"],
            release=d["release"],
            component=d["component"],
            architecture=d["architecture"],
            input_url=d["input_url"],
            artifacts=tuple(Artifact.from_json(a) for a in d["artifacts"]),
            input_sha256=d.get("input_sha256"),
            sources=tuple(Artifact.from_json(a) for a in d.get("sources", ())),
            maintainers=tuple(d.get("maintainers", ())),
            method=d.get("method", ""),
        )


def _inputs_digest(g: BuildGroup) -> str:
    parts = [g.version, g.input_url, g.input_sha256 or ""]
    parts += [f"{a.name}={a.sha256}" for a in sorted(g.artifacts, key=lambda a: a.name)]
    parts += [f"{s.name}={s.sha256}" for s in sorted(g.sources, key=lambda a: a.name)]
    return _sha256_text("\n".join(parts))


@dataclass(frozen=True, slots=True)
class ArtifactResult:
    """How one artifact compared: the published digest and the rebuilt one (None: missing)."""

    name: str
    filename: str
    expected_sha256: str
    built_sha256: str | None

    @property
    def identical(self) -> bool:
        return self.built_sha256 == self.expected_sha256

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "filename": self.filename,
            "expected_sha256": self.expected_sha256,
            "built_sha256": self.built_sha256,
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ArtifactResult:
        return cls(d["name"], d["filename"], d["expected_sha256"], d.get("built_sha256"))


@dataclass(frozen=True, slots=True)
class Attempt:
    """One rebuild of one group at one version.

    ``files`` maps a kind (``log``, ``diffoscope``, ``attestation``,
    ``buildinfo``, ``environment``...) to a path relative to the results
    store; the site serves them. A BAD attempt compared by diffoscope carries
    ``causes`` (:mod:`rebuilder.causes` names) and ``differences``: (file,
    cause) of the differing files, a few. ``phases`` splits ``duration`` into
    ``prepare`` / ``build`` / ``compare`` / ``cleanup`` seconds (empty for
    attempts recorded before it existed).
    """

    build_id: int
    version: str
    status: Status
    started_at: _dt.datetime
    duration: float
    backend: str
    reason: str = ""
    inputs_digest: str = ""
    artifacts: tuple[ArtifactResult, ...] = ()
    files: dict[str, str] = field(default_factory=dict)
    causes: tuple[str, ...] = ()
    differences: tuple[tuple[str, str], ...] = ()
    phases: dict[str, float] = field(default_factory=dict)

    @property
    def ended_at(self) -> _dt.datetime:
        """When the build finished: its start and its whole seconds (rebuilderd's
        ``built_at``, the time of a status change)."""
        return self.started_at + _dt.timedelta(seconds=int(self.duration))

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "build_id": self.build_id,
            "version": self.version,
            "status": self.status.value,
            "started_at": format_time(self.started_at),
            "duration": round(self.duration, 3),
            "backend": self.backend,
            "artifacts": [a.to_json() for a in self.artifacts],
            "files": dict(sorted(self.files.items())),
        }
        if self.reason:
            d["reason"] = self.reason
        if self.inputs_digest:
            d["inputs_digest"] = self.inputs_digest
        if self.causes:
            d["causes"] = list(self.causes)
        if self.differences:
            d["differences"] = [{"file": f, "cause": c} for f, c in self.differences]
        if self.phases:
            d["phases"] = {k: round(v, 1) for k, v in self.phases.items()}
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Attempt:
        return cls(
            build_id=int(d["build_id"]),
            version=d["version"],
            status=Status(d["status"]),
            started_at=parse_time(d["started_at"]) or utcnow(),
            duration=float(d["duration"]),
            backend=d["backend"],
            reason=d.get("reason", ""),
            inputs_digest=d.get("inputs_digest", ""),
            artifacts=tuple(ArtifactResult.from_json(a) for a in d.get("artifacts", ())),
            files=dict(d.get("files", {})),
            causes=tuple(str(c) for c in d.get("causes", ())),
            differences=tuple(
                (str(x.get("file", "")), str(x.get("cause", ""))) for x in d.get("differences", ())
            ),
            phases={str(k): float(v) for k, v in d.get("phases", {}).items()},
        )


@dataclass(slots=True)
class GroupRecord:
    """What the state knows of one build group (mutable: the pass updates it).

    ``status`` is the verdict for the current version (UNKWN until built);
    ``retries`` counts failed attempts at the current inputs, and
    ``next_retry`` is when the plan may try again. ``requeued`` (a priority,
    0 = not requeued) puts a group first in the next plan. A group that has
    left the repository keeps its record with ``seen = False``.
    """

    group: BuildGroup
    status: Status = Status.UNKWN
    attempts: list[Attempt] = field(default_factory=list)
    retries: int = 0
    next_retry: _dt.datetime | None = None
    requeued: int = 0
    seen: bool = True
    first_seen: _dt.datetime | None = None
    last_seen: _dt.datetime | None = None

    @property
    def last_attempt(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    def current_attempt(self) -> Attempt | None:
        """The newest attempt made for the group's current inputs, if any."""
        digest = self.group.inputs_digest
        for attempt in reversed(self.attempts):
            if attempt.inputs_digest == digest:
                return attempt
        return None

    def version_attempt(self) -> Attempt | None:
        """The newest attempt at the group's current inputs (else at its current version):
        the one its verdict, its causes and rebuilderd's v0 speak of."""
        attempt = self.current_attempt()
        if attempt is not None:
            return attempt
        version = self.group.version
        return next((a for a in reversed(self.attempts) if a.version == version), None)

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "group": self.group.to_json(),
            "status": self.status.value,
            "attempts": [a.to_json() for a in self.attempts],
            "retries": self.retries,
            "next_retry": format_time(self.next_retry),
            "requeued": self.requeued,
            "seen": self.seen,
            "first_seen": format_time(self.first_seen),
            "last_seen": format_time(self.last_seen),
        }
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> GroupRecord:
        return cls(
            group=BuildGroup.from_json(d["group"]),
            status=Status(d["status"]),
            attempts=[Attempt.from_json(a) for a in d.get("attempts", ())],
            retries=int(d.get("retries", 0)),
            next_retry=parse_time(d.get("next_retry")),
            requeued=int(d.get("requeued", 0)),
            seen=bool(d.get("seen", True)),
            first_seen=parse_time(d.get("first_seen")),
            last_seen=parse_time(d.get("last_seen")),
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """What one sync of one profile found.

    ``fingerprints`` maps each index the sync read (e.g. a release's
    ``InRelease``) to a digest, so that the next sync can skip work when
    nothing changed; ``unchanged`` is then True and ``groups`` is empty:
    the state's groups stand as they are.
    """

    profile: str
    distro: str
    groups: tuple[BuildGroup, ...]
    fingerprints: dict[str, str]
    unchanged: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "distro": self.distro,
            "unchanged": self.unchanged,
            "fingerprints": dict(sorted(self.fingerprints.items())),
            "groups": [g.to_json() for g in self.groups],
        }


@dataclass(frozen=True, slots=True)
class Job:
    """One planned build: the group, why it is queued, and the build id it will record.

    ``estimate``: the seconds the group's last real build took (None: never built), which
    the pool's schedule uses to order builds and to keep those that cannot finish in time.
    """

    profile: str
    group: BuildGroup
    reason: str  # new | new version | retry due | requeued | inputs changed
    priority: int = 0
    build_id: int = 0
    estimate: float | None = None

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "profile": self.profile,
            "reason": self.reason,
            "priority": self.priority,
            "build_id": self.build_id,
            "group": self.group.to_json(),
        }
        if self.estimate is not None:
            d["estimate"] = round(self.estimate, 1)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Job:
        return cls(
            d["profile"],
            BuildGroup.from_json(d["group"]),
            d["reason"],
            int(d.get("priority", 0)),
            int(d.get("build_id", 0)),
            None if d.get("estimate") is None else float(d["estimate"]),
        )

    def with_build_id(self, build_id: int) -> Job:
        return replace(self, build_id=build_id)


def _sha256_text(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()
