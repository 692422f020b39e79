"""Fetching: HTTP(S) URLs and local paths, with timeouts, retries, size caps and checksums.

Every byte this tool reads from a mirror goes through here, so that the
rules are in one place: a transient error (connection reset, 5xx, timeout)
is retried with backoff; a 4xx is final; what the index promised (SHA256,
size) is checked before anyone else sees the bytes; compressed indexes are
recognised by their magic bytes, not by their names.

>>> decompress(b"plain text")
b'plain text'
>>> import gzip; decompress(gzip.compress(b"x"))
b'x'
"""

from __future__ import annotations

import bz2
import hashlib
import io
import logging
import lzma
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, TypeVar
from urllib.parse import unquote, urlsplit

import requests

from rebuilder.errors import ChecksumError, FetchError, NotFoundError

log = logging.getLogger(__name__)

USER_AGENT = "rebuilder/0.1 (+reproducible builds verification)"
TIMEOUT = 60.0
RETRIES = 3
BACKOFF = 1.0
_CHUNK = 1 << 20
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}

_session: requests.Session | None = None


def session() -> requests.Session:
    """One shared session per process: connection reuse matters for thousands of downloads."""
    global _session
    if _session is None:
        s = requests.Session()
        s.headers["User-Agent"] = USER_AGENT
        adapter = requests.adapters.HTTPAdapter(pool_connections=16, pool_maxsize=32)
        s.mount("http://", adapter)
        s.mount("https://", adapter)
        _session = s
    return _session


def is_local(url: str) -> bool:
    return "://" not in url or url.startswith("file://")


def local_path(url: str) -> Path:
    return Path(unquote(urlsplit(url).path)) if url.startswith("file://") else Path(url)


def fetch_bytes(
    url: str,
    *,
    timeout: float = TIMEOUT,
    retries: int = RETRIES,
    max_size: int | None = None,
    missing_ok: bool = False,
) -> bytes | None:
    """The whole content of ``url`` (or a local path). ``None`` for 404 when ``missing_ok``."""
    if is_local(url):
        path = local_path(url)
        try:
            if max_size is not None and path.stat().st_size > max_size:
                raise FetchError(f"{url}: larger than {max_size} bytes")
            return path.read_bytes()
        except FileNotFoundError:
            if missing_ok:
                return None
            raise NotFoundError(f"{url}: no such file") from None
        except OSError as e:
            raise FetchError(f"{url}: cannot read: {e.strerror}") from None
    with tempfile.SpooledTemporaryFile(max_size=64 << 20) as buf:  # type: ignore[var-annotated]
        ok = _get(
            url, buf, timeout=timeout, retries=retries, max_size=max_size, missing_ok=missing_ok
        )
        if not ok:
            return None
        buf.seek(0)
        return buf.read()


