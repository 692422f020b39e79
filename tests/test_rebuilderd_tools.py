"""rebuilderd's own tools against our site, and our client against a real rebuilderd.

Everything here is real: rebuildctl, rebuilderd, rebuilderd-worker (0.28) and
debian-repro-status (0.4.0) from Debian sid, nginx and Caddy, in the sid chroot of
tests/fixtures/sid_chroot.py; our site is rendered from a state and served on 127.0.0.1 by a plain
static server and by nginx and Caddy with the rules docs/site.md gives. The daemon's
packages are built by its own worker with a dummy backend (the only stand-in: a real
rebuild of Debian packages cannot run here). Skips with the reason when the chroot cannot
be made; fails under CI.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from rebuilder import attest, client
from rebuilder.client.installed import read_dpkg_status
from rebuilder.config import Profile, Release
from rebuilder.model import Artifact, ArtifactResult, Attempt, BuildGroup, GroupRecord, Job, Status
from rebuilder.site import ProfileView, render

from .fixtures.http import serve
from .fixtures.sid_chroot import SidTools, sid_tools, stop

pytestmark = pytest.mark.slow  # a Debian sid chroot with rebuilderd's tools, a real rebuilderd

REPO = Path(__file__).resolve().parent.parent
NOW = dt.datetime(2026, 5, 1, 12, 0, 0)
NO_COLOR = {"NO_COLOR": "1", "CLICOLOR": "0", "TERM": "dumb"}
# (name in the chroot, the status our site gives it)
CHOSEN = {
    "base-files": Status.GOOD,
    "libstdc++6": Status.GOOD,
    "bash": Status.BAD,
    "dash": Status.FAIL,
    "grep": Status.UNKWN,
}
REPRO_ICON = {Status.GOOD: "+", Status.BAD: "-", Status.FAIL: "?", Status.UNKWN: "?"}


@pytest.fixture(scope="module")
def tools() -> SidTools:
    return sid_tools()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{url}: the server exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.2)
    pytest.fail(f"{url}: no answer within {seconds} s: {log.read_text(errors='replace')[-2000:]}")


# --- our site, read by rebuildctl and debian-repro-status --------------------------------------


def _docs_block(lang: str) -> str:
    text = (REPO / "docs" / "site.md").read_text()
    m = re.search(rf"```{lang}\n(.*?)```", text, re.S)
    assert m, f"docs/site.md has no {lang} block"
    return m.group(1)


def _site(tmp: Path, tools: SidTools) -> tuple[Path, dict[str, tuple[str, str, Status]]]:
    """A site whose groups are packages installed in the chroot, one per status."""
    installed = {p.name: p for p in read_dpkg_status(tools.root / "var/lib/dpkg/status")}
    missing = sorted(set(CHOSEN) - set(installed))
    assert not missing, f"the sid chroot lacks {missing}"
    site = tmp / "site"
    key = attest.ensure_key(tmp / "key.pem")
    records, jobs, expected = {}, [], {}
    for build_id, (name, status) in enumerate(CHOSEN.items(), start=1):
        p = installed[name]
        data = f"the bytes of {name}\n".encode()
        deb = tmp / "debs" / f"{name}_{p.version.replace(':', '%3a')}_{p.architecture}.deb"
        deb.parent.mkdir(exist_ok=True)
        deb.write_bytes(data)
        sha = hashlib.sha256(data).hexdigest()
        art = Artifact(
            name,
            p.version,
            p.architecture,
            f"https://mirror.example/pool/{deb.name}",
            sha,
            len(data),
        )
        g = BuildGroup(
            name,
            p.version,
            "debian",
            "sid",
            "main",
            p.architecture,
            f"https://mirror.example/{name}.buildinfo",
            (art,),
        )
        expected[name] = (p.version, p.architecture, status)
        if status is Status.UNKWN:
            records[g.key] = GroupRecord(g, status, first_seen=NOW)
            jobs.append(Job("p", g, "new"))
            continue
        store = site / "builds" / str(build_id)
        store.mkdir(parents=True)
        (store / "log").write_text(f"build {build_id}: the log of {name}\n")
        files = {"log": f"{build_id}/log"}
        built = sha if status is Status.GOOD else ("0" * 64 if status is Status.BAD else None)
        results = () if status is Status.FAIL else (ArtifactResult(name, deb.name, sha, built),)
        if status is Status.GOOD:
            link = attest.make_link(deb.name, f"{name}.buildinfo", deb, deb, key)
            (store / "attestation").write_bytes(link)
            files["attestation"] = f"{build_id}/attestation"
        if status is Status.BAD:
            (store / "diffoscope").write_text(f"--- the diff of {name}\n")
            files["diffoscope"] = f"{build_id}/diffoscope"
        a = Attempt(
            build_id, p.version, status, NOW, 60.0, "debian", "new", g.inputs_digest, results, files
        )
        records[g.key] = GroupRecord(g, status, [a], first_seen=NOW)
        if status is Status.FAIL:
            jobs.append(Job("p", g, "requeued"))
    profile = Profile("p", "debian", (Release("sid", "https://mirror.example/debian"),))
    view = ProfileView(profile, records, len(jobs), NOW, (), jobs)
    render(site, [view], now=NOW, public_keys=[attest.public_key_pem(key)])
    return site, expected


@pytest.fixture(scope="module")
def served_site(
    tools: SidTools, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, object]]:
    """The site behind a plain static server, nginx and Caddy (the rules of docs/site.md)."""
    tmp = tmp_path_factory.mktemp("tools-site")
    site, expected = _site(tmp, tools)
    plain, stop_plain = serve(site)
    conf = tmp / "conf"
    conf.mkdir()
    nginx_port, caddy_port = _free_port(), _free_port()
    (conf / "nginx.conf").write_text(
        "daemon off; pid /srv/b/nginx.pid; error_log stderr;\nevents {}\nhttp {\n"
        "  access_log off;\n"
        + "".join(
            f"  {k}_temp_path /srv/b/tmp;\n"
            for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + f"  server {{\n    listen 127.0.0.1:{nginx_port};\n    root /srv/a;\n"
        + _docs_block("nginx")
        + "  }\n}\n"
    )
    (conf / "tmp").mkdir()
    (conf / "Caddyfile").write_text(
        "{\n\tadmin off\n\tauto_https off\n\tpersist_config off\n"
        "\tstorage file_system /srv/b/caddy\n}\n"
        f"http://127.0.0.1:{caddy_port} {{\n\troot * /srv/a\n"
        + _docs_block("caddyfile")
        + "\tfile_server\n}\n"
    )
    binds = {site: "/srv/a", conf: "/srv/b"}
    env = {"HOME": "/srv/b", "XDG_DATA_HOME": "/srv/b/xdg", "XDG_CONFIG_HOME": "/srv/b/xdg"}
    nginx = tools.start(
        ["nginx", "-c", "/srv/b/nginx.conf", "-p", "/srv/b"], binds, log=tmp / "nginx.log"
    )
    caddy = tools.start(
        ["caddy", "run", "--config", "/srv/b/Caddyfile", "--adapter", "caddyfile"],
        binds,
        log=tmp / "caddy.log",
        env=env,
    )
    try:
        nginx_url, caddy_url = f"http://127.0.0.1:{nginx_port}", f"http://127.0.0.1:{caddy_port}"
        _wait_http(nginx_url, nginx, tmp / "nginx.log")
        _wait_http(caddy_url, caddy, tmp / "caddy.log")
        yield {
            "site": site,
            "expected": expected,
            "plain": plain,
            "nginx": nginx_url,
            "caddy": caddy_url,
        }
    finally:
        stop(nginx)
        stop(caddy)
        stop_plain()


def _rebuildctl(tools: SidTools, base: str, *args: str) -> subprocess.CompletedProcess[str]:
    return tools.run(["rebuildctl", "-H", base, *args], env=NO_COLOR, timeout=60)


LINE = re.compile(r"^\[(\w+)\s*\] (\S+) (\S+)\s+\((.*)\) \"(.*)\"$")


@pytest.mark.parametrize("server", ["nginx", "caddy"])
def test_rebuildctl_reads_our_site(
    tools: SidTools, served_site: dict[str, object], server: str
) -> None:
    base = f"{served_site[server]}/debian"
    site: Path = served_site["site"]  # type: ignore[assignment]
    expected: dict[str, tuple[str, str, Status]] = served_site["expected"]  # type: ignore[assignment]
    ls = _rebuildctl(tools, base, "pkgs", "ls")
    assert ls.returncode == 0, ls.stderr
    rows = [LINE.match(line) for line in ls.stdout.splitlines()]
    assert all(rows), ls.stdout
    got = {m.group(2): (m.group(3), m.group(1), m.group(4)) for m in rows if m}
    assert len(rows) == len(expected) == len(got)  # every package once: the walk ended
    for name, (version, arch, status) in expected.items():
        # rebuildctl has no FAIL: a null artifact status prints as UNKWN
        shown = "UNKWN" if status is Status.FAIL else status.value
        assert got[name] == (version, shown, f"debian, sid, main, {arch}"), name
    records = json.loads((site / "debian/api/v1/packages/binary").read_text())["records"]
    as_json = _rebuildctl(tools, base, "pkgs", "ls", "--json")
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout) == records
    queue = _rebuildctl(tools, base, "queue", "ls")
    assert queue.returncode == 0, queue.stderr
    assert [line.split()[2] for line in queue.stdout.splitlines()] == ["dash", "grep"]
    board = _rebuildctl(tools, base, "status")
    assert board.returncode == 0 and board.stdout == "", board.stderr
    for name in ("base-files", "libstdc++6", "dash"):
        log = _rebuildctl(tools, base, "pkgs", "log", "--name", name)
        assert log.returncode == 0, log.stderr
        assert log.stdout.endswith(f": the log of {name}\n"), log.stdout
    att = _rebuildctl(tools, base, "pkgs", "attestation", "--name", "base-files")
    assert att.returncode == 0, att.stderr
    assert att.stdout == (site / "builds/1/attestation").read_text() + "\n"
    diff = _rebuildctl(tools, base, "pkgs", "diffoscope", "--name", "bash")
    assert diff.returncode == 0 and diff.stdout == "--- the diff of bash\n", diff.stderr
    never = _rebuildctl(tools, base, "pkgs", "log", "--name", "grep")
    assert never.returncode != 0 and "not been built" in never.stderr


def test_rebuildctl_on_a_plain_static_server(
    tools: SidTools, served_site: dict[str, object]
) -> None:
    """Without the rules only what needs no query works; a lookup by name must fail."""
    base = f"{served_site['plain']}/debian"
    status = _rebuildctl(tools, base, "status")
    assert status.returncode == 0, status.stderr
    log = _rebuildctl(tools, base, "pkgs", "log", "--name", "base-files")
    assert log.returncode != 0 and "exactly one result" in log.stderr


def test_debian_repro_status_reads_our_site(
    tools: SidTools, served_site: dict[str, object]
) -> None:
    expected: dict[str, tuple[str, str, Status]] = served_site["expected"]  # type: ignore[assignment]
    r = tools.run(
        ["debian-repro-status", "--rebuilderd", f"{served_site['plain']}/debian"],
        env=NO_COLOR,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    shown = {}
    for line in r.stdout.splitlines():
        m = re.match(r"^\[(.)\] (\S+) (\S+) (\S+) (\S+)", line)
        if m:
            shown[m.group(2)] = (m.group(1), m.group(3), m.group(4), m.group(5))
    for name, (version, arch, status) in expected.items():
        v0 = status.v0
        assert shown[name] == (REPRO_ICON[status], arch, version, v0), (name, r.stdout)


@pytest.mark.parametrize("server", ["nginx", "caddy"])
def test_the_rules_answer_a_build_s_v1_files_from_its_v0_copies(
    served_site: dict[str, object], server: str
) -> None:
    """A build's v1 files are no files of the site (docs/site.md): the rules answer them
    from v0, but for one artifact's own link of a several-link attestation, tried first."""
    site: Path = served_site["site"]  # type: ignore[assignment]
    api = f"{served_site[server]}/debian/api"
    v0_dir = site / "debian/api/v0/builds/1"
    piece = site / "debian/api/v1/builds/1/artifacts/2/attestation"
    assert not (site / "debian/api/v1/builds/1").exists()
    piece.parent.mkdir(parents=True)
    piece.write_text("artifact 2's own link\n")
    try:
        got = {
            path: requests.get(f"{api}/v1/builds/{path}", timeout=10)
            for path in ("1/log", "1/artifacts/1/attestation", "1/artifacts/2/attestation",
                         "1/artifacts/1/diffoscope", "999/log")
        }  # fmt: skip
    finally:
        piece.unlink()
        for folder in (piece.parent, piece.parent.parent, piece.parent.parent.parent):
            folder.rmdir()
    assert got["1/log"].text == (v0_dir / "log").read_text()
    assert got["1/artifacts/1/attestation"].text == (v0_dir / "attestation").read_text()
    assert got["1/artifacts/2/attestation"].text == "artifact 2's own link\n"
    assert got["1/artifacts/1/diffoscope"].status_code == 404  # a GOOD build has none
    assert got["999/log"].status_code == 404


