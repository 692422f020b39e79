"""Benchmark the site renderer on a Debian-sized state and print its figures.

Synthesizes one profile with 45,000 build groups (~78,000 artifacts; GOOD,
BAD, FAIL and UNKWN mixed; attempts with gzip'd logs, diffoscope reports and
attestations in the results store), then times:

1. a full render into an empty site directory;
2. a second render of the same state (every page re-rendered, nothing written);
3. a second render told that nothing changed (``changed=set()``);
4. the next pass's render, nothing changed but its time and pass history (``changed=set()``);
5. a render after changing 100 records, told which (``changed=<100 keys>``), for each of
   ``--rounds`` passes one after the other (the row is their median);
6. a render after 100 changes of every kind a Debian pass makes (new packages, packages
   gone, new versions, rebuilds), told which, as many times;
7. a change rendered without a change-set (full render).

Then it weighs the dashboard (and what it loads) gzip'd, and the search index;
with ``--browser`` it types queries into the dashboard's search box in
headless Chromium and prints the time from key to results.

Under each render, the driver's time by phase (``RenderStats.phases``), and the time the
render took to return after its last phase, then the time a thread took to free what it
built (rebuilder._gc: the render returns before that is done). Each row is printed
as a ratio to its floor measured in the same run: the full render to the time of writing
the same files, the incremental ones to the full render and to the time the driver took to
make the changed groups' own pages (the issue's floor for them).
Targets (issue 14): full < 30 s and <= 3x its floor, after 100 changes <= 5 % of the
full render, nothing changed <= 2 %, dashboard and what it loads < 200 KB compressed,
search answers well under a second.

    python bench/render.py [--groups 45000] [--rounds 5] [--dir DIR] [--keep] [--browser]
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import gzip
import hashlib
import json
import os
import platform
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rebuilder import _gc, plan
from rebuilder.config import Profile, Release, Settings
from rebuilder.model import (
    Artifact,
    ArtifactResult,
    Attempt,
    BuildGroup,
    GroupRecord,
    Status,
)
from rebuilder.pipeline import policies
from rebuilder.site import ProfileView, RenderStats, cache, render
from rebuilder.state import history_point

T0 = dt.datetime(2024, 1, 1)
CAUSES = ("captures_build_path", "timestamps_in_gzip_headers", "toolchain_drift",
          "build_id_differences_only", "unknown", "captures_build_path")  # fmt: skip
LOG = b"".join(b"I: step %d of the build, some output here\n" % i for i in range(200))


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _store(site: Path, rel: str, data: bytes) -> None:
    path = site / "builds" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, compresslevel=1, mtime=0))


def synthesize(site: Path, n_groups: int, rng: random.Random) -> dict[str, GroupRecord]:
    """One Debian-like profile: ~1.73 artifacts per group, a realistic mix of verdicts;
    records as a sync leaves groups in the repository (a first_seen, no last_seen)."""
    records: dict[str, GroupRecord] = {}
    build_id = 0
    for i in range(n_groups):
        name = f"pkg{i:05d}-{rng.choice(['lib', 'python3', 'golang', 'node', 'x'])}"
        g = _group(name, i, rng)
        status = rng.choices(list(Status), [80, 8, 5, 7])[0]
        attempts = []
        if status is not Status.UNKWN:
            for k in range(rng.choice([1, 1, 1, 2])):
                build_id += 1
                attempts.append(_attempt(site, g, build_id, status, k))
        records[g.key] = GroupRecord(g, status, attempts, first_seen=T0)
    return records


def _group(name: str, i: int, rng: random.Random, version: str = "") -> BuildGroup:
    version = version or (
        f"{rng.randint(0, 3)}:{rng.randint(1, 40)}.{rng.randint(0, 9)}-{rng.randint(1, 5)}"
    )
    component = rng.choices(["main", "contrib", "non-free"], [90, 5, 5])[0]
    arch = rng.choices(["amd64", "all"], [70, 30])[0]
    n_art = rng.choices([1, 2, 3, 4, 6], [55, 25, 10, 6, 4])[0]
    arts = tuple(
        Artifact(
            f"{name}-{j}" if j else name,
            version,
            arch,
            f"https://mirror.example/debian/pool/{component}/{name}_{version}_{j}.deb",
            _sha(f"{name}{j}"),
            1000 + j,
        )
        for j in range(n_art)
    )
    return BuildGroup(
        name,
        version,
        "debian",
        "trixie",
        component,
        arch,
        f"https://mirror.example/buildinfo/{name}_{version}.buildinfo",
        arts,
        maintainers=(f"Maintainer {i % 997} <m{i % 997}@example.org>",),
        method="debrebuild",
    )


def _attempt(site: Path, g: BuildGroup, build_id: int, status: Status, k: int) -> Attempt:
    files = {"log": f"{build_id}/log.gz"}
    _store(site, files["log"], LOG)
    if status is Status.BAD:
        files["diffoscope"] = f"{build_id}/diffoscope.txt.gz"
        _store(site, files["diffoscope"], b"--- a\n+++ b\n" * 50)
    if status is Status.GOOD:
        files["attestation"] = f"{build_id}/attestation.json.gz"
        _store(site, files["attestation"], b'{"_type": "https://in-toto.io/Statement/v1"}')
    results = tuple(
        ArtifactResult(a.name, a.filename, a.sha256, a.sha256 if status is Status.GOOD else None)
        for a in g.artifacts
    )
    started = T0 + dt.timedelta(minutes=build_id)
    # a BAD build is classified: one cause, a few kinds, some more common than others
    found = (CAUSES[build_id * build_id % len(CAUSES)],) if status is Status.BAD else ()
    return Attempt(
        build_id,
        g.version,
        status,
        started,
        120.0 + k,
        "debian",
        "new",
        g.inputs_digest,
        results,
        files,
        causes=found,
    )


def change(site: Path, records: dict[str, GroupRecord], n: int, rng: random.Random) -> set[str]:
    """Give ``n`` records a new attempt (a fresh verdict), as one pass would."""
    keys = rng.sample(sorted(records), n)
    next_id = 1 + max((a.build_id for r in records.values() for a in r.attempts), default=0)
    for i, key in enumerate(keys):
        r = records[key]
        status = rng.choice([Status.GOOD, Status.BAD, Status.FAIL])
        attempt = _attempt(site, r.group, next_id + i, status, 0)
        records[key] = GroupRecord(r.group, status, [*r.attempts, attempt], first_seen=T0)
    return set(keys)


def change_every_kind(
    site: Path, records: dict[str, GroupRecord], n: int, rng: random.Random
) -> set[str]:
    """``n`` changes as a Debian pass makes them, a quarter of each kind: packages new to
    the archive, packages gone from it, new versions (not yet rebuilt) and rebuilds."""
    keys = set(change(site, records, n // 4, rng))
    for key in rng.sample(sorted(records.keys() - keys), n // 4):
        del records[key]
        keys.add(key)
    for key in rng.sample(sorted(records.keys() - keys), n // 4):
        r = records[key]
        g = _group(r.group.name, rng.randrange(997), rng, r.group.version + "+b1")
        del records[key]
        records[g.key] = GroupRecord(g, Status.UNKWN, [], first_seen=T0)
        keys.update((key, g.key))
    for _ in range(n - 3 * (n // 4)):
        name = f"pkg{rng.randrange(len(records)):05d}-new{rng.randrange(10**6)}"  # anywhere
        g = _group(name, rng.randrange(997), rng)
        records[g.key] = GroupRecord(g, Status.UNKWN, [], first_seen=T0)
        keys.add(g.key)
    return keys


NOW = dt.datetime(2024, 6, 1)  # the synthesized state's "now"
PROFILE = Profile("debian-trixie", "debian", (Release("trixie", "https://mirror.example/d"),))


def views(
    records: dict[str, GroupRecord], history: list[dict], when: dt.datetime
) -> list[ProfileView]:
    """The bench's one profile as a pass renders it: with the queue it publishes (the
    groups not built yet, the retries due), planned before the render is timed, as the
    pass does."""
    jobs = plan.plan({PROFILE.name: records}, when, policies(Settings()))
    return [ProfileView(PROFILE, records, len(jobs), when, history, jobs)]


def _history(records: dict[str, GroupRecord], now: dt.datetime) -> list[dict]:
    """A year of daily passes, GOOD growing towards today's counts (as the state keeps them)."""
    last = history_point(now, records.values())
    out = []
    for day in range(365, 0, -1):
        f = 1 - day / 730
        counts = {s: int(n * f) if s == "GOOD" else n for s, n in last["counts"].items()}
        suites = {k: {s: int(n * f) for s, n in v.items()} for k, v in last["suites"].items()}
        found = {c: int(n * (1.5 - f)) for c, n in last.get("causes", {}).items()}
        at = (now - dt.timedelta(days=day)).isoformat()
        out.append({"at": at, "counts": counts, "suites": suites, "causes": found})
    return [*out, last]


