"""Alpine sync against the real, signed fixture repository (tests/fixtures/alpine.py), served
on 127.0.0.1."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import logging
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from rebuilder.config import Profile, Release
from rebuilder.errors import ConfigError, FetchError, RepositoryIndexError, SignatureError
from rebuilder.model import Snapshot
from rebuilder.sync import SyncContext, sync_profile
from rebuilder.sync import alpine as apk

from .fixtures import ROOT
from .fixtures.alpine import (
    ARCH,
    BRANCH,
    BUILDDATE,
    KEY_NAME,
    REPO,
    AlpineRepo,
    cut_tar,
    make_index,
    signature_stream,
    write_index,
)

# --- building the fixture ----------------------------------------------------------------


# --- fixtures ----------------------------------------------------------------------------


def run(profile: Profile, cache: Path, **ctx: object) -> Snapshot:
    return sync_profile(profile, SyncContext(cache, **ctx))  # type: ignore[arg-type]


# --- a good repository -------------------------------------------------------------------


def test_sync_groups_by_origin_newest_version(
    alpine_served: tuple[AlpineRepo, str], tmp_path: Path
):
    repo, url = alpine_served
    snap = run(repo.profile(url), tmp_path / "cache")
    groups = {g.name: g for g in snap.groups}
    assert sorted(groups) == ["broken", "hello", "stamp"]
    hello = groups["hello"]
    assert (hello.version, hello.release, hello.component, hello.architecture, hello.method) == (
        "1.0-r0",
        BRANCH,
        REPO,
        ARCH,
        "abuild",
    )
    assert [(a.name, a.architecture) for a in hello.artifacts] == [
        ("hello", ARCH),
        ("hello-doc", "noarch"),
    ]
    base = f"{url}/{BRANCH}/{REPO}/{ARCH}"
    assert hello.input_url == f"{base}/hello-1.0-r0.apk"
    for a in hello.artifacts:
        assert a.url == f"{base}/{a.name}-1.0-r0.apk"
        assert a.sha256 == ""  # the index publishes none
        assert a.size == (repo.pkgdir / a.filename).stat().st_size
    assert hello.maintainers == ("Alice Example <alice@fixture.invalid>",)
    assert groups["broken"].artifacts[0].architecture == "noarch"
    assert (
        snap.fingerprints[f"{base}/APKINDEX.tar.gz"]
        == hashlib.sha256((repo.pkgdir / "APKINDEX.tar.gz").read_bytes()).hexdigest()
    )


def test_the_fixture_index_is_what_apk_would_check(alpine_repo: AlpineRepo):
    """C: is apk's identity of each file; every package names the commit it was built from."""
    raw = (alpine_repo.pkgdir / "APKINDEX.tar.gz").read_bytes()
    text, signer = apk.read_index(raw, apk.load_keys(str(alpine_repo.keys)), what="t")
    assert signer == KEY_NAME
    pkgs = apk.parse_apkindex(text, what="t")
    for p in pkgs:
        assert p.checksum == apk.apk_identity((alpine_repo.pkgdir / p.filename).read_bytes())
        assert p.build_time == BUILDDATE
    old = next(p for p in pkgs if p.version == "0.9-r0" and p.name == "hello")
    assert old.commit == alpine_repo.commits[0]
    assert {p.commit for p in pkgs if p.version != "0.9-r0"} == {alpine_repo.commits[1]}


def test_second_sync_of_an_unchanged_mirror_is_unchanged(
    alpine_served: tuple[AlpineRepo, str], tmp_path: Path
):
    repo, url = alpine_served
    first = run(repo.profile(url), tmp_path / "c")
    again = run(repo.profile(url), tmp_path / "c", previous=first.fingerprints)
    assert again.unchanged and again.groups == ()
    forced = run(repo.profile(url), tmp_path / "c", previous=first.fingerprints, force=True)
    assert not forced.unchanged and len(forced.groups) == 3
    changed = run(repo.profile(url, pkgs=("hello",)), tmp_path / "c", previous=first.fingerprints)
    assert not changed.unchanged and [g.name for g in changed.groups] == ["hello"]


def test_filters_and_placeholders(alpine_served: tuple[AlpineRepo, str], tmp_path: Path):
    repo, url = alpine_served
    template = f"{url}/$release/${{repo}}/$arch/"
    snap = run(
        repo.profile(
            url, releases=(Release(BRANCH, template),), excludes=("*-doc",), maintainers=("Alice",)
        ),
        tmp_path,
    )
    (hello,) = snap.groups
    assert [a.name for a in hello.artifacts] == ["hello"]
    with pytest.raises(ConfigError, match=r"unknown variable '\$branch'"):
        run(repo.profile(url, releases=(Release(BRANCH, f"{url}/$branch"),)), tmp_path)


