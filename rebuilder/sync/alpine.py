"""Alpine: signed ``APKINDEX.tar.gz`` per branch/repository/arch -> one build group per origin.

For each release (an Alpine branch: ``v3.20``, ``edge``), component (a
repository: ``main``, ``community``) and architecture of the profile, the
index ``<base>/APKINDEX.tar.gz`` is fetched, where ``<base>`` is the
profile's ``source`` with ``$release``, ``$repo`` and ``$arch`` (or
``${release}``...) replaced, as Arch profiles spell their mirror templates,
or ``<source>/<release>/<repo>/<arch>`` when it has none of them.

An index is several gzip streams one after the other: first a tar holding
the signature ``.SIGN.RSA.<key name>`` (RSA over the SHA1 of every byte
after that first stream; ``RSA256``/``RSA512`` use SHA256/SHA512), then a tar
holding ``DESCRIPTION`` and ``APKINDEX``. With ``profile.keyring`` naming a
directory of Alpine public keys (or one key file), the signature is checked
as apk does: by the key named in the signature's file name.

``APKINDEX`` has one record per package, ``X:value`` lines separated by
blank lines. The packages of one origin (the aports directory that built
them) at one version are one build group; its artifacts are
``<base>/<P>-<V>.apk``. The index publishes no SHA256 of a package (its
``C:`` is the SHA1 of the package's control stream, not of the file), so
artifacts carry ``sha256 = ""``: the runner records the digest of the file it
downloads, checked against the index's size. See docs/alpine.md.

>>> index_base("https://mirror.example/alpine", "v3.20", "main", "x86_64")
'https://mirror.example/alpine/v3.20/main/x86_64'
>>> index_base("https://mirror.example/$repo/$arch/$release", "edge", "community", "aarch64")
'https://mirror.example/community/aarch64/edge'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import logging
import re
import tarfile
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from rebuilder import distros, fetch
from rebuilder.config import Profile
from rebuilder.errors import ConfigError, RepositoryIndexError, SignatureError
from rebuilder.model import Artifact, BuildGroup, Snapshot
from rebuilder.sync import (
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
from rebuilder.sync._vercmp_apk import is_valid as version_is_valid
from rebuilder.sync._vercmp_apk import sort_key as version_key

log = logging.getLogger(__name__)

DISTRO = "alpine"
METHOD: str = distros.get(DISTRO).default_method or ""
# Bumped when the grouping rules change, so that the next sync is a full one.
SYNC_RULES_VERSION = "1"
INDEX_NAME = "APKINDEX.tar.gz"
MAX_INDEX_BYTES = 64 << 20  # compressed; edge/community/x86_64 is ~1.5 MB
MAX_INDEX_TEXT = 512 << 20  # decompressed, against gzip bombs; the same index is ~7 MB
_MAX_SIGNATURE = 64 << 10
# What apk accepts in a package name (its PKGNAME class), not starting with '.' or '-'.
_NAME = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9_+.-]{0,254}")
_ARCH = re.compile(r"[A-Za-z0-9_]{1,32}")
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_COMMIT = re.compile(r"[0-9a-f]{7,64}")
_SIGNATURE_HASHES: dict[str, Callable[[], hashes.HashAlgorithm]] = {
    "RSA": hashes.SHA1,  # what Alpine's builders sign with; apk-tools accepts it
    "RSA256": hashes.SHA256,
    "RSA512": hashes.SHA512,
}


def sync(profile: Profile, ctx: SyncContext) -> Snapshot:
    """Sync one Alpine profile; ``unchanged`` when every index is byte for byte as last time."""
    opts = Options.from_profile(profile, ctx.backends)
    keys = load_keys(profile.keyring) if profile.keyring else None
    if keys is None:
        log.warning("%s: no keyring: the APKINDEX signatures are NOT verified", profile.name)
    indexes = [
        fetch_index(rel_name, repo, arch, index_base(source, rel_name, repo, arch), keys)
        for rel_name, source in opts.releases
        for repo in opts.components
        for arch in opts.arches
    ]
    fingerprints = {ix.url: ix.sha256 for ix in indexes}
    same = unchanged(profile, ctx, fingerprints, opts.digest, "index")
    if same:
        return same
    groups: list[BuildGroup] = []
    for ix in indexes:
        warn = Warnings(ix.url)
        packages = parse_apkindex(ix.text, what=ix.url, warn=warn)
        groups += group_packages(packages, ix, opts.keep, warn, opts.method)
        warn.summary()
    return snapshot(profile, DISTRO, groups, fingerprints)


# --- the profile, as this module needs it ------------------------------------------------


@dataclass(frozen=True)
class Options(ProfileOptions):
    """An Alpine profile's settings, checked once."""

    releases: tuple[tuple[str, str], ...]  # (branch, source)
    components: tuple[str, ...]
    arches: tuple[str, ...]

    @classmethod
    def from_profile(cls, p: Profile, backends: Collection[str] = ()) -> Options:
        label = p.label
        method = build_method(p, backends)
        if not p.components:
            raise ConfigError(f"{label} components: at least one repository (e.g. main) is needed")
        if not p.architectures:
            raise ConfigError(f"{label} architectures: at least one architecture is needed")
        for value in (*p.components, *p.architectures, *(r.name for r in p.releases)):
            if not _PLAIN.fullmatch(value):
                raise ConfigError(
                    f"{label}: {value!r} is not a branch, repository or architecture name"
                )
        for r in p.releases:
            if not r.source:
                raise ConfigError(f"{label} source: no mirror URL for release {r.name!r}")
            check_source(r.source, label)
        releases = tuple(dict.fromkeys((r.name, r.source) for r in p.releases))
        return cls(
            releases=releases,
            components=tuple(dict.fromkeys(p.components)),
            arches=tuple(dict.fromkeys(p.architectures)),
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
                *custom_method(p),
            ),
        )


