"""A Debian sid chroot with rebuilderd's own tools, for tests that run them for real.

rebuildctl, rebuilderd, rebuilderd-worker (0.28) and debian-repro-status (0.4) need a
libc newer than this host's, so they run in a sid chroot made with mmdebstrap from the
mirror this host's apt sources name (never written down here). nginx and Caddy come
along, to test the web server rules of docs/site.md. The chroot is built once a day and
kept (``$XDG_CACHE_HOME/rebuilder-tests/sid-tools-<date>``, under a lock, so parallel
sessions build it once); tools run with ``chroot`` in a private mount namespace that
shares the host's network, so they reach servers on 127.0.0.1. Host directories are bound
at ``/srv/a``, ``/srv/b``... inside.

When the chroot cannot be made (no root, no mirror, no mmdebstrap), :func:`sid_tools`
skips with the reason, and fails under CI (``CI=true``).
"""

from __future__ import annotations

import datetime
import fcntl
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from rebuilder.config import host_apt_mirror
from rebuilder.errors import ConfigError

PACKAGES = ("rebuildctl", "rebuilderd", "rebuilderd-worker", "debian-repro-status", "nginx",
            "caddy")  # fmt: skip
MOUNTS = ("a", "b", "c")
BUILD_TIMEOUT = 1800  # seconds for mmdebstrap


@dataclass(frozen=True)
class SidTools:
    root: Path

    def command(self, argv: Sequence[str], binds: Mapping[Path, str] | None = None,
                cwd: str = "/") -> list[str]:  # fmt: skip
        """``argv`` run inside the chroot, ``binds`` (host dir -> one of /srv/a, /srv/b...)
        mounted in a mount namespace of its own."""
        script = ["set -e"]
        args: list[str] = []
        for i, (src, dst) in enumerate((binds or {}).items()):
            assert dst in {f"/srv/{m}" for m in MOUNTS}, dst
            script.append(f'mount --bind "${{{i + 3}}}" "$1{dst}"')
            args.append(str(src))
        script.append('mount -t proc proc "$1/proc"')
        n = len(args) + 3
        script.append(f'root=$1; dir=$2; shift {n - 1}; exec chroot "$root" sh -c '
                      "'cd \"$0\" && exec \"$@\"' \"$dir\" \"$@\"")  # fmt: skip
        return ["unshare", "--mount", "--propagation", "private", "sh", "-c", "\n".join(script),
                "sh", str(self.root), cwd, *args, *argv]  # fmt: skip

    def run(
        self,
        argv: Sequence[str],
        binds: Mapping[Path, str] | None = None,
        *,
        cwd: str = "/",
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(argv, binds, cwd),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_env(env),
            stdin=subprocess.DEVNULL,
        )

    def start(
        self,
        argv: Sequence[str],
        binds: Mapping[Path, str] | None = None,
        *,
        cwd: str = "/",
        log: Path,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.Popen[bytes]:
        with log.open("wb") as out:
            return subprocess.Popen(
                self.command(argv, binds, cwd),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=_env(env),
                start_new_session=True,
            )


def _env(extra: Mapping[str, str] | None) -> dict[str, str]:
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "LC_ALL": "C.UTF-8"}
    return {**base, **(extra or {})}


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End a process started with :meth:`SidTools.start`, and its whole session."""
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait(10)


def unavailable(why: str) -> None:
    """Skip with the reason; under CI a missing tool is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"sid chroot with rebuilderd's tools: {why}")
    pytest.skip(f"sid chroot with rebuilderd's tools: {why}")


def cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "rebuilder-tests"


def sid_tools() -> SidTools:
    """The day's chroot, made when missing (a few minutes), else skip/fail with why."""
    if os.geteuid() != 0:
        unavailable("chroot and bind mounts need root")
    for tool in ("mmdebstrap", "unshare", "chroot"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} is not installed (scripts/setup installs it)")
    try:
        mirror = host_apt_mirror(None)
    except ConfigError as e:
        unavailable(str(e))
    base = cache_dir()
    base.mkdir(parents=True, exist_ok=True)
    day = datetime.datetime.now(datetime.UTC).strftime("%Y%m%d")
    root = base / f"sid-tools-{day}"
    with (base / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "usr/bin/rebuildctl").exists():
            _build(base, root, mirror)
    return SidTools(root)


def _build(base: Path, root: Path, mirror: str) -> None:
    for old in base.glob("sid-tools-*"):
        shutil.rmtree(old, ignore_errors=True)  # yesterday's, or a build cut short
    tmp = base / f".building-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    cmd = [
        "mmdebstrap", "--variant=apt", "--quiet",
        '--aptopt=Acquire::Check-Valid-Until "false"',
        '--aptopt=APT::Install-Recommends "false"',
        f"--include={','.join(PACKAGES)}",
        *(f"--customize-hook=mkdir -p $1/srv/{m}" for m in MOUNTS),
        "sid", str(tmp), mirror,
    ]  # fmt: skip
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=BUILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        shutil.rmtree(tmp, ignore_errors=True)
        unavailable(f"mmdebstrap took longer than {BUILD_TIMEOUT} s")
    if r.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        tail = " | ".join(r.stderr.strip().splitlines()[-3:])
        unavailable(f"mmdebstrap failed ({r.returncode}): {tail}")
    tmp.rename(root)