def test_bad_profiles_are_config_errors(alpine_repo: AlpineRepo, tmp_path: Path):
    url = "http://127.0.0.1:9"
    cases: list[tuple[dict[str, object], str]] = [
        ({"components": ()}, "components"),
        ({"architectures": ()}, "architectures"),
        ({"components": ("../etc",)}, "not a branch, repository"),
        ({"method": "debrebuild"}, "method"),
        ({"keyring": str(tmp_path / "nokeys")}, "no such file or directory"),
    ]
    for kw, msg in cases:
        with pytest.raises(ConfigError, match=msg):
            run(alpine_repo.profile(url, **kw), tmp_path)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "junk.rsa.pub").write_text("not a key")
    with pytest.raises(ConfigError, match="holds no RSA public key"):
        run(alpine_repo.profile(url, keyring=str(tmp_path / "empty")), tmp_path)


# --- signatures --------------------------------------------------------------------------


def test_altered_index_is_a_bad_signature(alpine_served: tuple[AlpineRepo, str], tmp_path: Path):
    repo, url = alpine_served
    path = repo.pkgdir / "APKINDEX.tar.gz"
    raw = path.read_bytes()
    members = apk.gzip_members(raw, what="t")
    text = apk._index_file(members[1][1], what="t").replace(b"S:", b"S:1", 1)
    altered = raw[: members[1][0]] + make_index(text, None)  # the old signature, a new index
    path.write_bytes(altered)
    with pytest.raises(SignatureError, match=f"BAD signature by key {KEY_NAME}"):
        run(repo.profile(url), tmp_path)


