"""The git-tracked state: one JSON file per profile, a journal, a lock.

Layout of a state directory::

    state/<profile>.json      the profile's build groups, one per line (one line per change)
    state/<profile>.journal   results of the pass in progress, one JSON line per finished build
    state/meta.json           the next build id (build ids are unique across profiles)
    state/.rebuilder.lock     held by the pass that owns the directory
    state/.summary/<profile>.json  untracked: fingerprints, queue length and next retry as of
                              the last save, valid while the state file is unchanged, so a
                              pass over unchanged indexes need not parse the state

Writes are atomic (temp file, fsync, rename, fsync of the directory). A
finished build is appended to the journal and fsynced before the pass goes
on, so ``kill -9`` loses at most the builds that were running; the next
load replays the journal. Output is deterministic: the same records always
give the same bytes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import json
import logging
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from rebuilder import _fs, _gc
from rebuilder.errors import LockedError, StateError
from rebuilder.model import (
    SCHEMA_VERSION,
    GroupRecord,
    Snapshot,
    Status,
    format_time,
    parse_time,
    utcnow,
)

log = logging.getLogger(__name__)

LOCK_NAME = ".rebuilder.lock"
META_NAME = "meta.json"
_PASS_HISTORY = 400  # pass summaries kept per profile, enough for a year of daily charts


@dataclass(frozen=True, slots=True)
class SnapshotChanges:
    """What applying a snapshot changed, for logs and the audit message."""

    new: int = 0
    updated: int = 0
    gone: int = 0
    back: int = 0

    def __bool__(self) -> bool:
        return bool(self.new or self.updated or self.gone or self.back)


@dataclass(slots=True)
class ProfileState:
    """The state of one profile, in memory."""

    profile: str
    distro: str
    records: dict[str, GroupRecord] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)
    last_pass: dt.datetime | None = None
    synced_at: dt.datetime | None = None  # the last sync that found the indexes changed
    passes: list[dict[str, Any]] = field(default_factory=list)
    dirty: bool = False
    changed: set[str] = field(default_factory=set)  # keys changed in memory (incremental render)

    def apply_snapshot(self, snap: Snapshot, now: dt.datetime) -> SnapshotChanges:
        """Fold a sync's snapshot in: new groups, new versions, groups that left or came back."""
        if self.fingerprints != snap.fingerprints:
            self.fingerprints = dict(snap.fingerprints)
            self.dirty = True
        if snap.unchanged:
            return SnapshotChanges()
        self.dirty = True
        previous_sync, self.synced_at = self.synced_at, now
        new = updated = gone = back = 0
        present: set[str] = set()
        for group in snap.groups:
            key = group.key
            present.add(key)
            rec = self.records.get(key)
            if rec is None:
                self.records[key] = GroupRecord(group, first_seen=now)
                self.changed.add(key)
                new += 1
                continue
            if not rec.seen:
                rec.seen = True
                self.changed.add(key)
                back += 1
            if rec.group != group:
                changed_inputs = rec.group.inputs_digest != group.inputs_digest
                rec.group = group
                self.changed.add(key)
                if changed_inputs:
                    _reset_for_new_inputs(rec)
                    updated += 1
        for key, rec in self.records.items():
            if rec.seen and key not in present:
                rec.seen = False
                # the last sync that saw it; per-group times on every sync would touch every line
                rec.last_seen = previous_sync or now
                self.changed.add(key)
                gone += 1
        return SnapshotChanges(new, updated, gone, back)

    def record(self, rec: GroupRecord) -> None:
        """A record changed by a build (already updated in place, or new)."""
        self.records[rec.group.key] = rec
        self.changed.add(rec.group.key)
        self.dirty = True

    def counts(self) -> dict[str, int]:
        out = {s.value: 0 for s in Status}
        for rec in self.records.values():
            if rec.seen:
                out[rec.status.value] += 1
        return out


