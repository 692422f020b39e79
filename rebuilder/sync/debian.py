"""Debian: signed Release -> Sources + Packages -> one build group per (source, version, arch).

For each release of the profile the signed ``InRelease`` is fetched and
verified (:mod:`rebuilder.sync._release`); its SHA256 is the fingerprint of
the whole suite, so a second sync of an unchanged mirror stops there. Else
the ``Sources`` and ``Packages`` indexes of each component are fetched in the
cheapest compression to decompress that the Release lists, checked against
the Release's SHA256 and size, and cached by that SHA256.

The indexes are big (Debian unstable: ~140 MB of text), so they are not
parsed as deb822 in full: one compiled regex pulls out only the lines of the
fields we use, and a short loop cuts them into stanzas at the blank lines
the same regex reports. See docs/sync-debian.md for the rules (binNMUs,
``Architecture: all``, build inputs) and the measurements behind the choices.

>>> split_maintainers('"Doe, Jane" <jane@example.org>, John Roe <john@example.org>,')
('"Doe, Jane" <jane@example.org>', 'John Roe <john@example.org>')
>>> buildinfo_url("https://bi.example", "pool/main/h/hello", "hello", "1:2.10-3", "amd64")
'https://bi.example/buildinfo-pool/h/hello/hello_2.10-3_amd64.buildinfo'
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections.abc import Collection, Generator, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from rebuilder import fetch
from rebuilder.config import Profile, Release
from rebuilder.errors import ConfigError, FetchError, RepositoryIndexError
from rebuilder.model import Artifact, BuildGroup, Snapshot
from rebuilder.sync import (
    ProfileOptions,
    SyncContext,
    Warnings,
    build_method,
    package_filter,
    settings_digest,
    snapshot,
    unchanged,
)
from rebuilder.sync._release import IndexEntry, ReleaseFile, fetch_release

log = logging.getLogger(__name__)

DISTRO = "debian"
# rebuilderd's default for a profile without buildinfo_url: Debian's buildinfo service
DEFAULT_BUILDINFO_URL = "https://buildinfos.debian.net"
# Bumped when the grouping rules change, so that the next sync is a full one.
SYNC_RULES_VERSION = "1"
# Cheapest to decompress first: on unstable's main, zlib inflates Sources + Packages
# (135 MB) in ~0.5 s where xz needs ~1.7 s; the .gz download is ~37 % larger, but it
# happens once per index change and the cache keeps it. Plain last but one: 4-5x the bytes.
COMPRESSION_PREFERENCE = (".gz", ".xz", ".zst", "", ".bz2")


def sync(profile: Profile, ctx: SyncContext) -> Snapshot:
    """Sync one Debian profile; ``unchanged`` when every release's InRelease is as last time."""
    opts = Options.from_profile(profile, ctx.backends)
    releases = [
        (
            rel,
            fetch_release(
                rel.source, rel.name, profile.keyring, check_valid_until=profile.check_valid_until
            ),
        )
        for rel in profile.releases
    ]
    fingerprints = {release.url: release.sha256 for _, release in releases}
    same = unchanged(profile, ctx, fingerprints, opts.digest, "release")
    if same:
        return same
    cache = IndexCache(ctx.cache_dir / "debian-indexes")
    groups: list[BuildGroup] = []
    for rel, release in releases:
        groups += sync_release(rel, release, opts, cache)
    cache.prune()
    return snapshot(profile, DISTRO, groups, fingerprints)


# --- the profile, as this module needs it -----------------------------------


