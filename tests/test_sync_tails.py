"""Tails sync against the fixture mirror (tests/fixtures/tails.py) tails_served on 127.0.0.1, with
Apache, nginx and lighttpd directory listings."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest

from rebuilder import config, fetch, pipeline
from rebuilder.config import Profile, Release
from rebuilder.errors import ConfigError, FetchError, RepositoryIndexError
from rebuilder.model import Snapshot
from rebuilder.sync import SyncContext, sync_profile, tails

from .fixtures import ROOT
from .fixtures.http import serve
from .fixtures.tails import TailsMirror, write_listings, write_sums

# --- building the fixture ----------------------------------------------------------------


# --- fixtures ----------------------------------------------------------------------------


def run(profile: Profile, cache: Path, **ctx: object) -> Snapshot:
    return sync_profile(profile, SyncContext(cache, **ctx))  # type: ignore[arg-type]


# --- a good mirror -----------------------------------------------------------------------


def test_one_group_per_channel_newest_version(
    tails_served: tuple[TailsMirror, str], tmp_path: Path
):
    fx, url = tails_served
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


def test_unchanged_mirror_and_a_new_release(tails_served: tuple[TailsMirror, str], tmp_path: Path):
    fx, url = tails_served
    first = run(fx.profile(url), tmp_path)
    again = run(fx.profile(url), tmp_path, previous=first.fingerprints)
    assert again.unchanged and again.groups == ()
    # a re-signed image: the same names, a signature of another size (ed25519 signatures
    # differ by a byte now and then); a state that kept the old size would fail its builds
    sig = fx.release_dir("stable", "6.10") / "tails-amd64-6.10.iso.sig"
    sig.write_bytes(sig.read_bytes() + b"\n")
    resigned = run(fx.profile(url), tmp_path, previous=first.fingerprints)
    assert not resigned.unchanged
    (stable,) = [g for g in resigned.groups if g.release == "stable"]
    assert {s.name: s.size for s in stable.sources}[sig.name] == sig.stat().st_size
    write_sums(fx, "stable", "6.10")  # the release directory changed: a full sync
    changed = run(fx.profile(url), tmp_path, previous=resigned.fingerprints)
    assert not changed.unchanged and changed.groups[0].artifacts[0].sha256 != ""


def test_an_operators_own_method_reaches_the_groups(
    tails_served: tuple[TailsMirror, str], tmp_path: Path
):
    """config, the pipeline and the syncer apply one rule: a method with its own backend."""
    _, url = tails_served
    (tmp_path / "b.sh").write_text("#!/bin/sh\n")
    (tmp_path / "b.sh").chmod(0o755)
    (tmp_path / "rebuilder.toml").write_text(
        f'[profile."t"]\ndistro = "tails"\nreleases = ["stable"]\nsource = "{url}"\n'
        f'method = "by-hand"\n[backend."tails-by-hand"]\npath = "b.sh"\n'
    )
    cfg = config.load(tmp_path / "rebuilder.toml")
    (snap,) = pipeline.snapshot(cfg, ["t"])
    assert [g.method for g in snap.groups] == ["by-hand"]
    assert pipeline.profile_backend(cfg.profiles["t"]) == "tails-by-hand"


class _RefuseFirstHead(SimpleHTTPRequestHandler):
    """Answers each path's first HEAD with 503, as a loaded mirror may."""

    refused: ClassVar[set[str]] = set()

    def do_HEAD(self) -> None:
        if self.path not in self.refused:
            self.refused.add(self.path)
            self.send_error(503)
            return
        super().do_HEAD()

    def log_message(self, format: str, *args: object) -> None:
        pass


def test_a_refused_head_is_retried(
    tails_mirror: TailsMirror, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(fetch, "BACKOFF", 0.01)
    url, stop = serve(tails_mirror.mirror, _RefuseFirstHead)
    try:
        snap = run(tails_mirror.profile(url), tmp_path)
    finally:
        stop()
    assert len(snap.groups) == 2 and len(_RefuseFirstHead.refused) == 8  # 2 images, 2 .sig


def test_python_http_server_listings_and_arch(
    tails_served: tuple[TailsMirror, str], tmp_path: Path
):
    fx, url = tails_served
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


def test_hostile_links_are_ignored(tails_served: tuple[TailsMirror, str], tmp_path: Path):
    fx, url = tails_served
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
    tails_served: tuple[TailsMirror, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    fx, url = tails_served
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
    tails_served: tuple[TailsMirror, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    fx, url = tails_served
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


def test_rebuild_sync_print_json(tails_served: tuple[TailsMirror, str], tmp_path: Path):
    fx, url = tails_served
    (tmp_path / "rebuilder.toml").write_text(f"""
[profile."tails"]
distro = "tails"
releases = ["stable", "alpha"]
source = "{url}/"
""")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, str(ROOT / "rebuild.py"), "sync", "tails", "--print-json"]
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