def _reset_for_new_inputs(rec: GroupRecord) -> None:
    """New inputs: the verdict no longer applies, but a GOOD for identical inputs would."""
    current = rec.current_attempt()
    rec.status = current.status if current else Status.UNKWN
    rec.retries = 0
    rec.next_retry = None


# ---------------------------------------------------------------- locking


@contextlib.contextmanager
def locked(state_dir: Path) -> Iterator[None]:
    """Hold the state directory for one pass; a second pass refuses at once."""
    _ensure_dir(state_dir)
    path = state_dir / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise LockedError(
                f"{state_dir}: another pass is running ({holder}); try again when it ends"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)


# ---------------------------------------------------------------- load


def state_path(state_dir: Path, profile: str) -> Path:
    return state_dir / f"{profile}.json"


def journal_path(state_dir: Path, profile: str) -> Path:
    return state_dir / f"{profile}.journal"


def load(state_dir: Path, profile: str, distro: str) -> ProfileState:
    """The profile's state, with any journal of an interrupted pass replayed onto it."""
    path = state_path(state_dir, profile)
    st = ProfileState(profile, distro)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raw = None
    except OSError as e:
        raise StateError(f"{path}: cannot read: {e.strerror}") from None
    with _gc.paused():  # ~10^6 objects that live through the pass (see rebuilder._gc)
        if raw is not None:
            _fill(st, _parse(path, raw))
        replayed = _replay_journal(st, journal_path(state_dir, profile))
    if replayed:
        if running_pass(state_dir) is None:
            log.info("%s: replayed %d results of an interrupted pass", profile, replayed)
        else:  # a live pass's journal: its results so far, nothing was interrupted
            log.debug("%s: %d results of the running pass included", profile, replayed)
        st.dirty = True
    return st


def _parse(path: Path, raw: bytes) -> dict[str, Any]:
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise StateError(f"{path}: corrupt state file ({e}); restore it from git") from None
    if not isinstance(data, dict) or not isinstance(data.get("groups"), dict):
        raise StateError(f"{path}: not a rebuilder state file")
    schema = data.get("schema")
    if schema != SCHEMA_VERSION:
        raise StateError(f"{path}: schema {schema!r}, this rebuilder reads {SCHEMA_VERSION}")
    return data


def _fill(st: ProfileState, data: dict[str, Any]) -> None:
    try:
        st.records = {k: GroupRecord.from_json(v) for k, v in data["groups"].items()}
    except (KeyError, TypeError, ValueError) as e:
        raise StateError(f"state of {st.profile}: malformed group record ({e!r})") from None
    st.fingerprints = dict(data.get("fingerprints", {}))
    st.last_pass = parse_time(data.get("last_pass"))
    st.synced_at = parse_time(data.get("synced_at"))
    st.passes = list(data.get("passes", []))


def _replay_journal(st: ProfileState, path: Path) -> int:
    try:
        lines = path.read_bytes().splitlines()
    except FileNotFoundError:
        return 0
    n = 0
    for line in lines:
        try:
            entry = json.loads(line)
            rec = GroupRecord.from_json(entry["record"])
        except (ValueError, KeyError, TypeError):
            # only the last line can be torn by a crash mid-write; it is a build to redo
            log.warning("%s: skipping a torn journal line", path)
            continue
        st.records[rec.group.key] = rec
        st.changed.add(rec.group.key)
        n += 1
    return n


# ---------------------------------------------------------------- journal and save


class Journal:
    """Append-only record of finished builds; each line is fsynced before the pass goes on."""

    def __init__(self, state_dir: Path, profile: str) -> None:
        self.path = journal_path(state_dir, profile)
        self._f: BinaryIO | None = None

    def append(self, rec: GroupRecord) -> None:
        if self._f is None:
            self._f = self.path.open("ab")
        line = json.dumps({"record": rec.to_json()}, sort_keys=True, separators=(",", ":"))
        _write_or_fail(self._f, (line + "\n").encode(), self.path)

    def close(self) -> None:
        if self._f is not None:
            f, self._f = self._f, None
            try:  # after a failed write, closing flushes the same bytes again and fails again
                f.close()
            except OSError as e:
                raise _cannot_write(self.path, e) from None


