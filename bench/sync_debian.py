#!/usr/bin/env python3
"""Benchmark: sync Debian unstable's main (amd64 + all) with the real rebuilder.sync.debian.

The first run downloads the suite's real ``InRelease`` and the ``Sources`` and
``Packages`` indexes the sync will choose, once, from the mirror named in the
host's apt sources, into a cache outside the repository (``--cache``, default
``~/.cache/rebuilder-bench``). Every run then serves that copy on 127.0.0.1
(a separate ``http.server`` process, so serving costs this process nothing)
and times :func:`rebuilder.sync.sync_profile` (the CLI's way into
:func:`rebuilder.sync.debian.sync`) against it:

1. ``cold``: an empty index cache (indexes travel over local HTTP, as after
   a mirror update), 2. ``warm``: ``force`` with the index cache filled
   (parse + group only), 3. ``unchanged``: with the fingerprints of run 1,
   as every pass after the first on a quiet mirror.

Valid-Until is not checked: the cached InRelease ages by design.

Usage: python bench/sync_debian.py [--cache DIR] [--suite sid] [--refresh]
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rebuilder import fetch
from rebuilder.config import Profile, Release, host_apt_mirror
from rebuilder.model import Snapshot
from rebuilder.sync import SyncContext, sync_profile
from rebuilder.sync import debian as deb
from rebuilder.sync._release import DEFAULT_KEYRING, parse_release, verify_clearsigned

REPO = Path(__file__).resolve().parent.parent
PLACEHOLDER_BUILDINFO = "https://buildinfo.example"  # only a URL prefix: nothing is fetched


def prepare(cache: Path, mirror: str, suite: str, comp: str, arch: str, refresh: bool) -> Path:
    """Download InRelease and the chosen indexes into ``cache/mirror`` unless already there."""
    root = cache / "mirror"
    dists = root / "dists" / suite
    inrelease = dists / "InRelease"
    if refresh or not inrelease.exists():
        print(f"downloading {mirror}/dists/{suite}/InRelease", file=sys.stderr)
        fetch.download(f"{mirror}/dists/{suite}/InRelease", inrelease)
    data = inrelease.read_bytes()
    release = parse_release(
        verify_clearsigned(data, Path(DEFAULT_KEYRING), what=str(inrelease)), what=str(inrelease)
    )
    for path in (f"{comp}/source/Sources", f"{comp}/binary-{arch}/Packages"):
        entry = deb.choose_index(release, path)
        dest = dists / entry.path
        if dest.exists() and dest.stat().st_size == entry.size:
            continue
        print(f"downloading {mirror}/dists/{suite}/{entry.path}", file=sys.stderr)
        fetch.download(
            f"{mirror}/dists/{suite}/{entry.path}", dest, sha256=entry.sha256, size=entry.size
        )
    return root


def serve(root: Path) -> tuple[str, Callable[[], None]]:
    """Serve ``root`` on 127.0.0.1 from a child process; return its URL and a stop function."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-u",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "--directory",
            str(root),
            "0",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"port (\d+)", line)
    if not m:
        proc.kill()
        sys.exit(f"http.server did not start: {line!r}")

    def stop() -> None:
        proc.terminate()
        proc.wait(10)

    return f"http://127.0.0.1:{m.group(1)}", stop


