"""A small, real, signed Debian archive for tests, and helpers to serve and corrupt it.

:func:`build_archive` builds three source packages with ``dpkg-buildpackage``
(no debhelper; ``SOURCE_DATE_EPOCH`` fixed by the changelog date):

- ``repro`` 1.0: a tiny C program (``Architecture: any``) and a doc package
  (``Architecture: all``); rebuilding it gives the same bytes.
- ``timestamped`` 1.0: writes ``date`` into the package at build time, so a
  rebuild differs.
- ``broken`` 1.0: builds only when ``REBUILDER_FIXTURE_ORIGINAL=1`` is set
  (as it is for the original build here), so the archive has its ``.deb``
  but every rebuild fails.

It then writes a pool, ``Sources`` and ``Packages`` (``apt-ftparchive``, from
apt-utils) in plain, ``.gz`` and ``.xz``, a ``Release`` with SHA256 sums
signed into ``InRelease`` and ``Release.gpg`` by a throwaway key, the
public key as a keyring, and each build's ``.buildinfo`` under
``buildinfo-pool/`` where a buildinfo service keeps it, so that the
archive's own base URL is also the profile's ``buildinfo_url``.

Nothing here needs pytest: ``python -m tests.debian_archive DIR`` builds an
archive and serves it until interrupted. Tests that change an archive work
on a :func:`copy_archive` of a session-wide one.
"""

from __future__ import annotations

import datetime as _dt
import functools
import gzip
import hashlib
import lzma
import os
import shutil
import subprocess
import tempfile
import textwrap
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from rebuilder.config import Profile, Release

SUITE = "fixture"
COMPONENT = "main"
CHANGELOG_DATE = "Mon, 01 Jan 2024 00:00:00 +0000"
SOURCE_DATE_EPOCH = "1704067200"  # the changelog date: what dpkg-buildpackage derives anyway
KEY_UID = "Rebuilder Fixture Archive <archive@fixture.invalid>"
OTHER_KEY_UID = "Somebody Else <else@fixture.invalid>"


@dataclass(frozen=True)
class FixturePackage:
    """One source package of the fixture and what a rebuild of each of its groups gives."""

    source: str
    version: str
    binaries: tuple[tuple[str, str], ...]  # (binary name, "any" or "all")
    maintainer: str
    uploaders: tuple[str, ...]
    expected: str  # the status a real rebuild gets: GOOD, BAD or FAIL

    @property
    def arch_any(self) -> tuple[str, ...]:
        return tuple(b for b, a in self.binaries if a == "any")

    @property
    def arch_all(self) -> tuple[str, ...]:
        return tuple(b for b, a in self.binaries if a == "all")

    @property
    def pool_dir(self) -> str:
        return f"pool/{COMPONENT}/{pool_prefix(self.source)}/{self.source}"


PACKAGES = (
    FixturePackage(
        "repro",
        "1.0",
        (("repro", "any"), ("repro-doc", "all")),
        "Alice Example <alice@fixture.invalid>",
        ("Bob Example <bob@fixture.invalid>",),
        "GOOD",
    ),
    FixturePackage(
        "timestamped",
        "1.0",
        (("timestamped", "any"),),
        "Bob Example <bob@fixture.invalid>",
        (),
        "BAD",
    ),
    FixturePackage(
        "broken",
        "1.0",
        (("broken", "any"),),
        "Carol Example <carol@fixture.invalid>",
        (),
        "FAIL",
    ),
)


@dataclass(frozen=True)
class Archive:
    """A built fixture archive: serve ``root`` and point a profile at it."""

    root: Path
    suite: str
    keyring: Path
    gnupghome: Path
    key: str  # fingerprint of the signing key
    arch: str  # the build machine's architecture (dpkg --print-architecture)
    packages: tuple[FixturePackage, ...]
    component: str = COMPONENT

    @property
    def dists(self) -> Path:
        return self.root / "dists" / self.suite

    def profile(self, url: str, **overrides: Any) -> Profile:
        """A profile syncing this archive served at ``url`` (buildinfos from there too)."""
        p = Profile(
            name="fixture",
            distro="debian",
            releases=(Release(self.suite, url),),
            components=(self.component,),
            architectures=(self.arch, "all"),
            keyring=str(self.keyring),
            buildinfo_url=url,
        )
        return replace(p, **overrides)

    def package(self, source: str) -> FixturePackage:
        return next(p for p in self.packages if p.source == source)