def index_base(source: str, release: str, repo: str, arch: str) -> str:
    """The directory URL of one index (see the module doc for the placeholders)."""
    if "$" not in source:
        return f"{source.rstrip('/')}/{release}/{repo}/{arch}"
    return fill_template(source, {"release": release, "repo": repo, "arch": arch})


def check_source(source: str, label: str) -> None:
    """ConfigError unless the only variables of ``source`` are $release, $repo and $arch."""
    check_variables(source, ("release", "repo", "arch"), f"{label} source")


# --- the index: fetch, split, verify -----------------------------------------------------


@dataclass(frozen=True)
class Index:
    """One fetched, verified index: where it is and the text of its ``APKINDEX``."""

    release: str
    repo: str
    arch: str
    base: str
    url: str
    sha256: str
    text: bytes
    signed_by: str | None  # the key that verified it, None when no keyring was given


def fetch_index(
    release: str, repo: str, arch: str, base: str, keys: Mapping[str, rsa.RSAPublicKey] | None
) -> Index:
    url = f"{base}/{INDEX_NAME}"
    raw = fetch.fetch_bytes(url, max_size=MAX_INDEX_BYTES)
    assert raw is not None
    text, signer = read_index(raw, keys, what=url)
    if signer:
        log.debug("%s: signed by %s", url, signer)
    return Index(release, repo, arch, base, url, hashlib.sha256(raw).hexdigest(), text, signer)


def read_index(
    raw: bytes, keys: Mapping[str, rsa.RSAPublicKey] | None, *, what: str
) -> tuple[bytes, str | None]:
    """The ``APKINDEX`` text of an ``APKINDEX.tar.gz``, and the key that verified it.

    With ``keys`` the signature must verify with the key it names; without,
    the signature is not looked at. Raises RepositoryIndexError for a
    corrupt archive, SignatureError for a missing, unknown or bad signature.
    """
    if raw.startswith(b"ADB"):
        raise RepositoryIndexError(f"{what}: an apk v3 (ADB) index, not supported yet")
    members = gzip_members(raw, what=what)
    signatures = signature_entries(members[0][1], what=what)
    body = members[1:] if signatures else members
    if not body:
        raise RepositoryIndexError(f"{what}: a signature and no index after it (truncated?)")
    signer = None
    if keys is not None:
        signed = raw[body[0][0] :]
        signer = verify_signatures(signatures, signed, keys, what=what)
    text = _index_file(b"".join(m[1] for m in body), what=what)
    return text, signer


