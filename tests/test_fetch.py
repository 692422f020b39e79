"""The fetch layer: decompression by magic with a bound, downloads with checksums and retries."""

from __future__ import annotations

import bz2
import gzip
import lzma
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import zstandard

from rebuilder import fetch
from rebuilder.errors import ChecksumError, FetchError, NotFoundError

from .fixtures.http import trickle

PLAIN = b"Package: hello\nVersion: 2.10-3\n\n" * 1000
COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "xz": lzma.compress,
    "gzip": gzip.compress,
    "bzip2": bz2.compress,
    "zstd": lambda d: zstandard.ZstdCompressor().compress(d),
}


@pytest.mark.parametrize("name", COMPRESSORS)
def test_decompress_by_magic_bounded_and_truncation_caught(name: str) -> None:
    packed = COMPRESSORS[name](PLAIN)
    assert fetch.compression_of(packed) == name
    assert fetch.decompress(packed) == PLAIN
    with pytest.raises(FetchError, match=f"{name} data decompresses to more than 1000 bytes"):
        fetch.decompress(packed, limit=1000)
    if name != "zstd":  # a zstd frame cut short is read as far as it goes; the tar layer checks
        with pytest.raises(FetchError, match=f"corrupt {name} data"):
            fetch.decompress(packed[: len(packed) // 2])


def test_concatenated_streams_are_all_read() -> None:
    assert fetch.decompress(gzip.compress(b"a") + gzip.compress(b"b")) == b"ab"
    assert fetch.decompress(lzma.compress(b"a") + lzma.compress(b"b")) == b"ab"
    bomb = gzip.compress(bytes(50 << 20))  # 50 MiB of zeros in ~50 KB
    with pytest.raises(FetchError, match="more than"):
        fetch.decompress(bomb, limit=1 << 20)


class _Handler(BaseHTTPRequestHandler):
    hits: ClassVar[dict[str, int]] = {}

    def do_GET(self) -> None:
        n = self.hits[self.path] = self.hits.get(self.path, 0) + 1
        if self.path == "/flaky" and n == 1:
            self.send_response(503)
            self.end_headers()
            return
        if self.path in ("/flaky", "/file"):
            self.send_response(200)
            self.end_headers()
            self.wfile.write(PLAIN)
            return
        if self.path == "/trickle":  # a hostile mirror: one byte at a time, never done
            trickle(self, 100000, seconds=300)
            return
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    _Handler.hits = {}
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_download_checks_digest_and_size_and_leaves_nothing_on_mismatch(
    server: str, tmp_path: Path
) -> None:
    good = fetch.download(f"{server}/file", tmp_path / "f")
    assert (tmp_path / "f").read_bytes() == PLAIN
    with pytest.raises(ChecksumError, match="checksum mismatch: SHA256"):
        fetch.download(f"{server}/file", tmp_path / "g", sha256="0" * 64)
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        fetch.download(f"{server}/file", tmp_path / "h", sha256=good, size=10)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_transient_errors_are_retried_and_404_is_final(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch, "BACKOFF", 0.01)
    assert fetch.fetch_bytes(f"{server}/flaky") == PLAIN
    assert _Handler.hits["/flaky"] == 2
    with pytest.raises(NotFoundError, match="HTTP 404"):
        fetch.fetch_bytes(f"{server}/missing")
    assert _Handler.hits["/missing"] == 1
    assert fetch.fetch_bytes(f"{server}/missing", missing_ok=True) is None
    with pytest.raises(NotFoundError, match="no such file"):
        fetch.download(str(tmp_path / "nope"), tmp_path / "x")


def _guarded(fn: Callable[[], object]) -> BaseException | None:
    """Run ``fn`` in a thread; the exception it raised. The join is a guard against a hang."""
    got: list[BaseException | None] = []

    def run() -> None:
        try:
            fn()
            got.append(None)
        except BaseException as e:
            got.append(e)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(120)
    assert got, "the download never ended"
    return got[0]


def test_a_trickling_mirror_meets_the_download_deadline(
    server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # sized from the expected size: 1 s + 100000 bytes at 1 MB/s
    monkeypatch.setattr(fetch, "_deadlines", fetch.Deadlines(base=1.0, min_rate=1 << 20))
    e = _guarded(lambda: fetch.download(f"{server}/trickle", tmp_path / "t", size=100000))
    assert isinstance(e, FetchError) and not isinstance(e, ChecksumError)
    assert (
        str(e)
        == f"{server}/trickle: no complete answer within 1 s (the deadline for this download)"
    )
    assert list(tmp_path.iterdir()) == []  # nothing half-written is left
    assert fetch.Deadlines(base=60, min_rate=1000).for_size(1_000_000) == 1060


def test_an_enclosing_deadline_bounds_every_download_in_it(server: str) -> None:
    def sync() -> None:
        with fetch.deadline(2, "sync of fixture"), fetch.deadline(3600, "inner, later"):
            fetch.fetch_bytes(f"{server}/trickle")

    e = _guarded(sync)
    assert isinstance(e, FetchError)
    assert str(e) == f"{server}/trickle: stopped: the sync of fixture deadline of 2 s passed"
    assert fetch._outer.get() is None  # the block's deadline ends with it