def profile(url: str, suite: str, comp: str, arch: str) -> Profile:
    return Profile(
        name="bench",
        distro="debian",
        releases=(Release(suite, url),),
        components=(comp,),
        architectures=(arch, "all"),
        check_valid_until=False,
        buildinfo_url=PLACEHOLDER_BUILDINFO,
    )


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache", type=Path, default=Path("~/.cache/rebuilder-bench").expanduser())
    ap.add_argument("--mirror", help="Debian mirror URL (default: from the host's apt sources)")
    ap.add_argument("--suite", default="sid")
    ap.add_argument("--component", default="main")
    ap.add_argument("--arch", default="amd64")
    ap.add_argument("--refresh", action="store_true", help="download the indexes again")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    mirror = args.mirror or host_apt_mirror(None)
    root = prepare(args.cache, mirror, args.suite, args.component, args.arch, args.refresh)
    url, stop = serve(root)
    work = Path(tempfile.mkdtemp(prefix="rebuilder-bench-"))
    try:
        prof = profile(url, args.suite, args.component, args.arch)
        ctx = SyncContext(cache_dir=work)
        cold, snap = timed(lambda: sync_profile(prof, ctx))
        rss = peak_rss_mb()
        warm, snap2 = timed(lambda: sync_profile(prof, SyncContext(work, force=True)))
        again, snap3 = timed(lambda: sync_profile(prof, SyncContext(work, snap.fingerprints)))
        report(snap, cold, warm, again, rss, snap2, snap3)
        base = floor(root / "dists" / args.suite)
        print(f"floor (decompress + split-parse): {base:6.2f} s")
        print(f"sync (cold) / floor:     {cold / base:6.1f}x  (target <= 3x)")
        first, second = bench_pass(work / "op", url, args.suite, args.component, args.arch)
        print(f"second pass / first:     {100 * second / first:6.1f} %  (target <= 10 %)")
    finally:
        stop()
        shutil.rmtree(work, ignore_errors=True)


def floor(dists: Path) -> float:
    """The least any sync must do, timed here: decompress the indexes the sync read
    and split them into paragraphs and fields, with nothing kept."""
    import gzip
    import lzma

    unpack = {".xz": lzma.decompress, ".gz": gzip.decompress}
    t = time.perf_counter()
    for path in sorted(p for p in dists.rglob("*") if p.suffix in unpack):
        data = unpack[path.suffix](path.read_bytes())
        for para in data.split(b"\n\n"):
            for line in para.split(b"\n"):
                line.partition(b": ")
    return time.perf_counter() - t


def bench_pass(work: Path, url: str, suite: str, comp: str, arch: str) -> tuple[float, float]:
    """The issue's figure: a pass that syncs, plans and saves the state, through the real
    CLI (``rebuild run --max-builds 0 --no-render --no-commit``: the render of a
    Debian-sized site is measured on its own by bench/render.py)."""
    work.mkdir(parents=True)
    (work / "rebuilder.toml").write_text(f"""
[profile."bench"]
distro = "debian"
releases = ["{suite}"]
components = ["{comp}"]
architectures = ["{arch}", "all"]
source = "{url}"
check_valid_until = false
buildinfo_url = "{PLACEHOLDER_BUILDINFO}"
""")
    walls = []
    for label in ("first pass (sync + plan + save)", "second pass, unchanged indexes"):
        wall, rss = run_cli(work, ["run", "--max-builds", "0", "--no-render", "--no-commit"])
        print(f"{label + ':':<40} {wall:6.2f} s wall, peak RSS {rss:4.0f} MB")
        walls.append(wall)
    size = (work / "state" / "bench.json").stat().st_size
    print(f"{'state file:':<40} {size / 1e6:6.1f} MB")
    return walls[0], walls[1]


def run_cli(work: Path, args: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one ``rebuild`` command in a child process."""
    t = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "rebuild.py"), *args, "-q"],
        cwd=work,
        stdout=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"rebuild {' '.join(args)} failed")
    return seconds, usage.ru_maxrss / 1024


def report(
    snap: Snapshot,
    cold: float,
    warm: float,
    again: float,
    rss: float,
    snap2: Snapshot,
    snap3: Snapshot,
) -> None:
    artifacts = sum(len(g.artifacts) for g in snap.groups)
    assert len(snap2.groups) == len(snap.groups) and snap3.unchanged
    print(f"sync (cold index cache): {cold:6.2f} s")
    print(f"sync (warm, force):      {warm:6.2f} s")
    print(f"sync (unchanged):        {again:6.3f} s")
    print(f"groups:                  {len(snap.groups):6d}")
    print(f"artifacts:               {artifacts:6d}")
    print(f"peak RSS after sync:     {rss:6.0f} MB")


if __name__ == "__main__":
    main()
