"""Tails sync against a fixture mirror served on 127.0.0.1, with Apache, nginx and lighttpd
directory listings.

The fixture (:func:`build_mirror`) is what Tails publishes: a git repository
whose release tags are signed by a throwaway "Tails signing key" (real gpg),
tiny images built from each tag by the fixture's build system
(``tests/backends/tails-fixture-rake.sh``, what ``rake build`` is to Tails),
their detached signatures, and a mirror tree ``<channel>/tails-amd64-<v>/``
whose directory listings are written in each server's format. The pass test
(tests/test_pass_tails.py) imports these helpers.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import quote

import pytest

from rebuilder.config import Profile, Release
from rebuilder.errors import ConfigError, FetchError, RepositoryIndexError
from rebuilder.model import Snapshot
from rebuilder.sync import SyncContext, sync_profile, tails

from .debian_archive import gpg, serve, stop_agent

REPO_ROOT = Path(__file__).resolve().parent.parent
RAKE = REPO_ROOT / "tests" / "backends" / "tails-fixture-rake.sh"
KEY_UID = "Tails fixture signing key <tails@fixture.invalid>"
OTHER_UID = "Not Tails <other@fixture.invalid>"
# (channel, version, changelog date, what a rebuild gives)
RELEASES = (
    ("stable", "6.9", "Thu, 14 Nov 2024 10:00:00 +0000", "old"),
    ("stable", "6.10", "Thu, 19 Dec 2024 10:00:00 +0000", "GOOD"),
    ("alpha", "7.0~rc1", "Wed, 01 Jan 2025 12:00:00 +0000", "BAD"),
)
GIT_IDENTITY = {
    "GIT_AUTHOR_NAME": "Tails developers",
    "GIT_AUTHOR_EMAIL": "tails@fixture.invalid",
    "GIT_COMMITTER_NAME": "Tails developers",
    "GIT_COMMITTER_EMAIL": "tails@fixture.invalid",
}


@dataclass(frozen=True)
class TailsMirror:
    """A built fixture: serve ``mirror``; ``git`` is the Tails repository, ``keyring`` its key."""

    root: Path
    mirror: Path
    git: Path
    gnupghome: Path
    keyring: Path  # the public key, exported (what REBUILDER_TAILS_KEYRING names)
    key: str

    def profile(self, url: str, **overrides: object) -> Profile:
        p = Profile(
            name="tails-fixture",
            distro="tails",
            releases=(Release("stable", url), Release("alpha", url)),
        )
        return replace(p, **overrides)  # type: ignore[arg-type]

    def release_dir(self, channel: str, version: str) -> Path:
        return self.mirror / channel / f"tails-amd64-{version}"


# --- building the fixture ----------------------------------------------------------------


def build_mirror(root: Path, gnupghome: Path) -> TailsMirror:
    """The signed Tails repository, each release built from its tag, published on a mirror."""
    gnupghome.mkdir(mode=0o700, parents=True, exist_ok=True)
    key = generate_key(gnupghome, KEY_UID)
    keyring = root / "tails-signing.key"
    keyring.write_bytes(gpg(gnupghome, "--armor", "--export", key))
    repo = root / "tails.git"
    git(root, gnupghome, "init", "-q", "-b", "main", str(repo))
    fx = TailsMirror(root, root / "mirror", repo, gnupghome, keyring, key)
    for channel, version, date, outcome in RELEASES:
        tag = commit_release(fx, version, date, timestamped=outcome == "BAD")
        publish(fx, channel, version, tag)
    write_listings(fx)
    return fx


def git(cwd: Path, gnupghome: Path, *args: str) -> str:
    env = {**os.environ, **GIT_IDENTITY, "GNUPGHOME": str(gnupghome)}
    p = subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)} failed: {p.stderr}")
    return p.stdout.strip()


def generate_key(home: Path, uid: str) -> str:
    try:
        gpg(home, "--quick-gen-key", uid, "ed25519", "sign", "never")
        out = gpg(home, "--list-secret-keys", "--with-colons", uid).decode()
    finally:
        stop_agent(home)
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


def commit_release(
    fx: TailsMirror,
    version: str,
    date: str,
    *,
    timestamped: bool,
    key: str | None = None,
    gnupghome: Path | None = None,
) -> str:
    """Commit a release of the fixture repository and tag it, signed; the tag's name."""
    (fx.git / "debian").mkdir(exist_ok=True)
    (fx.git / "debian" / "changelog").write_text(
        f"tails ({version}) stable; urgency=medium\n\n  * New upstream release.\n\n"
        f" -- Tails developers <tails@fixture.invalid>  {date}\n"
    )
    inc = fx.git / "config" / "chroot_local-includes" / "etc"
    inc.mkdir(parents=True, exist_ok=True)
    (inc / "motd").write_text(f"Welcome to Tails {version}\n")
    stamp = fx.git / "config" / "embed-build-time"
    if timestamped:
        stamp.write_text("the fixture's build system writes the time of the build\n")
    else:
        stamp.unlink(missing_ok=True)
    home = gnupghome or fx.gnupghome
    git(fx.git, home, "add", "-A")
    git(fx.git, home, "commit", "-q", "-m", f"Release {version}")
    tag = version.replace("~", "-")
    try:
        git(
            fx.git,
            home,
            "-c",
            f"user.signingkey={key or fx.key}",
            "tag",
            "-s",
            "-m",
            f"tagging version {version}",
            tag,
        )
    finally:
        stop_agent(home)
    return tag


