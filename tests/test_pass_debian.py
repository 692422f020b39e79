"""End to end: one real pass over a real, signed Debian fixture archive served on 127.0.0.1.

The fixture packages are built with dpkg-buildpackage; the test backend
really rebuilds them from source. Every pass runs the real CLI in a
subprocess, as cron would.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .fixtures import ROOT
from .fixtures.debian import Archive, resign_with_other_key, tamper_packages
from .fixtures.operator import BACKEND, git_log, operator_dir, rebuild

pytestmark = pytest.mark.slow  # builds packages, runs rebuild


def statuses(work: Path) -> dict[str, str]:
    data = json.loads((work / "state" / "fixture.json").read_text())
    return {k.split("/", 2)[2]: v["status"] for k, v in data["groups"].items()}


def test_full_pass_good_bad_fail_site_and_audit_log(mirror: tuple[Archive, str], tmp_path: Path):
    a, url = mirror
    work = operator_dir(tmp_path, a, url)
    r = rebuild(work, "run")
    assert r.returncode == 0, r.stderr
    assert "pass done: 4 built (2 GOOD, 1 BAD, 1 FAIL)" in r.stderr
    arch = a.arch
    assert statuses(work) == {
        f"{arch}/repro": "GOOD",
        "all/repro": "GOOD",
        f"{arch}/timestamped": "BAD",
        f"{arch}/broken": "FAIL",
    }

    # the state file: one group per line, keys sorted, attempts with both digests
    raw = (work / "state" / "fixture.json").read_text()
    assert len([ln for ln in raw.splitlines() if ln.startswith(f'"{a.suite}/main/')]) == 4
    state = json.loads(raw)
    bad = state["groups"][f"{a.suite}/main/{arch}/timestamped"]["attempts"][0]
    (art,) = bad["artifacts"]
    assert art["built_sha256"] and art["built_sha256"] != art["expected_sha256"]

    # diffoscope names the file that differs
    report = gzip.decompress((work / "site" / "builds" / bad["files"]["diffoscope"]).read_bytes())
    assert b"usr/share/timestamped/built-at" in report
    # ... and the classifier says why: the build time written into a file
    assert bad["causes"] == ["captures_build_time"]
    assert bad["differences"][0]["file"].endswith("data.tar › ./usr/share/timestamped/built-at")

    # the FAIL keeps its log with the backend's reason
    fail = state["groups"][f"{a.suite}/main/{arch}/broken"]["attempts"][0]
    log = gzip.decompress((work / "site" / "builds" / fail["files"]["log"]).read_bytes())
    assert b"broken only builds for the original upload" in log

    # rebuilderd-compatible API: FAIL is UNKWN with its build id (as rebuilderd 0.28), logs plain
    pkgs = json.loads((work / "site" / "debian" / "api" / "v0" / "pkgs" / "list").read_text())
    by_name = {p["name"]: p for p in pkgs}
    assert by_name["repro"]["status"] == "GOOD" and by_name["repro-doc"]["status"] == "GOOD"
    assert by_name["timestamped"]["status"] == "BAD" and by_name["timestamped"]["has_diffoscope"]
    assert by_name["broken"]["status"] == "UNKWN" and by_name["broken"]["build_id"]
    assert by_name["repro"]["has_attestation"]
    v1 = json.loads((work / "site/debian/api/v1/packages/binary").read_text())["records"]
    v1_status = {p["name"]: (p["status"], p["build_id"] is not None) for p in v1}
    assert v1_status["broken"] == (None, True)  # v1: a build that compared nothing, FAIL
    assert v1_status["timestamped"] == ("BAD", True) and v1_status["repro"] == ("GOOD", True)
    bid = by_name["broken"]["build_id"]
    v0_log = work / "site" / "debian" / "api" / "v0" / "builds" / str(bid) / "log"
    assert b"broken only builds" in v0_log.read_bytes()
    assert (work / "site" / "index.html").is_file()

    # the attestation verifies with the published key, against the published artifact
    att = work / "site" / "debian" / "api" / "v0" / "builds" / str(by_name["repro"]["build_id"])
    keys = json.loads((work / "site" / "debian" / "api" / "v0" / "public-keys").read_text())
    index = json.loads((work / "site" / "index.json").read_text())
    assert index["public_keys"] == keys["current"] and len(keys["current"]) == 1
    (work / "pub.pem").write_text(keys["current"][0])
    v = rebuild(work, "attestation", "verify", str(att / "attestation"), "--key", "pub.pem")
    assert v.returncode == 0 and "OK" in v.stdout, v.stderr

    # the audit log: one commit naming the pass
    (msg,) = git_log(work)
    assert msg.startswith("rebuilder pass: 4 built (2 GOOD, 1 BAD, 1 FAIL)")

    # a second pass over unchanged indexes builds nothing and commits nothing
    r2 = rebuild(work, "run")
    assert r2.returncode == 0, r2.stderr
    assert "pass done: 0 built" in r2.stderr
    assert len(git_log(work)) == 1
    assert (work / "state" / "fixture.json").read_text() == raw

    st = rebuild(work, "status", "--json")
    (row,) = json.loads(st.stdout)
    assert row["counts"] == {"GOOD": 2, "BAD": 1, "FAIL": 1, "UNKWN": 0}


def test_bad_signature_and_checksum_mismatch_stop_the_profile(
    mirror: tuple[Archive, str], tmp_path: Path
):
    a, url = mirror
    work = operator_dir(tmp_path, a, url)
    assert rebuild(work, "run", "--max-builds", "0").returncode == 0
    before = (work / "state" / "fixture.json").read_bytes()

    tamper_packages(a)
    shutil.rmtree(work / ".cache")  # a cached index that matches the Release is reused, rightly
    r = rebuild(work, "run", "--force-sync", "--max-builds", "0")
    assert r.returncode == 1
    err = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert err and "checksum mismatch" in err[0] and "Traceback" not in r.stderr
    assert (work / "state" / "fixture.json").read_bytes() == before

    resign_with_other_key(a)
    r = rebuild(work, "run", "--force-sync", "--max-builds", "0")
    assert r.returncode == 1
    assert "signature" in r.stderr.lower() and "Traceback" not in r.stderr
    assert (work / "state" / "fixture.json").read_bytes() == before


def test_killed_pass_resumes_without_rebuilding_finished_work(
    mirror: tuple[Archive, str], tmp_path: Path
):
    a, url = mirror
    pids = tmp_path / "pids"
    pids.mkdir()
    slow = tmp_path / "slow-backend.sh"
    # the timestamped build hangs until killed; the others rebuild normally
    slow.write_text(f"""#!/bin/sh
