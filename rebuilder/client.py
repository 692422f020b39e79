"""Read any rebuilder (our static site or a live rebuilderd) and check installed packages.

rebuilderd speaks two APIs; our site serves the read-only part of the first as
static files. v0 (``common/src/api/v0/mod.rs`` in rebuilderd):

* ``<base>/api/v0/pkgs/list``: a list of PkgRelease objects (name, version,
  status GOOD/BAD/UNKWN, distro, suite, architecture, artifact_url,
  build_id, built_at, has_diffoscope, has_attestation);
* ``<base>/api/v0/queue/list``: ``{"now", "queue": [QueueItem]}``; rebuilderd
  answers it to a POST of ``{"limit": n}`` only, a static site to a GET;
* ``<base>/api/v0/dashboard``: ``{"suites": {name: {good, unknown, bad}},
  "active_builds": [QueueItem], "queue_length", "now"}``;
* ``<base>/api/v0/builds/<build_id>/{log,diffoscope,attestation}``;
* ``<base>/api/v0/public-keys``: ``{"current": [<PEM>, ...]}``.

v1 (``common/src/api/v1/models/*.rs``), which newer rebuilderd serves beside or
instead of v0: ``api/v1/packages/binary`` and ``api/v1/queue`` are pages
``{"total", "records": [...]}`` walked with ``?limit=&after=<last id>``;
``api/v1/dashboard`` is ``{"rebuilds": {good, bad, fail, unknown}, "jobs":
{running, available, pending}}``; build files are ``api/v1/builds/<id>/log``
and ``api/v1/builds/<id>/artifacts/<artifact_id>/{diffoscope,attestation}``;
keys are at ``api/v1/meta/public-keys``. Every ``fetch_*`` asks v0 first and
turns to v1 when the v0 path answers 404, so callers never choose.

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
import datetime as _dt
import glob
import hashlib
import json
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, TypeVar
from urllib.parse import unquote, urlencode, urlsplit

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
from rebuilder.model import Status, format_time, utcnow

log = logging.getLogger(__name__)

__all__ = [
    "BUILD_FILE_KINDS",
    "DEFAULT_CACHE_DIRS",
    "ClientError",
    "Dashboard",
    "FileCheck",
    "Installed",
    "PackageDatabaseError",
    "PackageVerdict",
    "PkgEntry",
    "QueueEntry",
    "QueuedGroup",
    "VerifyReport",
    "attestation_fetcher",
    "check_files",
    "default_cache_dir",
    "fetch_build_file",
    "fetch_dashboard",
    "fetch_pkgs",
    "fetch_public_keys",
    "fetch_queue",
    "format_dashboard",
    "format_pkg_line",
    "format_queue_line",
    "format_verify_line",
    "format_verify_summary",
    "queue_list_json",
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
_V1_PAGE = 1000  # records per v1 page: rebuilderd's default and rebuildctl's choice
_REFUSES_POST = frozenset({405, 501})  # what static file servers answer to a POST


class ClientError(FetchError):
    """A rebuilder could not be reached, or what answered is not a rebuilder."""


class PackageDatabaseError(RebuilderError):
    """The local package database (dpkg status, pacman local db) is unreadable or corrupt."""


# --- what a rebuilder publishes ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PkgEntry:
    """One binary package in a rebuilder's ``pkgs/list`` (rebuilderd's v0 PkgRelease).

    ``artifact_id`` is known only from rebuilderd's v1 API, whose per-artifact
    diffoscope and attestation URLs need it; it is not part of the v0 JSON.
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
    source: str = ""  # the source package, when known (our local state; not in v0's JSON)

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
    # rebuilderd's v0 JSON has no FAIL, so only our local state shows one
    return f"[{entry.status.value:<5}] {pkg:<60} ({info}) {url}"