def build_archive(root: Path, gnupghome: Path, *, suite: str = SUITE) -> Archive:
    """Build the fixture packages and a signed archive of them in ``root`` (a few seconds).

    ``gnupghome`` gets the throwaway signing key; keep its path short (gpg's
    agent socket lives there). The public key is exported next to it.
    """
    root.mkdir(parents=True, exist_ok=True)
    gnupghome.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = _generate_key(gnupghome, KEY_UID)
    keyring = gnupghome / "archive-keyring.gpg"
    keyring.write_bytes(gpg(gnupghome, "--export", key))
    arch = subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()
    archive = Archive(root, suite, keyring, gnupghome, key, arch, PACKAGES)
    with tempfile.TemporaryDirectory(prefix="rebuilder-fixture-") as tmp:
        with ThreadPoolExecutor(max_workers=2) as pool:
            built = list(pool.map(lambda p: _build(p, Path(tmp) / p.source), PACKAGES))
        for pkg, outdir in zip(PACKAGES, built, strict=True):
            _publish(archive, pkg, outdir)
    write_indexes(archive)
    write_release(archive)
    return archive


def copy_archive(archive: Archive, dest: Path) -> Archive:
    """A copy of ``archive`` in ``dest`` (same key) that a test may corrupt."""
    shutil.copytree(archive.root, dest, symlinks=True)
    return replace(archive, root=dest)


def pool_prefix(source: str) -> str:
    return source[:4] if source.startswith("lib") else source[:1]


# --- building the packages --------------------------------------------------------


def _build(pkg: FixturePackage, work: Path) -> Path:
    """Build ``pkg`` (source, arch-any and arch-all separately, as Debian does); its outdir."""
    tree = work / f"{pkg.source}-{pkg.version}"
    _write_source_tree(pkg, tree)
    env = {
        **os.environ,
        "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH,
        "REBUILDER_FIXTURE_ORIGINAL": "1",
        "LC_ALL": "C.UTF-8",
        "DEB_BUILD_OPTIONS": "",
    }
    steps = ["-S"] + (["-B"] if pkg.arch_any else []) + (["-A"] if pkg.arch_all else [])
    for step in steps:
        p = subprocess.run(
            ["dpkg-buildpackage", "-us", "-uc", "-d", step],
            cwd=tree,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
        )
        if p.returncode != 0:
            raise RuntimeError(
                f"dpkg-buildpackage {step} of {pkg.source} failed:\n{p.stdout}{p.stderr}"
            )
    return work


def _write_source_tree(pkg: FixturePackage, tree: Path) -> None:
    (tree / "debian" / "source").mkdir(parents=True)
    (tree / "debian" / "source" / "format").write_text("3.0 (native)\n")
    uploaders = f"Uploaders: {', '.join(pkg.uploaders)}\n" if pkg.uploaders else ""
    control = (
        f"Source: {pkg.source}\nSection: misc\nPriority: optional\nMaintainer: {pkg.maintainer}\n"
        f"{uploaders}Standards-Version: 4.6.2\nRules-Requires-Root: no\n"
    )
    for name, arch in pkg.binaries:
        control += (
            f"\nPackage: {name}\nArchitecture: {arch}\n"
            f"Description: rebuilder test fixture {name}\n A package of the test archive.\n"
        )
    (tree / "debian" / "control").write_text(control)
    (tree / "debian" / "changelog").write_text(
        f"{pkg.source} ({pkg.version}) unstable; urgency=medium\n\n  * Test fixture.\n\n"
        f" -- {pkg.maintainer}  {CHANGELOG_DATE}\n"
    )
    rules = tree / "debian" / "rules"
    rules.write_text(_rules(pkg))
    rules.chmod(0o755)
    if pkg.source == "repro":
        (tree / "hello.c").write_text(
            '#include <stdio.h>\nint main(void) { puts("hello from the fixture"); return 0; }\n'
        )


def _rules(pkg: FixturePackage) -> str:
    """A debhelper-free debian/rules: install files, dpkg-gencontrol, dpkg-deb."""
    build_arch = {
        "repro": "cc -O2 -o hello hello.c",
        "timestamped": "date +%s.%N > built-at",
        "broken": 'test "$$REBUILDER_FIXTURE_ORIGINAL" = 1 || '
        '{ echo "fixture: broken only builds for the original upload" >&2; exit 1; }',
    }[pkg.source]
    installs = {
        "repro": "install -d $(D)/usr/bin && install -m755 hello $(D)/usr/bin/repro-hello",
        "repro-doc": "install -d $(D)/usr/share/doc/repro-doc && "
        "echo 'reproducible fixture' > $(D)/usr/share/doc/repro-doc/README",
        "timestamped": "install -d $(D)/usr/share/timestamped && "
        "install -m644 built-at $(D)/usr/share/timestamped/built-at",
        "broken": "install -d $(D)/usr/share/doc/broken && "
        "echo 'built once' > $(D)/usr/share/doc/broken/README",
    }

    def binary_target(arch: str) -> str:
        lines = []
        for name, a in pkg.binaries:
            if a != arch:
                continue
            d = f"debian/{name}"
            lines += [
                f"rm -rf {d}",
                f"install -d {d}/DEBIAN",
                installs[name].replace("$(D)", d),
                f"dpkg-gencontrol -p{name} -P{d}",
                f"dpkg-deb --root-owner-group --build {d} ..",
            ]
        return "".join(f"\t{line}\n" for line in lines) or "\t@true\n"

    clean = " ".join(f"debian/{b}" for b, _ in pkg.binaries)
    return (
        "#!/usr/bin/make -f\n"
        "build: build-arch build-indep\n"
        f"build-arch:\n\t{build_arch}\n"
        "build-indep:\n"
        "binary: binary-arch binary-indep\n"
        f"binary-arch: build-arch\n{binary_target('any')}"
        f"binary-indep: build-indep\n{binary_target('all')}"
        f"clean:\n\trm -rf {clean} hello built-at debian/files debian/substvars\n"
        ".PHONY: build build-arch build-indep binary binary-arch binary-indep clean\n"
    )


