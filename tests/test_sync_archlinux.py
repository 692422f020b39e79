"""Arch Linux sync against a real repository (makepkg + repo-add --sign) served on 127.0.0.1.

The repository (tests/fixtures/archlinux.py) is built once per test process; tests
that change it work on a copy. Signatures are checked by the real gpgv.
Hostile databases are made with tarfile in the layout repo-add writes, and
read from a local directory (the sync takes a path as a mirror too).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rebuilder.config import Profile, Release
from rebuilder.errors import (
    ConfigError,
    FetchError,
    RebuilderError,
    RepositoryIndexError,
    SignatureError,
)
from rebuilder.model import BuildGroup, Snapshot
from rebuilder.sync import SyncContext, Warnings, sync_profile, syncer
from rebuilder.sync import archlinux as arch

from .fixtures import archlinux as ar
from .fixtures.http import serve

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(
    bool(ar.missing_tools()), reason=f"needs {', '.join(ar.missing_tools())}"
)


# --- fixtures --------------------------------------------------------------------


@pytest.fixture(scope="module")
def url(arch_repo: ar.ArchRepo) -> Iterator[str]:
    """The shared repository, served unchanged for the module."""
    base, stop = serve(arch_repo.root)
    yield base
    stop()


def run(profile: Profile, cache: Path, **ctx: object) -> Snapshot:
    return sync_profile(profile, SyncContext(cache, **ctx))  # type: ignore[arg-type]


def by_name(snap: Snapshot) -> dict[str, BuildGroup]:
    return {g.name: g for g in snap.groups}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def local_profile(root: Path, repos: tuple[str, ...] = ("core",), **kw: Any) -> Profile:
    p = Profile(
        "local",
        "archlinux",
        (),
        components=repos,
        architectures=("x86_64",),
        source=f"{root}/$repo/os/$arch",
    )
    return replace(p, **kw)


def write_local(root: Path, repo: str, data: bytes, compression: str = "zst") -> Path:
    """An unsigned database ``repo`` in a local mirror tree."""
    d = root / repo / "os" / "x86_64"
    d.mkdir(parents=True, exist_ok=True)
    (d / f"{repo}.db").write_bytes(ar.compress(data, compression))
    return d


def sha(n: int) -> str:
    return f"{n:064x}"


# --- a real repository ----------------------------------------------------------------


def test_sync_groups_by_pkgbase_with_verified_artifacts(
    arch_repo: ar.ArchRepo, url: str, tmp_path: Path
) -> None:
    snap = run(arch_repo.profile(url), tmp_path)
    assert snap.distro == "archlinux" and snap.profile == "arch" and not snap.unchanged
    groups = by_name(snap)
    assert set(groups) == {"repro", "broken", "timestamped"}
    assert [g.name for g in snap.groups] == ["broken", "repro", "timestamped"]  # by repo, name
    for fx in arch_repo.pkgbases:
        g = groups[fx.base]
        assert (g.distro, g.release, g.component, g.architecture, g.version) == (
            "archlinux",
            arch.DEFAULT_RELEASE,
            fx.repo,
            arch_repo.arch,
            fx.version,
        )
        assert g.maintainers == (fx.packager,) and g.method == "" and g.sources == ()
        assert [a.name for a in g.artifacts] == sorted(n for n, _ in fx.packages)
        for a in g.artifacts:
            local = arch_repo.repo_dir(fx.repo) / fx.filename(a.name, arch_repo.arch)
            assert a.url == f"{url}/{fx.repo}/os/{arch_repo.arch}/{local.name}"
            assert a.filename == local.name and a.version == fx.version
            assert a.sha256 == sha256(local) and a.size == local.stat().st_size
        # the build input is the first package file by name, with its checksum
        assert g.input_url == g.artifacts[0].url and g.input_sha256 == g.artifacts[0].sha256
    assert [(a.name, a.architecture) for a in groups["repro"].artifacts] == [
        ("repro", arch_repo.arch),
        ("repro-doc", "any"),
    ]
    assert set(snap.fingerprints) == {
        f"{url}/core/os/{arch_repo.arch}/core.db",
        f"{url}/extra/os/{arch_repo.arch}/extra.db",
        "profile-settings",
    }
    assert snap.fingerprints[f"{url}/core/os/{arch_repo.arch}/core.db"] == sha256(
        arch_repo.db("core")
    )


def test_unchanged_databases_are_not_parsed_again(
    arch_served: tuple[ar.ArchRepo, str], tmp_path: Path
) -> None:
    repo, url = arch_served
    first = run(repo.profile(url), tmp_path)
    again = run(repo.profile(url), tmp_path, previous=first.fingerprints)
    assert again.unchanged and again.groups == () and again.fingerprints == first.fingerprints
    forced = run(repo.profile(url), tmp_path, previous=first.fingerprints, force=True)
    assert not forced.unchanged and forced.groups == first.groups
    # another filter is another snapshot, even over the same databases
    narrowed = run(repo.profile(url, pkgs=("repro*",)), tmp_path, previous=first.fingerprints)
    assert not narrowed.unchanged and [g.name for g in narrowed.groups] == ["repro"]
    # extra loses its package: only its fingerprint changes, and the group is gone
    ar.write_db(repo, "extra", ar.make_tar([]))
    changed = run(repo.profile(url), tmp_path, previous=first.fingerprints)
    assert not changed.unchanged and set(by_name(changed)) == {"repro", "broken"}
    key = f"{url}/extra/os/{repo.arch}/extra.db"
    assert {k for k in first.fingerprints if first.fingerprints[k] != changed.fingerprints[k]} == {
        key
    }


def test_filters_on_packager_and_package_names(
    arch_repo: ar.ArchRepo, url: str, tmp_path: Path
) -> None:
    snap = run(arch_repo.profile(url, maintainers=("Bob Example <bob@",)), tmp_path)
    assert [g.name for g in snap.groups] == ["timestamped"]
    assert run(arch_repo.profile(url, maintainers=("Nobody",)), tmp_path).groups == ()
    # pkgs/excludes match package names: a split package may be kept alone
    snap = run(arch_repo.profile(url, pkgs=("repro*",), excludes=("repro",)), tmp_path)
    (g,) = snap.groups
    assert [a.name for a in g.artifacts] == ["repro-doc"]
    assert g.input_url == g.artifacts[0].url and g.input_url.endswith("-any.pkg.tar.zst")


@pytest.mark.parametrize("compression", ["zst", "gz", "xz", "bz2", "none"])
def test_every_compression_is_read(
    arch_served: tuple[ar.ArchRepo, str],
    tmp_path: Path,
    arch_repo: ar.ArchRepo,
    url: str,
    compression: str,
) -> None:
    want = run(arch_repo.profile(url), tmp_path / "want").groups
    copy, copy_url = arch_served
    for name in ar.REPOS:
        ar.write_db(copy, name, ar.read_db_tar(copy, name), compression=compression)
    got = run(copy.profile(copy_url), tmp_path / "got").groups
    assert [g.to_json() for g in got] == [
        json.loads(json.dumps(g.to_json()).replace(url, copy_url)) for g in want
    ]


def test_explicit_release_names_the_groups(
    arch_repo: ar.ArchRepo, url: str, tmp_path: Path
) -> None:
    p = arch_repo.profile(
        url, releases=(Release("arch-2024", f"{url}/${{repo}}/os/${{arch}}"),), source=""
    )
    snap = run(p, tmp_path)
    assert {g.release for g in snap.groups} == {"arch-2024"}
    assert {g.key for g in snap.groups} == {
        f"arch-2024/core/{arch_repo.arch}/repro",
        f"arch-2024/core/{arch_repo.arch}/broken",
        f"arch-2024/extra/{arch_repo.arch}/timestamped",
    }


def test_registry_and_print_json_through_the_cli(
    arch_repo: ar.ArchRepo, url: str, tmp_path: Path
) -> None:
    assert syncer("archlinux") is arch.sync
    (tmp_path / "rebuilder.toml").write_text(f"""