def test_our_client_reads_our_site_through_nginx(served_site: dict[str, object]) -> None:
    expected: dict[str, tuple[str, str, Status]] = served_site["expected"]  # type: ignore[assignment]
    entries = client.fetch_pkgs(f"{served_site['nginx']}/debian")
    assert {e.name: (e.version, e.architecture, e.status) for e in entries} == expected
    board = client.fetch_dashboard(f"{served_site['nginx']}/debian")
    assert board.queue_length == 2 and board.suites[""][Status.FAIL] == 1
    queue = client.fetch_queue(f"{served_site['plain']}/debian")
    assert [q.name for q in queue] == ["dash", "grep"]


# --- a real rebuilderd, its worker, and our client ------------------------------------------

BACKEND = """#!/bin/sh
# The dummy backend: rebuilderd-worker calls it as any backend (input path, REBUILDERD_OUTDIR).
set -e
echo "dummy backend: building $(basename "$1")"
mode=$(sed -n 's/^MODE=//p' "$1")
if [ "$mode" = fail ]; then echo "dummy backend: failing on purpose"; exit 1; fi
for f in "$(dirname "$1")"/*.deb; do
  if [ "$mode" = bad ]; then echo different > "$REBUILDERD_OUTDIR/$(basename "$f")"
  else cp "$f" "$REBUILDERD_OUTDIR/"; fi
done
"""
# source name -> (mode, binary names)
SOURCES = {
    "good-0000": ("good", ("good-0000", "good-0000-doc")),
    "bad-0001": ("bad", ("bad-0001",)),
    "fail-0002": ("fail", ("fail-0002",)),
    "good-0003": ("good", ("good-0003",)),
}
WANT = {"good": Status.GOOD, "bad": Status.BAD, "fail": Status.FAIL}


