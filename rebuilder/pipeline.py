"""One pass: sync → plan → build → record → render → commit.

This is the only module that knows every stage; each stage is a function
from the previous one's value to the next, and meets the others only in
:mod:`rebuilder.model` types.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import gzip
import logging
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from rebuilder import attest, audit, fetch, oneoff, plan, shards, site, state, sync
from rebuilder.build import BuildContext, BuildPool, PoolSummary, run_build
from rebuilder.build.backends import check_backend, shipped_backend
from rebuilder.config import Config, Profile, Settings, check_method, resolve_paths
from rebuilder.errors import RebuilderError
from rebuilder.model import (
    Artifact,
    Attempt,
    BuildGroup,
    GroupRecord,
    Job,
    Snapshot,
    Status,
    format_time,
    utcnow,
)
from rebuilder.progress import Progress

log = logging.getLogger(__name__)

# default build method per distribution; another method selects backend "<distro>-<method>"
DEFAULT_METHOD = {"debian": "debrebuild"}


@dataclass(frozen=True, slots=True)
class PassOptions:
    profiles: Sequence[str] = ()
    jobs: int = 0  # 0: the config's (or the number of cores)
    max_builds: int | None = None  # None: no limit; 0: sync, plan, save and render only
    max_time: float | None = None  # seconds from the start of the pass
    commit: bool = True
    render: bool = True
    force_sync: bool = False
    executor: str = ""  # "" : the config's; "local" or dask://HOST:PORT, tls://HOST:PORT?...


@dataclass(slots=True)
class PassReport:
    """What one pass did; the CLI prints its summary line."""

    built: Counter[str] = field(default_factory=Counter)
    abandoned: int = 0
    queued: int = 0
    errors: list[str] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)  # "profile: key version: OLD -> NEW"
    tracked: dict[str, int] = field(default_factory=dict)  # groups of profiles new in the state
    changes: dict[str, state.SnapshotChanges] = field(default_factory=dict)
    commit: str | None = None
    site_index: Path | None = None
    interrupted: bool = False  # Ctrl-C: the running builds were stopped and stay queued

    def summary(self) -> str:
        built = sum(self.built.values())
        counts = ", ".join(f"{self.built[s.value]} {s.value}" for s in Status if s != Status.UNKWN)
        parts = [f"{built} built ({counts})", f"{self.queued} still queued"]
        if self.abandoned:
            when = "when interrupted" if self.interrupted else "at the time limit"
            parts.append(f"{self.abandoned} abandoned {when}")
        if self.errors:
            parts.append(f"{len(self.errors)} profile(s) failed to sync")
        return ("pass interrupted: " if self.interrupted else "pass done: ") + ", ".join(parts)


def policies(settings: Settings) -> plan.Policies:
    return plan.Policies(settings.retry_bad, settings.retry_fail)


# ------------------------------------------------------------------ stages on their own


def sync_only(config: Config, names: Sequence[str], *, force: bool = False) -> list[Snapshot]:
    """Sync the named profiles and fold the snapshots into the state (no builds)."""
    profiles = config.select(names)
    sd = config.settings.state_dir
    snaps = []
    with state.locked(sd):
        for p in profiles:
            st = state.load(sd, p.name, p.distro)
            snap = _sync(config.settings, p, st, force)
            changes = st.apply_snapshot(snap, utcnow())
            _log_changes(p.name, changes, snap)
            if st.dirty:
                state.save(sd, st)
            snaps.append(snap)
    return snaps


def snapshot(config: Config, names: Sequence[str]) -> list[Snapshot]:
    """Sync without touching the state (``sync --print-json``): always a full read."""
    return [
        sync.sync_profile(p, sync.SyncContext(_cache(config.settings, p), {}, force=True))
        for p in config.select(names)
    ]


def queue(config: Config, names: Sequence[str]) -> list[Job]:
    """What the next pass would build, in order, from the state as it is."""
    profiles = config.select(names)
    sd = config.settings.state_dir
    records = {p.name: state.load(sd, p.name, p.distro).records for p in profiles}
    return plan.plan(records, utcnow(), policies(config.settings))


def stale_profiles(config: Config, names: Sequence[str]) -> list[str]:
    """Profiles whose state predates the file that defines them (or that have none)."""
    out = []
    for p in config.select(names):
        st_file = state.state_path(config.settings.state_dir, p.name)
        try:
            defined = Path(p.origin).stat().st_mtime if p.origin else 0.0
            if not st_file.exists() or st_file.stat().st_mtime < defined:
                out.append(p.name)
        except OSError:
            out.append(p.name)
    return out


def render(
    config: Config,
    *,
    states: dict[str, state.ProfileState] | None = None,
    queue_length: dict[str, int] | None = None,
    incremental: bool = False,
) -> Path:
    """Render the site from the state of every configured profile; the index path.

    ``incremental`` re-renders only the group pages whose records ``states``
    changed in memory (the pass's own changes); everything else is full.
    """
    s = config.settings
    states = dict(states or {})
    views = []
    for p in config.profiles.values():
        st = states.get(p.name) or state.load(s.state_dir, p.name, p.distro)
        states[p.name] = st
        n = (queue_length or {}).get(p.name)
        if n is None:
            n = len(plan.plan({p.name: st.records}, utcnow(), policies(s)))
        last_run = state.last_run(s.state_dir, p.name)
        views.append(site.ProfileView(p, st.records, n, last_run, st.passes))
    changed = set().union(*(st.changed for st in states.values())) if incremental else None
    site.render(
        s.site_dir, views, changed=changed, public_keys=_public_keys(s), site_url=s.site_url
    )
    return s.site_dir / "index.html"


def _public_keys(s: Settings) -> list[str]:
    """The published signing key, when there is one (created by the first build)."""
    if not s.signing_key.exists():
        return []
    return [attest.public_key_pem(attest.load_signing_key(s.signing_key))]


def local_pkgs(config: Config) -> list[dict[str, object]]:
    """rebuilderd's v0 package list of every configured profile, from the local state,
    each entry with two more keys: ``source`` (its source package) and ``local_status``
    (the verdict as recorded: FAIL stays FAIL, where v0 says BAD)."""
    out: list[dict[str, object]] = []
    for p in config.profiles.values():
        st = state.load(config.settings.state_dir, p.name, p.distro)
        for key in sorted(st.records):
            rec = st.records[key]
            if rec.seen:
                extra = {"source": rec.group.name, "local_status": rec.status.value}
                out.extend({**d, **extra} for d in site.api_v0.pkg_releases(rec))
    return out


def status(config: Config, names: Sequence[str]) -> list[dict[str, object]]:
    """Counts per profile and status, queue length and last pass, from the state; and the
    pass running now, if any (its builds are not counted as queued)."""
    rows = []
    live = state.running_pass(config.settings.state_dir)
    for p in config.select(names):
        st = state.load(config.settings.state_dir, p.name, p.distro)
        queued = [j for j in queue_of(config, p, st) if not _is_running(live, j)]
        rows.append(
            {
                "profile": p.name,
                "distro": p.distro,
                "counts": st.counts(),
                "queue": len(queued),
                "last_pass": format_time(state.last_run(config.settings.state_dir, p.name)),
                "running": None if live is None else {
                    "pid": live.pid, "started": live.started,
                    "builds": [b for b in live.builds if b.get("profile") == p.name],
                },
            }
        )  # fmt: skip
    return rows


def queue_of(config: Config, p: Profile, st: state.ProfileState) -> list[Job]:
    return plan.plan({p.name: st.records}, utcnow(), policies(config.settings))


def _is_running(live: state.RunningPass | None, job: Job) -> bool:
    return live is not None and any(
        b.get("profile") == job.profile and b.get("key") == job.group.key for b in live.builds
    )


def waiting(config: Config, names: Sequence[str]) -> tuple[list[Job], state.RunningPass | None]:
    """The queue without the builds a running pass is doing now, and that pass (``queue ls``)."""
    live = state.running_pass(config.settings.state_dir)
    return [j for j in queue(config, names) if not _is_running(live, j)], live


def requeue(
    config: Config,
    names: Sequence[str],
    *,
    status: Sequence[Status] | None = None,
    name: str | None = None,
    reset: bool = False,
    commit: bool = True,
) -> int:
    """Mark matching groups to be built first in the next pass (``rebuild pkgs requeue``);
    the change is its own audit commit. The number of groups matched."""
    sd = config.settings.state_dir
    matched: list[str] = []
    files = []
    with state.locked(sd):
        for p in config.select(names):
            st = state.load(sd, p.name, p.distro)
            recs = plan.requeue(st.records.values(), status=status or (), name=name, reset=reset)
            if recs:
                st.dirty = True
                state.save(sd, st)
                files.append(state.state_path(sd, p.name))
                matched += [f"{p.name}: {r.group.key} {r.group.version}" for r in recs]
        if matched and commit:
            how = [f"--status {s.value}" for s in status or ()]
            how += [f"--name {name}"] * bool(name) + ["--reset"] * reset
            head = f"rebuilder requeue: {len(matched)} groups" + (f" ({' '.join(how)})" * bool(how))
            audit.commit(sd, files, head + "\n\n" + audit.bounded_list(matched))
    return len(matched)


def build_one(
    config: Config | None,
    distro: str,
    artifact_url: str,
    *,
    input_url: str | None = None,
    backends: dict[str, Path] | None = None,
    diffoscope: bool = False,
    method: str | None = None,
    release: str | None = None,
    keyring: str | None = None,
    check_valid_until: bool = True,
) -> tuple[Attempt, str]:
    """Rebuild one package outside any state (``rebuild build``); the attempt and its log.

    ``method`` suite-chroot (Debian) finds the source package in the mirror's ``release``
    (see :mod:`rebuilder.oneoff`); the backend caches base chroots in the cache dir.
    """
    s = config.settings if config else resolve_paths(Settings(), Path.cwd())
    if method is not None:
        check_method(
            Profile("build", distro, (), method=method, origin="rebuild build"),
            {**(config.backends if config else {}), **(backends or {})},
        )
    with tempfile.TemporaryDirectory(prefix="rebuild-one-") as tmp:
        tmpdir = Path(tmp)
        local = tmpdir / "published" / Path(urlsplit(artifact_url).path).name
        digest = fetch.download(artifact_url, local)
        artifact = artifact_from_file(distro, artifact_url, local, digest)
        if distro == "debian" and method == oneoff.SUITE_CHROOT:
            group = oneoff.suite_chroot_group(
                artifact, release, input_url, cache_dir=_cache(s, "build"), keyring=keyring,
                check_valid_until=check_valid_until, work=tmpdir,
            )  # fmt: skip
        else:
            # a Debian pool URL names its component (backends may need it: pool/<component>/...)
            pool = urlsplit(artifact_url).path.partition("/pool/")[2]
            component = pool.split("/", 1)[0] if "/" in pool else "direct"
            group = BuildGroup(
                name=artifact.name, version=artifact.version, distro=distro,
                release=release or "direct", component=component,
                architecture=artifact.architecture, input_url=input_url or artifact_url,
                artifacts=(artifact,), method=method or "",
            )  # fmt: skip
        job = Job("direct", group, "direct", build_id=1)
        name = backend_name(job)
        given = (backends or {}).get(name) or (config.backends.get(name) if config else None)
        ctx = BuildContext(
            backend=check_backend(given) if given else shipped_backend(name),
            results_dir=tmpdir / "results", work_dir=tmpdir,
            timeout=s.build_timeout, log_limit=s.log_limit, diffoscope=diffoscope,
            diffoscope_timeout=s.diffoscope_timeout, diffoscope_limit=s.diffoscope_limit,
            env={"REBUILDER_CACHE_DIR": str((s.cache_dir / "build").resolve())},
        )  # fmt: skip
        attempt = run_build(job, ctx)
        texts = [_read_result(ctx.results_dir, attempt, k) for k in ("log", "diffoscope")]
    return attempt, "".join(texts)


def artifact_from_file(distro: str, url: str, path: Path, sha256: str) -> Artifact:
    """An artifact described by its file name (``name_version_arch.deb`` for Debian,
    ``name-version-rel-arch.pkg.tar.*`` for Arch, else the bare file name)."""
    base = path.name
    name, version, arch = base, "", ""
    if base.endswith((".deb", ".udeb")) and base.count("_") == 2:
        name, version, arch = base.rsplit(".", 1)[0].split("_")
        version = unquote(version)
    elif ".pkg.tar" in base and base.count("-") >= 3:
        name, ver, rel, arch = base.split(".pkg.tar")[0].rsplit("-", 3)
        version = f"{ver}-{rel}"
    return Artifact(name, version, arch, url, sha256, path.stat().st_size)


def _read_result(results_dir: Path, attempt: Attempt, kind: str) -> str:
    rel = attempt.files.get(kind)
    if not rel:
        return ""
    data = (results_dir / rel).read_bytes()
    return (gzip.decompress(data) if rel.endswith(".gz") else data).decode(errors="replace")


# ------------------------------------------------------------------ the pass


def run_pass(config: Config, opts: PassOptions) -> PassReport:
    start = time.monotonic()
    deadline = start + opts.max_time if opts.max_time else None
    s = config.settings
    profiles = config.select(opts.profiles)
    report = PassReport()
    now = utcnow()
    with state.locked(s.state_dir):
        states = {p.name: state.load(s.state_dir, p.name, p.distro) for p in profiles}
        synced = _sync_all(s, profiles, states, opts.force_sync, report, now)
        todo = plan.plan({p.name: states[p.name].records for p in synced}, now, policies(s))
        limit = len(todo) if opts.max_builds is None else min(opts.max_builds, len(todo))
        if limit:
            _build(config, states, todo[:limit], opts, deadline, report)
        queue_length = _finish(s, profiles, states, synced, now)
    report.queued = sum(queue_length.values())
    _publish(config, profiles, states, queue_length, opts, report)
    return report


def _sync_all(
    s: Settings,
    profiles: Sequence[Profile],
    states: dict[str, state.ProfileState],
    force: bool,
    report: PassReport,
    now: dt.datetime,
) -> list[Profile]:
    """Sync every profile into its state; the ones that synced (a failure stops only its own)."""
    synced = []
    for p in profiles:
        st = states[p.name]
        try:
            snap = _sync(s, p, st, force)
        except RebuilderError as e:
            report.errors.append(f"{p.name}: {e}")
            log.error("error: %s: %s", p.name, e)
            continue
        first = not st.records
        report.changes[p.name] = st.apply_snapshot(snap, now)
        if first and st.records:
            report.tracked[p.name] = len(st.records)
        _log_changes(p.name, report.changes[p.name], snap)
        synced.append(p)
        if st.dirty:  # the sync is safe on disk before any build starts
            state.save(s.state_dir, st)
    return synced


def _finish(
    s: Settings,
    profiles: Sequence[Profile],
    states: dict[str, state.ProfileState],
    synced: Sequence[Profile],
    now: dt.datetime,
) -> dict[str, int]:
    """Close the pass in the state: history point, last run, save. The queue lengths."""
    queue_length: dict[str, int] = {}
    for p in profiles:
        st = states[p.name]
        queue_length[p.name] = len(plan.plan({p.name: st.records}, utcnow(), policies(s)))
        if p in synced:
            state.mark_run(s.state_dir, p.name, now)
            if st.changed:  # a pass that changed nothing leaves the tracked state as it was
                st.last_pass = now
                state.add_pass(st, _pass_summary(now, st))
        if st.dirty:
            state.save(s.state_dir, st)
    return queue_length


def _publish(
    config: Config,
    profiles: Sequence[Profile],
    states: dict[str, state.ProfileState],
    queue_length: dict[str, int],
    opts: PassOptions,
    report: PassReport,
) -> None:
    """Render the site and commit the state: the end of a pass and of a merge."""
    s = config.settings
    if opts.render:
        report.site_index = render(
            config, states=states, queue_length=queue_length, incremental=True
        )
    if opts.commit:
        files = [state.state_path(s.state_dir, p.name) for p in profiles]
        files.append(s.state_dir / state.META_NAME)
        report.commit = audit.commit(s.state_dir, files, _commit_message(report))


def _sync(s: Settings, p: Profile, st: state.ProfileState, force: bool) -> Snapshot:
    return sync.sync_profile(p, sync.SyncContext(_cache(s, p), st.fingerprints, force=force))


def _cache(s: Settings, p: Profile | str) -> Path:
    return s.cache_dir / "sync" / (p if isinstance(p, str) else p.name)


def _log_changes(name: str, ch: state.SnapshotChanges, snap: Snapshot) -> None:
    if snap.unchanged:
        log.info("%s: indexes unchanged since the last sync", name)
    else:
        log.info(
            "%s: %d groups; %d new, %d updated, %d gone, %d back",
            name, len(snap.groups), ch.new, ch.updated, ch.gone, ch.back,
        )  # fmt: skip


def _build(
    config: Config,
    states: dict[str, state.ProfileState],
    todo: list[Job],
    opts: PassOptions,
    deadline: float | None,
    report: PassReport,
) -> None:
    s = config.settings
    first = state.reserve_build_ids(s.state_dir, len(todo))
    jobs = [j.with_build_id(first + i) for i, j in enumerate(todo)]
    journals = {name: state.Journal(s.state_dir, name) for name in states}
    pol = policies(s)

    def record(job: Job, attempt: Attempt) -> None:
        st = states[job.profile]
        rec = st.records[job.group.key]
        _count(report, job, rec.status, attempt)
        plan.after_attempt(rec, attempt, pol)
        journals[job.profile].append(rec)
        st.record(rec)

    try:
        summary = _run_jobs(
            config, jobs, s.site_dir / "builds", record, opts, deadline, s.state_dir
        )
        report.abandoned, report.interrupted = summary.abandoned, summary.interrupted
    finally:
        for j in journals.values():
            j.close()


def _count(report: PassReport, job: Job, before: Status, attempt: Attempt) -> None:
    report.built[attempt.status.value] += 1
    if before != attempt.status:
        g = job.group
        report.verdicts.append(
            f"{job.profile}: {g.key} {g.version}: {before.value} -> {attempt.status.value}"
        )
    if before == Status.GOOD and attempt.status in (Status.BAD, Status.FAIL):
        report.regressions.append(
            f"{job.profile} {job.group.key} {job.group.version}: GOOD -> {attempt.status}"
        )


def _run_jobs(
    config: Config,
    jobs: Sequence[Job],
    results_dir: Path,
    record: Callable[[Job, Attempt], None],
    opts: PassOptions,
    deadline: float | None,
    state_dir: Path | None = None,
) -> PoolSummary:
    """Build ``jobs`` in parallel, ``record`` each result as it comes.

    The running builds are shown (:class:`Progress`) and, with ``state_dir``, written
    to its running file for ``status`` and ``queue ls`` in other processes.
    """
    s = config.settings
    progress = Progress(len(jobs), "build")
    live = _LiveBuilds(progress, state_dir)

    def on_result(job: Job, attempt: Attempt) -> None:
        record(job, attempt)
        live.finished(job)
        progress.item(_what(job), attempt.status.value, attempt.duration, key=job.build_id)

    def on_stop(running: int) -> None:
        progress.note(f"stopping {running} builds... (Ctrl-C again to quit at once)")

    key = attest.ensure_key(s.signing_key)
    with _work_dir(s) as work, contextlib.ExitStack() as stack:
        base = BuildContext(
            backend=Path(), results_dir=results_dir, work_dir=work,
            timeout=s.build_timeout, log_limit=s.log_limit, diffoscope=s.diffoscope,
            diffoscope_timeout=s.diffoscope_timeout, diffoscope_limit=s.diffoscope_limit,
            env={"REBUILDER_CACHE_DIR": str((s.cache_dir / "build").resolve())},
            sign=_signer(key), watch=live.watch,
        )  # fmt: skip
        # resolved before any build starts, so a missing backend fails the pass at once
        contexts = {
            name: replace(base, backend=_backend(config, name))
            for name in {backend_name(j) for j in jobs}
        }

        def build(job: Job, cancel: threading.Event) -> Attempt:
            return run_build(job, contexts[backend_name(job)], cancel)

        slots = opts.jobs or s.effective_jobs
        engine = opts.executor or s.executor
        if engine and engine != "local":
            from rebuilder.build import dask as remote  # an optional dependency

            ex = stack.enter_context(remote.make_executor(engine))
            build = remote.remote_builder(ex, lambda j: contexts[backend_name(j)], signing_key=key)
            slots = opts.jobs or 2 * max(1, remote.cluster_slots(ex))
        try:
            summary = BuildPool(slots).run(
                jobs, live.wrap(build), on_result, deadline=deadline, on_stop=on_stop
            )
        finally:
            progress.close()
            live.close()
    return summary


def _what(job: Job) -> str:
    g = job.group
    return f"{g.name} {g.version} {g.architecture}"


class _LiveBuilds:
    """The builds running now: shown by the progress display, written for other processes."""

    def __init__(self, progress: Progress, state_dir: Path | None) -> None:
        self.progress, self.state_dir = progress, state_dir
        self.started = format_time(utcnow()) or ""
        self.lock = threading.Lock()
        self.builds: dict[int, dict[str, object]] = {}
        self.describe: dict[int, Callable[[], str]] = {}

    def watch(self, job: Job, describe: Callable[[], str]) -> None:
        """BuildContext.watch: the local runner says how to ask what a build is doing."""
        self.describe[job.build_id] = describe

    def wrap(
        self, build: Callable[[Job, threading.Event], Attempt]
    ) -> Callable[[Job, threading.Event], Attempt]:
        def tracked(job: Job, cancel: threading.Event) -> Attempt:
            g = job.group
            with self.lock:
                self.builds[job.build_id] = {
                    "profile": job.profile, "key": g.key, "name": g.name, "version": g.version,
                    "since": format_time(utcnow()),
                }  # fmt: skip
                self._write()
            self.progress.started(job.build_id, _what(job), lambda: self._doing(job.build_id))
            try:
                return build(job, cancel)
            except BaseException:  # abandoned or crashed: no result comes for it
                self.finished(job)
                self.progress.forget(job.build_id)
                raise

        return tracked

    def _doing(self, build_id: int) -> str:
        describe = self.describe.get(build_id)
        return describe() if describe else ""

    def finished(self, job: Job) -> None:
        with self.lock:
            if self.builds.pop(job.build_id, None) is not None:
                self._write()
            self.describe.pop(job.build_id, None)

    def _write(self) -> None:
        if self.state_dir is not None:
            state.write_running(self.state_dir, self.started, list(self.builds.values()))

    def close(self) -> None:
        if self.state_dir is not None:
            state.clear_running(self.state_dir)


# ------------------------------------------------------------------ shards


def plan_shards(config: Config, names: Sequence[str], n: int, out: Path) -> PassReport:
    """Sync, plan and cut the queue into ``n`` job files in ``out`` (``plan --shards``).

    Build ids are reserved here, so shards built anywhere never collide.
    """
    s = config.settings
    profiles = config.select(names)
    report = PassReport()
    now = utcnow()
    with state.locked(s.state_dir):
        states = {p.name: state.load(s.state_dir, p.name, p.distro) for p in profiles}
        synced = _sync_all(s, profiles, states, False, report, now)
        records = {p.name: states[p.name].records for p in synced}
        todo = plan.plan(records, now, policies(s))
        first = state.reserve_build_ids(s.state_dir, len(todo))
        jobs = [j.with_build_id(first + i) for i, j in enumerate(todo)]
        durations = {
            key: rec.attempts[-1].duration
            for recs in records.values()
            for key, rec in recs.items()
            if rec.attempts
        }
        paths = shards.write_shards(out, shards.split(jobs, n, durations))
    report.queued = len(jobs)
    log.info("%d jobs in %d shards under %s", len(jobs), len(paths), out)
    return report


def build_shard(config: Config, shard_file: Path, results: Path, opts: PassOptions) -> PassReport:
    """Build one shard without touching the state (``build --plan``); resumable."""
    deadline = time.monotonic() + opts.max_time if opts.max_time else None
    number, jobs = shards.read_shard(shard_file)
    done = {a.build_id for _, a in shards.read_results(results)} if results.is_dir() else set()
    todo = [j for j in jobs if j.build_id not in done]
    report = PassReport()
    writer = shards.ResultWriter(results, number)

    def record(job: Job, attempt: Attempt) -> None:
        writer.append(job, attempt)
        report.built[attempt.status.value] += 1

    try:
        summary = _run_jobs(config, todo, results / "builds", record, opts, deadline)
        report.abandoned, report.interrupted = summary.abandoned, summary.interrupted
    finally:
        writer.close()
    report.queued = report.abandoned
    return report


def merge(config: Config, results_dirs: Sequence[Path], opts: PassOptions) -> PassReport:
    """Fold shard results into the state, render and commit once (``rebuild merge``).

    Idempotent and order-independent: a result already recorded is ignored.
    A shard that is missing or partial leaves its jobs queued.
    """
    s = config.settings
    pol = policies(s)
    report = PassReport()
    now = utcnow()
    with state.locked(s.state_dir):
        states: dict[str, state.ProfileState] = {}
        for d in results_dirs:
            for job, attempt in shards.read_results(d):
                p = config.profiles.get(job.profile)
                if p is None:
                    log.warning("%s: result for unknown profile %r ignored", d, job.profile)
                    continue
                if p.name not in states:
                    states[p.name] = state.load(s.state_dir, p.name, p.distro)
                st = states[p.name]
                rec = st.records.setdefault(job.group.key, GroupRecord(job.group, first_seen=now))
                before = rec.status
                _copy_results(d / "builds", s.site_dir / "builds", attempt)
                if plan.after_attempt(rec, attempt, pol):
                    _count(report, job, before, attempt)
                    st.record(rec)
        profiles = [config.profiles[name] for name in states]
        queue_length = _finish(s, profiles, states, profiles, now)
    report.queued = sum(queue_length.values())
    _publish(config, profiles, states, queue_length, opts, report)
    return report


def _copy_results(src: Path, dst: Path, attempt: Attempt) -> None:
    """Bring an attempt's files into the results store (never outside it; never overwrite)."""
    for rel in attempt.files.values():
        parts = Path(rel).parts
        if not parts or Path(rel).is_absolute() or ".." in parts or "\0" in rel:
            log.warning("build %d: unsafe result path %r ignored", attempt.build_id, rel)
            continue
        target = dst / rel
        if target.exists() or not (src / rel).is_file():
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, target)


