"""The build queue as rebuilderd's clients read it: v0's ``queue/list`` and v1's ``queue``.

Each render publishes the whole queue, and a first pass over Debian queues some 46,000
jobs: encoding them costs seconds, every render, for a queue that a pass barely moves.
So each job's two entries are kept, encoded but for their ``id`` (the job's place in the
queue, which moves with every job before it), in a memo the render cache carries to the
next render (:func:`cache.load_queue`). The memo is keyed by the very fields the entries
are made of, so a job whose group or time moved misses it and is encoded anew; the files
are byte for byte what encoding every job would give.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Sequence

from rebuilder.api import v0, v1
from rebuilder.model import BuildGroup, GroupRecord, Job
from rebuilder.site import api_v0, api_v1, paths
from rebuilder.site.cache import Memo
from rebuilder.site.output import Output

_V0_ID = b'{"id": %d, '  # how v0's entries start (api_v0.dumps: sorted keys, "id" first)
_V0_NEXT = b", " + _V0_ID  # (the others, after a comma)
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
    memo: Memo | None = None,
) -> int:
    """v0's ``queue/list`` and v1's ``queue`` of one distribution, in queue order.

    ``last`` is the last render's memo (a job's fields, :func:`_fields` -> its v0 and v1
    entries without their leading id); the entries of this render's jobs go into
    ``memo`` (the next render's). Returns how many entries it put there that ``last``
    lacks: what tells the render cache whether the memo is worth saving again."""
    last = last or {}
    if memo is None:
        memo = {}
    new = 0
    v0_tails, v1_tails = [], []
    for job, record in jobs:
        g = job.group
        when = queued_at(record, now)
        priority = 0 if job.reason == "requeued" else 1
        fields = _fields(g, when, priority)
        rows = last.get(fields)
        if rows is None:
            rows = memo.get(fields)  # (the same job twice, or in two distributions)
            if rows is None:
                rows = _rows(g, when, priority)
                new += 1
        memo[fields] = rows
        v0_tails.append(rows[0])
        v1_tails.append(rows[1])
    # {"now": ..., "queue": [...]}: the list's own keys, as api_v0.dumps writes them
    empty = api_v0.dumps(v0.QueueList(now, ()).to_json())
    head = empty[: -len(_END)]
    ids = range(1, len(jobs) + 1)
    v0_list = api_v1.join_numbered(head, (_V0_ID, _V0_NEXT), ids, v0_tails, _END)
    out.write(f"{paths.api_base(distro)}/queue/list", v0_list)
    out.write(f"{paths.api_v1_base(distro)}/queue", api_v1.numbered_page(ids, v1_tails))
    return new


def _fields(g: BuildGroup, when: _dt.datetime, priority: int) -> tuple[str, ...]:
    """Every field a job's entries are made of (each artifact's three after the rest)."""
    fields: tuple[str, ...] = (
        g.name, g.version, g.distro, g.release, g.component, g.architecture, g.input_url,
        when.isoformat(), "1" if priority else "0",
    )  # fmt: skip
    for a in g.artifacts:
        fields += (a.name, a.version, a.url)
    return fields


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
