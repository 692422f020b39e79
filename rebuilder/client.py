"""Read any rebuilder (our static site or a live rebuilderd) and check installed packages.

Everything here speaks rebuilderd's read-only v0 API, which our site also
serves as static files:

* ``<base>/api/v0/pkgs/list``: a list of PkgRelease objects (name, version,
  status GOOD/BAD/UNKWN, distro, suite, architecture, artifact_url,
  build_id, built_at, has_diffoscope, has_attestation);
* ``<base>/api/v0/builds/<build_id>/{log,diffoscope,attestation}``;
* ``<base>/api/v0/public-keys``: ``{"current": [<PEM>, ...]}``.

A base may also be a local directory (or ``file://`` URL) holding a rendered
site. :func:`verify_installed` answers "were the packages on this machine
reproduced, and by how many independent rebuilders?" in the manner of
debian-repro-status and arch-repro-status, with a quorum (``require``) over
several rebuilders and disagreements flagged; :func:`check_files` goes further
and checks that the signed attestations name the very bytes in the local
package cache.
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import requests
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from rebuilder import __version__
from rebuilder.attest import (
    ArtifactMismatchError,
    AttestationError,
    public_keys_from_json,
    verify_link,
)
from rebuilder.errors import FetchError, RebuilderError
from rebuilder.model import Status

log = logging.getLogger(__name__)

__all__ = [
    "BUILD_FILE_KINDS",
    "DEFAULT_CACHE_DIRS",
    "ClientError",
    "FileCheck",
    "Installed",
    "PackageDatabaseError",
    "PackageVerdict",
    "PkgEntry",
    "VerifyReport",
    "attestation_fetcher",
    "check_files",
    "fetch_build_file",
    "fetch_pkgs",
    "fetch_public_keys",
    "format_pkg_line",
    "format_verify_line",
    "format_verify_summary",
    "read_dpkg_status",
    "read_pacman_local",
    "verify_installed",
]

BUILD_FILE_KINDS = ("log", "diffoscope", "attestation")
DPKG_STATUS = Path("/var/lib/dpkg/status")
PACMAN_LOCAL = Path("/var/lib/pacman/local")
APT_CACHE = Path("/var/cache/apt/archives")
PACMAN_CACHE = Path("/var/cache/pacman/pkg")
DEFAULT_CACHE_DIRS = (APT_CACHE, PACMAN_CACHE)

_TIMEOUT = (10.0, 120.0)  # connect, read (seconds)
_DEADLINE = 30 * 60.0  # seconds for one whole answer
_MAX_BYTES = 1 << 30
_ATTEMPTS = 4
_BACKOFF = 0.5  # seconds before the first retry; doubled for each further one
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_RETRY_EXCEPTIONS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
)
_ARCH_INDEPENDENT = frozenset({"all", "any"})


class ClientError(FetchError):
    """A rebuilder could not be reached, or what answered is not a rebuilder."""


class PackageDatabaseError(RebuilderError):
    """The local package database (dpkg status, pacman local db) is unreadable or corrupt."""


# --- what a rebuilder publishes ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PkgEntry:
    """One binary package in a rebuilder's ``pkgs/list`` (rebuilderd's v0 PkgRelease)."""

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

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "status": self.status.v0,
            "distro": self.distro,
            "suite": self.suite,
            "architecture": self.architecture,
            "artifact_url": self.artifact_url,
            "build_id": self.build_id,
            "built_at": self.built_at,
            "has_diffoscope": self.has_diffoscope,
            "has_attestation": self.has_attestation,
        }

    @classmethod
    def from_json(cls, d: Any) -> PkgEntry:
        """Parse one PkgRelease; raises ``ValueError`` naming the offending field."""
        if not isinstance(d, dict):
            raise ValueError("not an object")
        strs = {}
        for key in ("name", "version", "status", "architecture"):
            if not isinstance(d.get(key), str) or not d[key]:
                raise ValueError(f"no {key!r}")
            strs[key] = d[key]
        for key in ("distro", "suite", "artifact_url"):
            if not isinstance(d.get(key, ""), str):
                raise ValueError(f"{key!r} is not a string")
        try:
            status = Status(strs["status"])
        except ValueError:
            raise ValueError(f"unknown status {strs['status']!r}") from None
        build_id = d.get("build_id")
        if build_id is not None and (not isinstance(build_id, int) or isinstance(build_id, bool)):
            raise ValueError("'build_id' is not an integer")
        built_at = d.get("built_at")
        if built_at is not None and not isinstance(built_at, str):
            raise ValueError("'built_at' is not a string")
        return cls(
            name=strs["name"],
            version=strs["version"],
            status=status,
            distro=d.get("distro", ""),
            suite=d.get("suite", ""),
            architecture=strs["architecture"],
            artifact_url=d.get("artifact_url", ""),
            build_id=build_id,
            built_at=built_at,
            has_diffoscope=d.get("has_diffoscope") is True,
            has_attestation=d.get("has_attestation") is True,
        )


def format_pkg_line(entry: PkgEntry) -> str:
    """One line of ``rebuildctl pkgs ls`` (without colours).

    >>> e = PkgEntry("hello", "2.10-3", Status.GOOD, "debian", "main", "amd64",
    ...              "https://mirror.example/hello_2.10-3_amd64.deb", build_id=7)
    >>> format_pkg_line(e)  # doctest: +NORMALIZE_WHITESPACE
    '[GOOD ] hello 2.10-3 (debian, main, amd64, #7) "https://mirror.example/hello_2.10-3_amd64.deb"'
    """
    info = f"{entry.distro}, {entry.suite}, {entry.architecture}"
    if entry.build_id is not None:
        info += f", #{entry.build_id}"
    pkg = f"{entry.name} {entry.version}"
    url = json.dumps(entry.artifact_url, ensure_ascii=False)
    return f"[{entry.status.v0:<5}] {pkg:<60} ({info}) {url}"


# --- fetching --------------------------------------------------------------------------------


def fetch_pkgs(
    base_url: str,
    session: requests.Session | None = None,
    cache_dir: Path | None = None,
) -> list[PkgEntry]:
    """The package list of the rebuilder at ``base_url``.

    With ``cache_dir``, the last answer is kept and revalidated with
    ``If-None-Match``/``If-Modified-Since``, so an unchanged list is not
    downloaded again.
    """
    url = _join(base_url, "api/v0/pkgs/list")
    data = _fetch(url, session, cache_dir=cache_dir, what="package list")
    doc = _json_document(url, data)
    if not isinstance(doc, list):
        raise ClientError(f"{url}: not a rebuilder package list (a JSON list was expected)")
    entries = []
    for i, item in enumerate(doc):
        try:
            entries.append(PkgEntry.from_json(item))
        except ValueError as e:
            raise ClientError(f"{url}: not a rebuilder package list: item {i}: {e}") from None
    return entries


def fetch_build_file(
    base_url: str, build_id: int, kind: str, session: requests.Session | None = None
) -> bytes:
    """A build's ``log``, ``diffoscope`` report or ``attestation``, as bytes."""
    if kind not in BUILD_FILE_KINDS:
        raise ClientError(
            f"unknown build file kind {kind!r} (one of: {', '.join(BUILD_FILE_KINDS)})"
        )
    if isinstance(build_id, bool) or not isinstance(build_id, int) or build_id < 0:
        raise ClientError(f"build id must be a non-negative integer, not {build_id!r}")
    url = _join(base_url, f"api/v0/builds/{build_id}/{kind}")
    return _fetch(url, session, what=f"{kind} of build {build_id}")