def _gz(path: Path) -> int:
    return len(gzip.compress(path.read_bytes(), compresslevel=6))


# what the dashboard loads before anyone types (the search index comes on the first key)
DASHBOARD = ["index.html", "static/style.css", "static/search.js", "static/favicon.svg"]


def weigh_dashboard(site: Path) -> None:
    """The dashboard and what it loads, gzip'd (as a web server would send them)."""
    files = [site / f for f in DASHBOARD] + sorted((site / "badges").glob("*.svg"))
    raw = sum(f.stat().st_size for f in files)
    packed = sum(_gz(f) for f in files)
    first = _gz(site / "search/index.json")
    print(
        f"dashboard + css + js + icons: {raw / 1024:.0f} KiB, {packed / 1024:.1f} KiB gzip'd "
        f"(+ {first / 1024:.1f} KiB search manifest on the first key)"
    )


def weigh_search(site: Path) -> None:
    """Sizes of the search index: what one keystroke can fetch."""
    shards = sorted((site / "search").glob("[0-9]*.json"), key=lambda p: p.stat().st_size)
    manifest = json.loads((site / "search/index.json").read_text())
    sizes = [_gz(p) for p in shards]
    entries = sum(n for _, n, leaf in manifest["nodes"].values() if leaf)
    print(
        f"search: {entries} names, {len(shards)} shards, manifest "
        f"{_gz(site / 'search/index.json') / 1024:.1f} KiB gzip'd, shards gzip'd: median "
        f"{sizes[len(sizes) // 2] / 1024:.1f} KiB, largest {max(sizes) / 1024:.1f} KiB"
    )


