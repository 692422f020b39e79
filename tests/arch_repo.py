"""A small, real, signed Arch Linux repository for tests, and helpers to rewrite its databases.

:func:`build_repo` builds three pkgbases with ``makepkg`` (``--nodeps``,
``SOURCE_DATE_EPOCH`` fixed, zstd packages) and publishes them with
``repo-add --sign`` in a mirror layout ``<repo>/os/<arch>/``:

- ``repro`` 1.0-1 (core): two split packages, ``repro`` (the machine's
  architecture) and ``repro-doc`` (``any``); rebuilding gives the same bytes.
- ``broken`` 1.0-1 (core): builds only when ``REBUILDER_FIXTURE_ORIGINAL=1``
  (set for the original build here), so every rebuild fails.
- ``timestamped`` 2:1.0-1 (extra, with an epoch): writes ``date`` into the
  package at build time, so a rebuild differs.

makepkg refuses to run as root: as root, it runs as ``nobody`` through
``setpriv``, in a build root under ``/tmp`` that ``nobody`` owns (a pytest
``tmp_path`` is not reachable by other users). Each package's ``.BUILDINFO``
records its build directory ``<buildroot>/<pkgbase>``, which is removed
after the build; the test backend tests/backends/archlinux-makepkg.sh
rebuilds there from ``<pkgbuilds>/<pkgbase>/PKGBUILD``
(``REBUILDER_TEST_PKGBUILDS``, ``REBUILDER_TEST_BUILDROOT``).

The databases can be rewritten (other compressions, hostile entries) with
:func:`write_db`, :func:`make_tar` and :func:`desc_text`; those need no
makepkg and also serve bench/sync_archlinux.py.
"""

from __future__ import annotations

import atexit
import bz2
import functools
import gzip
import io
import lzma
import os
import pwd
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rebuilder.config import Profile

from .debian_archive import _generate_key, gpg, stop_agent

SOURCE_DATE_EPOCH = "1704067200"
PKGEXT = ".pkg.tar.zst"
REPOS = ("core", "extra")
KEY_UID = "Rebuilder Arch Fixture <arch@fixture.invalid>"
OTHER_KEY_UID = "Somebody Else <else@fixture.invalid>"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TOOLS = ("makepkg", "repo-add", "bsdtar", "zstd", "fakeroot", "gpg", "setpriv")


@dataclass(frozen=True)
class FixturePkgbase:
    """One pkgbase of the fixture and what a rebuild of it gives."""

    base: str
    repo: str
    packages: tuple[tuple[str, str], ...]  # (pkgname, "native" or "any")
    packager: str
    expected: str  # GOOD, BAD or FAIL
    epoch: str = ""
    pkgver: str = "1.0"
    pkgrel: str = "1"

    @property
    def version(self) -> str:
        return f"{self.epoch + ':' if self.epoch else ''}{self.pkgver}-{self.pkgrel}"

    def filename(self, pkgname: str, arch: str) -> str:
        native = dict(self.packages)[pkgname] == "native"
        return f"{pkgname}-{self.version}-{arch if native else 'any'}{PKGEXT}"


PKGBASES = (
    FixturePkgbase(
        "repro",
        "core",
        (("repro", "native"), ("repro-doc", "any")),
        "Alice Example <alice@fixture.invalid>",
        "GOOD",
    ),
    FixturePkgbase(
        "broken", "core", (("broken", "native"),), "Carol Example <carol@fixture.invalid>", "FAIL"
    ),
    FixturePkgbase(
        "timestamped",
        "extra",
        (("timestamped", "native"),),
        "Bob Example <bob@fixture.invalid>",
        "BAD",
        epoch="2",
    ),
)