def _pkg_v1(d: Any) -> PkgEntry:
    """A v1 ``BinaryPackage`` (``common/src/api/v1/models/package.rs``) as a PkgEntry.

    Its ``status`` is the artifact's (GOOD/BAD/UNKWN) or null; null with a
    ``build_id`` means the latest build left no artifact result: it failed.
    ``component`` is what v0 called ``suite``.
    """
    d = _obj(d)
    build_id = _opt_int(d, "build_id")
    artifact_id = _opt_int(d, "artifact_id")
    raw = _opt_str(d, "status")
    failed = Status.UNKWN if build_id is None else Status.FAIL
    status = failed if raw is None else _status(raw)
    if "diffoscope_log_id" in d or "attestation_log_id" in d:
        has_diffoscope = _opt_int(d, "diffoscope_log_id") is not None
        has_attestation = _opt_int(d, "attestation_log_id") is not None
    else:
        # Older v1 daemons list neither log id: assume what a worker uploads with a result.
        has_diffoscope = artifact_id is not None and status is Status.BAD
        has_attestation = artifact_id is not None and status is Status.GOOD
    return PkgEntry(
        name=_req_str(d, "name"),
        version=_req_str(d, "version"),
        status=status,
        distro=_req_str(d, "distribution"),
        suite=_opt_str(d, "component") or "",
        architecture=_req_str(d, "architecture"),
        artifact_url=_req_str(d, "url", empty=True),
        build_id=build_id,
        has_diffoscope=has_diffoscope,
        has_attestation=has_attestation,
        artifact_id=artifact_id,
    )


# Field readers for the JSON of both API versions; each raises ValueError naming the field.


def _obj(d: Any) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ValueError("not an object")
    return d


def _req_str(d: Mapping[str, Any], key: str, *, empty: bool = False) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not (value or empty):
        raise ValueError(f"no {key!r}")
    return value


def _opt_str(d: Mapping[str, Any], key: str) -> str | None:
    value = d.get(key)
    if value is not None and not isinstance(value, str):
        raise ValueError(f"{key!r} is not a string")
    return value


def _count(d: Mapping[str, Any], key: str) -> int:
    value = d.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{key!r} is not a count")
    return value


def _opt_int(d: Mapping[str, Any], key: str) -> int | None:
    value = d.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
        raise ValueError(f"{key!r} is not an integer")
    return value


def _opt_time(d: Mapping[str, Any], key: str) -> _dt.datetime | None:
    value = d.get(key)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            t = _dt.datetime.fromisoformat(value)
        except ValueError:
            pass
        else:  # rebuilderd's times are naive UTC (chrono's NaiveDateTime); keep them so
            return t if t.tzinfo is None else t.astimezone(_dt.UTC).replace(tzinfo=None)
    raise ValueError(f"{key!r} is not a date and time")


def _req_time(d: Mapping[str, Any], key: str) -> _dt.datetime:
    t = _opt_time(d, key)
    if t is None:
        raise ValueError(f"no {key!r}")
    return t


def _status(raw: str) -> Status:
    try:
        return Status(raw)
    except ValueError:
        raise ValueError(f"unknown status {raw!r}") from None


# --- fetching --------------------------------------------------------------------------------

T = TypeVar("T")


class _Missing(ClientError):
    """HTTP 404 or no such file: the caller may look for the other API version."""

    def __init__(self, where: str, how: str, what: str) -> None:
        super().__init__(f"{where}: {how}: no {what} here; is this a rebuilder?")
        self.where, self.how, self.what = where, how, what

    def nor_v1(self) -> ClientError:
        """The error once the v1 counterpart is missing too."""
        return ClientError(
            f"{self.where}: {self.how}, nor its api/v1 counterpart: "
            f"no {self.what} here; is this a rebuilder?"
        )


