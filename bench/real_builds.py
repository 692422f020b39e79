"""Real builds: a few small Debian bookworm arch:all packages through the suite-chroot backend.

Network: needs this host's Debian mirror (read from its apt sources with
``rebuilder.config.host_apt_mirror``, or ``REBUILDER_TEST_MIRROR``), namespaces and
mmdebstrap, like ``scripts/demo``. Each build goes through the whole build path
(``run_build``: download and verify the inputs, the backend, compare, cleanup); the floor
is dpkg-buildpackage's own time in the same build, read from the backend's timing line.

Per build it prints the attempt's phases (prepare / build / compare / cleanup, as the
runner records them), the backend's own split of its preparation, and the overhead (the
attempt's duration minus dpkg-buildpackage) as a ratio to dpkg-buildpackage; the issue's
target is an overhead <= max(3 s, 15% of dpkg-buildpackage). Builds run as a pass runs
them: the attempt directory is removed by the reaper after the verdict, and that deferred
removal is timed apart. A first warm-up build creates the base chroot when the cache is
cold and is not counted.

    python bench/real_builds.py [--cache-dir DIR] [--pkgs distro-info-data debvm midge]
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rebuilder import config
from rebuilder.build import BuildContext, run_build
from rebuilder.build.backends import shipped_backend
from rebuilder.build.reaper import Reaper
from rebuilder.model import Attempt, Job
from rebuilder.sync import SyncContext, sync_profile

DEMO = Path(__file__).resolve().parent.parent / "rebuilder" / "demo" / "debian-bookworm.toml"
INSIDE = re.compile(r"^debian-suite-chroot: timing: (root=.*)$", re.M)
FIELD = re.compile(r"([a-z+-]+)=([\d.]+)s")


def inside(attempt: Attempt, results: Path) -> str:
    """The backend's split of its preparation (root, apt, deps+source), as printed."""
    log = gzip.decompress((results / attempt.files["log"]).read_bytes()).decode(errors="replace")
    lines = INSIDE.findall(log)
    if not attempt.phases or not lines:
        raise SystemExit(f"build {attempt.build_id}: no phases or timing line:\n{log[-2000:]}")
    return " ".join(f"{k}={float(v):.1f}" for k, v in FIELD.findall(lines[-1]))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", type=Path, default=Path(".cache/bench-real-builds"))
    ap.add_argument("--pkgs", nargs="+", default=None, help="default: the demo's packages")
    ap.add_argument("--rounds", type=int, default=1, help="builds of each package")
    args = ap.parse_args()

    cfg = config.load(DEMO)
    (profile,) = cfg.profiles.values()
    if args.pkgs:
        profile = dataclasses.replace(profile, pkgs=tuple(args.pkgs))
    cache = args.cache_dir.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    snap = sync_profile(profile, SyncContext(cache / "sync" / profile.name, force=True))
    groups = sorted(snap.groups, key=lambda g: g.name)
    if not groups:
        raise SystemExit("no build groups: is the mirror reachable and the package list right?")
    backend = shipped_backend("debian-suite-chroot")
    with tempfile.TemporaryDirectory(prefix="bench-real-", dir=cache) as tmp, Reaper() as reaper:
        ctx = BuildContext(
            backend=backend, results_dir=Path(tmp) / "builds", work_dir=Path(tmp) / "work",
            timeout=1800, log_limit=20 << 20, diffoscope=False, diffoscope_timeout=60,
            diffoscope_limit=1 << 20, env={"REBUILDER_CACHE_DIR": str(cache / "build")},
            reaper=reaper,
        )  # fmt: skip
        t = time.monotonic()
        warm = run_build(Job(profile.name, groups[0], "bench", build_id=1), ctx)
        print(f"warm-up {groups[0].name}: {warm.status.value} in {time.monotonic() - t:.1f} s")
        rows = []
        bid = 1
        for _ in range(args.rounds):
            for g in groups:
                bid += 1
                t = time.monotonic()
                a = run_build(Job(profile.name, g, "bench", build_id=bid), ctx)
                wall = time.monotonic() - t
                dpkg = a.phases.get("build", 0.0)
                rows.append(
                    (g.name, a.status.value, wall, dpkg, a.phases, inside(a, ctx.results_dir))
                )
            t = time.monotonic()
            reaper.close()
            print(f"deferred removal of the attempt directories after the last verdict: "
                  f"{time.monotonic() - t:.1f} s")  # fmt: skip
    print(f"{'package':24} {'verdict':7} {'wall':>7} {'dpkg':>6} {'overhead':>8} ratio  phases")
    ratios, overheads = [], []
    for name, verdict, wall, dpkg, p, split in rows:
        over = wall - dpkg
        ratio = over / dpkg if dpkg else float("inf")
        target = max(3.0, 0.15 * dpkg)
        ok = "ok" if over <= target else f"> target {target:.1f} s"
        shown = " ".join(f"{k}={v:.1f}" for k, v in p.items())
        print(
            f"{name:24} {verdict:7} {wall:6.1f}s {dpkg:5.1f}s {over:7.1f}s {ratio:5.1f}x "
            f"{shown} [{ok}]\n{'':24} backend's preparation: {split}"
        )
        ratios.append(ratio)
        overheads.append(over)
    print(
        f"median overhead {statistics.median(overheads):.1f} s = "
        f"{statistics.median(ratios):.1f}x dpkg-buildpackage's time "
        f"(target: <= max(3 s, 0.15x))"
    )
    return 0 if all(r[1] == "GOOD" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
