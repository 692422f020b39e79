"""The client: fixture rebuilders served over HTTP on 127.0.0.1, local package databases."""

from __future__ import annotations

import functools
import json
import os
import random
import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from rebuilder import attest, client
from rebuilder.client import ClientError, Installed, PackageDatabaseError, PkgEntry
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


def _quiet_handler(respond: Callable[[BaseHTTPRequestHandler], None]) -> type:
    class H(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
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
    monkeypatch.setattr(client, "_BACKOFF", 0.01)


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
    if not client.DPKG_STATUS.exists():
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
        "[GOOD ] " + "hello 2.10-3".ljust(60) + " (debian, main, amd64, #11) "
        '"https://mirror.example/pool/hello_2.10-3_amd64.deb"'
    )
    assert client.format_pkg_line(entries[0]).startswith("[UNKWN] hello 2.10-3 ")
    assert PkgEntry.from_json(entries[2].to_json()) == entries[2]


def test_local_directory_as_base(world: dict[str, Any]) -> None:
    root = world["tmp"] / "r1"
    assert client.fetch_pkgs(str(root)) == client.fetch_pkgs(root.as_uri())
    assert len(client.fetch_pkgs(str(root))) == 6
    with pytest.raises(ClientError, match="no such file"):
        client.fetch_pkgs(str(world["tmp"]))


def test_fetch_build_files(world: dict[str, Any]) -> None:
    url = world["urls"]["r1"]
    assert client.fetch_build_file(url, 1, "log") == b"build 1 log\n"
    data = client.fetch_build_file(url, 1, "attestation")
    assert attest.verify_link(data, client.fetch_public_keys(url)).name.startswith("rebuild hello")
    with pytest.raises(ClientError, match=r"HTTP 404.*no diffoscope of build 1"):
        client.fetch_build_file(url, 1, "diffoscope")
    with pytest.raises(ClientError, match="unknown build file kind"):
        client.fetch_build_file(url, 1, "../../etc/passwd")


def test_html_page_is_not_a_rebuilder(tmp_path: Path) -> None:
    page = b"<!doctype html><html><body>Welcome</body></html>"
    handler = _quiet_handler(lambda h: _send(h, 200, page, "text/html; charset=utf-8"))
    with _serve(handler) as url, pytest.raises(ClientError, match="HTML"):
        client.fetch_pkgs(url)
    (tmp_path / "index.html").write_bytes(page)
    with (
        serve_dir(tmp_path) as url,
        pytest.raises(ClientError, match=r"HTTP 404.*is this a rebuilder"),
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


def test_500_then_200_is_retried() -> None:
    calls: list[int] = []
    body = json.dumps([_entry("hello", "1", "GOOD")]).encode()

    def respond(h: BaseHTTPRequestHandler) -> None:
        calls.append(1)
        if len(calls) == 1:
            _send(h, 500, b"oops", "text/plain")
        else:
            _send(h, 200, body, "application/json")

    with _serve(_quiet_handler(respond)) as url:
        entries = client.fetch_pkgs(url)
    assert [e.name for e in entries] == ["hello"] and len(calls) == 2


def test_persistent_5xx_gives_up() -> None:
    calls: list[int] = []

    def respond(h: BaseHTTPRequestHandler) -> None:
        calls.append(1)
        _send(h, 503, b"busy", "text/plain")

    with _serve(_quiet_handler(respond)) as url, pytest.raises(ClientError, match="HTTP 503"):
        client.fetch_pkgs(url)
    assert len(calls) == client._ATTEMPTS


def test_connection_refused() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ClientError, match=r"cannot connect.*gave up after"):
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
        assert codes == [200, 304] and first == second
        listing = root / "api" / "v0" / "pkgs" / "list"
        listing.write_text(json.dumps([_entry("new", "1", "BAD")]))
        later = listing.stat().st_mtime + 10
        os.utime(listing, (later, later))
        third = client.fetch_pkgs(url, cache_dir=cache)
    assert codes == [200, 304, 200] and [e.name for e in third] == ["new"]


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

    with _serve(_quiet_handler(respond)) as url:
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

    with _serve(_quiet_handler(respond)) as url:
        assert [e.name for e in client.fetch_pkgs(url)] == ["hello"]
    assert len(calls) == 2


def test_oversized_answer_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(client, "_MAX_BYTES", 1000)
    body = json.dumps([_entry(f"p{i}", "1", "GOOD") for i in range(50)]).encode()
    handler = _quiet_handler(lambda h: _send(h, 200, body, "application/json"))
    with _serve(handler) as url, pytest.raises(ClientError, match="answer larger than"):
        client.fetch_pkgs(url)
