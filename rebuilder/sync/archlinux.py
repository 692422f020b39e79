"""Arch Linux: ``<repo>.db`` of each repository -> one build group per pkgbase and version.

For each repository (the profile's ``components``: core, extra...) and
architecture, ``<source>/<repo>.db`` is fetched, ``source`` being a pacman
mirror template such as ``https://mirror.example/archlinux/$repo/os/$arch``.
The database is a tar archive (compressed with zstd, gzip, xz or bzip2, or
not at all: the magic bytes decide) of ``<name>-<version>/desc`` files, each
a list of ``%KEY%`` blocks. It is read in memory, member by member: nothing
of it is ever written to disk.

Binary packages are grouped by ``%BASE%`` (pkgbase) and version across the
profile's repositories, as rebuilderd groups them; the build input is the
group's first package file by name, whose ``.BUILDINFO`` the backend
(archlinux-repro) reproduces, and every package file of the group is an
artifact with the ``%SHA256SUM%`` and ``%CSIZE%`` the database gives. When
``keyring`` is set, each database must carry a detached OpenPGP signature
``<repo>.db.sig`` that gpgv verifies against it. The SHA256 of each database
is its fingerprint: a second sync of unchanged databases stops before
parsing. See docs/archlinux.md for the rules and where they differ from
rebuilderd's.

>>> mirror_url("https://mirror.example/archlinux/$repo/os/$arch", "core", "x86_64")
'https://mirror.example/archlinux/core/os/x86_64'
>>> parse_desc(b"%NAME%\\nbash\\n\\n%VERSION%\\n5.2-1\\n\\n%DESC%\\nThe shell\\n\\n")
{b'%NAME%': [b'bash'], b'%VERSION%': [b'5.2-1']}
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import tarfile
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from rebuilder import fetch
from rebuilder.config import Profile
from rebuilder.errors import ConfigError, RepositoryIndexError, SignatureError
from rebuilder.model import Artifact, BuildGroup, Snapshot
from rebuilder.sync import (
    Filter,
    ProfileOptions,
    SyncContext,
    Warnings,
    build_method,
    check_variables,
    custom_method,
    fill_template,
    package_filter,
    settings_digest,
    snapshot,
    unchanged,
)
from rebuilder.sync._release import verify_detached
from rebuilder.sync._vercmp_pacman import vercmp

log = logging.getLogger(__name__)

DISTRO = "archlinux"
# Arch has no releases: a profile without any gets this one name for BuildGroup.release.
DEFAULT_RELEASE = "rolling"
# Bumped when the grouping rules change, so that the next sync is a full one.
SYNC_RULES_VERSION = "1"
MAX_DB_SIZE = 512 << 20  # compressed; the biggest official database is ~10 MB
MAX_SIG_SIZE = 64 << 10
MAX_DESC_SIZE = 1 << 20  # a real desc is 1-3 kB; a bigger one is skipped unread
_MAX_FIELD = 1024  # characters of any single field we use

_WANTED = frozenset(
    b"%" + k + b"%"
    for k in (
        b"FILENAME",
        b"NAME",
        b"BASE",
        b"VERSION",
        b"ARCH",
        b"SHA256SUM",
        b"CSIZE",
        b"PACKAGER",
    )
)
_REQUIRED = (b"%FILENAME%", b"%NAME%", b"%VERSION%", b"%ARCH%", b"%SHA256SUM%", b"%CSIZE%")
# makepkg's rules for pkgname (alphanumerics and @._+-, no leading '-' or '.') and for a full
# version: [epoch:]pkgver-pkgrel, pkgver without ':', '-' or spaces.
_NAME = re.compile(r"[A-Za-z0-9@_+][A-Za-z0-9@._+-]{0,254}")
_VERSION = re.compile(r"(?:[0-9]+:)?[A-Za-z0-9._+~]+-[A-Za-z0-9._+~]+")
_ARCH = re.compile(r"[A-Za-z0-9_]{1,64}")
# A plain file name: joined to the mirror URL as it is, so nothing that needs quoting, no path.
_FILENAME = re.compile(r"[A-Za-z0-9@_+][A-Za-z0-9@._+~:-]{0,254}")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_SIZE = re.compile(r"[0-9]{1,15}")
_WORD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def sync(profile: Profile, ctx: SyncContext) -> Snapshot:
    """Sync one Arch Linux profile; ``unchanged`` when every database is as last time."""
    opts = Options.from_profile(profile, ctx.backends)
    dbs = [fetch_database(ref, opts.keyring) for ref in opts.databases()]
    fingerprints = {db.ref.url: db.sha256 for db in dbs}
    same = unchanged(profile, ctx, fingerprints, opts.digest, "repository database")
    if same:
        return same
    warn = Warnings(profile.name)
    grouper = Grouper(opts.keep, warn, opts.method)
    for db in dbs:
        grouper.add(db.ref, iter_database(db.data, what=db.ref.url, warn=warn))
    groups = grouper.groups()
    warn.summary()
    return snapshot(profile, DISTRO, groups, fingerprints)


# --- the profile, as this module needs it -----------------------------------


@dataclass(frozen=True, slots=True)
class DatabaseRef:
    """One repository database: where it is and where its packages are."""

    release: str
    repo: str
    arch: str
    mirror: str  # the template with $repo and $arch filled in, no trailing '/'

    @property
    def url(self) -> str:
        return f"{self.mirror}/{self.repo}.db"


@dataclass(frozen=True)
class Options(ProfileOptions):
    """An Arch profile's settings, checked once."""

    profile: str
    releases: tuple[tuple[str, str], ...]  # (name, mirror template)
    repos: tuple[str, ...]
    arches: tuple[str, ...]
    keyring: Path | None

    @classmethod
    def from_profile(cls, p: Profile, backends: Collection[str] = ()) -> Options:
        label = p.label
        method = build_method(p, backends)
        releases = tuple((r.name, r.source) for r in p.releases) or ((DEFAULT_RELEASE, p.source),)
        if not p.components:
            raise ConfigError(
                f"{label} components: at least one repository is needed (e.g. core, extra)"
            )
        if not p.architectures:
            raise ConfigError(f"{label} architectures: at least one architecture is needed")
        for value in (*p.components, *p.architectures, *(name for name, _ in releases)):
            if not _WORD.fullmatch(value) or ".." in value:
                raise ConfigError(
                    f"{label}: {value!r} is not a repository, architecture or release name"
                )
        for name, template in releases:
            check_template(template, f"{label} source (release {name})")
        keyring = None
        if p.keyring:
            keyring = Path(p.keyring)
            if not keyring.is_file():
                raise ConfigError(f"{label} keyring {keyring}: no such file")
        return cls(
            profile=p.name,
            releases=releases,
            repos=tuple(dict.fromkeys(p.components)),
            arches=tuple(dict.fromkeys(p.architectures)),
            keyring=keyring,
            keep=package_filter(p),
            method=method,
            digest=settings_digest(
                SYNC_RULES_VERSION,
                releases,
                p.components,
                p.architectures,
                p.pkgs,
                p.excludes,
                p.maintainers,
                p.keyring,
                *custom_method(p),
            ),
        )

    def databases(self) -> list[DatabaseRef]:
        """Every database to read, in the order that decides a group's repository."""
        return [
            DatabaseRef(name, repo, arch, mirror_url(template, repo, arch))
            for name, template in self.releases
            for repo in self.repos
            for arch in self.arches
        ]


