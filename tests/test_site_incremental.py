"""An incremental render (``changed`` given, parts taken from ``.render-cache``) writes the
same bytes as a full render of the same state into an empty site, round after round."""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
import json
import logging
import marshal
import os
import random
import shutil
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest

from rebuilder import _gc
from rebuilder.model import GroupRecord, Job, Status
from rebuilder.site import (
    ProfileView,
    SiteError,
    aggregates,
    api_v1,
    cache,
    feeds,
    forks,
    groups,
    html,
    maintainers,
    paths,
    render,
)
from rebuilder.state import history_point

from .fixtures.site import (
    NOW,
    T0,
    built_record,
    site_attempt,
    site_group,
    site_profile,
    write_store,
)

site_render = importlib.import_module("rebuilder.site.render")  # (the package exports render())

CAUSES = ("timestamps", "build-path", "file-order")


def _files(root: Path) -> dict[str, str]:
    """Every file and link under root but the cache: a digest of its bytes, or its target."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for f in files + [d for d in dirs if os.path.islink(os.path.join(dirpath, d))]:
            p = Path(dirpath, f)
            rel = str(p.relative_to(root))
            if rel in cache.OWN:
                continue
            out[rel] = (
                "-> " + os.readlink(p)
                if p.is_symlink()
                else hashlib.sha256(p.read_bytes()).hexdigest()
            )
    return out


class State:
    """A profile of a few hundred groups over four suites, changed a few at a time."""

    def __init__(self, site: Path, n: int, rng: random.Random) -> None:
        self.site, self.rng, self.build_id = site, rng, 0
        self.records: dict[str, GroupRecord] = {}
        self.history: list[dict] = []
        for i in range(n):
            self.add(f"pkg{i:03d}")

    def _build(self, g, status: Status):
        self.build_id += 1
        b = self.build_id
        files = {"log": f"{b}/log.gz"}
        write_store(self.site, files["log"], f"log of {g.name} {g.version} build {b}\n")
        if status is Status.BAD:
            files["diffoscope"] = f"{b}/diffoscope.txt.gz"
            write_store(self.site, files["diffoscope"], f"--- a\n+++ b\n{b}\n")
        if status is Status.GOOD:
            files["attestation"] = f"{b}/attestation.json.gz"
            write_store(self.site, files["attestation"], '{"_type": "link"}')
        a = site_attempt(g, b, status, files)
        if status is Status.BAD:
            a = replace(a, causes=(self.rng.choice(CAUSES),))
        return a

    def add(self, name: str) -> str:
        rng = self.rng
        bins = (name, f"{name}-doc")[: rng.choice([1, 2])]
        g = site_group(
            name,
            f"1.{rng.randint(0, 9)}-1",
            component=rng.choice(["main", "contrib"]),
            arch=rng.choice(["amd64", "all"]),
            bins=bins,
            maintainers=(f"M{rng.randint(0, 9)} <m{rng.randint(0, 9)}@example.org>",),
        )
        status = rng.choice(list(Status))
        attempts = [] if status is Status.UNKWN else [self._build(g, status)]
        self.records[g.key] = GroupRecord(g, status, attempts, first_seen=NOW, last_seen=NOW)
        return g.key

    def change(self, n: int) -> set[str]:
        """``n`` changes of every kind a pass makes; the keys they touched."""
        rng, keys = self.rng, set()
        for key in rng.sample(sorted(self.records), n):
            r = self.records[key]
            how = rng.choice(["rebuild", "rebuild", "version", "gone", "unseen", "maintainer"])
            if how == "rebuild":
                status = rng.choice([Status.GOOD, Status.BAD, Status.FAIL])
                attempts = [*r.attempts, self._build(r.group, status)]
                self.records[key] = replace(r, status=status, attempts=attempts)
            elif how == "version":
                g = site_group(
                    r.group.name, r.group.version + "+1", component=r.group.component,
                    arch=r.group.architecture, bins=tuple(a.name for a in r.group.artifacts),
                    maintainers=r.group.maintainers,
                )  # fmt: skip
                self.records[key] = replace(r, group=g, status=Status.UNKWN)
            elif how == "gone":
                del self.records[key]
            elif how == "unseen":
                self.records[key] = replace(r, seen=False)
            else:
                g = replace(r.group, maintainers=("Someone Else <else@example.org>",))
                self.records[key] = replace(r, group=g)
            keys.add(key)
        keys.add(self.add(f"new{self.build_id:04d}"))
        return keys

    def views(self, now: dt.datetime, queue: Sequence[Job] = ()) -> list[ProfileView]:
        return [
            ProfileView(site_profile(), dict(self.records), 3, now, list(self.history), queue),
            ProfileView(  # a second profile of the same distribution sharing some groups
                site_profile("debian-part"),
                {k: r for k, r in self.records.items() if "pkg00" in k},
                0,
                now,
            ),
        ]


def _same_as_full(tmp_path: Path, site: Path, views: list[ProfileView], now: dt.datetime) -> None:
    full = tmp_path / f"full-{now:%H%M%S}"
    shutil.copytree(site / "builds", full / "builds")
    render(full, views, now=now)
    assert _files(site) == _files(full)
    assert (
        cache.load(str(site)).resolved() == cache.load(str(full)).resolved()
    )  # the next render starts the same
    shutil.rmtree(full)


@pytest.mark.parametrize("beside", [0, 1, 3], ids=["here", "lists-beside", "all-beside"])
def test_incremental_renders_write_what_a_full_render_writes(
    tmp_path: Path, monkeypatch, beside: int
) -> None:
    """``beside``: the processes forked for the touched lists while the driver writes the
    rest: one for the suite lists (as after a hundred changes at Debian's size), or that
    one and two for the maintainer pages (as when a pass redoes hundreds of maintainers'
    pages); and v1 ids are drawn from so few that many packages ask for the same and are
    moved to the next free one."""
    started: list[int] = []
    if beside:
        monkeypatch.setattr(api_v1, "ID_SPACE", 1000)
        monkeypatch.setattr(site_render, "LISTS_PARALLEL_MIN", 1)
        monkeypatch.setattr(forks.os, "sched_getaffinity", lambda pid: {0, 1})
    if beside == 3:
        monkeypatch.setattr(maintainers, "PARALLEL_MIN", 1)
    if beside:
        run = forks.start

        def counted(calls):
            started.append(len(calls))
            return run(calls)

        monkeypatch.setattr(forks, "start", counted)
    site = tmp_path / "site"
    state = State(site, 150, random.Random(7))
    now = NOW
    render(site, state.views(now), now=now)
    for round_ in range(3):
        keys = state.change(12)
        now += dt.timedelta(hours=1)  # a new pass: new "now" and one more history point
        state.history.append(history_point(now, state.records.values()))
        views = state.views(now)
        started.clear()
        with monkeypatch.context() as m:  # the v0 and v1 lists are patched, not made anew
            m.setattr(aggregates, "_all_lines", _not_called)
            if not beside:  # (where packages ask for the ids others hold, v1 is made anew)
                m.setattr(api_v1, "write_packages", _not_called)
            stats = render(site, views, now=now, changed=keys)
        assert started == ([beside] if beside else []), round_
        assert stats.skipped > 100, round_  # the others were taken from the cache
        # the driver's phases, in order, account for no more than the render's time
        phases = list(stats.phases)
        assert phases[:2] == ["inputs", "cache read"] and phases[-1] == "cache saved"
        order = ["walk", "v1+v0 lists", "maintainer pages+wait"]
        assert [phases.index(p) for p in order] == sorted(phases.index(p) for p in order)
        assert all(t >= 0 for t in stats.phases.values())
        assert sum(stats.phases.values()) <= stats.seconds + 0.001 * len(phases)
        _same_as_full(tmp_path, site, views, now)
    # the next pass: no group changed, but the time and the history moved
    now += dt.timedelta(hours=1)
    state.history.append(history_point(now, state.records.values()))
    views = state.views(now)
    started.clear()
    render(site, views, now=now, changed=set())
    assert started == []  # no group page, list or maintainer page to make: no process
    _same_as_full(tmp_path, site, views, now)
    # nothing changed, nothing else moved: nothing is even looked at
    quiet = render(site, views, now=now, changed=set())
    assert (quiet.written, quiet.unchanged, quiet.removed) == (0, 0, 0)
    assert quiet.skipped == sum(len(v.records) for v in views)
    _same_as_full(tmp_path, site, views, now)
    # no record changed, but the queue did (a retry fell due, one was built): the API's
    # queue moves
    queue = [Job("debian-main", state.records[k].group, "new") for k in sorted(state.records)]
    for jobs in (queue[:2], queue[1:3]):
        views = state.views(now, jobs)
        moved = render(site, views, now=now, changed=set())
        assert moved.written > 0, jobs
        _same_as_full(tmp_path, site, views, now)


def _log_writes(monkeypatch, log: Path) -> None:
    """Every file written into a folder named ``site``, with the time it was on disk (one
    clock for every process), into ``log``; not when Output.write was called: a process
    held by a gate keeps what it is given until the gate opens (Output.hold)."""
    from rebuilder import _fs

    def logged(write):
        def on_disk(path: str, data: object) -> None:
            write(path, data)
            with open(log, "a") as f:
                f.write(f"{time.monotonic_ns()} {path.partition('/site/')[2]}\n")

        return on_disk

    for name in ("write_new", "write_atomic"):
        monkeypatch.setattr(_fs, name, logged(getattr(_fs, name)))


def _is_list(rel: str) -> bool:
    """A suite's list page or JSON, or a maintainer's page."""
    return (rel.startswith("p/") and rel.count("/") == 5) or rel.startswith("m/")


def test_lists_forked_first_are_written_after_the_changed_groups_pages(
    tmp_path: Path, monkeypatch
) -> None:
    """Leaves first, with the touched lists' processes forked before the driver writes the
    changed groups' pages: they wait at a gate, so no list page comes before a group page.
    When the group pages fail, the processes write nothing and the render stops."""
    monkeypatch.setattr(site_render, "LISTS_PARALLEL_MIN", 1)
    monkeypatch.setattr(maintainers, "PARALLEL_MIN", 1)
    monkeypatch.setattr(forks.os, "sched_getaffinity", lambda pid: {0, 1})
    site = tmp_path / "site"
    state = State(site, 60, random.Random(9))
    render(site, state.views(NOW), now=NOW)
    log = tmp_path / "writes"
    _log_writes(monkeypatch, log)
    keys = state.change(8)
    render(site, state.views(NOW), now=NOW, changed=keys)
    rows = [line.split(" ", 1) for line in log.read_text().splitlines()]
    pages = [int(t) for t, rel in rows if "/pkg/" in rel]
    lists = [int(t) for t, rel in rows if _is_list(rel)]
    assert len(pages) >= 8 and len(lists) > 8
    assert max(pages) < min(lists)
    _same_as_full(tmp_path, site, state.views(NOW), NOW)

    def broken(*args: object) -> None:
        raise SiteError("a template is broken")

    log.unlink()
    monkeypatch.setattr(groups, "_render_group", broken)
    with pytest.raises(SiteError, match="a template is broken"):
        render(site, state.views(NOW), now=NOW, changed=state.change(8))
    written = log.read_text().splitlines() if log.exists() else []
    assert not any(_is_list(line.split(" ", 1)[1]) for line in written)


def test_a_process_held_by_the_gate_makes_its_pages_before_the_gate_opens(
    tmp_path: Path,
) -> None:
    """A process forked before the pages its own link to makes its pages meanwhile (the
    driver writes those then): it keeps them in memory and writes them once the gate is
    open; when the gate is shut, it writes none and the driver's wait fails."""
    import multiprocessing

    from rebuilder.site.output import Output

    for shut in (False, True):
        site = tmp_path / str(shut)
        site.mkdir()
        made = multiprocessing.get_context("fork").Event()

        def pages(out: Output, made=made) -> None:
            for n in range(3):
                out.write(f"p/list-{n}.html", b"page %d" % n)
            made.set()  # (a process that waited at its first write would never get here)

        gate = forks.Gate()
        wait = forks.write(Output(str(site)), [pages], fork=True, gate=gate)
        try:
            assert made.wait(60), "the held process did not make its pages before the gate"
            assert not (site / "p").exists()  # ...nor wrote any of them
        finally:
            gate.shut() if shut else gate.open()
        if shut:
            with pytest.raises(SiteError, match="stopped before the pages"):
                wait()
            assert not (site / "p").exists()
        else:
            wait()
            assert [(site / f"p/list-{n}.html").read_bytes() for n in range(3)] == [
                b"page 0",
                b"page 1",
                b"page 2",
            ]


def test_a_held_output_waits_for_the_gate_once_it_holds_its_bound(
    tmp_path: Path, monkeypatch
) -> None:
    """What a held Output keeps in memory is bounded: past the bound, a write waits for the
    gate, then writes what it kept, in order; so does anything but a write."""
    from rebuilder.site import output

    class Closed:
        waited = 0

        def is_open(self) -> bool:
            return False

        def wait(self) -> None:
            self.waited += 1

    monkeypatch.setattr(output, "HELD_MAX", 10)
    for first_else in ("write", "read"):
        out, gate = output.Output(str(tmp_path / first_else)), Closed()
        out.hold(gate)
        out.write("a.html", b"123456")
        assert gate.waited == 0 and not (tmp_path / first_else).exists()
        with pytest.raises(SiteError, match="refusing"):
            out.write("../b.html", b"1")  # (refused at once, not when the gate opens)
        if first_else == "write":
            out.write("b.html", [b"1234", b"56"])  # 12 bytes in all: over the bound
        else:
            assert out.read_json("c.json") is None
        assert gate.waited == 1
        assert (tmp_path / first_else / "a.html").read_bytes() == b"123456"
        out.write("d.html", b"7")  # (released: written at once)
        assert (tmp_path / first_else / "d.html").exists() and gate.waited == 1
        assert out.stats.written == (3 if first_else == "write" else 2)


def _not_called(*args: object) -> None:
    raise AssertionError("the lists were made anew, not patched")


LISTS = {  # a list an incremental render patches, and what it logs when it cannot
    "v0": ("debian/all/api/v0/pkgs/list", "v0 lists are not as the last render left them"),
    "v1": ("debian/api/v1/packages/binary", "the v1 list cannot be patched"),
}


@pytest.mark.parametrize("damage", ["copied", "touched", "shorter", "gone", "index"])
@pytest.mark.parametrize("which", sorted(LISTS))
def test_lists_not_as_the_last_render_left_them_are_made_anew(
    tmp_path: Path, which: str, damage: str, caplog
) -> None:
    """An incremental render patches the v0 and v1 lists the last render wrote only when
    each is that file still (its size, time and inode); else, or when a line it would take
    out is not there, it makes them anew from the parts: the site is a full render's."""
    site = tmp_path / "site"
    state = State(site, 80, random.Random(21))
    render(site, state.views(NOW), now=NOW)
    rel, said = LISTS[which]
    target = site / rel
    data = target.read_bytes()
    if damage == "copied":  # the same bytes, another file (cp, rsync)
        target.unlink()
        target.write_bytes(data)
    elif damage == "touched":
        os.utime(target, ns=(1, 1))
    elif damage == "shorter":
        cut = data.rindex(b",\n")
        target.write_bytes(data[:cut] + data[data.index(b"\n", cut + 2) :])
    elif damage == "gone":
        target.unlink()
    else:  # the lists are as they were, but the cache has no index of them
        last = cache.load(str(site))
        del last.lists[which]["debian"]
        cache._save(str(site), last)
    keys = state.change(6)
    arm = site_group("newarch", "1.0-1", arch="arm64", bins=("newarch",))  # a new list
    state.records[arm.key] = GroupRecord(arm, Status.UNKWN, [], first_seen=NOW, last_seen=NOW)
    views = state.views(NOW)
    with caplog.at_level(logging.INFO, logger="rebuilder.site"):
        render(site, views, now=NOW, changed=keys | {arm.key})
    assert said in caplog.text
    assert all(t not in caplog.text for w, (_, t) in LISTS.items() if w != which)
    _same_as_full(tmp_path, site, views, NOW)
    assert (site / "debian/arm64/api/v0/pkgs/list").exists()


@pytest.mark.parametrize("how", ["incremental", "full"])
def test_an_architecture_whose_last_package_left_leaves_no_tree(tmp_path: Path, how: str) -> None:
    """A client of one architecture's v0 tree (debian-repro-status) must not read its last
    list for ever once the architecture's last package is gone (an operator dropped it):
    the tree goes, whether the render is told what changed or not."""
    site = tmp_path / "site"
    state = State(site, 40, random.Random(3))
    arm = site_group("armonly", "1.0-1", arch="arm64", bins=("armonly",))
    built = [state._build(arm, Status.GOOD)]
    state.records[arm.key] = GroupRecord(arm, Status.GOOD, built, first_seen=NOW, last_seen=NOW)
    render(site, state.views(NOW), now=NOW)
    tree = site / "debian/arm64"
    assert (tree / "api/v0/pkgs/list").exists()
    del state.records[arm.key]
    views = state.views(NOW)
    render(site, views, now=NOW, changed={arm.key} if how == "incremental" else None)
    assert not tree.exists()
    assert (site / "debian/amd64/api/v0/pkgs/list").exists()
    _same_as_full(tmp_path, site, views, NOW)


def test_the_v1_list_is_patched_beside_packages_that_could_not_have_their_own_id(
    tmp_path: Path, monkeypatch
) -> None:
    """A few packages ask for an id another one holds (ids drawn from fewer): a change
    that moves none of them is patched in, the others deal every id anew; either way the
    site is a full render's."""
    monkeypatch.setattr(api_v1, "ID_SPACE", 3_000)
    seen: list[tuple[bool, bool]] = []  # (some package moved off its id, patched)
    patch = api_v1.patch_packages

    def counted(out, distro, data, index, removed, added):
        done = patch(out, distro, data, index, removed, added)
        seen.append((bool(index["moved"]), done is not None))
        return done

    monkeypatch.setattr(api_v1, "patch_packages", counted)
    site = tmp_path / "site"
    state = State(site, 150, random.Random(9))
    render(site, state.views(NOW), now=NOW)
    for _ in range(6):
        keys = state.change(4)
        views = state.views(NOW)
        render(site, views, now=NOW, changed=keys)
        _same_as_full(tmp_path, site, views, NOW)
    assert (True, True) in seen, seen


def test_a_small_change_saves_only_the_difference_of_the_cache(tmp_path: Path, monkeypatch) -> None:
    """The cache file stays as the first render wrote it while the delta beside it grows
    with each render's changes; the two read back as the cache a full render makes."""
    monkeypatch.setattr(cache, "REWRITE_SHARE", 10.0)  # (a few hundred groups: all change)
    site = tmp_path / "site"
    state = State(site, 150, random.Random(11))
    now = NOW
    render(site, state.views(now), now=now)
    whole = (site / cache.FILE).read_bytes()
    for _ in range(3):
        keys = state.change(4)
        now += dt.timedelta(hours=1)
        state.history.append(history_point(now, state.records.values()))
        views = state.views(now)
        render(site, views, now=now, changed=keys)
        assert (site / cache.FILE).read_bytes() == whole
        assert (site / cache.DELTA).exists()
        _same_as_full(tmp_path, site, views, now)
    # past the share, the whole file again, and no delta
    monkeypatch.setattr(cache, "REWRITE_SHARE", 0.0)
    keys = state.change(4)
    views = state.views(now)
    render(site, views, now=now, changed=keys)
    assert (site / cache.FILE).read_bytes() != whole
    assert not (site / cache.DELTA).exists()
    _same_as_full(tmp_path, site, views, now)
    # a delta made for another cache file is not applied to this one (it would empty it)
    before = cache.load(str(site))
    assert before.parts
    other: dict[str, object] = {"profiles": [], "parts": {}, "digests": {}}
    head = cache._DELTA_MAGIC + b"another x y\n"
    (site / cache.DELTA).write_bytes(head + marshal.dumps(other))
    assert cache.load(str(site)) == before
    # a delta that is no delta costs the whole cache (time), never a wrong page
    (site / cache.DELTA).write_bytes(b"\x00 not marshal data")
    assert cache.load(str(site)).parts == {}
    keys = state.change(4)
    views = state.views(now)
    render(site, views, now=now, changed=keys)
    _same_as_full(tmp_path, site, views, now)


def test_the_cache_keeps_parts_by_field_and_reads_them_back_by_key(tmp_path: Path) -> None:
    site = tmp_path / "site"
    state = State(site, 30, random.Random(5))
    render(site, state.views(NOW), now=NOW)
    parts = cache.load(str(site)).parts  # (a second profile shares ten of the groups)
    assert sum(map(len, parts.values())) == 40
    data = (site / cache.FILE).read_bytes()
    payload = data.partition(b"\n")[2].partition(b"\n")[2]
    doc = marshal.loads(payload)
    assert doc["parts"].keys() == parts.keys()
    profile, by_key = max(parts.items(), key=lambda p: len(p[1]))
    keys, fields = doc["parts"][profile]
    assert keys == list(by_key) and len(fields) == len(next(iter(by_key.values())))
    assert [tuple(f[i] for f in fields) for i in range(len(keys))] == list(by_key.values())
    # a field shorter than the keys (a damaged file) is no cache: never parts misplaced
    fields[3] = fields[3][:-1]
    (site / cache.FILE).write_bytes(data[: -len(payload)] + marshal.dumps(doc))
    assert cache.load(str(site)).parts == {}


def test_a_broken_or_stale_cache_costs_time_not_correctness(tmp_path: Path) -> None:
    site = tmp_path / "site"
    state = State(site, 60, random.Random(3))
    render(site, state.views(NOW), now=NOW)
    (site / cache.FILE).write_bytes(b"not marshal data")
    keys = state.change(5)
    views = state.views(NOW)
    render(site, views, now=NOW, changed=keys)
    _same_as_full(tmp_path, site, views, NOW)
    # a render that stopped half-way leaves no cache: the next one walks every group
    cache.begin(str(site))
    assert not (site / cache.FILE).exists()
    keys = state.change(5)
    views = state.views(NOW)
    render(site, views, now=NOW, changed=keys)
    _same_as_full(tmp_path, site, views, NOW)
    # a caller that left out a key whose verdict moved: its part is not taken on trust
    key = next(k for k, r in state.records.items() if r.seen and r.status is Status.UNKWN)
    r = state.records[key]
    state.records[key] = built_record(r.group, Status.GOOD, 999, {}, last_seen=NOW)
    views = state.views(NOW)
    render(site, views, now=NOW, changed={"nothing/else/changed/really"})
    v0 = json.loads((site / "debian/api/v0/pkgs/list").read_text())
    assert {p["status"] for p in v0 if p["name"] == r.group.name} == {"GOOD"}


def test_other_templates_make_an_incremental_render_a_full_one(tmp_path: Path) -> None:
    """After an upgrade (other code or templates) the pages of groups nobody changed are not
    as the new code makes them: a render given ``changed`` redoes every page. The override
    directory stands in for an upgraded package's templates (the same digest covers both)."""
    from rebuilder.site import html

    site, mine = tmp_path / "site", tmp_path / "templates"
    mine.mkdir()
    state = State(site, 40, random.Random(5))
    views = state.views(NOW)
    render(site, views, now=NOW, templates=mine)
    page = next(site.glob("p/debian-main/*/*/*/pkg/pkg000.html"))
    group = (html.DEFAULT_TEMPLATES / "group.html").read_text()
    (mine / "group.html").write_text(group.replace("{% block main %}", "{% block main %}UPGRADED"))
    stats = render(site, views, now=NOW, changed=set(), templates=mine)
    assert stats.skipped == 0 and "UPGRADED" in page.read_text()
    # the next render of nothing changed is incremental again, and does nothing
    quiet = render(site, views, now=NOW, changed=set(), templates=mine)
    assert (quiet.written, quiet.skipped) == (0, sum(len(v.records) for v in views))


def test_rebuilds_that_keep_every_place_redo_only_their_own_v1_pages(
    tmp_path: Path, monkeypatch
) -> None:
    """Rebuilds move no package: every v1 id stays, so only the by-name pages of the
    rebuilt groups' packages are made again, and the site is still a full render's
    (a group in both profiles, and a package name two groups share, among them)."""
    site = tmp_path / "site"
    state = State(site, 120, random.Random(11))
    for name, version in (("pkg001", "1.0-1"), ("other", "2.0-1")):  # "shared": in two groups
        g = site_group(name, version, bins=(name, "shared"))
        state.records[g.key] = GroupRecord(g, Status.UNKWN, [], first_seen=NOW, last_seen=NOW)
    now = NOW
    render(site, state.views(now), now=now)
    keys = {k for k, r in state.records.items() if r.group.name in ("pkg001", "pkg050")}
    for key in keys:  # pkg001 is in both profiles
        r = state.records[key]
        status = Status.BAD if r.status is Status.GOOD else Status.GOOD
        state.records[key] = replace(
            r, status=status, attempts=[*r.attempts, state._build(r.group, status)]
        )
    asked = _count_by_name(monkeypatch)
    views = state.views(now)
    render(site, views, now=now, changed=keys)
    rebuilt = {a.name for k in keys for a in state.records[k].group.artifacts}
    assert set(asked) == rebuilt  # "shared" too: its rows changed, so its page may
    monkeypatch.undo()
    _same_as_full(tmp_path, site, views, now)


def test_new_and_gone_packages_redo_only_their_own_v1_pages(tmp_path: Path, monkeypatch) -> None:
    """A package's v1 id comes from the package alone: packages new to the archive and
    gone from it (sorting before most others) move no other package's id, so only their
    own by-name pages are made or removed, and the site is still a full render's."""
    site = tmp_path / "site"
    state = State(site, 120, random.Random(13))
    now = NOW
    render(site, state.views(now), now=now)
    ids = _v1_ids(site)
    gone = sorted(k for k, r in state.records.items() if r.group.name.startswith("pkg00"))[:2]
    left = {a.name for k in gone for a in state.records[k].group.artifacts}
    for key in gone:
        del state.records[key]
    new = {state.add("aaa-new"), state.add("pkg000a")}  # first in name order, and early
    asked = _count_by_name(monkeypatch)
    views = state.views(now)
    render(site, views, now=now, changed=new | set(gone))
    added = {a.name for k in new for a in state.records[k].group.artifacts}
    assert set(asked) == added | left  # made, and removed: no page of a package kept
    monkeypatch.undo()
    after = _v1_ids(site)
    kept = ids.keys() & after.keys()
    assert len(kept) >= len(ids) - 4 and all(after[n] == ids[n] for n in kept)
    _same_as_full(tmp_path, site, views, now)


def _v1_ids(site: Path) -> dict[str, list[int]]:
    doc = json.loads((site / "debian/api/v1/packages/binary").read_bytes())
    out: dict[str, list[int]] = {}
    for r in doc["records"]:
        out.setdefault(r["name"], []).append(r["id"])
    return out


def _count_by_name(monkeypatch) -> list[str]:
    """The names whose v1 by-name files the render asks for, from now on."""
    asked: list[str] = []
    by_name = api_v1.paths.by_name

    def counted(name: str) -> tuple[str, str | None] | None:
        asked.append(name)
        return by_name(name)

    monkeypatch.setattr(api_v1.paths, "by_name", counted)
    return asked


def test_nothing_changed_reads_only_the_small_file_of_the_cache(tmp_path: Path) -> None:
    """A render told that nothing changed compares its inputs with the line that opens the
    cache's small file, and the next pass's (whose time alone moved) is made from that
    file: neither reads the parts, 100 MB at Debian's size. They are made garbage here: a
    render that read them would find no cache and make every page again."""
    site = tmp_path / "site"
    state = State(site, 40, random.Random(5))
    render(site, state.views(NOW), now=NOW)
    later = NOW + dt.timedelta(hours=1)
    keys = state.change(3)
    render(site, state.views(later), now=later, changed=keys)
    for name in (cache.FILE, cache.DELTA):
        if (site / name).exists():
            magic, head, _ = (site / name).read_bytes().split(b"\n", 2)
            (site / name).write_bytes(magic + b"\n" + head + b"\n" + b"\x00 not marshal data")
    views = state.views(later)
    quiet = render(site, views, now=later, changed=set())
    assert (quiet.written, quiet.unchanged, quiet.removed) == (0, 0, 0)
    assert quiet.skipped == sum(len(v.records) for v in views)
    garbage = {n: (site / n).read_bytes() for n in (cache.FILE, cache.DELTA) if (site / n).exists()}
    later = later + dt.timedelta(hours=1)
    nextpass = render(site, state.views(later), now=later, changed=set())
    assert nextpass.skipped == quiet.skipped and nextpass.written > 0  # the dashboard...
    assert {name: (site / name).read_bytes() for name in garbage} == garbage
    # a change: the parts are read, and found unreadable, so every group is walked and
    # every page made (the same bytes)
    keys = state.change(1)
    again = render(site, state.views(later), now=later, changed=keys)
    assert again.skipped == 0 and again.unchanged > 2 * len(state.records)
    _same_as_full(tmp_path, site, state.views(later), later)


def test_inputs_marshal_cannot_take_are_digested_the_same_way_each_time(tmp_path: Path) -> None:
    """The render's inputs are digested as marshal's bytes; a pass history of another
    mapping type than dict (which marshal refuses) is digested as JSON: a render of the
    same inputs is still skipped, and one of other inputs is not."""
    from types import MappingProxyType

    site = tmp_path / "site"
    state = State(site, 12, random.Random(8))

    def views(good: int) -> list[ProfileView]:
        point = MappingProxyType({"at": NOW.isoformat(), "counts": {"GOOD": good}})
        return [replace(v, history=[point]) for v in state.views(NOW)]

    render(site, views(3), now=NOW)
    same = render(site, views(3), now=NOW, changed=set())
    assert (same.written, same.unchanged) == (0, 0)
    assert same.skipped == sum(len(v.records) for v in views(3))
    other = render(site, views(4), now=NOW, changed=set())
    assert other.unchanged > 0  # the pages that move with the pass history were looked at


def test_the_next_pass_over_records_as_a_sync_leaves_them_redoes_no_package(
    tmp_path: Path, monkeypatch
) -> None:
    """A sync gives a group in the repository no ``last_seen`` (one line per change: no
    per-sync time on every record), so v1's ``last_seen`` of its packages is when it was
    first seen, not the render's time: the next pass, whose time alone moved, makes no
    package's by-name page again (82,000 at Debian's size), and its site is a full
    render's of that time."""
    site = tmp_path / "site"
    state = State(site, 60, random.Random(17))
    for key, r in state.records.items():
        # as apply_snapshot leaves them: seen since T0, no last_seen
        state.records[key] = replace(r, first_seen=T0, last_seen=None)
    render(site, state.views(NOW), now=NOW)
    shown = {r["last_seen"] for r in json.loads(_binary(site))["records"]}
    assert shown == {T0.isoformat()}

    later = NOW + dt.timedelta(hours=6)
    asked = _count_by_name(monkeypatch)
    render(site, state.views(later), now=later, changed=set())
    assert asked == []
    monkeypatch.undo()
    _same_as_full(tmp_path, site, state.views(later), later)


def _binary(site: Path) -> bytes:
    return (site / api_v1.paths.api_v1_base("debian") / "packages" / "binary").read_bytes()


def test_the_next_pass_walks_no_group_unless_a_part_shows_the_time(
    tmp_path: Path, monkeypatch
) -> None:
    """A render told that nothing changed, whose time, history and queue moved, makes the
    pages that move with them from the cache's small file (:mod:`rebuilder.site.quiet`),
    walking no group; the site is what a full render makes. A group whose v1 rows show
    the render's time (no ``first_seen`` or ``last_seen``) makes every render walk."""
    walked: list[str] = []
    walk_profile = site_render.walk.walk_profile

    def counted(out, cfg, view, *rest):
        walked.append(view.profile.name)
        return walk_profile(out, cfg, view, *rest)

    monkeypatch.setattr(site_render.walk, "walk_profile", counted)
    site = tmp_path / "site"
    state = State(site, 60, random.Random(11))
    jobs = [Job("debian-main", state.records[k].group, "new") for k in sorted(state.records)]
    render(site, state.views(NOW, jobs[:5]), now=NOW)
    assert cache.load(str(site)).summary is not None and walked
    now = NOW
    for n in range(2):
        now += dt.timedelta(hours=1)
        state.history.append(history_point(now, state.records.values()))
        views = state.views(now, jobs[n : n + 7])
        walked.clear()
        stats = render(site, views, now=now, changed=set())
        assert walked == [] and stats.written > 0, n  # the dashboard, the feeds, the queue...
        _same_as_full(tmp_path, site, views, now)
    # a caller that forgot a key whose verdict moved: a walk (whose parts' tokens catch
    # it too), not the last walk's counts
    key = sorted(state.records)[1]
    r = state.records[key]
    bad = [*r.attempts, state._build(r.group, Status.BAD)]
    state.records[key] = replace(r, status=Status.BAD, attempts=bad)
    now += dt.timedelta(hours=1)
    walked.clear()
    render(site, state.views(now), now=now, changed=set())
    assert walked == ["debian-main", "debian-part"]
    render(site, state.views(now), now=now, changed={key})  # (its own pages: the caller's)
    key = sorted(state.records)[0]
    state.records[key] = replace(state.records[key], first_seen=None, last_seen=None)
    now += dt.timedelta(hours=1)
    render(site, state.views(now), now=now, changed={key})
    assert cache.load(str(site)).summary is None
    now += dt.timedelta(hours=1)
    walked.clear()
    render(site, state.views(now), now=now, changed=set())
    assert walked == ["debian-main", "debian-part"]
    _same_as_full(tmp_path, site, state.views(now), now)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "other shapes"])