def publish(fx: TailsMirror, channel: str, version: str, tag: str) -> None:
    """Build the tag's images with the fixture's build system and sign them (.sig)."""
    with tempfile.TemporaryDirectory(prefix="tails-build-") as tmp:
        checkout = Path(tmp) / "tails"
        git(fx.root, fx.gnupghome, "clone", "-q", str(fx.git), str(checkout))
        git(
            checkout,
            fx.gnupghome,
            "-c",
            "advice.detachedHead=false",
            "checkout",
            "-q",
            f"refs/tags/{tag}",
        )
        date = subprocess.run(
            ["dpkg-parsechangelog", "-S", "Date"],
            cwd=checkout,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        epoch = subprocess.run(
            ["date", "--utc", f"--date={date}", "+%s"], check=True, capture_output=True, text=True
        ).stdout.strip()
        env = dict(os.environ, SOURCE_DATE_EPOCH=epoch)
        subprocess.run([str(RAKE), "build"], cwd=checkout, env=env, check=True, capture_output=True)
        dest = fx.release_dir(channel, version)
        dest.mkdir(parents=True)
        for ext in ("img", "iso"):
            name = f"tails-amd64-{version}.{ext}"
            shutil.copy2(checkout / name, dest / name)
            try:
                gpg(
                    fx.gnupghome,
                    "--local-user",
                    fx.key,
                    "--detach-sign",
                    "--output",
                    str(dest / f"{name}.sig"),
                    str(dest / name),
                )
            finally:
                stop_agent(fx.gnupghome)


def write_sums(fx: TailsMirror, channel: str, version: str) -> None:
    d = fx.release_dir(channel, version)
    lines = [
        f"{hashlib.sha256((d / n).read_bytes()).hexdigest()}  {n}"
        for n in sorted(p.name for p in d.glob("*.i[ms][go]"))
    ]
    (d / "SHA256SUMS").write_text("\n".join(lines) + "\n")
    write_listings(fx)


def write_listings(fx: TailsMirror) -> None:
    """Each directory's index.html as a different web server writes it (the fixture's
    http.server serves an index.html in place of its own listing)."""
    stable = fx.mirror / "stable"
    (stable / "index.html").write_text(
        apache("/tails/stable", [n for n in sorted(os.listdir(stable)) if n != "index.html"])
    )
    (fx.mirror / "alpha" / "index.html").write_text(
        lighttpd(
            "/tails/alpha/", sorted(n for n in os.listdir(fx.mirror / "alpha") if n != "index.html")
        )
    )
    for channel, version, _date, _outcome in RELEASES:
        d = fx.release_dir(channel, version)
        (d / "index.html").write_text(
            nginx(
                f"/tails/{channel}/tails-amd64-{version}/",
                sorted(n for n in os.listdir(d) if n != "index.html"),
            )
        )


def apache(path: str, names: list[str]) -> str:
    """mod_autoindex with FancyIndexing and HTMLTable, as Debian's Apache 2.4 serves it."""
    rows = "".join(
        f'<tr><td valign="top"><img src="/icons/folder.gif" alt="[DIR]"></td><td>'
        f'<a href="{quote(n)}/">{n}/</a></td><td align="right">2024-12-19 10:00  </td>'
        f'<td align="right">  - </td><td>&nbsp;</td></tr>\n'
        for n in names
    )
    return f"""<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<html>
 <head>
  <title>Index of {path}</title>
 </head>
 <body>
<h1>Index of {path}</h1>
  <table>
   <tr><th valign="top"><img src="/icons/blank.gif" alt="[ICO]"></th><th><a href="?C=N;O=D">Name</a></th><th><a href="?C=M;O=A">Last modified</a></th><th><a href="?C=S;O=A">Size</a></th><th><a href="?C=D;O=A">Description</a></th></tr>
   <tr><th colspan="5"><hr></th></tr>
<tr><td valign="top"><img src="/icons/back.gif" alt="[PARENTDIR]"></td><td><a href="/tails/">Parent Directory</a></td><td>&nbsp;</td><td align="right">  - </td><td>&nbsp;</td></tr>
{rows}   <tr><th colspan="5"><hr></th></tr>
</table>
<address>Apache/2.4.62 (Debian) Server at mirror.example Port 443</address>
</body></html>
"""  # noqa: E501


def nginx(path: str, names: list[str]) -> str:
    """ngx_http_autoindex_module: names longer than 50 characters are cut in the text only."""
    rows = "".join(
        f'<a href="{quote(n)}">{n if len(n) <= 50 else n[:47] + "..&gt;"}</a>'
        f"{' ' * max(1, 51 - len(n))}19-Dec-2024 10:00             1048576\n"
        for n in names
    )
    return (
        f"<html>\r\n<head><title>Index of {path}</title></head>\r\n<body>\r\n"
        f'<h1>Index of {path}</h1><hr><pre><a href="../">../</a>\r\n{rows}</pre><hr></body>\r\n'
        "</html>\r\n"
    )


def lighttpd(path: str, names: list[str]) -> str:
    """mod_dirlisting: XHTML, percent-encoded hrefs, the trailing '/' outside the link."""
    rows = "".join(
        f'<tr class="d"><td class="n"><a href="{quote(n, safe="")}/">{n}</a>/</td>'
        f'<td class="m">2025-Jan-01 12:00:00</td><td class="s">- &nbsp;</td>'
        f'<td class="t">Directory</td></tr>\n'
        for n in names
    )
    return f"""<?xml version="1.0" encoding="utf-8"?>
<!DOCTYPE html PUBLIC "-//W3C//DTD XHTML 1.1//EN" "http://www.w3.org/TR/xhtml11/DTD/xhtml11.dtd">
<html xmlns="http://www.w3.org/1999/xhtml" xml:lang="en">
<head>
<title>Index of {path}</title>
</head>
<body>
<h2>Index of {path}</h2>
<div class="list">
<table summary="Directory Listing" cellpadding="0" cellspacing="0">
<thead><tr><th class="n">Name</th><th class="m">Last Modified</th><th class="s">Size</th><th class="t">Type</th></tr></thead>
<tbody>
<tr class="d"><td class="n"><a href="../">Parent Directory</a>/</td><td class="m">&nbsp;</td><td class="s">- &nbsp;</td><td class="t">Directory</td></tr>
{rows}</tbody>
</table>
</div>
<div class="foot">lighttpd/1.4.76</div>
</body>
</html>
"""  # noqa: E501


def copy_mirror(fx: TailsMirror, dest: Path) -> TailsMirror:
    shutil.copytree(fx.mirror, dest / "mirror")
    return replace(fx, mirror=dest / "mirror")


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def tails_mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TailsMirror]:
    home = Path(tempfile.mkdtemp(prefix="rb-tails-gpg-"))  # short: gpg-agent's socket
    yield build_mirror(tmp_path_factory.mktemp("tails"), home)
    stop_agent(home)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def served(tails_mirror: TailsMirror, tmp_path: Path) -> Iterator[tuple[TailsMirror, str]]:
    fx = copy_mirror(tails_mirror, tmp_path)
    url, stop = serve(fx.mirror)
    yield fx, url
    stop()


