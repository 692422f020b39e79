"""Many builds: keep ``jobs`` builds in flight, hand each result back as it lands.

A plan can hold tens of thousands of jobs, so jobs are pulled from the
iterable only as slots free up, never submitted all at once. Results are
handed to ``on_result`` in the calling thread, one at a time, so that the
caller can journal each one immediately without locks.

The default executor is a thread pool: each thread only waits on a backend
subprocess, so the GIL is not a bottleneck, and one backend crashing fails
only its own build (a ``ProcessPoolExecutor`` marks every outstanding future
broken when one worker dies). Any :class:`concurrent.futures.Executor` can
take its place (e.g. a Dask client's), as long as the cancel event reaches
the build function.

When the jobs are a sequence (a plan), which starts next is :mod:`.schedule`'s choice:
known-short builds first, a long one early enough to finish before the deadline, and none
that cannot finish by then (``not_started``: they stay queued). At the deadline the pool
stops submitting and sets the cancel event; running builds kill their backends and raise
:class:`~rebuilder.build.runner.Abandoned`; those jobs are counted as abandoned and not
reported, so they stay queued.
"""

from __future__ import annotations

import concurrent.futures as cf
import datetime as _dt
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from rebuilder.build.runner import Abandoned
from rebuilder.build.schedule import Schedule
from rebuilder.model import Attempt, Job, Status, utcnow

log = logging.getLogger(__name__)

# How often the pool wakes up without a result, to notice the deadline.
_TICK = 0.5


@dataclass(frozen=True)
class PoolProgress:
    """A snapshot of the pool after a result (``last``) or a deadline."""

    done: int
    running: int
    counts: dict[Status, int]
    abandoned: int
    elapsed: float
    last: tuple[Job, Attempt] | None = None


@dataclass(frozen=True)
class PoolSummary:
    """What one :meth:`BuildPool.run` did: verdicts per status, abandoned builds, wall time."""

    counts: dict[Status, int] = field(default_factory=dict)
    abandoned: int = 0
    elapsed: float = 0.0
    deadline_reached: bool = False
    interrupted: bool = False  # Ctrl-C: running builds were stopped and count as abandoned
    not_started: int = 0  # known to take longer than the time left before the deadline

    @property
    def built(self) -> int:
        """Builds that produced an attempt (every status)."""
        return sum(self.counts.values())

    @property
    def per_minute(self) -> float:
        return self.built * 60.0 / self.elapsed if self.elapsed > 0 else 0.0


class BuildPool:
    """Runs builds ``jobs`` at a time on ``executor`` (default: a thread pool of that size)."""

    def __init__(self, jobs: int, executor: cf.Executor | None = None) -> None:
        if jobs < 1:
            raise ValueError("jobs must be at least 1")
        self.jobs = jobs
        self.executor = executor

    def run(
        self,
        jobs: Iterable[Job],
        build: Callable[[Job, threading.Event], Attempt],
        on_result: Callable[[Job, Attempt], None],
        *,
        deadline: float | None = None,
        progress: Callable[[PoolProgress], None] | None = None,
        on_stop: Callable[[int], None] | None = None,
    ) -> PoolSummary:
        """Build every job until ``deadline`` (a ``time.monotonic()`` value); see the module doc.

        On Ctrl-C, ``on_stop(number of running builds)`` is called at once, the running
        builds are stopped (abandoned: they stay queued) and the summary says
        ``interrupted``; a second Ctrl-C while they stop raises.
        """
        if self.executor is not None:
            run = _Run(self.jobs, self.executor, build, on_result, deadline, progress)
            run.on_stop = on_stop
            return run.run(jobs)
        with cf.ThreadPoolExecutor(self.jobs, thread_name_prefix="rebuild") as executor:
            run = _Run(self.jobs, executor, build, on_result, deadline, progress)
            run.on_stop = on_stop
            return run.run(jobs)


