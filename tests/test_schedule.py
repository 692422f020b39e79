"""The pool's schedule: durations recorded per group order the builds, and a build that
cannot finish before the deadline is not started. Orders and counts are asserted, never
durations: the estimates are the groups' recorded attempt durations, the clock is real."""

from __future__ import annotations

import dataclasses
import threading
import time

from rebuilder import plan
from rebuilder.build import BuildPool
from rebuilder.build.schedule import Schedule
from rebuilder.model import Attempt, GroupRecord, Job, Status, utcnow

from .fixtures.operator import attempt, group
from .test_plan import POL


def _job(name: str, estimate: float | None, build_id: int, priority: int = 0) -> Job:
    return Job("p", group(name), "new", priority, build_id, estimate)


def _run(jobs: list[Job], deadline: float | None, slots: int = 1) -> tuple[list[str], object]:
    started: list[str] = []

    def build(j: Job, cancel: threading.Event) -> Attempt:
        started.append(j.group.name)
        return Attempt(j.build_id, j.group.version, Status.GOOD, utcnow(), 0.0, "fake")

    summary = BuildPool(slots).run(jobs, build, lambda j, a: None, deadline=deadline)
    return started, summary


def test_known_short_builds_go_first_and_requeued_before_all() -> None:
    jobs = [
        _job("long", 3600.0, 1),
        _job("never-built", None, 2),
        _job("short", 5.0, 3),
        _job("medium", 60.0, 4),
        _job("requeued-long", 7200.0, 5, priority=1),
    ]
    started, summary = _run(jobs, deadline=None)
    assert started == ["requeued-long", "short", "medium", "never-built", "long"]
    assert summary.not_started == 0  # type: ignore[attr-defined]


def test_a_build_that_cannot_finish_before_the_deadline_is_not_started() -> None:
    jobs = [_job("a-day", 86400.0, 1), _job("short", 1.0, 2), _job("unknown", None, 3)]
    started, summary = _run(jobs, deadline=time.monotonic() + 3600)
    assert started == ["short", "unknown"]
    assert summary.not_started == 1  # type: ignore[attr-defined]


def test_a_long_build_starts_early_enough_to_finish() -> None:
    # an hour left: the 59-minute build must start now, ahead of the short ones
    jobs = [_job(f"short{i}", 60.0, i) for i in range(5)] + [_job("long", 3540.0, 9)]
    started, _ = _run(jobs, deadline=time.monotonic() + 3600)
    assert started[0] == "long" and sorted(started[1:]) == [f"short{i}" for i in range(5)]
    # with a day left it can wait its turn behind the short ones
    started, _ = _run(jobs, deadline=time.monotonic() + 86400)
    assert started[-1] == "long"


def test_the_estimate_is_the_last_whole_build() -> None:
    g = group("hello")
    rec = GroupRecord(g, Status.FAIL)
    assert plan.estimate(rec) is None
    good = dataclasses.replace(attempt(g, Status.GOOD, 1), duration=300.0)
    early_fail = dataclasses.replace(
        attempt(g, Status.FAIL, 2, reason="download failed"), duration=2.0
    )
    rec.attempts = [good, early_fail]
    assert plan.estimate(rec) == 300.0  # a FAIL that stopped early says nothing
    timeout = dataclasses.replace(
        attempt(g, Status.FAIL, 3, reason="timeout after 900 s"), duration=900.0
    )
    rec.attempts.append(timeout)
    assert plan.estimate(rec) == 900.0
    # the plan hands the estimate to its jobs
    rec.requeued = 1
    (j,) = plan.plan({"p": {g.key: rec}}, utcnow(), POL)
    assert j.estimate == 900.0
    assert Job.from_json(j.to_json()).estimate == 900.0


def test_schedule_without_estimates_keeps_the_plan_order() -> None:
    jobs = [_job(f"p{i}", None, i) for i in (3, 1, 2)]
    s = Schedule(jobs)
    assert [s.next(0.0, None).group.name for _ in jobs] == ["p3", "p1", "p2"]  # type: ignore[union-attr]