def download(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    timeout: float = TIMEOUT,
    retries: int = RETRIES,
    max_size: int | None = None,
) -> str:
    """Save ``url`` to ``dest`` atomically, check size and SHA256 if given; return the SHA256.

    A checksum mismatch removes what was downloaded and raises :class:`ChecksumError`.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=".part-")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w+b") as out:
            if is_local(url):
                try:
                    with local_path(url).open("rb") as src:
                        shutil.copyfileobj(src, out, _CHUNK)
                except FileNotFoundError:
                    raise NotFoundError(f"{url}: no such file") from None
                except OSError as e:
                    raise FetchError(f"{url}: cannot read: {e.strerror}") from None
            else:
                # more bytes than the index promised is a checksum failure, found early
                promised = size if max_size is None else None
                _get(url, out, timeout=timeout, retries=retries, max_size=max_size,
                     promised_size=promised)  # fmt: skip
            out.flush()
            got_size = out.tell()
            out.seek(0)
            digest = sha256_file(out)
        if size is not None and got_size != size:
            raise ChecksumError(
                f"{url}: checksum mismatch: {got_size} bytes, the index says {size}"
            )
        if sha256 is not None and digest != sha256.lower():
            raise ChecksumError(
                f"{url}: checksum mismatch: SHA256 {digest}, the index says {sha256.lower()}"
            )
        tmp.replace(dest)
        return digest
    finally:
        tmp.unlink(missing_ok=True)


def sha256_file(f: BinaryIO) -> str:
    h = hashlib.sha256()
    while chunk := f.read(_CHUNK):
        h.update(chunk)
    return h.hexdigest()


def sha256_path(path: Path) -> str:
    with path.open("rb") as f:
        return sha256_file(f)


def _get(
    url: str,
    out: BinaryIO,
    *,
    timeout: float,
    retries: int,
    max_size: int | None,
    missing_ok: bool = False,
    promised_size: int | None = None,
) -> bool:
    """Stream ``url`` into ``out``, retrying transient failures. False for an accepted 404."""

    def once(last: bool) -> bool:
        out.seek(0)
        out.truncate()
        with session().get(url, stream=True, timeout=timeout) as r:
            if r.status_code == 404 and missing_ok:
                return False
            if r.status_code in _TRANSIENT_STATUS and not last:
                raise _Transient(f"HTTP {r.status_code}")
            if r.status_code in (404, 410):
                raise NotFoundError(f"{url}: HTTP {r.status_code} {r.reason or ''}".rstrip())
            if r.status_code >= 400:
                raise FetchError(f"{url}: HTTP {r.status_code} {r.reason or ''}".rstrip())
            total = 0
            for chunk in r.iter_content(_CHUNK):
                total += len(chunk)
                if max_size is not None and total > max_size:
                    raise FetchError(f"{url}: larger than {max_size} bytes")
                if promised_size is not None and total > promised_size:
                    raise ChecksumError(
                        f"{url}: checksum mismatch: more than the {promised_size} bytes "
                        "the index says"
                    )
                out.write(chunk)
            return True

    return _retrying(url, retries, once)


T = TypeVar("T")


def _retrying(url: str, retries: int, once: Callable[[bool], T]) -> T:
    """``once(last)`` until it returns, retrying transient failures with backoff (the one
    retry policy of every HTTP request this tool makes); ``last`` is true on the final try."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return once(attempt > retries)
        except (_Transient, requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError) as e:  # fmt: skip
            if attempt > retries:
                raise FetchError(f"{url}: {_describe(e)} (after {attempt} tries)") from None
            delay = BACKOFF * 2 ** (attempt - 1)
            log.warning("%s: %s; retrying in %.1f s", url, _describe(e), delay)
            time.sleep(delay)
        except requests.RequestException as e:
            raise FetchError(f"{url}: {_describe(e)}") from None