def fetch_public_keys(
    base_url: str, session: requests.Session | None = None
) -> list[Ed25519PublicKey]:
    """The rebuilder's current attestation signing keys."""
    url = _join(base_url, "api/v0/public-keys")
    doc = _json_document(url, _fetch(url, session, what="public keys"))
    try:
        return public_keys_from_json(doc)
    except AttestationError as e:
        raise ClientError(f"{url}: {e}") from None


def attestation_fetcher(
    base_urls: Mapping[str, str], session: requests.Session | None = None
) -> Callable[[str, PkgEntry], bytes]:
    """A ``fetch_attestation`` for :func:`check_files`: rebuilder name -> its base URL."""

    def fetch(rebuilder: str, entry: PkgEntry) -> bytes:
        if entry.build_id is None:
            raise ClientError(f"{rebuilder}: {entry.name} {entry.version} has no build id")
        return fetch_build_file(base_urls[rebuilder], entry.build_id, "attestation", session)

    return fetch


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path


def _fetch(
    url: str,
    session: requests.Session | None,
    *,
    what: str,
    cache_dir: Path | None = None,
) -> bytes:
    scheme = urlsplit(url).scheme
    if scheme in ("", "file"):
        return _read_local(Path(unquote(urlsplit(url).path)) if scheme else Path(url), what)
    if scheme not in ("http", "https"):
        raise ClientError(f"{url}: unsupported URL scheme {scheme!r} (http, https or a directory)")
    own = session is None
    s = session or _new_session()
    try:
        return _fetch_http(url, s, what, cache_dir)
    finally:
        if own:
            s.close()


