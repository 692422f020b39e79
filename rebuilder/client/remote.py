"""Reading a rebuilder: our static site (served or a local directory) or a live rebuilderd.

v1 first, v0 when v1 is missing (HTTP 404 or no such file): rebuilderd 0.28's v0 is a
read-only compatibility layer that is wrong in places (its dashboard always says 0 queued,
``builds/<n>/log`` is keyed by artifact id, not build id, and its attestations lack the
daemon's signature), and older rebuilderds and sites have only v0. Every request goes
through :func:`rebuilder.fetch.request` (one retry policy); answers can be kept in a cache
directory and revalidated (``If-None-Match``/``If-Modified-Since``).

v1 lists are pages walked with ``?limit=&after=<last id>``. A static server ignores the
query string and answers every page alike: the walk stops at ``total`` records, and when a
page brings no record it has not seen, with a warning, so records are never doubled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import unquote, urlencode, urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from rebuilder import _fs, fetch
from rebuilder.api import v0, v1
from rebuilder.attest import AttestationError, public_keys_from_json
from rebuilder.client.records import Dashboard, PkgEntry, QueueEntry
from rebuilder.errors import FetchError
from rebuilder.model import utcnow

log = logging.getLogger(__name__)

BUILD_FILE_KINDS = ("log", "diffoscope", "attestation")
PAGE = v1.PAGE_LIMIT
MAX_PAGES = 100_000  # a bound on any walk, whatever a server answers
MAX_BYTES = 1 << 30  # a bound on any one answer
_REFUSES_POST = frozenset({405, 501})  # what static file servers answer to a POST

T = TypeVar("T")


class ClientError(FetchError):
    """A rebuilder could not be reached, or what answered is not a rebuilder."""


class _Missing(ClientError):
    """HTTP 404 or no such file: the caller may look for the other API version."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"{where}: not found: no {what} here; is this a rebuilder?")
        self.where, self.what = where, what

    def nor(self, other: _Missing) -> ClientError:
        return ClientError(
            f"{self.where}: not found, nor {other.where}: no {self.what} here; is this a rebuilder?"
        )


def default_cache_dir() -> Path:
    """Where the CLI keeps answers to revalidate: ``$XDG_CACHE_HOME/rebuilder/client``.

    ``~/.cache`` stands in when ``XDG_CACHE_HOME`` is unset or relative (the
    XDG spec says to ignore a relative one).
    """
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "rebuilder" / "client"


# --- what the commands ask for ----------------------------------------------------------------


def fetch_pkgs(base_url: str, cache_dir: Path | None = None) -> list[PkgEntry]:
    """Every binary package the rebuilder at ``base_url`` lists (v1, else v0)."""
    what = "package list"
    try:
        return _pages(base_url, "api/v1/packages/binary", what, PkgEntry.from_v1, cache_dir)
    except _Missing as e:
        missing = e
    url = _join(base_url, "api/v0/pkgs/list")
    try:
        doc = _json(url, _get(url, what, cache_dir))
    except _Missing as e:
        raise missing.nor(e) from None
    if not isinstance(doc, list):
        raise ClientError(f"{url}: not a rebuilder {what} (a JSON list was expected)")
    return _parse_each(url, doc, PkgEntry.from_json, what)


def fetch_dashboard(base_url: str, cache_dir: Path | None = None) -> Dashboard:
    """The dashboard (v1: builds by status and the jobs; else v0: packages per suite)."""
    what = "dashboard"
    url, data, version = _either(base_url, "api/v1/dashboard", "api/v0/dashboard", what, cache_dir)
    try:
        if version == 1:
            return Dashboard.from_v1(v1.Dashboard.from_json(_json(url, data)))
        return Dashboard.from_v0(v0.Dashboard.from_json(_json(url, data)))
    except ValueError as e:
        raise ClientError(f"{url}: not a rebuilder {what}: {e}") from None


