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
import contextlib
import contextvars
import hashlib
import io
import logging
import lzma
import shutil
import socket
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, TypeVar
from urllib.parse import unquote, urlsplit

import requests

from rebuilder import _fs
from rebuilder.errors import ChecksumError, FetchError, NotFoundError

log = logging.getLogger(__name__)

USER_AGENT = "rebuilder/0.1 (+reproducible builds verification)"
TIMEOUT = 60.0
RETRIES = 3
BACKOFF = 1.0
_CHUNK = 1 << 20
_TRANSIENT_STATUS = {408, 425, 429, 500, 502, 503, 504}

_session: requests.Session | None = None


@dataclass(frozen=True, slots=True)
class Deadlines:
    """How long one download may take in all, retries included: ``base`` seconds plus its
    expected size at ``min_rate`` bytes a second (``base`` alone when the size is unknown).

    requests' timeout bounds each read, so a mirror that sends a byte a second would
    otherwise hold a download (and the pass) for ever.
    """

    base: float = 600.0
    min_rate: int = 64 << 10

    def for_size(self, size: int | None) -> float:
        return self.base + (size or 0) / max(1, self.min_rate)


_deadlines = Deadlines()
# an outer deadline (a sync's, the pass's --max-time): (monotonic end, what it is, seconds)
_outer: contextvars.ContextVar[tuple[float, str, float] | None] = contextvars.ContextVar(
    "rebuilder_fetch_deadline", default=None
)


def set_deadlines(d: Deadlines) -> None:
    """The per-download deadlines of this process (from ``[rebuilder]`` settings)."""
    global _deadlines
    _deadlines = d


@contextlib.contextmanager
def deadline(seconds: float | None, what: str) -> Iterator[None]:
    """Every download in this block (this thread) ends ``seconds`` from now at the latest,
    or at an enclosing deadline if that comes first; ``what`` names it in the error."""
    outer = _outer.get()
    end = time.monotonic() + seconds if seconds else None
    if end is None or (outer is not None and outer[0] <= end):
        yield
        return
    token = _outer.set((end, what, float(seconds or 0)))
    try:
        yield
    finally:
        _outer.reset(token)


class _Clock:
    """One download's deadline: its own (sized) or an enclosing one, whichever comes first."""

    def __init__(self, url: str, size: int | None) -> None:
        own = _deadlines.for_size(size)
        self.url, self.end = url, time.monotonic() + own
        self.why = f"no complete answer within {own:.0f} s (the deadline for this download)"
        outer = _outer.get()
        if outer is not None and outer[0] < self.end:
            self.end = outer[0]
            self.why = f"stopped: the {outer[1]} deadline of {outer[2]:.0f} s passed"
        self.expired = False

    def left(self) -> float:
        return self.end - time.monotonic()

    def check(self) -> None:
        if self.expired or self.left() <= 0:
            raise FetchError(f"{self.url}: {self.why}")

    @contextlib.contextmanager
    def watch(self, r: requests.Response) -> Iterator[None]:
        """Cut the connection at the deadline: a read blocked on a trickle returns then."""

        def expire() -> None:
            self.expired = True
            sock = _socket_of(r)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

        timer = threading.Timer(max(0.0, self.left()), expire)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()


def _socket_of(r: requests.Response) -> socket.socket | None:
    """The socket under a streamed response (urllib3 2's connection, else http.client's)."""
    conn = getattr(r.raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    if sock is None:
        fp = getattr(getattr(r.raw, "_fp", None), "fp", None)
        sock = getattr(getattr(fp, "raw", None), "_sock", None)
    return sock if isinstance(sock, socket.socket) else None


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
    with tempfile.SpooledTemporaryFile(max_size=64 << 20) as buf:
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
    with _fs.replacing(dest) as part:
        out = part.file
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
            _get(
                url,
                out,
                timeout=timeout,
                retries=retries,
                max_size=max_size,
                promised_size=promised,
            )
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
    return digest


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
    out: IO[bytes],
    *,
    timeout: float,
    retries: int,
    max_size: int | None,
    missing_ok: bool = False,
    promised_size: int | None = None,
) -> bool:
    """Stream ``url`` into ``out``, retrying transient failures. False for an accepted 404."""
    clock = _Clock(url, promised_size)

    def once(last: bool) -> bool:
        out.seek(0)
        out.truncate()
        clock.check()
        with (
            session().get(url, stream=True, timeout=min(timeout, clock.left())) as r,
            clock.watch(r),
        ):
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
                clock.check()
                total += len(chunk)
                if max_size is not None and total > max_size:
                    raise FetchError(f"{url}: larger than {max_size} bytes")
                if promised_size is not None and total > promised_size:
                    raise ChecksumError(
                        f"{url}: checksum mismatch: more than the {promised_size} bytes "
                        "the index says"
                    )
                out.write(chunk)
            clock.check()  # a connection cut at the deadline may look like a short answer
            return True

    return _retrying(url, retries, once, clock)