def check_template(template: str, label: str) -> None:
    """ConfigError unless ``template`` is a mirror URL whose only variables are $repo, $arch."""
    if not template:
        raise ConfigError(
            f'{label}: no mirror; e.g. source = "https://mirror.example/archlinux/$repo/os/$arch"'
        )
    if template.rstrip("/").endswith(".db"):
        raise ConfigError(
            f"{label}: {template!r} names a database; give the mirror template instead, "
            "e.g. https://mirror.example/archlinux/$repo/os/$arch"
        )
    check_variables(template, ("repo", "arch"), label)


def mirror_url(template: str, repo: str, arch: str) -> str:
    """The mirror template with ``$repo``/``$arch`` (or ``${repo}``/``${arch}``) filled in."""
    return fill_template(template, {"repo": repo, "arch": arch})


# --- fetching and verifying ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Database:
    """A fetched (still compressed) database and the SHA256 of its bytes."""

    ref: DatabaseRef
    data: bytes
    sha256: str


def fetch_database(ref: DatabaseRef, keyring: Path | None) -> Database:
    """Fetch ``<repo>.db``; with a keyring, also ``<repo>.db.sig``, and verify it with gpgv."""
    data = fetch.fetch_bytes(ref.url, max_size=MAX_DB_SIZE)
    assert data is not None  # not missing_ok: a missing database is a FetchError
    if keyring is not None:
        sig = fetch.fetch_bytes(f"{ref.url}.sig", max_size=MAX_SIG_SIZE, missing_ok=True)
        if sig is None:
            raise SignatureError(
                f"{ref.url}: not signed (no {ref.repo}.db.sig), and the profile sets a keyring"
            )
        verify_detached(data, sig, keyring, what=ref.url)
    return Database(ref, data, hashlib.sha256(data).hexdigest())


