"""``rebuild build debian <.deb URL> --method suite-chroot --release bookworm`` out of the box,
with the real suite-chroot backend against Debian's archive (the mirror of this host's apt
sources): the .dsc is found in the mirror's Sources, its files downloaded, base chroots
cached under the cache dir. Skips, with the reason, where the archive or namespaces are not
available (as tests/test_backend_suite_chroot.py does)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .fixtures.debian_mirror import DebianMirror, namespaces_usable
from .fixtures.operator import rebuild


@pytest.mark.network
@pytest.mark.slow
def test_build_one_deb_with_suite_chroot(debian_archive: DebianMirror, tmp_path: Path) -> None:
    if reason := namespaces_usable():
        pytest.skip(reason)
    archive = debian_archive
    pkgs = [p for p in archive.index("bookworm", "main/binary-all/Packages.xz")
            if p["Package"] == "distro-info-data"]  # fmt: skip
    if not pkgs:
        pytest.skip("distro-info-data is not in bookworm any more")
    deb = f"{archive.mirror}/{pkgs[0]['Filename']}"
    work = tmp_path / "here"
    work.mkdir()
    if cache := os.environ.get("REBUILDER_TEST_CACHE_DIR"):  # base chroots kept between runs
        (work / ".cache").mkdir()
        (work / ".cache" / "build").symlink_to(cache)
    # the mirror is a frozen snapshot: its Release is past Valid-Until
    r = rebuild(work, "build", "debian", deb, "--method", "suite-chroot", "--release",
                "bookworm", "--no-check-valid-until", timeout=3000)  # fmt: skip
    assert r.returncode == 0, r.stderr[-4000:]
    assert r.stdout.strip().splitlines()[-1] == "GOOD"
    assert "distro-info-data_" in r.stderr and ".dsc" in r.stderr  # the log names its input
    assert list((work / ".cache" / "build" / "debian-suite-chroot").glob("bookworm_*.tar.zst"))
