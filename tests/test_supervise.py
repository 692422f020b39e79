"""The supervisor's fork server, for real: the pass forks no Python interpreter per build, so
what happens when the fork server or a supervisor dies, on Ctrl-C and after a fork of the
pass is checked here with real processes (shell scripts as backends)."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from rebuilder.build import BuildContext, run_build
from rebuilder.build._supervise import SERVER, LogCap, Outcome, run_supervised
from rebuilder.model import Artifact, Attempt, BuildGroup, Job, Status
from tests.test_runner import backend, dead, wait_dead, wait_file

ROOT = Path(__file__).resolve().parent.parent
ENV = {"PATH": "/usr/bin:/bin"}


def supervised(cmd: list[str], cwd: Path, **kw: object) -> tuple[Outcome, str]:
    outcome, log = supervised_bytes(cmd, cwd, **kw)
    return outcome, log.decode()


def supervised_bytes(cmd: list[str], cwd: Path, **kw: object) -> tuple[Outcome, bytes]:
    log = LogCap(1 << 16)
    settings: dict[str, object] = {"timeout": 60.0, "grace": 1.0, "env": ENV}
    settings.update(kw)
    outcome = run_supervised(cmd, cwd=str(cwd), log=log, **settings)  # type: ignore[arg-type]
    return outcome, log.getvalue()


def local_job(tmp_path: Path, build_id: int = 1) -> Job:
    art = tmp_path / "x_1_all.deb"
    art.write_bytes(b"x\n")
    sha = hashlib.sha256(b"x\n").hexdigest()
    a = Artifact("x", "1", "all", str(art), sha, 2)
    return Job("p", BuildGroup("x", "1", "debian", "sid", "main", "all", str(art), (a,)), "new",
               build_id=build_id)  # fmt: skip


def context(tmp_path: Path, script: Path) -> BuildContext:
    return BuildContext(
        script, tmp_path / "results", tmp_path / "work", 300.0, 1 << 16, False, 1.0, 1, grace=1.0
    )


def ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


_OPEN_FDS = """
import os, sys
def is_open(fd):
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False
print("cwd=" + os.getcwd(), "foo=" + os.environ["FOO"], flush=True)
print("err", file=sys.stderr, flush=True)
print(*[fd for fd in range(1024) if is_open(fd)], flush=True)
"""


def test_the_backend_runs_with_the_requested_cwd_env_and_fds(tmp_path: Path) -> None:
    outcome, log = supervised_bytes(
        [sys.executable, "-I", "-S", "-c", _OPEN_FDS],
        tmp_path,
        env={**ENV, "FOO": os.fsdecode(b"b\xffr")},  # not UTF-8: passed on as these bytes
    )
    assert (outcome.how, outcome.code) == ("exit", 0), outcome
    lines = log.splitlines()
    assert lines[0] == b"cwd=" + bytes(tmp_path) + b" foo=b\xffr"
    assert lines[1] == b"err"
    # stdin, stdout and stderr: no fd of the pass, of the fork server or of the supervisor
    assert lines[2].split() == [b"0", b"1", b"2"]


def test_a_command_that_cannot_run_exits_127_with_a_note(tmp_path: Path) -> None:
    outcome, log = supervised([str(tmp_path / "missing")], tmp_path)
    assert (outcome.how, outcome.code) == ("exit", 127)
    assert f"[rebuilder] cannot run {tmp_path / 'missing'}:" in log


def test_a_missing_cwd_is_an_error_in_one_line(tmp_path: Path) -> None:
    outcome, _ = supervised(["true"], tmp_path / "gone")
    assert outcome.how == "error" and outcome.code is None
    assert "FileNotFoundError" in outcome.detail and "\n" not in outcome.detail


def test_a_dead_fork_server_is_started_again_for_the_next_build(tmp_path: Path) -> None:
    assert supervised(["true"], tmp_path)[0].how == "exit"
    first = SERVER.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert wait_dead(first)
    outcome, log = supervised(["echo", "again"], tmp_path)
    assert (outcome.how, outcome.code, log) == ("exit", 0, "again\n")
    assert SERVER.pid not in (None, first)


def build_killed_midway(tmp_path: Path, victim: Callable[[int], int]) -> tuple[Attempt, list[int]]:
    """Run a build whose backend waits for a child; SIGKILL ``victim(backend pid)`` meanwhile.

    The attempt, and the pids of the backend and its child.
    """
    pids = tmp_path / "pids"
    script = backend(
        tmp_path, f"sleep 300 &\necho $! > {pids}.child\necho $$ > {pids}.main\nwait\n"
    )
    ctx = context(tmp_path, script)
    result: list[Attempt] = []
    thread = threading.Thread(target=lambda: result.append(run_build(local_job(tmp_path), ctx)))
    thread.start()
    main = int(wait_file(Path(f"{pids}.main")))
    os.kill(victim(main), signal.SIGKILL)
    thread.join(60)
    assert not thread.is_alive(), "the build hung"
    return result[0], [main, int(Path(f"{pids}.child").read_text())]


def test_a_fork_server_dying_mid_build_fails_that_build_and_stops_its_backend(
    tmp_path: Path,
) -> None:
    def server(main: int) -> int:
        assert SERVER.pid is not None and ppid(ppid(main)) == SERVER.pid
        return SERVER.pid

    attempt, backend_pids = build_killed_midway(tmp_path, server)
    assert attempt.status is Status.FAIL
    assert attempt.reason == "backend supervision failed: signal"
    assert [pid for pid in backend_pids if not wait_dead(pid, 10)] == []


def test_a_killed_supervisor_takes_its_backends_group_with_it(tmp_path: Path) -> None:
    attempt, backend_pids = build_killed_midway(tmp_path, ppid)
    assert attempt.status is Status.FAIL
    assert attempt.reason == "backend supervision failed: supervisor ended without a verdict"
    assert [pid for pid in backend_pids if not wait_dead(pid, 10)] == []


_INTERRUPTED_PASS = """
import sys
from pathlib import Path
from tests.test_supervise import context, local_job
from rebuilder.build import BuildPool, run_build