def _write_or_fail(f: Any, data: bytes, path: Path) -> None:
    try:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    except OSError as e:
        raise _cannot_write(path, e) from None


def _cannot_write(path: Path, e: OSError) -> StateError:
    hint = " (disk full)" if e.errno == errno.ENOSPC else ""
    return StateError(f"{path}: cannot write: {e.strerror}{hint}; the state is left as it was")


# one encoder for the 46,000 records of a Debian-sized state (json.dumps with options makes
# one per call)
_ENCODER = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def _chunks(st: ProfileState) -> Iterator[bytes]:
    """The state file, piece by piece: sorted keys, one build group per line.

    Streamed, so saving a Debian-sized state never holds a second copy of it in memory.
    """
    one = _ENCODER.encode
    yield f'{{\n"distro":{one(st.distro)},\n'.encode()
    yield f'"fingerprints":{one(dict(sorted(st.fingerprints.items())))},\n"groups":{{'.encode()
    sep = "\n"
    for k in sorted(st.records):
        yield f"{sep}{one(k)}:{one(st.records[k].to_json())}".encode()
        sep = ",\n"
    yield ("\n}" if st.records else "}").encode()
    yield f',\n"last_pass":{one(format_time(st.last_pass))},\n"passes":['.encode()
    yield (",".join(f"\n{one(p)}" for p in st.passes) + ("\n]" if st.passes else "]")).encode()
    yield f',\n"profile":{one(st.profile)},\n"schema":{SCHEMA_VERSION},\n'.encode()
    yield f'"synced_at":{one(format_time(st.synced_at))}\n}}\n'.encode()


def dumps(st: ProfileState) -> bytes:
    """The state file's bytes (deterministic: the same records give the same bytes)."""
    return b"".join(_chunks(st))


def save(state_dir: Path, st: ProfileState) -> bool:
    """Write the profile's state atomically and drop its journal. False when nothing changed
    (the file is then left untouched, so its mtime and git stay quiet)."""
    path = state_path(state_dir, st.profile)
    _ensure_dir(state_dir)
    digest = hashlib.sha256()
    try:
        with _fs.replacing(path, durable=True) as out:
            for chunk in _chunks(st):
                digest.update(chunk)
                out.file.write(chunk)
            if _file_sha256(path) == digest.digest():
                out.discard()
    except OSError as e:
        raise _cannot_write(path, e) from None
    changed = not out.discarded
    journal_path(state_dir, st.profile).unlink(missing_ok=True)
    st.dirty = False
    return changed


def _file_sha256(path: Path) -> bytes | None:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except FileNotFoundError:
        return None
    return h.digest()


def history_point(now: dt.datetime, records: Iterable[GroupRecord]) -> dict[str, Any]:
    """One point of a profile's history: counts of seen groups, in all and per suite, and
    of its BAD groups by cause (:mod:`rebuilder.causes`; a group counts once per cause).

    The pipeline stores one per pass (``ProfileState.passes``); the dashboard
    charts draw them. Points stored before causes were counted have no ``causes``.
    """
    counts = {s.value: 0 for s in Status}
    suites: dict[str, dict[str, int]] = {}
    causes: dict[str, int] = {}
    for r in records:
        if not r.seen:
            continue
        g = r.group
        status = r.status.value
        counts[status] += 1
        if r.status is Status.BAD and (a := r.version_attempt()) is not None:
            for c in a.causes:
                causes[c] = causes.get(c, 0) + 1
        name = f"{g.release}/{g.component}/{g.architecture}"
        per = suites.get(name)
        if per is None:
            per = suites[name] = {s.value: 0 for s in Status}
        per[status] += 1
    return {
        "at": format_time(now),
        "counts": counts,
        "suites": dict(sorted(suites.items())),
        "causes": dict(sorted(causes.items())),
    }