def time_search(site: Path, work: Path, queries: list[str]) -> None:
    """Type each query a key at a time in headless Chromium; ms from key to results shown."""
    from tests.fixtures import browser

    why = browser.missing()
    if why:
        print(f"search latency: not measured ({why})")
        return
    with browser.serve(site) as base, browser.chromium(work / "chromium") as driver:
        for q in queries:
            driver.get(f"{base}/index.html")  # a fresh page: the manifest is fetched again
            ms = browser.type_query(driver, q)
            print(
                f"search latency typing {q!r}: first key {ms[0]:.0f} ms (manifest + shard), "
                f"then median {sorted(ms[1:])[len(ms[1:]) // 2]:.1f} ms, max {max(ms[1:]):.1f} ms"
            )


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the render's workers)."""
    own, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


_SECONDS: dict[str, float] = {}


def _settle(where: Path | None = None) -> None:
    """Have the kernel write out what the last step wrote before the next is timed: a
    full render leaves gigabytes to write back, which the renders timed right after it
    would otherwise compete with (a pass's render comes an hour after the last one).
    With ``where``, also wait for the discards of its device to end: a file system mounted
    with ``discard`` tells the disk of every block freed, and files created while the
    last run's gigabytes are still being discarded compete with that for the disk and
    its journal."""
    os.sync()
    if where is not None:
        _discards_done(where)