def gzip_members(raw: bytes, *, what: str, limit: int = MAX_INDEX_TEXT) -> list[tuple[int, bytes]]:
    """Each gzip stream of ``raw`` as ``(offset in raw, decompressed bytes)``.

    >>> import gzip
    >>> [(o, d) for o, d in gzip_members(gzip.compress(b"a") + gzip.compress(b"b"), what="t")]
    [(0, b'a'), (21, b'b')]
    """
    if not raw.startswith(b"\x1f\x8b"):
        raise RepositoryIndexError(f"{what}: not a gzip archive")
    out: list[tuple[int, bytes]] = []
    pos, total = 0, 0
    while pos < len(raw):
        d = zlib.decompressobj(wbits=31)
        try:
            data = d.decompress(raw[pos:], limit - total + 1)
        except zlib.error as e:
            raise RepositoryIndexError(f"{what}: corrupt gzip data ({e})") from None
        total += len(data)
        if total > limit:
            raise RepositoryIndexError(f"{what}: decompresses to more than {limit} bytes")
        if not d.eof:
            raise RepositoryIndexError(f"{what}: truncated (a gzip stream has no end)")
        out.append((pos, data))
        pos = len(raw) - len(d.unused_data)
        if not raw[pos:].strip(b"\0"):
            break  # zero padding after the last stream is allowed, as in gzip(1)
        if not raw.startswith(b"\x1f\x8b", pos):
            raise RepositoryIndexError(f"{what}: garbage after gzip stream {len(out)}")
    return out


@dataclass(frozen=True, slots=True)
class Signature:
    kind: str  # RSA, RSA256, RSA512 (or another name apk does not know)
    key_name: str
    data: bytes


def signature_entries(first: bytes, *, what: str) -> list[Signature]:
    """The ``.SIGN.*`` entries of the first tar stream; empty when it is not a signature."""
    out: list[Signature] = []
    for info, data in _tar_entries(first, what=what):
        if not info.name.startswith(".SIGN."):
            if out:
                raise RepositoryIndexError(f"{what}: the signature stream holds {info.name[:80]!r}")
            return []
        kind, _, key_name = info.name[len(".SIGN.") :].partition(".")
        if not info.isreg() or not key_name or len(data) > _MAX_SIGNATURE:
            raise RepositoryIndexError(f"{what}: malformed signature entry {info.name[:80]!r}")
        out.append(Signature(kind, key_name, data))
    return out


def verify_signatures(
    signatures: list[Signature], signed: bytes, keys: Mapping[str, rsa.RSAPublicKey], *, what: str
) -> str:
    """The name of the key whose signature verifies ``signed``; SignatureError if none.

    As apk: the first signature made by a key we have decides, and a bad one
    is an error even when another signature follows.
    """
    if not signatures:
        raise SignatureError(f"{what}: not signed (no .SIGN.RSA.* entry)")
    for sig in signatures:
        algorithm = _SIGNATURE_HASHES.get(sig.kind)
        key = keys.get(sig.key_name)
        if algorithm is None or key is None:
            continue
        try:
            key.verify(sig.data, signed, padding.PKCS1v15(), algorithm())
        except InvalidSignature:
            raise SignatureError(
                f"{what}: BAD signature by key {sig.key_name} (the index was altered or "
                "is not the one the key signed)"
            ) from None
        return sig.key_name
    names = ", ".join(f"{s.kind}:{s.key_name[:100]}" for s in signatures[:5])
    raise SignatureError(
        f"{what}: signed by {names}; no such key in the keyring ({len(keys)} keys)"
    )


def _index_file(body: bytes, *, what: str) -> bytes:
    for info, data in _tar_entries(body, what=what):
        if info.name == "APKINDEX":
            if not info.isreg():
                raise RepositoryIndexError(f"{what}: APKINDEX is not a regular file")
            return data
    raise RepositoryIndexError(f"{what}: no APKINDEX in the archive")


def _tar_entries(data: bytes, *, what: str) -> Iterator[tuple[tarfile.TarInfo, bytes]]:
    """The entries of an in-memory tar (nothing is ever extracted to disk).

    A tar stream of an index or a package may lack the end-of-archive blocks
    (abuild cuts them so that streams concatenate): its end is its end.
    """
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
            for info in tar:
                content = b""
                if info.isreg():
                    f = tar.extractfile(info)
                    content = f.read() if f is not None else b""
                    if len(content) != info.size:
                        name = info.name[:80]
                        raise RepositoryIndexError(f"{what}: truncated tar entry {name!r}")
                yield info, content
    except (tarfile.TarError, EOFError, OSError, ValueError, UnicodeError, OverflowError) as e:
        raise RepositoryIndexError(f"{what}: corrupt tar archive ({e})") from None