def run(profile: Profile, cache: Path, **ctx: object) -> Snapshot:
    return sync_profile(profile, SyncContext(cache, **ctx))  # type: ignore[arg-type]


# --- a good mirror -----------------------------------------------------------------------


def test_one_group_per_channel_newest_version(served: tuple[TailsMirror, str], tmp_path: Path):
    fx, url = served
    write_sums(fx, "alpha", "7.0~rc1")
    snap = run(fx.profile(url), tmp_path)
    assert [(g.release, g.component, g.architecture, g.name, g.version) for g in snap.groups] == [
        ("stable", "stable", "amd64", "tails", "6.10"),
        ("alpha", "alpha", "amd64", "tails", "7.0~rc1"),
    ]
    stable, alpha = snap.groups
    base = f"{url}/stable/tails-amd64-6.10"
    assert stable.input_url == f"{base}/tails-amd64-6.10.img"
    assert [(a.name, a.url) for a in stable.artifacts] == [
        ("tails-amd64-6.10.img", f"{base}/tails-amd64-6.10.img"),
        ("tails-amd64-6.10.iso", f"{base}/tails-amd64-6.10.iso"),
    ]
    d = fx.release_dir("stable", "6.10")
    for a in stable.artifacts:
        assert a.sha256 == ""  # the mirror publishes none for this release
        assert a.size == (d / a.name).stat().st_size
    assert [s.name for s in stable.sources] == [
        "tails-amd64-6.10.img.sig",
        "tails-amd64-6.10.iso.sig",
    ]
    # a SHA256SUMS in the release directory is used; '~' survived lighttpd's %7E
    d = fx.release_dir("alpha", "7.0~rc1")
    assert {a.name: a.sha256 for a in alpha.artifacts} == {
        n: hashlib.sha256((d / n).read_bytes()).hexdigest()
        for n in ("tails-amd64-7.0~rc1.img", "tails-amd64-7.0~rc1.iso")
    }
    assert alpha.input_url == f"{url}/alpha/tails-amd64-7.0~rc1/tails-amd64-7.0~rc1.img"


