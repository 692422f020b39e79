"""Debian sync against a real, signed fixture archive served on 127.0.0.1.

The archive (tests/fixtures/debian.py) is built once per session with
dpkg-buildpackage, apt-ftparchive and a throwaway gpg key; tests that break
it work on a copy. Signatures are checked by the real gpgv.
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from rebuilder import fetch
from rebuilder.config import Profile, Release
from rebuilder.errors import (
    ChecksumError,
    ConfigError,
    FetchError,
    RebuilderError,
    SignatureError,
)
from rebuilder.model import BuildGroup, Snapshot
from rebuilder.sync import SyncContext, selected, sync_profile
from rebuilder.sync import debian as deb

from .fixtures import ROOT as REPO
from .fixtures import debian as fx
from .fixtures.operator import operator_dir

BACKEND = Path(__file__).parent / "backends" / "debian-from-source.sh"


# --- fixtures --------------------------------------------------------------------


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fx.Archive]:
    gnupghome = tmp_path_factory.mktemp("gpg")
    built = fx.build_archive(tmp_path_factory.mktemp("debian") / "archive", gnupghome)
    yield built
    fx.stop_agent(gnupghome)
    fx.stop_agent(gnupghome / "other")


@pytest.fixture(scope="session")
def url(archive: fx.Archive) -> Iterator[str]:
    base, stop = fx.serve(archive.root)
    yield base
    stop()


@pytest.fixture
def mutable(archive: fx.Archive, tmp_path: Path) -> Iterator[tuple[fx.Archive, str]]:
    """A copy of the archive, served: for tests that break it."""
    copy = fx.copy_archive(archive, tmp_path / "archive")
    base, stop = fx.serve(copy.root)
    yield copy, base
    stop()


def run(profile: Profile, cache: Path, **ctx: object) -> Snapshot:
    return sync_profile(profile, SyncContext(cache, **ctx))  # type: ignore[arg-type]


def by_key(snap: Snapshot) -> dict[tuple[str, str], BuildGroup]:
    return {(g.name, g.architecture): g for g in snap.groups}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- a good archive ------------------------------------------------------------------


def test_sync_finds_every_group_with_verified_artifacts(
    archive: fx.Archive, url: str, tmp_path: Path
) -> None:
    snap = run(archive.profile(url), tmp_path)
    groups = by_key(snap)
    arch = archive.arch
    assert set(groups) == {
        ("repro", arch),
        ("repro", "all"),
        ("timestamped", arch),
        ("broken", arch),
    }
    assert snap.distro == "debian" and snap.profile == "fixture" and not snap.unchanged
    for g in snap.groups:
        assert (g.distro, g.release, g.component, g.version) == ("debian", "fixture", "main", "1.0")
        assert g.method == "debrebuild" and g.input_sha256 is None and g.sources == ()
        for a in g.artifacts:
            local = archive.root / a.url.removeprefix(url + "/")
            assert a.sha256 == sha256(local) and a.size == local.stat().st_size
            assert a.filename == local.name
    repro = groups[("repro", arch)]
    assert [a.name for a in repro.artifacts] == ["repro"]
    assert [a.name for a in groups[("repro", "all")].artifacts] == ["repro-doc"]
    assert repro.maintainers == (
        "Alice Example <alice@fixture.invalid>",
        "Bob Example <bob@fixture.invalid>",
    )
    # the debrebuild input is the real .buildinfo of that build, where rebuilderd looks for it
    assert repro.input_url == f"{url}/buildinfo-pool/r/repro/repro_1.0_{arch}.buildinfo"
    for g in snap.groups:
        text = fetch.fetch_bytes(g.input_url)
        assert text is not None and f"Source: {g.name}".encode() in text
    assert set(snap.fingerprints) == {f"{url}/dists/fixture/InRelease", "profile-settings"}


def test_arch_all_only_when_asked(archive: fx.Archive, url: str, tmp_path: Path) -> None:
    # as rebuilderd since c98ed6b ("Debian: exclude packages not listed in architectures"):
    # the arch:all binaries that binary-amd64 lists too are tracked only with "all"
    only_arch = run(archive.profile(url, architectures=(archive.arch,)), tmp_path)
    assert {g.architecture for g in only_arch.groups} == {archive.arch}
    only_all = run(archive.profile(url, architectures=("all",)), tmp_path)
    assert [(g.name, g.architecture) for g in only_all.groups] == [("repro", "all")]


def test_binary_all_is_skipped_when_arch_packages_carry_it(
    mutable: tuple[fx.Archive, str], tmp_path: Path
) -> None:
    archive, url = mutable
    all_dir = archive.dists / "main" / "binary-all"
    saved = {f.name: f.read_bytes() for f in all_dir.iterdir()}
    fx.write_release(archive, extra={"No-Support-for-Architecture-all": "Packages"})
    for f in all_dir.iterdir():
        f.unlink()  # listed by the Release, gone from the mirror: reading it would fail
    snap = run(archive.profile(url), tmp_path / "a")
    assert ("repro", "all") in by_key(snap)
    for name, data in saved.items():
        (all_dir / name).write_bytes(data)
    fx.write_release(archive)  # without the promise, binary-all is read
    for f in all_dir.iterdir():
        f.unlink()
    with pytest.raises(FetchError, match="binary-all"):
        run(archive.profile(url), tmp_path / "b")


def test_maintainer_filter_matches_maintainer_and_uploaders(
    archive: fx.Archive, url: str, tmp_path: Path
) -> None:
    snap = run(archive.profile(url, maintainers=("Bob Example <bob@",)), tmp_path)
    assert {g.name for g in snap.groups} == {"repro", "timestamped"}  # uploader, maintainer
    snap = run(archive.profile(url, maintainers=("Nobody",)), tmp_path)
    assert snap.groups == ()


def test_pkgs_and_excludes_globs(archive: fx.Archive, url: str, tmp_path: Path) -> None:
    snap = run(archive.profile(url, pkgs=("repro*",), excludes=("*-doc",)), tmp_path)
    assert [(g.name, [a.name for a in g.artifacts]) for g in snap.groups] == [("repro", ["repro"])]
    snap = run(archive.profile(url, excludes=("broken", "time*")), tmp_path)
    assert {g.name for g in snap.groups} == {"repro"}


def test_selected_is_the_shared_filter() -> None:
    p = Profile(
        "p",
        "debian",
        (Release("s", "https://mirror.example/debian"),),
        pkgs=("a*",),
        excludes=("ab*",),
        maintainers=("Ann <",),
    )
    assert selected("ax", ["Ann <ann@example.org>"], p)
    assert not selected("abc", ["Ann <ann@example.org>"], p)  # excludes win
    assert not selected("ax", ["Bob <bob@example.org>"], p)
    assert not selected("x", ["Ann <ann@example.org>"], p)
    assert selected("anything", [], Profile("q", "debian", ()))


def test_suite_chroot_method_takes_the_dsc_and_its_files(
    archive: fx.Archive, url: str, tmp_path: Path
) -> None:
    snap = run(archive.profile(url, method="suite-chroot", buildinfo_url=None), tmp_path)
    repro = by_key(snap)[("repro", archive.arch)]
    pool = archive.root / "pool/main/r/repro"
    assert repro.method == "suite-chroot"
    assert repro.input_url == f"{url}/pool/main/r/repro/repro_1.0.dsc"
    assert repro.input_sha256 == sha256(pool / "repro_1.0.dsc")
    assert [(s.name, s.sha256, s.size) for s in repro.sources] == [
        (
            "repro_1.0.tar.xz",
            sha256(pool / "repro_1.0.tar.xz"),
            (pool / "repro_1.0.tar.xz").stat().st_size,
        )
    ]
    assert repro.sources[0].url == f"{url}/pool/main/r/repro/repro_1.0.tar.xz"


def test_debrebuild_defaults_to_debians_buildinfo_service(
    archive: fx.Archive, url: str, tmp_path: Path
) -> None:
    # rebuilderd's rule (tools/src/schedule/debian.rs): <service>/buildinfo-pool/<r>/<src>/...
    snap = run(archive.profile(url, buildinfo_url=None), tmp_path)
    repro = by_key(snap)[("repro", archive.arch)]
    assert repro.input_url == (
        f"{deb.DEFAULT_BUILDINFO_URL}/buildinfo-pool/r/repro/repro_1.0_{archive.arch}.buildinfo"
    )
    with pytest.raises(ConfigError, match="method"):
        run(archive.profile(url, method="chroot-magic"), tmp_path)


def test_armored_keyring_is_accepted(archive: fx.Archive, url: str, tmp_path: Path) -> None:
    asc = tmp_path / "key.asc"
    asc.write_bytes(fx.gpg(archive.gnupghome, "--armor", "--export", archive.key))
    fx.stop_agent(archive.gnupghome)
    assert len(run(archive.profile(url, keyring=str(asc)), tmp_path).groups) == 4


# --- unchanged, forced, cached ---------------------------------------------------------


def test_second_sync_of_an_unchanged_archive_parses_nothing(
    archive: fx.Archive, url: str, tmp_path: Path
) -> None:
    profile = archive.profile(url)
    first = run(profile, tmp_path)
    second = run(profile, tmp_path, previous=first.fingerprints)
    assert second.unchanged and second.groups == () and second.fingerprints == first.fingerprints
    forced = run(profile, tmp_path, previous=first.fingerprints, force=True)
    assert not forced.unchanged and forced.groups == first.groups
    # a changed filter is not "unchanged", even though the mirror is
    narrowed = run(archive.profile(url, pkgs=("repro",)), tmp_path, previous=first.fingerprints)
    assert not narrowed.unchanged and {g.name for g in narrowed.groups} == {"repro"}


def test_changed_release_is_synced_again(mutable: tuple[fx.Archive, str], tmp_path: Path) -> None:
    archive, url = mutable
    first = run(archive.profile(url), tmp_path)
    fx.write_release(archive, extra={"Description": "a new day"})
    second = run(archive.profile(url), tmp_path, previous=first.fingerprints)
    assert not second.unchanged and second.groups == first.groups


def test_indexes_are_cached_by_sha256_and_pruned(
    mutable: tuple[fx.Archive, str], tmp_path: Path
) -> None:
    archive, url = mutable
    cache = tmp_path / "cache"
    first = run(archive.profile(url), cache)
    cached = sorted(p.name for p in (cache / "debian-indexes").iterdir())
    assert len(cached) == 3  # Sources, binary-ARCH and binary-all Packages, by SHA256
    # the mirror loses its indexes but the Release still vouches for them: the cache serves
    for path in (
        "main/source/Sources",
        f"main/binary-{archive.arch}/Packages",
        "main/binary-all/Packages",
    ):
        for suffix in ("", ".gz", ".xz"):
            (archive.dists / f"{path}{suffix}").rename(
                tmp_path / hashlib.md5(f"{path}{suffix}".encode()).hexdigest()
            )
    assert run(archive.profile(url), cache, force=True).groups == first.groups
    # a new Sources replaces the old one in the cache
    sources = (tmp_path / hashlib.md5(b"main/source/Sources").hexdigest()).read_bytes()
    fx.write_index(archive, "main/source/Sources", sources + b"\n")
    for path in (f"main/binary-{archive.arch}/Packages", "main/binary-all/Packages"):
        for suffix in ("", ".gz", ".xz"):
            (tmp_path / hashlib.md5(f"{path}{suffix}".encode()).hexdigest()).rename(
                archive.dists / f"{path}{suffix}"
            )
    fx.write_release(archive)
    run(archive.profile(url), cache, force=True)
    now = sorted(p.name for p in (cache / "debian-indexes").iterdir())
    assert len(now) == 3 and now != cached and set(now) & set(cached)


# --- a hostile or broken archive ---------------------------------------------------


def test_signature_by_an_unknown_key_is_refused(
    mutable: tuple[fx.Archive, str], tmp_path: Path
) -> None:
    archive, url = mutable
    other = fx.resign_with_other_key(archive)
    with pytest.raises(SignatureError, match=f"{other[-16:]}.*not in the keyring"):
        run(archive.profile(url), tmp_path)


def test_altered_inrelease_is_a_bad_signature(
    mutable: tuple[fx.Archive, str], tmp_path: Path
) -> None:
    archive, url = mutable
    fx.alter_inrelease(archive)
    with pytest.raises(SignatureError, match="BAD signature"):
        run(archive.profile(url), tmp_path)


def test_release_gpg_is_the_fallback(mutable: tuple[fx.Archive, str], tmp_path: Path) -> None:
    archive, url = mutable
    (archive.dists / "InRelease").unlink()
    snap = run(archive.profile(url), tmp_path)
    assert len(snap.groups) == 4
    assert next(iter(snap.fingerprints)) == f"{url}/dists/fixture/Release"
    (archive.dists / "Release.gpg").unlink()
    with pytest.raises(SignatureError, match="not signed"):
        run(archive.profile(url), tmp_path)


def test_release_of_another_suite_is_refused(
    mutable: tuple[fx.Archive, str], tmp_path: Path
) -> None:
    archive, url = mutable
    shutil.copytree(archive.dists, archive.root / "dists" / "other")
    profile = archive.profile(url, releases=(Release("other", url),))
    with pytest.raises(SignatureError, match="signed for suite fixture, not 'other'"):
        run(profile, tmp_path)


def test_tampered_packages_fail_the_checksum(
    mutable: tuple[fx.Archive, str], tmp_path: Path
) -> None:
    archive, url = mutable
    fx.tamper_packages(archive)
    with pytest.raises(ChecksumError, match=f"binary-{archive.arch}/Packages"):
        run(archive.profile(url), tmp_path)


def test_expired_release(mutable: tuple[fx.Archive, str], tmp_path: Path) -> None:
    archive, url = mutable
    fx.expire(archive)
    with pytest.raises(SignatureError, match=r"expired.*check_valid_until = false"):
        run(archive.profile(url), tmp_path)
    assert len(run(archive.profile(url, check_valid_until=False), tmp_path).groups) == 4


def test_hostile_filenames_are_skipped_with_a_warning(
    mutable: tuple[fx.Archive, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    archive, url = mutable
    path = f"main/binary-{archive.arch}/Packages"
    text = fx.read_index(archive, path)
    text = text.replace(
        b"Filename: pool/main/r/repro/repro_1.0", b"Filename: pool/../../../etc/passwd#", 1
    )
    text = text.replace(b"Filename: pool/main/t/", b"Filename: /etc/", 1)
    fx.write_index(archive, path, text)
    fx.write_release(archive)
    with caplog.at_level(logging.WARNING):
        snap = run(archive.profile(url), tmp_path)
    assert set(by_key(snap)) == {("repro", "all"), ("broken", archive.arch)}
    assert "has a .. component; skipped" in caplog.text
    assert "is absolute; skipped" in caplog.text
    for g in snap.groups:
        assert all(a.url.startswith(f"{url}/pool/main/") for a in g.artifacts)


def test_bad_stanzas_are_skipped_and_duplicates_kept_once(
    mutable: tuple[fx.Archive, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    archive, url = mutable
    path = f"main/binary-{archive.arch}/Packages"
    stanzas = fx.read_index(archive, path).strip().split(b"\n\n")
    broken = next(s for s in stanzas if s.startswith(b"Package: broken\n"))
    no_filename = b"\n".join(x for x in broken.split(b"\n") if not x.startswith(b"Filename:"))
    no_package = b"Version: 9\nArchitecture: all\nFilename: pool/x.deb\nSize: 1\nSHA256: " + (
        b"0" * 64
    )
    others = [s for s in stanzas if s is not broken]
    text = b"\n\n".join([*others, others[0], no_filename, no_package, b"Package: \xff\xfe"]) + b"\n"
    fx.write_index(archive, path, text)
    fx.write_release(archive)
    with caplog.at_level(logging.WARNING):
        snap = run(archive.profile(url), tmp_path)
    assert ("broken", archive.arch) not in by_key(snap)
    assert ("repro", archive.arch) in by_key(snap)
    assert "broken: lacks Filename; skipped" in caplog.text
    assert "lacks Package; skipped" in caplog.text
    assert "duplicate stanza" in caplog.text


def test_truncated_xz_is_a_clean_error(mutable: tuple[fx.Archive, str], tmp_path: Path) -> None:
    archive, url = mutable
    path = f"main/binary-{archive.arch}/Packages"
    fx.write_index(archive, path, b"", variants=())
    xz = fx.compress(fx.read_index(archive, "main/binary-all/Packages") * 50, ".xz")
    (archive.dists / f"{path}.xz").write_bytes(xz[: len(xz) // 2])
    fx.write_release(archive)  # the archive itself vouches for the truncated file
    with pytest.raises(FetchError, match=r"Packages\.xz: corrupt xz data"):
        run(archive.profile(url), tmp_path)


def test_binary_garbage_index_is_a_clean_error(
    mutable: tuple[fx.Archive, str], tmp_path: Path
) -> None:
    archive, url = mutable
    fx.write_index(archive, "main/source/Sources", os.urandom(4096) + b"\0", variants=("",))
    fx.write_release(archive)
    with pytest.raises(RebuilderError, match="not a text index"):
        run(archive.profile(url), tmp_path)


def test_missing_architecture_is_named(archive: fx.Archive, url: str, tmp_path: Path) -> None:
    with pytest.raises(RebuilderError, match="no main/binary-s390x/Packages index"):
        run(archive.profile(url, architectures=("s390x",)), tmp_path)


# --- the grouping rules, on hand-written indexes -------------------------------------

SOURCES = b"""\
Package: foo
Binary: foo, foo-data
Version: 1:2.0-1
Maintainer: Team <team@example.org>
Uploaders: "Doe, Jane" <jane@example.org>,
 John Roe <john@example.org>