def _signer(key: attest.SigningKey) -> Callable[[Job, Path, Path], bytes]:
    """The attestation hook: an in-toto link for each GOOD artifact, signed with our key."""

    def sign(job: Job, input_path: Path, artifact_path: Path) -> bytes:
        return attest.make_link(artifact_path.name, input_path.name, input_path, artifact_path, key)

    return sign


def backend_name(job: Job) -> str:
    """The backend a job needs: the distro's, or ``<distro>-<method>`` for another method."""
    g = job.group
    if g.method and g.method != DEFAULT_METHOD.get(g.distro, g.method):
        return f"{g.distro}-{g.method}"
    return g.distro


def _backend(config: Config, name: str) -> Path:
    given = config.backends.get(name)
    return check_backend(given) if given else shipped_backend(name)


@contextlib.contextmanager
def _work_dir(s: Settings) -> Iterator[Path]:
    base = s.cache_dir / "work"
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base, prefix="pass-") as d:
        yield Path(d)


def _pass_summary(now: dt.datetime, st: state.ProfileState) -> dict[str, object]:
    """One point of the profile's history (the site draws its charts from these)."""
    return site.history_point(now, st.records.values())


def _commit_message(report: PassReport) -> str:
    """The audit commit: what changed, the packages whose verdict changed (bounded)."""
    built = sum(report.built.values())
    new = ", ".join(f"{report.built[s]} {s}" for s in ("GOOD", "BAD", "FAIL") if report.built[s])
    head = f"rebuilder pass: {built} built" + (f" ({new})" if new else "")
    if report.tracked:
        what = ", ".join(f"{n} groups of {name}" for name, n in report.tracked.items())
        head += f"; now tracking {what}"
    lines = [head, ""]
    for name, ch in report.changes.items():
        if ch:
            lines.append(
                f"{name}: {ch.new} new, {ch.updated} updated, {ch.gone} gone, {ch.back} back"
            )
    if report.verdicts:
        lines += ["", "Verdicts changed:", audit.bounded_list(report.verdicts)]
    if report.regressions:
        lines += ["", "Regressions:", *(f"  {r}" for r in report.regressions)]
    if report.abandoned:
        lines.append(f"{report.abandoned} builds abandoned at the time limit")
    return "\n".join(lines).rstrip() + "\n"
