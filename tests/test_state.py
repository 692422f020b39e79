import datetime as dt
import json
import os
import subprocess
import sys
import textwrap

import pytest

from rebuilder import state
from rebuilder.errors import LockedError, StateError
from rebuilder.model import GroupRecord, Snapshot, Status

from .fixtures.operator import T0, attempt, group


def snap(*groups, unchanged=False):
    return Snapshot("p", "debian", tuple(groups), {"bookworm": "f1"}, unchanged)


def test_apply_snapshot_new_updated_gone_back():
    st = state.ProfileState("p", "debian")
    ch = st.apply_snapshot(snap(group("a"), group("b")), T0)
    assert (ch.new, ch.updated, ch.gone) == (2, 0, 0)
    t1 = T0 + dt.timedelta(days=1)
    ch = st.apply_snapshot(snap(group("a", "2.0-1")), t1)
    assert (ch.new, ch.updated, ch.gone) == (0, 1, 1)
    b = st.records["bookworm/main/amd64/b"]
    assert not b.seen and b.last_seen == T0  # kept, marked unseen with the last sync that saw it
    ch = st.apply_snapshot(snap(group("a", "2.0-1"), group("b")), T0)
    assert ch.back == 1 and b.seen


def test_new_version_resets_verdict_but_old_inputs_keep_theirs():
    st = state.ProfileState("p", "debian")
    g1 = group("a")
    st.apply_snapshot(snap(g1), T0)
    rec = st.records[g1.key]
    rec.attempts.append(attempt(g1, Status.GOOD))
    rec.status = Status.GOOD
    st.apply_snapshot(snap(group("a", "2.0-1")), T0)
    assert rec.status == Status.UNKWN
    st.apply_snapshot(snap(g1), T0)  # back to the version that was GOOD
    assert rec.status == Status.GOOD


def test_unchanged_snapshot_keeps_groups():
    st = state.ProfileState("p", "debian")
    st.apply_snapshot(snap(group("a")), T0)
    st.apply_snapshot(snap(unchanged=True), T0)
    assert st.records["bookworm/main/amd64/a"].seen


def test_save_is_deterministic_one_group_per_line_and_roundtrips(tmp_path):
    st = state.ProfileState("p", "debian")
    st.apply_snapshot(snap(group("zz"), group("aa"), group("<x>")), T0)
    g = st.records["bookworm/main/amd64/aa"].group
    st.records[g.key].attempts.append(attempt(g, Status.BAD))
    assert state.save(tmp_path, st)
    raw = (tmp_path / "p.json").read_bytes()
    data = json.loads(raw)
    assert data["schema"] == 1 and list(data) == sorted(data)
    group_lines = [ln for ln in raw.decode().splitlines() if ln.startswith('"bookworm/')]
    assert len(group_lines) == 3
    assert group_lines == sorted(group_lines)
    again = state.load(tmp_path, "p", "debian")
    assert state.dumps(again) == raw
    assert not state.save(tmp_path, again)  # unchanged: nothing written


def test_journal_replayed_after_crash(tmp_path):
    st = state.ProfileState("p", "debian")
    g = group("a")
    st.apply_snapshot(snap(g), T0)
    state.save(tmp_path, st)
    rec = GroupRecord(g, Status.GOOD, [attempt(g, Status.GOOD)])
    j = state.Journal(tmp_path, "p")
    j.append(rec)
    j.close()
    with (tmp_path / "p.journal").open("ab") as f:
        f.write(b'{"record": {"gro')  # torn last line, as kill -9 mid-write leaves it
    again = state.load(tmp_path, "p", "debian")
    assert again.records[g.key].status == Status.GOOD
    state.save(tmp_path, again)
    assert not (tmp_path / "p.journal").exists()
    assert state.load(tmp_path, "p", "debian").records[g.key].status == Status.GOOD


def test_corrupt_state_is_a_clear_error(tmp_path):
    (tmp_path / "p.json").write_text("{not json")
    with pytest.raises(StateError, match="corrupt state file"):
        state.load(tmp_path, "p", "debian")
    (tmp_path / "p.json").write_text('{"schema": 99, "groups": {}}')
    with pytest.raises(StateError, match="schema 99"):
        state.load(tmp_path, "p", "debian")


def test_lock_refuses_second_holder(tmp_path):
    code = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from rebuilder import state
        with state.locked(Path({str(tmp_path)!r})):
            print("held", flush=True)
            time.sleep(30)
    """)
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, env=env)
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == b"held"
        with pytest.raises(LockedError, match="another pass is running"), state.locked(tmp_path):
            pass
    finally:
        p.kill()
        p.wait()
    with state.locked(tmp_path):  # released when its holder died
        pass


def test_build_ids_reserved_in_blocks(tmp_path):
    assert state.reserve_build_ids(tmp_path, 5) == 1
    assert state.reserve_build_ids(tmp_path, 3) == 6
    assert state.reserve_build_ids(tmp_path, 0) == 9


def test_write_failure_leaves_old_state(tmp_path, monkeypatch):
    st = state.ProfileState("p", "debian")
    st.apply_snapshot(snap(group("a")), T0)
    state.save(tmp_path, st)
    before = (tmp_path / "p.json").read_bytes()
    st.apply_snapshot(snap(group("b")), T0)

    def enospc(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", enospc)
    with pytest.raises(StateError, match="disk full"):
        state.save(tmp_path, st)
    assert (tmp_path / "p.json").read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_a_new_upload_changes_only_its_own_line(tmp_path):
    st = state.ProfileState("p", "debian")
    st.apply_snapshot(snap(group("a"), group("b"), group("c")), T0)
    state.save(tmp_path, st)
    before = (tmp_path / "p.json").read_text().splitlines()
    st.apply_snapshot(snap(group("a"), group("b", "2.0-1"), group("c")), T0 + dt.timedelta(days=1))
    state.save(tmp_path, st)
    after = (tmp_path / "p.json").read_text().splitlines()
    changed = [ln for ln in after if ln not in before]
    assert len(changed) == 2  # the group that changed, and the sync time
    assert '"b"' in changed[0] or "2.0-1" in changed[0]
    assert changed[1].startswith('"synced_at"')


def test_a_full_disk_while_journaling_names_the_journal(tmp_path):
    """/dev/full fails every write with ENOSPC, as a full disk does."""
    g = group("a")
    os.symlink("/dev/full", tmp_path / "p.journal")
    j = state.Journal(tmp_path, "p")
    rec = GroupRecord(g, Status.GOOD, [attempt(g, Status.GOOD)])
    message = f"{tmp_path / 'p.journal'}: cannot write: No space left on device (disk full)"
    with pytest.raises(StateError) as e:
        j.append(rec)
    assert str(e.value).startswith(message)
    with pytest.raises(StateError) as e:  # the pass closes its journals on the way out
        j.close()
    assert str(e.value).startswith(message)
    j.close()  # once closed, closed


def test_a_write_error_while_storing_results_names_the_file(tmp_path):
    """A file size limit (RLIMIT_FSIZE) makes the OS refuse the write, as a full disk would."""
    target = tmp_path / "7" / "log.gz"
    code = textwrap.dedent(f"""
        import resource, sys
        from pathlib import Path
        from rebuilder.results import write_atomic
        resource.setrlimit(resource.RLIMIT_FSIZE, (100, 100))
        try:
            write_atomic(Path({str(target)!r}), bytes(1000))
        except OSError as e:
            print(e.filename, e.strerror)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == f"{target} File too large", r.stdout + r.stderr
    assert os.listdir(target.parent) == []  # no temp file left behind
