"""Many builds: bounded in-flight work, results in the calling thread, isolation, deadlines."""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rebuilder.build import Abandoned, BuildContext, BuildPool, PoolProgress, run_build
from rebuilder.model import Artifact, Attempt, BuildGroup, Job, Status, utcnow


def job(i: int, group: BuildGroup | None = None) -> Job:
    g = group or BuildGroup(
        f"p{i}", "1", "debian", "sid", "main", "amd64", f"/nonexistent/p{i}.buildinfo", ()
    )
    return Job("test", g, "new", build_id=i)


def verdict(j: Job, status: Status = Status.GOOD) -> Attempt:
    return Attempt(j.build_id, j.group.version, status, utcnow(), 0.0, "fake")


def test_bounded_in_flight_and_results_in_the_calling_thread() -> None:
    pulled = 0
    running = 0
    peak = 0
    lock = threading.Lock()
    results: list[int] = []
    caller = threading.get_ident()

    def plan() -> Iterator[Job]:
        nonlocal pulled
        for i in range(40):
            pulled += 1
            yield job(i)

    def build(j: Job, cancel: threading.Event) -> Attempt:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.005)
        with lock:
            running -= 1
        return verdict(j, Status.BAD if j.build_id % 4 == 0 else Status.GOOD)

    def on_result(j: Job, a: Attempt) -> None:
        assert threading.get_ident() == caller
        # never more than `jobs` pulled ahead of what has been reported
        assert pulled <= len(results) + 1 + 3
        results.append(j.build_id)

    summary = BuildPool(3).run(plan(), build, on_result)
    assert sorted(results) == list(range(40))
    assert peak <= 3
    assert summary.counts == {Status.GOOD: 30, Status.BAD: 10}
    assert summary.built == 40 and summary.abandoned == 0 and not summary.deadline_reached
    assert summary.elapsed > 0


def test_a_crashing_build_fails_only_itself() -> None:
    def build(j: Job, cancel: threading.Event) -> Attempt:
        if j.build_id == 2:
            raise RuntimeError("backend wrapper exploded")
        return verdict(j)

    got: dict[int, Attempt] = {}
    summary = BuildPool(2).run(
        [job(i) for i in range(5)], build, lambda j, a: got.update({j.build_id: a})
    )
    assert summary.counts == {Status.GOOD: 4, Status.FAIL: 1}
    assert got[2].status is Status.FAIL
    assert got[2].reason == "build crashed: RuntimeError: backend wrapper exploded"
    assert got[2].build_id == 2 and got[2].inputs_digest == job(2).group.inputs_digest
    assert all(got[i].status is Status.GOOD for i in (0, 1, 3, 4))


def test_deadline_stops_submission_and_abandons_running_builds() -> None:
    started: list[int] = []

    def build(j: Job, cancel: threading.Event) -> Attempt:
        started.append(j.build_id)
        if j.build_id < 3:
            return verdict(j)  # quick ones finish before the deadline
        if cancel.wait(30):
            raise Abandoned("out of time")
        return verdict(j)

    reported: list[int] = []
    summary = BuildPool(2).run(
        (job(i) for i in range(1000)),
        build,
        lambda j, a: reported.append(j.build_id),
        deadline=time.monotonic() + 0.5,
    )
    assert summary.deadline_reached
    assert sorted(reported) == [0, 1, 2]
    assert summary.abandoned == 2  # the two slots were busy when time ran out
    assert len(started) == 5, "nothing may be submitted after the deadline"


def test_an_error_in_on_result_stops_the_running_builds() -> None:
    abandoned = threading.Event()

    def build(j: Job, cancel: threading.Event) -> Attempt:
        if j.build_id == 0:
            return verdict(j)
        if cancel.wait(30):
            abandoned.set()
            raise Abandoned("stopped")
        return verdict(j)

    def on_result(j: Job, a: Attempt) -> None:
        raise OSError("journal disk full")

    with pytest.raises(OSError, match="journal disk full"):
        BuildPool(2).run([job(i) for i in range(10)], build, on_result)
    assert abandoned.is_set()  # set only when the running build was told to stop


def test_progress_and_a_caller_supplied_executor() -> None:
    seen: list[PoolProgress] = []
    with cf.ThreadPoolExecutor(4) as executor:
        summary = BuildPool(2, executor).run(
            [job(i) for i in range(6)],
            lambda j, c: verdict(j),
            lambda j, a: None,
            progress=seen.append,
        )
        assert executor.submit(lambda: 42).result() == 42  # not shut down by the pool
    assert summary.built == 6
    assert [p.done for p in seen] == [1, 2, 3, 4, 5, 6]
    assert seen[-1].counts == {Status.GOOD: 6} and seen[-1].last is not None


def test_jobs_must_be_positive() -> None:
    with pytest.raises(ValueError):
        BuildPool(0)


# --- with the real runner ---------------------------------------------------------------------


def _real_jobs(tmp_path: Path, n: int) -> list[Job]:
    art = tmp_path / "x_1_all.deb"
    art.write_bytes(b"x\n")
    a = Artifact("x", "1", "all", f"file://{art}", hashlib.sha256(b"x\n").hexdigest(), 2)
    return [
        Job(
            "t",
            BuildGroup(f"x{i}", "1", "debian", "sid", "main", "all", str(art), (a,)),
            "new",
            build_id=i,
        )
        for i in range(n)
    ]


def _ctx(tmp_path: Path, body: str) -> BuildContext:
    script = tmp_path / "backend.sh"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return BuildContext(
        script,
        tmp_path / "results",
        tmp_path / "work",
        30.0,
        1 << 16,
        False,
        10.0,
        1 << 16,
        grace=0.5,
    )


def test_real_backends_one_crash_fails_one_build(tmp_path: Path) -> None:
    ctx = _ctx(
        tmp_path,
        '[ "$(basename "$PWD" | cut -d- -f1)" = 3 ] && kill -SEGV $$\n'
        'cp x_1_all.deb "$REBUILDERD_OUTDIR/"\n',
    )
    got: dict[int, Attempt] = {}
    summary = BuildPool(2).run(
        _real_jobs(tmp_path, 6),
        lambda j, c: run_build(j, ctx, c),
        lambda j, a: got.update({j.build_id: a}),
    )
    assert summary.counts == {Status.GOOD: 5, Status.FAIL: 1}
    assert got[3].reason == "backend killed by signal SIGSEGV"
    assert list(ctx.work_dir.iterdir()) == []


def test_real_backends_are_abandoned_at_the_deadline(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    ctx = _ctx(tmp_path, f"echo $$ > {pids}/$$\nexec sleep 300\n")
    reported: list[Attempt] = []
    summary = BuildPool(2).run(
        _real_jobs(tmp_path, 10),
        lambda j, c: run_build(j, ctx, c),
        lambda j, a: reported.append(a),
        deadline=time.monotonic() + 1.0,
    )
    assert reported == [] and summary.abandoned == 2 and summary.built == 0
    assert len(list(pids.iterdir())) == 2
    for p in pids.iterdir():
        assert (
            not Path(f"/proc/{p.name}").exists()
            or "Z" in Path(f"/proc/{p.name}/stat").read_text().split()[2]
        )
    assert list(ctx.work_dir.iterdir()) == [] and not (tmp_path / "results").exists()
