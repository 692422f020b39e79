"""Tails: a mirror's release directory -> one build group per release and architecture.

rebuilderd's rule (``tools/src/schedule/tails.rs``): the directory listing
of ``<source>/<release>/`` names a ``tails-<arch>-<version>/`` directory;
its ``tails-<arch>-<version>.img`` and ``.iso`` are the artifacts, the
``.img`` is the build input, the group is named ``tails`` and its suite
(our component) is the release. Where rebuilderd takes the first match, we
take the newest version listed (Debian's ordering, so ``6.0~rc1 < 6.0``).

Beyond rebuilderd, the version directory's own listing is read too: the
``.img`` must be there (the ``.iso`` is left out with a warning when it is
not), the detached OpenPGP signatures ``<file>.sig`` become the group's
sources so that the backend can check the published images against the
Tails signing key, and the SHA256 comes from a ``SHA256SUMS`` or
``<file>.sha256`` file when the directory has one. Tails' mirrors publish
none: the artifacts then carry ``sha256 = ""`` and the runner records the
digest of what it downloads. Sizes come from ``HEAD`` requests
(``Content-Length``), one per file.

Directory listings of Apache, nginx and lighttpd (and Python's http.server)
are read the same way: every ``<a href>`` that names a direct child of the
listed directory; links elsewhere (parents, other hosts, sort links with a
query) are ignored. See docs/tails.md.

>>> [compare_versions(a, b) for a, b in [("6.0~rc1", "6.0"), ("6.10", "6.9"), ("5.2", "5.2")]]
[-1, 1, 0]
"""

from __future__ import annotations

import functools
import hashlib
import html.parser
import logging
import re
from collections.abc import Collection
from dataclasses import dataclass
from urllib.parse import unquote, urljoin, urlsplit

from rebuilder import fetch
from rebuilder.config import Profile
from rebuilder.errors import ConfigError, FetchError, RepositoryIndexError
from rebuilder.model import Artifact, BuildGroup, Snapshot
from rebuilder.sync import (
    ProfileOptions,
    SyncContext,
    build_method,
    custom_method,
    package_filter,
    settings_digest,
    unchanged,
)

log = logging.getLogger(__name__)

DISTRO = "tails"
NAME = "tails"  # the one build group's name, as rebuilderd has it
DEFAULT_ARCHES = ("amd64",)
SYNC_RULES_VERSION = "1"
MAX_LISTING = 4 << 20
MAX_SUMS = 64 << 10
SUMS_FILES = ("SHA256SUMS", "sha256sums.txt")
_VERSION = r"[0-9][0-9a-z~.]{0,39}"
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_SUM_LINE = re.compile(r"([0-9a-fA-F]{64})(?:\s+\*?(\S+))?")


def sync(profile: Profile, ctx: SyncContext) -> Snapshot:
    """Sync one Tails profile; ``unchanged`` when every release directory lists the same files
    of the same sizes and checksums."""
    opts = Options.from_profile(profile, ctx.backends)
    found: list[Release] = []
    for name, source in opts.releases:
        base = f"{source.rstrip('/')}/{name}"
        names = list_directory(f"{base}/")
        for arch in opts.arches:
            version = newest_version(names, arch, what=f"{base}/")
            directory = f"{base}/tails-{arch}-{version}"
            files = [n for n in list_directory(f"{directory}/") if not n.endswith("/")]
            found.append(Release(name, arch, version, directory, tuple(sorted(files))))
    keep = opts.keep is None or opts.keep(NAME, ())
    # The groups are made before the unchanged check (a few small requests per release):
    # their sizes and checksums change without a change of file names (a re-signed .sig),
    # and a state that kept the old size would fail every build of the release.
    groups = [release_group(r, opts.method) for r in found if keep]
    fingerprints = {f"{r.directory}/#{r.arch}": r.fingerprint for r in found}
    for g in groups:
        fingerprints[f"{g.input_url}#group"] = group_fingerprint(g)
    same = unchanged(profile, ctx, fingerprints, opts.digest, "release directory")
    if same:
        return same
    what = ", ".join(f"{g.release}/{g.architecture} {g.version}" for g in groups) or "none"
    log.info("%s: %d build groups (%s)", profile.name, len(groups), what)
    return Snapshot(profile.name, DISTRO, tuple(groups), fingerprints)


