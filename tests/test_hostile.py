"""A hostile or broken mirror, backend or host, against the real CLI (issue 12).

Each test reproduces one attack and asserts its bound (memory, files, "ends
with a one-line error") and that the state and the site are intact. No test
asserts a duration: timeouts here are guards against a hang.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from rebuilder import audit, config, pipeline, state
from rebuilder.errors import LockedError
from rebuilder.site import paths

from .fixtures.debian import Archive
from .fixtures.http import serve, trickle
from .fixtures.operator import git_log, operator_dir, rebuild

pytestmark = pytest.mark.slow  # runs rebuild


class _Trickle(SimpleHTTPRequestHandler):
    """Serves a directory, but files whose name ends with ``slow`` one byte at a time."""

    slow = "InRelease"

    def do_GET(self) -> None:
        if not self.path.endswith(self.slow):
            super().do_GET()
            return
        trickle(self, 100000, seconds=120)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def trickling(mirror: tuple[Archive, str]) -> Iterator[tuple[Archive, str]]:
    """The fixture archive served by a mirror that trickles its InRelease."""
    a, _ = mirror
    url, stop = serve(a.root, _Trickle)
    yield a, url
    stop()


def settings(work: Path, text: str) -> None:
    cfg = work / "rebuilder.toml"
    cfg.write_text(cfg.read_text().replace("[rebuilder]\n", f"[rebuilder]\n{text}", 1))


def last_line(r: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in r.stderr, r.stderr
    return r.stderr.strip().splitlines()[-1]


# --- point 5: a mirror that sends one byte a second ----------------------------------------


@pytest.mark.parametrize(
    ("setting", "args", "why"),
    [
        ("sync_timeout = 2\n", (), "stopped: the sync of fixture deadline of 2 s passed"),
        ("", ("--max-time", "2"), "stopped: the --max-time deadline of 2 s passed"),
        (
            "download_timeout = 2\n",
            (),
            "no complete answer within 2 s (the deadline for this download)",
        ),
    ],
)
def test_a_trickling_mirror_stops_the_sync_not_the_pass(
    trickling: tuple[Archive, str], tmp_path: Path, setting: str, args: tuple[str, ...], why: str
) -> None:
    a, url = trickling
    work = operator_dir(tmp_path, a, url)
    settings(work, setting)
    r = rebuild(work, "run", *args, timeout=300)  # the timeout is a guard against the hang
    assert r.returncode == 1
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("rebuild: error:")]
    assert errors == [f"rebuild: error: fixture: {url}/dists/fixture/InRelease: {why}"], r.stderr
    assert "pass done: 0 built" in last_line(r)
    assert (work / "site" / "index.html").exists()  # the site is still rendered
    assert not (work / "state" / "fixture.json").exists()  # nothing half-synced was saved


# --- point 4: a render that fails is finished by the next pass ---------------------------


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def test_a_failed_render_is_resumed_and_the_commit_says_what_the_state_holds(
    mirror: tuple[Archive, str], tmp_path: Path
) -> None:
    a, url = mirror
    work = operator_dir(tmp_path, a, url)
    # the render's first file cannot be written (as on a full disk): it fails after the builds
    obstacle = work / "site" / paths.STATUS_BADGES / "GOOD.svg"
    obstacle.mkdir(parents=True)
    r1 = rebuild(work, "run")
    assert r1.returncode == 2
    line = last_line(r1)  # one line naming the file (relative or absolute, as configured)
    assert line.startswith("rebuild: error: ") and line.endswith(
        f"site/{paths.STATUS_BADGES}/GOOD.svg: cannot write: Is a directory"
    ), line
    state = json.loads((work / "state" / "fixture.json").read_text())
    assert len(state["groups"]) == 4  # the builds are safe in the state
    assert git_log(work) == []  # and not committed yet

    obstacle.rmdir()
    r2 = rebuild(work, "run")
    assert r2.returncode == 0, r2.stderr
    assert "pass done: 0 built" in last_line(r2)
    # the site is whole: a full render of it changes nothing
    before = tree(work / "site")
    assert any(k.startswith("p/fixture/") for k in before)
    full = rebuild(work, "render")
    assert full.returncode == 0, full.stderr
    assert tree(work / "site") == before
    # the audit commit describes the builds the state holds, not "0 built"
    (message,) = git_log(work)
    assert message.startswith("rebuilder pass: 4 built (2 GOOD, 1 BAD, 1 FAIL)"), message
    assert not (work / "state" / ".pending.json").exists()


# --- point 12: render and commit hold the state lock ----------------------------------------


def test_render_and_commit_run_under_the_state_lock(
    mirror: tuple[Archive, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, url = mirror
    work = operator_dir(tmp_path, a, url)
    monkeypatch.chdir(work)  # the pass runs here, as `rebuild run` would
    cfg = config.load(work / "rebuilder.toml")
    sd = (work / cfg.settings.state_dir).resolve()
    assert sd.parent == work.resolve()
    seen: list[str] = []

    def spy(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kw: Any) -> Any:
            try:  # a second holder (another pass, `rebuild render`) must be refused now
                with state.locked(sd):
                    seen.append(f"{name}: unlocked")
            except LockedError:
                seen.append(f"{name}: locked")
            return real(*args, **kw)

        return call

    monkeypatch.setattr(pipeline, "render", spy("render", pipeline.render))
    monkeypatch.setattr(audit, "commit", spy("commit", audit.commit))
    pipeline.run_pass(cfg, pipeline.PassOptions(max_builds=0))
    assert seen == ["render: locked", "commit: locked"]

    with state.locked(sd):  # `rebuild render` waits for no one: it refuses, one line
        r = rebuild(work, "render")
    assert r.returncode == 2
    line = last_line(r)
    assert line.startswith("rebuild: error: ") and "state: another pass is running (pid " in line


# --- point 8: the work directories of killed passes are swept ------------------------------


def test_a_pass_sweeps_the_work_dirs_of_dead_passes_only(
    mirror: tuple[Archive, str], tmp_path: Path
) -> None:
    a, url = mirror
    work = operator_dir(tmp_path, a, url)
    base = work / ".cache" / "work"
    dead = base / "pass-dead"  # killed with SIGKILL: its lock file is there, nobody holds it
    (dead / "7-x" / "ro").mkdir(parents=True)
    (dead / "7-x" / "ro" / "big.deb").write_bytes(bytes(1 << 20))
    (dead / "7-x" / "ro").chmod(0o500)  # a backend may leave read-only directories
    (dead / ".lock").write_text("")
    old = base / "pass-old"  # an older version's, without a lock file
    old.mkdir()
    os.utime(old, (time.time() - 86400, time.time() - 86400))
    fresh = base / "pass-fresh"  # created this instant by a pass about to take its lock
    fresh.mkdir()
    live = base / "pass-live"  # a running pass (a shard build on this host) holds its lock
    live.mkdir()
    with (live / ".lock").open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        r = rebuild(work, "run", "--max-builds", "0", "--no-commit")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in base.iterdir()) == ["pass-fresh", "pass-live"]


# --- point 7: a sync that would unpublish most of a profile asks for --force-sync ----------


def test_a_sync_marking_most_groups_gone_needs_force(
    mirror: tuple[Archive, str], tmp_path: Path
) -> None:
    a, url = mirror
    work = operator_dir(tmp_path, a, url)
    assert rebuild(work, "sync").returncode == 0
    path = work / "state" / "fixture.json"
    before = path.read_bytes()
    cfg = work / "rebuilder.toml"
    text = cfg.read_text().replace(
        'components = ["main"]\n', 'components = ["main"]\npkgs = ["reprro*"]\n'
    )
    cfg.write_text(text)  # a typo: matches nothing
    why = (
        "this sync would mark 4 of 4 groups of fixture gone (a filter typo or a half-empty "
        "mirror?); nothing was changed; to accept it, run again with --force-sync "
        "(rebuild sync: --force)"
    )
    r = rebuild(work, "sync")
    assert r.returncode == 2 and last_line(r) == f"rebuild: error: {why}"
    r = rebuild(work, "run", "--no-commit")
    assert r.returncode == 1
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("rebuild: error")] == [
        f"rebuild: error: fixture: {why}"
    ]
    assert path.read_bytes() == before  # the state is intact
    assert rebuild(work, "sync", "--force").returncode == 0
    groups = json.loads(path.read_text())["groups"]
    assert len(groups) == 4 and not any(g["seen"] for g in groups.values())