# --- parsing ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Entry:
    """The fields of one ``desc`` we use."""

    name: str
    base: str
    version: str
    arch: str
    filename: str
    sha256: str
    csize: int
    packager: str


def iter_database(data: bytes, *, what: str, warn: Warnings | None = None) -> Iterator[Entry]:
    """The packages of a (compressed) database; bad or duplicate entries are skipped.

    Raises :class:`RepositoryIndexError` for what is not a whole tar
    archive (corrupt compression, not a tar, truncated); skips with a
    warning a ``desc`` bigger than :data:`MAX_DESC_SIZE`, one that lacks a
    field or has a malformed one (a ``%FILENAME%`` with a path in it, say),
    one whose directory is not ``<name>-<version>``, and a second member of
    the same name.
    """
    warn = warn or Warnings(what)
    plain = fetch.decompress(data, what=what)
    if not plain:
        raise RepositoryIndexError(f"{what}: empty file (not a repository database)")
    seen: set[str] = set()
    for member, raw in _desc_members(plain, what):
        if member in seen:
            warn("duplicate", f"{what}: {member[:200]!r} is in the archive twice; kept the first")
            continue
        seen.add(member)
        if raw is None:
            warn("size", f"{what}: {member[:200]!r} is larger than {MAX_DESC_SIZE} bytes; skipped")
            continue
        try:
            entry = entry_from_desc(parse_desc(raw))
        except ValueError as e:
            warn("entry", f"{what}: {member[:200]!r}: {e}; skipped")
            continue
        if member[: -len("/desc")] != f"{entry.name}-{entry.version}":
            warn(
                "entry",
                f"{what}: {member[:200]!r} describes {entry.name} {entry.version}: "
                "inconsistent database entry; skipped",
            )
            continue
        yield entry


def _desc_members(plain: bytes, what: str) -> Iterator[tuple[str, bytes | None]]:
    """``(member name, content)`` of each ``<dir>/desc`` file; content None when too big.

    Member data is sliced from the archive bytes, never extracted; the
    archive must end with tar's end-of-archive block, or it was truncated
    (a cut zstd stream decompresses without complaint).
    """
    try:
        with tarfile.open(fileobj=io.BytesIO(plain), mode="r:") as tar:
            for m in tar:
                end = m.offset_data + (m.size if m.isreg() else 0)
                if not m.isreg():
                    continue
                name = m.name.removeprefix("./")
                if not name.endswith("/desc") or name.count("/") != 1:
                    continue  # another file of a package (files, depends of old formats)
                if end > len(plain):
                    raise RepositoryIndexError(
                        f"{what}: truncated (the archive ends inside {name[:200]!r})"
                    )
                if m.size > MAX_DESC_SIZE:
                    yield name, None
                else:
                    yield name, plain[m.offset_data : end]
            offset = tar.offset
    except (tarfile.TarError, EOFError, ValueError, OSError) as e:
        if "unexpected end of data" in str(e):
            raise RepositoryIndexError(f"{what}: truncated (the archive ends early)") from None
        raise RepositoryIndexError(f"{what}: not a valid tar archive ({e})") from None
    if plain[offset : offset + tarfile.BLOCKSIZE] != bytes(tarfile.BLOCKSIZE):
        raise RepositoryIndexError(f"{what}: truncated (no end-of-archive marker)")


def parse_desc(raw: bytes) -> dict[bytes, list[bytes]]:
    """The ``%KEY%`` blocks of a desc that we use, as ``{b"%KEY%": [value lines]}``.

    Blocks end at a blank line; blocks of other keys are ignored, as pacman
    ignores them. A wanted key given twice is a ValueError: which one would
    pacman believe?
    """
    fields: dict[bytes, list[bytes]] = {}
    for block in raw.split(b"\n\n"):
        lines = block.strip(b"\n").split(b"\n")
        key = lines[0]
        if key in _WANTED:
            if key in fields:
                raise ValueError(f"{key.decode()} given twice")
            fields[key] = lines[1:]
    return fields


