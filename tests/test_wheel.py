"""A non-editable install from the wheel renders the same site as the checkout (issue 10).

The wheel and its dependencies are built from PyPI (reachable) into a folder, installed into
a fresh venv with ``--no-index``, and that venv's own ``rebuild`` runs a pass from another
folder; nothing of the checkout is on its path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .fixtures import ROOT as REPO
from .fixtures.debian import Archive
from .fixtures.operator import operator_dir, rebuild


@pytest.mark.slow
def test_wheel_install_runs_and_renders_like_the_checkout(
    mirror: tuple[Archive, str], tmp_path: Path
) -> None:
    wheels = tmp_path / "wheels"
    # from a copy: setuptools writes build/ and *.egg-info into the tree it builds
    src = tmp_path / "src"
    ls = ["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard"]
    tracked = subprocess.run(ls, capture_output=True, text=True, check=True).stdout.splitlines()
    for rel in tracked:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        if (REPO / rel).is_symlink():  # rebuilder/site_templates: the templates' one copy
            (src / rel).symlink_to((REPO / rel).readlink())
        elif (REPO / rel).is_file():
            shutil.copy2(REPO / rel, src / rel)
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "-w", str(wheels), str(src)], check=True, timeout=900)
    (wheel,) = wheels.glob("rebuilder-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [
            venv / "bin/python",
            "-m",
            "pip",
            "-q",
            "--disable-pip-version-check",
            "install",
            "--no-index",
            "--find-links",
            str(wheels),
            str(wheel),
        ],
        check=True,
        timeout=600,
    )
    a, url = mirror
    work = operator_dir(tmp_path, a, url)
    cron = tmp_path / "cron"
    cron.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    r = subprocess.run(
        [venv / "bin/rebuild", "run", "--config", str(work / "rebuilder.toml"), "--no-commit"],
        cwd=cron,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr
    installed = subprocess.run(
        [venv / "bin/python", "-c", "import rebuilder; print(rebuilder.__file__)"],
        cwd=cron,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert installed.startswith(str(venv))  # the wheel's copy, not the checkout
    assert "pass done: 4 built (2 GOOD, 1 BAD, 1 FAIL)" in r.stderr
    site = work / "site"
    assert (site / "static" / "style.css").is_file()
    assert "repro" in (site / "index.html").read_text()

    # the checkout renders the same files from that state and results store
    site2 = tmp_path / "site2"
    shutil.copytree(site / "builds", site2 / "builds")
    r = rebuild(work, "render", "--site-dir", str(site2))
    assert r.returncode == 0, r.stderr

    def published(root: Path) -> list[str]:
        """The site's files, without the renderer's own hidden ones (.render-cache, and the
        compiled templates, whose names follow where the templates are installed)."""
        rels = (p.relative_to(root) for p in root.rglob("*") if p.is_file())
        return sorted(str(r) for r in rels if not r.parts[0].startswith("."))

    files = published(site)
    assert files == published(site2)
    assert "index.html" in files and "static/style.css" in files
    for f in ("debian/api/v0/pkgs/list", "static/style.css", "static/search.js"):
        assert (site / f).read_bytes() == (site2 / f).read_bytes(), f
