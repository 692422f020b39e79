"""Supervisor: run one backend in its own process group and make sure it never outlives us.

The runner starts this small process (``python -I -S _supervise.py ...``, standard
library only, so it starts in ~15 ms) for every backend and every diffoscope run. It
exists because killing the Python pass, even with ``kill -9``, must kill the
backend and everything the backend started:

* ``PR_SET_PDEATHSIG`` makes the kernel send us SIGTERM when our parent dies. It
  fires when the parent *thread* that forked us exits, which is why the backend
  is not started directly from the pool's threads: the thread that starts this
  supervisor is the one that waits for it, so it cannot exit first.
* fd 0 is a *lifeline* pipe whose write end only the parent holds: it reads EOF
  when the parent process dies (for any reason) or closes it on purpose to
  cancel the build. Either way we kill the backend's group.
* ``PR_SET_CHILD_SUBREAPER`` makes descendants that escape the group (``setsid``,
  double fork) our children when orphaned, so they are found and killed too.

Protocol (fds as the runner sets them up):
  fd 0  lifeline; EOF or any byte = stop now
  fd 1  the log: the backend's stdout and stderr, plus our own ``[rebuilder]`` notes
  fd 2  status lines for the runner: ``pid N`` once started, then
        ``done CODE HOW`` with HOW one of ``exit timeout cancel signal``

Usage: ``_supervise.py --parent PID --timeout SECONDS --grace SECONDS -- CMD [ARG...]``

The runner's side of the protocol, :func:`run_supervised`, lives here too, so
that the whole protocol is in one file; it imports what it needs lazily to keep
the supervisor's own start-up small.
"""

from __future__ import annotations

# _signal, not signal, and no contextlib: both import enum, which cost this process a third
# of its start-up CPU, paid once per build.
import _signal as signal  # type: ignore[import-not-found]
import ctypes
import os
import select
import sys
import time

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


def _prctl(option: int, arg: int) -> bool:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


def _write(fd: int, text: str) -> None:
    # The reader may be gone (the parent died): that must not stop the cleanup.
    try:  # noqa: SIM105 (contextlib imports enum)
        os.write(fd, text.encode())
    except OSError:
        pass


def _note(text: str) -> None:
    _write(1, f"[rebuilder] {text}\n")


def _parse(argv: list[str]) -> tuple[int, float, float, list[str]]:
    if "--" not in argv:
        raise SystemExit("usage: _supervise.py --parent PID --timeout S --grace S -- CMD...")
    split = argv.index("--")
    opts = dict(zip(argv[:split:2], argv[1:split:2], strict=False))
    cmd = argv[split + 1 :]
    if not cmd:
        raise SystemExit("_supervise.py: no command")
    return int(opts["--parent"]), float(opts["--timeout"]), float(opts["--grace"]), cmd


def _spawn(cmd: list[str]) -> int:
    """Fork and exec ``cmd`` in a new session: stdin /dev/null, stdout+stderr = our fd 1."""
    pid = os.fork()
    if pid:
        return pid
    try:
        os.setsid()
        # If we are killed with SIGKILL ourselves, at least the backend's main process goes.
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        signal.set_wakeup_fd(-1)
        for sig in (*_STOP_SIGNALS, signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ):
            signal.signal(sig, signal.SIG_DFL)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(1, 2)
        os.execvp(cmd[0], cmd)
    except BaseException as e:
        _write(2, f"[rebuilder] cannot run {cmd[0]}: {e}\n")
    os._exit(127)


class _Children:
    """Reaps every child (the backend and adopted orphans); remembers the backend's status."""

    def __init__(self, main: int) -> None:
        self.main = main
        self.main_status: int | None = None

    def reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.main:
                self.main_status = os.waitstatus_to_exitcode(status)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _killpg(pgid: int, sig: int) -> None:
    try:  # noqa: SIM105
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _stop_group(pgid: int, children: _Children, grace: float) -> None:
    """SIGTERM the group, give it ``grace`` seconds, then SIGKILL whatever is left."""
    if not _group_alive(pgid):
        return
    _killpg(pgid, signal.SIGTERM)
    end = time.monotonic() + grace
    while time.monotonic() < end:
        children.reap()
        if not _group_alive(pgid):
            return
        time.sleep(0.01)
    _killpg(pgid, signal.SIGKILL)
    end = time.monotonic() + 5
    while _group_alive(pgid) and time.monotonic() < end:
        children.reap()
        time.sleep(0.01)


