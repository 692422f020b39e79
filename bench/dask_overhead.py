"""Scheduling overhead per build through Dask, against the local thread pool.

Both sides run the same N trivial builds (a backend that copies the artifact:
GOOD) through :class:`BuildPool` with the same number of slots; the difference
per build is what Dask adds: pickling the job, the scheduler's round trip,
the worker's temporary directory, the files coming back and being written on
the pass's side. Two more figures isolate the engine: an empty task through
the same executor, and one build that returns 64 MiB of meta files (what a
capped log, diffoscope report and meta files can add up to).

Without ``--scheduler`` the benchmark starts its own scheduler and workers on
127.0.0.1 (``--workers`` processes, ``--slots`` threads and ``arch-amd64``
units each). Target: thousands of builds per minute either way.

    python bench/dask_overhead.py --builds 400 --workers 2 --slots 1
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rebuilder.build import BuildContext, BuildPool, run_build  # noqa: E402
from rebuilder.build.dask import DaskExecutor, cluster_slots, make_executor, remote_builder  # noqa: E402
from rebuilder.model import Artifact, BuildGroup, Job, Status  # noqa: E402

COPY = '#!/bin/sh\nfor f in $REBUILDER_ARTIFACTS; do cp "$f" "$REBUILDERD_OUTDIR/"; done\n'
BIG = COPY + (
    'for i in 1 2 3 4; do head -c 16777216 /dev/urandom > "$REBUILDER_META_DIR/blob$i"; done\n'
)


def make_jobs(root: Path, n: int, first: int = 1) -> list[Job]:
    path = root / "pool" / "pkg_1.0-1_amd64.deb"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"bench\n")
    art = Artifact(
        "pkg", "1.0-1", "amd64", f"file://{path}", hashlib.sha256(b"bench\n").hexdigest(), 6
    )
    return [
        Job(
            "bench",
            BuildGroup(f"pkg{i}", "1.0-1", "debian", "sid", "main", "amd64", str(path), (art,)),
            "new",
            build_id=i,
        )
        for i in range(first, first + n)
    ]


def context(root: Path, name: str, body: str) -> BuildContext:
    script = root / f"{name}.sh"
    script.write_text(body)
    script.chmod(0o755)
    return BuildContext(
        script, root / name / "results", root / name / "work", 60.0, 1 << 20, False, 10.0, 1 << 20
    )


@contextmanager
def local_cluster(root: Path, workers: int, slots: int) -> Iterator[str]:
    """A scheduler and workers on 127.0.0.1, listening nowhere else; killed on the way out."""
    procs: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    quiet = ["--no-dashboard", "--dashboard-address", "127.0.0.1:0"]
    info = root / "scheduler.json"

    def start(*args: str) -> None:
        log = (root / f"dask-{len(procs)}.log").open("ab")
        procs.append(
            subprocess.Popen(
                [sys.executable, "-m", "dask", *args, *quiet],
                cwd=root,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        )

    try:
        start("scheduler", "--host", "127.0.0.1", "--port", "0", "--scheduler-file", str(info))
        while not (info.exists() and info.stat().st_size):
            time.sleep(0.05)
        for i in range(workers):
            start(
                "worker",
                "--scheduler-file",
                str(info),
                "--host",
                "127.0.0.1",
                "--nthreads",
                str(slots),
                "--resources",
                f"arch-amd64={slots}",
                "--name",
                f"bench-{i}",
                "--local-directory",
                str(root / f"w{i}"),
            )
        yield json.loads(info.read_text())["address"]
    finally:
        for p in reversed(procs):
            try:
                os.killpg(p.pid, signal.SIGTERM)
                p.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                os.killpg(p.pid, signal.SIGKILL)


def timed_pool(jobs: list[Job], build: object, slots: int) -> tuple[float, Counter[Status]]:
    counts: Counter[Status] = Counter()
    t0 = time.perf_counter()
    BuildPool(slots).run(jobs, build, lambda j, a: counts.update([a.status]))  # type: ignore[arg-type]
    return time.perf_counter() - t0, counts


def noop() -> None:
    return None


def empty_tasks(ex: DaskExecutor, n: int, in_flight: int) -> float:
    """Seconds for ``n`` empty tasks, ``in_flight`` at a time, as the pool would drive them."""
    sem = threading.Semaphore(in_flight)
    done = threading.Event()
    left = [n]
    lock = threading.Lock()

    def finished(_f: object) -> None:
        sem.release()
        with lock:
            left[0] -= 1
            if left[0] == 0:
                done.set()

    t0 = time.perf_counter()
    for _ in range(n):
        sem.acquire()
        ex.submit(noop, resources={"arch-amd64": 1}).add_done_callback(finished)
    done.wait()
    return time.perf_counter() - t0


def line(label: str, seconds: float, n: int) -> str:
    return f"{label:<34} {seconds * 1000 / n:8.2f} ms/build  {n * 60 / seconds:9,.0f} builds/min"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--builds", type=int, default=400)
    ap.add_argument("--workers", type=int, default=2, help="worker processes (own cluster)")
    ap.add_argument("--slots", type=int, default=1, help="threads per worker (own cluster)")
    ap.add_argument(
        "--in-flight", type=int, default=2, help="Dask builds in flight per slot (default 2)"
    )
    ap.add_argument("--scheduler", help="use this cluster: dask://HOST:PORT (needs arch-amd64)")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="rb-dask-bench-") as d:
        root = Path(d)
        if args.scheduler:
            run(root, args, args.scheduler)
        else:
            with local_cluster(root, args.workers, args.slots) as address:
                run(root, args, "dask://" + address.split("://", 1)[1])


def run(root: Path, args: argparse.Namespace, spec: str) -> None:
    ex = make_executor(spec)
    assert ex is not None
    with ex:
        ex.client.wait_for_workers(1 if args.scheduler else args.workers, timeout=60)
        slots = max(1, cluster_slots(ex))
        n = args.builds
        print(f"{n} builds, {slots} slot(s), backend: copy one artifact (GOOD)")
        local_ctx = context(root, "local", COPY)
        remote_ctx = context(root, "remote", COPY)
        # warm both paths (imports, the workers' first task) outside the figures
        timed_pool(
            make_jobs(root, slots * 2, 10**6), lambda j, c: run_build(j, local_ctx, c), slots
        )
        timed_pool(make_jobs(root, slots * 2, 10**6), remote_builder(ex, remote_ctx), slots)

        t_local, c_local = timed_pool(
            make_jobs(root, n), lambda j, c: run_build(j, local_ctx, c), slots
        )
        t_dask, c_dask = timed_pool(make_jobs(root, n), remote_builder(ex, remote_ctx), slots)
        window = slots * args.in_flight
        t_window, c_window = timed_pool(make_jobs(root, n), remote_builder(ex, remote_ctx), window)
        assert c_local == c_dask == c_window == Counter({Status.GOOD: n}), (c_local, c_dask)
        t_empty = empty_tasks(ex, n, slots)
        print(line("local thread pool + run_build", t_local, n))
        print(line("Dask + run_build on the worker", t_dask, n))
        print(line(f"Dask + run_build, {window} in flight", t_window, n))
        print(line("Dask, an empty task", t_empty, n))
        extra = (t_dask - t_local) * slots / n
        print(f"{'Dask adds per build (per slot)':<34} {extra * 1000:8.2f} ms")

        print(transfer(root, ex))


def transfer(root: Path, ex: DaskExecutor) -> str:
    """One build whose backend writes 64 MiB of meta files, through Dask and locally."""
    (job,) = make_jobs(root, 1, 2 * 10**6)
    local_ctx = context(root, "big-local", BIG)
    t0 = time.perf_counter()
    run_build(job, local_ctx)
    t_local = time.perf_counter() - t0
    remote_ctx = context(root, "big-remote", BIG)
    t0 = time.perf_counter()
    attempt = remote_builder(ex, remote_ctx)(job, threading.Event())
    t_remote = time.perf_counter() - t0
    size = sum((remote_ctx.results_dir / p).stat().st_size for p in attempt.files.values())
    return (
        f"{'a build returning its files':<34} {size / 2**20:8.1f} MiB: {t_remote:.2f} s "
        f"through Dask, {t_local:.2f} s locally: {t_remote - t_local:.2f} s to bring them back"
    )


if __name__ == "__main__":
    main()