@dataclass(frozen=True)
class Options(ProfileOptions):
    """A Tails profile's settings, checked once."""

    releases: tuple[tuple[str, str], ...]  # (channel, mirror base)
    arches: tuple[str, ...]

    @classmethod
    def from_profile(cls, p: Profile, backends: Collection[str] = ()) -> Options:
        label = p.label
        method = build_method(p, backends)
        if p.keyring:
            raise ConfigError(
                f"{label} keyring: the Tails sync verifies nothing with it (the signatures "
                "cover the images, which only the build downloads); give the Tails signing "
                "key to the backend as REBUILDER_TAILS_KEYRING instead"
            )
        arches = tuple(dict.fromkeys(p.architectures)) or DEFAULT_ARCHES
        for value in (*arches, *(r.name for r in p.releases)):
            if not _PLAIN.fullmatch(value):
                raise ConfigError(f"{label}: {value!r} is not a release or architecture name")
        releases = tuple(dict.fromkeys((r.name, r.source) for r in p.releases))
        return cls(
            releases=releases,
            arches=arches,
            keep=package_filter(p),
            method=method,
            digest=settings_digest(
                SYNC_RULES_VERSION,
                releases,
                arches,
                p.pkgs,
                p.excludes,
                p.maintainers,
                *custom_method(p),
            ),
        )


@dataclass(frozen=True)
class Release:
    """One release directory found on the mirror: ``<base>/<channel>/tails-<arch>-<version>``."""

    channel: str
    arch: str
    version: str
    directory: str  # its URL, without the trailing slash
    files: tuple[str, ...]  # the plain files its listing names

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256("\n".join((self.version, *self.files)).encode()).hexdigest()


def group_fingerprint(g: BuildGroup) -> str:
    """What a group is built from: every file's URL, size and published SHA256."""
    files = [f"{a.url} {a.size} {a.sha256}" for a in (*g.artifacts, *g.sources)]
    return hashlib.sha256("\n".join(files).encode()).hexdigest()


# --- directory listings ------------------------------------------------------------------


