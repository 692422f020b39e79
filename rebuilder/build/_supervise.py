"""Supervisor: run one backend in its own process group and make sure it never outlives us.

Every backend (and every diffoscope run) runs under a small supervisor process,
standard library only. It exists because killing the Python pass, even with
``kill -9``, must kill the backend and everything the backend started:

* fd 0 is a *lifeline* pipe whose write end only the pass holds: it reads EOF
  when the pass dies (for any reason) or closes it on purpose to cancel the
  build. Either way we kill the backend's group.
* ``PR_SET_PDEATHSIG`` makes the kernel send us SIGTERM when our parent dies,
  and our parent is the fork server (below), which has PDEATHSIG on the pass's
  *keeper* thread: a thread that lives as long as the pass. It fires on the death
  of the parent *thread*, which is why a pool thread, which may exit, never starts
  the fork server.
* ``PR_SET_CHILD_SUBREAPER`` makes descendants that escape the group (``setsid``,
  double fork) our children when orphaned, so they are found and killed too.

A new Python interpreter per build would cost most of a no-op build's CPU
(15-25 ms), so supervisors are forked from a *fork server*: one ``python -I -S
_supervise.py --serve`` per pass, started on the first build, which imports
nothing more and forks one supervisor per request. Its fd 0 is a Unix socket
from the pass; a request is the supervisor's three fds (passed with
``SCM_RIGHTS``) and a JSON body (command, cwd, environment, timeout, grace). It
exits when the socket reads EOF (the pass is gone or done). Should it die, the
next request starts a new one; a build whose request it took but did not fork
FAILs with a one-line reason, and running supervisors stop their builds (their
PDEATHSIG).

Protocol of one supervisor (fds as the fork server sets them up):
  fd 0  lifeline; EOF or any byte = stop now
  fd 1  the log: the backend's stdout and stderr, plus our own ``[rebuilder]`` notes
  fd 2  status lines for the runner: ``supervisor N`` (its own pid) at once,
        ``pid N`` once the backend started, then
        ``done CODE HOW`` with HOW one of ``exit timeout cancel signal``

The runner's side of the protocol, :func:`run_supervised` and the fork server's
client, lives here too, so that the whole protocol is in one file; it imports what
it needs lazily to keep the fork server's own start-up small.
"""

from __future__ import annotations

# _signal, not signal, and no contextlib: both import enum, which cost the fork server
# a third of its start-up CPU.
import _signal as signal  # type: ignore[import-not-found]
import ctypes
import os
import re
import select
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import socket

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)
_libc: ctypes.CDLL | None = None


def _prctl(option: int, arg: int) -> bool:
    global _libc
    try:
        if _libc is None:
            _libc = ctypes.CDLL(None, use_errno=True)
        return bool(_libc.prctl(option, ctypes.c_ulong(arg), 0, 0, 0) == 0)
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


def _spawn(cmd: list[str], env: dict[str, str]) -> int:
    """Start ``cmd`` in a new session: stdin /dev/null, stdout+stderr = our fd 1; its pid.

    ``posix_spawn`` (a vfork in glibc), not ``fork``: a forked Python child copies
    the pages it touches, which cost more CPU than a no-op backend itself. Raises
    OSError when it cannot be started.
    """
    # posix_spawnp searches our own PATH: make it the backend's, as execvpe would.
    if "PATH" in env:
        os.environ["PATH"] = env["PATH"]
    else:
        os.environ.pop("PATH", None)
    return os.posix_spawnp(
        cmd[0],
        cmd,
        env,
        file_actions=[
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ],
        setsid=True,
        setsigdef=(*_STOP_SIGNALS, signal.SIGCHLD, signal.SIGPIPE, signal.SIGXFSZ),
    )


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
    try:  # os.open, not open(): a text file object touches more of a forked process's memory
        fd = os.open(f"/proc/self/task/{me}/children", os.O_RDONLY)
        try:
            return [int(p) for p in os.read(fd, 1 << 16).split()]
        finally:
            os.close(fd)
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


