"""The client: fixture rebuilders served over HTTP on 127.0.0.1, local package databases."""

from __future__ import annotations

import datetime
import functools
import json
import os
import random
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from rebuilder import attest, client, fetch
from rebuilder.api import v0 as api_v0
from rebuilder.client import ClientError, Installed, PackageDatabaseError, PkgEntry, remote
from rebuilder.client.installed import DPKG_STATUS as HOST_DPKG_STATUS
from rebuilder.errors import RebuilderError
from rebuilder.model import Status

# --- tiny HTTP servers -----------------------------------------------------------------------


class _StaticHandler(SimpleHTTPRequestHandler):
    codes: list[int]  # set per server: the status of every answered request

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.codes.append(int(getattr(code, "value", code)))


@contextmanager
def _serve(handler: Callable[..., BaseHTTPRequestHandler]) -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


@contextmanager
def serve_dir(directory: Path, codes: list[int] | None = None) -> Iterator[str]:
    handler = type("H", (_StaticHandler,), {"codes": codes if codes is not None else []})
    with _serve(functools.partial(handler, directory=str(directory))) as url:
        yield url


def _quiet_handler(
    respond: Callable[[BaseHTTPRequestHandler], None], only: str | None = None
) -> type:
    """A server answering GETs with ``respond``; with ``only``, other paths are a 404."""

    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if only is not None and urlsplit(self.path).path != only:
                _send(self, 404, b"not here", "text/plain")
                return
            respond(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return H


def _send(h: BaseHTTPRequestHandler, code: int, body: bytes, ctype: str, **headers: str) -> None:
    h.send_response(code)
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    for k, v in headers.items():
        h.send_header(k.replace("_", "-"), v)
    h.end_headers()
    h.wfile.write(body)


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fetch, "BACKOFF", 0.01)


# --- fixture rebuilders ----------------------------------------------------------------------


def _entry(name: str, version: str, status: str, arch: str = "amd64", **kw: Any) -> dict[str, Any]:
    d = {
        "name": name,
        "version": version,
        "status": status,
        "distro": "debian",
        "suite": "main",
        "architecture": arch,
        "artifact_url": f"https://mirror.example/pool/{name}_{version}_{arch}.deb",
        "build_id": None,
        "built_at": None,
        "has_diffoscope": False,
        "has_attestation": False,
    }
    d.update(kw)
    return d


@dataclass
class Rebuilder:
    root: Path
    key: attest.SigningKey

    def publish(
        self, entries: list[dict[str, Any]], published_key: attest.SigningKey | None = None
    ) -> None:
        api = self.root / "api" / "v0"
        (api / "pkgs").mkdir(parents=True, exist_ok=True)
        (api / "pkgs" / "list").write_text(json.dumps(entries))
        keys = attest.public_keys_json([published_key or self.key])
        (api / "public-keys").write_text(json.dumps(keys))

    def attest(
        self, build_id: int, artifact: Path, inputs: Path, signer: attest.SigningKey | None = None
    ) -> None:
        d = self.root / "api" / "v0" / "builds" / str(build_id)
        d.mkdir(parents=True, exist_ok=True)
        name = artifact.name
        link = attest.make_link(name, f"{name}.buildinfo", inputs, artifact, signer or self.key)
        (d / "attestation").write_bytes(link)
        (d / "log").write_text(f"build {build_id} log\n")


ARTIFACTS = {
    "hello": "hello_2.10-3_amd64.deb",
    "libfoo1": "libfoo1_1.0-1_amd64.deb",  # version 1:1.0-1: the pool file has no epoch
    "data-all": "data-all_1.0-1_all.deb",
    "onlyone": "onlyone_1.0_amd64.deb",
}

DPKG_STATUS = """\
Package: hello
Status: install ok installed
Priority: optional
Architecture: amd64
Version: 2.10-3
Description: example package
 based on GNU hello
 .
 more text

Package: libfoo1
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 1:1.0-1

Package: data-all
Status: install ok installed
Architecture: all
Version: 1.0-1
Conffiles:
 /etc/data-all.conf 0123456789abcdef0123456789abcdef

Package: newpkg
Status: install ok installed
Architecture: amd64
Version: 2.0-1

Package: onlyone
Status: install ok installed
Architecture: amd64
Version: 1.0

Package: libbar
Status: install ok installed
Architecture: i386
Version: 1.0

Package: removed-pkg
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0
"""