def test_unchanged_mirror_and_a_new_release(served: tuple[TailsMirror, str], tmp_path: Path):
    fx, url = served
    first = run(fx.profile(url), tmp_path)
    again = run(fx.profile(url), tmp_path, previous=first.fingerprints)
    assert again.unchanged and again.groups == ()
    write_sums(fx, "stable", "6.10")  # the release directory changed: a full sync
    changed = run(fx.profile(url), tmp_path, previous=first.fingerprints)
    assert not changed.unchanged and changed.groups[0].artifacts[0].sha256 != ""


def test_python_http_server_listings_and_arch(served: tuple[TailsMirror, str], tmp_path: Path):
    fx, url = served
    for index in fx.mirror.rglob("index.html"):
        index.unlink()  # the fixture server's own listings
    snap = run(fx.profile(url, releases=(Release("stable", url),)), tmp_path)
    assert [g.version for g in snap.groups] == ["6.10"]
    with pytest.raises(RepositoryIndexError, match="names no tails-arm64-<version>/"):
        run(fx.profile(url, architectures=("arm64",)), tmp_path)


def test_profile_errors(tails_mirror: TailsMirror, tmp_path: Path):
    url = "http://127.0.0.1:9"
    with pytest.raises(ConfigError, match="REBUILDER_TAILS_KEYRING"):
        run(tails_mirror.profile(url, keyring=str(tails_mirror.keyring)), tmp_path)
    with pytest.raises(ConfigError, match="method"):
        run(tails_mirror.profile(url, method="x"), tmp_path)
    with pytest.raises(ConfigError, match="not a release or architecture name"):
        run(tails_mirror.profile(url, releases=(Release("../stable", url),)), tmp_path)


# --- hostile mirrors ---------------------------------------------------------------------


def test_hostile_links_are_ignored(served: tuple[TailsMirror, str], tmp_path: Path):
    fx, url = served
    hostile = [
        '<a href="../../etc/">x</a>',
        '<a href="/tails-amd64-99.0/">x</a>',
        '<a href="http://evil.example/stable/tails-amd64-99.0/">x</a>',
        f'<a href="{url}/elsewhere/tails-amd64-99.0/">x</a>',
        '<a href="tails-amd64-99.0/../../x/">x</a>',
        '<a href="tails-amd64-99.0;rm%20-rf/">x</a>',
        '<a href="tails-amd64-99.0%2F..%2F..%2Fx/">x</a>',
        '<a href="tails-amd64-../">x</a>',
        '<a href="tails-amd64-99.0?x=1/">x</a>',
        '<a href="javascript:alert(1)">x</a>',
        '<a href="tails-amd64-' + "9" * 200 + '/">x</a>',
        "<a href=",
    ]
    index = fx.mirror / "stable" / "index.html"
    index.write_text(index.read_text().replace("</table>", "".join(hostile) + "</table>"))
    snap = run(fx.profile(url, releases=(Release("stable", url),)), tmp_path)
    assert [g.version for g in snap.groups] == ["6.10"]