@dataclass(frozen=True)
class ArchRepo:
    """A built fixture repository: serve ``root`` and point a profile at it."""

    root: Path  # <root>/<repo>/os/<arch>/ holds <repo>.db and the packages
    arch: str
    pkgbuilds: Path  # <pkgbuilds>/<pkgbase>/PKGBUILD
    buildroot: Path  # the original builds ran in <buildroot>/<pkgbase>
    keyring: Path
    gnupghome: Path
    key: str
    pkgbases: tuple[FixturePkgbase, ...] = PKGBASES

    def repo_dir(self, repo: str) -> Path:
        return self.root / repo / "os" / self.arch

    def db(self, repo: str) -> Path:
        return self.repo_dir(repo) / f"{repo}.db"

    def profile(self, url: str, **overrides: Any) -> Profile:
        """A profile syncing both repositories served at ``url``, signatures checked."""
        p = Profile(
            name="arch",
            distro="archlinux",
            releases=(),
            components=REPOS,
            architectures=(self.arch,),
            source=f"{url}/$repo/os/$arch",
            keyring=str(self.keyring),
        )
        return replace(p, **overrides)

    def backend_env(self) -> dict[str, str]:
        """What tests/backends/archlinux-makepkg.sh needs to find and place a build."""
        return {
            "REBUILDER_TEST_PKGBUILDS": str(self.pkgbuilds),
            "REBUILDER_TEST_BUILDROOT": str(self.buildroot),
        }

    def pkgbase(self, base: str) -> FixturePkgbase:
        return next(p for p in self.pkgbases if p.base == base)


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def makepkg_carch() -> str:
    """The architecture makepkg builds for (CARCH of /etc/makepkg.conf)."""
    out = subprocess.run(
        ["bash", "-c", '. /etc/makepkg.conf && printf %s "$CARCH"'],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


@functools.cache
def shared_repo() -> ArchRepo:
    """One fixture repository per test process (built on first use, removed at exit)."""
    base = Path(tempfile.mkdtemp(prefix="rb-arch-"))
    gnupghome = Path(tempfile.mkdtemp(prefix="rb-agpg-"))  # short: gpg-agent's socket

    def cleanup() -> None:
        stop_agent(gnupghome)
        stop_agent(gnupghome / "other")
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(gnupghome, ignore_errors=True)

    atexit.register(cleanup)
    return build_repo(base / "mirror", base, gnupghome)


def build_repo(root: Path, work: Path, gnupghome: Path) -> ArchRepo:
    """Build the fixture pkgbases and a signed repository of them in ``root`` (a few seconds).

    ``work`` gets the PKGBUILDs and the build root; it must be reachable by
    user ``nobody`` when this runs as root (e.g. a fresh directory in /tmp).
    """
    gnupghome.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = _generate_key(gnupghome, KEY_UID)
    keyring = gnupghome / "arch-keyring.gpg"
    keyring.write_bytes(gpg(gnupghome, "--export", key))
    arch = makepkg_carch()
    pkgbuilds, buildroot = work / "pkgbuilds", work / "build"
    buildroot.mkdir(parents=True)
    work.chmod(0o755)
    _give_to_builder(buildroot)
    repo = ArchRepo(root, arch, pkgbuilds, buildroot, keyring, gnupghome, key)
    for p in PKGBASES:
        (pkgbuilds / p.base).mkdir(parents=True)
        (pkgbuilds / p.base / "PKGBUILD").write_text(pkgbuild(p, arch))
    with ThreadPoolExecutor(max_workers=2) as pool:
        built = list(pool.map(lambda p: _build(repo, p), PKGBASES))
    for p, files in zip(PKGBASES, built, strict=True):
        dest = repo.repo_dir(p.repo)
        dest.mkdir(parents=True, exist_ok=True)
        for f in files:
            shutil.copyfile(f, dest / f.name)
        shutil.rmtree(buildroot / p.base)  # the rebuild recreates it
    for name in REPOS:
        pkgs = sorted(f.name for f in repo.repo_dir(name).glob(f"*{PKGEXT}"))
        _run(
            ["repo-add", "--quiet", "--sign", "--key", key, f"{name}.db.tar.zst", *pkgs],
            cwd=repo.repo_dir(name),
            env={**os.environ, "GNUPGHOME": str(gnupghome)},
        )
    stop_agent(gnupghome)
    return repo


def copy_repo(repo: ArchRepo, dest: Path) -> ArchRepo:
    """A copy of ``repo`` in ``dest`` (same key, same builds) that a test may change."""
    shutil.copytree(repo.root, dest, symlinks=True)
    return replace(repo, root=dest)


# --- building -------------------------------------------------------------------


def pkgbuild(p: FixturePkgbase, arch: str) -> str:
    """The PKGBUILD of a fixture pkgbase."""
    bodies = {
        "repro": 'printf "hello from the fixture\\n" > README',
        "repro-doc": 'install -Dm644 "$srcdir/README" "$pkgdir/usr/share/doc/repro/README"',
        "broken": 'install -Dm644 /dev/null "$pkgdir/usr/share/doc/broken/built-once"',
        "timestamped": 'install -d "$pkgdir/usr/share/timestamped"\n'
        '  date +%s.%N > "$pkgdir/usr/share/timestamped/built-at"',
    }
    build = {
        "repro": 'printf "#!/bin/sh\\necho hello\\n" > repro-hello\n  ' + bodies["repro"],
        "broken": '[ "${REBUILDER_FIXTURE_ORIGINAL:-}" = 1 ] || '
        '{ echo "fixture: broken only builds for the original upload" >&2; return 1; }',
        "timestamped": "true",
    }[p.base]
    installs = {
        "repro": 'install -Dm755 "$srcdir/repro-hello" "$pkgdir/usr/bin/repro-hello"',
        "repro-doc": bodies["repro-doc"],
        "broken": bodies["broken"],
        "timestamped": bodies["timestamped"],
    }
    names = " ".join(n for n, _ in p.packages)
    text = [
        "# rebuilder test fixture",
        f"pkgbase={p.base}",
        f"pkgname=({names})",
        *([f"epoch={p.epoch}"] if p.epoch else []),
        f"pkgver={p.pkgver}",
        f"pkgrel={p.pkgrel}",
        f'pkgdesc="rebuilder test fixture {p.base}"',
        f"arch=({arch})",
        "license=(MIT)",
        "",
        f"build() {{\n  {build}\n}}",
    ]
    for name, kind in p.packages:
        override = "  arch=(any)\n" if kind == "any" else ""
        text.append(f"\npackage_{name}() {{\n{override}  {installs[name]}\n}}")
    return "\n".join(text) + "\n"


def _build(repo: ArchRepo, p: FixturePkgbase) -> list[Path]:
    startdir = repo.buildroot / p.base
    startdir.mkdir()
    shutil.copyfile(repo.pkgbuilds / p.base / "PKGBUILD", startdir / "PKGBUILD")
    _give_to_builder(startdir)
    env = {
        "PATH": PATH,
        "HOME": str(repo.buildroot),
        "LC_ALL": "C",
        "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH,
        "PKGEXT": PKGEXT,
        "PACKAGER": p.packager,
        "REBUILDER_FIXTURE_ORIGINAL": "1",
    }
    cmd = [
        "sh",
        "-c",
        'umask 022 && cd "$1" && exec makepkg --nodeps --noconfirm --nocolor',
        "sh",
        str(startdir),
    ]
    _run(_as_builder(cmd), env=env)
    files = sorted(startdir.glob(f"*{PKGEXT}"))
    want = sorted(p.filename(n, repo.arch) for n, _ in p.packages)
    if [f.name for f in files] != want:
        raise RuntimeError(f"makepkg of {p.base} made {[f.name for f in files]}, not {want}")
    return files


def _builder() -> tuple[int, int] | None:
    """The (uid, gid) makepkg runs as: ``nobody`` when we are root, else ourselves (None)."""
    if os.geteuid() != 0:
        return None
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


def _give_to_builder(path: Path) -> None:
    ids = _builder()
    if ids is not None:
        for p in [path, *path.rglob("*")]:
            os.chown(p, *ids, follow_symlinks=False)


def _as_builder(cmd: list[str]) -> list[str]:
    ids = _builder()
    if ids is None:
        return cmd
    return ["setpriv", f"--reuid={ids[0]}", f"--regid={ids[1]}", "--clear-groups", "--", *cmd]


def _run(cmd: Sequence[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    p = subprocess.run(
        list(cmd),
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}{p.stderr}")


# --- rewriting databases --------------------------------------------------------------


def desc_text(fields: Iterable[tuple[str, Sequence[str]]]) -> bytes:
    """A desc file: ``%KEY%`` then its values, one per line, then a blank line."""
    return "".join(f"%{k}%\n" + "".join(f"{v}\n" for v in vs) + "\n" for k, vs in fields).encode()


def desc_fields(
    name: str,
    version: str,
    *,
    base: str | None = None,
    arch: str = "x86_64",
    filename: str | None = None,
    sha256: str = "0" * 64,
    csize: int = 1,
    packager: str = "Jane Doe <jane@example.org>",
) -> list[tuple[str, list[str]]]:
    """The fields repo-add writes, in its order, for a made-up package."""
    return [
        ("FILENAME", [filename or f"{name}-{version}-{arch}{PKGEXT}"]),
        ("NAME", [name]),
        ("BASE", [base or name]),
        ("VERSION", [version]),
        ("DESC", [f"the {name} package"]),
        ("CSIZE", [str(csize)]),
        ("ISIZE", [str(csize * 3)]),
        ("SHA256SUM", [sha256]),
        ("URL", ["https://mirror.example/upstream"]),
        ("LICENSE", ["GPL-3.0-or-later"]),
        ("ARCH", [arch]),
        ("BUILDDATE", [SOURCE_DATE_EPOCH]),
        ("PACKAGER", [packager]),
        ("DEPENDS", ["glibc", "bash"]),
    ]


def make_tar(members: Iterable[tuple[str, bytes | None]], *, end: bool = True) -> bytes:
    """A tar archive of ``(name, content)`` members (content None: a directory).

    ``end=False`` leaves out the end-of-archive blocks (a truncated archive).
    """
    buf = io.BytesIO()
    tar = tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
    for name, data in members:
        info = tarfile.TarInfo(name)
        info.mtime = int(SOURCE_DATE_EPOCH)
        if data is None:
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        else:
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    if end:
        tar.close()
        return buf.getvalue()
    return buf.getvalue()  # without close(): no end-of-archive blocks


def db_tar(entries: Iterable[list[tuple[str, list[str]]]]) -> bytes:
    """A database tar of desc entries, laid out as repo-add lays it out."""
    members: list[tuple[str, bytes | None]] = []
    for fields in entries:
        f = dict(fields)
        d = f"{f['NAME'][0]}-{f['VERSION'][0]}"
        members += [(d, None), (f"{d}/desc", desc_text(fields))]
    return make_tar(members)


def compress(data: bytes, kind: str) -> bytes:
    """``data`` compressed as ``kind``: zst, gz, xz, bz2 or none."""
    if kind == "zst":
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(data)
    if kind == "gz":
        return gzip.compress(data, 6, mtime=0)
    if kind == "xz":
        return lzma.compress(data)
    if kind == "bz2":
        return bz2.compress(data)
    if kind == "none":
        return data
    raise ValueError(kind)


def read_db_tar(repo: ArchRepo, name: str) -> bytes:
    """The uncompressed tar of database ``name`` as repo-add wrote it."""
    from rebuilder.fetch import decompress

    return decompress(repo.db(name).read_bytes())


def tar_members(data: bytes) -> list[tuple[str, bytes | None]]:
    """``(name, content)`` of each member of a tar (content None for a directory)."""
    out: list[tuple[str, bytes | None]] = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for m in tar:
            f = tar.extractfile(m) if m.isreg() else None
            out.append((m.name, f.read() if f else None))
    return out


def write_db(
    repo: ArchRepo, name: str, data: bytes, *, compression: str = "zst", sign: bool = True
) -> None:
    """Replace database ``name`` with ``data`` (compressed as asked), signed again or unsigned."""
    db = repo.db(name)
    sig = db.with_name(db.name + ".sig")
    db.unlink()
    sig.unlink(missing_ok=True)
    db.write_bytes(compress(data, compression))
    if sign:
        sign_file(repo, db)


def sign_file(
    repo: ArchRepo, path: Path, *, gnupghome: Path | None = None, key: str | None = None
) -> None:
    """A detached binary signature ``<path>.sig`` (by another key if ``gnupghome``/``key``)."""
    sig = path.with_name(path.name + ".sig")
    sig.unlink(missing_ok=True)
    home = gnupghome or repo.gnupghome
    try:
        gpg(home, "--local-user", key or repo.key, "--detach-sign", "--output", str(sig), str(path))
    finally:
        stop_agent(home)


def other_key(repo: ArchRepo) -> tuple[Path, str]:
    """A second key, not in the repository's keyring: ``(gnupghome, fingerprint)``."""
    home = repo.gnupghome / "other"
    if not home.exists():
        home.mkdir(mode=0o700)
        _generate_key(home, OTHER_KEY_UID)
    out = gpg(home, "--list-secret-keys", "--with-colons").decode()
    return home, next(ln.split(":")[9] for ln in out.splitlines() if ln.startswith("fpr:"))