case "$1" in *timestamped*) echo $$ > {pids}/$$; sleep 300; exit 1;; esac
exec {BACKEND} "$@"
""")
    slow.chmod(0o755)
    work = operator_dir(tmp_path, a, url, backend=slow)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen(
        [sys.executable, str(ROOT / "rebuild.py"), "run", "--jobs", "1"],
        cwd=work,
        env=env,
        stderr=subprocess.DEVNULL,
    )
    journal = work / "state" / "fixture.journal"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        done = journal.read_text().count("\n") if journal.exists() else 0
        if done >= 3 and list(pids.iterdir()):
            break
        time.sleep(0.2)
    else:
        p.kill()
        pytest.fail("the pass never reached the hanging build")
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    (pidfile,) = pids.iterdir()
    hung = int(pidfile.read_text())
    for _ in range(50):  # the backend must die with its pass
        try:
            os.kill(hung, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(hung, signal.SIGKILL)
        pytest.fail("the backend outlived its killed pass")

    # resume with the real backend: only the unfinished build runs again
    (work / "rebuilder.toml").write_text(
        (work / "rebuilder.toml").read_text().replace(str(slow), str(BACKEND))
    )
    r = rebuild(work, "run", "--jobs", "1")
    assert r.returncode == 0, r.stderr
    assert "pass done: 1 built (0 GOOD, 1 BAD, 0 FAIL)" in r.stderr
    data = json.loads((work / "state" / "fixture.json").read_text())
    attempts = {k.split("/", 2)[2]: len(v["attempts"]) for k, v in data["groups"].items()}
    assert set(attempts.values()) == {1}, attempts
    assert not journal.exists()
    assert len(git_log(work)) == 1  # the killed pass committed nothing; the resumed one did


def test_suite_chroot_method_builds_from_the_dsc_and_a_missing_source_is_not_retried(
    mirror: tuple[Archive, str], tmp_path: Path
):
    """The suite-chroot path (input: the .dsc and every file it lists, checked against
    Sources) with the fixture backend standing in for the chroot, which needs a real suite."""
    a, url = mirror
    pool = a.root / a.package("repro").pool_dir
    (tarball,) = [f for f in pool.iterdir() if ".tar." in f.name]
    tarball.unlink()  # as when a mirror has lost a source file (a 404)
    work = operator_dir(tmp_path, a, url, method="suite-chroot")
    r = rebuild(work, "run")
    assert r.returncode == 0, r.stderr
    arch = a.arch
    assert statuses(work) == {
        f"{arch}/repro": "FAIL",
        "all/repro": "FAIL",
        f"{arch}/timestamped": "BAD",
        f"{arch}/broken": "FAIL",
    }
    data = json.loads((work / "state" / "fixture.json").read_text())
    repro = data["groups"][f"{a.suite}/main/{arch}/repro"]
    assert repro["group"]["method"] == "suite-chroot"
    assert repro["group"]["input_url"].endswith(".dsc")
    assert repro["attempts"][0]["reason"].startswith("source unavailable: " + tarball.name)
    assert repro["next_retry"] is None  # waits for new inputs, however long
    assert data["groups"][f"{a.suite}/main/{arch}/broken"]["next_retry"] is not None
