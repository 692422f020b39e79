"""End to end: a real pass over the Tails fixture mirror, with the SHIPPED tails.sh.

Only Tails' own build (``rake build``: Vagrant, libvirt, KVM) is replaced, by
the fixture's build system (tests/backends/tails-fixture-rake.sh) put on
PATH as ``rake``. Everything else is the shipped procedure for real: the
published images' detached signatures and the release tag's signature are
checked by gpg against the fixture's Tails key, the tag is checked out, and
SOURCE_DATE_EPOCH comes from debian/changelog. The mirror publishes no
SHA256 for "stable", so the runner's ``sha256 = ""`` contract is exercised.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from .fixtures import ROOT
from .fixtures.gpg import gpg, stop_agent
from .fixtures.operator import operator_workdir
from .fixtures.operator import rebuild as run_rebuild
from .fixtures.tails import (
    OTHER_UID,
    RAKE,
    TailsMirror,
    commit_release,
    generate_key,
    publish,
    write_listings,
    write_sums,
)

pytestmark = pytest.mark.slow  # builds images, runs rebuild


def operator_dir(tmp_path: Path, url: str, channels: str = '"stable", "alpha"') -> Path:
    return operator_workdir(
        tmp_path,
        f"""
[profile."tails"]
distro = "tails"
releases = [{channels}]
architectures = ["amd64"]
source = "{url}"
""",
    )


def rebuild(work: Path, fx: TailsMirror, *args: str) -> subprocess.CompletedProcess[str]:
    bin_dir = work / "bin"
    bin_dir.mkdir(exist_ok=True)
    if not (bin_dir / "rake").exists():
        (bin_dir / "rake").symlink_to(RAKE)
        # Tails' own build runs in Vagrant; the fixture's rake stands in for that build, so
        # a stand-in vagrant satisfies the method's declared tools (rebuild doctor)
        (bin_dir / "vagrant").write_text("#!/bin/sh\necho 'fixture: no vagrant' >&2\nexit 1\n")
        (bin_dir / "vagrant").chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "REBUILDER_TAILS_GIT": str(fx.git),
        "REBUILDER_TAILS_KEYRING": str(fx.keyring),
    }
    return run_rebuild(work, *args, env=env)


def groups(work: Path) -> dict:
    return json.loads((work / "state" / "tails.json").read_text())["groups"]


def log_of(work: Path, record: dict) -> str:
    rel = record["attempts"][-1]["files"]["log"]
    return gzip.decompress((work / "site" / "builds" / rel).read_bytes()).decode()


def test_full_pass_with_the_shipped_backend(tails_served: tuple[TailsMirror, str], tmp_path: Path):
    fx, url = tails_served
    write_sums(fx, "alpha", "7.0~rc1")
    work = operator_dir(tmp_path, url)
    r = rebuild(work, fx, "run")
    assert r.returncode == 0, r.stderr
    assert "pass done: 2 built (1 GOOD, 1 BAD, 0 FAIL)" in r.stderr
    g = groups(work)
    stable, alpha = g["stable/stable/amd64/tails"], g["alpha/alpha/amd64/tails"]
    assert (stable["status"], stable["group"]["version"]) == ("GOOD", "6.10")
    assert (alpha["status"], alpha["group"]["version"]) == ("BAD", "7.0~rc1")

    # GOOD with no published SHA256: the downloaded images' digests are the expected ones
    d = fx.release_dir("stable", "6.10")
    for a in stable["attempts"][0]["artifacts"]:
        digest = hashlib.sha256((d / a["filename"]).read_bytes()).hexdigest()
        assert a["expected_sha256"] == a["built_sha256"] == digest
    text = log_of(work, stable)
    assert "tails-amd64-6.10.img: good signature" in text
    assert "tails-amd64-6.10.iso: good signature" in text
    assert 'Good signature from "Tails fixture signing key' in text  # git tag -v
    assert "SOURCE_DATE_EPOCH=1734602400 rake build" in text  # Thu, 19 Dec 2024 10:00 UTC

    # BAD: the published SHA256SUMS is the expected digest; the rebuild differs
    for a in alpha["attempts"][0]["artifacts"]:
        assert a["expected_sha256"] == alpha_sum(fx, a["filename"])
        assert a["built_sha256"] and a["built_sha256"] != a["expected_sha256"]
    assert "diffoscope" in alpha["attempts"][0]["files"]

    r2 = rebuild(work, fx, "run")
    assert r2.returncode == 0 and "pass done: 0 built" in r2.stderr, r2.stderr


def alpha_sum(fx: TailsMirror, name: str) -> str:
    sums = (fx.release_dir("alpha", "7.0~rc1") / "SHA256SUMS").read_text()
    return next(line.split()[0] for line in sums.splitlines() if line.endswith(name))


def test_untrusted_tag_and_bad_image_signature_fail(
    tails_served: tuple[TailsMirror, str], tmp_path: Path
):
    fx, url = tails_served
    # 6.11 is tagged with a key that is not the Tails key
    home = Path(tempfile.mkdtemp(prefix="rb-tother-"))
    try:
        other = generate_key(home, OTHER_UID)
        gpg(home, "--import", str(fx.keyring))  # git commits need no key; the tag uses other
        tag = commit_release(
            fx,
            "6.11",
            "Thu, 16 Jan 2025 10:00:00 +0000",
            timestamped=False,
            key=other,
            gnupghome=home,
        )
        publish(fx, "stable", "6.11", tag)  # the images themselves are signed by the Tails key
        write_listings(fx)
    finally:
        stop_agent(home)
        shutil.rmtree(home, ignore_errors=True)
    work = operator_dir(tmp_path, url, '"stable"')
    r = rebuild(work, fx, "run")
    assert r.returncode == 0, r.stderr
    rec = groups(work)["stable/stable/amd64/tails"]
    assert (rec["group"]["version"], rec["status"]) == ("6.11", "FAIL")
    assert "tag 6.11: no good signature" in log_of(work, rec)

    # a published image whose signature does not verify fails before any build; the new
    # .sig is one byte longer than the one synced (as ~3 % of ed25519 re-signatures are:
    # the size of an OpenPGP signature varies), so the next sync must record its new size
    d = fx.release_dir("stable", "6.11")
    other_sig = (d / "tails-amd64-6.11.img.sig").read_bytes()
    (d / "tails-amd64-6.11.iso.sig").write_bytes(other_sig + b"\n")
    r = rebuild(work, fx, "pkgs", "requeue", "--reset")
    assert r.returncode == 0, r.stderr
    r = rebuild(work, fx, "run")
    assert r.returncode == 0, r.stderr
    rec = groups(work)["stable/stable/amd64/tails"]
    assert rec["status"] == "FAIL"
    assert "tails-amd64-6.11.iso: no good signature" in log_of(work, rec)


def test_shipped_tails_sh_needs_its_settings(tails_mirror: TailsMirror, tmp_path: Path):
    img = tails_mirror.release_dir("stable", "6.10") / "tails-amd64-6.10.img"
    env = dict(os.environ, REBUILDERD_OUTDIR=str(tmp_path))
    backend = ROOT / "rebuilder" / "build" / "backends" / "tails.sh"
    r = subprocess.run([str(backend), str(img)], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "REBUILDER_TAILS_GIT" in r.stderr
    env.update(
        REBUILDER_TAILS_GIT=str(tails_mirror.git), REBUILDER_TAILS_KEYRING=str(tails_mirror.keyring)
    )
    r = subprocess.run([str(backend), str(img)], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "rake not found" in r.stderr
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "rake").symlink_to(RAKE)
    env["PATH"] = f"{tmp_path / 'bin'}:{env['PATH']}"
    odd = tmp_path / "tails-amd64-6.10;x.img"
    odd.write_bytes(b"")
    r = subprocess.run([str(backend), str(odd)], env=env, capture_output=True, text=True)
    assert r.returncode != 0 and "unusable version: '6.10;x'" in r.stderr
