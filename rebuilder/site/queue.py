"""The build queue as rebuilderd's clients read it: v0's ``queue/list`` and v1's ``queue``.

Each render publishes the whole queue, and at Debian's size a first pass queues tens of
thousands of jobs: encoding them costs close to a second, every render, for a queue that
a pass barely moves. So each job's two entries are kept, encoded but for their ``id``
(the job's place in the queue, which moves with every job before it), in a memo the
render cache carries to the next render (:attr:`cache.RenderCache.queue`). The memo is
keyed by the very fields the entries are made of, so a job whose group or time moved
misses it and is encoded anew; the files are byte for byte what encoding every job
would give.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Mapping, MutableMapping, Sequence

from rebuilder.api import v0, v1
from rebuilder.model import BuildGroup, GroupRecord, Job
from rebuilder.site import api_v0, api_v1, paths
from rebuilder.site.output import Output

# a job's fields (:func:`_fields`) -> its v0 and v1 entries without their leading id
Memo = Mapping[str, tuple[bytes, bytes]]

_V0_ID = b'{"id": %d, '  # how v0's entries start (api_v0.dumps: sorted keys, "id" first)
_END = b"]}\n"  # how the v0 list ends
_V1_ID = b'{"id":%d,'  # how v1's do (compact, in the wire type's order)
_V1_ENCODE = json.JSONEncoder(sort_keys=False, ensure_ascii=False, separators=(",", ":")).encode


def queued_at(record: GroupRecord | None, now: _dt.datetime) -> _dt.datetime:
    """When a job joined the queue, as well as the state knows: when its retry fell due,
    else when its group was first seen."""
    if record is None:
        return now
    if record.next_retry is not None and record.next_retry <= now:
        return record.next_retry
    return record.first_seen or now


def write_queue(
    out: Output,
    distro: str,
    jobs: Sequence[tuple[Job, GroupRecord | None]],
    now: _dt.datetime,
    last: Memo | None = None,
    memo: MutableMapping[str, tuple[bytes, bytes]] | None = None,
) -> None:
    """v0's ``queue/list`` and v1's ``queue`` of one distribution, in queue order.

    ``last`` is the last render's memo; the entries of this render's jobs go into
    ``memo`` (the next render's)."""
    last = last or {}
    v0_rows, v1_rows = [], []
    for i, (job, record) in enumerate(jobs, start=1):
        g = job.group
        when = queued_at(record, now)
        priority = 0 if job.reason == "requeued" else 1
        fields = _fields(g, when, priority)
        rows = last.get(fields) if fields is not None else None
        if rows is None:
            rows = _rows(g, when, priority)
        if memo is not None and fields is not None:
            memo[fields] = rows
        v0_rows.append(_V0_ID % i + rows[0])
        v1_rows.append(_V1_ID % i + rows[1])
    # {"now": ..., "queue": [...]}: the list's own keys, as api_v0.dumps writes them
    empty = api_v0.dumps(v0.QueueList(now, ()).to_json())
    head, tail = empty[: -len(_END)], _END
    out.write(f"{paths.api_base(distro)}/queue/list", head + b", ".join(v0_rows) + tail)
    out.write(f"{paths.api_v1_base(distro)}/queue", api_v1.result_page(v1_rows))


def _fields(g: BuildGroup, when: _dt.datetime, priority: int) -> str | None:
    """Every field a job's entries are made of, as one string; None when a field holds a
    NUL, which would make it ambiguous (such a job is not memoized)."""
    head = (g.name, g.version, g.distro, g.release, g.component, g.architecture, g.input_url)
    artifacts = [f"{a.name}\0{a.version}\0{a.url}" for a in g.artifacts]
    text = "\0".join((*head, when.isoformat(), str(priority), *artifacts))
    return text if text.count("\0") == len(head) + 1 + 3 * len(artifacts) else None


def _rows(g: BuildGroup, when: _dt.datetime, priority: int) -> tuple[bytes, bytes]:
    """A job's v0 and v1 entries (the wire types' own encoding), without their id."""
    artifacts = tuple(v0.PkgArtifact(a.name, a.version, a.url) for a in g.artifacts)
    item = v0.QueueItem(
        0, g.name, g.version, g.distro, g.component, g.architecture, when, g.input_url, artifacts
    )
    job = v1.QueuedJob(
        0, g.name, g.version, g.distro, g.release or None, g.architecture, g.distro,
        g.input_url, when, priority=priority,
    )  # fmt: skip
    return (
        _strip(api_v0.dumps(item.to_json())[:-1], _V0_ID % 0),  # (its final newline)
        _strip(_V1_ENCODE(job.to_json()).encode("utf-8", "surrogatepass"), _V1_ID % 0),
    )


def _strip(entry: bytes, head: bytes) -> bytes:
    if not entry.startswith(head):  # the wire type's id is no longer its first key
        raise AssertionError(f"a queue entry does not start with {head!r}: {entry[:40]!r}")
    return entry[len(head) :]