@pytest.fixture(scope="module")
def daemon(
    tools: SidTools, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, object]]:
    """rebuilderd with the SOURCES synced and built by its own worker (then stopped)."""
    tmp = tmp_path_factory.mktemp("rebuilderd")
    pool = tmp / "pool"
    pool.mkdir()
    pool_url, stop_pool = serve(pool)
    packages = []
    for source, (mode, binaries) in SOURCES.items():
        (pool / f"{source}_1.0-1_amd64.buildinfo").write_text(f"Source: {source}\nMODE={mode}\n")
        arts = []
        for b in binaries:
            deb = f"{b}_1.0-1_amd64.deb"
            if mode != "fail":  # the worker's download fails: rebuilderd's FAIL
                (pool / deb).write_bytes(f"the bytes of {b}\n".encode() * 20)
            arts.append(
                {
                    "name": b,
                    "version": "1.0-1",
                    "component": "main",
                    "architecture": "amd64",
                    "url": f"{pool_url}/{deb}",
                }
            )
        packages.append(
            {
                "name": source,
                "version": "1.0-1",
                "artifacts": arts,
                "url": f"{pool_url}/{source}_1.0-1_amd64.buildinfo",
            }
        )
    work = tmp / "srv"
    (work / "worker").mkdir(parents=True)
    (work / "home").mkdir()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    (work / "rebuilderd.conf").write_text(
        f'[http]\nbind_addr = "127.0.0.1:{port}"\n[worker]\nsignup_secret = "test-secret"\n'
    )
    (work / "worker.conf").write_text(
        f'endpoint = "{url}"\nsignup_secret = "test-secret"\nsupported_architectures = ["amd64"]\n'
        'idle_delay = 1\n[build]\ntimeout = 120\n[backend."debian"]\npath = "/srv/a/backend.sh"\n'
    )
    (work / "backend.sh").write_text(BACKEND)
    (work / "backend.sh").chmod(0o755)
    report = {
        "distribution": "debian",
        "release": "sid",
        "architecture": "amd64",
        "packages": packages,
    }
    (work / "report.json").write_text(json.dumps(report))
    binds = {work: "/srv/a"}
    env = {"REBUILDERD_COOKIE_PATH": "/srv/a/auth-cookie", "HOME": "/srv/a/home"}
    rebuilderd = tools.start(
        ["rebuilderd", "-c", "/srv/a/rebuilderd.conf", "--signing-key", "/srv/a/sign.key"],
        binds,
        cwd="/srv/a",
        log=tmp / "rebuilderd.log",
        env=env,
    )
    worker = None
    try:
        _wait_http(f"{url}/api/v1/dashboard", rebuilderd, tmp / "rebuilderd.log")
        sync = tools.run(
            ["sh", "-c", f"rebuildctl -H {url} pkgs sync-stdin < report.json"],
            binds,
            cwd="/srv/a",
            env=env,
        )
        assert sync.returncode == 0, sync.stderr
        worker = tools.start(
            ["rebuilderd-worker", "-c", "/srv/a/worker.conf", "connect", url],
            binds,
            cwd="/srv/a/worker",
            log=tmp / "worker.log",
            env=env,
        )
        deadline = time.monotonic() + 300
        while True:
            board = requests.get(f"{url}/api/v1/dashboard", timeout=10).json()["rebuilds"]
            if board["good"] + board["bad"] + board["fail"] >= len(SOURCES):
                break
            if time.monotonic() > deadline or worker.poll() is not None:
                pytest.fail(
                    f"the worker did not build everything: {board}\n"
                    + (tmp / "worker.log").read_text(errors="replace")[-3000:]
                )
            time.sleep(1)
        stop(worker)  # what is queued again (BAD, FAIL: retried later) stays queued
        yield {"url": url, "pool": pool, "tmp": tmp, "binds": binds, "env": env}
    finally:
        if worker is not None:
            stop(worker)
        stop(rebuilderd)
        stop_pool()


