"""Which queued build to start next, knowing how long each took last time.

Each :class:`~rebuilder.model.Job` may carry ``estimate``: the seconds its group's last
real build took (``plan.estimate``), or None for a group never built. The pool asks a
:class:`Schedule` for its next job each time a slot frees up:

- without a deadline, known-short builds go first (the most verdicts per hour); a group
  never built counts as a build of the median known length, so it is neither starved nor
  pushed ahead of everything; requeued jobs (a higher priority) always come first;
- with a deadline, a long build whose latest start (deadline minus its estimate) is near
  goes before the short ones, so it still finishes in time. "Near" is one shortest known
  build away: starting a short build instead would make the long one miss its chance;
- a build that cannot finish before the deadline is not started at all: it stays queued
  for the next pass instead of being killed at the deadline with its time wasted.

>>> from rebuilder.model import BuildGroup, Job
>>> def job(name, est):
...     g = BuildGroup(name, "1", "debian", "sid", "main", "amd64", "https://x.example/i", ())
...     return Job("p", g, "new", estimate=est)
>>> s = Schedule([job("long", 100.0), job("short", 1.0), job("new", None), job("mid", 10.0)])
>>> [s.next(0.0, None).group.name for _ in range(4)]  # new: as long as the median, mid
['short', 'new', 'mid', 'long']
>>> s = Schedule([job("long", 100.0), job("short", 1.0), job("huge", 500.0)])
>>> [j.group.name for j in [s.next(0.0, 100.5), s.next(1.0, 100.5)]], s.next(2.0, 100.5)
(['long', 'short'], None)
>>> s.not_started
1
"""

from __future__ import annotations

import heapq
import statistics
from collections.abc import Iterable

from rebuilder.model import Job


class Schedule:
    """The pending jobs of one pool run; :meth:`next` hands them out one at a time."""

    def __init__(self, jobs: Iterable[Job]) -> None:
        pending = list(jobs)
        known = [j.estimate for j in pending if j.estimate is not None]
        typical = statistics.median(known) if known else 0.0
        # (priority, expected length, plan position): the plan's order breaks ties
        self._short = [
            (-j.priority, typical if j.estimate is None else j.estimate, i, j)
            for i, j in enumerate(pending)
        ]
        heapq.heapify(self._short)
        # known lengths, longest first: the ones whose latest start comes first
        self._long = sorted(
            ((j.estimate, i) for i, j in enumerate(pending) if j.estimate is not None),
            reverse=True,
        )
        self._shortest = min(known, default=0.0)
        self._taken: set[int] = set()
        self.not_started = 0

    def __len__(self) -> int:
        return len(self._short)

    def next(self, now: float, deadline: float | None) -> Job | None:
        """The job to start at ``now`` (monotonic seconds), None when none should start."""
        if deadline is not None:
            self._drop_hopeless(deadline - now)
            urgent = self._urgent(now, deadline)
            if urgent is not None:
                return urgent
        while self._short:
            _, _, i, job = heapq.heappop(self._short)
            if i not in self._taken:
                self._taken.add(i)
                return job
        return None

    def _drop_hopeless(self, left: float) -> None:
        """Jobs known to take longer than the time left are never started."""
        while self._long and self._long[0][0] > left:
            _, i = self._long.pop(0)
            if i not in self._taken:
                self._taken.add(i)
                self.not_started += 1

    def _urgent(self, now: float, deadline: float) -> Job | None:
        """The longest job whose latest start is within one shortest build from now."""
        for k, (estimate, i) in enumerate(self._long):
            if i in self._taken:
                continue
            if deadline - estimate - now > self._shortest:
                return None  # the longest pending job can still wait, so can the others
            del self._long[k]
            self._taken.add(i)
            return next(j for _, _, n, j in self._short if n == i)
        return None
