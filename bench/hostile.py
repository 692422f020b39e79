"""What a hostile mirror or backend costs now (issue 12): the figures of docs/hostile.md.

1. **Decompression bomb**: a gzip of ``--bomb-gib`` GiB of zeros (a few MB on
   the wire) given to ``fetch.decompress`` with the size a Release lists for the
   plain index (``--listed-mib``). Each case runs in a fresh process, so its peak
   resident memory is its own: the floor is the same process inflating an
   honest index of the listed size.
2. **FIFO in the output directory**: a backend that leaves a FIFO named like
   the artifact; time from the start of ``run_build`` to its verdict, against
   the floor of the same build leaving the right file.
3. **Slow mirror**: a 127.0.0.1 server sending one byte every 0.1 s; time to
   the error of a download whose deadline is ``--deadline`` seconds, as a
   ratio to that deadline.

    python bench/hostile.py [--bomb-gib 3] [--listed-mib 60] [--deadline 5]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rebuilder import fetch  # noqa: E402
from rebuilder.build import BuildContext, run_build  # noqa: E402
from rebuilder.model import Artifact, BuildGroup, Job  # noqa: E402
from tests.fixtures.http import trickle  # noqa: E402

_INFLATE = textwrap.dedent("""
    import json, resource, sys, time
    from pathlib import Path
    from rebuilder import fetch
    data, listed = Path(sys.argv[1]).read_bytes(), int(sys.argv[2])
    t0, error = time.monotonic(), ""
    try:
        fetch.decompress(data, what="Packages.gz", size_hint=listed)
    except Exception as e:
        error = str(e)
    took = time.monotonic() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"seconds": took, "peak": peak, "error": error}))
""")


def _gzip_file(path: Path, size: int, chunk: bytes) -> None:
    import zlib

    c = zlib.compressobj(6, zlib.DEFLATED, 31)
    with path.open("wb") as f:
        for _ in range(size // len(chunk)):
            f.write(c.compress(chunk))
        f.write(c.flush())


def _inflate(path: Path, listed: int) -> dict[str, object]:
    r = subprocess.run(
        [sys.executable, "-c", _INFLATE, str(path), str(listed)],
        capture_output=True, text=True, check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )  # fmt: skip
    return json.loads(r.stdout)


def bomb(tmp: Path, gib: float, listed_mib: int) -> None:
    listed = listed_mib << 20
    honest, hostile = tmp / "honest.gz", tmp / "bomb.gz"
    line = b"Package: hello\nVersion: 2.10-3\nArchitecture: amd64\n\n" * 1024
    _gzip_file(honest, listed - listed % len(line), line)
    _gzip_file(hostile, int(gib * (1 << 30)), bytes(8 << 20))
    floor = _inflate(honest, listed - listed % len(line))
    got = _inflate(hostile, listed)
    mib = 1 << 20
    print(f"bomb: {hostile.stat().st_size / mib:.1f} MiB of gzip = {gib} GiB of zeros, "
          f"the Release lists {listed_mib} MiB")  # fmt: skip
    print(f"  honest index: {floor['seconds']:.2f} s, peak {floor['peak'] / mib:.0f} MiB")  # type: ignore[operator]
    print(f"  bomb:         {got['seconds']:.2f} s, peak {got['peak'] / mib:.0f} MiB"  # type: ignore[operator]
          f"  ({got['seconds'] / floor['seconds']:.2f}x the time, "  # type: ignore[operator]
          f"{got['peak'] / floor['peak']:.2f}x the memory of the honest index)")  # type: ignore[operator]  # fmt: skip
    print(f"  error: {got['error']}")


class _Trickle(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        trickle(self, 1000000, seconds=600)

    def log_message(self, *args: object) -> None:
        pass


def slow_mirror(tmp: Path, deadline: float) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/Packages.gz"
    fetch.set_deadlines(fetch.Deadlines(base=deadline, min_rate=1 << 30))
    t0 = time.monotonic()
    try:
        fetch.download(url, tmp / "slow", size=1_000_000)
        error = "(no error!)"
    except fetch.FetchError as e:
        error = str(e)
    took = time.monotonic() - t0
    server.shutdown()
    print(f"slow mirror (1 byte / 0.1 s): error after {took:.2f} s, "
          f"{took / deadline:.2f}x the {deadline:g} s deadline: {error}")  # fmt: skip


def fifo(tmp: Path) -> None:
    data = b"hello world\n"
    pub = tmp / "pub"
    pub.mkdir()
    (pub / "hello_1_amd64.deb").write_bytes(data)
    art = Artifact("hello", "1", "amd64", str(pub / "hello_1_amd64.deb"),
                   hashlib.sha256(data).hexdigest(), len(data))  # fmt: skip
    group = BuildGroup("hello", "1", "debian", "b", "main", "amd64", art.url, (art,))
    times = {}
    for name, body in (("copy", 'cp hello_1_amd64.deb "$REBUILDERD_OUTDIR/"'),
                       ("fifo", 'mkfifo "$REBUILDERD_OUTDIR/hello_1_amd64.deb"')):  # fmt: skip
        script = tmp / f"{name}.sh"
        script.write_text(f"#!/bin/sh\nset -e\n{body}\n")
        script.chmod(0o755)
        ctx = BuildContext(backend=script, results_dir=tmp / name / "builds",
                           work_dir=tmp / name / "work", timeout=60, log_limit=1 << 20,
                           diffoscope=False, diffoscope_timeout=60,
                           diffoscope_limit=1 << 20)  # fmt: skip
        t0 = time.monotonic()
        attempt = run_build(Job("bench", group, "new", build_id=1), ctx)
        times[name] = (time.monotonic() - t0, f"{attempt.status.value} ({attempt.reason})")
    floor, (took, verdict) = times["copy"][0], times["fifo"]
    print(f"FIFO in the output: {verdict} after {took:.2f} s, "
          f"{took / floor:.2f}x an honest build's {floor:.2f} s")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bomb-gib", type=float, default=3.0)
    ap.add_argument("--listed-mib", type=int, default=60)
    ap.add_argument("--deadline", type=float, default=5.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as d:
        tmp = Path(d)
        bomb(tmp, args.bomb_gib, args.listed_mib)
        fifo(tmp)
        slow_mirror(tmp, args.deadline)


if __name__ == "__main__":
    main()
