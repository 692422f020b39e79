"""One pass: sync → plan → build → record → render → commit.

This is the only module that knows every stage; each stage is a function
from the previous one's value to the next, and meets the others only in
:mod:`rebuilder.model` types.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import gzip
import logging
import os
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from rebuilder import (
    attest,
    audit,
    distros,
    fetch,
    oneoff,
    plan,
    results,
    shards,
    state,
    sync,
)
from rebuilder.build import BuildContext, BuildPool, PoolSummary, run_build, tools
from rebuilder.build.backends import check_backend, shipped_backend
from rebuilder.build.reaper import Reaper
from rebuilder.build.runner import remove_tree
from rebuilder.config import Config, Profile, Settings, check_method, resolve_paths
from rebuilder.errors import RebuilderError, StateError
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
    keep_files: int = 0  # merge: keep result files of each group's last N attempts (0: all)


@dataclass(slots=True)
class PassReport:
    """What one pass did; the CLI prints its summary line."""

    built: Counter[str] = field(default_factory=Counter)
    abandoned: int = 0
    queued: int = 0
    errors: list[str] = field(default_factory=list)
    regressions: list[str] = field(default_factory=list)
    verdicts: list[str] = field(default_factory=list)  # "profile: key version: OLD -> NEW"
    verdict_count: int = 0  # of a pending commit: all verdicts, of which ``verdicts`` the first
    tracked: dict[str, int] = field(default_factory=dict)  # groups of profiles new in the state
    changes: dict[str, state.SnapshotChanges] = field(default_factory=dict)
    commit: str | None = None
    site_index: Path | None = None
    synced: int = 0  # profiles that synced (plan --shards)
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


def apply_limits(settings: Settings) -> None:
    """The per-download deadlines of this process, from the settings (docs/hostile.md)."""
    fetch.set_deadlines(fetch.Deadlines(settings.download_timeout, settings.download_min_rate))


# ------------------------------------------------------------------ stages on their own


def sync_only(config: Config, names: Sequence[str], *, force: bool = False) -> list[Snapshot]:
    """Sync the named profiles and fold the snapshots into the state (no builds)."""
    profiles = config.select(names)
    sd = config.settings.state_dir
    snaps = []
    with state.locked(sd):
        for p in profiles:
            st = state.load(sd, p.name, p.distro)
            snap = _sync(config, p, st, force)
            changes = st.apply_snapshot(snap, utcnow())
            _log_changes(p.name, changes, snap)
            if st.dirty:
                state.save(sd, st)
            snaps.append(snap)
    return snaps


def snapshot(config: Config, names: Sequence[str]) -> list[Snapshot]:
    """Sync without touching the state (``sync --print-json``): always a full read."""
    out = []
    for p in config.select(names):
        with fetch.deadline(config.settings.sync_timeout, f"sync of {p.name}"):
            out.append(sync.sync_profile(p, _sync_context(config, p, {}, force=True)))
    return out


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
    queues: dict[str, list[Job]] | None = None,
    incremental: bool = False,
) -> Path:
    """Render the site from the state of every configured profile; the index path.

    ``queues``: the jobs of profiles already planned for their ``states`` (others are
    planned here). ``incremental`` re-renders only the group pages whose records
    ``states`` changed in memory (the pass's own changes); everything else is full.
    """
    from rebuilder import site  # (imported when used: a pass with nothing to show starts faster)

    s = config.settings
    states = dict(states or {})
    views = []
    for p in config.profiles.values():
        st = states.get(p.name) or state.load(s.state_dir, p.name, p.distro)
        states[p.name] = st
        jobs = (queues or {}).get(p.name)  # the API's queue
        if jobs is None:
            jobs = plan.plan({p.name: st.records}, utcnow(), policies(s))
        n = (queue_length or {}).get(p.name, len(jobs))
        last_run = state.last_run(s.state_dir, p.name)
        views.append(site.ProfileView(p, st.records, n, last_run, st.passes, jobs))
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
    """rebuilderd's v1 binary packages of every configured profile, from the local state,
    each with one more key, ``source``: its source package (``--name`` matches either)."""
    from rebuilder import site  # (see render)

    out: list[dict[str, object]] = []
    now = utcnow()
    for p in config.profiles.values():
        st = state.load(config.settings.state_dir, p.name, p.distro)
        for key in sorted(st.records):
            record = st.records[key]
            if record.seen:
                attempt = site.api_v0.v0_attempt(record)
                served = site.api_v1.published(attempt)
                rows = site.api_v1.binary_rows(record, attempt, served, now)
                out.extend(
                    r.record.to_json() | {"id": len(out) + i, "source": record.group.name}
                    for i, r in enumerate(rows, 1)
                )
    return out


def status(config: Config, names: Sequence[str]) -> list[dict[str, Any]]:
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
            missing_tools="" if given else tools.missing_reason(name),
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
    with state.locked(s.state_dir), fetch.deadline(opts.max_time, "--max-time"):
        sweep_work_dirs(s)
        quiet, presynced = _quiet_profiles(config, profiles, opts, report, now)
        loud = [p for p in profiles if p.name not in quiet]
        states = {p.name: state.load(s.state_dir, p.name, p.distro) for p in loud}
        synced = _sync_all(config, loud, states, opts.force_sync, report, now, presynced)
        todo = plan.plan({p.name: states[p.name].records for p in synced}, now, policies(s))
        limit = len(todo) if opts.max_builds is None else min(opts.max_builds, len(todo))
        if limit:
            _build(config, states, todo[:limit], opts, deadline, report)
        queues = _finish(s, loud, states, synced, now)
        queue_length = {name: len(q) for name, q in queues.items()}
        for name, summary in quiet.items():
            state.mark_run(s.state_dir, name, now)
            queue_length[name] = summary.queue
        report.queued = sum(queue_length.values())
        # under the lock: another pass or render must not overlap this one's last stage
        _publish(config, profiles, states, queue_length, queues, opts, report)
    return report


def _quiet_profiles(
    config: Config,
    profiles: Sequence[Profile],
    opts: PassOptions,
    report: PassReport,
    now: dt.datetime,
) -> tuple[dict[str, state.Summary], dict[str, Snapshot]]:
    """Profiles this pass need not load: their indexes did not change (checked against the
    fingerprints of their summary, not of their state file) and they have nothing to build
    now. Also the snapshots of the profiles that did change, so they are not synced twice."""
    quiet: dict[str, state.Summary] = {}
    presynced: dict[str, Snapshot] = {}
    if opts.force_sync:
        return quiet, presynced
    s = config.settings
    key = _policy_key(s)
    for p in profiles:
        summary = state.read_summary(s.state_dir, p.name, key)
        if summary is None:
            continue
        idle = summary.due_at is None or summary.due_at > now
        if not idle or (summary.queue and opts.max_builds != 0):
            continue
        try:
            snap = _sync_against(config, p, summary.fingerprints, False)
        except RebuilderError:
            continue  # the normal path syncs it again and reports the error
        if snap.unchanged:
            quiet[p.name] = summary
            report.changes[p.name] = state.SnapshotChanges()
            log.info("%s: indexes unchanged since the last sync; state not loaded", p.name)
        else:
            presynced[p.name] = snap
    return quiet, presynced


def _policy_key(s: Settings) -> str:
    """The retry policies a summary's queue length was computed with."""
    return repr((s.retry_bad, s.retry_fail))


def _sync_all(
    config: Config,
    profiles: Sequence[Profile],
    states: dict[str, state.ProfileState],
    force: bool,
    report: PassReport,
    now: dt.datetime,
    presynced: dict[str, Snapshot] | None = None,
) -> list[Profile]:
    """Sync every profile into its state; the ones that synced (a failure stops only its own)."""
    synced = []
    for p in profiles:
        st = states[p.name]
        try:
            snap = (presynced or {}).get(p.name) or _sync(config, p, st, force)
            if p.name in (presynced or {}):
                _check_gone(p, st, snap)
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
            state.save(config.settings.state_dir, st)
    return synced


def _finish(
    s: Settings,
    profiles: Sequence[Profile],
    states: dict[str, state.ProfileState],
    synced: Sequence[Profile],
    now: dt.datetime,
) -> dict[str, list[Job]]:
    """Close the pass in the state: history point, last run, save. The queues, as planned
    now (the site publishes them: not planned again there)."""
    queues: dict[str, list[Job]] = {}
    for p in profiles:
        st = states[p.name]
        queues[p.name] = plan.plan({p.name: st.records}, utcnow(), policies(s))
        if p in synced:
            state.mark_run(s.state_dir, p.name, now)
            if st.changed:  # a pass that changed nothing leaves the tracked state as it was
                st.last_pass = now
                state.add_pass(st, _pass_summary(now, st))
        if st.dirty:
            state.save(s.state_dir, st)
        state.write_summary(s.state_dir, st, len(queues[p.name]), _policy_key(s))
    return queues


def _publish(
    config: Config,
    profiles: Sequence[Profile],
    states: dict[str, state.ProfileState],
    queue_length: dict[str, int],
    queues: dict[str, list[Job]],
    opts: PassOptions,
    report: PassReport,
) -> None:
    """Render the site and commit the state: the end of a pass and of a merge.

    The state is already saved; what is left to render and to commit is saved
    first (``state.PENDING_NAME``), so that a render or commit that fails (a
    full disk) is finished by the next pass instead of being lost.
    """
    s = config.settings
    pending = state.load_pending(s.state_dir)
    _add_pending(pending, states, report)
    state.save_pending(s.state_dir, pending)
    if opts.render:
        # a site dir with no render of its own (a CI runner that restored only builds/)
        # needs every page, not only the changed groups'
        full = "*" in pending["render"] or not (s.site_dir / "index.html").exists()
        for name, keys in pending["render"].items():
            if name in config.profiles and name not in states:
                states[name] = state.load(s.state_dir, name, config.profiles[name].distro)
            if name in states:
                states[name].changed.update(keys)
        report.site_index = render(
            config,
            states=states,
            queue_length=queue_length,
            queues=queues,
            incremental=not full,
        )
        pending["render"] = {}
        state.save_pending(s.state_dir, pending)
    if opts.commit:
        names = {p.name for p in profiles} | set(pending["commit"].get("changes", {}))
        files = [state.state_path(s.state_dir, n) for n in sorted(names) if n in config.profiles]
        files.append(s.state_dir / state.META_NAME)
        message = _commit_message(_pending_report(pending["commit"]))
        report.commit = audit.commit(s.state_dir, files, message)
        pending["commit"] = {}
        state.save_pending(s.state_dir, pending)


def render_site(config: Config) -> Path:
    """``rebuild render``: a full render, under the state lock, that also finishes what an
    earlier pass left unrendered."""
    s = config.settings
    with state.locked(s.state_dir):
        index = render(config)
        pending = state.load_pending(s.state_dir)
        if pending.get("render"):
            pending["render"] = {}
            state.save_pending(s.state_dir, pending)
    return index


def _add_pending(
    pending: dict[str, Any], states: dict[str, state.ProfileState], report: PassReport
) -> None:
    """Fold this pass's changed groups and its report into the pending work."""
    render_keys = pending.setdefault("render", {})
    for name, st in states.items():
        if st.changed:
            render_keys[name] = sorted(set(render_keys.get(name, ())) | st.changed)
    c = pending.setdefault("commit", {})
    built = Counter(c.get("built", {}))
    built.update(report.built)
    changes = c.get("changes", {})
    for name, ch in report.changes.items():
        old = changes.get(name, [0, 0, 0, 0])
        changes[name] = [
            a + b for a, b in zip(old, (ch.new, ch.updated, ch.gone, ch.back), strict=True)
        ]
    c.update(
        built=dict(built),
        changes={k: v for k, v in changes.items() if any(v)},
        regressions=[*c.get("regressions", []), *report.regressions],
        abandoned=c.get("abandoned", 0) + report.abandoned,
        passes=c.get("passes", 0) + 1,
        # bounded: the commit names the first ones and counts the rest
        verdicts=[*c.get("verdicts", []), *report.verdicts][: audit.LIST_LIMIT],
        verdict_count=c.get("verdict_count", 0) + len(report.verdicts),
        tracked=c.get("tracked", {}) | report.tracked,
    )


def _pending_report(c: dict[str, Any]) -> PassReport:
    """The report the audit commit describes: every pass since the last commit."""
    r = PassReport(built=Counter(c.get("built", {})), abandoned=c.get("abandoned", 0))
    r.changes = {k: state.SnapshotChanges(*v) for k, v in c.get("changes", {}).items()}
    r.regressions = list(c.get("regressions", []))
    r.verdicts = list(c.get("verdicts", []))
    r.verdict_count = c.get("verdict_count", len(r.verdicts))
    r.tracked = dict(c.get("tracked", {}))
    return r


def _sync(config: Config, p: Profile, st: state.ProfileState, force: bool) -> Snapshot:
    snap = _sync_against(config, p, st.fingerprints, force)
    if not force:
        _check_gone(p, st, snap)
    return snap


def _sync_against(config: Config, p: Profile, previous: dict[str, str], force: bool) -> Snapshot:
    with fetch.deadline(config.settings.sync_timeout, f"sync of {p.name}"):
        return sync.sync_profile(p, _sync_context(config, p, previous, force))


def _sync_context(
    config: Config, p: Profile, previous: dict[str, str], force: bool
) -> sync.SyncContext:
    return sync.SyncContext(_cache(config.settings, p), previous, force, tuple(config.backends))


# A sync that would mark more than this share of a profile's groups gone (and at least
# _GONE_MIN of them) is refused without --force-sync: a filter typo or a half-empty mirror
# would otherwise unpublish most of the site in one pass.
_GONE_SHARE = 0.5
_GONE_MIN = 2


def _check_gone(p: Profile, st: state.ProfileState, snap: Snapshot) -> None:
    if snap.unchanged:
        return
    seen = [k for k, rec in st.records.items() if rec.seen]
    present = {g.key for g in snap.groups}
    gone = sum(1 for k in seen if k not in present)
    if gone >= _GONE_MIN and gone > _GONE_SHARE * len(seen):
        raise StateError(
            f"this sync would mark {gone} of {len(seen)} groups of {p.name} gone (a filter "
            "typo or a half-empty mirror?); nothing was changed; to accept it, run again with "
            "--force-sync (rebuild sync: --force)"
        )


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
        key = attest.ensure_key(s.signing_key)
        summary = _run_jobs(
            config, jobs, s.site_dir / "builds", record, opts, deadline, key, s.state_dir
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
    key: attest.SigningKey | None,
    state_dir: Path | None = None,
) -> PoolSummary:
    """Build ``jobs`` in parallel, ``record`` each result as it comes.

    ``key`` None: attestations are left unsigned, for the merge to sign. The running
    builds are shown (:class:`Progress`) and, with ``state_dir``, written to its running
    file for ``status`` and ``queue ls`` in other processes.
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

    with _work_dir(s) as work, contextlib.ExitStack() as stack:
        # attempt directories go after the verdict; closed (drained) before work is removed
        reaper = stack.enter_context(Reaper())
        base = BuildContext(
            backend=Path(), results_dir=results_dir, work_dir=work,
            timeout=s.build_timeout, log_limit=s.log_limit, diffoscope=s.diffoscope,
            diffoscope_timeout=s.diffoscope_timeout, diffoscope_limit=s.diffoscope_limit,
            env={"REBUILDER_CACHE_DIR": str((s.cache_dir / "build").resolve())},
            sign=_signer(key), watch=live.watch, reaper=reaper,
        )  # fmt: skip
        # resolved before any build starts, so a missing backend fails the pass at once
        contexts = {
            name: replace(
                base, backend=_backend(config, name),
                missing_tools=missing_tools_reason(config, name),
            )
            for name in {backend_name(j) for j in jobs}
        }  # fmt: skip

        def build(job: Job, cancel: threading.Event) -> Attempt:
            return run_build(job, contexts[backend_name(job)], cancel)

        slots = opts.jobs or s.effective_jobs
        engine = opts.executor or s.executor
        if engine and engine != "local":
            from rebuilder.build import dask as remote  # an optional dependency

            ex = remote.make_executor(engine)
            assert ex is not None  # engine names a scheduler: None is only for "local"
            stack.enter_context(ex)
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

    Build ids are reserved here, so shards built anywhere never collide. No
    more shards than jobs are written (none for an empty queue); ``shards.json``
    lists them. A profile that fails to sync is in ``report.errors``; the
    others are planned all the same.
    """
    shards.check_count(n)
    s = config.settings
    profiles = config.select(names)
    report = PassReport()
    now = utcnow()
    with state.locked(s.state_dir):
        states = {p.name: state.load(s.state_dir, p.name, p.distro) for p in profiles}
        synced = _sync_all(config, profiles, states, False, report, now)
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
        cut = shards.split(jobs, min(n, len(jobs)), durations) if jobs else []
        paths = shards.write_shards(out, cut)
        shards.write_index(out, len(paths), len(jobs), report.errors)
    report.queued = len(jobs)
    report.synced = len(synced)
    log.info("%d jobs in %d shards under %s", len(jobs), len(paths), out)
    return report


def build_shard(config: Config, shard_file: Path, results: Path, opts: PassOptions) -> PassReport:
    """Build one shard without touching the state (``build --plan``); resumable."""
    deadline = time.monotonic() + opts.max_time if opts.max_time else None
    sweep_work_dirs(config.settings)
    number, jobs = shards.read_shard(shard_file)
    done = {a.build_id for _, a in shards.read_results(results)} if results.is_dir() else set()
    todo = [j for j in jobs if j.build_id not in done]
    report = PassReport()
    writer = shards.ResultWriter(results, number)

    def record(job: Job, attempt: Attempt) -> None:
        writer.append(job, attempt)
        report.built[attempt.status.value] += 1

    try:
        # a shard never holds the signing key: its links are unsigned, the merge signs them
        summary = _run_jobs(config, todo, results / "builds", record, opts, deadline, None)
        report.abandoned, report.interrupted = summary.abandoned, summary.interrupted
    finally:
        writer.close()
    report.queued = report.abandoned
    return report


def merge(config: Config, results_dirs: Sequence[Path], opts: PassOptions) -> PassReport:
    """Fold shard results into the state, render and commit once (``rebuild merge``).

    Idempotent and order-independent: a result already recorded is ignored.
    A shard that is missing or partial leaves its jobs queued; with no results
    at all the merge still renders and commits (the plan's sync is state too).
    Attestations are signed here, with the instance key when there is one.
    """
    s = config.settings
    pol = policies(s)
    report = PassReport()
    now = utcnow()
    key = merge_signing_key(s)
    with state.locked(s.state_dir):
        profiles = list(config.profiles.values())
        states = {p.name: state.load(s.state_dir, p.name, p.distro) for p in profiles}
        for d in results_dirs:
            if not d.is_dir():
                log.warning("%s: no such results directory (its shard's jobs stay queued)", d)
                continue
            for job, attempt in shards.read_results(d):
                st = states.get(job.profile)
                if st is None:
                    log.warning("%s: result for unknown profile %r ignored", d, job.profile)
                    continue
                rec = st.records.setdefault(job.group.key, GroupRecord(job.group, first_seen=now))
                before = rec.status
                attempt = _copy_results(d / "builds", s.site_dir / "builds", attempt, key)
                if plan.after_attempt(rec, attempt, pol):
                    _count(report, job, before, attempt)
                    st.record(rec)
        if opts.keep_files:
            n = prune_attempt_files(states, s.site_dir / "builds", opts.keep_files)
            log.info("retention: dropped the files of %d older attempts", n)
        queues = _finish(s, profiles, states, profiles, now)
        queue_length = {name: len(q) for name, q in queues.items()}
        report.queued = sum(queue_length.values())
        _publish(config, profiles, states, queue_length, queues, opts, report)
    return report


def prune_attempt_files(states: dict[str, state.ProfileState], builds_dir: Path, keep: int) -> int:
    """Drop the result files of all but the last ``keep`` attempts of each group.

    The attempts themselves stay in the state (verdict, reason, digests); their
    pages show them without files. What a size-limited host (GitHub Pages: 1 GB)
    needs; the number of attempts whose files went.
    """
    if keep < 1:
        raise RebuilderError(f"keep {keep}: at least the last attempt's files are kept")
    n = 0
    for st in states.values():
        for rec in st.records.values():
            old = [i for i, a in enumerate(rec.attempts[:-keep]) if a.files]
            for i in old:
                a = rec.attempts[i]
                shutil.rmtree(builds_dir / str(int(a.build_id)), ignore_errors=True)
                rec.attempts[i] = replace(a, files={})
            if old:
                st.record(rec)
                n += len(old)
    return n


def merge_signing_key(s: Settings) -> attest.SigningKey | None:
    """The instance key if there is one; a merge never makes one (it would change daily)."""
    if s.signing_key.exists():
        return attest.load_signing_key(s.signing_key)
    log.warning("no signing key %s: attestations are not published (unsigned)", s.signing_key)
    return None


def _copy_results(src: Path, dst: Path, attempt: Attempt, key: attest.SigningKey | None) -> Attempt:
    """Bring an attempt's files into the results store (never outside it; never overwrite).

    The attestation is signed with ``key``; without a key it is left out, and
    the attempt, as returned, says it has none.
    """
    files = dict(attempt.files)
    for kind, rel in attempt.files.items():
        if results.safe_rel(rel) is None:
            log.warning("build %d: unsafe result path %r ignored", attempt.build_id, rel)
            continue
        target = dst / rel
        if kind == "attestation" and key is None:
            del files[kind]
            continue
        if target.exists() or not (src / rel).is_file():
            continue
        data = (src / rel).read_bytes()
        if kind == "attestation" and key is not None:
            try:
                data = attest.sign_links(data, key)
            except (ValueError, KeyError, TypeError) as e:
                log.warning("build %d: attestation not signed: %s", attempt.build_id, e)
                del files[kind]
                continue
        target.parent.mkdir(parents=True, exist_ok=True)
        results.write_atomic(target, data)
    return replace(attempt, files=files)


def _signer(key: attest.SigningKey | None) -> Callable[[Job, Path, Path], bytes]:
    """The attestation hook: an in-toto link for each GOOD artifact, signed with our key
    (unsigned without one)."""

    def sign(job: Job, input_path: Path, artifact_path: Path) -> bytes:
        return attest.make_link(artifact_path.name, input_path.name, input_path, artifact_path, key)

    return sign


def backend_name(job: Job) -> str:
    """The backend a job needs: the distro's, or ``<distro>-<method>`` for another method."""
    return distros.backend_name(job.group.distro, job.group.method)


def profile_backend(p: Profile) -> str:
    """The backend a profile's builds need (as :func:`backend_name` for its jobs)."""
    return distros.backend_name(p.distro, p.method)


def missing_tools_reason(config: Config | None, name: str) -> str:
    """Why backend ``name`` cannot run here ("" if it can): a shipped backend's missing tools.

    An operator's own backend script declares nothing, so it is not checked.
    """
    if config is not None and name in config.backends:
        return ""
    return tools.missing_reason(name)


def _backend(config: Config, name: str) -> Path:
    given = config.backends.get(name)
    return check_backend(given) if given else shipped_backend(name)


@contextlib.contextmanager
def _work_dir(s: Settings) -> Iterator[Path]:
    """The pass's own work directory, flocked (``.lock``) while the pass runs: a pass
    killed with SIGKILL leaves it behind, and the next pass's sweep knows it is stale."""
    base = s.cache_dir / "work"
    base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=base, prefix="pass-") as d:
        fd = os.open(Path(d) / _WORK_LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield Path(d)
        finally:
            os.close(fd)


_WORK_LOCK = ".lock"
_UNLOCKED_GRACE = 300  # seconds a pass dir may lack its lock (just created, or an old version's)


def sweep_work_dirs(s: Settings) -> int:
    """Remove the work directories of passes that died (not a running pass's); how many."""
    base = s.cache_dir / "work"
    try:
        dirs = [d for d in base.iterdir() if d.name.startswith("pass-") and d.is_dir()]
    except FileNotFoundError:
        return 0
    removed = 0
    for d in dirs:
        if _running(d):
            continue
        log.info("removing the work directory of an interrupted pass: %s", d)
        remove_tree(d)
        removed += not d.exists()
    return removed


def _running(d: Path) -> bool:
    try:
        fd = os.open(d / _WORK_LOCK, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        try:
            return time.time() - d.stat().st_mtime < _UNLOCKED_GRACE
        except FileNotFoundError:
            return True  # gone already: nothing to do
    except OSError:
        return True  # cannot tell: leave it
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _pass_summary(now: dt.datetime, st: state.ProfileState) -> dict[str, object]:
    """One point of the profile's history (the site draws its charts from these)."""
    return state.history_point(now, st.records.values())


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
        total = max(report.verdict_count, len(report.verdicts))
        lines += ["", "Verdicts changed:", audit.bounded_list(report.verdicts, total=total)]
    if report.regressions:
        lines += ["", "Regressions:", *(f"  {r}" for r in report.regressions)]
    if report.abandoned:
        lines.append(f"{report.abandoned} builds abandoned at the time limit")
    return "\n".join(lines).rstrip() + "\n"