def _publish(archive: Archive, pkg: FixturePackage, outdir: Path) -> None:
    """Move a build's files into the pool and its .buildinfo files into buildinfo-pool."""
    pool = archive.root / pkg.pool_dir
    infos = archive.root / "buildinfo-pool" / pool_prefix(pkg.source) / pkg.source
    pool.mkdir(parents=True, exist_ok=True)
    infos.mkdir(parents=True, exist_ok=True)
    for f in outdir.iterdir():
        if f.suffix in (".deb", ".dsc") or f.name.endswith((".tar.xz", ".tar.gz")):
            shutil.copy2(f, pool / f.name)
        elif f.suffix == ".buildinfo" and not f.name.endswith("_source.buildinfo"):
            shutil.copy2(f, infos / f.name)


# --- indexes and Release -------------------------------------------------------


def write_indexes(archive: Archive) -> None:
    """Sources and Packages (binary-ARCH with the arch-all packages, and binary-all)."""
    comp = archive.component
    pool = f"pool/{comp}"
    sources = _ftparchive(archive.root, "sources", pool)
    write_index(archive, f"{comp}/source/Sources", sources)
    for arch in (archive.arch, "all"):
        packages = _ftparchive(archive.root, "--arch", arch, "packages", pool)
        write_index(archive, f"{comp}/binary-{arch}/Packages", packages)


def write_index(
    archive: Archive, path: str, content: bytes, variants: Iterable[str] = ("", ".gz", ".xz")
) -> None:
    """Write index ``path`` under ``dists/<suite>`` in the given compressions, and only those.

    Does not touch the Release: call :func:`write_release` to vouch for it.
    """
    base = archive.dists / path
    base.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", ".gz", ".xz", ".bz2", ".zst"):
        Path(f"{base}{suffix}").unlink(missing_ok=True)
    for suffix in variants:
        Path(f"{base}{suffix}").write_bytes(compress(content, suffix))


def compress(content: bytes, suffix: str) -> bytes:
    if suffix == ".gz":
        return gzip.compress(content, 9, mtime=0)
    if suffix == ".xz":
        return lzma.compress(content)
    if suffix == "":
        return content
    raise ValueError(f"no compression for {suffix!r}")


def read_index(archive: Archive, path: str) -> bytes:
    """The plain text of index ``path`` (as :func:`write_indexes` wrote it)."""
    return (archive.dists / path).read_bytes()


def write_release(
    archive: Archive,
    *,
    valid_until: _dt.datetime | bool | None = True,
    gnupghome: Path | None = None,
    key: str | None = None,
    extra: dict[str, str] | None = None,
) -> None:
    """(Re)write ``Release`` over the files in ``dists/<suite>`` and sign it.

    ``valid_until``: True = a week from now, None/False = no Valid-Until, or
    a datetime. ``gnupghome``/``key`` sign with another key.
    """
    now = _dt.datetime.now(_dt.UTC).replace(microsecond=0)
    if valid_until is True:
        valid_until = now + _dt.timedelta(days=7)
    fields = {
        "Origin": "Rebuilder Fixture",
        "Label": "Rebuilder Fixture",
        "Suite": archive.suite,
        "Codename": archive.suite,
        "Date": _rfc2822(now),
    }
    if isinstance(valid_until, _dt.datetime):
        fields["Valid-Until"] = _rfc2822(valid_until)
    fields["Architectures"] = f"{archive.arch} all"
    fields["Components"] = archive.component
    fields.update(extra or {})
    skip = {"Release", "InRelease", "Release.gpg"}
    files = sorted(
        p
        for p in archive.dists.rglob("*")
        if p.is_file() and p.relative_to(archive.dists).as_posix() not in skip
    )
    lines = [f"{k}: {v}" for k, v in fields.items()]
    for algo, name in (("md5", "MD5Sum"), ("sha256", "SHA256")):
        lines.append(f"{name}:")
        for p in files:
            data = p.read_bytes()
            digest = hashlib.new(algo, data).hexdigest()
            lines.append(f" {digest} {len(data):8d} {p.relative_to(archive.dists).as_posix()}")
    release = archive.dists / "Release"
    release.write_text("\n".join(lines) + "\n")
    home, signer = gnupghome or archive.gnupghome, key or archive.key
    for out in ("InRelease", "Release.gpg"):
        (archive.dists / out).unlink(missing_ok=True)
    try:
        sign = ["--local-user", signer, "--digest-algo", "SHA256"]
        gpg(home, *sign, "--clearsign", "--output", str(archive.dists / "InRelease"), str(release))
        gpg(
            home,
            *sign,
            "--armor",
            "--detach-sign",
            "--output",
            str(archive.dists / "Release.gpg"),
            str(release),
        )
    finally:
        stop_agent(home)