def supervise(
    cmd: list[str], env: dict[str, str], timeout: float, grace: float, server: int
) -> int:
    """Run ``cmd`` to its end, fds 0-2 set up as the protocol says; our exit status.

    ``server`` is the pid of the fork server, our parent.
    """
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    for sig in (*_STOP_SIGNALS, signal.SIGCHLD):
        signal.signal(sig, lambda *_: None)
    _write(2, f"supervisor {os.getpid()}\n")
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != server or select.select([0], [], [], 0)[0]:
        return 3  # the server died before PDEATHSIG was armed, or the pass is gone: start nothing
    _prctl(PR_SET_CHILD_SUBREAPER, 1)

    try:
        pid = _spawn(cmd, env)
    except OSError as e:
        _note(f"cannot run {cmd[0]}: {e}")
        _write(2, "done 127 exit\n")
        return 0
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


def _receive(ctl: socket.socket) -> tuple[list[int], dict[str, Any]] | None:
    """One request from the pass: its fds and its body; None once the pass is gone."""
    import json
    import socket

    flags = socket.MSG_WAITALL | socket.MSG_CMSG_CLOEXEC
    head, anc, _, _ = ctl.recvmsg(8, socket.CMSG_SPACE(3 * 4), flags)
    fds: list[int] = []
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += [int.from_bytes(data[i : i + 4], sys.byteorder) for i in range(0, len(data), 4)]
    if len(head) < 8:
        for fd in fds:
            os.close(fd)
        return None
    size, body = int.from_bytes(head, "big"), bytearray()
    while len(body) < size:
        chunk = ctl.recv(min(size - len(body), 1 << 20))
        if not chunk:
            return None
        body += chunk
    return fds, json.loads(body)


def _fork_supervisor(ctl: socket.socket, fds: list[int], req: dict[str, Any]) -> None:
    """Fork one supervisor for ``req``, its fds (lifeline, log, status) as fds 0-2."""
    server = os.getpid()
    try:
        pid = os.fork()
    except OSError as e:
        _write(fds[2], f"the fork server cannot fork: {e}\n")
        pid = -1
    if pid != 0:  # the server (forked or not): the fds are the supervisor's, or nobody's
        for fd in fds:
            os.close(fd)
        return
    code = 70
    try:
        ctl.detach()  # fd 0 is about to become the lifeline
        for new, fd in enumerate(fds):
            os.dup2(fd, new)
        for fd in fds:
            os.close(fd)
        os.setsid()
        os.chdir(req["cwd"])
        code = supervise(req["cmd"], req["env"], req["timeout"], req["grace"], server)
    except BaseException as e:
        _write(2, f"supervisor failed: {type(e).__name__}: {e}\n")
    os._exit(code)


def serve(parent: int) -> int:
    """The fork server: fork a supervisor per request on fd 0 until EOF."""
    import gc
    import socket

    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)  # the pass's keeper thread
    if os.getppid() != parent:
        return 3
    ctl = socket.socket(fileno=0)
    # No collection walking (and so writing to) every object: a forked supervisor copies
    # each page it writes to.
    gc.freeze()
    gc.disable()
    while True:
        # Wake now and then to reap the supervisors that ended; a request also does.
        ready = select.select([ctl], [], [], 1.0)[0]
        while True:
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        if not ready:
            continue
        try:
            request = _receive(ctl)
        except (OSError, ValueError):
            request = None
        if request is None:
            break
        fds, req = request
        if len(fds) == 3:
            _fork_supervisor(ctl, fds, req)
        else:
            for fd in fds:
                os.close(fd)
    # The pass is done (or gone): wait for our supervisors, whose CPU is then counted as ours.
    while True:
        try:
            os.wait()
        except ChildProcessError:
            return 0


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[:2] != ["--serve", "--parent"]:
        raise SystemExit("usage: _supervise.py --serve --parent PID")
    return serve(int(argv[2]))


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