class _Run:
    """One call of BuildPool.run: the in-flight set and the counters."""

    def __init__(
        self,
        slots: int,
        executor: cf.Executor,
        build: Callable[[Job, threading.Event], Attempt],
        on_result: Callable[[Job, Attempt], None],
        deadline: float | None,
        progress: Callable[[PoolProgress], None] | None,
    ) -> None:
        self.slots, self.executor, self.build = slots, executor, build
        self.on_result, self.deadline, self.progress = on_result, deadline, progress
        self.cancel = threading.Event()
        self.in_flight: dict[cf.Future[Attempt], tuple[Job, float, _dt.datetime]] = {}
        self.counts: Counter[Status] = Counter()
        self.abandoned = 0
        self.t0 = time.monotonic()
        self.on_stop: Callable[[int], None] | None = None
        self.interrupted = False

    def run(self, jobs: Iterable[Job]) -> PoolSummary:
        # A sequence (a plan) is scheduled; an iterator is pulled lazily, in its own order.
        schedule = Schedule(jobs if isinstance(jobs, Sequence) else ())
        try:
            self._loop(self._scheduled(schedule) if isinstance(jobs, Sequence) else jobs)
        except KeyboardInterrupt:
            self.interrupted = True
            if self.on_stop is not None:
                self.on_stop(len(self.in_flight))
            else:
                log.warning("stopping %d builds...", len(self.in_flight))
            self._stop_running()
        if schedule.not_started:
            log.info(
                "%d build(s) not started: they would not finish before the deadline",
                schedule.not_started,
            )
        return PoolSummary(
            counts=dict(self.counts),
            abandoned=self.abandoned,
            elapsed=time.monotonic() - self.t0,
            deadline_reached=self.cancel.is_set() and not self.interrupted,
            interrupted=self.interrupted,
            not_started=schedule.not_started,
        )

    def _stop_running(self) -> None:
        """Stop the backends and wait for them; the builds count as abandoned."""
        if not self.in_flight:
            return
        self.cancel.set()
        cf.wait(self.in_flight)
        for future in list(self.in_flight):
            if not future.cancelled() and isinstance(future.exception(), Abandoned):
                self.abandoned += 1
        self.in_flight.clear()

    def _loop(self, jobs: Iterable[Job]) -> None:
        pending: Iterator[Job] | None = iter(jobs)
        try:
            while True:
                if self._past_deadline() and not self.cancel.is_set():
                    log.info(
                        "deadline reached: abandoning %d running build(s)", len(self.in_flight)
                    )
                    self.cancel.set()
                    pending = None
                while pending is not None and len(self.in_flight) < self.slots:
                    job = next(pending, None)
                    if job is None:
                        pending = None
                    else:
                        self._submit(job)
                if not self.in_flight:
                    break
                done, _ = cf.wait(
                    self.in_flight, timeout=self._wait_time(), return_when=cf.FIRST_COMPLETED
                )
                for future in done:
                    self._finish(future)
        except KeyboardInterrupt:
            raise  # run() says so at once, then stops the builds
        except BaseException:
            self._stop_running()  # on_result raised: stop the backends, then go
            raise

    def _scheduled(self, schedule: Schedule) -> Iterator[Job]:
        while (job := schedule.next(time.monotonic(), self.deadline)) is not None:
            yield job

    def _past_deadline(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def _wait_time(self) -> float | None:
        if self.deadline is None or self.cancel.is_set():
            return None
        return max(0.0, min(_TICK, self.deadline - time.monotonic()))

    def _submit(self, job: Job) -> None:
        future = self.executor.submit(self.build, job, self.cancel)
        self.in_flight[future] = (job, time.monotonic(), utcnow())

    def _finish(self, future: cf.Future[Attempt]) -> None:
        job, started, started_at = self.in_flight.pop(future)
        try:
            attempt = future.result()
        except Abandoned:
            self.abandoned += 1
            self._report(None)
            return
        except Exception as e:
            log.error("build %s (%s) crashed: %s", job.build_id, job.group.key, e)
            attempt = crashed_attempt(job, e, started_at, time.monotonic() - started)
        self.counts[attempt.status] += 1
        self.on_result(job, attempt)
        self._report((job, attempt))

    def _report(self, last: tuple[Job, Attempt] | None) -> None:
        if self.progress is None:
            return
        self.progress(
            PoolProgress(
                done=sum(self.counts.values()),
                running=len(self.in_flight),
                counts=dict(self.counts),
                abandoned=self.abandoned,
                elapsed=time.monotonic() - self.t0,
                last=last,
            )
        )


def crashed_attempt(
    job: Job, error: BaseException, started_at: _dt.datetime, duration: float
) -> Attempt:
    """The FAIL attempt recorded when the build function itself raised."""
    return Attempt(
        build_id=job.build_id,
        version=job.group.version,
        status=Status.FAIL,
        started_at=started_at,
        duration=duration,
        backend="",
        reason=f"build crashed: {type(error).__name__}: {error}",
        inputs_digest=job.group.inputs_digest,
    )