@dataclass(frozen=True)
class Options(ProfileOptions):
    """A Debian profile's settings, checked once."""

    profile: str
    buildinfo_url: str
    components: tuple[str, ...]
    arches: tuple[str, ...]  # concrete architectures (not "all")
    want_all: bool

    @classmethod
    def from_profile(cls, p: Profile, backends: Collection[str] = ()) -> Options:
        label = p.label
        method = build_method(p, backends)
        bi_url = (p.buildinfo_url or DEFAULT_BUILDINFO_URL).rstrip("/")
        if not p.components:
            raise ConfigError(f"{label} components: at least one component is needed")
        if not p.architectures:
            raise ConfigError(f"{label} architectures: at least one architecture is needed")
        for value in (*p.components, *p.architectures, *(r.name for r in p.releases)):
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._/-]*", value) or ".." in value:
                raise ConfigError(
                    f"{label}: {value!r} is not a release, component or architecture name"
                )
        arches = tuple(a for a in dict.fromkeys(p.architectures) if a != "all")
        return cls(
            profile=p.name,
            method=method,
            buildinfo_url=bi_url,
            components=tuple(dict.fromkeys(p.components)),
            arches=arches,
            want_all="all" in p.architectures,
            keep=package_filter(p),
            digest=settings_digest(
                SYNC_RULES_VERSION,
                method,
                bi_url,
                p.components,
                p.architectures,
                p.pkgs,
                p.excludes,
                p.maintainers,
                [(r.name, r.source) for r in p.releases],
            ),
        )


# --- one release --------------------------------------------------------------


def sync_release(
    rel: Release, release: ReleaseFile, opts: Options, cache: IndexCache
) -> list[BuildGroup]:
    """Every build group of one verified release, across the profile's components."""
    mirror = rel.source.rstrip("/")
    dists = f"{mirror}/dists/{rel.name}"
    warn = Warnings(dists)
    sources: dict[tuple[str, str], SourcePackage] = {}
    grouper = Grouper(rel.name, mirror, opts, sources, warn)
    todo = [(comp, f"{comp}/source/Sources") for comp in opts.components]
    for comp in opts.components:
        todo += [(comp, path) for path in packages_paths(release, comp, opts)]
    loaded = _prefetched(cache, dists, release, todo)
    try:
        for (comp, path), data in zip(todo, loaded, strict=True):
            what = f"{dists}/{path}"
            if path.endswith("/Sources"):
                parse_sources(data, what=what, warn=warn, into=sources)
            else:
                grouper.add(comp, iter_packages(data, what=what, warn=warn))
            del data
    finally:
        loaded.close()  # on an error, wait for the index in flight instead of leaving it
    groups = grouper.groups()
    warn.summary()
    return groups


def _prefetched(
    cache: IndexCache, dists: str, release: ReleaseFile, todo: list[tuple[str, str]]
) -> Generator[bytes, None, None]:
    """The indexes of ``todo`` in order, the next one downloaded and decompressed meanwhile.

    zlib and lzma release the GIL, so inflating the next index in a thread
    overlaps with parsing this one; only one index is ever in flight.
    """
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="index") as pool:
        future = pool.submit(cache.load, dists, release, todo[0][1]) if todo else None
        for i in range(len(todo)):
            assert future is not None
            data = future.result()
            future = (
                pool.submit(cache.load, dists, release, todo[i + 1][1])
                if i + 1 < len(todo)
                else None
            )
            yield data
            del data


def packages_paths(release: ReleaseFile, comp: str, opts: Options) -> list[str]:
    """The ``Packages`` indexes to read for one component.

    ``Architecture: all`` packages are also in every ``binary-ARCH/Packages``
    when the Release says so (``No-Support-for-Architecture-all: Packages``);
    ``binary-all/Packages`` is then only read when no concrete architecture is.
    """
    paths = []
    for arch in opts.arches:
        path = f"{comp}/binary-{arch}/Packages"
        if not listed(release, path):
            have = " ".join(release.architectures) or "none listed"
            raise RepositoryIndexError(
                f"{release.url}: no {path} index (architectures of this release: {have})"
            )
        paths.append(path)
    if opts.want_all:
        path = f"{comp}/binary-all/Packages"
        if listed(release, path):
            if not (opts.arches and release.all_in_arch_packages):
                paths.append(path)
        elif not opts.arches:
            raise RepositoryIndexError(f"{release.url}: no {path} index")
    return paths


def listed(release: ReleaseFile, path: str) -> bool:
    return any(path + suffix in release.files for suffix in COMPRESSION_PREFERENCE)