def load_keys(path: str) -> dict[str, rsa.RSAPublicKey]:
    """Alpine's RSA public keys by file name, from a directory (or one key file)."""
    p = Path(path)
    if p.is_dir():
        files = sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
    elif p.is_file():
        files = [p]
    else:
        raise ConfigError(
            f"keyring {path}: no such file or directory (Alpine's keys, e.g. /etc/apk/keys)"
        )
    keys: dict[str, rsa.RSAPublicKey] = {}
    for f in files:
        try:
            key = serialization.load_pem_public_key(f.read_bytes())
        except (ValueError, TypeError, OSError) as e:
            log.warning("keyring %s: %s is not a PEM public key (%s); ignored", path, f.name, e)
            continue
        if isinstance(key, rsa.RSAPublicKey):
            keys[f.name] = key
        else:
            log.warning("keyring %s: %s is not an RSA key; ignored", path, f.name)
    if not keys:
        raise ConfigError(f"keyring {path}: holds no RSA public key")
    return keys


def apk_identity(apk: bytes) -> str:
    """apk's identity of a v2 package file: ``Q1`` + base64 SHA1 of its control stream.

    This is what an index's ``C:`` field holds; a signed package's control
    stream is its second gzip stream, an unsigned one's its first.
    """
    members = gzip_members(apk, what="package")
    control = 1 if signature_entries(members[0][1], what="package") else 0
    if control >= len(members):
        raise RepositoryIndexError("package: no control stream")
    end = members[control + 1][0] if control + 1 < len(members) else len(apk)
    digest = hashlib.sha1(apk[members[control][0] : end]).digest()
    return "Q1" + base64.b64encode(digest).decode()


# --- APKINDEX records --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ApkPackage:
    """One record of an ``APKINDEX``, validated."""

    name: str
    version: str
    arch: str
    size: int
    origin: str
    maintainer: str
    build_time: int | None
    commit: str
    checksum: str

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}.apk"


def parse_apkindex(text: bytes, *, what: str, warn: Warnings | None = None) -> list[ApkPackage]:
    """The packages of an ``APKINDEX``; malformed and duplicate records are skipped.

    Skipped with a warning: a record without ``P``, ``V``, ``A`` or ``S``, or
    with a name, version (apk's grammar), architecture, size, origin or
    commit that is malformed, too long or could name a path; a second record
    of the same name and version (the first is kept). A record without
    ``o`` (origin) is its own origin.
    """
    warn = warn or Warnings(what)
    if b"\0" in text[:65536]:
        raise RepositoryIndexError(f"{what}: APKINDEX is not text (binary data)")
    if b"\r\n" in text[:65536]:
        raise RepositoryIndexError(f"{what}: CRLF line ends (not an APKINDEX)")
    out: list[ApkPackage] = []
    seen: set[str] = set()
    for n, record in enumerate(text.split(b"\n\n"), 1):
        fields = _fields(record)
        if not fields:
            continue
        try:
            pkg = _package(fields)
        except (KeyError, ValueError) as e:
            label = fields.get(b"P", b"record %d" % n)[:100].decode("utf-8", "replace")
            why = f"lacks {e.args[0].decode()}" if isinstance(e, KeyError) else str(e)
            warn("record", f"{what}: {label!r}: {why}; skipped")
            continue
        if pkg.filename in seen:
            warn("duplicate", f"{what}: duplicate record {pkg.name} {pkg.version}; kept the first")
            continue
        seen.add(pkg.filename)
        out.append(pkg)
    return out


def _fields(record: bytes) -> dict[bytes, bytes]:
    fields: dict[bytes, bytes] = {}
    for line in record.split(b"\n"):
        if len(line) >= 2 and line[1:2] == b":":
            key = line[:1]
            if key in fields and key in b"PVASo":
                fields.setdefault(b"?", b"field " + key + b": twice")
            fields.setdefault(key, line[2:])
        elif line.strip():
            fields.setdefault(b"?", b"line " + line[:80])  # a line that is not X:value
    return fields