def _own_children() -> list[int]:
    me = os.getpid()
    try:
        with open(f"/proc/self/task/{me}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        pass
    found = []  # kernels without CONFIG_PROC_CHILDREN: scan /proc
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                found.append(int(entry))
    return found


def _kill_adopted(children: _Children) -> int:
    """Kill descendants that left the backend's group and were re-parented to us."""
    killed = 0
    for _ in range(100):
        children.reap()
        pids = _own_children()
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(0.01)
    children.reap()
    return killed


def _wait(pid: int, children: _Children, timeout: float, wake: int) -> str:
    """Wait for the backend to exit; the answer says why we stopped waiting."""
    deadline = time.monotonic() + timeout
    poller = select.poll()
    poller.register(0, select.POLLIN | select.POLLHUP | select.POLLERR)
    poller.register(wake, select.POLLIN)
    while True:
        children.reap()
        if children.main_status is not None:
            return "exit"
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return "timeout"
        for fd, _ in poller.poll(min(remaining, 3600.0) * 1000):
            if fd == 0:
                return "cancel"  # EOF (parent gone) or an explicit request: both mean stop
            try:
                got = os.read(wake, 256)
            except BlockingIOError:
                got = b""
            if any(sig in got for sig in _STOP_SIGNALS):
                return "signal"


def main(argv: list[str]) -> int:
    parent, timeout, grace, cmd = _parse(argv)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    for sig in (*_STOP_SIGNALS, signal.SIGCHLD):
        signal.signal(sig, lambda *_: None)
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        return 3  # the parent died before PDEATHSIG was armed: start nothing
    _prctl(PR_SET_CHILD_SUBREAPER, 1)

    pid = _spawn(cmd)
    _write(2, f"pid {pid}\n")
    children = _Children(pid)
    how = _wait(pid, children, timeout, wake_r)
    if how != "exit":
        _note(f"stopping the process group ({how})")
    # Also after a normal exit: leftover background processes (an agent, a daemon) must go.
    _stop_group(pid, children, grace if how != "exit" else min(grace, 1.0))
    adopted = _kill_adopted(children)
    if adopted:
        _note(f"killed {adopted} process(es) that had left the backend's process group")
    while children.main_status is None:
        try:
            _, status = os.waitpid(pid, 0)
            children.main_status = os.waitstatus_to_exitcode(status)
        except ChildProcessError:
            children.main_status = -int(signal.SIGKILL)
    _write(2, f"done {children.main_status} {how}\n")
    return 0


# --- the runner's side ---------------------------------------------------------------------


class LogCap:
    """Keeps at most ``limit`` bytes of a stream: its head and its tail, with a marker between.

    The head shows how the build started, the tail how it ended (the error is
    usually there); memory stays bounded however much a backend prints.

    >>> cap = LogCap(10)
    >>> cap.feed(b"0123456789abcdefghij")
    >>> cap.getvalue()
    b'01234\\n[rebuilder] log truncated: 10 bytes omitted\\nfghij'
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(0, limit)
        self._tail_max = self.limit // 2
        self._head_max = self.limit - self._tail_max
        self._head = bytearray()
        self._tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = self._head_max - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if data and self._tail_max:
            self._tail += data
            if len(self._tail) > 2 * self._tail_max:
                del self._tail[: len(self._tail) - self._tail_max]

    @property
    def truncated(self) -> int:
        """How many bytes were dropped."""
        return max(0, self.total - self.limit)

    def last_lines(self, n: int = 200) -> list[str]:
        """The last complete-or-not non-blank lines kept (at most ``n``), oldest first.

        >>> cap = LogCap(100)
        >>> cap.feed(b"one\\n\\ntwo\\n")
        >>> cap.last_lines()
        ['one', 'two']
        """
        window = 16384
        if len(self._tail) >= window:
            buf = bytes(self._tail[-window:])
        else:
            buf = bytes(self._head[-(window - len(self._tail)) :]) + bytes(self._tail)
        text = buf.decode(errors="replace").replace("\r", "\n")
        return [ln.strip() for ln in text.splitlines() if ln.strip()][-n:]

    def tail_bytes(self, n: int = 4096) -> bytes:
        """The last ``n`` bytes kept (where a backend's closing summary lines are)."""
        if n <= 0:
            return b""
        tail = bytes(self._tail[-n:])
        if len(tail) == n:
            return tail
        return bytes(self._head[len(self._head) - (n - len(tail)) :]) + tail

    def getvalue(self) -> bytes:
        if not self.truncated:
            return bytes(self._head + self._tail)
        tail = self._tail[len(self._tail) - self._tail_max :] if self._tail_max else b""
        marker = f"\n[rebuilder] log truncated: {self.truncated} bytes omitted\n".encode()
        return bytes(self._head) + marker + bytes(tail)


class Outcome:
    """How a supervised command ended.

    ``how`` is ``exit`` (``code`` is its exit status, negative for a signal),
    ``timeout``, ``cancel`` (the caller's cancel event), ``signal`` (the
    supervisor was told to stop) or ``error`` (the supervisor itself failed;
    ``detail`` says why).
    """

    __slots__ = ("code", "detail", "how")

    def __init__(self, how: str, code: int | None = None, detail: str = "") -> None:
        self.how = how
        self.code = code
        self.detail = detail

    def __repr__(self) -> str:
        return f"Outcome({self.how!r}, {self.code!r}, {self.detail!r})"


# How long past its own timeout the supervisor may take before the runner kills it.
_SUPERVISOR_SLACK = 30.0


def run_supervised(
    cmd: list[str],
    *,
    cwd: str,
    env: dict[str, str],
    timeout: float,
    grace: float,
    log: LogCap,
    cancel: object | None = None,
) -> Outcome:
    """Run ``cmd`` under a supervisor; its stdout+stderr go into ``log``.

    ``cancel`` is a ``threading.Event``: when it is set, the command's group
    is killed and the answer is ``Outcome("cancel")``. Blocks the calling
    thread, which must stay alive until this returns (PDEATHSIG is per thread).
    """
    import selectors
    import subprocess

    proc = subprocess.Popen(
        [
            sys.executable,
            "-I",
            "-S",
            os.path.abspath(__file__),
            "--parent",
            str(os.getpid()),
            "--timeout",
            repr(float(timeout)),
            "--grace",
            repr(float(grace)),
            "--",
            *cmd,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        env=env,
        start_new_session=True,
    )
    assert proc.stdin and proc.stdout and proc.stderr
    status = bytearray()
    backend_pid: int | None = None
    cancelled = False
    hard_deadline = time.monotonic() + timeout + grace + _SUPERVISOR_SLACK
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, log.feed)
    sel.register(proc.stderr, selectors.EVENT_READ, status.extend)
    try:
        while sel.get_map():
            if cancel is not None and not cancelled and cancel.is_set():  # type: ignore[attr-defined]
                cancelled = True
                proc.stdin.close()  # the lifeline: EOF tells the supervisor to stop
            if time.monotonic() > hard_deadline:
                backend_pid = backend_pid or _parse_pid(status)
                _hard_kill(proc, backend_pid)
                return Outcome("error", None, "supervisor did not stop in time; killed")
            for key, _ in sel.select(0.1 if cancel is not None else 1.0):
                data = os.read(key.fd, 1 << 16)
                if data:
                    key.data(data)
                else:
                    sel.unregister(key.fileobj)
        proc.wait()
    finally:
        sel.close()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            f.close()
        if proc.poll() is None:
            _hard_kill(proc, backend_pid or _parse_pid(status))
    return _outcome(proc.returncode, status.decode(errors="replace"), cancelled)


def _parse_pid(status: bytes | bytearray) -> int | None:
    for line in bytes(status).decode(errors="replace").splitlines():
        if line.startswith("pid "):
            return int(line.split()[1])
    return None


def _hard_kill(proc: object, backend_pid: int | None) -> None:
    if backend_pid:
        _killpg(backend_pid, signal.SIGKILL)
    proc.kill()  # type: ignore[attr-defined]
    proc.wait()  # type: ignore[attr-defined]


def _outcome(returncode: int, status: str, cancelled: bool) -> Outcome:
    for line in status.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "done":
            how = "cancel" if cancelled else parts[2]
            return Outcome(how, int(parts[1]))
    if cancelled:
        return Outcome("cancel")
    detail = status.strip().replace("\n", " / ")[-500:]
    return Outcome("error", None, f"supervisor exited with {returncode}: {detail}".rstrip(": "))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
