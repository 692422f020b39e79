"""The published build queue (v0's ``queue/list``, v1's ``queue``) and the memo of its
encoded entries that the render cache carries from one render to the next."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from rebuilder.api import v0, v1
from rebuilder.config import Profile, Release
from rebuilder.model import Artifact, BuildGroup, GroupRecord, Job
from rebuilder.site import ProfileView, api_v0, cache, queue, render
from rebuilder.site.output import Output

NOW = dt.datetime(2026, 5, 1, 12, 0)


def _group(name: str, version: str = "1.0-1", release: str = "sid") -> BuildGroup:
    arts = tuple(
        Artifact(
            b, version, "amd64", f"https://mirror.example/{b}_{version}_amd64.deb", "0" * 64, 1
        )
        for b in (name, f"{name}-doc")
    )
    return BuildGroup(name, version, "debian", release, "main", "amd64",
                      f"https://mirror.example/{name}.buildinfo", arts)  # fmt: skip


def _jobs() -> list[tuple[Job, GroupRecord | None]]:
    due = GroupRecord(_group("retry"), next_retry=NOW - dt.timedelta(hours=1), first_seen=NOW)
    return [
        (Job("p", due.group, "requeued"), due),
        (Job("p", _group('quo"te\\ü'), "new"), GroupRecord(_group('quo"te\\ü'), first_seen=NOW)),
        (Job("p", _group("norelease", release=""), "new"), None),
    ]


def _expected(jobs: list[tuple[Job, GroupRecord | None]]) -> tuple[bytes, bytes]:
    """The two files as the wire types encode them, job by job."""
    items, rows = [], []
    for i, (job, record) in enumerate(jobs, start=1):
        g, when = job.group, queue.queued_at(record, NOW)
        arts = tuple(v0.PkgArtifact(a.name, a.version, a.url) for a in g.artifacts)
        items.append(v0.QueueItem(i, g.name, g.version, g.distro, g.component, g.architecture,
                                  when, g.input_url, arts))  # fmt: skip
        queued = v1.QueuedJob(i, g.name, g.version, g.distro, g.release or None, g.architecture,
                              g.distro, g.input_url, when,
                              priority=0 if job.reason == "requeued" else 1)  # fmt: skip
        text = json.dumps(queued.to_json(), ensure_ascii=False, separators=(",", ":"))
        rows.append(text.encode())
    page = b'{"total": %d, "records": [\n%s\n]}\n' % (len(rows), b",\n".join(rows))
    return api_v0.dumps(v0.QueueList(NOW, tuple(items)).to_json()), (
        page if rows else b'{"total": 0, "records": []}\n'
    )


def _written(root: Path, jobs, last=None, memo=None) -> tuple[bytes, bytes]:
    queue.write_queue(Output(str(root)), "debian", jobs, NOW, last, memo)
    return (root / "debian/api/v0/queue/list").read_bytes(), (
        root / "debian/api/v1/queue"
    ).read_bytes()


def test_the_files_are_the_wire_types_encoding_with_or_without_the_memo(tmp_path: Path) -> None:
    jobs = _jobs()
    memo: dict[tuple[str, ...], tuple[bytes, bytes]] = {}
    assert _written(tmp_path / "a", jobs, None, memo) == _expected(jobs)
    assert len(memo) == 3
    again: dict[tuple[str, ...], tuple[bytes, bytes]] = {}
    assert _written(tmp_path / "b", jobs, memo, again) == _expected(jobs)  # every entry memoized
    assert again == memo
    lasts: tuple[queue.Memo | None, ...] = ({}, None)
    for n, last in enumerate(lasts):  # an empty queue, with and without a memo
        assert _written(tmp_path / f"e{n}", [], last, {}) == _expected([])


def test_a_memoized_entry_serves_only_a_job_of_the_same_fields(tmp_path: Path) -> None:
    jobs = _jobs()
    memo: dict[tuple[str, ...], tuple[bytes, bytes]] = {}
    _written(tmp_path / "a", jobs, None, memo)
    # mark each memoized entry: an entry taken from the memo shows its mark
    marked = {k: (b'"mark": %d}' % n, b'"mark":%d}' % n) for n, k in enumerate(memo)}
    v0_list, v1_page = _written(tmp_path / "b", jobs, marked, {})
    assert [q["mark"] for q in json.loads(v0_list)["queue"]] == [0, 1, 2]
    assert [q["mark"] for q in json.loads(v1_page)["records"]] == [0, 1, 2]
    # another version, another artifact URL, another time in the queue: each encoded anew
    retry, record = jobs[0]
    assert record is not None
    moved = [
        (dataclasses.replace(jobs[1][0], group=_group('quo"te\\ü', "2")), jobs[1][1]),
        (Job("p", retry.group, "requeued"), dataclasses.replace(record, next_retry=NOW)),
    ]
    g = jobs[2][0].group
    url = dataclasses.replace(g.artifacts[1], url="https://mirror.example/elsewhere.deb")
    moved.append((Job("p", dataclasses.replace(g, artifacts=(g.artifacts[0], url)), "new"), None))
    kept: dict[tuple[str, ...], tuple[bytes, bytes]] = {}
    assert _written(tmp_path / "c", moved, marked, kept) == _expected(moved)
    assert not kept.keys() & marked.keys()


def test_fields_that_would_read_the_same_joined_are_apart(tmp_path: Path) -> None:
    # "a\0b" + "c" and "a" + "b\0c": the same text once joined, not the same job
    jobs: list[tuple[Job, GroupRecord | None]] = [
        (Job("p", dataclasses.replace(_group("a\0b"), version="c"), "new"), None),
        (Job("p", dataclasses.replace(_group("a"), version="b\0c"), "new"), None),
    ]
    memo: dict[tuple[str, ...], tuple[bytes, bytes]] = {}
    assert _written(tmp_path / "a", jobs, None, memo) == _expected(jobs) and len(memo) == 2
    assert _written(tmp_path / "b", jobs, memo, {}) == _expected(jobs)


def test_the_render_cache_carries_the_memo_and_an_incremental_render_equals_a_full_one(
    tmp_path: Path,
) -> None:
    profile = Profile("p", "debian", (Release("sid", "https://mirror.example/debian"),))
    records = {r.group.key: r for _, r in _jobs() if r is not None}

    def view(jobs: list[tuple[Job, GroupRecord | None]]) -> ProfileView:
        return ProfileView(profile, records, len(jobs), NOW, (), [j for j, _ in jobs])

    site = tmp_path / "site"
    render(site, [view(_jobs())], now=NOW)
    assert len(cache.load(str(site)).queue) == 3
    later = [_jobs()[1], (Job("p", _group("fresh"), "new"), None), _jobs()[0]]
    render(site, [view(later)], now=NOW, changed=set())
    fresh = tmp_path / "fresh"
    render(fresh, [view(later)], now=NOW)
    for rel in ("debian/api/v0/queue/list", "debian/api/v1/queue"):
        assert (site / rel).read_bytes() == (fresh / rel).read_bytes(), rel
    assert len(cache.load(str(site)).queue) == 3  # the entries of this queue's jobs only
    # the next pass, the same queue (jobs of records: their time in the queue stands): the
    # memo's file (62 MB at Debian's size) is not written again
    kept = _jobs()[:2]
    render(site, [view(kept)], now=NOW + dt.timedelta(hours=1), changed=set())
    before = (site / cache.QUEUE).stat()
    render(site, [view(kept)], now=NOW + dt.timedelta(hours=2), changed=set())
    after = (site / cache.QUEUE).stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_a_queue_that_moved_a_little_leaves_the_memo_file_as_it_was(tmp_path: Path) -> None:
    """A pass that queues a job or two does not write the memo again (62 MB at Debian's
    first queue): the next render encodes those jobs anew and the files are the same; a
    queue that moved by more than the share has it written again."""
    profile = Profile("p", "debian", (Release("sid", "https://mirror.example/debian"),))

    def jobs(names: list[str]) -> list[tuple[Job, GroupRecord | None]]:
        return [(Job("p", _group(n), "new"), None) for n in names]

    def render_queue(site: Path, queued: list[tuple[Job, GroupRecord | None]]) -> None:
        view = ProfileView(profile, {}, len(queued), NOW, (), [j for j, _ in queued])
        render(site, [view], now=NOW, changed=set())

    names = [f"pkg{i:02d}" for i in range(40)]
    site = tmp_path / "site"
    render_queue(site, jobs(names))
    before = (site / cache.QUEUE).stat()
    for n, queued in enumerate([jobs([*names, "one"]), jobs([*names[1:], "one", "two"])]):
        render_queue(site, queued)
        after = (site / cache.QUEUE).stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), n
        fresh = tmp_path / f"fresh{n}"
        render(fresh, [ProfileView(profile, {}, len(queued), NOW, (), [j for j, _ in queued])],
               now=NOW)  # fmt: skip
        for rel in ("debian/api/v0/queue/list", "debian/api/v1/queue"):
            assert (site / rel).read_bytes() == (fresh / rel).read_bytes(), rel
    render_queue(site, jobs(names[:20]))  # half the jobs gone: written again, theirs only
    assert (site / cache.QUEUE).stat().st_ino != before.st_ino
    assert len(cache.load(str(site)).queue) == 20


def test_the_queue_counts_the_entries_its_memo_holds_that_the_last_one_lacks(
    tmp_path: Path,
) -> None:
    """What tells the render cache whether to save the memo again, without comparing every
    job's fields: the count is of keys, not jobs (a job twice in the queue, or the same
    fields in two distributions' queues, is one key)."""
    out = Output(str(tmp_path))
    last: cache.Memo = {}
    queue.write_queue(out, "debian", [(Job("p", _group(n), "new"), None) for n in "abc"], NOW,
                      {}, last)  # fmt: skip
    memo: cache.Memo = {}
    kept_and_new = [(Job("p", _group(n), "new"), None) for n in ["b", "c", "d", "d", "e"]]
    assert queue.write_queue(out, "debian", kept_and_new, NOW, last, memo) == 2
    again = [(Job("p", _group(n), "new"), None) for n in ["e", "f"]]
    assert queue.write_queue(out, "other", again, NOW, last, memo) == 1
    assert len(memo.keys() - last.keys()) == 3
    assert cache._memo_moved(memo, last, 3) == cache._memo_moved(memo, last) is True


def test_a_render_by_other_code_leaves_a_memo_the_next_render_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # an upgrade: the memo of the old code is of no use to the new one, which must write its
    # own (the same jobs, the same keys: compared with the old one, it looked unmoved, and
    # every render after an upgrade encoded the whole queue once more)
    profile = Profile("p", "debian", (Release("sid", "https://mirror.example/debian"),))
    records = {r.group.key: r for _, r in _jobs() if r is not None}
    view = ProfileView(profile, records, 3, NOW, (), [j for j, _ in _jobs()])
    site = tmp_path / "site"
    render(site, [view], now=NOW)
    real = cache.code_digest
    monkeypatch.setattr(cache, "code_digest", lambda: "upgraded " + real())
    render(site, [view], now=NOW, changed=set())
    code = cache.load(str(site)).code
    assert len(cache.load_queue(str(site), code)) == 3
