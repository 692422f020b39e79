"""The rebuild command's stage-by-stage subcommands and its error handling, for real."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .fixtures.debian import Archive
from .fixtures.http import serve
from .fixtures.operator import BACKEND, operator_dir, rebuild

pytestmark = pytest.mark.slow  # runs rebuild


def test_sync_print_json_plan_reasons_and_requeue(mirror: tuple[Archive, str], tmp_path: Path):
    a, url = mirror
    work = operator_dir(tmp_path, a, url)
    snap = rebuild(work, "sync", "--print-json")
    assert snap.returncode == 0, snap.stderr
    (profile,) = json.loads(snap.stdout)
    names = sorted(g["name"] for g in profile["groups"])
    assert names == ["broken", "repro", "repro", "timestamped"]
    assert not (work / "state" / "fixture.json").exists()  # --print-json saves nothing

    assert rebuild(work, "sync").returncode == 0
    plan = rebuild(work, "plan")
    lines = plan.stdout.splitlines()
    assert len(lines) == 4 and all(ln.endswith("\tnew") for ln in lines)

    assert rebuild(work, "run", "--no-commit").returncode == 0
    assert rebuild(work, "plan").stdout == ""  # GOOD never, BAD and FAIL only after backoff
    r = rebuild(work, "pkgs", "requeue", "--status", "BAD")
    assert r.returncode == 0 and "1 build groups requeued" in r.stderr
    assert rebuild(work, "plan").stdout.split("\t")[2:] == ["timestamped", "1.0", "requeued\n"]

    ls = rebuild(work, "pkgs", "ls", "--status", "GOOD")
    names = sorted(ln.split("] ", 1)[1].split()[0] for ln in ls.stdout.splitlines())
    assert names == ["repro", "repro-doc"]
    assert rebuild(work, "pkgs", "log", "--name", "broken").stdout.count("broken only builds") >= 1


def test_build_one_package_directly(mirror: tuple[Archive, str], tmp_path: Path):
    a, url = mirror
    pool = f"{url}/{a.package('timestamped').pool_dir}"
    deb = f"{pool}/timestamped_1.0_{a.arch}.deb"
    info = f"{url}/buildinfo-pool/t/timestamped/timestamped_1.0_{a.arch}.buildinfo"
    r = rebuild(
        tmp_path,
        "build",
        "debian",
        deb,
        "--input-url",
        info,
        "--backend",
        f"debian={BACKEND}",
        "--diffoscope",
    )
    assert r.returncode == 1, r.stderr
    assert r.stdout.strip().splitlines()[-1].startswith("BAD")
    assert "usr/share/timestamped/built-at" in r.stderr  # the diffoscope report

    deb = f"{url}/{a.package('repro').pool_dir}/repro_1.0_{a.arch}.deb"
    info = f"{url}/buildinfo-pool/r/repro/repro_1.0_{a.arch}.buildinfo"
    r = rebuild(
        tmp_path, "build", "debian", deb, "--input-url", info, "--backend", f"debian={BACKEND}"
    )
    assert r.returncode == 0 and r.stdout.strip().endswith("GOOD"), r.stderr


def test_max_time_abandons_running_builds_and_leaves_them_queued(
    mirror: tuple[Archive, str], tmp_path: Path
):
    a, url = mirror
    slow = tmp_path / "slow.sh"
    slow.write_text(
        f'#!/bin/sh\ncase "$1" in *timestamped*) sleep 120;; esac\nexec {BACKEND} "$@"\n'
    )
    slow.chmod(0o755)
    work = operator_dir(tmp_path, a, url, backend=slow)
    r = rebuild(work, "run", "--jobs", "1", "--max-time", "8s", timeout=120)
    assert r.returncode == 0, r.stderr
    assert "abandoned at the time limit" in r.stderr
    data = json.loads((work / "state" / "fixture.json").read_text())
    ts = next(v for k, v in data["groups"].items() if k.endswith("/timestamped"))
    assert ts["status"] == "UNKWN" and ts["attempts"] == []
    assert "timestamped" in rebuild(work, "plan").stdout  # still queued for the next pass


def test_operator_mistakes_are_one_line_errors(tmp_path: Path):
    r = rebuild(tmp_path, "run")
    assert r.returncode == 2 and r.stderr.startswith("rebuild: error: rebuilder.toml: no such")
    (tmp_path / "rebuilder.toml").write_text('[rebuilder]\njobs = "many"\n')
    r = rebuild(tmp_path, "status")
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "rebuild: error: rebuilder.toml: [rebuilder] jobs: expected a non-negative integer"
    )
    r = rebuild(tmp_path, "run", "--max-time", "soon")
    assert r.returncode == 2 and "not a duration" in r.stderr
    assert all("Traceback" not in x.stderr for x in (r,))


def test_state_outside_git_is_a_warning_not_an_error(mirror: tuple[Archive, str], tmp_path: Path):
    a, url = mirror
    work = operator_dir(tmp_path, a, url)
    subprocess.run(["rm", "-rf", str(work / ".git")], check=True)
    r = rebuild(work, "run", "--max-builds", "0")
    assert r.returncode == 0, r.stderr
    assert "not in a git work tree" in r.stderr


def test_queue_ls_and_remote_status(mirror: tuple[Archive, str], tmp_path: Path):
    a, url = mirror
    work = operator_dir(tmp_path, a, url)
    assert rebuild(work, "sync").returncode == 0
    q = rebuild(work, "queue", "ls")
    assert q.returncode == 0 and len(q.stdout.splitlines()) == 4
    assert '"debian" "main"' in q.stdout.splitlines()[0]
    j = json.loads(rebuild(work, "queue", "ls", "--json").stdout)
    assert [e["pkgbase"]["name"] for e in j] == ["broken", "repro", "repro", "timestamped"]

    assert rebuild(work, "run", "--no-commit").returncode == 0
    site_url, stop = serve(work / "site")
    try:
        st = rebuild(tmp_path, "status", "-H", f"{site_url}/debian")
        assert st.returncode == 0, st.stderr
        assert "all suites" in st.stdout and "GOOD" in st.stdout  # v1: builds by status
        queue = rebuild(tmp_path, "queue", "ls", "--json", "-H", f"{site_url}/debian")
        assert queue.returncode == 0, queue.stderr  # the site publishes its queue now
        local = json.loads(rebuild(work, "queue", "ls", "--json").stdout)
        assert [e["pkgbase"]["name"] for e in json.loads(queue.stdout)] == [
            e["pkgbase"]["name"] for e in local
        ]
    finally:
        stop()