def test_unknown_key_unsigned_and_no_keyring(
    alpine_served: tuple[AlpineRepo, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    repo, url = alpine_served
    text = (repo.pkgdir / "APKINDEX.tar.gz").read_bytes()
    plain = apk._index_file(apk.gzip_members(text, what="t")[1][1], what="t")
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (repo.pkgdir / "APKINDEX.tar.gz").write_bytes(
        make_index(plain, other, key_name="someone-else.rsa.pub")
    )
    with pytest.raises(SignatureError, match=r"RSA:someone-else\.rsa\.pub; no such key"):
        run(repo.profile(url), tmp_path)
    (repo.pkgdir / "APKINDEX.tar.gz").write_bytes(make_index(plain, None))
    with pytest.raises(SignatureError, match="not signed"):
        run(repo.profile(url), tmp_path)
    with caplog.at_level(logging.WARNING):
        snap = run(repo.profile(url, keyring=None), tmp_path)
    assert len(snap.groups) == 3
    assert "NOT verified" in caplog.text


def test_rsa256_signature_and_a_single_key_file(
    alpine_served: tuple[AlpineRepo, str], tmp_path: Path
):
    repo, url = alpine_served
    text = (repo.pkgdir / "APKINDEX.tar.gz").read_bytes()
    plain = apk._index_file(apk.gzip_members(text, what="t")[1][1], what="t")
    (repo.pkgdir / "APKINDEX.tar.gz").write_bytes(make_index(plain, repo.key, kind="RSA256"))
    snap = run(repo.profile(url, keyring=str(repo.keys / KEY_NAME)), tmp_path)
    assert len(snap.groups) == 3


# --- hostile indexes ---------------------------------------------------------------------


def _sync_text(repo: AlpineRepo, url: str, text: str, tmp: Path) -> Snapshot:
    write_index(repo, text)
    return run(repo.profile(url), tmp / "cache")


def _good(
    name: str = "good", version: str = "1.0-r0", extra: str = "", origin: str = "good"
) -> str:
    """A valid record of origin ``origin``."""
    c = base64.b64encode(hashlib.sha1(name.encode()).digest()).decode()
    return f"C:Q1{c}\nP:{name}\nV:{version}\nA:x86_64\nS:10\no:{origin}\nm:M <m@x>\n{extra}"


@pytest.mark.parametrize(
    ("record", "warning"),
    [
        ("P:../../etc/passwd\nV:1.0-r0\nA:x86_64\nS:1\n", "malformed package name"),
        ("P:a/b\nV:1.0-r0\nA:x86_64\nS:1\n", "malformed package name"),
        ("P:.hidden\nV:1.0-r0\nA:x86_64\nS:1\n", "malformed package name"),
        ("P:x\nV:1.0/../../y\nA:x86_64\nS:1\n", "malformed version"),
        ("P:x\nV:1.0-r0\nA:../x\nS:1\n", "malformed architecture"),
        ("P:x\nV:1.0-r0\nA:x86_64\nS:-1\n", "malformed size"),
        ("P:x\nV:1.0-r0\nA:x86_64\nS:1\no:../up\n", "malformed origin"),
        ("P:x\nV:1.0-r0\nA:x86_64\nS:1\nc:not-a-commit\n", "malformed commit"),
        ("P:x\nV:1.0-r0\nA:x86_64\nS:1\nt:yesterday\n", "malformed build time"),
        ("P:x\nV:1.0-r0\nA:x86_64\nS:1\nC:Q1nonsense\n", "malformed checksum"),
        ("P:x\nA:x86_64\nS:1\n", "lacks V"),
        ("V:1.0-r0\nA:x86_64\nS:1\n", "lacks P"),
        ("P:x\nV:1.0-r0\nA:x86_64\n", "lacks S"),
        ("P:x\nP:y\nV:1.0-r0\nA:x86_64\nS:1\n", "field P: twice"),
        ("P:x\nV:1.0-r0\nA:x86_64\nS:1\nthis is not a field\n", "malformed record"),
        ("P:" + "x" * 300 + "\nV:1.0-r0\nA:x86_64\nS:1\n", "malformed package name"),
        ("P:x\nV:1.0-r0\nA:x86_64\nS:1\nm:" + "M" * 5000 + "\n", "malformed maintainer"),
        ("P:x\nV:1.0-r0\nA:aarch64\nS:1\n", "is for aarch64, not x86_64"),
    ],
)
def test_a_bad_record_is_skipped_with_a_warning(
    alpine_served: tuple[AlpineRepo, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    record: str,
    warning: str,
):
    repo, url = alpine_served
    with caplog.at_level(logging.WARNING):
        snap = _sync_text(repo, url, _good() + "\n" + record, tmp_path)
    assert [g.name for g in snap.groups] == ["good"]
    assert warning in caplog.text
    assert "Traceback" not in caplog.text


def test_duplicates_missing_origin_and_huge_fields(
    alpine_served: tuple[AlpineRepo, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    repo, url = alpine_served
    huge = "T:" + "d" * (4 << 20) + "\n"  # a 4 MiB description is odd, not wrong: kept
    text = "\n".join(
        [
            _good(extra=huge),
            _good(extra="I:1\n"),  # the same file twice: the first is kept
            "P:orphan\nV:2.0-r3\nA:noarch\nS:5\n",  # no origin: its own
            _good("good-doc"),
            _good("good", "0.9-r0"),  # an older version: left out
        ]
    )
    with caplog.at_level(logging.INFO):
        snap = _sync_text(repo, url, text, tmp_path)
    groups = {g.name: g for g in snap.groups}
    assert sorted(groups) == ["good", "orphan"]
    assert groups["good"].version == "1.0-r0"
    assert [a.name for a in groups["good"].artifacts] == ["good", "good-doc"]
    assert groups["orphan"].artifacts[0].url.endswith("/orphan-2.0-r3.apk")
    assert "duplicate record good 1.0-r0; kept the first" in caplog.text
    assert "1 older origin versions" in caplog.text


def test_many_bad_records_are_counted_not_each_logged(
    alpine_served: tuple[AlpineRepo, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    repo, url = alpine_served
    text = _good() + "".join(f"\nP:bad{i}\nV:nope\nA:x86_64\nS:1\n" for i in range(50))
    with caplog.at_level(logging.WARNING):
        _sync_text(repo, url, text, tmp_path)
    assert caplog.text.count("malformed version") == 5
    assert "45 record more entries skipped" in caplog.text


@pytest.mark.parametrize(
    ("mangle", "error", "message"),
    [
        (lambda raw: raw[: len(raw) // 2], RepositoryIndexError, "truncated"),
        (lambda raw: raw[:30], RepositoryIndexError, "truncated"),
        (lambda raw: b"", RepositoryIndexError, "not a gzip archive"),
        (lambda raw: b"<html>mirror error</html>", RepositoryIndexError, "not a gzip archive"),
        (lambda raw: b"ADBd" + raw, RepositoryIndexError, r"apk v3 \(ADB\) index"),
        (lambda raw: raw + b"garbage", RepositoryIndexError, "garbage after gzip stream"),
        (lambda raw: raw[:-12] + bytes(12), RepositoryIndexError, "corrupt gzip|truncated"),
    ],
)
def test_a_broken_archive_is_one_clear_error(
    alpine_served: tuple[AlpineRepo, str], tmp_path: Path, mangle, error, message: str
):
    repo, url = alpine_served
    path = repo.pkgdir / "APKINDEX.tar.gz"
    path.write_bytes(mangle(path.read_bytes()))
    with pytest.raises(error, match=message):
        run(repo.profile(url), tmp_path)


def test_binary_or_crlf_text_is_an_error(alpine_served: tuple[AlpineRepo, str], tmp_path: Path):
    repo, url = alpine_served
    with pytest.raises(RepositoryIndexError, match="CRLF line ends"):
        _sync_text(repo, url, _good().replace("\n", "\r\n"), tmp_path)
    with pytest.raises(RepositoryIndexError, match="not text"):
        _sync_text(repo, url, _good() + "\0", tmp_path)


def test_hostile_tar_members(alpine_served: tuple[AlpineRepo, str], tmp_path: Path):
    repo, url = alpine_served
    path = repo.pkgdir / "APKINDEX.tar.gz"
    sneaky = [("../APKINDEX", _good().encode()), ("/etc/APKINDEX", b"x")]
    path.write_bytes(make_index(b"", repo.key, members=sneaky))
    with pytest.raises(RepositoryIndexError, match="no APKINDEX in the archive"):
        run(repo.profile(url), tmp_path)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        link = tarfile.TarInfo("APKINDEX")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    body = gzip.compress(buf.getvalue())
    path.write_bytes(_signed(body, repo))
    with pytest.raises(RepositoryIndexError, match="APKINDEX is not a regular file"):
        run(repo.profile(url), tmp_path)
    # a signature stream that smuggles in an index of its own
    both = gzip.compress(cut_tar(f".SIGN.RSA.{KEY_NAME}", b"sig") + cut_tar("APKINDEX", b"P:x\n"))
    path.write_bytes(both + gzip.compress(b"\0" * 1024))
    with pytest.raises(RepositoryIndexError, match="the signature stream holds 'APKINDEX'"):
        run(repo.profile(url), tmp_path)
    assert not (tmp_path / "etc").exists() and sorted(p.name for p in tmp_path.iterdir()) == [
        "mirror"
    ]


def _signed(body: bytes, repo: AlpineRepo) -> bytes:
    return signature_stream(body, repo.key) + body


def test_decompression_is_capped():
    bomb = gzip.compress(b"\0" * (2 << 20))
    with pytest.raises(RepositoryIndexError, match="decompresses to more than 1048576 bytes"):
        apk.gzip_members(bomb, what="bomb", limit=1 << 20)


def test_a_missing_index_is_a_fetch_error(alpine_served: tuple[AlpineRepo, str], tmp_path: Path):
    repo, url = alpine_served
    (repo.pkgdir / "APKINDEX.tar.gz").unlink()
    with pytest.raises(FetchError, match="HTTP 404"):
        run(repo.profile(url), tmp_path)


# --- the CLI -----------------------------------------------------------------------------


def test_rebuild_sync_print_json(alpine_served: tuple[AlpineRepo, str], tmp_path: Path):
    repo, url = alpine_served
    (tmp_path / "rebuilder.toml").write_text(f"""
[rebuilder]
state_dir = "state"

[profile."alpine-fixture"]
distro = "alpine"
releases = ["{BRANCH}"]
components = ["{REPO}"]
architectures = ["{ARCH}"]
source = "{url}"
keyring = "{repo.keys}"
""")
    cmd = [sys.executable, str(ROOT / "rebuild.py"), "sync", "alpine-fixture", "--print-json"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (snap,) = json.loads(r.stdout)
    assert snap["distro"] == "alpine"
    assert {g["name"]: g["version"] for g in snap["groups"]} == {
        "broken": "0.1-r0",
        "hello": "1.0-r0",
        "stamp": "2.1-r1",
    }
    assert not (tmp_path / "state").exists()  # --print-json saves nothing
    # a hostile mirror: one line, no traceback
    (repo.pkgdir / "APKINDEX.tar.gz").write_bytes(b"\x1f\x8b" + b"x" * 100)
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    assert "corrupt gzip data" in r.stderr and "Traceback" not in r.stderr
