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
removal is timed apart.

A warm-up round builds every package once (it creates the base chroot when the cache is
cold, fills the shared .deb cache, creates each package's build-dependency layer and keeps
its extracted source) and is shown but not counted. Each measured round then builds every
package twice, side by side in time: with the build dependencies installed by apt in every
build (``REBUILDER_DEPS_LAYERS=0``, the backend before its deps layers) and on the cached
deps layer, so the two medians printed compare in the same run. On the layer, a build copies
the source that ``dpkg-source -x`` extracted in the warm-up (a retry or a second
architecture of a source does the same in a pass); with apt per build it extracts it.

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
LAYER = re.compile(r"deps layer (\w+)")


# what the backend does with the build dependencies: apt in every build, or a cached layer
MODES = {"installed per build": "0", "deps layer": "1"}


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    verdict: str
    wall: float
    phases: dict[str, float]
    split: str

    @property
    def dpkg(self) -> float:
        return self.phases.get("build", 0.0)

    @property
    def overhead(self) -> float:
        return self.wall - self.dpkg

    @property
    def ratio(self) -> float:
        return self.overhead / self.dpkg if self.dpkg else float("inf")


def inside(attempt: Attempt, results: Path) -> tuple[str, str]:
    """The backend's split of its preparation, as printed, and what it did with the deps."""
    log = gzip.decompress((results / attempt.files["log"]).read_bytes()).decode(errors="replace")
    lines = INSIDE.findall(log)
    if not attempt.phases or not lines:
        raise SystemExit(f"build {attempt.build_id}: no phases or timing line:\n{log[-2000:]}")
    layer = LAYER.search(lines[-1])
    split = " ".join(f"{k}={float(v):.1f}" for k, v in FIELD.findall(lines[-1]))
    return split, layer[1] if layer else "?"


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
        bid, ok = 0, True
        print(f"{'warm-up':24} {'verdict':7} {'wall':>7}  deps layer")
        for g in groups:
            bid += 1
            t = time.monotonic()
            a = run_build(Job(profile.name, g, "bench", build_id=bid), ctx)
            split = inside(a, ctx.results_dir)
            ok = ok and a.status.value == "GOOD"
            print(f"{g.name:24} {a.status.value:7} {time.monotonic() - t:6.1f}s  {split[1]}")
        rows: dict[str, list[Row]] = {mode: [] for mode in MODES}
        for _ in range(args.rounds):
            for g in groups:
                for mode, layers in MODES.items():
                    bid += 1
                    mctx = dataclasses.replace(
                        ctx, env={**ctx.env, "REBUILDER_DEPS_LAYERS": layers}
                    )
                    t = time.monotonic()
                    a = run_build(Job(profile.name, g, "bench", build_id=bid), mctx)
                    wall = time.monotonic() - t
                    split = inside(a, ctx.results_dir)
                    rows[mode].append(Row(g.name, a.status.value, wall, a.phases, split[0]))
        t = time.monotonic()
        reaper.close()
        print(f"deferred removal of the attempt directories after the last verdict: "
              f"{time.monotonic() - t:.1f} s")  # fmt: skip
    for mode, measured in rows.items():
        print(f"\n{mode}:")
        print(f"{'package':24} {'verdict':7} {'wall':>7} {'dpkg':>6} {'overhead':>8} ratio  phases")
        for r in measured:
            target = max(3.0, 0.15 * r.dpkg)
            met = "ok" if r.overhead <= target else f"> target {target:.1f} s"
            shown = " ".join(f"{k}={v:.1f}" for k, v in r.phases.items())
            print(
                f"{r.name:24} {r.verdict:7} {r.wall:6.1f}s {r.dpkg:5.1f}s {r.overhead:7.1f}s "
                f"{r.ratio:5.1f}x {shown} [{met}]\n{'':24} backend's preparation: {r.split}"
            )
            ok = ok and r.verdict == "GOOD"
        print(
            f"{mode}: median overhead {statistics.median(r.overhead for r in measured):.1f} s = "
            f"{statistics.median(r.ratio for r in measured):.2f}x dpkg-buildpackage's time "
            f"(target: <= max(3 s, 0.15x))"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
