"""'Were the packages on this machine reproduced?' against real rendered rebuilder sites.

Rebuilder one is a site rendered by a real pass over the fixture archive;
rebuilder two is its copy with one verdict changed (it disagrees on one
package); rebuilder three publishes the same verdicts under another key.
All are served over HTTP on 127.0.0.1.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from pathlib import Path

import pytest

from rebuilder import attest

from .fixtures.debian import Archive
from .fixtures.http import serve
from .fixtures.operator import operator_dir, rebuild

pytestmark = pytest.mark.slow  # runs rebuild


@pytest.fixture
def rebuilders(mirror: tuple[Archive, str], tmp_path: Path):
    a, url = mirror
    work = operator_dir(tmp_path, a, url)
    assert rebuild(work, "run", "--no-commit").returncode == 0
    one = work / "site"
    two, three = tmp_path / "two", tmp_path / "three"
    shutil.copytree(one, two)
    shutil.copytree(one, three)
    # two and three speak v0 only (as older rebuilderds do): the client falls back to the
    # v0 files this fixture changes
    for site in (two, three):
        shutil.rmtree(site / "debian" / "api" / "v1")
    pkgs = two / "debian" / "api" / "v0" / "pkgs" / "list"
    rows = json.loads(pkgs.read_text())
    for r in rows:
        if r["name"] == "timestamped":
            r["status"] = "GOOD"  # rebuilder two disagrees with one on this package
    pkgs.write_text(json.dumps(rows))
    attest.generate_key(tmp_path / "other.key")
    other = attest.public_key_pem(attest.load_signing_key(tmp_path / "other.key"))
    keys = three / "debian" / "api" / "v0" / "public-keys"
    keys.write_text(json.dumps({"current": [other]}))  # same links, a key that did not sign them
    served = [serve(d) for d in (one, two, three)]
    yield a, [f"{u}/debian" for u, _ in served]
    for _, stop in served:
        stop()


def dpkg_status(tmp_path: Path, a: Archive) -> Path:
    entries = [
        ("repro", a.arch),
        ("repro-doc", "all"),
        ("timestamped", a.arch),
        ("broken", a.arch),
        ("unknown-here", a.arch),
    ]
    text = "\n".join(
        f"Package: {n}\nStatus: install ok installed\nArchitecture: {arch}\nVersion: 1.0\n"
        for n, arch in entries
    )
    (tmp_path / "status").write_text(text)
    return tmp_path / "status"


def test_verify_require_two_lines_disagreement_and_exit_status(rebuilders, tmp_path: Path):
    a, (one, two, _) = rebuilders
    status = dpkg_status(tmp_path, a)
    r = rebuild(
        tmp_path, "verify", "-H", one, "-H", two, "--require", "2", "--dpkg-status", str(status)
    )
    assert r.returncode == 1, r.stderr
    lines = {ln.split()[1]: ln for ln in r.stdout.splitlines() if ln.startswith("[")}
    assert lines["repro"].startswith("[+] repro 1.0") and "2/2 GOOD" in lines["repro"]
    assert lines["repro-doc"].startswith("[+]")
    assert lines["timestamped"].startswith("[-]") and "disagree" in lines["timestamped"]
    assert lines["broken"].startswith("[?]")  # a FAIL neither reproduces nor refutes it
    assert lines["unknown-here"].startswith("[?]")
    assert "3/5 packages could not be reproduced" in r.stdout

    j = rebuild(
        tmp_path,
        "verify",
        "-H",
        one,
        "-H",
        two,
        "--require",
        "1",
        "--dpkg-status",
        str(status),
        "--json",
    )
    doc = json.loads(j.stdout)
    assert doc["summary"]["reproduced"] == 3 and doc["summary"]["disagreements"] == 1

    only_good = dpkg_status(tmp_path, a).write_text(
        "Package: repro\nStatus: install ok installed\nArchitecture: all\nVersion: 1.0\n"
    )
    del only_good
    ok = rebuild(
        tmp_path,
        "verify",
        "-H",
        one,
        "-H",
        two,
        "--require",
        "2",
        "--dpkg-status",
        str(status),
        "--summary",
    )
    assert ok.returncode == 0 and "All 1 packages have been reproduced" in ok.stdout


def test_check_files_counts_only_attestations_by_the_rebuilders_own_key(rebuilders, tmp_path: Path):
    a, (one, _, three) = rebuilders
    cache = tmp_path / "apt-archives"
    cache.mkdir()
    pool = a.root / a.package("repro").pool_dir
    shutil.copy(pool / f"repro_1.0_{a.arch}.deb", cache)
    status = tmp_path / "status"
    status.write_text(
        f"Package: repro\nStatus: install ok installed\nArchitecture: {a.arch}\nVersion: 1.0\n"
    )
    args = ["--dpkg-status", str(status), "--check-files", "--package-cache", str(cache)]
    good = rebuild(tmp_path, "verify", "-H", one, *args)
    assert good.returncode == 0, good.stdout + good.stderr
    bad = rebuild(tmp_path, "verify", "-H", one, "-H", three, "--require", "2", *args)
    assert bad.returncode == 1
    assert "invalid attestation" in bad.stdout

    (cache / f"repro_1.0_{a.arch}.deb").write_bytes(b"not the published bytes")
    tampered = rebuild(tmp_path, "verify", "-H", one, *args)
    assert tampered.returncode == 1 and "does not match the local file" in tampered.stdout


def test_this_hosts_dpkg_database_and_a_pacman_database(rebuilders, tmp_path: Path):
    _, (one, _, _) = rebuilders
    r = rebuild(tmp_path, "verify", "-H", one, "--summary")  # this very host's dpkg database
    assert r.returncode == 1 and "packages could not be reproduced" in r.stdout
    local = tmp_path / "pacman-local"
    (local / "repro-1.0-1").mkdir(parents=True)
    (local / "repro-1.0-1" / "desc").write_text(
        "%NAME%\nrepro\n\n%VERSION%\n1.0\n\n%ARCH%\nany\n\n"
    )
    r = rebuild(tmp_path, "verify", "-H", one, "--pacman-db", str(local))
    assert r.returncode == 0 and r.stdout.startswith("[+] repro 1.0"), r.stdout + r.stderr


def test_pkgs_ls_and_log_against_a_served_site(rebuilders, tmp_path: Path):
    _, (one, _, _) = rebuilders
    for status, expected in (("BAD", ["timestamped"]), ("FAIL", ["broken"])):  # v1 says FAIL
        ls = rebuild(tmp_path, "pkgs", "ls", "-H", one, "--status", status)
        names = sorted(ln.split("] ", 1)[1].split()[0] for ln in ls.stdout.splitlines())
        assert names == expected, ls.stdout + ls.stderr
    log = rebuild(tmp_path, "pkgs", "log", "-H", one, "--name", "broken")
    assert "broken only builds for the original upload" in log.stdout
    bad = rebuild(tmp_path, "pkgs", "ls", "-H", "http://127.0.0.1:9/")
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[-1].startswith("rebuild: error: http://127.0.0.1:9/")


def test_attestation_verify_refuses_tampered_truncated_and_foreign(rebuilders, tmp_path: Path):
    a, (one, _, _) = rebuilders
    keys_doc = json.loads(rebuild(tmp_path, "pkgs", "ls", "-H", one, "--json-v0").stdout)
    entry = next(e for e in keys_doc if e["name"] == "repro" and e["has_attestation"])
    link = rebuild(
        tmp_path,
        "pkgs",
        "attestation",
        "-H",
        one,
        "--name",
        "repro",
        "--architecture",
        entry["architecture"],
    )
    assert link.returncode == 0, link.stderr
    (tmp_path / "link").write_text(link.stdout)
    pub = rebuild(tmp_path, "pubkey", "--key", str(tmp_path / "nokey"))
    assert pub.returncode == 2 and "rebuild: error:" in pub.stderr  # no such key: one line

    with urllib.request.urlopen(f"{one}/api/v0/public-keys") as r:
        (tmp_path / "pub.pem").write_text(json.loads(r.read())["current"][0])
    ok = rebuild(tmp_path, "attestation", "verify", "link", "--key", "pub.pem")
    assert ok.returncode == 0 and ok.stdout.startswith("OK: 'rebuild repro_1.0_"), ok.stderr

    doc = json.loads((tmp_path / "link").read_text())
    product = next(iter(doc["signed"]["products"].values()))
    product["sha256"] = "0" * 64
    (tmp_path / "tampered").write_text(json.dumps(doc))
    (tmp_path / "truncated").write_text((tmp_path / "link").read_text()[:100])
    attest.generate_key(tmp_path / "foreign.key")
    (tmp_path / "other.pem").write_text(
        attest.public_key_pem(attest.load_signing_key(tmp_path / "foreign.key"))
    )
    for name, key in (("tampered", "pub.pem"), ("truncated", "pub.pem"), ("link", "other.pem")):
        r = rebuild(tmp_path, "attestation", "verify", name, "--key", key)
        assert r.returncode == 1, (name, r.stdout)
        assert r.stderr.startswith("rebuild: attestation NOT verified:"), r.stderr
        assert "Traceback" not in r.stderr
    deb = a.root / a.package("repro").pool_dir / f"repro_1.0_{a.arch}.deb"
    (tmp_path / "other.deb").write_bytes(deb.read_bytes() + b"x")
    r = rebuild(
        tmp_path,
        "attestation",
        "verify",
        "link",
        "--key",
        "pub.pem",
        "--artifact",
        str(tmp_path / "other.deb"),
    )
    assert r.returncode == 1 and "NOT verified" in r.stderr
    r = rebuild(
        tmp_path, "attestation", "verify", "link", "--key", "pub.pem", "--artifact", str(deb)
    )
    assert r.returncode == 0 and "matches" in r.stdout