[profile."arch"]
distro = "archlinux"
components = ["core", "extra"]
architecture = "{arch_repo.arch}"
source = "{url}/$repo/os/$arch"
keyring = "{arch_repo.keyring}"
""")
    r = subprocess.run(
        [sys.executable, str(REPO / "rebuild.py"), "sync", "arch", "--print-json"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 0, r.stderr
    (snap,) = json.loads(r.stdout)
    assert snap["distro"] == "archlinux" and snap["unchanged"] is False
    assert {g["name"]: g["component"] for g in snap["groups"]} == {
        "repro": "core",
        "broken": "core",
        "timestamped": "extra",
    }
    assert not (tmp_path / "state").exists() or not list((tmp_path / "state").glob("*.json"))


# --- signatures --------------------------------------------------------------------


def test_altered_database_fails_its_signature(
    arch_served: tuple[ar.ArchRepo, str], tmp_path: Path
) -> None:
    repo, url = arch_served
    data = ar.read_db_tar(repo, "core")
    sig = repo.db("core").with_name("core.db.sig").read_bytes()
    ar.write_db(repo, "core", data.replace(b"Carol Example", b"Carol Exampel"), sign=False)
    repo.db("core").with_name("core.db.sig").write_bytes(sig)
    with pytest.raises(SignatureError, match="BAD signature"):
        run(repo.profile(url), tmp_path)


def test_unsigned_database_fails_only_with_a_keyring(
    arch_served: tuple[ar.ArchRepo, str], tmp_path: Path
) -> None:
    repo, url = arch_served
    ar.write_db(repo, "extra", ar.read_db_tar(repo, "extra"), sign=False)
    with pytest.raises(SignatureError, match=r"extra\.db: not signed"):
        run(repo.profile(url), tmp_path)
    snap = run(repo.profile(url, keyring=None), tmp_path)  # Arch's own databases are unsigned
    assert set(by_name(snap)) == {"repro", "broken", "timestamped"}


def test_database_signed_by_another_key_fails(
    arch_served: tuple[ar.ArchRepo, str], tmp_path: Path
) -> None:
    repo, url = arch_served
    home, key = ar.other_key(repo)
    ar.sign_file(repo, repo.db("core"), gnupghome=home, key=key)
    with pytest.raises(SignatureError, match="not in the keyring"):
        run(repo.profile(url), tmp_path)


# --- hostile and broken databases ------------------------------------------------------


def test_hostile_entries_are_skipped_with_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    outside = tmp_path / "outside"
    good = ar.desc_fields("good", "1.0-1", sha256=sha(1), csize=10)
    members: list[tuple[str, bytes | None]] = [
        ("good-1.0-1", None),
        ("good-1.0-1/desc", ar.desc_text(good)),
    ]

    def entry(name: str, fields: list[tuple[str, list[str]]], directory: str | None = None) -> None:
        d = directory or f"{name}-1.0-1"
        members.extend([(d, None), (f"{d}/desc", ar.desc_text(fields))])

    def f(name: str, **kw: object) -> list[tuple[str, list[str]]]:
        return ar.desc_fields(name, "1.0-1", sha256=sha(2), **kw)  # type: ignore[arg-type]

    entry("climb", f("climb", filename="../../../etc/passwd"))
    entry("absolute", f("absolute", filename="/etc/passwd"))
    entry("subdir", f("subdir", filename="sub/subdir-1.0-1-x86_64.pkg.tar.zst"))
    entry("quoted", f("quoted", filename="x%2F..%2F..%2Fetc%2Fpasswd"))
    entry("spaces", f("spaces", filename="a b.pkg.tar.zst"))
    entry("nosum", [kv for kv in f("nosum") if kv[0] != "SHA256SUM"])
    entry("noname", [kv for kv in f("noname") if kv[0] != "NAME"], directory="noname-1.0-1")
    entry("badsize", [(k, ["12abc"] if k == "CSIZE" else v) for k, v in f("badsize")])
    entry("badsum", [(k, ["xyz"] if k == "SHA256SUM" else v) for k, v in f("badsum")])
    entry("twonames", [*f("twonames"), ("NAME", ["twonames"])])
    entry(
        "twovalues", [(k, ["1.0-1", "2.0-1"] if k == "VERSION" else v) for k, v in f("twovalues")]
    )
    entry("liar", f("liar"), directory="other-9.9-9")
    entry(
        "noversion",
        [(k, ["1.0"] if k == "VERSION" else v) for k, v in f("noversion")],
        directory="noversion-1.0",
    )
    entry("longname", f("longname", packager="x" * 5000))
    members.append(("huge-1.0-1/desc", ar.desc_text(f("huge")) + b"%DESC%\n" + b"y" * (2 << 20)))
    members.append(("good-1.0-1/desc", ar.desc_text(f("good"))))  # a second member, same path
    # members that would land outside a directory if anyone extracted them: nobody does
    members.append((f"{outside}/evil-1.0-1/desc", ar.desc_text(f("evil"))))
    members.append(("../evil-1.0-1/desc", ar.desc_text(f("evil"))))
    write_local(tmp_path / "m", "core", ar.make_tar(members))
    with caplog.at_level(logging.WARNING, logger="rebuilder.sync.archlinux"):
        snap = run(local_profile(tmp_path / "m"), tmp_path / "cache")
    assert "more entries skipped" in caplog.text  # past five of a kind: counted, not listed
    caplog.clear()
    monkeypatch.setattr(Warnings, "MAX", 100)
    with caplog.at_level(logging.WARNING, logger="rebuilder.sync.archlinux"):
        assert run(local_profile(tmp_path / "m"), tmp_path / "cache").groups == snap.groups
    assert [(g.name, [a.sha256 for a in g.artifacts]) for g in snap.groups] == [("good", [sha(1)])]
    (g,) = snap.groups
    assert g.artifacts[0].url == f"{tmp_path}/m/core/os/x86_64/good-1.0-1-x86_64.pkg.tar.zst"
    text = caplog.text
    for needle in (
        "'../../../etc/passwd' is a path",
        "'/etc/passwd' is a path",
        "is a path",
        "malformed %FILENAME% 'x%2F..%2F",
        "no %SHA256SUM%",
        "no %NAME%",
        "malformed %CSIZE%",
        "malformed %SHA256SUM%",
        "%NAME% given twice",
        "%VERSION% has 2 values",
        "inconsistent database entry",
        "malformed %VERSION% '1.0'",
        "%PACKAGER% is too long",
        "larger than 1048576 bytes",
        "in the archive twice",
    ):
        assert needle in text, needle
    assert "Traceback" not in text
    assert not outside.exists() and not (tmp_path / "evil-1.0-1").exists()


def test_pkgbase_listed_twice_keeps_the_newest_by_pacman_rules(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tar = ar.db_tar(
        [
            ar.desc_fields("foo", "1.0-9", sha256=sha(1)),
            ar.desc_fields("foo", "1.0-10", sha256=sha(2)),  # pkgrel 10 > 9 (not as strings)
            ar.desc_fields("bar", "1:0.5-1", sha256=sha(3)),  # the epoch wins over 2.0
            ar.desc_fields("bar", "2.0-1", sha256=sha(4)),
            ar.desc_fields("baz", "1.0a-1", sha256=sha(5)),  # 1.0a is a pre-release of 1.0
            ar.desc_fields("baz", "1.0-1", sha256=sha(6)),
        ]
    )
    write_local(tmp_path / "m", "core", tar)
    with caplog.at_level(logging.WARNING, logger="rebuilder.sync.archlinux"):
        snap = run(local_profile(tmp_path / "m"), tmp_path / "c")
    got = {g.name: (g.version, g.artifacts[0].sha256) for g in snap.groups}
    assert got == {"foo": ("1.0-10", sha(2)), "bar": ("1:0.5-1", sha(3)), "baz": ("1.0-1", sha(6))}
    assert "core/x86_64: foo is listed at 1.0-9 and 1.0-10; kept 1.0-10" in caplog.text


def test_split_packages_group_across_repositories(tmp_path: Path) -> None:
    root = tmp_path / "m"
    write_local(
        root,
        "core",
        ar.db_tar(
            [
                ar.desc_fields("multi-a", "1.0-1", base="multi", sha256=sha(1)),
                ar.desc_fields("solo", "1.0-1", sha256=sha(3)),
            ]
        ),
    )
    write_local(
        root,
        "extra",
        ar.db_tar(
            [
                ar.desc_fields("multi-b", "1.0-1", base="multi", sha256=sha(2)),
                ar.desc_fields("solo", "1.1-1", sha256=sha(4)),  # another version: its own group
                ar.desc_fields("solo-extra", "1.0-1", base="solo", sha256=sha(5)),  # solo 1.0 again
            ]
        ),
        compression="gz",
    )
    snap = run(local_profile(root, ("core", "extra")), tmp_path / "c")
    got = {g.key: (g.version, [a.name for a in g.artifacts]) for g in snap.groups}
    assert got == {
        "rolling/core/x86_64/multi": ("1.0-1", ["multi-a", "multi-b"]),
        "rolling/core/x86_64/solo": ("1.0-1", ["solo", "solo-extra"]),
        "rolling/extra/x86_64/solo": ("1.1-1", ["solo"]),
    }
    multi = next(g for g in snap.groups if g.name == "multi")
    assert multi.artifacts[1].url.startswith(f"{root}/extra/os/x86_64/")
    # the first repository of the profile names the group
    reordered = run(local_profile(root, ("extra", "core")), tmp_path / "c")
    assert {g.key for g in reordered.groups} == {
        "rolling/extra/x86_64/multi",
        "rolling/extra/x86_64/solo",
    }


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"<html><body>mirror maintenance</body></html>\n" * 30, "not a valid tar archive"),
        (
            ar.make_tar([("a-1.0-1", None), ("a-1.0-1/desc", b"%NAME%\na\n\n")], end=False),
            "truncated",
        ),
        (ar.db_tar([ar.desc_fields(f"p{i}", "1.0-1") for i in range(40)])[:15000], "truncated"),
    ],
    ids=["empty", "html", "no-end-marker", "cut-in-a-member"],
)
def test_broken_archives_are_clear_errors(tmp_path: Path, data: bytes, message: str) -> None:
    write_local(tmp_path / "m", "core", data, compression="none")
    with pytest.raises(RepositoryIndexError, match=message):
        run(local_profile(tmp_path / "m"), tmp_path / "c")


@pytest.mark.parametrize("compression", ["zst", "gz", "xz"])
def test_truncated_compressed_database_is_an_error(tmp_path: Path, compression: str) -> None:
    tar = ar.db_tar([ar.desc_fields(f"pkg{i}", "1.0-1", sha256=sha(i)) for i in range(200)])
    d = write_local(tmp_path / "m", "core", tar, compression=compression)
    db = d / "core.db"
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])
    with pytest.raises(RebuilderError, match=r"truncated|corrupt") as e:
        run(local_profile(tmp_path / "m"), tmp_path / "c")
    assert str(db) in str(e.value)


def test_empty_repository_has_no_groups(tmp_path: Path) -> None:
    write_local(tmp_path / "m", "core", ar.make_tar([]))
    assert run(local_profile(tmp_path / "m"), tmp_path / "c").groups == ()


def test_missing_database_names_its_url(url: str, arch_repo: ar.ArchRepo, tmp_path: Path) -> None:
    with pytest.raises(
        FetchError, match=rf"{url}/testing/os/{arch_repo.arch}/testing\.db: HTTP 404"
    ):
        run(arch_repo.profile(url, components=("core", "testing")), tmp_path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"source": ""}, "no mirror"),
        ({"source": "https://mirror.example/$repo/os/$carch"}, r"unknown variable '\$carch'"),
        ({"source": "https://mirror.example/core.db"}, "names a database"),
        ({"components": ()}, "at least one repository"),
        ({"architectures": ()}, "at least one architecture"),
        ({"components": ("../core",)}, "not a repository"),
        ({"method": "debrebuild"}, "unknown method .debrebuild. for archlinux"),
        ({"keyring": "/nonexistent/keyring.gpg"}, "no such file"),
    ],
)
def test_profile_errors(tmp_path: Path, overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        run(local_profile(tmp_path, **overrides), tmp_path / "c")


def test_mirror_templates() -> None:
    assert arch.mirror_url("https://m.example/${repo}/os/${arch}/", "core", "x86_64") == (
        "https://m.example/core/os/x86_64"
    )
    assert arch.mirror_url("/srv/$repo-$arch", "extra", "aarch64") == "/srv/extra-aarch64"


@pytest.mark.slow  # runs rebuild
def test_cli_reports_a_broken_database_in_one_line(tmp_path: Path) -> None:
    write_local(tmp_path / "m", "core", b"\x28\xb5\x2f\xfd garbage", compression="none")
    (tmp_path / "rebuilder.toml").write_text(f"""
[profile."local"]
distro = "archlinux"
suite = "core"
architecture = "x86_64"
source = "{tmp_path}/m/$repo/os/$arch"
""")
    r = subprocess.run(
        [sys.executable, str(REPO / "rebuild.py"), "sync", "local", "--print-json"],
        cwd=tmp_path,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0 and "Traceback" not in r.stderr
    assert "core.db" in r.stderr and "error" in r.stderr
