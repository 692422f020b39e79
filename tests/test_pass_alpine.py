"""End to end: a real pass over the signed Alpine fixture repository alpine_served on 127.0.0.1.

The test backend (tests/backends/alpine-from-aports.sh) really rebuilds each
origin from the fixture's aports git repository at the commit and build time
the published package records, and grafts the published signature stream
with the shipped ``alpine.sh --graft-signature``. The index publishes no
SHA256, so these tests also pin the runner's contract for ``sha256 = ""``:
the digest of the downloaded file is the expected one, and the index's size
is still checked. The shipped ``alpine.sh`` itself runs here only up to its
container, with a stand-in ``podman`` that records what it was asked.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from rebuilder.sync import alpine as apk

from .fixtures.alpine import ARCH, BRANCH, BUILDDATE, REPO, AlpineRepo
from .fixtures.operator import operator_workdir
from .fixtures.operator import rebuild as run_rebuild

pytestmark = pytest.mark.slow  # builds packages, runs rebuild

REPO_ROOT = Path(__file__).resolve().parent.parent
BACKEND = REPO_ROOT / "tests" / "backends" / "alpine-from-aports.sh"
SHIPPED = REPO_ROOT / "rebuilder" / "build" / "backends" / "alpine.sh"


def operator_dir(tmp_path: Path, repo: AlpineRepo, url: str) -> Path:
    return operator_workdir(
        tmp_path,
        f"""
[profile."alpine-fixture"]
distro = "alpine"
releases = ["{BRANCH}"]
components = ["{REPO}"]
architectures = ["{ARCH}"]
source = "{url}"
keyring = "{repo.keys}"

