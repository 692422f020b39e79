import datetime as dt

from rebuilder import plan
from rebuilder.config import RetryPolicy
from rebuilder.model import GroupRecord, Status

from .fixtures.operator import T0, attempt, group

POL = plan.Policies(bad=RetryPolicy(backoff=3600, max=2), fail=RetryPolicy(backoff=60, max=1))


def q(*records, now=T0):
    return [
        (j.group.name, j.reason)
        for j in plan.plan({"p": {r.group.key: r for r in records}}, now, POL)
    ]


def test_new_and_new_version_and_good_never_rebuilt():
    g = group("a")
    new = GroupRecord(g)
    good = GroupRecord(group("b"), Status.GOOD, [attempt(group("b"), Status.GOOD)])
    old = group("c", "1.0-1")
    newer = GroupRecord(group("c", "2.0-1"), Status.UNKWN, [attempt(old, Status.GOOD)])
    assert q(new, good, newer) == [("a", "new"), ("c", "new version")]


def test_bad_retried_with_exponential_backoff_until_max():
    g = group("a")
    rec = GroupRecord(g)
    plan.after_attempt(rec, attempt(g, Status.BAD, at=T0), POL)
    assert rec.status == Status.BAD and rec.retries == 0
    assert rec.next_retry == T0 + dt.timedelta(seconds=10 + 3600)
    assert q(rec, now=T0 + dt.timedelta(minutes=30)) == []
    assert q(rec, now=T0 + dt.timedelta(hours=2)) == [("a", "retry due")]
    t1 = T0 + dt.timedelta(hours=2)
    plan.after_attempt(rec, attempt(g, Status.BAD, 2, at=t1), POL)
    assert rec.retries == 1 and rec.next_retry == t1 + dt.timedelta(seconds=10 + 7200)
    plan.after_attempt(rec, attempt(g, Status.BAD, 3, at=t1), POL)
    assert rec.retries == 2 and rec.next_retry is None  # max reached
    assert q(rec, now=t1 + dt.timedelta(days=365)) == []


def test_fail_policy_separate_and_source_unavailable_waits_for_new_inputs():
    g = group("a")
    rec = GroupRecord(g)
    plan.after_attempt(rec, attempt(g, Status.FAIL), POL)
    assert rec.next_retry == T0 + dt.timedelta(seconds=70)
    g2 = group("b")
    gone = GroupRecord(g2)
    plan.after_attempt(gone, attempt(g2, Status.FAIL, reason="source unavailable: x.dsc"), POL)
    assert gone.next_retry is None
    assert q(gone, now=T0 + dt.timedelta(days=30)) == []


def test_requeue_first_and_ignores_limits():
    g = group("z")
    rec = GroupRecord(g, Status.GOOD, [attempt(g, Status.GOOD)])
    other = GroupRecord(group("a"))
    assert plan.requeue([rec, other], status=[Status.GOOD], name="z*") == [rec]
    assert q(other, rec) == [("z", "requeued"), ("a", "new")]
    plan.after_attempt(rec, attempt(g, Status.GOOD, 2), POL)
    assert rec.requeued == 0
    assert plan.requeue([rec], reset=True) == [rec] and rec.status == Status.UNKWN


def test_unseen_never_queued():
    rec = GroupRecord(group("a"), seen=False)
    assert q(rec) == []
