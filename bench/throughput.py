"""Throughput of the build stage itself: N trivial builds through BuildPool + run_build.

Every build does the real work of one attempt except the rebuild: make the
attempt dir, fetch and checksum the artifacts and the input (local ``file://``
URLs), start the supervisor and the backend, compare, write ``log.gz``, remove
the attempt dir. The backend is a shell script that does nothing (``noop``:
every artifact is then missing, BAD) or copies the artifacts (``copy``: GOOD).
What is left is this tool's overhead per build; target: >= 1,000 builds/minute
on 2 cores with ``--jobs 2``, and <= 20 CPU-ms per build (this process and its
children, user + system). The floor, timed in the same run: the CPU of starting the
same backend directly with ``subprocess.run``, the least any runner pays per build.

    python bench/throughput.py --builds 1000 --jobs 2 --backend noop
"""

from __future__ import annotations

import argparse
import hashlib
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rebuilder.build import BuildContext, BuildPool, run_build
from rebuilder.build._supervise import SERVER
from rebuilder.model import Artifact, Attempt, BuildGroup, Job, Status

BACKENDS = {
    "noop": "#!/bin/sh\nexit 0\n",
    "copy": '#!/bin/sh\nfor f in $REBUILDER_ARTIFACTS; do cp "$f" "$REBUILDERD_OUTDIR/"; done\n',
}


def make_jobs(root: Path, builds: int, artifacts: int, size: int) -> list[Job]:
    pool = root / "mirror" / "pool"
    pool.mkdir(parents=True)
    arts = []
    for k in range(artifacts):
        data = hashlib.sha256(str(k).encode()).digest() * (size // 32 + 1)
        path = pool / f"pkg{k}_1.0-1_amd64.deb"
        path.write_bytes(data[:size])
        sha = hashlib.sha256(data[:size]).hexdigest()
        arts.append(Artifact(f"pkg{k}", "1.0-1", "amd64", f"file://{path}", sha, size))
    inp = root / "mirror" / "pkg_1.0-1_amd64.buildinfo"
    inp.write_text("Format: 1.0\nSource: pkg\n")
    return [
        Job(
            "bench",
            BuildGroup(
                f"pkg{i}", "1.0-1", "debian", "sid", "main", "amd64", f"file://{inp}", tuple(arts)
            ),
            "new",
            build_id=i + 1,
        )
        for i in range(builds)
    ]


def cpu_split() -> tuple[float, float]:
    """User + system CPU so far: of this process, and of its waited-for children."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def cpu_seconds() -> float:
    """User + system CPU of this process and its waited-for children so far."""
    return sum(cpu_split())


def floor_cpu(script: Path, root: Path, n: int = 200) -> float:
    """CPU seconds per bare start of the backend (no runner at all)."""
    (root / "floor-out").mkdir()
    env = {"PATH": "/usr/bin:/bin", "REBUILDERD_OUTDIR": str(root / "floor-out")}
    t = cpu_seconds()
    for _ in range(n):
        subprocess.run([str(script), "/dev/null"], env=env, stdin=subprocess.DEVNULL, check=True)
    return (cpu_seconds() - t) / n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--builds", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--backend", choices=sorted(BACKENDS), default="noop")
    ap.add_argument("--artifacts", type=int, default=1, help="artifacts per build group")
    ap.add_argument("--size", type=int, default=4096, help="bytes per artifact")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="rebuilder-bench-") as tmp:
        root = Path(tmp)
        script = root / "backend.sh"
        script.write_text(BACKENDS[args.backend])
        script.chmod(0o755)
        ctx = BuildContext(
            backend=script,
            results_dir=root / "site" / "builds",
            work_dir=root / "work",
            timeout=60.0,
            log_limit=1 << 20,
            diffoscope=False,
            diffoscope_timeout=60.0,
            diffoscope_limit=1 << 20,
        )
        jobs = make_jobs(root, args.builds, args.artifacts, args.size)
        durations: list[float] = []

        def build(job: Job, cancel: threading.Event) -> Attempt:
            return run_build(job, ctx, cancel)

        def on_result(job: Job, attempt: Attempt) -> None:
            durations.append(attempt.duration)

        floor = floor_cpu(script, root)
        own0, kids0 = cpu_split()
        summary = BuildPool(args.jobs).run(jobs, build, on_result)
        # The fork server and the supervisors it forked count once it is waited for.
        SERVER.shutdown()
        own1, kids1 = cpu_split()
        own, kids = ((b - a) / max(1, summary.built) for a, b in ((own0, own1), (kids0, kids1)))
        cpu = own + kids
        leftovers = list((root / "work").iterdir())

    counts = Counter({s.value: n for s, n in summary.counts.items()})
    expected = Status.GOOD if args.backend == "copy" else Status.BAD
    print(
        f"builds:            {summary.built} ({dict(counts)}), jobs={args.jobs}, "
        f"backend={args.backend}, artifacts/build={args.artifacts} x {args.size} B"
    )
    print(f"elapsed:           {summary.elapsed:.2f} s")
    print(
        f"throughput:        {summary.per_minute:,.0f} builds/minute (target >= 1,000 on 2 cores)"
    )
    print(
        f"per build (wall):  mean {statistics.mean(durations) * 1000:.1f} ms, "
        f"p95 {sorted(durations)[int(len(durations) * 0.95) - 1] * 1000:.1f} ms"
    )
    print(f"slot time/build:   {summary.elapsed * args.jobs / max(1, summary.built) * 1000:.1f} ms")
    print(f"attempt dirs left: {len(leftovers)}")
    print(f"CPU per build:     {cpu * 1000:.1f} ms (target <= 20 ms); floor (bare backend "
          f"start) {floor * 1000:.1f} ms; ratio {cpu / floor:.1f}x")  # fmt: skip
    print(f"  of which:        this process {own * 1000:.1f} ms, its children (fork server, "
          f"supervisors, backends) {kids * 1000:.1f} ms")  # fmt: skip
    ok = summary.counts.get(expected, 0) == args.builds and not leftovers
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