def test_a_damaged_small_file_or_memo_costs_a_walk_not_the_site(tmp_path: Path, damage) -> None:
    """The cache's small files are read without trust: unreadable, cut short, or of
    another shape, the render walks the groups and encodes the queue anew."""
    site = tmp_path / "site"
    state = State(site, 30, random.Random(3))
    jobs = [Job("debian-main", state.records[k].group, "new") for k in sorted(state.records)]
    render(site, state.views(NOW, jobs[:4]), now=NOW)
    for name in (cache.QUIET, cache.QUEUE):
        data = (site / name).read_bytes()
        magic, head, _ = data.split(b"\n", 2)
        if damage == "garbage":
            data = magic + b"\n" + head + b"\n" + b"\x00 not marshal data"
        elif damage == "truncated":
            data = data[: len(data) // 2]
        else:  # well-formed marshal data that is not what the render wrote
            data = magic + b"\n" + head + b"\n" + marshal.dumps({"profiles": [1], "v0": 2})
        (site / name).write_bytes(data)
    later = NOW + dt.timedelta(hours=1)
    views = state.views(later, jobs[1:5])
    render(site, views, now=later, changed=set())
    _same_as_full(tmp_path, site, views, later)


@pytest.mark.parametrize("damage", ["gone", "truncated", "another file's", "under the render"])
def test_the_parts_blobs_are_read_from_their_own_file_and_only_those_needed(
    tmp_path: Path, monkeypatch, damage: str
) -> None:
    """The v0 lines and v1 rows of each part (60 % of the cache) are in a file of their
    own: a small render reads those of the groups it redoes, one by one, and leaves the file
    as it is. One that is not what the cache file names costs a walk of every group, never
    a wrong list; one that changes under a render stops it with one line, and the next
    render walks every group."""
    monkeypatch.setattr(cache, "REWRITE_SHARE", 10.0)  # (a few hundred groups: all change)
    site = tmp_path / "site"
    state = State(site, 80, random.Random(5))
    render(site, state.views(NOW), now=NOW)
    blobs = (site / cache.BLOBS).stat()
    read: list[int] = []
    monkeypatch.setattr(cache.Blobs, "read", _counted(cache.Blobs.read, read))
    keys = state.change(3)
    render(site, state.views(NOW), now=NOW, changed=keys)
    assert 0 < len(read) <= 2 * len(keys)  # (the v0 lines and v1 rows of those redone)
    assert (site / cache.BLOBS).stat().st_ino == blobs.st_ino  # a delta beside the cache
    last = cache.load(str(site))
    numbered = [p for by_key in last.parts.values() for p in by_key.values() if type(p[4]) is int]
    assert len(numbered) > 60  # (the groups not redone since the whole file was written)
    _same_as_full(tmp_path, site, state.views(NOW), NOW)
    data = (site / cache.BLOBS).read_bytes()
    if damage == "gone":
        (site / cache.BLOBS).unlink()
    elif damage == "truncated":
        (site / cache.BLOBS).write_bytes(data[: len(data) - 10])
    elif damage == "another file's":
        (site / cache.BLOBS).write_bytes(data.replace(data.split(b"\n")[1][:8], b"0" * 8, 1))
    else:  # replaced after the render read the cache file, before it read a blob
        real = cache.load

        def load(root: str) -> cache.RenderCache:
            found = real(root)
            (site / cache.BLOBS).write_bytes(data.replace(data.split(b"\n")[1][:8], b"0" * 8, 1))
            return found

        monkeypatch.setattr(cache, "load", load)
        keys = state.change(3)
        with pytest.raises(SiteError, match=r"^\.render-cache\.blobs: the render cache cannot"):
            render(site, state.views(NOW), now=NOW, changed=keys)
        monkeypatch.setattr(cache, "load", real)
        assert cache.load(str(site)).parts == {}  # (set aside: the next render walks all)
    read.clear()
    keys = state.change(3)
    render(site, state.views(NOW), now=NOW, changed=keys)
    assert not read  # every group walked: no blob of the last render read
    _same_as_full(tmp_path, site, state.views(NOW), NOW)


def test_the_cache_keeps_in_its_blob_file_the_parts_v0_lines_and_v1_rows() -> None:
    # cache.py cannot import walk.py (which imports it): the fields are named there by place
    from rebuilder.site.walk import Part

    assert (Part._fields.index("lines"), Part._fields.index("v1")) == cache.BLOB_FIELDS


def _counted(fn, calls: list[int]):
    def counted(self, number: int) -> bytes:
        calls.append(number)
        return fn(self, number)

    return counted


def test_lists_made_anew_read_every_blob_from_the_whole_blob_file(tmp_path, monkeypatch) -> None:
    """A list that is not as the last render left it is made anew from every group's
    blob: past a few reads, the blob file is read once, whole, and each blob taken from it."""
    site = tmp_path / "site"
    state = State(site, 60, random.Random(8))
    render(site, state.views(NOW), now=NOW)
    monkeypatch.setattr(cache.Blobs, "READS_ALONE", 3)
    os.utime(site / "debian/api/v0/pkgs/list", ns=(1, 1))  # then the v0 lists are made anew
    keys = state.change(3)
    render(site, state.views(NOW), now=NOW, changed=keys)
    _same_as_full(tmp_path, site, state.views(NOW), NOW)


def test_after_a_restart_nothing_the_last_render_wrote_is_trusted(
    tmp_path: Path, monkeypatch
) -> None:
    """A system crash may leave a file the last render replaced empty (rebuilder._fs.swap_in
    does not make ext4 write it out first), and the cache would vouch for it: after the
    machine restarts, a render told that nothing changed redoes and checks every page."""
    site = tmp_path / "site"
    state = State(site, 30, random.Random(9))
    views = state.views(NOW)
    render(site, views, now=NOW)
    page = next(site.glob("p/debian-main/*/*/*/pkg/pkg001.html"))
    served = next(site.glob("debian/api/v0/builds/*/log"))
    whole = page.read_bytes(), served.read_bytes()
    for f in (page, served):  # what a crash soon after the render can leave
        f.write_bytes(b"")
        os.utime(f)
    quiet = render(site, views, now=NOW, changed=set())
    assert quiet.written == 0 and page.read_bytes() == b""  # the same boot: trusted
    monkeypatch.setattr(site_render._fs, "boot_id", lambda: "another-boot")
    stats = render(site, views, now=NOW, changed=set())
    assert stats.skipped == 0 and (page.read_bytes(), served.read_bytes()) == whole
    _same_as_full(tmp_path, site, views, NOW)


def test_only_the_search_shards_whose_entries_moved_are_made_again(
    tmp_path: Path, monkeypatch
) -> None:
    """Every render digests the index's shards; it makes (dumps) only those whose entries
    differ from what the last render made its file from, and a shard's file that is gone
    is made again."""
    from rebuilder.site import search

    monkeypatch.setattr(search, "LEAF", 20)  # many shards from a few hundred names
    site = tmp_path / "site"
    state = State(site, 200, random.Random(11))
    render(site, state.views(NOW), now=NOW)
    made: list[bytes] = []
    dump = search._dump

    def counted(doc: object) -> bytes:
        made.append(dump(doc))
        return made[-1]

    monkeypatch.setattr(search, "_dump", counted)
    shards = sorted((site / "search").glob("[0-9]*.json"))
    assert len(shards) > 20
    render(site, state.views(NOW), now=NOW, changed=set(state.records))  # every group redone
    assert made == [dump(json.loads((site / "search/index.json").read_bytes()))]  # the manifest
    made.clear()
    shards[3].unlink()
    key = next(k for k, r in state.records.items() if r.seen and r.status is not Status.GOOD)
    r = state.records[key]
    state.records[key] = built_record(r.group, Status.GOOD, 999, {}, last_seen=NOW)
    views = state.views(NOW)
    render(site, views, now=NOW, changed={key})
    moved = {d: json.loads(d)["e"] for d in made if json.loads(d).keys() == {"e"}}
    names = {r.group.name, *(a.name for a in r.group.artifacts)}
    assert [r.group.name, r.group.version, "GOOD"] in [e[:3] for es in moved.values() for e in es]
    lost = moved.pop(shards[3].read_bytes())  # the file that was lost is made again
    # the others: those of the group's names, and of maintainers (their BAD/FAIL counts)
    assert all(any(e[0] in names or e[3] == search.MAINTAINER for e in es) for es in moved.values())
    assert lost and len(moved) + 1 < len(shards) / 2, (len(moved), len(shards))
    _same_as_full(tmp_path, site, views, NOW)


def test_what_the_render_built_is_freed_after_it_and_what_it_was_given_is_left(
    tmp_path: Path, monkeypatch
) -> None:
    """The render returns before what it built is freed (a thread frees it, see
    rebuilder._gc); the records, views and keys it was given stay whole."""
    freed: list[int] = []
    real = _gc._take_apart

    def counted(objects: list[object]) -> None:
        freed.append(len(objects))
        real(objects)

    monkeypatch.setattr(_gc, "_take_apart", counted)
    site = tmp_path / "site"
    state = State(site, 120, random.Random(3))
    render(site, state.views(NOW), now=NOW)
    keys = state.change(10)
    views = state.views(NOW)
    given = (sorted(keys), dict(views[0].records), list(views[0].history))
    render(site, views, now=NOW, changed=keys)
    _gc.wait_freed()
    assert freed and all(freed)  # each render left its objects to the thread
    assert (sorted(keys), dict(views[0].records), list(views[0].history)) == given
    assert len(keys) >= 10
    _same_as_full(tmp_path, site, views, NOW)


def test_a_suite_new_to_the_search_index_before_the_others_renumbers_theirs(
    tmp_path: Path,
) -> None:
    # the search entries kept in the cache carry their suite's number in the index: a suite
    # that comes before the others (in the walk's order) moves every other suite's number
    site = tmp_path / "site"
    state = State(site, 40, random.Random(3))
    render(site, state.views(NOW), now=NOW)
    first = site_group("aardvark", component="a-first", maintainers=("M1 <m1@example.org>",))
    state.records[first.key] = GroupRecord(first, Status.UNKWN, [], first_seen=NOW, last_seen=NOW)
    other = max(state.records)  # (a group of the last suite, rebuilt in the second round)
    for round_ in range(2):
        changed = {first.key} if round_ == 0 else {other}
        if round_:
            r = state.records[other]
            attempts = [*r.attempts, state._build(r.group, Status.GOOD)]
            state.records[other] = replace(r, status=Status.GOOD, attempts=attempts)
        render(site, state.views(NOW), now=NOW, changed=changed)
        _same_as_full(tmp_path, site, state.views(NOW), NOW)
        manifest = json.loads((site / "search/index.json").read_text())
        assert manifest["suites"][0][1] == "bookworm/a-first/amd64"
    del state.records[first.key]  # and gone again: the others move back
    render(site, state.views(NOW), now=NOW, changed={first.key})
    _same_as_full(tmp_path, site, state.views(NOW), NOW)


def test_a_change_that_moves_no_status_leaves_its_maintainers_feeds_unmade(
    tmp_path: Path, monkeypatch
) -> None:
    """A rebuild with the same verdict changes its maintainer's page (the row's build) but
    no entry of their feeds: the feeds are not made again (Output.write_made). A new
    verdict is a new entry: they are."""
    site = tmp_path / "site"
    state = State(site, 40, random.Random(3))
    render(site, state.views(NOW), now=NOW)
    made: list[str] = []
    atom = feeds.atom

    def counted(*args, **kwargs):
        made.append(kwargs["feed"])
        return atom(*args, **kwargs)

    monkeypatch.setattr(feeds, "atom", counted)
    key, r = next((k, r) for k, r in sorted(state.records.items()) if r.status is Status.GOOD)
    mine = {paths.maintainer_feed(html.maintainer_key(m), ".atom") for m in r.group.maintainers}
    page = site / paths.maintainer_page(html.maintainer_key(r.group.maintainers[0]))
    before = page.read_bytes()
    for verdict, remade in ((Status.GOOD, False), (Status.BAD, True)):
        made.clear()
        r = state.records[key]
        attempts = [*r.attempts, state._build(r.group, verdict)]
        state.records[key] = replace(r, status=verdict, attempts=attempts)
        render(site, state.views(NOW), now=NOW, changed={key})
        assert bool(mine & set(made)) is remade, verdict
        assert page.read_bytes() != before  # (the page itself is made again)
        before = page.read_bytes()
        _same_as_full(tmp_path, site, state.views(NOW), NOW)