def default_cache_dir() -> Path:
    """Where the CLI keeps answers to revalidate: ``$XDG_CACHE_HOME/rebuilder/client``.

    ``~/.cache`` stands in when ``XDG_CACHE_HOME`` is unset or relative (the
    XDG spec says to ignore a relative one).
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "rebuilder" / "client"


def fetch_pkgs(
    base_url: str,
    session: requests.Session | None = None,
    cache_dir: Path | None = None,
) -> list[PkgEntry]:
    """The package list of the rebuilder at ``base_url`` (v0, else v1 page by page).

    With ``cache_dir``, the last answer is kept and revalidated with
    ``If-None-Match``/``If-Modified-Since``, so an unchanged list is not
    downloaded again.
    """
    what = "package list"
    url = _join(base_url, "api/v0/pkgs/list")
    with _using(session) as s:
        try:
            data = _fetch(url, s, what=what, cache_dir=cache_dir)
        except _Missing as e:
            if not _is_http(base_url):
                raise
            try:
                return _fetch_pages(base_url, "api/v1/packages/binary", s, what, cache_dir, _pkg_v1)
            except _Missing:
                raise e.nor_v1() from None
    doc = _json_document(url, data)
    if not isinstance(doc, list):
        raise ClientError(f"{url}: not a rebuilder {what} (a JSON list was expected)")
    return _parse_each(url, doc, PkgEntry.from_json, what)


def fetch_build_file(
    base_url: str,
    build_id: int,
    kind: str,
    session: requests.Session | None = None,
    *,
    artifact_id: int | None = None,
) -> bytes:
    """A build's ``log``, ``diffoscope`` report or ``attestation``, as bytes.

    v0 serves one diffoscope and one attestation per build; v1 serves them
    per artifact. Given ``artifact_id`` (:attr:`PkgEntry.artifact_id`), v1 is
    asked directly; without it, the v0 path first, then v1's first artifact
    of the build that has one (as rebuilderd's own v0 compatibility does).
    """
    if kind not in BUILD_FILE_KINDS:
        raise ClientError(
            f"unknown build file kind {kind!r} (one of: {', '.join(BUILD_FILE_KINDS)})"
        )
    _check_id(build_id, "build id")
    if artifact_id is not None:
        _check_id(artifact_id, "artifact id")
    what = f"{kind} of build {build_id}"
    with _using(session) as s:
        if artifact_id is not None and _is_http(base_url):
            return _build_file_v1(base_url, build_id, kind, artifact_id, s)
        try:
            return _fetch(_join(base_url, f"api/v0/builds/{build_id}/{kind}"), s, what=what)
        except _Missing as e:
            if not _is_http(base_url):
                raise
            try:
                return _build_file_v1(base_url, build_id, kind, None, s)
            except _Missing:
                raise e.nor_v1() from None


def fetch_public_keys(
    base_url: str, session: requests.Session | None = None
) -> list[Ed25519PublicKey]:
    """The rebuilder's current attestation signing keys."""
    with _using(session) as s:
        url, data = _fetch_either(
            base_url, "api/v0/public-keys", "api/v1/meta/public-keys", s, "public keys", None
        )
    try:
        return public_keys_from_json(_json_document(url, data))
    except AttestationError as e:
        raise ClientError(f"{url}: {e}") from None


def attestation_fetcher(
    base_urls: Mapping[str, str], session: requests.Session | None = None
) -> Callable[[str, PkgEntry], bytes]:
    """A ``fetch_attestation`` for :func:`check_files`: rebuilder name -> its base URL."""

    def fetch(rebuilder: str, entry: PkgEntry) -> bytes:
        if entry.build_id is None:
            raise ClientError(f"{rebuilder}: {entry.name} {entry.version} has no build id")
        return fetch_build_file(
            base_urls[rebuilder],
            entry.build_id,
            "attestation",
            session,
            artifact_id=entry.artifact_id,
        )

    return fetch


def _check_id(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ClientError(f"{what} must be a non-negative integer, not {value!r}")


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path


def _is_http(base: str) -> bool:
    # Only a live server can have an API version other than the files a site holds.
    return urlsplit(base).scheme in ("http", "https")


@contextmanager
def _using(session: requests.Session | None) -> Iterator[requests.Session]:
    """The caller's session, or one of our own for the requests of one call."""
    if session is not None:
        yield session
        return
    s = _new_session()
    try:
        yield s
    finally:
        s.close()


def _fetch_either(
    base_url: str,
    v0: str,
    v1: str,
    s: requests.Session,
    what: str,
    cache_dir: Path | None,
) -> tuple[str, bytes]:
    """``(url, body)`` of the v0 path, else (on a server) of the v1 path."""
    url = _join(base_url, v0)
    try:
        return url, _fetch(url, s, what=what, cache_dir=cache_dir)
    except _Missing as e:
        if not _is_http(base_url):
            raise
        missing = e
    url = _join(base_url, v1)
    try:
        return url, _fetch(url, s, what=what, cache_dir=cache_dir)
    except _Missing:
        raise missing.nor_v1() from None


def _fetch_pages(
    base_url: str,
    path: str,
    s: requests.Session,
    what: str,
    cache_dir: Path | None,
    parse: Callable[[Any], T],
    limit: int | None = None,
) -> list[T]:
    """Every record of a v1 ``ResultPage`` listing, walking rebuilderd's id cursor.

    rebuilderd sorts by id and takes ``after=<id>`` (keyset paging, see the
    daemon's ``api/v1/util/pagination.rs``), so each next page starts after
    the last record's id; a cursor that does not move is refused rather than
    looped on.
    """
    out: list[T] = []
    after: int | None = None
    while True:
        query: dict[str, int] = {"limit": _V1_PAGE if limit is None else min(_V1_PAGE, limit)}
        if after is not None:
            query["after"] = after
        url = _join(base_url, path) + "?" + urlencode(query)
        records, total = _result_page(url, _fetch(url, s, what=what, cache_dir=cache_dir), what)
        out.extend(_parse_each(url, records, parse, what))
        if not records or (total is not None and len(out) >= total):
            break
        if limit is not None and len(out) >= limit:
            break
        last = records[-1].get("id") if isinstance(records[-1], dict) else None
        if isinstance(last, bool) or not isinstance(last, int):
            raise ClientError(f"{url}: not a rebuilderd v1 {what} page: a record has no 'id'")
        if after is not None and last <= after:
            raise ClientError(f"{url}: the pages of the {what} do not advance; giving up")
        after = last
    return out if limit is None else out[:limit]


def _result_page(url: str, data: bytes, what: str) -> tuple[list[Any], int | None]:
    doc = _json_document(url, data)
    records = doc.get("records") if isinstance(doc, dict) else None
    if not isinstance(records, list):
        raise ClientError(
            f"{url}: not a rebuilderd v1 {what} page (an object with a 'records' list was expected)"
        )
    total = doc.get("total")
    return records, total if isinstance(total, int) and not isinstance(total, bool) else None


def _parse_each(url: str, items: Iterable[Any], parse: Callable[[Any], T], what: str) -> list[T]:
    out = []
    for i, item in enumerate(items):
        try:
            out.append(parse(item))
        except ValueError as e:
            raise ClientError(f"{url}: not a rebuilder {what}: item {i}: {e}") from None
    return out


def _build_file_v1(
    base_url: str, build_id: int, kind: str, artifact_id: int | None, s: requests.Session
) -> bytes:
    what = f"{kind} of build {build_id}"
    build = _join(base_url, f"api/v1/builds/{build_id}")
    if kind == "log":
        return _fetch(f"{build}/log", s, what=what)
    if artifact_id is None:
        url = f"{build}/artifacts"
        artifacts = _json_document(url, _fetch(url, s, what=f"artifacts of build {build_id}"))
        if not isinstance(artifacts, list):
            raise ClientError(f"{url}: not a rebuilderd artifact list (a JSON list was expected)")
        ids = sorted(
            a["id"]
            for a in artifacts
            if isinstance(a, dict)
            and a.get(f"has_{kind}") is True
            and isinstance(a.get("id"), int)
            and not isinstance(a.get("id"), bool)
        )
        if not ids:
            raise ClientError(f"{url}: no artifact of build {build_id} has a {kind}")
        artifact_id = ids[0]
    return _fetch(f"{build}/artifacts/{artifact_id}/{kind}", s, what=what)


def _fetch(
    url: str,
    s: requests.Session,
    *,
    what: str,
    cache_dir: Path | None = None,
) -> bytes:
    scheme = urlsplit(url).scheme
    if scheme in ("", "file"):
        return _read_local(Path(unquote(urlsplit(url).path)) if scheme else Path(url), what)
    if scheme not in ("http", "https"):
        raise ClientError(f"{url}: unsupported URL scheme {scheme!r} (http, https or a directory)")
    return _fetch_http(url, s, what, cache_dir)


def _new_session() -> requests.Session:
    s = requests.Session()
    s.headers["User-Agent"] = f"rebuilder/{__version__}"
    return s


def _read_local(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise _Missing(str(path), "no such file", what) from None
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
    r = _request("GET", url, s, headers)
    if r.status == 304 and cached:
        log.debug("%s: not modified, using the cached copy", url)
        return cached["body"]
    if r.status != 200:
        _refuse(url, r, what)
    if cache_dir:
        _cache_store(cache_dir, url, r)
    return r.body


def _refuse(url: str, r: _Answer, what: str) -> None:
    """Raise for an answer other than 200: :class:`_Missing` for a 404."""
    if r.status == 404:
        raise _Missing(url, "not found (HTTP 404)", what)
    reason = f" {r.reason}" if r.reason else ""
    raise ClientError(f"{url}: HTTP {r.status}{reason} while fetching the {what}")


@dataclass(frozen=True, slots=True)
class _Answer:
    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes


def _request(
    method: str, url: str, s: requests.Session, headers: dict[str, str], body: Any = None
) -> _Answer:
    # The body is read inside the loop: a connection reset half-way is retried too.
    # Only reads are sent (v0's queue/list is a POST that changes nothing), so retrying is safe.
    json_body = {"json": body} if method == "POST" else {}
    for attempt in range(1, _ATTEMPTS + 1):
        delay = _BACKOFF * 2 ** (attempt - 1)
        try:
            with s.request(
                method, url, headers=headers, timeout=_TIMEOUT, stream=True, **json_body
            ) as r:
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


# --- the build queue and the dashboard -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueEntry:
    """One job in a rebuilder's build queue (v0 QueueItem or v1 QueuedJob).

    ``suite`` is v0's suite, v1's component; ``release`` is known from v1
    only. ``now`` is the clock :func:`format_queue_line` measures a running
    build against: the server's (v0 ``QueueList.now``) or, for v1, which
    does not send one, ours when the queue was fetched (as rebuildctl does).
    ``artifacts`` are ``(name, version, url)``.
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

    def to_json(self) -> dict[str, Any]:
        """rebuilderd's v0 ``QueueItem``, its ``pkgbase`` a ``PkgGroup``."""
        return {
            "id": self.id,
            "pkgbase": {
                "name": self.name,
                "version": self.version,
                "distro": self.distro,
                "suite": self.suite,
                "architecture": self.architecture,
                "input_url": self.input_url,
                "artifacts": [{"name": n, "version": v, "url": u} for n, v, u in self.artifacts],
            },
            "version": self.version,
            "queued_at": format_time(self.queued_at),
            "worker_id": self.worker_id,
            "started_at": format_time(self.started_at),
            "last_ping": format_time(self.last_ping),
        }


class QueuedGroup(NamedTuple):
    """What a static site knows of one queued build group, for :func:`queue_list_json`."""

    name: str
    version: str
    distro: str
    suite: str
    architecture: str
    input_url: str | None
    artifacts: Sequence[tuple[str, str, str]]  # (name, version, url)
    queued_at: _dt.datetime


def queue_list_json(items: Iterable[QueuedGroup], now: _dt.datetime) -> dict[str, Any]:
    """rebuilderd's v0 ``QueueList`` for a static ``api/v0/queue/list``, in queue order.

    Ids count from 1 in the given order; a static site has no worker, so
    ``worker_id``, ``started_at`` and ``last_ping`` are null.

    >>> import datetime as dt
    >>> t = dt.datetime(2024, 5, 1, 10, 0)
    >>> g = QueuedGroup("hello", "2.10-3", "debian", "main", "amd64",
    ...                 "https://mirror.example/hello_2.10-3.buildinfo",
    ...                 [("hello", "2.10-3", "https://mirror.example/hello_2.10-3_amd64.deb")], t)
    >>> doc = queue_list_json([g], t)
    >>> doc["now"], doc["queue"][0]["id"], doc["queue"][0]["pkgbase"]["artifacts"][0]["name"]
    ('2024-05-01T10:00:00', 1, 'hello')
    """
    entries = [
        QueueEntry(
            id=i,
            name=g.name,
            version=g.version,
            distro=g.distro,
            suite=g.suite,
            architecture=g.architecture,
            queued_at=g.queued_at,
            now=now,
            input_url=g.input_url,
            artifacts=tuple((n, v, u) for n, v, u in g.artifacts),
        )
        for i, g in enumerate(map(QueuedGroup._make, items), start=1)
    ]
    return {"now": format_time(now), "queue": [e.to_json() for e in entries]}


def fetch_queue(
    base_url: str,
    session: requests.Session | None = None,
    cache_dir: Path | None = None,
    *,
    limit: int | None = None,
) -> list[QueueEntry]:
    """The build queue of the rebuilder at ``base_url``, first in line first.

    rebuilderd answers v0's ``queue/list`` to a POST of ``{"limit": n}``;
    a static site (whose server refuses a POST with 405/501) to a GET; a
    v1-only rebuilderd has ``api/v1/queue`` pages instead. ``limit`` keeps
    the first ``n`` (rebuildctl's ``queue ls --head`` asks for 25).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ClientError(f"limit must be a positive integer, not {limit!r}")
    what = "build queue"
    url = _join(base_url, "api/v0/queue/list")
    with _using(session) as s:
        if not _is_http(base_url):
            return _queue_v0(url, _fetch(url, s, what=what), limit)
        r = _request("POST", url, s, {}, {"limit": limit})
        if r.status == 200:
            return _queue_v0(url, r.body, limit)
        if r.status in _REFUSES_POST:
            return _queue_v0(url, _fetch(url, s, what=what, cache_dir=cache_dir), limit)
        try:
            _refuse(url, r, what)
        except _Missing as e:
            missing = e
        now = utcnow()
        try:
            return _fetch_pages(
                base_url, "api/v1/queue", s, what, cache_dir, lambda d: _queue_v1(d, now), limit
            )
        except _Missing:
            pass
        try:  # a static server may answer a POST with 404 rather than 405
            return _queue_v0(url, _fetch(url, s, what=what, cache_dir=cache_dir), limit)
        except _Missing:
            raise missing.nor_v1() from None


def _queue_v0(url: str, data: bytes, limit: int | None) -> list[QueueEntry]:
    doc = _json_document(url, data)
    if not isinstance(doc, dict) or not isinstance(doc.get("queue"), list):
        raise ClientError(
            f"{url}: not a rebuilder build queue (an object with a 'queue' list was expected)"
        )
    try:
        now = _req_time(doc, "now")
    except ValueError as e:
        raise ClientError(f"{url}: not a rebuilder build queue: {e}") from None
    entries = _parse_each(url, doc["queue"], lambda d: _queue_v0_item(d, now), "build queue")
    return entries if limit is None else entries[:limit]


def _queue_v0_item(d: Any, now: _dt.datetime) -> QueueEntry:
    """A v0 ``QueueItem`` (``common/src/api/v0/mod.rs``)."""
    d = _obj(d)
    group = d.get("pkgbase")
    if not isinstance(group, dict):
        raise ValueError("no 'pkgbase' object")
    artifacts = group.get("artifacts", [])
    if not isinstance(artifacts, list):
        raise ValueError("'pkgbase.artifacts' is not a list")
    qid = _opt_int(d, "id")
    if qid is None:
        raise ValueError("no 'id'")
    return QueueEntry(
        id=qid,
        name=_req_str(group, "name"),
        version=_req_str(d, "version"),
        distro=_req_str(group, "distro"),
        suite=_req_str(group, "suite", empty=True),
        architecture=_req_str(group, "architecture"),
        queued_at=_req_time(d, "queued_at"),
        now=now,
        started_at=_opt_time(d, "started_at"),
        worker_id=_opt_int(d, "worker_id"),
        last_ping=_opt_time(d, "last_ping"),
        input_url=_opt_str(group, "input_url"),
        artifacts=tuple(_artifact(a) for a in artifacts),
    )


def _artifact(a: Any) -> tuple[str, str, str]:
    a = _obj(a)
    return (_req_str(a, "name"), _req_str(a, "version"), _req_str(a, "url", empty=True))


def _queue_v1(d: Any, now: _dt.datetime) -> QueueEntry:
    """A v1 ``QueuedJob`` (``common/src/api/v1/models/queue.rs``); ``url`` is its input."""
    d = _obj(d)
    qid = _opt_int(d, "id")
    if qid is None:
        raise ValueError("no 'id'")
    return QueueEntry(
        id=qid,
        name=_req_str(d, "name"),
        version=_req_str(d, "version"),
        distro=_req_str(d, "distribution"),
        suite=_opt_str(d, "component") or "",
        architecture=_req_str(d, "architecture"),
        queued_at=_req_time(d, "queued_at"),
        now=now,
        started_at=_opt_time(d, "started_at"),
        release=_opt_str(d, "release"),
        input_url=_opt_str(d, "url"),
    )


def format_queue_line(entry: QueueEntry) -> str:
    """One line of ``rebuildctl queue ls`` (v0 layout, without colours).

    Queued at, name and version, for how long it has been building, since
    when, then distro, suite and architecture as quoted strings.

    >>> import datetime as dt
    >>> t = dt.datetime(2024, 5, 1, 10, 0)
    >>> e = QueueEntry(3, "hello", "2.10-3", "debian", "main", "amd64", t,
    ...                now=t + dt.timedelta(hours=1, seconds=5), started_at=t)
    >>> format_queue_line(e)  # doctest: +NORMALIZE_WHITESPACE
    '2024-05-01 10:00:00 hello 2.10-3 1h 5s 2024-05-01 10:00:00 "debian" "main" "amd64"'
    """
    started = entry.started_at.strftime(_CLOCK) if entry.started_at else ""
    running = ""
    if entry.started_at is not None:
        running = _secs_to_human(int((entry.now - entry.started_at).total_seconds()))
    pkg = f"{entry.name} {entry.version}"
    where = " ".join(
        json.dumps(x, ensure_ascii=False) for x in (entry.distro, entry.suite, entry.architecture)
    )
    return f"{entry.queued_at.strftime(_CLOCK)} {pkg:<60} {running:>11} {started:<19} {where}"


_CLOCK = "%Y-%m-%d %H:%M:%S"


def _secs_to_human(secs: int) -> str:
    """rebuilderd's ``utils::secs_to_human``: ``1h 2m 3s``, leading zero units left out."""
    secs = max(secs, 0)  # a server clock behind ours is not a negative build time
    hours, rest = divmod(secs, 3600)
    mins, secs = divmod(rest, 60)
    parts = [f"{hours}h"] if hours else []
    if mins:
        parts.append(f"{mins}m")
    return " ".join([*parts, f"{secs}s"])


@dataclass(frozen=True, slots=True)
class Dashboard:
    """A rebuilder's status at a glance (v0 ``DashboardResponse`` or v1 ``DashboardState``).

    ``suites`` maps a suite to its counts by status: v0 counts GOOD, BAD and
    UNKWN per suite; v1 counts GOOD, BAD, FAIL and UNKWN over all suites, in
    one row named ``""``. ``queue_length`` and ``building`` are what the
    server says (v0's ``queue_length``; v1's jobs running + available +
    pending); ``waiting`` is v1's jobs held back until their retry time.
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


_V0_COUNTS = {"good": Status.GOOD, "bad": Status.BAD, "unknown": Status.UNKWN}
_V1_COUNTS = {**_V0_COUNTS, "fail": Status.FAIL}


def fetch_dashboard(
    base_url: str,
    session: requests.Session | None = None,
    cache_dir: Path | None = None,
) -> Dashboard:
    """The dashboard of the rebuilder at ``base_url`` (v0, else v1)."""
    what = "dashboard"
    with _using(session) as s:
        url, data = _fetch_either(
            base_url, "api/v0/dashboard", "api/v1/dashboard", s, what, cache_dir
        )
    doc = _json_document(url, data)
    try:
        if isinstance(doc, dict) and "suites" in doc:
            return _dashboard_v0(doc)
        if isinstance(doc, dict) and "rebuilds" in doc:
            return _dashboard_v1(doc)
        raise ValueError("neither 'suites' (v0) nor 'rebuilds' (v1) found")
    except ValueError as e:
        raise ClientError(f"{url}: not a rebuilder {what}: {e}") from None


def _dashboard_v0(doc: dict[str, Any]) -> Dashboard:
    suites, active = doc.get("suites"), doc.get("active_builds", [])
    if not isinstance(suites, dict) or not isinstance(active, list):
        raise ValueError("'suites' is not an object or 'active_builds' not a list")
    now = _req_time(doc, "now")
    return Dashboard(
        suites={name: _counts(stats, _V0_COUNTS, name) for name, stats in suites.items()},
        queue_length=_count(doc, "queue_length"),
        building=len(active),
        active_builds=tuple(_queue_v0_item(item, now) for item in active),
        now=now,
    )


def _dashboard_v1(doc: dict[str, Any]) -> Dashboard:
    jobs = _obj(doc.get("jobs"))
    running, available, pending = (_count(jobs, k) for k in ("running", "available", "pending"))
    return Dashboard(
        suites={"": _counts(doc.get("rebuilds"), _V1_COUNTS, "rebuilds")},
        queue_length=running + available + pending,
        building=running,
        waiting=pending,
    )


def _counts(stats: Any, keys: Mapping[str, Status], where: str) -> dict[Status, int]:
    if not isinstance(stats, dict):
        raise ValueError(f"{where!r} is not an object")
    return {status: _count(stats, key) for key, status in keys.items()}


def format_dashboard(d: Dashboard) -> list[str]:
    """The dashboard as lines: one per suite, the queue, the builds in progress.

    >>> board = Dashboard({"main": {Status.GOOD: 3, Status.BAD: 1, Status.UNKWN: 0}}, 4, 0)
    >>> for line in format_dashboard(board):
    ...     print(line)
    main             GOOD 3  BAD 1  UNKWN 0  (75.00% of 4 reproduced)
    queue: 4 jobs, 0 building
    """
    lines = []
    for name, counts in sorted(d.suites.items()):
        total = sum(counts.values())
        parts = "  ".join(f"{s.value} {counts[s]}" for s in _DASHBOARD_ORDER if s in counts)
        share = (
            f"{counts.get(Status.GOOD, 0) / total:.2%} of {total} reproduced" if total else "empty"
        )
        lines.append(f"{name or 'all suites':<16} {parts}  ({share})")
    queue = (
        f"queue: {d.queue_length} job{'s' if d.queue_length != 1 else ''}, {d.building} building"
    )
    if d.waiting:
        queue += f", {d.waiting} waiting to be retried"
    lines.append(queue)
    for e in d.active_builds:
        where = f"{e.distro}, {e.suite}, {e.architecture}"
        since = ""
        if e.started_at is not None:
            since = f" for {_secs_to_human(int((e.now - e.started_at).total_seconds()))}"
        lines.append(f"  building {e.name} {e.version} ({where}){since}")
    if d.now is not None:
        lines.append(f"as of {d.now.strftime(_CLOCK)} UTC")
    return lines


_DASHBOARD_ORDER = (Status.GOOD, Status.BAD, Status.FAIL, Status.UNKWN)


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
