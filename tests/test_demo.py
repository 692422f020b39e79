"""The README's main job, for real: the built-in demo pass against Debian's archive.

Marked ``network``: it needs this host's Debian mirror (from its apt sources)
and skips, with the reason, when that is unreachable; it never passes silently.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from rebuilder.config import host_apt_mirror
from rebuilder.errors import ConfigError

pytestmark = pytest.mark.slow  # runs rebuild's demo over Debian's archive

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "rebuilder" / "demo" / "debian-bookworm.toml"
EXPECTED = {"distro-info-data", "debvm", "midge"}


def _mirror_or_skip() -> str:
    try:
        mirror = os.environ.get("REBUILDER_TEST_MIRROR") or host_apt_mirror("bookworm")
    except ConfigError as e:
        pytest.skip(f"no Debian mirror for bookworm: {e}")
    try:
        requests.head(f"{mirror}/dists/bookworm/InRelease", timeout=15).raise_for_status()
    except requests.RequestException as e:
        pytest.skip(f"Debian's archive is unreachable at {mirror}: {e}")
    return mirror


@pytest.mark.network
@pytest.mark.slow
def test_demo_pass_reproduces_real_bookworm_packages(tmp_path: Path) -> None:
    _mirror_or_skip()
    work = tmp_path / "demo"
    work.mkdir()
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    # as scripts/demo does: state, site and caches follow the config file, so it is copied here
    shutil.copyfile(DEMO, work / "rebuilder.toml")
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run(
        [sys.executable, str(REPO / "rebuild.py"), "run", "--config", "rebuilder.toml"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    assert "pass done: 3 built (3 GOOD, 0 BAD, 0 FAIL)" in r.stderr, r.stderr[-3000:]

    state = json.loads((work / "state" / "debian-bookworm-demo.json").read_text())
    groups = state["groups"].values()
    assert {g["group"]["name"] for g in groups} == EXPECTED
    for g in groups:
        assert g["status"] == "GOOD" and g["group"]["method"] == "suite-chroot"
        files = g["attempts"][-1]["files"]
        # the real build environment is recorded beside the log
        installed = work / "site" / "builds" / files["meta/installed-packages.txt"]
        assert "dpkg" in installed.read_text()
        (buildinfo,) = [k for k in files if k.endswith(".buildinfo")]
        text = (work / "site" / "builds" / files[buildinfo]).read_text()
        assert f"Source: {g['group']['name']}" in text and "Installed-Build-Depends:" in text

        # ... and linked from its page on the site, which names the build method
        page = next((work / "site" / "p").rglob(f"pkg/{g['group']['name']}.html")).read_text()
        assert "suite-chroot" in page and "installed-packages.txt" in page

    index = (work / "site" / "index.html").read_text()
    assert "debian-bookworm-demo" in index
    pkgs = json.loads((work / "site" / "debian" / "api" / "v0" / "pkgs" / "list").read_text())
    assert {p["name"]: p["status"] for p in pkgs} == dict.fromkeys(EXPECTED, "GOOD")
    log = subprocess.run(
        ["git", "-C", str(work), "log", "--format=%s"], capture_output=True, text=True, check=True
    ).stdout
    assert log.startswith("rebuilder pass: 3 built (3 GOOD)")
