"""End to end: real passes over a real, signed Arch Linux fixture repository on 127.0.0.1.

The fixture packages are built with makepkg and published with repo-add
(tests/fixtures/archlinux.py); the test backend really rebuilds each pkgbase with
makepkg from its PKGBUILD, under the conditions its .BUILDINFO records.
Every pass runs the real CLI in a subprocess, as cron would.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .fixtures import archlinux as ar
from .fixtures.http import serve
from .fixtures.operator import operator_workdir
from .fixtures.operator import rebuild as run_rebuild

REPO = Path(__file__).resolve().parent.parent
BACKEND = REPO / "tests" / "backends" / "archlinux-makepkg.sh"

pytestmark = [
    pytest.mark.slow,  # builds packages, runs rebuild
    pytest.mark.skipif(bool(ar.missing_tools()), reason=f"needs {', '.join(ar.missing_tools())}"),
]


def operator_dir(tmp_path: Path, repo: ar.ArchRepo, url: str, backend: Path | None) -> Path:
    table = f'\n[backend."archlinux"]\npath = "{backend}"\n' if backend else ""
    return operator_workdir(
        tmp_path,
        f"""
[profile."arch"]
distro = "archlinux"
components = ["core", "extra"]
architectures = ["{repo.arch}"]
source = "{url}/$repo/os/$arch"
keyring = "{repo.keyring}"
{table}""",
    )


def rebuild(work: Path, repo: ar.ArchRepo, *args: str) -> subprocess.CompletedProcess[str]:
    return run_rebuild(work, *args, env=repo.backend_env())


def state(work: Path) -> dict[str, Any]:
    groups: dict[str, Any] = json.loads((work / "state" / "arch.json").read_text())["groups"]
    return groups


def test_full_pass_rebuilds_with_makepkg(
    arch_served: tuple[ar.ArchRepo, str], tmp_path: Path
) -> None:
    repo, url = arch_served
    work = operator_dir(tmp_path, repo, url, BACKEND)
    r = rebuild(work, repo, "run")
    assert r.returncode == 0, r.stderr
    assert "pass done: 3 built (1 GOOD, 1 BAD, 1 FAIL)" in r.stderr, r.stderr
    a = repo.arch
    groups = state(work)
    assert {k: v["status"] for k, v in groups.items()} == {
        f"rolling/core/{a}/repro": "GOOD",
        f"rolling/core/{a}/broken": "FAIL",
        f"rolling/extra/{a}/timestamped": "BAD",
    }

    # GOOD: both split packages rebuilt bit for bit from the first one's .BUILDINFO
    (good,) = groups[f"rolling/core/{a}/repro"]["attempts"]
    assert [x["filename"] for x in good["artifacts"]] == [
        f"repro-1.0-1-{a}.pkg.tar.zst",
        "repro-doc-1.0-1-any.pkg.tar.zst",
    ]
    assert all(x["built_sha256"] == x["expected_sha256"] for x in good["artifacts"])
    assert good["files"]["attestation"]

    # BAD: rebuilt, but the embedded build time differs; diffoscope says where
    (bad,) = groups[f"rolling/extra/{a}/timestamped"]["attempts"]
    (art,) = bad["artifacts"]
    assert art["filename"] == f"timestamped-2:1.0-1-{a}.pkg.tar.zst"
    assert art["built_sha256"] and art["built_sha256"] != art["expected_sha256"]
    report = gzip.decompress((work / "site" / "builds" / bad["files"]["diffoscope"]).read_bytes())
    assert b"built-at" in report

    # FAIL: the build did not complete; the log keeps makepkg's reason
    (fail,) = groups[f"rolling/core/{a}/broken"]["attempts"]
    log = gzip.decompress((work / "site" / "builds" / fail["files"]["log"]).read_bytes())
    assert b"broken only builds for the original upload" in log
    assert b"makepkg failed" in log

    # rebuilderd's API: one row per package file, the repository as the suite
    pkgs = json.loads((work / "site" / "archlinux" / "api" / "v0" / "pkgs" / "list").read_text())
    rows = {p["name"]: (p["suite"], p["architecture"], p["status"]) for p in pkgs}
    assert rows == {
        "repro": ("core", a, "GOOD"),
        "repro-doc": ("core", "any", "GOOD"),
        "broken": ("core", a, "UNKWN"),  # v0 has no FAIL: rebuilderd lists it UNKWN
        "timestamped": ("extra", a, "BAD"),
    }

    _split_package_attestation_verifies(work, repo, good)

    # a second pass over unchanged databases builds nothing and changes nothing
    before = (work / "state" / "arch.json").read_text()
    r2 = rebuild(work, repo, "run")
    assert r2.returncode == 0, r2.stderr
    assert "pass done: 0 built" in r2.stderr
    assert (work / "state" / "arch.json").read_text() == before


def test_package_leaving_the_repository_is_marked_unseen(
    arch_served: tuple[ar.ArchRepo, str], tmp_path: Path
) -> None:
    """A database update (core loses broken) is seen; the group is kept, marked unseen."""
    repo, url = arch_served
    work = operator_dir(tmp_path, repo, url, BACKEND)
    assert rebuild(work, repo, "run", "--max-builds", "0").returncode == 0
    members = ar.tar_members(ar.read_db_tar(repo, "core"))
    ar.write_db(repo, "core", ar.make_tar(m for m in members if not m[0].startswith("broken-")))
    r = rebuild(work, repo, "run", "--max-builds", "0")
    assert r.returncode == 0, r.stderr
    groups = state(work)
    assert groups[f"rolling/core/{repo.arch}/broken"]["seen"] is False
    assert groups[f"rolling/core/{repo.arch}/repro"]["seen"] is True


@pytest.mark.skipif(shutil.which("repro") is not None, reason="archlinux-repro is installed")
def test_shipped_backend_fails_cleanly_without_repro(
    arch_served: tuple[ar.ArchRepo, str], tmp_path: Path
) -> None:
    repo, url = arch_served
    work = operator_dir(tmp_path, repo, url, backend=None)
    r = rebuild(work, repo, "run", "--jobs", "1")
    assert r.returncode == 0, r.stderr
    assert "pass done: 3 built (0 GOOD, 0 BAD, 3 FAIL)" in r.stderr, r.stderr
    attempt = state(work)[f"rolling/core/{repo.arch}/repro"]["attempts"][0]
    log = gzip.decompress((work / "site" / "builds" / attempt["files"]["log"]).read_bytes())
    # the method's tools are checked before the backend starts (rebuild doctor lists them)
    assert attempt["reason"].startswith("missing tools for method archlinux: repro"), attempt
    assert b"missing tools for method archlinux: repro" in log


def _split_package_attestation_verifies(
    work: Path, repo: ar.ArchRepo, good: dict[str, Any]
) -> None:
    """One attestation for both split packages: each verifies through the CLI a user runs."""
    a = repo.arch
    files = [
        repo.repo_dir("core") / f"repro-1.0-1-{a}.pkg.tar.zst",
        repo.repo_dir("core") / "repro-doc-1.0-1-any.pkg.tar.zst",
    ]
    pub = work / "pub.pem"
    pub.write_text(run_rebuild(work, "pubkey").stdout)
    link = work / "site" / "builds" / good["files"]["attestation"]
    for f in files:
        r = run_rebuild(
            work, "attestation", "verify", str(link), "--key", str(pub), "--artifact", str(f)
        )
        assert r.returncode == 0 and f"matches {f}" in r.stdout, r.stdout + r.stderr
    cache, local = work / "pkg-cache", work / "pacman-local"
    cache.mkdir()
    for f in files:
        shutil.copy(f, cache)
    for name, arch in (("repro", a), ("repro-doc", "any")):
        (local / f"{name}-1.0-1").mkdir(parents=True)
        (local / f"{name}-1.0-1" / "desc").write_text(
            f"%NAME%\n{name}\n\n%VERSION%\n1.0-1\n\n%ARCH%\n{arch}\n\n"
        )
    url, stop = serve(work / "site")
    verify = ["verify", "-H", f"{url}/archlinux", "--pacman-db", str(local), "--check-files"]
    verify += ["--package-cache", str(cache)]
    try:
        r = run_rebuild(work, *verify, "--json")
        assert r.returncode == 0, r.stdout + r.stderr
        checks = [c for v in json.loads(r.stdout)["packages"] for c in v["checks"].values()]
        assert len(checks) == 2 and {c["outcome"] for c in checks} == {"ok"}, r.stdout
        (cache / files[1].name).write_bytes(b"not what was rebuilt")
        r = run_rebuild(work, *verify)
        assert r.returncode == 1 and "does not match the local file" in r.stdout, r.stdout
    finally:
        stop()