def _new_session() -> requests.Session:
    s = requests.Session()
    s.headers["User-Agent"] = f"rebuilder/{__version__}"
    return s


def _read_local(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ClientError(
            f"{path}: no such file: no {what} here; is this a rebuilder site?"
        ) from None
    except OSError as e:
        raise ClientError(f"{path}: cannot read {what}: {e.strerror}") from None


def _fetch_http(url: str, s: requests.Session, what: str, cache_dir: Path | None) -> bytes:
    cached = _cache_load(cache_dir, url) if cache_dir else None
    headers = {}
    if cached:
        if cached.get("etag"):
            headers["If-None-Match"] = cached["etag"]
        if cached.get("last_modified"):
            headers["If-Modified-Since"] = cached["last_modified"]
    r = _get(url, s, headers)
    if r.status == 304 and cached:
        log.debug("%s: not modified, using the cached copy", url)
        return cached["body"]
    if r.status == 404:
        raise ClientError(f"{url}: not found (HTTP 404): no {what} here; is this a rebuilder?")
    if r.status != 200:
        reason = f" {r.reason}" if r.reason else ""
        raise ClientError(f"{url}: HTTP {r.status}{reason} while fetching the {what}")
    if cache_dir:
        _cache_store(cache_dir, url, r)
    return r.body


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes


def _get(url: str, s: requests.Session, headers: dict[str, str]) -> _Answer:
    # The body is read inside the loop: a connection reset half-way is retried too.
    for attempt in range(1, _ATTEMPTS + 1):
        delay = _BACKOFF * 2 ** (attempt - 1)
        try:
            with s.get(url, headers=headers, timeout=_TIMEOUT, stream=True) as r:
                if r.status_code not in _RETRY_STATUS or attempt == _ATTEMPTS:
                    return _Answer(r.status_code, r.reason or "", r.headers, _read_body(r, url))
            log.warning("%s: HTTP %d; retrying in %.1fs", url, r.status_code, delay)
        except _RETRY_EXCEPTIONS as e:
            if attempt == _ATTEMPTS:
                raise ClientError(
                    f"{url}: {_why(e)} (gave up after {_ATTEMPTS} attempts)"
                ) from None
            log.warning("%s: %s; retrying in %.1fs", url, _why(e), delay)
        except requests.RequestException as e:
            raise ClientError(f"{url}: {_why(e)}") from None
        time.sleep(delay)
    raise AssertionError("unreachable")


def _read_body(r: requests.Response, url: str) -> bytes:
    # The read timeout bounds each wait, not the whole answer: a server dripping bytes
    # (or sending without end) is cut off by a deadline and a size limit.
    deadline = time.monotonic() + _DEADLINE
    chunks, size = [], 0
    for chunk in r.iter_content(1 << 20):
        size += len(chunk)
        if size > _MAX_BYTES:
            raise ClientError(f"{url}: answer larger than {_MAX_BYTES >> 20} MiB; refusing it")
        if time.monotonic() > deadline:
            raise ClientError(f"{url}: answer took longer than {_DEADLINE:.0f}s; giving up")
        chunks.append(chunk)
    return b"".join(chunks)


def _why(e: requests.RequestException) -> str:
    if isinstance(e, requests.Timeout):
        return "timed out"
    if isinstance(e, requests.ConnectionError):
        return "cannot connect (connection refused, reset or name not resolved)"
    if isinstance(e, requests.exceptions.ChunkedEncodingError):
        return "connection broken while reading the answer"
    if isinstance(e, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
        return "not a valid URL"
    return type(e).__name__


def _json_document(url: str, data: bytes) -> Any:
    head = data.lstrip()[:1]
    if head == b"<":
        raise ClientError(f"{url}: answered with an HTML/XML page, not a rebuilder's JSON")
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ClientError(f"{url}: not JSON; is this a rebuilder?") from None


def _cache_paths(cache_dir: Path, url: str) -> tuple[Path, Path]:
    key = hashlib.sha256(url.encode()).hexdigest()[:32]
    return cache_dir / f"{key}.body", cache_dir / f"{key}.meta.json"


def _cache_load(cache_dir: Path, url: str) -> dict[str, Any] | None:
    body, meta = _cache_paths(cache_dir, url)
    try:
        m = json.loads(meta.read_text())
        if m.get("url") != url:
            return None
        return {**m, "body": body.read_bytes()}
    except (OSError, ValueError, AttributeError):
        return None


def _cache_store(cache_dir: Path, url: str, r: _Answer) -> None:
    etag, modified = r.headers.get("ETag"), r.headers.get("Last-Modified")
    if not etag and not modified:
        return  # nothing to revalidate with: a cached copy would never be used
    body, meta = _cache_paths(cache_dir, url)
    m = {"url": url, "etag": etag, "last_modified": modified}
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write(body, r.body)
        _atomic_write(meta, json.dumps(m, sort_keys=True).encode())
    except OSError as e:
        log.warning("%s: cannot write the HTTP cache: %s", cache_dir, e.strerror)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- installed packages ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Installed:
    """One installed binary package, as the local package manager records it."""

    name: str
    version: str
    architecture: str


def read_dpkg_status(path: Path = DPKG_STATUS) -> list[Installed]:
    """Packages dpkg has fully installed (``Status: install ok installed``)."""
    out = []
    for n, para in enumerate(_deb822_paragraphs(_read_db(path)), start=1):
        if para.get("status") != "install ok installed":
            continue
        missing = [k for k in ("package", "version", "architecture") if not para.get(k)]
        if missing:
            raise PackageDatabaseError(
                f"{path}: installed entry #{n} ({para.get('package', '?')}) has no {missing[0]}"
            )
        out.append(Installed(para["package"], para["version"], para["architecture"]))
    return out


def _read_db(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        raise PackageDatabaseError(
            f"{path}: no such file (is this package manager in use?)"
        ) from None
    except OSError as e:
        raise PackageDatabaseError(f"{path}: cannot read: {e.strerror}") from None


def _deb822_paragraphs(text: str) -> Iterable[dict[str, str]]:
    para: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if para:
                yield para
            para, last = {}, ""
        elif line[0] in " \t":
            if last:
                para[last] += "\n" + line.strip()
        elif ":" in line:
            key, _, value = line.partition(":")
            last = key.strip().lower()
            para[last] = value.strip()
    if para:
        yield para


def read_pacman_local(path: Path = PACMAN_LOCAL) -> list[Installed]:
    """Packages in pacman's local database (``<name>-<version>/desc`` files)."""
    try:
        dirs = sorted(p for p in path.iterdir() if p.is_dir())
    except FileNotFoundError:
        raise PackageDatabaseError(f"{path}: no such directory (is pacman in use?)") from None
    except OSError as e:
        raise PackageDatabaseError(f"{path}: cannot read: {e.strerror}") from None
    out = []
    for d in dirs:
        desc = _pacman_desc(_read_db(d / "desc"))
        missing = [k for k in ("NAME", "VERSION", "ARCH") if not desc.get(k)]
        if missing:
            raise PackageDatabaseError(f"{d / 'desc'}: no %{missing[0]}% entry")
        out.append(Installed(desc["NAME"], desc["VERSION"], desc["ARCH"]))
    return out


def _pacman_desc(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("%") and line.endswith("%") and len(line) > 2:
            fields[line[1:-1]] = next(lines, "").strip()
    return fields


# --- verdicts --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FileCheck:
    """Whether one rebuilder's attestation names the bytes of the local package file.

    ``outcome``: ``ok``; ``mismatch`` (validly signed, other bytes);
    ``invalid`` (bad signature or malformed); ``no-file`` (not in the
    package cache); ``no-attestation``; ``no-key``; ``fetch-error``.
    """

    outcome: str
    message: str = ""
    path: Path | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "message": self.message,
            "path": None if self.path is None else str(self.path),
        }


@dataclass(frozen=True, slots=True)
class PackageVerdict:
    """What every rebuilder says about one installed package.

    ``statuses`` maps each rebuilder to its v0 status for this exact name,
    version and architecture (UNKWN when it does not list it). A GOOD
    counts towards ``require`` only if, when files were checked, the
    rebuilder's attestation matched the local file.
    """

    package: Installed
    statuses: dict[str, Status]
    entries: dict[str, PkgEntry]
    require: int
    checks: dict[str, FileCheck] | None = None

    @property
    def good(self) -> list[str]:
        return [
            r
            for r, s in self.statuses.items()
            if s is Status.GOOD and (self.checks is None or self._check(r).ok)
        ]

    @property
    def bad(self) -> list[str]:
        return [r for r, s in self.statuses.items() if s is Status.BAD]

    @property
    def refuted(self) -> list[str]:
        """Rebuilders whose GOOD attestation did not match the local file (or did not verify)."""
        if self.checks is None:
            return []
        return [r for r, c in self.checks.items() if c.outcome in ("mismatch", "invalid")]

    @property
    def reproduced(self) -> bool:
        return len(self.good) >= self.require

    @property
    def disagreement(self) -> bool:
        """One rebuilder says GOOD where another says BAD for the same version."""
        raw_good = any(s is Status.GOOD for s in self.statuses.values())
        return raw_good and bool(self.bad)

    @property
    def status(self) -> Status:
        if self.reproduced:
            return Status.GOOD
        if self.bad or self.refuted:
            return Status.BAD
        return Status.UNKWN

    def _check(self, rebuilder: str) -> FileCheck:
        return (self.checks or {}).get(rebuilder, FileCheck("no-file"))

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.package.name,
            "version": self.package.version,
            "architecture": self.package.architecture,
            "status": self.status.value,
            "reproduced": self.reproduced,
            "disagreement": self.disagreement,
            "good": len(self.good),
            "rebuilders": {r: s.value for r, s in self.statuses.items()},
        }
        if self.checks is not None:
            d["checks"] = {r: c.to_json() for r, c in self.checks.items()}
        return d


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Verdicts for every installed package, against a quorum of ``require`` rebuilders."""

    verdicts: tuple[PackageVerdict, ...]
    rebuilders: tuple[str, ...]
    require: int
    files_checked: bool = False

    @property
    def total(self) -> int:
        return len(self.verdicts)

    @property
    def reproduced(self) -> int:
        return sum(v.reproduced for v in self.verdicts)

    @property
    def not_reproduced(self) -> int:
        return self.total - self.reproduced

    @property
    def share(self) -> float:
        """Fraction of installed packages reproduced (0.0 when none are installed)."""
        return self.reproduced / self.total if self.total else 0.0

    @property
    def disagreements(self) -> list[PackageVerdict]:
        return [v for v in self.verdicts if v.disagreement]

    def to_json(self) -> dict[str, Any]:
        return {
            "require": self.require,
            "rebuilders": list(self.rebuilders),
            "files_checked": self.files_checked,
            "summary": {
                "packages": self.total,
                "reproduced": self.reproduced,
                "not_reproduced": self.not_reproduced,
                "reproduced_share": round(self.share, 4),
                "disagreements": len(self.disagreements),
            },
            "packages": [v.to_json() for v in self.verdicts],
        }


def verify_installed(
    installed: Iterable[Installed],
    rebuilders: Mapping[str, Sequence[PkgEntry]],
    require: int,
) -> VerifyReport:
    """Which rebuilders reproduced each installed package; reproduced iff ``>= require`` GOOD.

    A rebuilder's entry matches on exact name and version, and on
    architecture, where ``all``/``any`` on either side matches any.
    """
    if require < 1:
        raise RebuilderError(f"require must be at least 1, not {require}")
    if require > len(rebuilders):
        raise RebuilderError(
            f"require={require} but only {len(rebuilders)} rebuilder(s) given: nothing could pass"
        )
    indexes = {r: _index(entries) for r, entries in rebuilders.items()}
    verdicts = []
    for pkg in sorted(set(installed), key=lambda p: (p.name, p.architecture, p.version)):
        statuses: dict[str, Status] = {}
        matched: dict[str, PkgEntry] = {}
        for r, index in indexes.items():
            entry = _best(e for e in index.get((pkg.name, pkg.version), ()) if _arch_ok(pkg, e))
            statuses[r] = Status(entry.status.v0) if entry else Status.UNKWN
            if entry:
                matched[r] = entry
        verdicts.append(PackageVerdict(pkg, statuses, matched, require))
    return VerifyReport(tuple(verdicts), tuple(rebuilders), require)


def _index(entries: Iterable[PkgEntry]) -> dict[tuple[str, str], list[PkgEntry]]:
    index: dict[tuple[str, str], list[PkgEntry]] = {}
    for e in entries:
        index.setdefault((e.name, e.version), []).append(e)
    return index


def _arch_ok(pkg: Installed, entry: PkgEntry) -> bool:
    return (
        pkg.architecture == entry.architecture
        or pkg.architecture in _ARCH_INDEPENDENT
        or entry.architecture in _ARCH_INDEPENDENT
    )


_RANK = {Status.GOOD: 0, Status.BAD: 1, Status.FAIL: 1, Status.UNKWN: 2}


def _best(entries: Iterable[PkgEntry]) -> PkgEntry | None:
    # A rebuilder listing a package twice (e.g. in two suites) vouches for it if either is GOOD.
    return min(entries, key=lambda e: _RANK[e.status], default=None)


def format_verify_line(verdict: PackageVerdict) -> str:
    """``[+] name version GOOD  (arch; 2/3 GOOD; ...)`` in debian/arch-repro-status style."""
    icon = {Status.GOOD: "+", Status.BAD: "-"}.get(verdict.status, "?")
    p = verdict.package
    details = [p.architecture, f"{len(verdict.good)}/{len(verdict.statuses)} GOOD"]
    if verdict.disagreement:
        said = ", ".join(
            f"{r} {s.value}" for r, s in verdict.statuses.items() if s is not Status.UNKWN
        )
        details.append(f"rebuilders disagree: {said}")
    for r, c in (verdict.checks or {}).items():
        if not c.ok:
            details.append(f"{r}: {c.message or c.outcome}")
    return f"[{icon}] {p.name} {p.version} {verdict.status.value:<5} ({'; '.join(details)})"


def format_verify_summary(report: VerifyReport) -> str:
    """The closing lines: how many packages could not be reproduced, and the share."""
    if not report.total:
        return "No installed packages found."
    who = f"by at least {report.require} of {len(report.rebuilders)} rebuilder(s)"
    if report.files_checked:
        who += ", checked against the local package files"
    lines = []
    n = report.not_reproduced
    if n == 0:
        lines.append(f"All {report.total} packages have been reproduced {who}.")
    else:
        noun = "package" if n == 1 else "packages"
        lines.append(f"{n}/{report.total} {noun} could not be reproduced {who}.")
    lines.append(f"{report.share * 100:.2f}% of the installed packages have been reproduced.")
    if report.disagreements:
        names = ", ".join(v.package.name for v in report.disagreements[:10])
        more = "…" if len(report.disagreements) > 10 else ""
        lines.append(f"Rebuilders disagree on {len(report.disagreements)}: {names}{more}")
    return "\n".join(lines)


# --- checking local files against attestations -----------------------------------------------


def check_files(
    report: VerifyReport,
    cache_dirs: Sequence[Path],
    fetch_attestation: Callable[[str, PkgEntry], bytes],
    public_keys: Mapping[str, Sequence[Ed25519PublicKey]],
) -> VerifyReport:
    """Check every GOOD claim's attestation against the package file in the local cache.

    Returns a new report in which a GOOD counts only when the rebuilder's
    attestation verifies with its key and names the local file's digests.
    ``fetch_attestation(rebuilder, entry)`` returns the attestation bytes
    (see :func:`attestation_fetcher`).
    """
    verdicts = []
    for v in report.verdicts:
        path = _find_package_file(v.package, cache_dirs)
        checks = {
            r: _check_one(r, v.entries[r], path, fetch_attestation, public_keys.get(r, ()))
            for r, s in v.statuses.items()
            if s is Status.GOOD
        }
        verdicts.append(dataclasses.replace(v, checks=checks))
    return dataclasses.replace(report, verdicts=tuple(verdicts), files_checked=True)


def _check_one(
    rebuilder: str,
    entry: PkgEntry,
    path: Path | None,
    fetch_attestation: Callable[[str, PkgEntry], bytes],
    keys: Sequence[Ed25519PublicKey],
) -> FileCheck:
    if path is None:
        return FileCheck("no-file", "package file not in the local cache")
    if not entry.has_attestation or entry.build_id is None:
        return FileCheck("no-attestation", "publishes no attestation", path)
    if not keys:
        return FileCheck("no-key", "no public key to check its attestation", path)
    try:
        data = fetch_attestation(rebuilder, entry)
    except RebuilderError as e:
        return FileCheck("fetch-error", f"cannot fetch attestation: {e}", path)
    try:
        verify_link(data, keys, path)
    except ArtifactMismatchError as e:
        log.warning("%s: %s", rebuilder, e)
        return FileCheck("mismatch", f"attestation does not match the local file: {e}", path)
    except AttestationError as e:
        log.warning("%s: %s", rebuilder, e)
        return FileCheck("invalid", f"invalid attestation: {e}", path)
    return FileCheck("ok", "", path)


def _find_package_file(pkg: Installed, cache_dirs: Sequence[Path]) -> Path | None:
    if any(c in pkg.name + pkg.version + pkg.architecture for c in "/\0"):
        return None  # never let a hostile database entry name a path outside the cache
    deb = f"{pkg.name}_{pkg.version.replace(':', '%3a')}_{pkg.architecture}.deb"
    pacman = f"{glob.escape(pkg.name)}-{glob.escape(pkg.version)}-{glob.escape(pkg.architecture)}"
    for d in cache_dirs:
        if (d / deb).is_file():
            return d / deb
        hits = sorted(p for p in d.glob(pacman + ".pkg.tar*") if not p.name.endswith(".sig"))
        if hits:
            return hits[0]
    return None