def fetch_public_keys(base_url: str) -> list[Ed25519PublicKey]:
    """The rebuilder's current attestation signing keys."""
    url, data, _ = _either(
        base_url, "api/v1/meta/public-keys", "api/v0/public-keys", "public keys", None
    )
    try:
        return public_keys_from_json(_json(url, data))
    except AttestationError as e:
        raise ClientError(f"{url}: {e}") from None


def fetch_queue(
    base_url: str, cache_dir: Path | None = None, *, limit: int | None = None
) -> list[QueueEntry]:
    """The build queue, first in line first (v1 pages; else v0's ``queue/list``).

    rebuilderd answers v0's ``queue/list`` to a POST of ``{"limit": n}``, a
    static site to a GET. ``limit`` keeps the first ``n`` (rebuildctl's
    ``queue ls --head`` asks for 25).
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ClientError(f"limit must be a positive integer, not {limit!r}")
    what = "build queue"
    now = utcnow()
    try:
        return _pages(
            base_url,
            "api/v1/queue",
            what,
            lambda d: QueueEntry.from_v1(v1.QueuedJob.from_json(d), now),
            cache_dir,
            limit,
        )
    except _Missing as e:
        missing = e
    url = _join(base_url, "api/v0/queue/list")
    try:
        if _is_http(url):
            r = _request(url, method="POST", json_body={"limit": limit})
            if r.status == 200:
                return _queue_v0(url, r.body, limit)
            if r.status not in _REFUSES_POST and r.status != 404:
                _refuse(url, r, what)
        return _queue_v0(url, _get(url, what, cache_dir), limit)
    except _Missing as e:
        raise missing.nor(e) from None


def fetch_build_file(
    base_url: str, entry: PkgEntry, kind: str, *, build_id: int | None = None
) -> bytes:
    """The ``log``, ``diffoscope`` report or ``attestation`` of the build that made ``entry``.

    v1 first: its log is keyed by build id, and its per-artifact attestation carries the
    daemon's signature too. Where the server says which build a log belongs to (v1
    ``builds/<id>/artifacts``, or ``builds/<id>``), a log of another package is refused.
    """
    if kind not in BUILD_FILE_KINDS:
        raise ClientError(
            f"unknown build file kind {kind!r} (one of: {', '.join(BUILD_FILE_KINDS)})"
        )
    bid = entry.build_id if build_id is None else build_id
    if bid is None or isinstance(bid, bool) or not isinstance(bid, int) or bid < 0:
        raise ClientError(f"{entry.name} {entry.version} has no build (build id {bid!r})")
    what = f"{kind} of build {bid}"
    build = f"api/v1/builds/{bid}"
    aid = entry.artifact_id
    v1_path = f"{build}/log" if kind == "log" else f"{build}/artifacts/{aid}/{kind}"
    if kind == "log" or aid is not None:
        try:
            data = _get(_join(base_url, v1_path), what)
        except _Missing:
            pass
        else:
            if kind == "log":
                _check_build(base_url, bid, entry)
            return data
    try:
        data = _get(_join(base_url, f"api/v0/builds/{bid}/{kind}"), what)
    except _Missing as e:
        if aid is not None or kind == "log":
            raise
        data = _build_file_v1(base_url, bid, kind, e)
    return data


def attestation_fetcher(base_urls: Mapping[str, str]) -> Callable[[str, PkgEntry], bytes]:
    """A ``fetch_attestation`` for :func:`~rebuilder.client.verify.check_files`: rebuilder
    name -> its base URL."""

    def get(rebuilder: str, entry: PkgEntry) -> bytes:
        return fetch_build_file(base_urls[rebuilder], entry, "attestation")

    return get


# --- the two API versions ---------------------------------------------------------------------


def _either(
    base_url: str, v1_path: str, v0_path: str, what: str, cache_dir: Path | None
) -> tuple[str, bytes, int]:
    """``(url, body, version)`` of the v1 path, else of the v0 path."""
    url = _join(base_url, v1_path)
    try:
        return url, _get(url, what, cache_dir), 1
    except _Missing as e:
        missing = e
    url = _join(base_url, v0_path)
    try:
        return url, _get(url, what, cache_dir), 0
    except _Missing as e:
        raise missing.nor(e) from None


def _pages(
    base_url: str,
    path: str,
    what: str,
    parse: Callable[[Any], T],
    cache_dir: Path | None,
    limit: int | None = None,
) -> list[T]:
    """Every record of a v1 listing, walking rebuilderd's id cursor (``after=<last id>``,
    the daemon's keyset paging). Ends at ``total``, at an empty page, or at a page with no
    record not seen before (a static server answers every page alike)."""
    out: list[T] = []
    seen: set[int] = set()
    after: int | None = None
    for _ in range(MAX_PAGES):
        query: dict[str, int] = {"limit": PAGE if limit is None else min(PAGE, limit)}
        if after is not None:
            query["after"] = after
        url = _join(base_url, path) + "?" + urlencode(query)
        try:
            records, total = v1.parse_page(_json(url, _get(url, what, cache_dir)))
        except ValueError as e:
            raise ClientError(f"{url}: not a rebuilderd v1 {what}: {e}") from None
        ids: list[int] = []
        for r in records:
            i = r.get("id") if isinstance(r, dict) else None
            if isinstance(i, bool) or not isinstance(i, int):
                raise ClientError(
                    f"{url}: not a rebuilderd v1 {what}: a record has no integer 'id'"
                )
            ids.append(i)
        fresh = [(i, r) for i, r in zip(ids, records, strict=True) if i not in seen]
        if records and not fresh:
            log.warning(
                "%s: the server repeats its pages (a static server ignores ?after=);"
                " stopping after %d records",
                url,
                len(out),
            )
            break
        out.extend(_parse_each(url, [r for _, r in fresh], parse, what))
        seen.update(i for i, _ in fresh)
        if not fresh or (total is not None and len(out) >= total):
            break
        if limit is not None and len(out) >= limit:
            break
        after = max(i for i, _ in fresh)
    return out if limit is None else out[:limit]


def _queue_v0(url: str, data: bytes, limit: int | None) -> list[QueueEntry]:
    try:
        doc = v0.QueueList.from_json(_json(url, data))
    except ValueError as e:
        raise ClientError(f"{url}: not a rebuilder build queue: {e}") from None
    entries = [QueueEntry.from_v0(q, doc.now) for q in doc.queue]
    return entries if limit is None else entries[:limit]


def _check_build(base_url: str, build_id: int, entry: PkgEntry) -> None:
    """Refuse a build that, as the server describes it, did not make ``entry``."""
    base = _join(base_url, f"api/v1/builds/{build_id}")
    try:
        artifacts = v1.parse_list(
            _json(base, _get(f"{base}/artifacts", "artifacts")), v1.RebuildArtifact.from_json
        )
    except (ClientError, ValueError):
        artifacts = []  # not said here (a static site has no such file)
    if artifacts:
        names = sorted(a.name for a in artifacts)
        if entry.name not in names:
            raise ClientError(
                f"{base}: build {build_id} made {', '.join(names[:5])}, not {entry.name}: "
                "the server's answer is for another package"
            )
        return
    try:
        build = v1.Rebuild.from_json(_json(base, _get(base, "build")))
    except (ClientError, ValueError):
        return
    same = entry.version == build.version or entry.version.startswith(build.version + "+b")
    if not same or (entry.distro and build.distribution != entry.distro):
        raise ClientError(
            f"{base}: build {build_id} is {build.name} {build.version} ({build.distribution}),"
            f" not {entry.name} {entry.version}: the server's answer is for another package"
        )


def _build_file_v1(base_url: str, build_id: int, kind: str, missing: _Missing) -> bytes:
    """A v1 daemon's per-artifact file when the artifact is not known: the build's first
    artifact that has one (as rebuilderd's own v0 compatibility does)."""
    url = _join(base_url, f"api/v1/builds/{build_id}/artifacts")
    try:
        artifacts = v1.parse_list(_json(url, _get(url, "artifacts")), v1.RebuildArtifact.from_json)
    except _Missing:
        raise missing from None
    except ValueError as e:
        raise ClientError(f"{url}: not a rebuilderd artifact list: {e}") from None
    ids = sorted(a.id for a in artifacts if getattr(a, f"has_{kind}"))
    if not ids:
        raise ClientError(f"{url}: no artifact of build {build_id} has a {kind}")
    return _get(_join(base_url, f"api/v1/builds/{build_id}/artifacts/{ids[0]}/{kind}"), kind)


def _parse_each(url: str, items: Iterable[Any], parse: Callable[[Any], T], what: str) -> list[T]:
    out = []
    for i, item in enumerate(items):
        try:
            out.append(parse(item))
        except ValueError as e:
            raise ClientError(f"{url}: not a rebuilder {what}: item {i}: {e}") from None
    return out


def _json(url: str, data: bytes) -> Any:
    if data.lstrip()[:1] == b"<":
        raise ClientError(f"{url}: answered with an HTML/XML page, not a rebuilder's JSON")
    try:
        return json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ClientError(f"{url}: not JSON; is this a rebuilder?") from None


# --- transport: local files, or HTTP through fetch.py with a revalidating cache ----------------


def _join(base: str, path: str) -> str:
    return base.rstrip("/") + "/" + path


def _is_http(url: str) -> bool:
    return urlsplit(url).scheme in ("http", "https")


def _get(url: str, what: str, cache_dir: Path | None = None) -> bytes:
    parts = urlsplit(url)
    if parts.scheme in ("", "file"):  # a site on disk: the query is ignored, as a server would
        path = Path(unquote(parts.path)) if parts.scheme else Path(url.partition("?")[0])
        try:
            if not path.is_file():
                raise _Missing(str(path), what)
            return path.read_bytes()
        except OSError as e:
            raise ClientError(f"{path}: cannot read the {what}: {e.strerror}") from None
    if not _is_http(url):
        raise ClientError(
            f"{url}: unsupported URL scheme {parts.scheme!r} (http, https or a directory)"
        )
    cached = _cache_load(cache_dir, url) if cache_dir else None
    headers = {}
    if cached and cached.get("etag"):
        headers["If-None-Match"] = cached["etag"]
    if cached and cached.get("last_modified"):
        headers["If-Modified-Since"] = cached["last_modified"]
    r = _request(url, headers=headers)
    if r.status == 304 and cached:
        log.debug("%s: not modified, using the cached copy", url)
        return bytes(cached["body"])
    if r.status != 200:
        _refuse(url, r, what)
    if cache_dir:
        _cache_store(cache_dir, url, r)
    return r.body


def _request(url: str, **kw: Any) -> fetch.Answer:
    try:
        return fetch.request(url, max_size=MAX_BYTES, **kw)
    except FetchError as e:
        raise ClientError(str(e)) from None


def _refuse(url: str, r: fetch.Answer, what: str) -> None:
    """Raise for an answer other than 200: :class:`_Missing` for a 404."""
    if r.status == 404:
        raise _Missing(url, what)
    reason = f" {r.reason}" if r.reason else ""
    raise ClientError(f"{url}: HTTP {r.status}{reason} while fetching the {what}")


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


def _cache_store(cache_dir: Path, url: str, r: fetch.Answer) -> None:
    etag, modified = r.headers.get("ETag"), r.headers.get("Last-Modified")
    if not etag and not modified:
        return  # nothing to revalidate with: a cached copy would never be used
    body, meta = _cache_paths(cache_dir, url)
    m = {"url": url, "etag": etag, "last_modified": modified}
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        _fs.write_atomic(body, r.body)
        _fs.write_atomic(meta, json.dumps(m, sort_keys=True).encode())
    except OSError as e:
        log.warning("%s: cannot write the HTTP cache: %s", cache_dir, e.strerror)