def choose_index(release: ReleaseFile, path: str) -> IndexEntry:
    """The variant of index ``path`` to download: the first listed in our preference."""
    for suffix in _usable_suffixes():
        entry = release.files.get(path + suffix)
        if entry is not None:
            return entry
    raise RepositoryIndexError(f"{release.url}: lists no {path} index")


@functools.cache
def _usable_suffixes() -> tuple[str, ...]:
    try:
        import zstandard  # noqa: F401
    except ImportError:
        return tuple(s for s in COMPRESSION_PREFERENCE if s != ".zst")
    return COMPRESSION_PREFERENCE


# --- the index cache -------------------------------------------------------------


class IndexCache:
    """Downloaded (compressed) indexes, one file per SHA256: an unchanged index is not fetched."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.used: set[str] = set()

    def load(self, dists: str, release: ReleaseFile, path: str) -> bytes:
        """The decompressed content of index ``path``, verified against the Release."""
        entry = choose_index(release, path)
        raw = self.fetch(dists, release, entry)
        plain = release.files.get(path)
        hint = plain.size if plain is not None and entry is not plain else None
        return fetch.decompress(raw, what=f"{dists}/{entry.path}", size_hint=hint)

    def fetch(self, dists: str, release: ReleaseFile, entry: IndexEntry) -> bytes:
        self.used.add(entry.sha256)
        cached = self.root / entry.sha256
        try:
            data = cached.read_bytes()
        except OSError:
            pass
        else:
            if len(data) == entry.size and hashlib.sha256(data).hexdigest() == entry.sha256:
                return data
            log.warning("%s: corrupt cache entry, downloading again", cached)
        urls = [f"{dists}/{entry.path}"]
        if release.acquire_by_hash:
            # by-hash names cannot change under us while the mirror updates between our
            # fetch of InRelease and of the index; the plain name is the fallback.
            folder = entry.path.rsplit("/", 1)[0] if "/" in entry.path else ""
            urls.insert(0, f"{dists}/{folder}/by-hash/SHA256/{entry.sha256}")
        error: FetchError | None = None
        for url in urls:
            try:
                fetch.download(url, cached, sha256=entry.sha256, size=entry.size)
                return cached.read_bytes()
            except FetchError as e:
                log.debug("%s", e)
                error = e
        assert error is not None
        raise error

    def prune(self) -> None:
        """Remove the cached indexes this sync did not use (older versions)."""
        if not self.root.is_dir():
            return
        for p in self.root.iterdir():
            if _HEX64.fullmatch(p.name) and p.name not in self.used:
                p.unlink(missing_ok=True)


_HEX64 = re.compile(r"[0-9a-f]{64}")


# --- parsing ---------------------------------------------------------------------


@dataclass(slots=True)
class SourcePackage:
    """The fields of a ``Sources`` stanza we use (maintainers and files decoded on demand)."""

    name: str
    version: str
    directory: str
    maintainer: bytes = b""
    uploaders: bytes = b""
    checksums: bytes = b""  # the raw Checksums-Sha256 value
    extra_source_only: bool = False
    _maintainers: tuple[str, ...] | None = field(default=None, repr=False)

    @property
    def maintainers(self) -> tuple[str, ...]:
        """``Maintainer`` then each of ``Uploaders``."""
        if self._maintainers is None:
            raw = self.maintainer + b", " + self.uploaders if self.uploaders else self.maintainer
            self._maintainers = split_maintainers(raw.decode("utf-8", "replace"))
        return self._maintainers

    def files(self) -> list[tuple[str, str, int]]:
        """``(name, sha256, size)`` of each file of ``Checksums-Sha256`` (the .dsc first)."""
        out = []
        for line in self.checksums.decode("utf-8", "replace").splitlines():
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3 or not _SHA256.fullmatch(parts[0]) or not parts[1].isdigit():
                raise RepositoryIndexError(f"{self.name} {self.version}: bad Checksums-Sha256")
            name = parts[2]
            if not _NAME_OK.fullmatch(name) or name in (".", ".."):
                raise RepositoryIndexError(f"{self.name} {self.version}: bad file name {name!r}")
            out.append((name, parts[0].lower(), int(parts[1])))
        out.sort(key=lambda f: not f[0].endswith(".dsc"))
        return out


@dataclass(slots=True)
class BinaryPackage:
    """The fields of a ``Packages`` stanza we use; ``path`` is ``filename`` ready for a URL."""

    name: str
    version: str
    architecture: str
    source: str
    source_version: str
    filename: str
    size: int
    sha256: str
    path: str = ""


_SOURCE_FIELDS = (
    rb"Package|Version|Directory|Maintainer|Uploaders|Extra-Source-Only|Checksums-Sha256"
)
_BINARY_FIELDS = rb"Package|Source|Version|Architecture|Filename|Size|SHA256"
_MULTILINE = rb"([^\n]*(?:\n[ \t][^\n]*)*)"
# A wanted field's line (with its continuation lines), or the empty match before a blank
# line: the stanza boundary. Anchoring on "\n" lets the regex engine skip from newline to
# newline; the first line of the text is matched on its own.
_SOURCE_RE = re.compile(rb"\n(?:(" + _SOURCE_FIELDS + rb"):[ \t]*" + _MULTILINE + rb"|(?=\n))")
_SOURCE_FIRST = re.compile(rb"(" + _SOURCE_FIELDS + rb"):[ \t]*" + _MULTILINE)
_BINARY_RE = re.compile(rb"\n(?:(" + _BINARY_FIELDS + rb"):[ \t]*([^\n]*)|(?=\n))")
_BINARY_FIRST = re.compile(rb"(" + _BINARY_FIELDS + rb"):[ \t]*([^\n]*)")
_CHUNK = 4 << 20  # findall over 4 MB at a time: the same speed, a fraction of the memory
_HEX = b"0123456789abcdefABCDEF"
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")
_SOURCE_FIELD = re.compile(r"(\S+)(?:\s+\((\S+)\))?")
# What may name a package, a version, an architecture or a file: no '/', no spaces.
_NAME_OK = re.compile(r"[A-Za-z0-9][A-Za-z0-9+._~:-]*")
_NAME_VERSION_ARCH = re.compile(
    r"[A-Za-z0-9][A-Za-z0-9+._~:-]* [A-Za-z0-9][A-Za-z0-9+._~:-]* [a-z0-9-]+"
)
# A relative path of such names without '.' or '..' components, which needs no URL quoting.
_PLAIN_PATH = re.compile(r"(?:(?!\.\.?/)[A-Za-z0-9_.~+-]+/)*(?!\.\.?$)[A-Za-z0-9_.~+-]+")


def stanzas(
    data: bytes, regex: re.Pattern[bytes], first: re.Pattern[bytes], *, what: str
) -> Iterator[dict[bytes, bytes]]:
    """The wanted fields of each stanza of a deb822 index, as ``{name: raw value}``.

    >>> [s[b"Package"] for s in stanzas(b"Package: a\\nX: 1\\n\\nPackage: b\\n",
    ...  _BINARY_RE, _BINARY_FIRST, what="t")]
    [b'a', b'b']
    """
    head = data[:65536]
    if b"\0" in head:
        raise RepositoryIndexError(f"{what}: not a text index (binary data)")
    if b"\r\n" in head:
        raise RepositoryIndexError(f"{what}: CRLF line ends (not a Debian index)")
    current: dict[bytes, bytes] = {}
    m = first.match(data)
    if m:
        current[m.group(1)] = m.group(2)
    pos, end = 0, len(data)
    while pos < end:
        # cut at a blank line; the "\n\n" stays whole in this chunk for the boundary match
        cut = data.find(b"\n\n", pos + _CHUNK)
        cut = end if cut < 0 else cut + 2
        for name, value in regex.findall(data, pos, cut):
            if name:
                current[name] = value
            elif current:
                yield current
                current = {}
        pos = cut - 1
        if cut >= end:
            break
    if current:
        yield current


def parse_sources(
    data: bytes,
    *,
    what: str,
    warn: Warnings | None = None,
    into: dict[tuple[str, str], SourcePackage] | None = None,
) -> dict[tuple[str, str], SourcePackage]:
    """The source packages of a ``Sources`` index, by ``(name, version)``.

    A stanza that lacks a field we need or has a malformed one is skipped
    with a warning; of two stanzas of one source version the first is kept,
    unless it is ``Extra-Source-Only`` and the second is not.
    """
    warn = warn or Warnings(what)
    out = {} if into is None else into
    for n, st in enumerate(stanzas(data, _SOURCE_RE, _SOURCE_FIRST, what=what), 1):
        label = st.get(b"Package", b"stanza %d" % n).decode("utf-8", "replace")[:100]
        try:
            name = st[b"Package"].decode().strip()
            version = st[b"Version"].decode().strip()
            directory = st[b"Directory"].decode().strip()
        except KeyError as e:
            warn("stanza", f"{what}: source {label} lacks {e.args[0].decode()}; skipped")
            continue
        except UnicodeDecodeError:
            warn("stanza", f"{what}: source {label} is not UTF-8; skipped")
            continue
        if not (_NAME_OK.fullmatch(name) and _NAME_OK.fullmatch(version)):
            warn("stanza", f"{what}: source {label}: malformed name or version; skipped")
            continue
        if not _PLAIN_PATH.fullmatch(directory) and (why := unsafe_path(directory)):
            warn("path", f"{what}: {name} {version}: Directory {directory!r} {why}; skipped")
            continue
        src = SourcePackage(
            name,
            version,
            directory,
            maintainer=st.get(b"Maintainer", b""),
            uploaders=st.get(b"Uploaders", b""),
            checksums=st.get(b"Checksums-Sha256", b""),
            extra_source_only=st.get(b"Extra-Source-Only", b"").strip() == b"yes",
        )
        old = out.get((name, version))
        if old is not None and not (old.extra_source_only and not src.extra_source_only):
            if not src.extra_source_only:
                warn("duplicate", f"{what}: duplicate source {name} {version}; kept the first")
            continue
        out[(name, version)] = src
    return out


def parse_packages(data: bytes, *, what: str, warn: Warnings | None = None) -> list[BinaryPackage]:
    """The binary packages of a ``Packages`` index (see :func:`iter_packages`)."""
    return list(iter_packages(data, what=what, warn=warn))


def iter_packages(
    data: bytes, *, what: str, warn: Warnings | None = None
) -> Iterator[BinaryPackage]:
    """The binary packages of a ``Packages`` index; bad or duplicate stanzas are skipped.

    Skipped with a warning: a stanza without Package, Version, Architecture,
    Filename, Size or SHA256, or with a malformed one; a Filename that is
    absolute or climbs out of the mirror with ``..``; a second stanza of the
    same package, version and architecture.
    """
    warn = warn or Warnings(what)
    seen: set[tuple[str, str, str]] = set()
    for n, st in enumerate(stanzas(data, _BINARY_RE, _BINARY_FIRST, what=what), 1):
        try:
            pkg = _binary(st)
        except (KeyError, UnicodeDecodeError, ValueError) as e:
            label = st.get(b"Package", b"stanza %d" % n).decode("utf-8", "replace")[:100]
            why = f"lacks {e.args[0].decode()}" if isinstance(e, KeyError) else str(e)
            warn("stanza", f"{what}: {label}: {why}; skipped")
            continue
        if pkg.path == "":
            unsafe = unsafe_path(pkg.filename)
            if unsafe:
                warn(
                    "path",
                    f"{what}: {pkg.name} {pkg.version}: Filename {pkg.filename!r} "
                    f"{unsafe}; skipped",
                )
                continue
            pkg.path = quote(pkg.filename, safe="/+~")
        ident = (pkg.name, pkg.version, pkg.architecture)
        if ident in seen:
            warn(
                "duplicate",
                f"{what}: duplicate stanza {pkg.name} {pkg.version} "
                f"{pkg.architecture}; kept the first",
            )
            continue
        seen.add(ident)
        yield pkg


def _binary(st: dict[bytes, bytes]) -> BinaryPackage:
    name = st[b"Package"].decode().strip()
    version = st[b"Version"].decode().strip()
    arch = st[b"Architecture"].decode().strip()
    filename = st[b"Filename"].decode().strip()
    sha = st[b"SHA256"].strip()
    size = st[b"Size"].strip()
    if len(sha) != 64 or sha.strip(_HEX):
        raise ValueError(f"SHA256 {sha[:80].decode('utf-8', 'replace')!r} is not a SHA256")
    if not size.isdigit():
        raise ValueError(f"Size {size[:40].decode('utf-8', 'replace')!r} is not a number")
    if not _NAME_VERSION_ARCH.fullmatch(f"{name} {version} {arch}"):
        raise ValueError("malformed Package, Version or Architecture")
    source, source_version = name, version
    raw = st.get(b"Source")
    if raw is not None:
        text = raw.decode().strip()
        if "(" in text or " " in text:
            m = _SOURCE_FIELD.fullmatch(text)
            if not m or not _NAME_OK.fullmatch(m.group(2) or "x"):
                raise ValueError(f"malformed Source {text[:80]!r}")
            text, source_version = m.group(1), m.group(2) or version
        if not _NAME_OK.fullmatch(text):
            raise ValueError(f"malformed Source {text[:80]!r}")
        source = text
    path = filename if _PLAIN_PATH.fullmatch(filename) else ""
    return BinaryPackage(
        name, version, arch, source, source_version, filename, int(size), sha.decode().lower(), path
    )


def unsafe_path(path: str) -> str | None:
    """Why a path from an index must not be joined to the mirror URL, or None if it may.

    >>> unsafe_path("pool/main/h/hello/hello_2.10-3_amd64.deb") is None
    True
    >>> unsafe_path("pool/../../etc/passwd"), unsafe_path("/etc/passwd")
    ('has a .. component', 'is absolute')
    """
    if not path:
        return "is empty"
    if path.startswith("/"):
        return "is absolute"
    if "\\" in path or not path.isprintable() or " " in path:
        return "has a backslash, a space or a control character"
    parts = path.split("/")
    if ".." in parts:
        return "has a .. component"
    if "" in parts or "." in parts:
        return "has an empty or . component"
    if ":" in parts[0]:
        return "is a URL"
    return None


def split_maintainers(text: str) -> tuple[str, ...]:
    """``Name <email>`` entries of Maintainer/Uploaders (commas inside names survive)."""
    if "\n" in text or "\t" in text:
        text = " ".join(text.split())
    parts = text.split(">,")
    out = [p.strip() + ">" for p in parts[:-1]]
    out.append(parts[-1].strip().rstrip(",").strip())
    return tuple(p for p in out if p)


def buildinfo_url(base: str, directory: str, source: str, version: str, arch: str) -> str:
    """Where a buildinfo service keeps a build's .buildinfo (rebuilderd's rule)."""
    folder = "/".join(directory.split("/")[2:])
    if not folder:  # not a pool/<component>/... Directory: the pool's usual hashing
        folder = f"{source[:4] if source.startswith('lib') else source[:1]}/{source}"
    plain = version.split(":", 1)[1] if ":" in version else version
    return f"{base}/buildinfo-pool/{url_path(folder)}/{source}_{plain}_{arch}.buildinfo"


def url_path(path: str) -> str:
    """``path`` as a URL path: Debian's names need no quoting, odd ones get it."""
    return path if _PLAIN_PATH.fullmatch(path) else quote(path, safe="/+~")