def _package(f: dict[bytes, bytes]) -> ApkPackage:
    if b"?" in f:
        raise ValueError(f"malformed record ({f[b'?'].decode('utf-8', 'replace')!r})")
    name = f[b"P"].decode("ascii", "replace")
    version = f[b"V"].decode("ascii", "replace")
    arch = f[b"A"].decode("ascii", "replace")
    size = f[b"S"]
    origin = f.get(b"o", f[b"P"]).decode("ascii", "replace")
    if not _NAME.fullmatch(name):
        raise ValueError(f"malformed package name {name[:80]!r}")
    if len(version) > 128 or not version_is_valid(version):
        raise ValueError(f"malformed version {version[:80]!r}")
    if not _ARCH.fullmatch(arch):
        raise ValueError(f"malformed architecture {arch[:40]!r}")
    if not size.isdigit() or len(size) > 15:
        raise ValueError(f"malformed size {size[:40].decode('utf-8', 'replace')!r}")
    if not _NAME.fullmatch(origin):
        raise ValueError(f"malformed origin {origin[:80]!r}")
    t = f.get(b"t", b"")
    if t and (not t.isdigit() or len(t) > 12):
        raise ValueError(f"malformed build time {t[:40].decode('utf-8', 'replace')!r}")
    commit = f.get(b"c", b"").decode("ascii", "replace")
    if commit and not _COMMIT.fullmatch(commit):
        raise ValueError(f"malformed commit {commit[:80]!r}")
    maintainer = f.get(b"m", b"").decode("utf-8", "replace").strip()
    if len(maintainer) > 1024 or not maintainer.isprintable():
        raise ValueError("malformed maintainer")
    checksum = f.get(b"C", b"").decode("ascii", "replace")
    if checksum and not _is_identity(checksum):
        raise ValueError(f"malformed checksum {checksum[:80]!r}")
    return ApkPackage(
        name, version, arch, int(size), origin, maintainer, int(t) if t else None, commit, checksum
    )


def _is_identity(checksum: str) -> bool:
    """``Q1`` + base64 of a SHA1 (apk's identity), or a bare hex MD5 of old indexes."""
    if checksum.startswith("Q1"):
        try:
            return len(base64.b64decode(checksum[2:], validate=True)) == 20
        except (binascii.Error, ValueError):
            return False
    return bool(re.fullmatch(r"[0-9a-f]{32}", checksum))


# --- grouping ----------------------------------------------------------------------------


def group_packages(
    packages: list[ApkPackage],
    ix: Index,
    keep: Callable[[str, Iterable[str]], bool] | None,
    warn: Warnings,
    method: str = METHOD,
) -> list[BuildGroup]:
    """One build group per origin: its newest version's packages of this index."""
    by_origin: dict[str, dict[str, list[ApkPackage]]] = {}
    for p in packages:
        if p.arch not in (ix.arch, "noarch"):
            warn("arch", f"{ix.url}: {p.name} {p.version} is for {p.arch}, not {ix.arch}; skipped")
            continue
        if keep is not None and not keep(p.name, (p.maintainer,)):
            continue
        by_origin.setdefault(p.origin, {}).setdefault(p.version, []).append(p)
    groups, older = [], 0
    for origin, versions in by_origin.items():
        newest = max(versions, key=version_key)
        older += len(versions) - 1
        groups.append(_group(origin, newest, versions[newest], ix, warn, method))
    if older:
        log.info("%s: %d older origin versions still in the index were left out", ix.url, older)
    return groups


def _group(
    origin: str, version: str, pkgs: list[ApkPackage], ix: Index, warn: Warnings, method: str
) -> BuildGroup:
    pkgs = sorted(pkgs, key=lambda p: p.name)
    builds = {(p.commit, p.build_time) for p in pkgs}
    if len(builds) > 1:
        warn(
            "builds",
            f"{ix.url}: {origin} {version}: its packages come from {len(builds)} "
            "different builds (commit or build time differ)",
        )
    arts = tuple(
        Artifact(p.name, p.version, p.arch, f"{ix.base}/{p.filename}", "", p.size) for p in pkgs
    )
    main = next((a for a in arts if a.name == origin), arts[0])
    maintainers = tuple(sorted({p.maintainer for p in pkgs if p.maintainer}))
    return BuildGroup(
        name=origin,
        version=version,
        distro=DISTRO,
        release=ix.release,
        component=ix.repo,
        architecture=ix.arch,
        input_url=main.url,
        artifacts=arts,
        maintainers=maintainers,
        method=method,
    )