T = TypeVar("T")


def _retrying(url: str, retries: int, once: Callable[[bool], T], clock: _Clock | None = None) -> T:
    """``once(last)`` until it returns, retrying transient failures with backoff (the one
    retry policy of every HTTP request this tool makes); ``last`` is true on the final try.
    With a ``clock``, no retry waits past its deadline."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return once(attempt > retries)
        except (
            _Transient,
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as e:
            if clock is not None:
                clock.check()
            if attempt > retries:
                raise FetchError(f"{url}: {_describe(e)} (after {attempt} tries)") from None
            delay = BACKOFF * 2 ** (attempt - 1)
            if clock is not None:
                delay = min(delay, max(0.0, clock.left()))
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
# to inflate into all the memory of the machine (Debian's largest index is ~100 MB). When the
# index lists the decompressed size (a Debian Release does), that size is the limit instead.
MAX_DECOMPRESSED = 1 << 30
_OUT_CHUNK = 16 << 20  # output asked of the decompressor per call


class _TooLarge(Exception):
    pass


def _inflate(new: Callable[[], Any], data: bytes, limit: int) -> bytes:
    """Every concatenated stream of ``data`` (gzip members, xz/bzip2 streams), at most ``limit``
    bytes of output; a stream cut short is an error.

    Output comes in chunks of at most ``_OUT_CHUNK`` bytes and the total is checked after each,
    so a bomb costs the limit (plus one chunk) of memory and the time to inflate that much.
    """
    out: list[bytes] = []
    total = 0
    while data:
        d = new()
        chunk = d.decompress(data, min(_OUT_CHUNK, limit + 1 - total))
        while True:
            total += len(chunk)
            if total > limit:
                raise _TooLarge
            out.append(chunk)
            if d.eof:
                break
            more = getattr(d, "unconsumed_tail", b"")  # zlib keeps the input it did not use
            if not more and getattr(d, "needs_input", not chunk):  # lzma/bz2 keep it inside
                raise EOFError("compressed data ended before the end-of-stream marker")
            chunk = d.decompress(more, min(_OUT_CHUNK, limit + 1 - total))
        data = d.unused_data.lstrip(b"\0")  # zero padding between streams is allowed
    return out[0] if len(out) == 1 else b"".join(out)


def _zstd(data: bytes, limit: int) -> bytes:
    import zstandard

    out: list[bytes] = []
    total = 0
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data), read_across_frames=True) as r:
        while chunk := r.read(min(_OUT_CHUNK, limit + 1 - total)):
            total += len(chunk)
            if total > limit:
                raise _TooLarge
            out.append(chunk)
    return b"".join(out)


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

    ``size_hint`` is the decompressed size the (signed) index lists, when it
    lists one (a Debian Release does): more output than that is an error found
    as soon as it is produced, so a decompression bomb costs at most about
    twice that size of memory. Without a hint, more than ``limit`` bytes is
    the error.

    >>> import zlib
    >>> decompress(zlib.compress(bytes(10_000), wbits=31), limit=100)
    Traceback (most recent call last):
    ...
    rebuilder.errors.FetchError: data: gzip data decompresses to more than 100 bytes
    >>> decompress(zlib.compress(bytes(10_000), wbits=31), what="x", size_hint=10)
    Traceback (most recent call last):
    ...
    rebuilder.errors.FetchError: x: gzip data decompresses to more than the 10 bytes the index lists
    """
    listed = size_hint is not None and size_hint < limit
    if listed:
        limit = size_hint  # type: ignore[assignment]
    for magic, name, fn in _FORMATS:
        if data.startswith(magic):
            try:
                return fn(data, limit)
            except _TooLarge:
                bound = f"the {limit} bytes the index lists" if listed else f"{limit} bytes"
                raise FetchError(f"{what}: {name} data decompresses to more than {bound}") from None
            except (OSError, EOFError, lzma.LZMAError, zlib.error, ValueError) as e:
                raise FetchError(f"{what}: corrupt {name} data ({e})") from None
            except Exception as e:  # zstandard.ZstdError and friends
                raise FetchError(f"{what}: corrupt {name} data ({e})") from None
    return data