def test_our_client_reads_a_real_rebuilderd(tools: SidTools, daemon: dict[str, object]) -> None:
    url = str(daemon["url"])
    entries = {e.name: e for e in client.fetch_pkgs(url)}
    want = {b: WANT[mode] for mode, bins in SOURCES.values() for b in bins}
    assert {n: (e.version, e.status) for n, e in entries.items()} == {
        n: ("1.0-1", s) for n, s in want.items()
    }
    # the daemon's own client sees the same packages, builds and artifacts
    theirs = tools.run(["rebuildctl", "-H", url, "pkgs", "ls", "--json"], env=NO_COLOR)
    assert theirs.returncode == 0, theirs.stderr
    for p in json.loads(theirs.stdout):
        e = entries[p["name"]]
        assert (e.version, e.build_id, e.artifact_id, e.release) == (
            p["version"],
            p["build_id"],
            p["artifact_id"],
            p["release"],
        )
    assert client.format_pkg_line(entries["fail-0002"]).startswith("[FAIL ] fail-0002 1.0-1 ")
    # every log is the one of the build that made the package (v0's is keyed by artifact id)
    for source, (mode, binaries) in SOURCES.items():
        for b in binaries:
            log = client.fetch_build_file(url, entries[b], "log").decode()
            own = f"{b}_1.0-1_amd64.deb" if mode == "fail" else f"building {source}_1.0-1"
            assert own in log, (b, log)
    # the dashboard and queue counts are v1's, not v0's constant 0
    raw = requests.get(f"{url}/api/v1/dashboard", timeout=10).json()
    board = client.fetch_dashboard(url)
    assert board.suites[""] == {Status.GOOD: 2, Status.BAD: 1, Status.FAIL: 1, Status.UNKWN: 0}
    assert board.queue_length == sum(raw["jobs"].values())
    raw_queue = requests.get(f"{url}/api/v1/queue", timeout=10).json()["records"]
    assert [q.name for q in client.fetch_queue(url)] == [q["name"] for q in raw_queue]