[backend."alpine"]
path = "{BACKEND}"
""",
    )


def rebuild(work: Path, repo: AlpineRepo, *args: str) -> subprocess.CompletedProcess[str]:
    return run_rebuild(work, *args, env={"REBUILDER_TEST_APORTS": str(repo.aports)})


def state(work: Path) -> dict:
    return json.loads((work / "state" / "alpine-fixture.json").read_text())


def test_full_pass_good_bad_fail(alpine_served: tuple[AlpineRepo, str], tmp_path: Path):
    repo, url = alpine_served
    work = operator_dir(tmp_path, repo, url)
    r = rebuild(work, repo, "run")
    assert r.returncode == 0, r.stderr
    assert "pass done: 3 built (1 GOOD, 1 BAD, 1 FAIL)" in r.stderr
    groups = state(work)["groups"]
    prefix = f"{BRANCH}/{REPO}/{ARCH}/"
    assert {k.removeprefix(prefix): v["status"] for k, v in groups.items()} == {
        "hello": "GOOD",
        "stamp": "BAD",
        "broken": "FAIL",
    }

    # GOOD: both packages of the origin, byte for byte; "expected" is the published file's
    # digest although the index published none
    hello = groups[prefix + "hello"]
    (attempt,) = hello["attempts"]
    assert {a["filename"] for a in attempt["artifacts"]} == {
        "hello-1.0-r0.apk",
        "hello-doc-1.0-r0.apk",
    }
    for a in attempt["artifacts"]:
        published = hashlib.sha256((repo.pkgdir / a["filename"]).read_bytes()).hexdigest()
        assert a["expected_sha256"] == a["built_sha256"] == published
    assert "attestation" in attempt["files"]
    assert all(a["sha256"] == "" for a in hello["group"]["artifacts"])

    # BAD: the rebuilt package differs, and diffoscope says where
    (bad,) = groups[prefix + "stamp"]["attempts"][0]["artifacts"]
    assert (
        bad["expected_sha256"]
        == hashlib.sha256((repo.pkgdir / "stamp-2.1-r1.apk").read_bytes()).hexdigest()
    )
    assert bad["built_sha256"] and bad["built_sha256"] != bad["expected_sha256"]
    files = groups[prefix + "stamp"]["attempts"][0]["files"]
    report = gzip.decompress((work / "site" / "builds" / files["diffoscope"]).read_bytes())
    assert b"usr/share/stamp/built-at" in report

    # FAIL: the backend's reason is in the log
    fail = groups[prefix + "broken"]["attempts"][0]
    log = gzip.decompress((work / "site" / "builds" / fail["files"]["log"]).read_bytes())
    assert b"broken only builds for the original upload" in log

    # the old hello 0.9 in the index was not planned; a second pass builds nothing
    r2 = rebuild(work, repo, "run")
    assert r2.returncode == 0 and "pass done: 0 built" in r2.stderr, r2.stderr


def test_a_file_that_is_not_the_indexed_size_fails_the_build(
    alpine_served: tuple[AlpineRepo, str], tmp_path: Path
):
    repo, url = alpine_served
    work = operator_dir(tmp_path, repo, url)
    doc = repo.pkgdir / "hello-doc-1.0-r0.apk"
    doc.write_bytes(doc.read_bytes() + b"\0" * 512)  # a mirror serving another file
    r = rebuild(work, repo, "run", "--max-builds", "3")
    assert r.returncode == 0, r.stderr
    hello = state(work)["groups"][f"{BRANCH}/{REPO}/{ARCH}/hello"]
    assert hello["status"] == "FAIL"
    assert hello["attempts"][0]["reason"] == "checksum mismatch: hello-doc-1.0-r0.apk"


def test_graft_signature(alpine_repo: AlpineRepo, tmp_path: Path):
    """The published signature stream, then the rebuilt streams: the published file again."""
    published = alpine_repo.pkgdir / "hello-1.0-r0.apk"
    data = published.read_bytes()
    members = apk.gzip_members(data, what="t")
    unsigned = tmp_path / "unsigned.apk"
    unsigned.write_bytes(data[members[1][0] :])
    resigned = tmp_path / "resigned.apk"  # signed by another key: its stream is replaced
    other = gzip.compress(b".SIGN.RSA.other.rsa.pub" + b"\0" * 600)
    resigned.write_bytes(other + unsigned.read_bytes())
    for rebuilt in (unsigned, resigned):
        out = tmp_path / "out.apk"
        subprocess.run(
            [str(SHIPPED), "--graft-signature", str(published), str(rebuilt), str(out)], check=True
        )
        assert out.read_bytes() == data
    r = subprocess.run(
        [str(SHIPPED), "--graft-signature", str(unsigned), str(unsigned), str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0 and "not a signed package" in r.stderr


def test_shipped_alpine_sh_up_to_its_container(alpine_repo: AlpineRepo, tmp_path: Path):
    """alpine.sh with a stand-in container runtime: what it would run, and with what."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "record"
    (bin_dir / "podman").write_text(f"""#!/bin/sh
printf '%s\\n' "$@" > {record}/args
cat > {record}/stdin.tar
exit 3
""")
    (bin_dir / "podman").chmod(0o755)
    record.mkdir()
    published = alpine_repo.pkgdir / "hello-1.0-r0.apk"
    cwd = tmp_path / "attempt"
    cwd.mkdir()
    (cwd / published.name).write_bytes(published.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    env = dict(
        os.environ,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        REBUILDERD_OUTDIR=str(out),
        REBUILDER_APORTS_URL=str(alpine_repo.aports),
        REBUILDER_RELEASE=BRANCH,
        REBUILDER_COMPONENT=REPO,
        REBUILDER_ARCH=ARCH,
        REBUILDER_CONTAINER="podman",
        REBUILDER_MIRROR=f"https://mirror.example/alpine/{BRANCH}/{REPO}/{ARCH}",
        REBUILDER_ARTIFACTS=published.name,
        REBUILDER_CACHE_DIR=str(tmp_path / "cache"),
    )

    def backend() -> subprocess.CompletedProcess[str]:
        cmd = [str(SHIPPED), str(cwd / published.name)]
        return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)

    r = backend()
    assert r.returncode == 2 and "the build in alpine:3.99 failed" in r.stderr, r.stderr
    args = (record / "args").read_text().splitlines()
    new = alpine_repo.commits[1]
    assert args[:5] == ["run", "--rm", "-i", "--platform", "linux/amd64"]
    assert f"SOURCE_DATE_EPOCH={BUILDDATE}" in args and f"ABUILD_LAST_COMMIT={new}" in args
    assert f"REPOSITORIES=https://mirror.example/alpine/{BRANCH}/main" in args
    assert "alpine:3.99" in args
    with tarfile.open(fileobj=io.BytesIO((record / "stdin.tar").read_bytes())) as tar:
        names = set(tar.getnames())
        apkbuild = tar.extractfile(f"./aports/{REPO}/hello/APKBUILD")
        assert apkbuild is not None and b"pkgver=1.0" in apkbuild.read()
    assert {"./build.sh", f"./published/{published.name}"} <= names
    assert (tmp_path / "cache" / "alpine-aports.git").is_dir()  # the bare clone is kept
    assert list(out.iterdir()) == []

    # without the aports URL: one clear line
    env.pop("REBUILDER_APORTS_URL")
    r = backend()
    assert r.returncode != 0 and "REBUILDER_APORTS_URL" in r.stderr