def _discards_done(where: Path, most: float = 300.0) -> None:
    """Wait (at most ``most`` seconds) until the device holding ``where`` has discarded
    nothing for two seconds; quietly not where its counters cannot be read."""
    dev = os.stat(where).st_dev
    stat = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}/stat")

    def discarded() -> int | None:
        try:
            return int(stat.read_text().split()[13])  # (sectors discarded, Linux >= 4.18)
        except (OSError, IndexError, ValueError):
            return None

    began, last, quiet = time.monotonic(), discarded(), 0
    while last is not None and quiet < 2 and time.monotonic() - began < most:
        time.sleep(1)
        now = discarded()
        quiet = quiet + 1 if now == last else 0
        last = now
    if time.monotonic() - began > 3:
        print(f"(waited {time.monotonic() - began:.0f} s for the disk's discards)", flush=True)


def write_floor(site: Path, dest: Path) -> float:
    """Seconds to write the rendered site's files (same bytes, same tree) to ``dest``, the
    least a full render can cost; ``builds/`` (the results store) is not the renderer's."""
    files = [
        p for p in site.rglob("*") if p.is_file() and "builds" not in p.relative_to(site).parts[:1]
    ]
    blobs = [(str(dest / p.relative_to(site)), p.read_bytes()) for p in files]
    folders = sorted({os.path.dirname(path) for path, _ in blobs})
    _settle(site)
    t = time.perf_counter()  # the least it takes: each folder made once, plain descriptors
    for folder in folders:
        os.makedirs(folder, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    for path, data in blobs:
        fd = os.open(path, flags, 0o644)
        os.write(fd, data)
        os.close(fd)
    return time.perf_counter() - t


def _timed(label: str, fn) -> RenderStats:
    _settle()
    t, cpu = time.perf_counter(), _cpu()
    stats = fn()
    secs = time.perf_counter() - t
    _gc.wait_freed()  # (a thread frees what the render built once it has returned)
    freed, cpu = time.perf_counter() - t - secs, _cpu() - cpu
    _SECONDS[label] = secs
    print(
        f"{label:<48} {secs:6.2f} s (cpu {cpu:5.2f})  written {stats.written:>6}  "
        f"unchanged {stats.unchanged:>6}  removed {stats.removed:>4}  skipped {stats.skipped:>5}",
        flush=True,
    )
    if stats.phases:  # the driver's time by phase; then what returning and freeing took
        laps = [f"{k} {v:.2f}" for k, v in stats.phases.items()]
        laps.append(f"after it returned {max(0.0, secs - stats.seconds):.2f}")
        laps.append(f"freed after it {freed:.2f}")
        print(f"{'':<4}{' · '.join(laps)}", flush=True)
    return stats


def _share(seconds: list[float], full: float) -> str:
    """The median of renders as a share of the full render, with their range."""
    mid = statistics.median(seconds)
    spread = f" ({100 * min(seconds) / full:.1f}-{100 * max(seconds) / full:.1f} %)"
    return f"{100 * mid / full:.1f} %" + (spread if len(seconds) > 1 else "")


def interpreter() -> str:
    """Which Python runs the bench: the same code renders some 30 % faster in a build with
    profile-guided and link-time optimization, as distributions ship, than in a plain
    build from source (docs/site.md, session 26), so figures are of an interpreter too."""
    return f"{platform.python_version()} ({os.path.realpath(sys.executable)})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--groups", type=int, default=45_000)
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--dir", type=Path, default=None, help="work directory (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument(
        "--rounds", type=int, default=5, help="passes of changes timed, each kind (the median)"
    )
    ap.add_argument(
        "--browser", action="store_true", help="time the search in headless Chromium too"
    )
    args = ap.parse_args()
    print(f"python: {interpreter()}", flush=True)
    rng = random.Random(args.seed)
    work = args.dir or Path(tempfile.mkdtemp(prefix="site-bench-"))
    site = work / "site"
    try:
        t = time.perf_counter()
        records = synthesize(site, args.groups, rng)
        n_art = sum(len(r.group.artifacts) for r in records.values())
        print(
            f"synthesized {len(records)} groups, {n_art} artifacts, "
            f"{sum(len(r.attempts) for r in records.values())} attempts "
            f"in {time.perf_counter() - t:.1f} s",
            flush=True,
        )
        now = NOW
        history = _history(records, now)

        def view(when: dt.datetime = now) -> list[ProfileView]:
            return views(records, history, when)

        v = view()
        _settle(site)  # (and the files this run or the last removed: see _discards_done)
        _timed("full render (empty site)", lambda: render(site, v, now=now))
        _timed("second render, no change, no change-set", lambda: render(site, v, now=now))
        _timed("second render, changed=set()", lambda: render(site, v, now=now, changed=set()))
        later = now + dt.timedelta(days=1)  # a new pass that changed nothing: a new
        history.append(history_point(later, records.values()))  # "now" and history point
        v = view(later)
        _timed(
            "next pass, nothing changed, changed=set()",
            lambda: render(site, v, now=later, changed=set()),
        )
        history.pop()

        group_pages: list[float] = []  # the driver's phase that makes the changed groups'

        def passes(label: str, make: Callable[[], set[str]]) -> list[float]:
            """``--rounds`` passes one after the other, each timed alone: a single render
            moves by up to a second with the load of other work here, so a row is their
            median."""
            seconds = []
            for i in range(1, args.rounds + 1):
                keys = make()
                v = view()
                run = functools.partial(render, site, v, now=now, changed=keys)
                stats = _timed(f"{label} #{i}", run)
                group_pages.append(stats.phases.get("group pages", 0))
                seconds.append(_SECONDS[f"{label} #{i}"])
            return seconds

        n = args.changes
        incr = passes(
            f"after {n} changes, changed=<{n} keys>",
            functools.partial(change, site, records, n, rng),
        )
        every = passes(
            f"after {n} changes of every kind, changed=<keys>",
            functools.partial(change_every_kind, site, records, n, rng),
        )
        change_full = change(site, records, args.changes, rng)
        assert change_full
        v = view()
        _timed(
            f"after {args.changes} more changes, no change-set", lambda: render(site, v, now=now)
        )
        full = _SECONDS["full render (empty site)"]
        floor = write_floor(site, work / "floor")
        print(f"floor (writing the same files): {floor:.2f} s; full render / floor "
              f"{full / floor:.1f}x (target <= 3x, and < 30 s)")  # fmt: skip
        quiet = _SECONDS["second render, changed=set()"]
        nextpass = _SECONDS["next pass, nothing changed, changed=set()"]
        print(f"after {args.changes} changes / full: {_share(incr, full)} (target <= 5 %); "
              f"of every kind (new, gone, new version, rebuilt): {_share(every, full)}; "
              f"nothing changed / full: {100 * quiet / full:.1f} % (target <= 2 %); "
              f"next pass, nothing changed / full: {100 * nextpass / full:.1f} %")  # fmt: skip
        own = statistics.median(group_pages)  # the issue's floor: the changed groups' pages
        print(f"after {args.changes} changes / its group pages ({own:.2f} s, the driver's "
              f"phase): {statistics.median(incr) / own:.1f}x")  # fmt: skip
        cached = site / cache.FILE
        if cached.exists():
            sizes = "; ".join(
                f"{name}: {(site / name).stat().st_size / 1e6:.2f} MB"
                for name in (cache.BLOBS, cache.QUEUE, cache.QUIET) if (site / name).exists()
            )  # fmt: skip
            print(f"render cache ({cache.FILE}): {cached.stat().st_size / 1e6:.1f} MB; {sizes}")
        pages = sum(1 for _ in (site / "p").rglob("*"))
        print(f"files and folders under p/: {pages}")
        print(f"pkgs/list: {(site / 'debian/api/v0/pkgs/list').stat().st_size / 1e6:.1f} MB")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print(f"peak RSS: {rss / 1024:.0f} MiB")
        weigh_dashboard(site)
        weigh_search(site)
        if args.browser:
            names = sorted(r.group.name for r in records.values())
            time_search(site, work, [rng.choice(names), rng.choice(names)[:4]])
    finally:
        if not args.keep and args.dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