# --- grouping ----------------------------------------------------------------


_BINNMU = re.compile(r"\+b\d+")


class Grouper:
    """Collects binaries into build groups keyed by (component, arch, source, version)."""

    def __init__(
        self,
        release: str,
        mirror: str,
        opts: Options,
        sources: dict[tuple[str, str], SourcePackage],
        warn: Warnings,
    ) -> None:
        self.release, self.mirror, self.opts, self.sources, self.warn = (
            release,
            mirror,
            opts,
            sources,
            warn,
        )
        self.wanted = set(opts.arches) | ({"all"} if opts.want_all else set())
        # (component, arch, source, group version) -> (source, {file name: artifact})
        self.acc: dict[tuple[str, str, str, str], tuple[SourcePackage, dict[str, Artifact]]] = {}

    def add(self, component: str, binaries: Iterable[BinaryPackage]) -> None:
        keep, wanted, sources, mirror = self.opts.keep, self.wanted, self.sources, self.mirror
        for b in binaries:
            if b.architecture not in wanted:
                continue
            src = sources.get((b.source, b.source_version))
            if src is None:
                self.warn(
                    "nosource",
                    f"{b.name} {b.version}: source {b.source} "
                    f"{b.source_version} is not in Sources; skipped",
                )
                continue
            if src.extra_source_only:
                log.debug("%s %s: built from extra-source-only %s", b.name, b.version, src.name)
            if keep is not None and not keep(b.name, src.maintainers):
                continue
            version = src.version
            if b.version != version and _is_binnmu(b.version, version):
                version = b.version  # a binNMU is its own build: its own .buildinfo
            key = (component, b.architecture, src.name, version)
            entry = self.acc.get(key)
            if entry is None:
                entry = self.acc[key] = (src, {})
            art = Artifact(
                b.name, b.version, b.architecture, f"{mirror}/{b.path}", b.sha256, b.size
            )
            fname = b.filename.rsplit("/", 1)[-1]
            other = entry[1].get(fname)
            if other is None:
                entry[1][fname] = art
            elif other.sha256 != art.sha256:
                self.warn(
                    "duplicate", f"{fname}: two different files in the indexes; kept the first"
                )

    def groups(self) -> list[BuildGroup]:
        """The build groups; of two versions of one source on one arch, the newer."""
        best: dict[tuple[str, str, str], tuple[str, SourcePackage, dict[str, Artifact]]] = {}
        older = 0
        for (comp, arch, name, version), (src, arts) in self.acc.items():
            k = (comp, arch, name)
            have = best.get(k)
            if have is None or _version_compare(version, have[0]) > 0:
                older += have is not None
                best[k] = (version, src, arts)
            else:
                older += 1
        if older:
            log.info(
                "%s: %d older source versions still in the indexes were left out",
                self.release,
                older,
            )
        out = []
        for (comp, arch, _name), (version, src, arts) in best.items():
            try:
                out.append(self._group(comp, arch, version, src, arts))
            except RepositoryIndexError as e:
                self.warn("stanza", f"{e}; skipped")
        return out

    def _group(
        self, comp: str, arch: str, version: str, src: SourcePackage, arts: dict[str, Artifact]
    ) -> BuildGroup:
        input_sha256: str | None = None
        files: tuple[Artifact, ...] = ()
        if self.opts.method == "suite-chroot":
            listed = src.files()
            if not listed or not listed[0][0].endswith(".dsc"):
                raise RepositoryIndexError(f"{src.name} {src.version}: no .dsc in Sources")
            base = f"{self.mirror}/{url_path(src.directory)}"
            dsc, input_sha256, _ = listed[0]
            input_url = f"{base}/{url_path(dsc)}"
            files = tuple(
                Artifact(n, src.version, "source", f"{base}/{url_path(n)}", sha, size)
                for n, sha, size in listed[1:]
            )
        else:
            input_url = buildinfo_url(
                self.opts.buildinfo_url, src.directory, src.name, version, arch
            )
        return BuildGroup(
            name=src.name,
            version=version,
            distro=DISTRO,
            release=self.release,
            component=comp,
            architecture=arch,
            input_url=input_url,
            artifacts=tuple(sorted(arts.values(), key=lambda a: (a.name, a.url))),
            input_sha256=input_sha256,
            sources=files,
            maintainers=src.maintainers,
            method=self.opts.method,
        )


def _is_binnmu(binary_version: str, source_version: str) -> bool:
    """Is the binary a binNMU of the source: its version the source's plus ``+bN``?

    >>> _is_binnmu("1:2.0-1+b3", "1:2.0-1"), _is_binnmu("2.0+b1-1", "2.0+b1-1")
    (True, False)
    """
    return binary_version.startswith(source_version) and bool(
        _BINNMU.fullmatch(binary_version, len(source_version))
    )


def _version_compare(a: str, b: str) -> int:
    from debian.debian_support import version_compare  # only for the rare two-version case

    return version_compare(a, b)