def entry_from_desc(fields: dict[bytes, list[bytes]]) -> Entry:
    """An :class:`Entry` from :func:`parse_desc`'s fields; ValueError says what is wrong.

    A desc without ``%BASE%`` (packages older than pacman 4.1) is its own
    pkgbase; one without ``%PACKAGER%`` has none.
    """
    for key in _REQUIRED:
        if key not in fields:
            raise ValueError(f"no {key.decode()}")
    name = _one(fields, b"%NAME%", _NAME)
    version = _one(fields, b"%VERSION%", _VERSION)
    base = _one(fields, b"%BASE%", _NAME) if b"%BASE%" in fields else name
    arch = _one(fields, b"%ARCH%", _ARCH)
    filename = _one(fields, b"%FILENAME%", _FILENAME)
    sha256 = _one(fields, b"%SHA256SUM%", _SHA256).lower()
    csize = _one(fields, b"%CSIZE%", _SIZE)
    packager = ""
    if b"%PACKAGER%" in fields:
        values = fields[b"%PACKAGER%"]
        if len(values) > 1:
            raise ValueError("%PACKAGER% has more than one value")
        packager = values[0].decode("utf-8", "replace") if values else ""
        if len(packager) > _MAX_FIELD or not packager.isprintable():
            raise ValueError("%PACKAGER% is too long or has control characters")
    return Entry(name, base, version, arch, filename, sha256, int(csize), packager)


def _one(fields: dict[bytes, list[bytes]], key: bytes, pattern: re.Pattern[str]) -> str:
    values = fields[key]
    k = key.decode()
    if len(values) != 1:
        raise ValueError(f"{k} has {len(values)} values, not one")
    raw = values[0]
    if len(raw) > _MAX_FIELD:
        raise ValueError(f"{k} is {len(raw)} bytes long")
    text = raw.decode("ascii", "replace")
    if k == "%FILENAME%" and ("/" in text or "\\" in text or text in (".", "..")):
        raise ValueError(f"{k} {text[:100]!r} is a path, not a file name")
    if not pattern.fullmatch(text):
        raise ValueError(f"malformed {k} {text[:100]!r}")
    return text


# --- grouping ----------------------------------------------------------------


@dataclass(slots=True)
class _Group:
    component: str  # the first repository (in the profile's order) that has the group
    mirror: str
    artifacts: dict[str, Artifact] = field(default_factory=dict)  # by file name
    packagers: dict[str, None] = field(default_factory=dict)


class Grouper:
    """Collects packages into build groups keyed by (release, arch, pkgbase, version)."""

    def __init__(self, keep: Filter | None, warn: Warnings, method: str = "") -> None:
        self.keep, self.warn, self.method = keep, warn, method
        self.acc: dict[tuple[str, str, str, str], _Group] = {}

    def add(self, ref: DatabaseRef, entries: Iterable[Entry]) -> None:
        keep, acc = self.keep, self.acc
        for e in entries:
            if keep is not None and not keep(e.name, (e.packager,)):
                continue
            key = (ref.release, ref.arch, e.base, e.version)
            group = acc.get(key)
            if group is None:
                group = acc[key] = _Group(ref.repo, ref.mirror)
            art = Artifact(
                e.name, e.version, e.arch, f"{ref.mirror}/{e.filename}", e.sha256, e.csize
            )
            other = group.artifacts.get(e.filename)
            if other is None:
                group.artifacts[e.filename] = art
            elif other.sha256 != art.sha256:
                self.warn(
                    "duplicate",
                    f"{e.filename}: two different files in the databases; kept the first",
                )
            if e.packager:
                group.packagers[e.packager] = None

    def groups(self) -> list[BuildGroup]:
        """The build groups; of two versions of one pkgbase in one repository, the newer."""
        best: dict[tuple[str, str, str, str], tuple[str, _Group]] = {}
        for (release, arch, base, version), g in self.acc.items():
            k = (release, g.component, arch, base)
            have = best.get(k)
            if have is None:
                best[k] = (version, g)
                continue
            newer = vercmp(version, have[0]) > 0
            kept, dropped = (version, have[0]) if newer else (have[0], version)
            self.warn(
                "older",
                f"{g.component}/{arch}: {base} is listed at {dropped} and {kept}; kept {kept}",
            )
            if newer:
                best[k] = (version, g)
        return [
            _build_group(release, comp, arch, base, version, g, self.method)
            for (release, comp, arch, base), (version, g) in best.items()
        ]


def _build_group(
    release: str, comp: str, arch: str, base: str, version: str, g: _Group, method: str
) -> BuildGroup:
    artifacts = tuple(sorted(g.artifacts.values(), key=lambda a: (a.name, a.url)))
    first = artifacts[0]  # rebuilderd's input: the first package file of the group by name
    return BuildGroup(
        name=base,
        version=version,
        distro=DISTRO,
        release=release,
        component=comp,
        architecture=arch,
        input_url=first.url,
        artifacts=artifacts,
        input_sha256=first.sha256,
        maintainers=tuple(g.packagers),
        method=method,
    )