class _Links(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            for name, value in attrs:
                if name == "href" and value:
                    self.hrefs.append(value)


def list_directory(url: str) -> list[str]:
    """The names a directory listing links to, in order (sub-directories end with ``/``)."""
    raw = fetch.fetch_bytes(url, max_size=MAX_LISTING)
    assert raw is not None
    return listing_names(raw.decode("utf-8", "replace"), url)


def listing_names(text: str, url: str) -> list[str]:
    """The direct children of ``url`` that an HTML directory listing links to.

    >>> listing_names('<a href="../">..</a> <a href="a%20b/">a b/</a> <a href="?C=M">x</a>'
    ...               '<a href="/etc/">/etc</a><a href="http://evil.example/x">x</a>'
    ...               '<a href="c.img">c</a>', "https://mirror.example/tails/stable/")
    ['a b/', 'c.img']
    """
    parser = _Links()
    try:
        parser.feed(text)
        parser.close()
    except (AssertionError, ValueError):  # html.parser's complaint about broken markup
        log.warning("%s: the listing does not parse to the end; read what did", url)
    here = urlsplit(url)
    prefix = here.path if here.path.endswith("/") else here.path + "/"
    out: list[str] = []
    for href in parser.hrefs:
        target = urlsplit(urljoin(url, href))
        if (target.scheme, target.netloc) != (here.scheme, here.netloc) or target.query:
            continue
        if not target.path.startswith(prefix):
            continue
        name = unquote(target.path[len(prefix) :])
        plain = name[:-1] if name.endswith("/") else name
        if not plain or "/" in plain or plain in (".", "..") or not plain.isprintable():
            continue
        if name not in out:
            out.append(name)
    return out


def newest_version(names: list[str], arch: str, *, what: str) -> str:
    """The newest ``tails-<arch>-<version>/`` a listing names; RepositoryIndexError if none."""
    pattern = re.compile(rf"tails-{re.escape(arch)}-({_VERSION})/")
    versions = [m.group(1) for n in names if (m := pattern.fullmatch(n)) and ".." not in n]
    if not versions:
        raise RepositoryIndexError(
            f"{what}: the listing names no tails-{arch}-<version>/ directory"
        )
    newest = max(versions, key=version_key)
    if len(versions) > 1:
        others = ", ".join(v for v in versions if v != newest)
        log.info(
            "%s: %s is the newest of %d versions (also listed: %s)",
            what,
            newest,
            len(versions),
            others,
        )
    return newest


# --- one release -------------------------------------------------------------------------


def release_group(r: Release, method: str = "") -> BuildGroup:
    """The build group of one release directory: ``.img`` (the input) and ``.iso``."""
    stem = f"tails-{r.arch}-{r.version}"
    img, iso = f"{stem}.img", f"{stem}.iso"
    if img not in r.files:
        raise RepositoryIndexError(f"{r.directory}/: no {img} in the listing (the build input)")
    sums = published_sums(r)
    artifacts = []
    for name in (img, iso):
        if name not in r.files:
            log.warning(
                "%s/: no %s in the listing; only the other image is verified", r.directory, name
            )
            continue
        url = f"{r.directory}/{name}"
        artifacts.append(Artifact(name, r.version, r.arch, url, sums.get(name, ""), head_size(url)))
    sources = tuple(
        Artifact(f"{a.name}.sig", r.version, r.arch, f"{a.url}.sig", "", head_size(f"{a.url}.sig"))
        for a in artifacts
        if f"{a.name}.sig" in r.files
    )
    return BuildGroup(
        name=NAME,
        version=r.version,
        distro=DISTRO,
        release=r.channel,
        component=r.channel,
        architecture=r.arch,
        input_url=artifacts[0].url,
        artifacts=tuple(artifacts),
        sources=sources,
        method=method,
    )


def published_sums(r: Release) -> dict[str, str]:
    """SHA256 by file name from the directory's ``SHA256SUMS`` or ``<file>.sha256`` files."""
    sums: dict[str, str] = {}
    for name in r.files:
        if name in SUMS_FILES or name.endswith(".sha256"):
            default = name[: -len(".sha256")] if name.endswith(".sha256") else None
            url = f"{r.directory}/{name}"
            try:
                raw = fetch.fetch_bytes(url, max_size=MAX_SUMS)
            except FetchError as e:
                log.warning("%s; its checksums are not used", e)
                continue
            assert raw is not None
            sums.update(parse_sums(raw, default, what=url))
    return sums


def parse_sums(raw: bytes, default: str | None, *, what: str) -> dict[str, str]:
    """``sha256sum`` output (``<hex>  <name>``), or a bare ``<hex>`` for file ``default``.

    >>> parse_sums(b"ab" * 32 + b"  tails-amd64-6.0.img\\n", None, what="t")
    {'tails-amd64-6.0.img': 'abababababababababababababababababababababababababababababababab'}
    """
    out: dict[str, str] = {}
    for line in raw.decode("utf-8", "replace").splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _SUM_LINE.fullmatch(line)
        name = (m.group(2) or default) if m else None
        if m is None or name is None or "/" in name:
            log.warning("%s: not a SHA256 line: %r; ignored", what, line[:100])
            continue
        if name in out and out[name] != m.group(1).lower():
            log.warning("%s: two different SHA256 for %s; neither is used", what, name[:100])
            out[name] = ""
            continue
        out[name] = m.group(1).lower()
    return {k: v for k, v in out.items() if v}


def head_size(url: str) -> int:
    """The size of a file on the mirror, from a ``HEAD`` request's ``Content-Length``."""
    if fetch.is_local(url):
        try:
            return fetch.local_path(url).stat().st_size
        except OSError as e:
            raise FetchError(f"{url}: cannot stat: {e.strerror}") from None
    # the one retry policy: a connection refused or reset once is not a failed sync
    r = fetch.request(url, method="HEAD")
    if r.status >= 400:
        raise FetchError(f"{url}: HTTP {r.status} {r.reason}".rstrip())
    length = r.headers.get("Content-Length", "")
    if not length.isdigit():
        raise RepositoryIndexError(f"{url}: the mirror gives no size (Content-Length)")
    return int(length)


# --- versions ----------------------------------------------------------------------------


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def compare_versions(a: str, b: str) -> int:
    """dpkg's ordering of upstream versions (``~`` sorts first): -1, 0 or 1."""
    i = j = 0
    while i < len(a) or j < len(b):
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            bc = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ac != bc:
                return -1 if ac < bc else 1
            i, j = i + 1, j + 1
        na = nb = ""
        while i < len(a) and a[i].isdigit():
            na, i = na + a[i], i + 1
        while j < len(b) and b[j].isdigit():
            nb, j = nb + b[j], j + 1
        if int(na or 0) != int(nb or 0):
            return -1 if int(na or 0) < int(nb or 0) else 1
    return 0


version_key = functools.cmp_to_key(compare_versions)
