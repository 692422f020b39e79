"""Time the lists an incremental render still builds from every group, at Debian's size.

They are v1's ``packages/binary`` with its by-name pages (``aggregates.render_v1``), v0's
``pkgs/list`` and dashboards of the distribution and of each architecture
(``aggregates.render_v0``), and the search index with its shards written
(``search.build``). The bench synthesizes bench/render.py's profile (45,000 groups), walks it
once the way a full render does, changes 100 groups and walks it again with the first
walk's parts (what a render told ``changed=<100 keys>`` collects: the v0 and v1 lists are
then patched, see rebuilder.site.splice). No page is rendered. It then times:

1. each list written into an empty site (a full render's cost of it);
2. each list after the 100 changes, over that site (an incremental render's), cold: the
   walk's objects are as new as a render has them; then the best of a few more runs;
3. the floor: writing the bytes step 2 wrote for the two big lists and the index, each
   file once, into new files.

Each row is printed as a ratio to the floor measured in the same run.

    python bench/lists.py [--groups 45000] [--changes 100] [--every-kind]

With ``--every-kind`` the changes are bench/render.py's of every kind a Debian pass makes:
new and gone packages move the v1 ids after them, so their by-name pages are written again.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import logging
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from render import change, change_every_kind, synthesize  # (bench/render.py)

from rebuilder.config import Profile, Release
from rebuilder.site import ProfileView, aggregates, cache, html, paths, search
from rebuilder.site.output import Output
from rebuilder.site.walk import Collected, Settings, Touched, walk_profile

NOW = dt.datetime(2024, 6, 1)


def collect(
    site: Path, view: ProfileView, changed: set[str] | None, cached: dict[str, cache.Part]
) -> tuple[Collected, dict[str, cache.Part]]:
    """What a render's walk gathers (its parts for the next one)."""
    out = Output(str(site))
    touched = None if changed is None else Touched()
    cfg = Settings(html.environment(), changed, touched, "", {}, NOW)
    got, parts = Collected(), dict[str, cache.Part]()
    got.queues[view.profile.distro] += view.queue_length
    walk_profile(out, cfg, view, got, set(), cached, parts)
    return got, parts


def lists(out: Output, got: Collected) -> dict[str, Callable[[], None]]:
    """The three phases, as a render runs them."""

    def v1() -> None:
        aggregates.render_v1(out, got)

    def v0() -> None:
        aggregates.render_v0(out, got, NOW, [])

    def index() -> None:
        for name, data in search.build(got.entries, got.search_suites).items():
            out.write_known(f"{paths.SEARCH}/{name}", data)

    return {"v1 packages": v1, "v0 lists": v0, "search index": index}


def floor(site: Path, rels: list[str], dest: Path) -> float:
    """Seconds to write these files' bytes once, into new files."""
    blobs = [(str(dest / rel), (site / rel).read_bytes()) for rel in rels]
    for folder in sorted({os.path.dirname(p) for p, _ in blobs}):
        os.makedirs(folder, exist_ok=True)
    t = time.perf_counter()
    for path, data in blobs:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.close(fd)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--groups", type=int, default=45_000)
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument(
        "--every-kind",
        action="store_true",
        help="changes of every kind (new packages, gone, new versions, rebuilds), not rebuilds",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # (a list made anew says so)
    # as a render runs: no collector walking the millions of live objects (see site.render)
    gc.disable()
    work = Path(tempfile.mkdtemp(prefix="lists-bench-"))
    site = work / "site"
    try:
        rng = random.Random(1)
        records = synthesize(site, args.groups, rng)
        profile = Profile(
            "debian-trixie", "debian", (Release("trixie", "https://mirror.example/d"),)
        )
        view = ProfileView(profile, records, 42, NOW)
        got, parts = collect(site, view, None, {})
        out = Output(str(site))
        full = {}
        for label, run in lists(out, got).items():
            t = time.perf_counter()
            run()
            full[label] = time.perf_counter() - t
        changer = change_every_kind if args.every_kind else change
        keys = changer(site, records, args.changes, random.Random(2))
        first: dict[str, float] = {}
        best: dict[str, float] = {}
        patched = list(got.list_files_now)  # the files an incremental render patches
        for _ in range(1 + args.repeat):
            # a new walk each time: objects as cold as a render's (not timed)
            incr, _ = collect(site, ProfileView(profile, records, 42, NOW), keys, parts)
            incr.v0_index, incr.v1_index = dict(got.v0_index), dict(got.v1_index)
            incr.list_files = got.list_files_now
            for rel in patched:  # (the full walk's files, put back after each run)
                os.link(site / rel, site / f"{rel}.full")
            gc.freeze()
            inc_out = Output(str(site))
            inc_out.known = out.digests
            inc_out.digests.update(out.digests)  # (an incremental render starts from them)
            for label, run in lists(inc_out, incr).items():
                t = time.perf_counter()
                run()
                secs = time.perf_counter() - t
                first.setdefault(label, secs)
                best[label] = min(secs, best.get(label, secs))
            written = {rel: (site / rel).read_bytes() for rel in patched}
            for rel in patched:
                os.replace(site / f"{rel}.full", site / rel)
        rels = [f"{b}/pkgs/list" for b in _v0_bases(incr)]
        rels += [f"{paths.api_v1_base(d)}/packages/binary" for d in sorted(incr.pkgs)]
        rels += [f"{paths.SEARCH}/{e.name}" for e in os.scandir(site / paths.SEARCH)]
        for rel, data in written.items():  # (what the floor writes: the patched files)
            (site / rel).write_bytes(data)
        low = floor(site, rels, work / "floor")
        print(f"{args.groups} groups, {sum(map(len, got.v1.values()))} v1 rows, "
              f"{len(incr.entries)} search entries; floor (writing their "
              f"{len(rels)} files once) {low:.3f} s")  # fmt: skip
        print(
            f"{'':<14} {'full':>8} {'after ' + str(args.changes):>12} {'best':>8}  ratio to floor"
        )
        for label in full:
            print(f"{label:<14} {full[label]:8.3f} {first[label]:12.3f} {best[label]:8.3f}  "
                  f"{first[label] / low:6.1f}x")  # fmt: skip
        total = sum(first.values())
        print(f"{'the three':<14} {sum(full.values()):8.3f} {total:12.3f} "
              f"{sum(best.values()):8.3f}  {total / low:6.1f}x")  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _v0_bases(got: Collected) -> list[str]:
    bases = [paths.api_base(d) for d in sorted(got.pkgs)]
    return bases + [b for trees in aggregates.arch_trees(got).values() for _, b in trees]


if __name__ == "__main__":
    sys.exit(main())