def test_missing_image_garbage_listing_and_oversize(
    served: tuple[TailsMirror, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    fx, url = served
    stable = fx.profile(url, releases=(Release("stable", url),))
    d = fx.release_dir("stable", "6.10")
    index = d / "index.html"
    listing = index.read_text()
    index.write_text(listing.replace('"tails-amd64-6.10.iso"', '"other"'))
    with caplog.at_level(logging.WARNING):
        (g,) = run(stable, tmp_path).groups
    assert [a.name for a in g.artifacts] == ["tails-amd64-6.10.img"]
    assert "no tails-amd64-6.10.iso in the listing" in caplog.text
    index.write_text(listing.replace('"tails-amd64-6.10.img"', '"other"'))
    with pytest.raises(RepositoryIndexError, match=r"no tails-amd64-6\.10\.img in the listing"):
        run(stable, tmp_path)
    (fx.mirror / "stable" / "index.html").write_bytes(os.urandom(4096))
    with pytest.raises(RepositoryIndexError, match="names no tails-amd64-<version>/"):
        run(stable, tmp_path)
    (fx.mirror / "stable" / "index.html").write_bytes(b"<a href='x/'>" * (1 << 20))
    with pytest.raises(FetchError, match="larger than"):
        run(stable, tmp_path)
    shutil.rmtree(fx.mirror / "alpha")
    with pytest.raises(FetchError, match="HTTP 404"):
        run(fx.profile(url, releases=(Release("alpha", url),)), tmp_path)


def test_bad_checksum_files_are_not_used(
    served: tuple[TailsMirror, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    fx, url = served
    d = fx.release_dir("stable", "6.10")
    img = "tails-amd64-6.10.img"
    (d / "SHA256SUMS").write_text(
        f"not a sum\n{'a' * 64}  ../../{img}\n{'b' * 64}  {img}\n{'c' * 64}  {img}\n"
    )
    (d / f"{img[:-4]}.iso.sha256").write_text("d" * 64 + "\n")
    write_listings(fx)
    with caplog.at_level(logging.WARNING):
        (g,) = run(fx.profile(url, releases=(Release("stable", url),)), tmp_path).groups
    assert {a.name: a.sha256 for a in g.artifacts} == {img: "", f"{img[:-4]}.iso": "d" * 64}
    assert "not a SHA256 line" in caplog.text and "two different SHA256" in caplog.text


def test_listing_names_unit():
    base = "https://mirror.example/tails/stable/"
    assert tails.listing_names(
        '<a href="a/">a</a><A HREF="b/">b</A><a href="a/">again</a>', base
    ) == ["a/", "b/"]
    assert tails.listing_names('<a href="https://mirror.example/tails/stable/c/">c</a>', base) == [
        "c/"
    ]
    assert tails.listing_names('<a href="x%00y">x</a>', base) == []


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [
        ("6.10", "6.9", 1),
        ("7.0~rc1", "7.0", -1),
        ("7.0~beta1", "7.0~rc1", -1),
        ("6.0", "6.0.1", -1),
        ("6.1", "6.01", 0),
        ("5.22", "6.0~alpha1", -1),
        ("1.0", "1.0", 0),
    ],
)
def test_tails_versions(a: str, b: str, want: int):
    assert tails.compare_versions(a, b) == want
    assert tails.compare_versions(b, a) == -want


# --- the CLI -----------------------------------------------------------------------------


def test_rebuild_sync_print_json(served: tuple[TailsMirror, str], tmp_path: Path):
    fx, url = served
    (tmp_path / "rebuilder.toml").write_text(f"""
[profile."tails"]
distro = "tails"
releases = ["stable", "alpha"]
source = "{url}/"
""")
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    cmd = [sys.executable, str(REPO_ROOT / "rebuild.py"), "sync", "tails", "--print-json"]
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    (snap,) = json.loads(r.stdout)
    assert [(g["release"], g["version"]) for g in snap["groups"]] == [
        ("stable", "6.10"),
        ("alpha", "7.0~rc1"),
    ]
    shutil.rmtree(fx.mirror / "stable")
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "HTTP 404" in r.stderr and "Traceback" not in r.stderr