def add_pass(st: ProfileState, summary: dict[str, Any]) -> None:
    st.passes = [*st.passes, summary][-_PASS_HISTORY:]
    st.dirty = True


def atomic_write(path: Path, data: bytes) -> None:
    """A state file, durably (:func:`rebuilder._fs.write_atomic`); StateError if it fails."""
    _ensure_dir(path.parent)
    try:
        _fs.write_atomic(path, data, durable=True)
    except OSError as e:
        raise _cannot_write(path, e) from None


def _ensure_dir(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StateError(f"{path}: cannot create the state directory: {e.strerror}") from None


# ---------------------------------------------------------------- build ids


def reserve_build_ids(state_dir: Path, count: int) -> int:
    """Reserve ``count`` build ids; returns the first. Saved before any build starts,
    so an interrupted pass never hands out an id twice."""
    path = state_dir / META_NAME
    meta: dict[str, Any] = {"next_build_id": 1, "schema": SCHEMA_VERSION}
    with contextlib.suppress(FileNotFoundError):
        try:
            meta = json.loads(path.read_bytes())
        except ValueError:
            raise StateError(f"{path}: corrupt; restore it from git") from None
    first = int(meta.get("next_build_id", 1))
    if count:
        meta["next_build_id"] = first + count
        atomic_write(path, (json.dumps(meta, sort_keys=True, indent=1) + "\n").encode())
    return first


LAST_RUN_NAME = ".last-run.json"  # untracked: a pass that changed nothing makes no commit


def mark_run(state_dir: Path, profile: str, when: dt.datetime) -> None:
    """Note when a pass last ran for ``profile`` (outside the git-tracked state)."""
    runs = last_runs(state_dir)
    runs[profile] = format_time(when) or ""
    atomic_write(state_dir / LAST_RUN_NAME, (json.dumps(runs, sort_keys=True) + "\n").encode())


def last_runs(state_dir: Path) -> dict[str, str]:
    try:
        data = json.loads((state_dir / LAST_RUN_NAME).read_bytes())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def last_run(state_dir: Path, profile: str) -> dt.datetime | None:
    try:
        return parse_time(last_runs(state_dir).get(profile))
    except ValueError:
        return None


# ---------------------------------------------------------------- what a pass left undone

PENDING_NAME = ".pending.json"  # untracked: groups not yet rendered, results not yet committed


def load_pending(state_dir: Path) -> dict[str, Any]:
    """What an earlier pass saved in the state but did not render or commit (its render
    failed, say, on a full disk): ``{"render": {profile: [keys]}, "commit": {...}}``."""
    try:
        data = json.loads((state_dir / PENDING_NAME).read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        log.warning("%s: unreadable; the next render is a full one", state_dir / PENDING_NAME)
        return {"render": {"*": []}}
    return data if isinstance(data, dict) else {}


def save_pending(state_dir: Path, pending: dict[str, Any]) -> None:
    """Save (or, when nothing is left, remove) the pending work of the passes so far."""
    path = state_dir / PENDING_NAME
    if not any(pending.values()):
        path.unlink(missing_ok=True)
        return
    atomic_write(path, (json.dumps(pending, sort_keys=True) + "\n").encode())


# ---------------------------------------------------------------- a pass in progress

RUNNING_NAME = ".running.json"  # the running pass's builds (not tracked)


@dataclass(frozen=True, slots=True)
class RunningPass:
    """A pass that holds the state directory now, as another process sees it."""

    pid: int
    started: str
    builds: tuple[dict[str, Any], ...] = ()  # {"profile", "key", "name", "version", "since"}

    def describe(self) -> str:
        names = ", ".join(f"{b.get('name')} {b.get('version')}" for b in self.builds[:5])
        more = f" and {len(self.builds) - 5} more" if len(self.builds) > 5 else ""
        doing = f": {names}{more}" if names else ""
        return (
            f"a pass is running (pid {self.pid}, started {self.started}); "
            f"{len(self.builds)} builds running{doing}"
        )


def write_running(state_dir: Path, started: str, builds: list[dict[str, Any]]) -> None:
    """What the pass is building now, for ``status`` and ``queue ls`` in another process."""
    doc = {"pid": os.getpid(), "started": started, "builds": builds}
    atomic_write(state_dir / RUNNING_NAME, (json.dumps(doc, sort_keys=True) + "\n").encode())


def clear_running(state_dir: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        (state_dir / RUNNING_NAME).unlink()


def running_pass(state_dir: Path) -> RunningPass | None:
    """The pass holding ``state_dir``'s lock, if another process does; else None."""
    path = state_dir / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace")
        else:
            return None  # nobody holds it
    finally:
        os.close(fd)
    words = holder.split()
    pid = int(words[1]) if len(words) > 1 and words[0] == "pid" and words[1].isdigit() else 0
    if pid == os.getpid():
        return None  # this process's own pass
    started = ""
    builds: tuple[dict[str, Any], ...] = ()
    try:
        doc = json.loads((state_dir / RUNNING_NAME).read_bytes())
        if isinstance(doc, dict) and doc.get("pid") == pid:
            started = str(doc.get("started", ""))
            builds = tuple(b for b in doc.get("builds", []) if isinstance(b, dict))
    except (OSError, ValueError):
        pass
    return RunningPass(pid, started or "?", builds)


# ---------------------------------------------------------------- profile summaries


SUMMARY_DIR = ".summary"  # untracked, like .last-run.json: a cache of what the state says


@dataclass(frozen=True, slots=True)
class Summary:
    """What a pass needs to know of a profile whose indexes did not change, without parsing
    its state file: the fingerprints of its last sync, its queue length and when the next
    retry falls due (None: none will). Valid only for the state file it was written with."""

    fingerprints: dict[str, str]
    queue: int
    due_at: dt.datetime | None


def summary_path(state_dir: Path, profile: str) -> Path:
    return state_dir / SUMMARY_DIR / f"{profile}.json"


def _file_key(path: Path) -> list[int] | None:
    """Size, mtime and inode of a state file: any write of it (ours, git's, an editor's)
    changes at least one of them, and then the summary no longer applies."""
    try:
        st = path.stat()
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def write_summary(state_dir: Path, st: ProfileState, queue: int, policy: str) -> None:
    """Note ``st``'s summary beside its saved state file (call after :func:`save`)."""
    key = _file_key(state_path(state_dir, st.profile))
    if key is None or st.dirty:
        return
    now = utcnow()
    due = [r.next_retry for r in st.records.values() if r.seen and r.next_retry is not None]
    later = [d for d in due if d > now]
    data = {
        "state": key,
        "policy": policy,
        "fingerprints": st.fingerprints,
        "queue": queue,
        # a retry already due is in the queue; one due later changes the queue then
        "due_at": format_time(min(later)) if later else None,
    }
    try:
        atomic_write(summary_path(state_dir, st.profile), json.dumps(data).encode())
    except StateError as e:  # only a cache: the next pass then reads the state file
        log.warning("%s", e)


def read_summary(state_dir: Path, profile: str, policy: str) -> Summary | None:
    """The profile's summary, or None when it does not describe the state file as it is now
    (missing, written with other retry policies, the state file changed since, or a journal
    of an interrupted pass waits to be replayed)."""
    if journal_path(state_dir, profile).exists():
        return None
    try:
        data = json.loads(summary_path(state_dir, profile).read_bytes())
        if data["state"] != _file_key(state_path(state_dir, profile)):
            return None
        if data["policy"] != policy:
            return None
        return Summary(
            {str(k): str(v) for k, v in data["fingerprints"].items()},
            int(data["queue"]),
            parse_time(data["due_at"]),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