def test_verify_check_files_against_a_real_rebuilderd(daemon: dict[str, object]) -> None:
    """The daemon's v1 attestations carry its own signature: GOOD packages verify."""
    url, pool = str(daemon["url"]), Path(str(daemon["pool"]))
    installed = [
        client.Installed(b, "1.0-1", "amd64") for _, bins in SOURCES.values() for b in bins
    ]
    report = client.verify_installed(installed, {url: client.fetch_pkgs(url)}, 1)
    keys = {url: client.fetch_public_keys(url)}
    checked = client.check_files(report, [pool], client.attestation_fetcher({url: url}), keys)
    by_name = {v.package.name: v for v in checked.verdicts}
    for name in ("good-0000", "good-0000-doc", "good-0003"):
        v = by_name[name]
        assert v.reproduced and (v.checks or {})[url].outcome == "ok", (name, v.checks)
    assert by_name["bad-0001"].status is Status.BAD and not by_name["bad-0001"].reproduced
    assert by_name["fail-0002"].status is Status.UNKWN  # FAIL: not reproduced, not refuted


def test_our_cli_against_a_real_rebuilderd(
    tools: SidTools, daemon: dict[str, object], tmp_path: Path
) -> None:
    from .fixtures.operator import rebuild

    url = str(daemon["url"])
    status = rebuild(tmp_path, "status", "-H", url)
    assert status.returncode == 0, status.stderr
    assert "GOOD 2  BAD 1  FAIL 1  UNKWN 0" in status.stdout
    ls = rebuild(tmp_path, "pkgs", "ls", "-H", url)
    assert ls.returncode == 0, ls.stderr
    names = [line.split()[2] for line in ls.stdout.splitlines()]
    assert names == sorted(names) and len(names) == 5
    assert "(debian, sid, main, amd64)" in ls.stdout
    log = rebuild(tmp_path, "pkgs", "log", "-H", url, "--name", "good-0003")
    assert log.returncode == 0 and "building good-0003_1.0-1_amd64.buildinfo" in log.stdout
    # --json: rebuildctl's BinaryPackage objects; --json-v0: v0's PkgRelease
    keys = ("id", "name", "version", "status", "build_id", "artifact_id", "release", "url")
    ours = json.loads(rebuild(tmp_path, "pkgs", "ls", "--json", "-H", url).stdout)
    theirs = json.loads(tools.run(["rebuildctl", "-H", url, "pkgs", "ls", "--json"]).stdout)
    assert sorted([p[k] for k in keys] for p in ours) == sorted(
        [p[k] for k in keys] for p in theirs
    )
    v0_shape = json.loads(rebuild(tmp_path, "pkgs", "ls", "--json-v0", "-H", url).stdout)
    fail = next(p for p in v0_shape if p["name"] == "fail-0002")
    assert fail["status"] == "UNKWN" and fail["build_id"] is not None  # v0 has no FAIL