@dataclass(frozen=True, slots=True)
class Answer:
    """A server's whole answer to :func:`request`, whatever its status."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes


def request(
    url: str,
    *,
    method: str = "GET",
    headers: Mapping[str, str] | None = None,
    json_body: Any = None,
    timeout: float = TIMEOUT,
    retries: int = RETRIES,
    max_size: int = 1 << 30,
    deadline: float = 30 * 60.0,
) -> Answer:
    """One request with the retry policy, its answer read whole (at most ``max_size``
    bytes, within ``deadline`` seconds): for callers that look at the status themselves.
    Only requests that change nothing may be sent (they are retried)."""

    def once(last: bool) -> Answer:
        body = {"json": json_body} if method == "POST" else {}
        with session().request(
            method, url, headers=dict(headers or {}), timeout=timeout, stream=True, **body
        ) as r:
            if r.status_code in _TRANSIENT_STATUS and not last:
                raise _Transient(f"HTTP {r.status_code}")
            # The timeout bounds each wait, not the whole answer: a server dripping bytes
            # (or sending without end) is cut off by the deadline and the size limit.
            ends = time.monotonic() + deadline
            chunks, size = [], 0
            for chunk in r.iter_content(_CHUNK):
                size += len(chunk)
                if size > max_size:
                    raise FetchError(f"{url}: answer larger than {max_size >> 20} MiB")
                if time.monotonic() > ends:
                    raise FetchError(f"{url}: answer took longer than {deadline:.0f} s")
                chunks.append(chunk)
            return Answer(r.status_code, r.reason or "", r.headers, b"".join(chunks))

    return _retrying(url, retries, once)


class _Transient(Exception):
    pass


def _describe(e: BaseException) -> str:
    if isinstance(e, requests.Timeout):
        return "timed out"
    if isinstance(e, requests.ConnectionError):
        return "connection failed"
    if isinstance(e, requests.exceptions.ChunkedEncodingError):
        return "connection broken while reading the answer"
    if isinstance(e, requests.exceptions.InvalidURL | requests.exceptions.MissingSchema):
        return "not a valid URL"
    return str(e) or type(e).__name__


# A decompressed index larger than this is refused: a small hostile file must not be able
# to inflate into all the memory of the machine (Debian's largest index is ~100 MB).
MAX_DECOMPRESSED = 2 << 30


class _TooLarge(Exception):
    pass


def _inflate(new: Callable[[], Any], data: bytes, limit: int) -> bytes:
    """Every concatenated stream of ``data`` (gzip members, xz/bzip2 streams), at most ``limit``
    bytes of output; a stream cut short is an error."""
    out, total = [], 0
    while data:
        d = new()
        chunk = d.decompress(data, limit + 1 - total)
        total += len(chunk)
        if total > limit:
            raise _TooLarge
        out.append(chunk)
        if not d.eof:
            raise EOFError("compressed data ended before the end-of-stream marker")
        data = d.unused_data.lstrip(b"\0")  # zero padding between streams is allowed
    return out[0] if len(out) == 1 else b"".join(out)


def _zstd(data: bytes, limit: int) -> bytes:
    import zstandard

    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True) as r:
        out = r.read(limit + 1)
    if len(out) > limit:
        raise _TooLarge
    return out


# (magic, name, decompress) — checked in order; the magic, never the file name, decides.
_FORMATS: tuple[tuple[bytes, str, Callable[[bytes, int], bytes]], ...] = (
    (b"\xfd7zXZ\x00", "xz", lambda d, n: _inflate(lzma.LZMADecompressor, d, n)),
    (b"\x1f\x8b", "gzip", lambda d, n: _inflate(lambda: zlib.decompressobj(wbits=31), d, n)),
    (b"BZh", "bzip2", lambda d, n: _inflate(bz2.BZ2Decompressor, d, n)),
    (b"\x28\xb5\x2f\xfd", "zstd", _zstd),
)


def compression_of(data: bytes) -> str | None:
    """The compression format named by ``data``'s magic bytes, or None for plain data."""
    for magic, name, _ in _FORMATS:
        if data.startswith(magic):
            return name
    return None


def decompress(
    data: bytes,
    *,
    what: str = "data",
    size_hint: int | None = None,
    limit: int = MAX_DECOMPRESSED,
) -> bytes:
    """Decompress by magic (xz, gzip, bzip2, zstd); plain data is returned as is.

    ``size_hint`` is the expected decompressed size when known (a Debian
    Release lists it): gzip data then inflates straight into a buffer of that
    size, without the transient second copy of the output (70 MB less at the
    peak for an index of Debian unstable). More than ``limit`` bytes of output
    is an error (a decompression bomb).

    >>> import zlib
    >>> decompress(zlib.compress(bytes(10_000), wbits=31), limit=100)
    Traceback (most recent call last):
    ...
    rebuilder.errors.FetchError: data: gzip data decompresses to more than 100 bytes
    """
    if (
        size_hint
        and size_hint <= limit
        and data.startswith(b"\x1f\x8b")
        and size_hint <= 64 * len(data) + (1 << 20)
    ):
        try:
            out = zlib.decompress(data, 31, size_hint)
        except zlib.error as e:
            raise FetchError(f"{what}: corrupt gzip data ({e})") from None
        if len(out) == size_hint:
            return out
        del out  # several gzip members, or not the size announced: the general path decides
    for magic, name, fn in _FORMATS:
        if data.startswith(magic):
            try:
                return fn(data, limit)
            except _TooLarge:
                msg = f"{what}: {name} data decompresses to more than {limit} bytes"
                raise FetchError(msg) from None
            except (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError) as e:
                raise FetchError(f"{what}: corrupt {name} data ({e})") from None
            except Exception as e:  # zstandard.ZstdError and friends
                raise FetchError(f"{what}: corrupt {name} data ({e})") from None
    return data