def _rfc2822(t: _dt.datetime) -> str:
    return t.strftime("%a, %d %b %Y %H:%M:%S UTC")


def _ftparchive(root: Path, *args: str) -> bytes:
    p = subprocess.run(["apt-ftparchive", *args], cwd=root, capture_output=True, check=False)
    if p.returncode != 0:
        raise RuntimeError(f"apt-ftparchive {' '.join(args)} failed: {p.stderr.decode()}")
    return p.stdout


# --- ways to break it ------------------------------------------------------------


def tamper_packages(archive: Archive) -> None:
    """Change ``binary-ARCH/Packages`` (every compression) without updating the Release."""
    path = f"{archive.component}/binary-{archive.arch}/Packages"
    text = read_index(archive, path)
    tampered = text.replace(b"\nSize: ", b"\nSize: 1", 1)
    assert tampered != text
    write_index(archive, path, tampered)


def resign_with_other_key(archive: Archive) -> str:
    """Sign the Release with a key that is not in the archive's keyring; its fingerprint."""
    home = archive.gnupghome / "other"
    home.mkdir(mode=0o700, exist_ok=True)
    key = _generate_key(home, OTHER_KEY_UID)
    write_release(archive, gnupghome=home, key=key)
    return key


def alter_inrelease(archive: Archive) -> None:
    """Change one signed line of ``InRelease`` after signing: a BAD signature."""
    path = archive.dists / "InRelease"
    text = path.read_bytes()
    altered = text.replace(b"Label: Rebuilder Fixture", b"Label: Rebuilder Fixturf", 1)
    assert altered != text
    path.write_bytes(altered)


def expire(archive: Archive, days: int = 1) -> None:
    """Re-sign the Release with a Valid-Until ``days`` in the past."""
    write_release(archive, valid_until=_dt.datetime.now(_dt.UTC) - _dt.timedelta(days=days))


# --- gpg -------------------------------------------------------------------------


def gpg(home: Path, *args: str) -> bytes:
    p = subprocess.run(
        [
            "gpg",
            "--batch",
            "--quiet",
            "--homedir",
            str(home),
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            *args,
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    if p.returncode != 0:
        raise RuntimeError(f"gpg {' '.join(args)} failed: {p.stderr.decode()}")
    return p.stdout


def _generate_key(home: Path, uid: str) -> str:
    try:
        gpg(home, "--quick-gen-key", uid, "ed25519", "sign", "never")
        out = gpg(home, "--list-secret-keys", "--with-colons", uid).decode()
    finally:
        stop_agent(home)
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


def stop_agent(home: Path) -> None:
    """Stop the gpg-agent gpg started for ``home``: tests leave no process behind."""
    subprocess.run(
        ["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False
    )


# --- serving ---------------------------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(root: Path) -> tuple[str, Callable[[], None]]:
    """Serve ``root`` over HTTP on 127.0.0.1 (a free port) from a thread: ``(url, stop)``."""
    handler = functools.partial(_QuietHandler, directory=str(root))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": 0.05},
        name="fixture-http",
        daemon=True,
    )
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return f"http://127.0.0.1:{server.server_address[1]}", stop


def main() -> None:  # pragma: no cover - a manual tool
    import sys

    root = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="fixture-"))
    archive = build_archive(root / "archive", root / "gnupg")
    url, stop = serve(archive.root)
    print(
        textwrap.dedent(f"""\
        archive: {archive.root}
        url:     {url}
        keyring: {archive.keyring}
        suite:   {archive.suite}  (Ctrl-C stops)""")
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        stop()


if __name__ == "__main__":
    main()
