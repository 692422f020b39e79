"""The registry of distributions (rebuilder/distros.py): every entry is complete, and every
distribution module and shipped backend script is in it."""

from __future__ import annotations

import os
import string
import subprocess
import sys
from pathlib import Path

import pytest

from rebuilder import config, distros
from rebuilder.build.backends import HERE as BACKENDS_DIR
from rebuilder.build.backends import shipped_backend
from rebuilder.errors import ConfigError
from rebuilder.model import Artifact, BuildGroup, Job
from rebuilder.pipeline import backend_name
from rebuilder.site import links
from rebuilder.sync import syncer

from .fixtures import ROOT

GROUP_FIELDS = {"name", "version", "release", "component", "architecture"}


@pytest.mark.parametrize("name", list(distros.DISTROS))
def test_every_distribution_is_complete(name: str, tmp_path: Path) -> None:
    d = distros.get(name)
    assert d.name == name
    # its syncer is a module with a sync(profile, ctx)
    assert d.syncer == f"rebuilder.sync.{name}"
    assert callable(syncer(name))
    # its backends are shipped, executable, and found by the names the pipeline uses
    for method, script in [(d.default_method, d.backend), *d.methods.items()]:
        assert os.access(BACKENDS_DIR / script, os.X_OK), f"{script} is missing or not executable"
        job = Job("p", _group(name, method), "new")
        assert shipped_backend(backend_name(job)) == BACKENDS_DIR / script
    # a profile of it loads; without releases only where none are needed
    releases = 'releases = ["r1"]\n' if d.needs_releases else ""
    toml = f'[profile."p"]\ndistro = "{name}"\nsource = "https://mirror.example/x"\n'
    (tmp_path / "rebuilder.toml").write_text(toml + releases)
    assert config.load(tmp_path / "rebuilder.toml").profiles["p"].distro == name
    if d.needs_releases:
        (tmp_path / "rebuilder.toml").write_text(toml)
        with pytest.raises(ConfigError, match="at least one release is needed"):
            config.load(tmp_path / "rebuilder.toml")
    # its package page, if any, uses only a group's fields and links over HTTPS
    if d.package_page:
        used = {f for _, f, _, _ in string.Formatter().parse(d.package_page) if f}
        assert used <= GROUP_FIELDS, used - GROUP_FIELDS
        page = links.package_page(links.PACKAGE_PAGES, name, **dict.fromkeys(GROUP_FIELDS, "x"))
        assert page is not None and page.startswith("https://")


def test_every_module_and_script_is_registered() -> None:
    modules = {p.stem for p in (ROOT / "rebuilder" / "sync").glob("[!_]*.py")}
    assert modules == set(distros.DISTROS)
    scripts = {p.name for p in BACKENDS_DIR.glob("*.sh")}
    assert scripts == set(distros.shipped_backends().values())


def test_an_unknown_distribution_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "rebuilder.toml").write_text('[profile."p"]\ndistro = "gentoo"\n')
    with pytest.raises(ConfigError, match="distro: expected one of alpine, archlinux, debian"):
        config.load(tmp_path / "rebuilder.toml")
    with pytest.raises(KeyError, match="unknown distribution 'gentoo'"):
        distros.get("gentoo")
    assert distros.backend_name("gentoo", "emerge") == "gentoo"  # a group's own method


def _group(distro: str, method: str | None) -> BuildGroup:
    art = Artifact("a", "1", "amd64", "https://mirror.example/a", "0" * 64, 1)
    url = "https://mirror.example/in"
    return BuildGroup("a", "1", distro, "r1", "main", "amd64", url, (art,), method=method or "")


@pytest.mark.parametrize(
    "module", ["rebuilder.distros", *(d.syncer for d in distros.DISTROS.values())]
)
def test_imports_have_no_cycle(module: str) -> None:
    """Each module imports first, alone (a cycle shows up as a half-initialised module)."""
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=False
    )
    assert r.returncode == 0, r.stderr
    ours = {m for m in r.stdout.split() if m.startswith("rebuilder")}
    if module == "rebuilder.distros":  # the ground floor: nothing but the package itself
        assert ours <= {"rebuilder", "rebuilder.errors", "rebuilder.distros"}, ours
