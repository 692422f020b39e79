"""``rebuild doctor``: each method's tools, what this host lacks, the apt packages; and a
build whose method lacks a tool FAILs saying which, before its backend starts."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from rebuilder.build import tools

from .fixtures.debian import Archive
from .fixtures.operator import fixture_profile, operator_workdir, rebuild

pytestmark = pytest.mark.slow  # runs rebuild


def _narrow_path(tmp_path: Path, keep: tuple[str, ...]) -> str:
    """A PATH holding only ``keep`` (what the pass itself needs), so that every build tool
    is missing however well this host is equipped."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in keep:
        found = shutil.which(name)
        assert found, name
        os.symlink(found, bin_dir / name)
    return str(bin_dir)


def test_apt_lists_what_the_configured_methods_need(tmp_path: Path) -> None:
    work = operator_workdir(
        tmp_path,
        '[profile."p"]\ndistro = "debian"\nreleases = ["bookworm"]\n'
        'source = "https://mirror.example/debian"\nmethod = "suite-chroot"\n',
    )
    r = rebuild(work, "doctor", "--apt")
    assert r.returncode == 0, r.stderr
    pkgs = r.stdout.split()
    assert {"mmdebstrap", "debian-archive-keyring", "git", "diffoscope-minimal"} <= set(pkgs)
    assert "devscripts" not in pkgs and "sbuild" not in pkgs  # debrebuild's, not configured
    assert pkgs == tools.apt_packages(["debian-suite-chroot"], ["debian"])


def test_doctor_names_missing_tools_and_their_packages(tmp_path: Path) -> None:
    work = operator_workdir(
        tmp_path,
        '[profile."p"]\ndistro = "debian"\nreleases = ["bookworm"]\n'
        'source = "https://mirror.example/debian"\n',
    )
    path = _narrow_path(tmp_path, ("git",))
    r = rebuild(work, "doctor", env={"PATH": path})
    assert r.returncode == 1
    assert "method debian (profiles: p)" in r.stdout
    lines = r.stdout.splitlines()
    assert any(ln.split()[:3] == ["MISSING", "debrebuild", "devscripts"] for ln in lines)
    assert any(ln.split()[:3] == ["ok", "git", "git"] for ln in lines)
    assert "debian-suite-chroot" not in r.stdout  # only the configured methods
    assert "apt-get install" in r.stderr


def test_a_missing_tool_fails_the_build_saying_which(
    mirror: tuple[Archive, str], tmp_path: Path
) -> None:
    a, url = mirror
    # the shipped debrebuild backend (no [backend] override) on a host without its tools
    work = operator_workdir(tmp_path, fixture_profile(a, url))
    path = _narrow_path(tmp_path, ("git", "gpgv", "gpg"))
    r = rebuild(work, "run", env={"PATH": path})
    assert r.returncode == 0, r.stderr
    data = json.loads((work / "state" / "fixture.json").read_text())
    reasons = {rec["attempts"][-1]["reason"] for rec in data["groups"].values()}
    assert reasons == {
        "missing tools for method debian: debrebuild (apt: devscripts), sbuild (apt: sbuild), "
        "mmdebstrap (apt: mmdebstrap), newuidmap (apt: uidmap)"
        + "".join(
            f", {t.command} (apt: {t.package})"
            for t in tools.METHOD_TOOLS["debian"]
            if t.path and not t.present()
        )
    }, reasons
    assert all(rec["status"] == "FAIL" for rec in data["groups"].values())