tmp, script = Path(sys.argv[1]), Path(sys.argv[2])
ctx = context(tmp, script)
jobs = [local_job(tmp, i) for i in (1, 2)]
summary = BuildPool(2).run(jobs, lambda job, cancel: run_build(job, ctx, cancel), lambda j, a: None)
print(f"interrupted={summary.interrupted} abandoned={summary.abandoned}", flush=True)
"""


def test_ctrl_c_stops_the_running_builds_at_once(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    # The backend ignores SIGTERM: only the supervisor's SIGKILL after the grace stops it.
    script = backend(
        tmp_path,
        f"trap '' TERM\nsleep 300 &\necho $! > {pids}/child.$$\necho $$ > {pids}/main.$$\nwait\n",
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", _INTERRUPTED_PASS, str(tmp_path), str(script)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(400):  # both builds' backends and their children started
            if len(list(pids.iterdir())) == 4:
                break
            threading.Event().wait(0.05)
        watched = [int(wait_file(p)) for p in pids.iterdir()]
        assert len(watched) == 4 and not any(dead(pid) for pid in watched)
        parent.send_signal(signal.SIGINT)
        out, _ = parent.communicate(timeout=60)
        assert out.splitlines()[-1] == "interrupted=True abandoned=2"
        assert [pid for pid in watched if not wait_dead(pid, 10)] == []
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


Answer = tuple[str, int | None, str, int | None]


def _in_forked_child(cwd: str, answers: multiprocessing.Queue[Answer]) -> None:
    outcome, log = supervised(["echo", "child"], Path(cwd))
    answers.put((outcome.how, outcome.code, log, SERVER.pid))


def test_a_forked_child_of_the_pass_uses_a_fork_server_of_its_own(tmp_path: Path) -> None:
    assert supervised(["true"], tmp_path)[0].how == "exit"
    ours = SERVER.pid
    fork = multiprocessing.get_context("fork")
    answers: multiprocessing.Queue[Answer] = fork.Queue()
    child = fork.Process(target=_in_forked_child, args=(str(tmp_path), answers))
    child.start()
    how, code, log, theirs = answers.get(timeout=60)
    child.join(60)
    assert (how, code, log) == ("exit", 0, "child\n")
    assert theirs not in (None, ours)
    # the parent's server was not disturbed by the child's copy of its socket
    assert SERVER.pid == ours
    assert supervised(["echo", "parent"], tmp_path)[1] == "parent\n"
