"""A hostile or broken mirror, backend or host, against the real CLI (issue 12).

Each test reproduces one attack and asserts its bound (memory, files, "ends
with a one-line error") and that the state and the site are intact. No test
asserts a duration: timeouts here are guards against a hang.
"""

from __future__ import annotations

import functools
import subprocess
import threading
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from .fixtures.debian import Archive
from .fixtures.operator import operator_dir, rebuild

pytestmark = pytest.mark.slow  # runs rebuild


class _Trickle(SimpleHTTPRequestHandler):
    """Serves a directory, but files whose name ends with ``slow`` one byte at a time."""

    slow = "InRelease"

    def do_GET(self) -> None:
        if not self.path.endswith(self.slow):
            super().do_GET()
            return
        self.send_response(200)
        self.send_header("Content-Length", "100000")
        self.end_headers()
        for _ in range(1200):  # bounded: two minutes at most
            try:
                self.wfile.write(b"-")
                self.wfile.flush()
            except OSError:
                return
            time.sleep(0.1)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def trickling(mirror: tuple[Archive, str]) -> Iterator[tuple[Archive, str]]:
    """The fixture archive served by a mirror that trickles its InRelease."""
    a, _ = mirror
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Trickle, directory=str(a.root))
    )
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield a, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def settings(work: Path, text: str) -> None:
    cfg = work / "rebuilder.toml"
    cfg.write_text(cfg.read_text().replace("[rebuilder]\n", f"[rebuilder]\n{text}", 1))


def last_line(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    return r.stderr.strip().splitlines()[-1]


# --- point 5: a mirror that sends one byte a second ----------------------------------------


@pytest.mark.parametrize(
    ("setting", "args", "why"),
    [
        ("sync_timeout = 2\n", (), "stopped: the sync of fixture deadline of 2 s passed"),
        ("", ("--max-time", "2"), "stopped: the --max-time deadline of 2 s passed"),
        (
            "download_timeout = 2\n",
            (),
            "no complete answer within 2 s (the deadline for this download)",
        ),
    ],
)
def test_a_trickling_mirror_stops_the_sync_not_the_pass(
    trickling: tuple[Archive, str], tmp_path: Path, setting: str, args: tuple[str, ...], why: str
) -> None:
    a, url = trickling
    work = operator_dir(tmp_path, a, url)
    settings(work, setting)
    r = rebuild(work, "run", *args, timeout=300)  # the timeout is a guard against the hang
    assert r.returncode == 1
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("rebuild: error:")]
    assert errors == [f"rebuild: error: fixture: {url}/dists/fixture/InRelease: {why}"], r.stderr
    assert "pass done: 0 built" in last_line(r)
    assert (work / "site" / "index.html").exists()  # the site is still rendered
    assert not (work / "state" / "fixture.json").exists()  # nothing half-synced was saved
