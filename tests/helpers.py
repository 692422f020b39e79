"""Small builders of domain objects shared by the unit tests."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rebuilder.model import Artifact, Attempt, BuildGroup, Status

from .debian_archive import Archive

REPO = Path(__file__).resolve().parent.parent
BACKEND = REPO / "tests" / "backends" / "debian-from-source.sh"

T0 = dt.datetime(2026, 1, 1, 12, 0, 0)


def group(
    name: str = "hello", version: str = "1.0-1", arch: str = "amd64", **kw: Any
) -> BuildGroup:
    """A Debian group of one artifact; ``kw``: ``sha256`` of the artifact, other group fields."""
    url = f"https://mirror.example/pool/{name}_{version}_{arch}.deb"
    art = Artifact(name, version, arch, url, kw.pop("sha256", "a" * 64), 100)
    input_url = f"https://mirror.example/{name}.buildinfo"
    return BuildGroup(name, version, "debian", "bookworm", "main", arch, input_url, (art,), **kw)


def attempt(
    g: BuildGroup, status: Status, build_id: int = 1, at: dt.datetime = T0, reason: str = ""
) -> Attempt:
    return Attempt(build_id, g.version, status, at, 10.0, "test.sh", reason, g.inputs_digest)


def operator_dir(
    tmp_path: Path, a: Archive, url: str, backend: Path = BACKEND, method: str = "debrebuild"
) -> Path:
    return operator_workdir(
        tmp_path,
        f"""
[profile."fixture"]
distro = "debian"
releases = ["{a.suite}"]
components = ["main"]
architectures = ["{a.arch}", "all"]
source = "{url}"
keyring = "{a.keyring}"
buildinfo_url = "{url}"
method = "{method}"

[backend."{"debian" if method == "debrebuild" else "debian-" + method}"]
path = "{backend}"
""",
    )


def operator_workdir(tmp_path: Path, profiles: str, settings: str = "") -> Path:
    """An operator's working directory: a git work tree with a rebuilder.toml."""
    work = tmp_path / "op"
    work.mkdir()
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    rebuilder = "[rebuilder]\njobs = 2\nbuild_timeout = 300\ndiffoscope_timeout = 120\n"
    (work / "rebuilder.toml").write_text(rebuilder + settings + profiles)
    return work


def rebuild(
    work: Path, *args: str, timeout: float = 600, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the real ``rebuild`` command in ``work``, as cron would (``env``: extra variables)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), **(env or {}))
    return subprocess.run(
        [sys.executable, str(REPO / "rebuild.py"), *args],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
