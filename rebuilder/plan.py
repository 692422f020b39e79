"""The plan: which build groups to rebuild now, in which order, and why.

Rules (documented in README "Plan rules"):

- a new source package, a new version, or changed inputs (same version,
  different artifacts) is queued;
- GOOD is never rebuilt for the same inputs;
- BAD and FAIL are retried under separate policies: the n-th retry is due
  ``backoff * 2**(n-1)`` seconds after the previous attempt ended, at most
  ``max`` retries; a FAIL because the source is unavailable waits for new inputs;
- a manual requeue comes first, highest priority first, and ignores the limits.

Retries are derived from the attempts themselves, so the state never holds a
counter that could disagree with its own history.
"""

from __future__ import annotations

import bisect
import datetime as dt
import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from rebuilder.config import RetryPolicy
from rebuilder.model import SOURCE_UNAVAILABLE, Attempt, GroupRecord, Job, Status

# order of reasons in the queue, after requeued jobs
_REASON_ORDER = {"requeued": 0, "new": 1, "new version": 2, "inputs changed": 3, "retry due": 4}


@dataclass(frozen=True, slots=True)
class Policies:
    bad: RetryPolicy
    fail: RetryPolicy

    def for_status(self, status: Status) -> RetryPolicy | None:
        return {Status.BAD: self.bad, Status.FAIL: self.fail}.get(status)


def retry_state(rec: GroupRecord, policies: Policies) -> tuple[int, dt.datetime | None]:
    """(retries made, when the next one is due — None: none will be) for the current inputs."""
    current = rec.current_attempt()
    if current is None:
        return 0, None
    policy = policies.for_status(current.status)
    failed = _failed_attempts(rec)
    retries = max(failed - 1, 0)
    if policy is None or retries >= policy.max or SOURCE_UNAVAILABLE in current.reason:
        return retries, None
    return retries, _ended(current) + dt.timedelta(seconds=policy.backoff * 2**retries)


def _failed_attempts(rec: GroupRecord) -> int:
    digest = rec.group.inputs_digest
    failed = (Status.BAD, Status.FAIL)
    return sum(1 for a in rec.attempts if a.inputs_digest == digest and a.status in failed)


def _ended(a: Attempt) -> dt.datetime:
    return a.started_at + dt.timedelta(seconds=a.duration)


def reason(rec: GroupRecord, now: dt.datetime, policies: Policies) -> str | None:
    """Why the group is to be built now, or None when it is not."""
    if not rec.seen:
        return None
    if rec.requeued:
        return "requeued"
    current = rec.current_attempt()
    if current is None:
        if not rec.attempts:
            return "new"
        if all(a.version != rec.group.version for a in rec.attempts):
            return "new version"
        return "inputs changed"
    if current.status in (Status.GOOD, Status.UNKWN):
        return None
    _, due = retry_state(rec, policies)
    return "retry due" if due is not None and due <= now else None


def estimate(rec: GroupRecord) -> float | None:
    """How long the group's next build may take: its newest attempt that ran a whole build
    (GOOD or BAD) or ran out of time; None when none did (a FAIL that stopped early says
    nothing about the build's length)."""
    for a in reversed(rec.attempts):
        if a.status in (Status.GOOD, Status.BAD) or a.reason.startswith("timeout"):
            return a.duration
    return None


def plan(
    profiles: Mapping[str, Mapping[str, GroupRecord]], now: dt.datetime, policies: Policies
) -> list[Job]:
    """The queue across profiles: requeued first (highest priority first), then by reason, name."""
    jobs = []
    for profile, records in profiles.items():
        for rec in records.values():
            why = reason(rec, now, policies)
            if why is not None:
                jobs.append(Job(profile, rec.group, why, rec.requeued, estimate=estimate(rec)))
    jobs.sort(key=lambda j: (-j.priority, _REASON_ORDER[j.reason], j.group.name, j.group.key))
    return jobs


def requeue(
    records: Iterable[GroupRecord],
    *,
    status: Iterable[Status] = (),
    name: str | None = None,
    reset: bool = False,
    priority: int = 1,
) -> list[GroupRecord]:
    """Mark matching groups to be built first in the next pass; ``reset`` also forgets the
    verdict (back to UNKWN, as rebuildctl's ``--reset``). ``name`` is a glob on the source
    package or any of its binaries (as ``pkgs ls --name``). Returns the matched records."""
    wanted = set(status)
    out = []
    for rec in records:
        if not rec.seen or (wanted and rec.status not in wanted):
            continue
        names = (rec.group.name, *(a.name for a in rec.group.artifacts))
        if name is not None and not any(fnmatch.fnmatchcase(n, name) for n in names):
            continue
        rec.requeued = max(priority, 1)
        if reset:
            rec.status = Status.UNKWN
        out.append(rec)
    return out


def after_attempt(rec: GroupRecord, attempt: Attempt, policies: Policies) -> bool:
    """Fold a finished attempt into its record: verdict, history, retry schedule.

    Idempotent and order-independent, so that shard results can be merged in
    any order and twice: an attempt already recorded (same build id) is
    ignored, history is kept in build-id order and the verdict is that of the
    newest attempt for the current inputs. False when the attempt was known.
    """
    if any(a.build_id == attempt.build_id for a in rec.attempts):
        return False
    bisect.insort(rec.attempts, attempt, key=lambda a: a.build_id)
    current = rec.current_attempt()
    if current is not None:
        rec.status = current.status
        if current is attempt:
            rec.requeued = 0
    rec.retries, rec.next_retry = retry_state(rec, policies)
    return True