Directory: pool/main/f/foo
Checksums-Sha256:
 %(h)s 100 foo_2.0-1.dsc
 %(h)s 200 foo_2.0.orig.tar.gz

Package: foo
Version: 1:1.0-1
Maintainer: Team <team@example.org>
Directory: pool/main/f/foo

Package: gone
Version: 0.1-1
Maintainer: Old <old@example.org>
Extra-Source-Only: yes
Directory: pool/main/g/gone

Package: libbar
Version: 3-1
Maintainer: Bar <bar@example.org>
Directory: pool/main/libb/libbar
""" % {b"h": b"a" * 64}


def binary(name: str, version: str, arch: str, source: str = "", fn: str = "") -> bytes:
    src = f"Source: {source}\n" if source else ""
    fn = fn or f"pool/main/x/{name}_{version.split(':')[-1]}_{arch}.deb"
    return (
        f"Package: {name}\n{src}Version: {version}\nArchitecture: {arch}\n"
        f"Maintainer: X <x@example.org>\nFilename: {fn}\nSize: 10\n"
        f"SHA256: {hashlib.sha256(fn.encode()).hexdigest()}\n"
    ).encode()


def group(packages: list[bytes], **profile: object) -> dict[tuple[str, str, str], BuildGroup]:
    p = Profile(
        "t",
        "debian",
        (Release("sid", "https://mirror.example/debian"),),
        components=("main",),
        architectures=("amd64", "all"),
        buildinfo_url="https://buildinfo.example",
    )
    from dataclasses import replace

    opts = deb.Options.from_profile(replace(p, **profile))  # type: ignore[arg-type]
    sources = deb.parse_sources(SOURCES, what="Sources")
    grouper = deb.Grouper("sid", "https://mirror.example/debian", opts, sources, deb.Warnings("t"))
    grouper.add("main", deb.parse_packages(b"\n".join(packages), what="Packages"))
    return {(g.name, g.version, g.architecture): g for g in grouper.groups()}


def test_binnmu_is_its_own_group_with_its_own_buildinfo() -> None:
    groups = group(
        [
            binary("foo", "1:2.0-1+b2", "amd64", "foo (1:2.0-1)"),
            binary("foo-data", "1:2.0-1", "all", "foo (1:2.0-1)"),
        ]
    )
    assert set(groups) == {("foo", "1:2.0-1+b2", "amd64"), ("foo", "1:2.0-1", "all")}
    g = groups[("foo", "1:2.0-1+b2", "amd64")]
    assert g.input_url == (
        "https://buildinfo.example/buildinfo-pool/f/foo/foo_2.0-1+b2_amd64.buildinfo"
    )
    assert g.maintainers == (
        "Team <team@example.org>",
        '"Doe, Jane" <jane@example.org>',
        "John Roe <john@example.org>",
    )


def test_implicit_source_and_lib_prefix() -> None:
    groups = group([binary("libbar", "3-1", "amd64"), binary("libbar1", "3-1", "amd64", "libbar")])
    g = groups[("libbar", "3-1", "amd64")]
    assert [a.name for a in g.artifacts] == ["libbar", "libbar1"]
    assert g.input_url.endswith("/buildinfo-pool/libb/libbar/libbar_3-1_amd64.buildinfo")


def test_older_version_in_the_index_gives_way_to_the_newer() -> None:
    groups = group(
        [
            binary("foo", "1:1.0-1", "amd64", "foo (1:1.0-1)"),
            binary("foo", "1:2.0-1", "amd64", "foo (1:2.0-1)"),
        ]
    )
    assert list(groups) == [("foo", "1:2.0-1", "amd64")]


def test_extra_source_only_makes_no_group_but_still_names_a_source() -> None:
    groups = group([binary("gone-tool", "0.1-1", "amd64", "gone")])
    assert list(groups) == [("gone", "0.1-1", "amd64")]
    assert group([]) == {}


def test_unknown_source_and_foreign_arch_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        groups = group(
            [
                binary("orphan", "1", "amd64", "nowhere (1)"),
                binary("foo", "1:2.0-1", "arm64", "foo (1:2.0-1)"),
            ]
        )
    assert groups == {}
    assert "source nowhere 1 is not in Sources; skipped" in caplog.text


def test_suite_chroot_on_hand_written_sources() -> None:
    groups = group([binary("foo", "1:2.0-1", "amd64", "foo (1:2.0-1)")], method="suite-chroot")
    g = groups[("foo", "1:2.0-1", "amd64")]
    assert g.input_url == "https://mirror.example/debian/pool/main/f/foo/foo_2.0-1.dsc"
    assert [s.name for s in g.sources] == ["foo_2.0.orig.tar.gz"]


def test_parser_survives_odd_text(caplog: pytest.LogCaptureFixture) -> None:
    text = (
        b"Package: a\nVersion: 1\nArchitecture: amd64\nFilename: pool/a.deb\nSize: x\n"
        b"SHA256: " + b"0" * 64 + b"\n\n\n\nPackage: b\nVersion: 1\nArchitecture: all\n"
        b"Filename: pool/b b.deb\nSize: 1\nSHA256: " + b"1" * 64 + b"\n\n"
        b"Package: c\nVersion: 1\nArchitecture: all\nFilename: pool/c.deb\nSize: 1\n"
        b"SHA256: nothex\n\nPackage: d\nVersion: 1\nArchitecture: all\nFilename: pool/d.deb\n"
        b"Size: 1\nSHA256: " + b"2" * 64
    )
    with caplog.at_level(logging.WARNING):
        pkgs = deb.parse_packages(text, what="P")
    assert [p.name for p in pkgs] == ["d"]  # no trailing newline: still the last stanza
    assert "is not a number" in caplog.text and "is not a SHA256" in caplog.text
    assert "a space or a control character" in caplog.text
    with pytest.raises(RebuilderError, match="CRLF"):
        deb.parse_packages(b"Package: a\r\nVersion: 1\r\n", what="P")


# --- fetch.py changes this module relies on ----------------------------------------------


def test_gzip_fast_path_and_multi_member() -> None:
    a, b = b"a" * 1000, b"b" * 10
    assert fetch.decompress(gzip.compress(a), size_hint=1000) == a
    assert fetch.decompress(gzip.compress(a) + gzip.compress(b), size_hint=1010) == a + b
    # the size the signed index lists is a limit: more output is an error, not a guess
    with pytest.raises(FetchError, match="more than the 5 bytes the index lists"):
        fetch.decompress(gzip.compress(a), size_hint=5)
    with pytest.raises(FetchError, match="corrupt gzip"):
        fetch.decompress(gzip.compress(a)[:-12])


# --- the fixture backend really rebuilds ------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("source", "expect"), [("repro", "same"), ("timestamped", "differs"), ("broken", "fails")]
)
def test_backend_rebuilds_from_source(
    archive: fx.Archive, url: str, tmp_path: Path, source: str, expect: str
) -> None:
    snap = run(archive.profile(url, pkgs=(source,)), tmp_path / "cache")
    (g,) = [g for g in snap.groups if g.architecture == archive.arch]
    cwd, out = tmp_path / "cwd", tmp_path / "out"
    cwd.mkdir()
    out.mkdir()
    buildinfo = cwd / g.input_url.rsplit("/", 1)[1]
    fetch.download(g.input_url, buildinfo)
    for a in g.artifacts:  # the expected files sit in the working directory, as the runner has it
        fetch.download(a.url, cwd / a.filename, sha256=a.sha256)
    env = {**os.environ, "REBUILDERD_OUTDIR": str(out), "REBUILDER_MIRROR": url,
           "REBUILDER_FIXTURE_ORIGINAL": "1"}  # fmt: skip  # must not leak into the rebuild
    p = subprocess.run(
        [str(BACKEND), str(buildinfo)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    if expect == "fails":
        assert p.returncode != 0 and "dpkg-buildpackage -B failed" in p.stderr
        assert list(out.iterdir()) == []
        return
    assert p.returncode == 0, p.stderr
    (a,) = g.artifacts
    built = sha256(out / a.filename)
    assert (built == a.sha256) == (expect == "same")


# --- hostile indexes (issue 12) ----------------------------------------------------------


def gzip_bomb(size: int) -> bytes:
    """A valid gzip stream of ``size`` zero bytes (about a thousandth of that on disk)."""
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(8 << 20)
    parts = [c.compress(zeros) for _ in range(size // len(zeros))]
    return b"".join(parts) + c.flush()


def peak_rss_of(work: Path, *args: str) -> tuple[int, subprocess.CompletedProcess[str]]:
    """Run ``rebuild ARGS`` in a fresh process; its peak resident memory (bytes) and result."""
    wrapper = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "sys.stderr.write(r.stderr)\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)\n"
        "sys.exit(r.returncode)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", wrapper, sys.executable, str(REPO / "rebuild.py"), *args],
        cwd=work, env=dict(os.environ, PYTHONPATH=str(REPO)), capture_output=True, text=True,
        timeout=600,  # a guard against a hang, not a timing
    )  # fmt: skip
    return int(r.stdout.strip().splitlines()[-1]), r


def test_a_signed_decompression_bomb_costs_at_most_the_listed_size(
    mutable: tuple[fx.Archive, str], tmp_path: Path
) -> None:
    archive, url = mutable
    work = operator_dir(tmp_path, archive, url)
    floor, ok = peak_rss_of(work, "sync", "--print-json")  # the same sync, honest indexes
    assert ok.returncode == 0, ok.stderr
    path = f"main/binary-{archive.arch}/Packages"
    listed = len(fx.read_index(archive, path))
    fx.write_index(archive, path, fx.read_index(archive, path), variants=("",))
    (archive.dists / f"{path}.gz").write_bytes(gzip_bomb(512 << 20))  # 512 MiB of zeros
    fx.write_release(archive)  # validly signed: the Release vouches for the bomb
    peak, r = peak_rss_of(work, "sync", "--print-json")
    assert r.returncode == 2
    assert r.stderr.splitlines()[-1] == (
        f"rebuild: error: {url}/dists/fixture/{path}.gz: gzip data decompresses to more than "
        f"the {listed} bytes the index lists"
    )
    assert peak < floor + 2 * listed + (32 << 20), (peak, floor)  # not the 512 MiB