@pytest.fixture
def world(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Three rebuilders: r1 and r2 agree on most, disagree on libfoo1; r3 signs with a rogue key."""
    arts = tmp_path / "artifacts"
    arts.mkdir()
    for i, fname in enumerate(ARTIFACTS.values()):
        (arts / fname).write_bytes(f"package {fname}\n".encode() * (100 + i))
        (arts / f"{fname}.buildinfo").write_text(f"buildinfo of {fname}\n")

    def art(pkg: str) -> tuple[Path, Path]:
        return arts / ARTIFACTS[pkg], arts / f"{ARTIFACTS[pkg]}.buildinfo"

    keys = tmp_path / "keys"
    r1 = Rebuilder(tmp_path / "r1", attest.ensure_key(keys / "r1.pem"))
    r2 = Rebuilder(tmp_path / "r2", attest.ensure_key(keys / "r2.pem"))
    r3 = Rebuilder(tmp_path / "r3", attest.ensure_key(keys / "r3.pem"))
    rogue = attest.ensure_key(keys / "rogue.pem")

    r1.publish(
        [
            _entry("hello", "2.10-3", "GOOD", build_id=1, has_attestation=True),
            _entry("libfoo1", "1:1.0-1", "GOOD", build_id=2, has_attestation=True),
            _entry("data-all", "1.0-1", "GOOD", arch="all", build_id=3, has_attestation=True),
            _entry("newpkg", "1.9-1", "GOOD", build_id=4, has_attestation=True),
            _entry("onlyone", "1.0", "GOOD", build_id=5, has_attestation=True),
            _entry("libbar", "1.0", "GOOD", arch="amd64", build_id=6),
        ]
    )
    for bid, pkg in ((1, "hello"), (2, "libfoo1"), (3, "data-all"), (5, "onlyone")):
        r1.attest(bid, *art(pkg))
    r2.publish(
        [
            _entry("hello", "2.10-3", "UNKWN", suite="main-debug"),
            _entry("hello", "2.10-3", "GOOD", build_id=11, has_attestation=True),
            _entry("libfoo1", "1:1.0-1", "BAD", build_id=12, has_diffoscope=True),
            # Debian lists arch:all packages under the architecture they were built on
            _entry("data-all", "1.0-1", "GOOD", arch="amd64", build_id=13, has_attestation=True),
        ]
    )
    r2.attest(11, *art("hello"))
    r2.attest(13, *art("data-all"))
    r3.publish(
        [
            _entry("hello", "2.10-3", "GOOD", build_id=21, has_attestation=True),
            _entry("libfoo1", "1:1.0-1", "UNKWN"),
        ]
    )
    r3.attest(21, *art("hello"), signer=rogue)

    status = tmp_path / "status"
    status.write_text(DPKG_STATUS)
    with serve_dir(r1.root) as u1, serve_dir(r2.root) as u2, serve_dir(r3.root) as u3:
        yield {
            "urls": {"r1": u1, "r2": u2, "r3": u3},
            "status": status,
            "artifacts": arts,
            "tmp": tmp_path,
        }


def _report(world: dict[str, Any], require: int = 2) -> client.VerifyReport:
    lists = {name: client.fetch_pkgs(url) for name, url in world["urls"].items()}
    return client.verify_installed(client.read_dpkg_status(world["status"]), lists, require)


def _by_name(report: client.VerifyReport) -> dict[str, client.PackageVerdict]:
    return {v.package.name: v for v in report.verdicts}


# --- verify installed ------------------------------------------------------------------------


def test_verify_installed_with_a_quorum_of_two(world: dict[str, Any]) -> None:
    report = _report(world)
    v = _by_name(report)
    assert set(v) == {"hello", "libfoo1", "data-all", "newpkg", "onlyone", "libbar"}
    assert v["hello"].status is Status.GOOD and v["hello"].good == ["r1", "r2", "r3"]
    assert v["libfoo1"].status is Status.BAD and v["libfoo1"].disagreement
    assert v["libfoo1"].statuses == {"r1": Status.GOOD, "r2": Status.BAD, "r3": Status.UNKWN}
    assert v["data-all"].status is Status.GOOD  # all matches r2's amd64 entry too
    assert v["newpkg"].status is Status.UNKWN  # r1 only knows an older version
    assert v["onlyone"].status is Status.UNKWN and v["onlyone"].good == ["r1"]
    assert v["libbar"].status is Status.UNKWN  # i386 installed, amd64 rebuilt
    assert [x.package.name for x in report.disagreements] == ["libfoo1"]
    assert (report.total, report.reproduced, report.not_reproduced) == (6, 2, 4)

    lines = {x.package.name: client.format_verify_line(x) for x in report.verdicts}
    assert lines["hello"] == "[+] hello 2.10-3 GOOD  (amd64; 3/3 GOOD)"
    assert lines["libfoo1"].startswith("[-] libfoo1 1:1.0-1 BAD   (amd64; 1/3 GOOD; ")
    assert "rebuilders disagree: r1 GOOD, r2 BAD" in lines["libfoo1"]
    assert lines["onlyone"].startswith("[?] onlyone 1.0 UNKWN")
    summary = client.format_verify_summary(report)
    assert "4/6 packages could not be reproduced by at least 2 of 3 rebuilder(s)." in summary
    assert "33.33% of the installed packages have been reproduced." in summary
    assert "Rebuilders disagree on 1: libfoo1" in summary


def test_quorum_of_one_and_of_three(world: dict[str, Any]) -> None:
    one = _by_name(_report(world, require=1))
    assert one["onlyone"].reproduced and one["libfoo1"].status is Status.GOOD
    three = _by_name(_report(world, require=3))
    assert three["hello"].reproduced and not three["data-all"].reproduced


def test_report_json_is_stable(world: dict[str, Any]) -> None:
    report = _report(world)
    shuffled = list(client.read_dpkg_status(world["status"]))
    random.Random(4).shuffle(shuffled)
    lists = {n: client.fetch_pkgs(u) for n, u in world["urls"].items()}
    again = client.verify_installed(shuffled, lists, 2)
    text = json.dumps(report.to_json())
    assert text == json.dumps(again.to_json())
    doc = json.loads(text)
    assert doc["summary"] == {
        "packages": 6,
        "reproduced": 2,
        "not_reproduced": 4,
        "reproduced_share": 0.3333,
        "disagreements": 1,
    }
    assert [p["name"] for p in doc["packages"]] == sorted(p["name"] for p in doc["packages"])
    libfoo = next(p for p in doc["packages"] if p["name"] == "libfoo1")
    assert libfoo["rebuilders"] == {"r1": "GOOD", "r2": "BAD", "r3": "UNKWN"}


def test_require_is_checked() -> None:
    with pytest.raises(RebuilderError, match="at least 1"):
        client.verify_installed([], {"a": []}, 0)
    with pytest.raises(RebuilderError, match="only 1 rebuilder"):
        client.verify_installed([], {"a": []}, 2)
    assert client.format_verify_summary(client.verify_installed([], {"a": []}, 1)) == (
        "No installed packages found."
    )


def test_check_files_against_the_apt_cache(world: dict[str, Any]) -> None:
    arts: Path = world["artifacts"]
    cache = world["tmp"] / "archives"
    cache.mkdir()
    (cache / "hello_2.10-3_amd64.deb").write_bytes((arts / ARTIFACTS["hello"]).read_bytes())
    # apt names the epoch; the attestation names the pool file
    (cache / "libfoo1_1%3a1.0-1_amd64.deb").write_bytes((arts / ARTIFACTS["libfoo1"]).read_bytes())
    (cache / "data-all_1.0-1_all.deb").write_bytes(b"not the bytes that were rebuilt")

    urls = world["urls"]
    keys = {name: client.fetch_public_keys(url) for name, url in urls.items()}
    checked = client.check_files(_report(world), [cache], client.attestation_fetcher(urls), keys)
    v = _by_name(checked)
    assert checked.files_checked
    hello = v["hello"]
    assert {r: c.outcome for r, c in (hello.checks or {}).items()} == {
        "r1": "ok",
        "r2": "ok",
        "r3": "invalid",  # r3's attestation is not signed by r3's published key
    }
    assert hello.reproduced and hello.good == ["r1", "r2"]
    assert "another key" in (hello.checks or {})["r3"].message
    assert (v["libfoo1"].checks or {})["r1"].outcome == "ok"
    data_all = v["data-all"]
    assert {c.outcome for c in (data_all.checks or {}).values()} == {"mismatch"}
    assert not data_all.reproduced and data_all.status is Status.BAD
    assert "does not match the local file" in client.format_verify_line(data_all)
    assert (v["onlyone"].checks or {})["r1"].outcome == "no-file"
    assert checked.reproduced == 1
    assert json.loads(json.dumps(checked.to_json()))["files_checked"] is True


# --- installed package databases -------------------------------------------------------------


def test_read_dpkg_status_fixture(world: dict[str, Any]) -> None:
    pkgs = client.read_dpkg_status(world["status"])
    assert Installed("libfoo1", "1:1.0-1", "amd64") in pkgs
    assert Installed("data-all", "1.0-1", "all") in pkgs
    assert "removed-pkg" not in {p.name for p in pkgs}
    assert len(pkgs) == 6


def test_read_dpkg_status_of_this_host() -> None:
    if not HOST_DPKG_STATUS.exists():
        pytest.skip("this host has no dpkg database")
    pkgs = client.read_dpkg_status()
    assert len(pkgs) > 0
    assert any(p.name == "dpkg" for p in pkgs)


def test_dpkg_errors(tmp_path: Path) -> None:
    with pytest.raises(PackageDatabaseError, match="no such file"):
        client.read_dpkg_status(tmp_path / "missing")
    broken = tmp_path / "status"
    broken.write_text("Package: x\nStatus: install ok installed\nArchitecture: amd64\n")
    with pytest.raises(PackageDatabaseError, match="has no version"):
        client.read_dpkg_status(broken)


def _pacman_db(root: Path, pkgs: list[tuple[str, str, str]]) -> Path:
    local = root / "local"
    local.mkdir(parents=True)
    (local / "ALPM_DB_VERSION").write_text("9\n")
    for name, version, arch in pkgs:
        d = local / f"{name}-{version}"
        d.mkdir()
        (d / "desc").write_text(
            f"%NAME%\n{name}\n\n%VERSION%\n{version}\n\n%BASE%\n{name}\n\n"
            f"%DESC%\nA package\n\n%ARCH%\n{arch}\n\n%DEPENDS%\nglibc\ngcc-libs\n\n"
        )
        (d / "files").write_text("%FILES%\nusr/\n")
    return local


def test_read_pacman_local_and_check_its_cache(tmp_path: Path) -> None:
    local = _pacman_db(
        tmp_path, [("hello", "2.12-1", "x86_64"), ("filesystem", "2024.04.07-1", "any")]
    )
    pkgs = client.read_pacman_local(local)
    assert pkgs == [
        Installed("filesystem", "2024.04.07-1", "any"),
        Installed("hello", "2.12-1", "x86_64"),
    ]
    arts = tmp_path / "arts"
    arts.mkdir()
    pkgfile = arts / "hello-2.12-1-x86_64.pkg.tar.zst"
    pkgfile.write_bytes(b"\x28\xb5\x2f\xfd" + b"zstd-compressed package" * 50)
    rb = Rebuilder(tmp_path / "arch", attest.ensure_key(tmp_path / "arch.pem"))
    rb.publish(
        [
            _entry("hello", "2.12-1", "GOOD", arch="x86_64", build_id=1, has_attestation=True),
            _entry("filesystem", "2024.04.07-1", "GOOD", arch="x86_64", build_id=2),
        ]
    )
    rb.attest(1, pkgfile, pkgfile)
    cache = tmp_path / "pkg"
    cache.mkdir()
    (cache / pkgfile.name).write_bytes(pkgfile.read_bytes())
    (cache / f"{pkgfile.name}.sig").write_bytes(b"signature")
    with serve_dir(rb.root) as url:
        report = client.verify_installed(pkgs, {"arch": client.fetch_pkgs(url)}, 1)
        assert all(v.reproduced for v in report.verdicts)  # "any" matches the x86_64 entry
        keys = {"arch": client.fetch_public_keys(url)}
        checked = client.check_files(
            report, [cache], client.attestation_fetcher({"arch": url}), keys
        )
    v = _by_name(checked)
    hello_check = (v["hello"].checks or {})["arch"]
    assert hello_check.outcome == "ok" and hello_check.path == cache / pkgfile.name
    assert (v["filesystem"].checks or {})["arch"].outcome == "no-file"


def test_pacman_errors(tmp_path: Path) -> None:
    with pytest.raises(PackageDatabaseError, match="no such directory"):
        client.read_pacman_local(tmp_path / "nope")
    local = _pacman_db(tmp_path, [("x", "1-1", "any")])
    (local / "x-1-1" / "desc").write_text("%NAME%\nx\n\n%ARCH%\nany\n")
    with pytest.raises(PackageDatabaseError, match="no %VERSION%"):
        client.read_pacman_local(local)


# --- fetching --------------------------------------------------------------------------------


def test_fetch_pkgs_and_format(world: dict[str, Any]) -> None:
    entries = client.fetch_pkgs(world["urls"]["r2"] + "/")
    assert entries[1] == PkgEntry(
        "hello",
        "2.10-3",
        Status.GOOD,
        "debian",
        "main",
        "amd64",
        "https://mirror.example/pool/hello_2.10-3_amd64.deb",
        build_id=11,
        has_attestation=True,
    )
    assert client.format_pkg_line(entries[1]) == (
        "[GOOD ] " + "hello 2.10-3".ljust(60) + " (debian, <none>, main, amd64) "
        '"https://mirror.example/pool/hello_2.10-3_amd64.deb"'
    )
    assert client.format_pkg_line(entries[0]).startswith("[UNKWN] hello 2.10-3 ")
    assert PkgEntry.from_json(entries[2].to_json()) == entries[2]


def test_local_directory_as_base(world: dict[str, Any]) -> None:
    root = world["tmp"] / "r1"
    assert client.fetch_pkgs(str(root)) == client.fetch_pkgs(root.as_uri())
    assert len(client.fetch_pkgs(str(root))) == 6
    with pytest.raises(ClientError, match=r"not found.*no package list here"):
        client.fetch_pkgs(str(world["tmp"]))


def test_fetch_build_files(world: dict[str, Any]) -> None:
    url = world["urls"]["r1"]
    assert client.fetch_build_file(url, _built(1), "log") == b"build 1 log\n"
    data = client.fetch_build_file(url, _built(1), "attestation")
    assert attest.verify_link(data, client.fetch_public_keys(url)).name.startswith("rebuild hello")
    with pytest.raises(ClientError, match=r"not found.*no diffoscope of build 1"):
        client.fetch_build_file(url, _built(1), "diffoscope")
    with pytest.raises(ClientError, match="unknown build file kind"):
        client.fetch_build_file(url, _built(1), "../../etc/passwd")
    with pytest.raises(ClientError, match="has no build"):
        client.fetch_build_file(url, _built(None), "log")


def _built(build_id: int | None, name: str = "hello", **kw: Any) -> PkgEntry:
    return PkgEntry(name, "2.10-3", Status.GOOD, "debian", "main", "amd64", "", build_id, **kw)


def test_html_page_is_not_a_rebuilder(tmp_path: Path) -> None:
    page = b"<!doctype html><html><body>Welcome</body></html>"
    handler = _quiet_handler(lambda h: _send(h, 200, page, "text/html; charset=utf-8"))
    with _serve(handler) as url, pytest.raises(ClientError, match="HTML"):
        client.fetch_pkgs(url)
    (tmp_path / "index.html").write_bytes(page)
    with (
        serve_dir(tmp_path) as url,
        pytest.raises(ClientError, match=r"not found.*is this a rebuilder"),
    ):
        client.fetch_pkgs(url)


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ({"current": []}, "JSON list was expected"),
        ([{"name": "x", "version": "1"}], "item 0: no 'status'"),
        ([_entry("x", "1", "MAYBE")], "unknown status 'MAYBE'"),
        ([_entry("x", "1", "GOOD", build_id="7")], "'build_id' is not an integer"),
    ],
)
def test_wrong_json_shape(tmp_path: Path, doc: Any, why: str) -> None:
    (tmp_path / "api" / "v0" / "pkgs").mkdir(parents=True)
    (tmp_path / "api" / "v0" / "pkgs" / "list").write_text(json.dumps(doc))
    with serve_dir(tmp_path) as url, pytest.raises(ClientError, match=why):
        client.fetch_pkgs(url)
    (tmp_path / "api" / "v0" / "pkgs" / "list").write_text("{trunc")
    with serve_dir(tmp_path) as url, pytest.raises(ClientError, match="not JSON"):
        client.fetch_pkgs(url)


V0_LIST = "/api/v0/pkgs/list"


def test_500_then_200_is_retried() -> None:
    calls: list[int] = []
    body = json.dumps([_entry("hello", "1", "GOOD")]).encode()

    def respond(h: BaseHTTPRequestHandler) -> None:
        calls.append(1)
        if len(calls) == 1:
            _send(h, 500, b"oops", "text/plain")
        else:
            _send(h, 200, body, "application/json")

    with _serve(_quiet_handler(respond, V0_LIST)) as url:
        entries = client.fetch_pkgs(url)
    assert [e.name for e in entries] == ["hello"] and len(calls) == 2


def test_persistent_5xx_gives_up() -> None:
    calls: list[int] = []

    def respond(h: BaseHTTPRequestHandler) -> None:
        calls.append(1)
        _send(h, 503, b"busy", "text/plain")

    with _serve(_quiet_handler(respond)) as url, pytest.raises(ClientError, match="HTTP 503"):
        client.fetch_pkgs(url)
    assert len(calls) == fetch.RETRIES + 1


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ClientError, match=r"connection failed \(after 4 tries\)"):
        client.fetch_pkgs(f"http://127.0.0.1:{port}")


def test_unsupported_scheme() -> None:
    with pytest.raises(ClientError, match="unsupported URL scheme 'ftp'"):
        client.fetch_pkgs("ftp://mirror.example/rebuilder")


def test_if_modified_since_cache(world: dict[str, Any]) -> None:
    root = world["tmp"] / "r2"
    cache = world["tmp"] / "http-cache"
    codes: list[int] = []
    with serve_dir(root, codes) as url:
        first = client.fetch_pkgs(url, cache_dir=cache)
        second = client.fetch_pkgs(url, cache_dir=cache)
        assert [c for c in codes if c != 404] == [200, 304] and first == second
        listing = root / "api" / "v0" / "pkgs" / "list"
        listing.write_text(json.dumps([_entry("new", "1", "BAD")]))
        later = listing.stat().st_mtime + 10
        os.utime(listing, (later, later))
        third = client.fetch_pkgs(url, cache_dir=cache)
    assert [c for c in codes if c != 404] == [200, 304, 200]
    assert [e.name for e in third] == ["new"]


def test_etag_cache(tmp_path: Path) -> None:
    body = json.dumps([_entry("hello", "1", "GOOD")]).encode()
    seen: list[str | None] = []

    def respond(h: BaseHTTPRequestHandler) -> None:
        seen.append(h.headers.get("If-None-Match"))
        if h.headers.get("If-None-Match") == '"v1"':
            h.send_response(304)
            h.end_headers()
        else:
            _send(h, 200, body, "application/json", ETag='"v1"')

    with _serve(_quiet_handler(respond, V0_LIST)) as url:
        a = client.fetch_pkgs(url, cache_dir=tmp_path)
        b = client.fetch_pkgs(url, cache_dir=tmp_path)
    assert seen == [None, '"v1"'] and a == b


def test_connection_broken_mid_answer_is_retried() -> None:
    calls: list[int] = []
    body = json.dumps([_entry("hello", "1", "GOOD")]).encode()

    def respond(h: BaseHTTPRequestHandler) -> None:
        calls.append(1)
        if len(calls) == 1:  # promise the whole body, send half, hang up
            h.send_response(200)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            h.close_connection = True
        else:
            _send(h, 200, body, "application/json")

    with _serve(_quiet_handler(respond, V0_LIST)) as url:
        assert [e.name for e in client.fetch_pkgs(url)] == ["hello"]
    assert len(calls) == 2


def test_oversized_answer_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(remote, "MAX_BYTES", 1000)
    body = json.dumps([_entry(f"p{i}", "1", "GOOD") for i in range(50)]).encode()
    handler = _quiet_handler(lambda h: _send(h, 200, body, "application/json"))
    with _serve(handler) as url, pytest.raises(ClientError, match="answer larger than"):
        client.fetch_pkgs(url)


# --- live rebuilderd: v0 and v1 --------------------------------------------------------------
#
# The documents below copy rebuilderd's serde shapes field for field (snake_case, no renames;
# times are chrono NaiveDateTime, naive UTC with up to nanoseconds):
#   v0: common/src/api/v0/mod.rs (QueueList, QueueItem, PkgGroup, PkgArtifact,
#       DashboardResponse, SuiteStats); daemon/src/api/v0/mod.rs (`queue/list` is #[post] only,
#       body ListQueue {"limit"}; no GET route, so actix answers a GET with 404).
#   v1: common/src/api/v1/models/mod.rs (ResultPage {total, records}, Page {limit, before,
#       after, sort, direction}); models/package.rs (BinaryPackage); models/queue.rs (QueuedJob);
#       models/dashboard.rs (DashboardState); models/build.rs (RebuildArtifact; ArtifactStatus
#       GOOD/BAD/UNKWN); models/meta.rs (PublicKey); routes from daemon/src/lib.rs and
#       daemon/src/api/v1/*.rs; keyset paging by id from daemon/src/api/v1/util/pagination.rs.

Route = Callable[[dict[str, list[str]], Any], tuple[int, Any]]


@dataclass
class FakeRebuilderd:
    """rebuilderd's read API at its paths: a route per (method, path); anything else is a 404."""

    routes: dict[tuple[str, str], Route]
    seen: list[str] = field(default_factory=list)
    bodies: list[Any] = field(default_factory=list)

    @contextmanager
    def serve(self) -> Iterator[str]:
        fake = self

        class H(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.answer(self, "GET")

            def do_POST(self) -> None:
                fake.answer(self, "POST")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        with _serve(H) as url:
            yield url

    def answer(self, h: BaseHTTPRequestHandler, method: str) -> None:
        self.seen.append(f"{method} {h.path}")
        body = None
        if method == "POST":
            raw = h.rfile.read(int(h.headers.get("Content-Length") or 0))
            body = json.loads(raw) if raw else None
            self.bodies.append(body)
        url = urlsplit(h.path)
        route = self.routes.get((method, url.path))
        if route is None:
            _send(h, 404, b"Not found\n", "text/plain")
            return
        code, doc = route(parse_qs(url.query), body)
        data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        _send(h, code, data, "application/json")


def _fixed(doc: Any) -> Route:
    return lambda query, body: (200, doc)


def _v1_paged(records: list[dict[str, Any]]) -> Route:
    """A v1 listing: ``?limit`` (default 1000) records with an id above ``?after``, by id."""

    def route(query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        after = int(query.get("after", ["-1"])[0])
        limit = int(query.get("limit", ["1000"])[0])
        page = [r for r in sorted(records, key=lambda r: r["id"]) if r["id"] > after][:limit]
        return 200, {"total": len(records), "records": page}

    return route


def _v0_item(qid: int, name: str, version: str, started_at: str | None = None) -> dict[str, Any]:
    return {
        "id": qid,
        "pkgbase": {
            "name": name,
            "version": version,
            "distro": "debian",
            "suite": "main",
            "architecture": "amd64",
            "input_url": f"https://mirror.example/buildinfo/{name}_{version}_amd64.buildinfo",
            "artifacts": [
                {
                    "name": name,
                    "version": version,
                    "url": f"https://mirror.example/pool/{name}_{version}_amd64.deb",
                }
            ],
        },
        "version": version,
        "queued_at": "2024-05-01T09:00:00.123456789",
        "worker_id": 4 if started_at else None,
        "started_at": started_at,
        "last_ping": started_at,
    }


V0_QUEUE: dict[str, Any] = {
    "now": "2024-05-01T10:01:02.5",
    "queue": [
        _v0_item(41, "hello", "2.10-3", started_at="2024-05-01T10:00:00"),
        _v0_item(42, "libfoo", "1:1.0-1"),
        _v0_item(43, "zlib", "1.3-1"),
    ],
}

V0_DASHBOARD = {
    "suites": {
        "main": {"good": 120, "unknown": 7, "bad": 3},
        "contrib": {"good": 1, "unknown": 1, "bad": 0},
    },
    "active_builds": [V0_QUEUE["queue"][0]],
    "queue_length": 1,
    "now": "2024-05-01T10:01:02",
}


@pytest.fixture
def v0_rebuilderd() -> Iterator[tuple[str, FakeRebuilderd]]:
    def queue(query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        limit = body.get("limit") if isinstance(body, dict) else None
        return 200, {**V0_QUEUE, "queue": V0_QUEUE["queue"][:limit]}

    fake = FakeRebuilderd(
        {
            ("POST", "/api/v0/queue/list"): queue,
            ("GET", "/api/v0/dashboard"): _fixed(V0_DASHBOARD),
            ("GET", "/api/v0/pkgs/list"): _fixed([_entry("hello", "2.10-3", "GOOD", build_id=7)]),
        }
    )
    with fake.serve() as url:
        yield url, fake


def _v1_binary(
    bid: int, name: str, status: str | None, build_id: int | None = None, **kw: Any
) -> dict[str, Any]:
    d = {
        "id": bid,
        "name": name,
        "version": "2.10-3",
        "distribution": "debian",
        "release": "trixie",
        "component": "main",
        "architecture": "amd64",
        "url": f"https://mirror.example/pool/{name}_2.10-3_amd64.deb",
        "status": status,
        "build_id": build_id,
        "artifact_id": None,
        "diffoscope_log_id": None,
        "attestation_log_id": None,
        "last_seen": "2024-05-01T08:00:00.5",
        "seen_in_last_sync": True,
    }
    d.update(kw)
    return d


V1_BINARIES = [
    _v1_binary(11, "hello", "GOOD", 7, artifact_id=70, attestation_log_id=3),
    _v1_binary(12, "hello-doc", "GOOD", 7, artifact_id=71, attestation_log_id=4),
    _v1_binary(15, "libfoo", "BAD", 8, artifact_id=80, diffoscope_log_id=5),
    _v1_binary(20, "broken", None, 9),  # the latest build failed: no artifact result
    _v1_binary(31, "newpkg", None),  # never built
]

V1_QUEUE = [
    {
        "id": 5 + i,
        "name": name,
        "version": "1.0-1",
        "distribution": "debian",
        "release": "trixie",
        "component": "main",
        "architecture": "amd64",
        "backend": "debian",
        "url": f"https://mirror.example/buildinfo/{name}_1.0-1_amd64.buildinfo",
        "next_retry": None,
        "priority": 1,
        "queued_at": "2024-05-01T09:00:00",
        "started_at": "2024-05-01T09:30:00.25" if i == 0 else None,
    }
    for i, name in enumerate(["alpha", "beta", "gamma", "delta", "epsilon"])
]

V1_DASHBOARD = {
    "rebuilds": {"good": 10, "bad": 2, "fail": 1, "unknown": 5},
    "jobs": {"running": 1, "available": 4, "pending": 2},
}


@pytest.fixture
def v1_rebuilderd(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A rebuilderd with v1 only: every api/v0 path is a 404."""
    key = attest.ensure_key(tmp_path / "v1.pem")
    arts = tmp_path / "artifacts"
    arts.mkdir()
    links = {}
    for aid, name in ((70, "hello"), (71, "hello-doc")):
        deb = arts / f"{name}_2.10-3_amd64.deb"
        deb.write_bytes(f"the bytes of {name}\n".encode() * 50)
        links[aid] = attest.make_link(deb.name, "hello_2.10-3.buildinfo", deb, deb, key)
    artifacts = [
        {"id": 71, "name": "hello-doc", "has_diffoscope": False, "has_attestation": True},
        {"id": 70, "name": "hello", "has_diffoscope": False, "has_attestation": True},
    ]
    routes: dict[tuple[str, str], Route] = {
        ("GET", "/api/v1/packages/binary"): _v1_paged(V1_BINARIES),
        ("GET", "/api/v1/queue"): _v1_paged(V1_QUEUE),
        ("GET", "/api/v1/dashboard"): _fixed(V1_DASHBOARD),
        ("GET", "/api/v1/meta/public-keys"): _fixed(attest.public_keys_json([key])),
        ("GET", "/api/v1/builds/7/log"): _fixed(b"build 7 log\n"),
        ("GET", "/api/v1/builds/7/artifacts"): _fixed(artifacts),
    }
    for aid, link in links.items():
        routes["GET", f"/api/v1/builds/7/artifacts/{aid}/attestation"] = _fixed(link)
    fake = FakeRebuilderd(routes)
    with fake.serve() as url:
        yield {"url": url, "fake": fake, "artifacts": arts, "links": links, "tmp": tmp_path}


def test_pkgs_of_a_v1_only_rebuilderd_are_paged(
    v1_rebuilderd: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote, "PAGE", 2)
    fake: FakeRebuilderd = v1_rebuilderd["fake"]
    entries = client.fetch_pkgs(v1_rebuilderd["url"])
    assert fake.seen == [
        "GET /api/v1/packages/binary?limit=2",
        "GET /api/v1/packages/binary?limit=2&after=12",
        "GET /api/v1/packages/binary?limit=2&after=20",
    ]
    by_name = {e.name: e for e in entries}
    assert list(by_name) == ["hello", "hello-doc", "libfoo", "broken", "newpkg"]
    assert by_name["hello"] == PkgEntry(
        "hello",
        "2.10-3",
        Status.GOOD,
        "debian",
        "main",
        "amd64",
        "https://mirror.example/pool/hello_2.10-3_amd64.deb",
        build_id=7,
        has_attestation=True,
        artifact_id=70,
        release="trixie",
        id=11,
    )
    assert by_name["libfoo"].has_diffoscope and not by_name["libfoo"].has_attestation
    assert by_name["broken"].status is Status.FAIL and by_name["broken"].build_id == 9
    assert by_name["newpkg"].status is Status.UNKWN and by_name["newpkg"].build_id is None
    assert client.format_pkg_line(by_name["broken"]).startswith("[FAIL ] broken 2.10-3 ")
    assert '(debian, trixie, main, amd64) "https://' in client.format_pkg_line(by_name["broken"])
    assert "artifact_id" not in by_name["hello"].to_json()  # the v0 shape
    assert by_name["hello"].to_v1(1).to_json()["artifact_id"] == 70
    assert by_name["broken"].to_v1(1).to_json()["status"] is None  # null: the build failed


def test_old_v1_listing_without_log_ids(tmp_path: Path) -> None:
    # Earlier v1 BinaryPackage had no diffoscope/attestation log ids (nor last_seen).
    old = {
        k: v
        for k, v in _v1_binary(1, "hello", "GOOD", 7, artifact_id=70).items()
        if k not in ("diffoscope_log_id", "attestation_log_id", "last_seen", "seen_in_last_sync")
    }
    fake = FakeRebuilderd({("GET", "/api/v1/packages/binary"): _v1_paged([old])})
    with fake.serve() as url:
        (entry,) = client.fetch_pkgs(url)
    assert entry.has_attestation and entry.artifact_id == 70


def test_verify_and_check_files_against_a_v1_only_rebuilderd(
    v1_rebuilderd: dict[str, Any],
) -> None:
    url, fake = v1_rebuilderd["url"], v1_rebuilderd["fake"]
    cache = v1_rebuilderd["tmp"] / "archives"
    cache.mkdir()
    deb = "hello-doc_2.10-3_amd64.deb"
    (cache / deb).write_bytes((v1_rebuilderd["artifacts"] / deb).read_bytes())
    installed = [Installed("hello-doc", "2.10-3", "amd64")]
    report = client.verify_installed(installed, {"v1": client.fetch_pkgs(url)}, 1)
    keys = {"v1": client.fetch_public_keys(url)}
    fake.seen.clear()
    checked = client.check_files(report, [cache], client.attestation_fetcher({"v1": url}), keys)
    (verdict,) = checked.verdicts
    assert (verdict.checks or {})["v1"].outcome == "ok" and verdict.reproduced
    # the artifact id from the listing names hello-doc's own attestation, not the build's first
    assert fake.seen == ["GET /api/v1/builds/7/artifacts/71/attestation"]


def test_build_files_of_a_v1_only_rebuilderd(v1_rebuilderd: dict[str, Any]) -> None:
    url, fake = v1_rebuilderd["url"], v1_rebuilderd["fake"]
    assert client.fetch_build_file(url, _built(7), "log") == b"build 7 log\n"
    # the server says build 7 made hello and hello-doc: a log asked for another is refused
    with pytest.raises(ClientError, match="build 7 made hello, hello-doc, not zlib"):
        client.fetch_build_file(url, _built(7, "zlib"), "log")
    fake.seen.clear()
    # no artifact id: v0's path, then the build's first artifact with an attestation
    assert client.fetch_build_file(url, _built(7), "attestation") == v1_rebuilderd["links"][70]
    assert fake.seen == [
        "GET /api/v0/builds/7/attestation",
        "GET /api/v1/builds/7/artifacts",
        "GET /api/v1/builds/7/artifacts/70/attestation",
    ]
    fake.seen.clear()
    got = client.fetch_build_file(url, _built(7, artifact_id=71), "attestation")
    assert got == v1_rebuilderd["links"][71]
    assert fake.seen == ["GET /api/v1/builds/7/artifacts/71/attestation"]
    with pytest.raises(ClientError, match="no artifact of build 7 has a diffoscope"):
        client.fetch_build_file(url, _built(7), "diffoscope")
    with pytest.raises(ClientError, match=r"not found.*no log of build 8"):
        client.fetch_build_file(url, _built(8), "log")


def test_queue_of_a_v0_rebuilderd_is_a_post(v0_rebuilderd: tuple[str, FakeRebuilderd]) -> None:
    url, fake = v0_rebuilderd
    entries = client.fetch_queue(url)
    assert fake.seen == ["GET /api/v1/queue?limit=1000", "POST /api/v0/queue/list"]
    assert fake.bodies == [{"limit": None}]
    assert [e.id for e in entries] == [41, 42, 43]
    hello = entries[0]
    assert hello.now == datetime.datetime(2024, 5, 1, 10, 1, 2, 500000)
    assert hello.started_at == datetime.datetime(2024, 5, 1, 10, 0)
    assert hello.queued_at == datetime.datetime(2024, 5, 1, 9, 0, 0, 123456)
    assert hello.worker_id == 4 and hello.input_url is not None
    assert hello.artifacts == (
        ("hello", "2.10-3", "https://mirror.example/pool/hello_2.10-3_amd64.deb"),
    )
    assert client.format_queue_line(hello) == (
        "2024-05-01 09:00:00 "
        + "hello 2.10-3".ljust(60)
        + " "
        + "1m 2s".rjust(11)
        + " 2024-05-01 10:00:00 "
        + '"debian" "main" "amd64"'
    )
    assert client.format_queue_line(entries[1]) == (
        "2024-05-01 09:00:00 "
        + "libfoo 1:1.0-1".ljust(60)
        + " "
        + " " * 11
        + " "
        + " " * 19
        + ' "debian" "main" "amd64"'
    )
    head = client.fetch_queue(url, limit=2)
    assert fake.bodies[-1] == {"limit": 2} and [e.name for e in head] == ["hello", "libfoo"]
    with pytest.raises(ClientError, match="limit must be a positive integer"):
        client.fetch_queue(url, limit=0)


def test_queue_published_by_a_static_site(tmp_path: Path) -> None:
    """A v0-only static site: the POST is refused, the file is read (and revalidated)."""
    t = datetime.datetime(2024, 5, 1, 9, 0)
    items = (
        api_v0.QueueItem(
            1,
            "hello",
            "2.10-3",
            "debian",
            "main",
            "amd64",
            t,
            "https://mirror.example/buildinfo/hello_2.10-3_amd64.buildinfo",
            (api_v0.PkgArtifact("hello", "2.10-3", "https://mirror.example/hello.deb"),),
        ),
        api_v0.QueueItem(2, "zlib", "1.3-1", "debian", "main", "amd64", t.replace(minute=1)),
    )
    doc = api_v0.QueueList(t.replace(hour=10), items).to_json()
    assert set(doc["queue"][0]) == {
        "id",
        "pkgbase",
        "version",
        "queued_at",
        "worker_id",
        "started_at",
        "last_ping",
    }
    assert set(doc["queue"][0]["pkgbase"]) == {
        "name",
        "version",
        "distro",
        "suite",
        "architecture",
        "input_url",
        "artifacts",
    }
    listing = tmp_path / "api" / "v0" / "queue" / "list"
    listing.parent.mkdir(parents=True)
    listing.write_text(json.dumps(doc))
    codes: list[int] = []
    cache = tmp_path / "cache"
    with serve_dir(tmp_path, codes) as url:
        entries = client.fetch_queue(url, cache_dir=cache)
        again = client.fetch_queue(url, cache_dir=cache)
    assert codes == [404, 501, 200, 404, 501, 304] and entries == again  # no v1, POST refused
    assert [e.to_json() for e in entries] == doc["queue"]
    assert client.fetch_queue(str(tmp_path)) == entries
    assert client.fetch_queue(str(tmp_path), limit=1) == entries[:1]
    assert client.format_queue_line(entries[1]).startswith("2024-05-01 09:01:00 zlib 1.3-1 ")


def test_queue_of_a_v1_only_rebuilderd(
    v1_rebuilderd: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(remote, "PAGE", 2)
    url, fake = v1_rebuilderd["url"], v1_rebuilderd["fake"]
    entries = client.fetch_queue(url, limit=3)
    assert fake.seen == [
        "GET /api/v1/queue?limit=2",
        "GET /api/v1/queue?limit=2&after=6",
    ]
    assert [e.name for e in entries] == ["alpha", "beta", "gamma"]
    alpha = entries[0]
    assert (alpha.distro, alpha.release, alpha.suite) == ("debian", "trixie", "")
    assert alpha.started_at == datetime.datetime(2024, 5, 1, 9, 30, 0, 250000)
    assert alpha.input_url == "https://mirror.example/buildinfo/alpha_1.0-1_amd64.buildinfo"
    assert alpha.now >= datetime.datetime(2024, 5, 1)  # v1 has no server clock: ours
    assert client.format_queue_line(entries[1]) == (
        "2024-05-01 09:00:00 " + "beta 1.0-1".ljust(60) + " " * 33 + '"debian" "" "amd64"'
    )
    assert len(client.fetch_queue(url)) == 5


def test_dashboards(
    v0_rebuilderd: tuple[str, FakeRebuilderd], v1_rebuilderd: dict[str, Any]
) -> None:
    v0 = client.fetch_dashboard(v0_rebuilderd[0])
    assert v0.suites["main"] == {Status.GOOD: 120, Status.BAD: 3, Status.UNKWN: 7}
    assert (v0.queue_length, v0.building, v0.waiting) == (1, 1, None)
    assert client.format_dashboard(v0) == [
        "contrib          GOOD 1  BAD 0  UNKWN 1  (50.00% of 2 reproduced)",
        "main             GOOD 120  BAD 3  UNKWN 7  (92.31% of 130 reproduced)",
        "queue: 1 job, 1 building",
        "  building hello 2.10-3 (debian, main, amd64) for 1m 2s",
        "as of 2024-05-01 10:01:02 UTC",
    ]
    v1 = client.fetch_dashboard(v1_rebuilderd["url"])
    assert v1_rebuilderd["fake"].seen == ["GET /api/v1/dashboard"]
    assert client.format_dashboard(v1) == [
        "all suites       GOOD 10  BAD 2  FAIL 1  UNKWN 5  (55.56% of 18 reproduced)",
        "queue: 7 jobs, 1 building, 2 waiting to be retried",
    ]
    assert json.loads(json.dumps(v1.to_json()))["suites"] == {
        "": {"GOOD": 10, "BAD": 2, "FAIL": 1, "UNKWN": 5}
    }


def test_a_server_that_has_neither_api() -> None:
    fake = FakeRebuilderd({})
    with fake.serve() as url:
        for fetch in (client.fetch_pkgs, client.fetch_queue, client.fetch_dashboard):
            with pytest.raises(ClientError, match=r"api/v1/.*: not found, nor .*api/v0/"):
                fetch(url)
        with pytest.raises(ClientError, match=r"not found, nor .*: no public keys"):
            client.fetch_public_keys(url)


def test_v1_pages_that_repeat_end_without_doubles(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(remote, "PAGE", 2)
    stuck = {"total": 10, "records": V1_BINARIES[:2]}  # a static server: ignores ?after
    fake = FakeRebuilderd({("GET", "/api/v1/packages/binary"): _fixed(stuck)})
    with fake.serve() as url:
        entries = client.fetch_pkgs(url)
    assert [e.id for e in entries] == [r["id"] for r in V1_BINARIES[:2]]  # once each
    assert len(fake.seen) == 2 and "repeats its pages" in caplog.text


@pytest.mark.parametrize(
    ("method", "path", "doc", "fetch", "why"),
    [
        ("GET", "/api/v1/packages/binary", {"items": []}, client.fetch_pkgs, "'records' list"),
        (
            "GET",
            "/api/v1/packages/binary",
            {"total": 1, "records": [_v1_binary(1, "x", "MAYBE")]},
            client.fetch_pkgs,
            "item 0: unknown status 'MAYBE'",
        ),
        (
            "GET",
            "/api/v1/packages/binary",
            {"total": 1, "records": [{**_v1_binary(1, "x", None), "distribution": None}]},
            client.fetch_pkgs,
            "item 0: no 'distribution'",
        ),
        ("POST", "/api/v0/queue/list", [], client.fetch_queue, "not an object"),
        (
            "POST",
            "/api/v0/queue/list",
            {"now": "2024-05-01T10:00:00", "queue": [{"id": 1, "version": "1"}]},
            client.fetch_queue,
            "no 'pkgbase' object",
        ),
        (
            "POST",
            "/api/v0/queue/list",
            {**V0_QUEUE, "queue": [{**V0_QUEUE["queue"][1], "queued_at": "yesterday"}]},
            client.fetch_queue,
            "'queued_at' is not a date and time",
        ),
        ("POST", "/api/v0/queue/list", {"queue": []}, client.fetch_queue, "no 'now'"),
        (
            "GET",
            "/api/v1/queue",
            {"total": 1, "records": [{**V1_QUEUE[0], "id": "5"}]},
            client.fetch_queue,
            "a record has no integer 'id'",
        ),
        ("GET", "/api/v0/dashboard", {"good": 1}, client.fetch_dashboard, "'suites' is not an"),
        (
            "GET",
            "/api/v0/dashboard",
            {**V0_DASHBOARD, "suites": {"main": {"good": "many", "bad": 0, "unknown": 0}}},
            client.fetch_dashboard,
            "'good' is not a count",
        ),
        (
            "GET",
            "/api/v1/dashboard",
            {"rebuilds": V1_DASHBOARD["rebuilds"], "jobs": []},
            client.fetch_dashboard,
            "not an object",
        ),
    ],
)
def test_unknown_shapes_are_clear_errors(
    method: str, path: str, doc: Any, fetch: Callable[[str], Any], why: str
) -> None:
    fake = FakeRebuilderd({(method, path): _fixed(doc)})
    with fake.serve() as url, pytest.raises(ClientError, match=why) as e:
        fetch(url)
    assert "\n" not in str(e.value) and "not a rebuilder" in str(e.value)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert client.default_cache_dir() == tmp_path / "xdg" / "rebuilder" / "client"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/cache")  # ignored, as the XDG spec says
    assert client.default_cache_dir() == tmp_path / "home" / ".cache" / "rebuilder" / "client"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert client.default_cache_dir() == tmp_path / "home" / ".cache" / "rebuilder" / "client"


def test_our_sites_dashboard_reads_back(tmp_path: Path) -> None:
    """The dashboard our renderer writes is the one the client reads (one v0 shape)."""
    from rebuilder import site
    from rebuilder.config import Profile, Release
    from rebuilder.model import GroupRecord

    from .fixtures.operator import attempt, group

    now = datetime.datetime(2024, 5, 1, 12, 0)
    good, bad = group("good"), group("bad")
    records = {
        g.key: GroupRecord(g, s, [attempt(g, s, i)])
        for i, (g, s) in enumerate(((good, Status.GOOD), (bad, Status.BAD)), 1)
    }
    new = group("new")
    records[new.key] = GroupRecord(new)
    profile = Profile("p", "debian", (Release("bookworm", "https://mirror.example/debian"),))
    site.render(tmp_path, [site.ProfileView(profile, records, 4, now)], now=now)
    board = client.fetch_dashboard(str(tmp_path / "debian"))  # v1: builds, and the jobs
    assert board.suites == {"": {Status.GOOD: 1, Status.BAD: 1, Status.FAIL: 0, Status.UNKWN: 1}}
    assert (board.queue_length, board.building, board.waiting) == (4, 0, 0)
    v0_board = api_v0.Dashboard.from_json(
        json.loads((tmp_path / "debian/api/v0/dashboard").read_text())
    )
    assert v0_board.suites == {"main": {"good": 1, "unknown": 1, "bad": 1}}
    assert (v0_board.queue_length, v0_board.now) == (4, now)