class ForkServer:
    """The pass's side of the fork server: start it (again) when needed, send it requests.

    One per process (:data:`SERVER`); thread-safe. It is started by a *keeper*
    thread that lives as long as the pass, so that its PDEATHSIG fires only when the
    pass dies, not when the pool thread that happened to ask first exits.
    """

    def __init__(self) -> None:
        import threading

        self._lock = threading.Lock()
        self._reset()

    def _reset(self) -> None:
        self._proc: Any = None
        self._sock: Any = None
        self._keeper: Any = None  # the keeper thread's queue of start requests
        self._retired: list[Any] = []  # servers told to exit, not yet reaped

    @property
    def pid(self) -> int | None:
        """The running fork server's pid, if one is running."""
        with self._lock:
            alive = self._proc is not None and self._proc.poll() is None
            return int(self._proc.pid) if alive else None

    def submit(self, body: dict[str, Any], fds: list[int]) -> None:
        """Ask for one supervisor; ``fds`` are its lifeline, log and status. Raises OSError."""
        import json
        import socket

        data = json.dumps(body).encode()
        head = len(data).to_bytes(8, "big")
        rights = [
            (
                socket.SOL_SOCKET,
                socket.SCM_RIGHTS,
                b"".join(fd.to_bytes(4, sys.byteorder) for fd in fds),
            )
        ]
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._proc is None or self._proc.poll() is not None:
                        self._start()
                    self._sock.sendmsg([head], rights)
                    self._sock.sendall(data)
                    return
                except OSError as e:
                    self._retire()  # a request may be half sent: the next goes to a new one
                    if attempt == 2:
                        raise OSError(f"the fork server is not answering: {e}") from None

    def _start(self) -> None:
        import concurrent.futures
        import queue
        import threading

        self._retire()
        if self._keeper is None:
            self._keeper = queue.SimpleQueue()
            threading.Thread(
                target=_keep, args=(self._keeper,), name="rebuild-fork-server", daemon=True
            ).start()
        future: concurrent.futures.Future[tuple[Any, Any]] = concurrent.futures.Future()
        self._keeper.put(future)
        self._proc, self._sock = future.result()

    def _retire(self) -> None:
        """Let the current server go: it sees EOF, waits for its supervisors (running
        builds go on) and exits; we reap it later."""
        if self._sock is not None:
            self._sock.close()
        if self._proc is not None:
            self._retired.append(self._proc)
        self._proc = self._sock = None
        self._retired = [proc for proc in self._retired if proc.poll() is None]

    def shutdown(self, timeout: float = 5.0) -> None:
        """Stop the fork server, once no build runs (it starts again on demand); waits for it
        and its supervisors, so that their CPU is counted as our children's."""
        import subprocess

        with self._lock:
            self._retire()
            for proc in self._retired:
                try:
                    proc.wait(timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            self._retired = []

    def after_fork(self) -> None:
        """In a forked child of the pass: forget the parent's server, start our own if asked."""
        import threading

        if self._sock is not None:
            self._sock.close()  # our copy only: the parent's server must see EOF when it goes
        self._lock = threading.Lock()
        self._reset()


def _keep(requests: Any) -> None:
    """The keeper thread: start fork servers when asked, then idle for the pass's life."""
    import socket
    import subprocess

    while True:
        future = requests.get()
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            with theirs:
                proc = subprocess.Popen(
                    [sys.executable, "-I", "-S", os.path.abspath(__file__), "--serve",
                     "--parent", str(os.getpid())],
                    stdin=theirs.fileno(),
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    cwd="/",
                    start_new_session=True,
                )  # fmt: skip
            future.set_result((proc, ours))
        except BaseException as e:
            future.set_exception(e)


SERVER = ForkServer()
os.register_at_fork(after_in_child=SERVER.after_fork)


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
    is killed and the answer is ``Outcome("cancel")``.
    """
    import selectors

    life_r, life_w = os.pipe()
    out_r, out_w = os.pipe()
    status_r, status_w = os.pipe()
    body = {"cmd": cmd, "cwd": cwd, "env": env, "timeout": float(timeout), "grace": float(grace)}
    try:
        SERVER.submit(body, [life_r, out_w, status_w])
    except Exception as e:  # e.g. no thread can start at interpreter exit: this build FAILs
        for fd in (life_w, out_r, status_r):
            os.close(fd)
        return Outcome("error", None, f"cannot start the supervisor: {e}")
    finally:
        for fd in (life_r, out_w, status_w):
            os.close(fd)  # the supervisor has them now: EOF on ours means it is gone
    status = bytearray()
    cancelled = False
    hard_deadline = time.monotonic() + timeout + grace + _SUPERVISOR_SLACK
    sel = selectors.DefaultSelector()
    sel.register(out_r, selectors.EVENT_READ, log.feed)
    sel.register(status_r, selectors.EVENT_READ, status.extend)
    try:
        while sel.get_map():
            if cancel is not None and not cancelled and cancel.is_set():  # type: ignore[attr-defined]
                cancelled = True
                os.close(life_w)  # the lifeline: EOF tells the supervisor to stop
                life_w = -1
            if time.monotonic() > hard_deadline:
                _hard_kill(status, supervisor_alive=status_r in sel.get_map())
                return Outcome("error", None, "supervisor did not stop in time; killed")
            for key, _ in sel.select(0.1 if cancel is not None else 1.0):
                data = os.read(key.fd, 1 << 16)
                if data:
                    key.data(data)
                else:
                    sel.unregister(key.fd)
                    if key.fd == status_r and b"\ndone " not in b"\n" + status:
                        # The supervisor died (kill -9, out of memory) without a verdict:
                        # its backend's group goes now, as the supervisor would have done,
                        # instead of holding the log open until the hard deadline.
                        _hard_kill(status, supervisor_alive=False)
                        if out_r in sel.get_map():
                            sel.unregister(out_r)
                        break
    except BaseException:
        # Ctrl-C in this thread: the backend's group goes now; closing the lifeline
        # (below) has the supervisor finish off any escaped processes and exit.
        if status_r in sel.get_map():
            _hard_kill(status, supervisor_alive=False)
        raise
    finally:
        sel.close()
        for fd in (life_w, out_r, status_r):
            if fd >= 0:
                os.close(fd)
    return _outcome(status.decode(errors="replace"), cancelled)


_PID_LINE = re.compile(r"(supervisor|pid) ([0-9]+)")


def _status_pid(status: bytes | bytearray, key: str) -> int | None:
    for line in bytes(status).decode(errors="replace").splitlines():
        if (m := _PID_LINE.fullmatch(line)) and m[1] == key:
            return int(m[2])
    return None


def _hard_kill(status: bytes | bytearray, *, supervisor_alive: bool) -> None:
    """SIGKILL the backend's group and, while its status pipe is open (so its pid is still
    its own), the supervisor."""
    backend = _status_pid(status, "pid")
    if backend:
        _killpg(backend, signal.SIGKILL)
    supervisor = _status_pid(status, "supervisor")
    if supervisor and supervisor_alive:
        try:  # noqa: SIM105
            os.kill(supervisor, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _outcome(status: str, cancelled: bool) -> Outcome:
    for line in status.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "done":
            how = "cancel" if cancelled else parts[2]
            return Outcome(how, int(parts[1]))
    if cancelled:
        return Outcome("cancel")
    lines = [ln for ln in status.splitlines() if not _PID_LINE.fullmatch(ln)]
    detail = " / ".join(lines).strip()[-500:]
    return Outcome(
        "error", None, "supervisor ended without a verdict" + (f": {detail}" * bool(detail))
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
