"""How large the published site of a Debian-sized instance is, against GitHub Pages' 1 GB.

Synthesizes one profile of 45,000 build groups with bench/render.py's generator (its
attempts' files in the results store), adds ``--rounds`` passes in which a tenth of the
groups get a new attempt (new versions, retries), renders the site, and weighs it:

* on disk (each inode once), and
* as the Pages artifact holds it: upload-pages-artifact runs ``tar --dereference
  --hard-dereference``, so every symlinked folder and every hard link is a full copy;

then drops the files of all but each group's last ``--keep`` attempts, as ``rebuild merge
--keep-files`` does in the workflow, renders again and weighs again; then leaves out what
the workflow's publish step leaves out of the Pages tree (:mod:`rebuilder.site.pages`) and
weighs what is uploaded. The build logs are
``--log-kb`` KiB of text each (the generator's default line pattern, with a build-specific
hex token per line so that gzip does not compress it unrealistically well).

    python bench/site_size.py [--groups 45000] [--rounds 3] [--keep 2] [--log-kb 8] [--kept-only]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import render as gen  # bench/render.py: the synthetic Debian-sized state

from rebuilder.config import Profile, Release
from rebuilder.pipeline import prune_attempt_files
from rebuilder.site import ProfileView, pages, render
from rebuilder.state import ProfileState

PAGES_LIMIT = 1 << 30


def _log(kb: int, rng: random.Random) -> bytes:
    lines: list[bytes] = []
    size = 0
    while size < kb * 1024:
        line = b"I: step %d: %s compiling something/%x.c\n" % (
            len(lines),
            rng.randbytes(8).hex().encode(),
            rng.randrange(1 << 20),
        )
        lines.append(line)
        size += len(line)
    return b"".join(lines)


def weigh(site: Path) -> tuple[int, int, Counter[str]]:
    """(bytes on disk, each inode once; bytes in the Pages tar; Pages bytes by top folder)."""
    disk, seen = 0, set()
    pages: Counter[str] = Counter()
    for root, dirs, files in os.walk(site, followlinks=True):  # as tar --dereference does
        rel = Path(root).relative_to(site).parts
        top = "/".join(rel[:4]) if rel[:1] == ("debian",) else (rel[0] if rel else ".")
        for f in files:
            st = os.stat(os.path.join(root, f))
            pages[top] += st.st_size
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                disk += st.st_size
        dirs.sort()
    return disk, sum(pages.values()), pages


def report(label: str, site: Path) -> int:
    disk, tar, parts = weigh(site)
    print(
        f"{label}: on disk {disk / 1e6:,.0f} MB, Pages artifact {tar / 1e6:,.0f} MB "
        f"({tar / PAGES_LIMIT:.0%} of the 1 GB limit)"
    )
    for top, n in parts.most_common(6):
        print(f"    {top:<32} {n / 1e6:9,.1f} MB")
    return tar


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--groups", type=int, default=45_000)
    ap.add_argument("--rounds", type=int, default=3, help="passes adding attempts to 10%%")
    ap.add_argument("--keep", type=int, default=2, help="attempts whose files are kept")
    ap.add_argument("--log-kb", type=int, default=8, help="size of each build log, KiB")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument(
        "--kept-only",
        action="store_true",
        help="render once, after the retention (skips the before/after comparison: faster)",
    )
    args = ap.parse_args()
    rng = random.Random(args.seed)
    gen.LOG = _log(args.log_kb, rng)
    work = args.dir or Path(tempfile.mkdtemp(prefix="site-size-"))
    site = work / "site"
    try:
        t = time.perf_counter()
        records = gen.synthesize(site, args.groups, rng)
        for _ in range(args.rounds):
            gen.change(site, records, args.groups // 10, rng)
        attempts = sum(len(r.attempts) for r in records.values())
        print(
            f"{len(records)} groups, {attempts} attempts, logs of {args.log_kb} KiB "
            f"(synthesized in {time.perf_counter() - t:.0f} s)"
        )
        profile = Profile("debian-trixie", "debian", (Release("trixie", "https://mirror.example"),))
        now = dt.datetime(2024, 6, 1)

        def view() -> list[ProfileView]:
            return [ProfileView(profile, records, 0, now, [])]

        if not args.kept_only:
            render(site, view(), now=now)
            before = report("every attempt's files", site)
        st = ProfileState(profile.name, profile.distro, records)
        dropped = prune_attempt_files({profile.name: st}, site / "builds", args.keep)
        t = time.perf_counter()
        render(site, view(), now=now)
        after = report(f"last {args.keep} attempts' files ({dropped} attempts pruned)", site)
        print(f"(rendered in {time.perf_counter() - t:.0f} s)")
        if not args.kept_only:
            print(f"retention: Pages artifact {after / before:.0%} of what it was")
        t = time.perf_counter()
        trimmed = pages.trim(site)  # what the workflow's publish step does before the upload
        tree = report(f"the Pages tree ({trimmed} files left out)", site)
        print(
            f"Pages tree: {tree / 1e6 / len(records) * 1000:.1f} KB a group, "
            f"{tree / len(records) * 45_000 / 1e9:.2f} GB for 45,000 groups "
            f"(trimmed in {time.perf_counter() - t:.0f} s)"
        )
    finally:
        if args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
