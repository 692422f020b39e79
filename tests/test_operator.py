"""The operator's path (issue 10): cron from another folder, a stock rebuilderd-sync.conf,
values checked at load. Real git, the real signed fixture archive on 127.0.0.1, the real
backend script of tests/backends."""

from __future__ import annotations

import argparse
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .fixtures import ROOT as REPO
from .fixtures.debian import Archive
from .fixtures.operator import BACKEND, operator_dir, rebuild

pytestmark = pytest.mark.slow  # runs rebuild


def _profile(a: Archive, url: str, name: str = "fixture", **extra: str) -> str:
    lines = [
        f'[profile."{name}"]',
        'distro = "debian"',
        f'releases = ["{a.suite}"]',
        'components = ["main"]',
        f'architectures = ["{a.arch}", "all"]',
        f'source = "{url}"',
        f'keyring = "{a.keyring}"',
        *(f"{k} = {v}" for k, v in extra.items()),
    ]
    return "\n".join(lines) + "\n"


def test_cron_from_another_folder_uses_the_config_folder(
    mirror: tuple[Archive, str], tmp_path: Path
) -> None:
    a, url = mirror
    work = operator_dir(tmp_path, a, url)
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    cfg = str(work / "rebuilder.toml")
    r = rebuild(elsewhere, "run", "--config", cfg)
    assert r.returncode == 0, r.stderr
    assert list(elsewhere.iterdir()) == []  # no ./state, ./site, ./.cache, no key here
    for name in ("state/fixture.json", "site/index.html", "rebuilder.key", ".cache"):
        assert (work / name).exists(), name
    log = subprocess.run(
        ["git", "-C", str(work), "log", "--format=%s"], capture_output=True, text=True, check=True
    ).stdout
    assert log.count("rebuilder pass") == 1

    # every command reads the same state from anywhere
    st = json.loads(rebuild(elsewhere, "status", "--json", "--config", cfg).stdout)
    assert st[0]["counts"]["GOOD"] == 2 and st[0]["counts"]["UNKWN"] == 0
    ls = rebuild(elsewhere, "pkgs", "ls", "--config", cfg)
    assert len(ls.stdout.splitlines()) == 4, ls.stderr  # repro, repro-doc, timestamped, broken
    assert rebuild(elsewhere, "plan", "--no-sync", "--config", cfg).stdout == ""
    r = rebuild(elsewhere, "pkgs", "requeue", "--status", "BAD", "--config", cfg)
    assert "1 build groups requeued" in r.stderr, r.stderr
    assert "timestamped" in rebuild(elsewhere, "plan", "--no-sync", "--config", cfg).stdout
    (work / "site" / "index.html").unlink()
    assert rebuild(elsewhere, "render", "--config", cfg).returncode == 0
    assert (work / "site" / "index.html").exists()
    assert list(elsewhere.iterdir()) == []


def test_a_folder_with_only_a_stock_rebuilderd_sync_conf(
    mirror: tuple[Archive, str], tmp_path: Path
) -> None:
    a, url = mirror
    work = tmp_path / "rb"
    work.mkdir()
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    # as rebuilderd documents it: no buildinfo_url (Debian's service is the default)
    (work / "rebuilderd-sync.conf").write_text(_profile(a, url))
    snap = rebuild(work, "sync", "--print-json")
    assert snap.returncode == 0, snap.stderr
    (p,) = json.loads(snap.stdout)
    repro = next(g for g in p["groups"] if g["name"] == "repro" and g["architecture"] == a.arch)
    assert repro["input_url"].endswith(f"/buildinfo-pool/r/repro/repro_1.0_{a.arch}.buildinfo")
    assert not repro["input_url"].startswith(url)
    r = rebuild(work, "run", "--max-builds", "0")
    assert r.returncode == 0, r.stderr
    assert (work / "state" / "fixture.json").exists()
    assert len(rebuild(work, "plan", "--no-sync").stdout.splitlines()) == 4

    # the documented path (the same profile in a rebuilder.toml, run from elsewhere with
    # --config) tracks the same groups, with the same inputs, and renders the same pages
    doc = tmp_path / "documented"
    doc.mkdir()
    subprocess.run(["git", "init", "-q", str(doc)], check=True)
    (doc / "rebuilder.toml").write_text(_profile(a, url))
    elsewhere = tmp_path / "cron"
    elsewhere.mkdir()
    r = rebuild(elsewhere, "run", "--max-builds", "0", "--config", str(doc / "rebuilder.toml"))
    assert r.returncode == 0, r.stderr

    def tracked(root: Path) -> dict[str, tuple[str, str, str]]:
        groups = json.loads((root / "state" / "fixture.json").read_text())["groups"]
        return {
            k: (g["group"]["version"], g["group"]["input_url"], g["status"])
            for k, g in groups.items()
        }

    def pages(root: Path) -> set[str]:
        return {str(f.relative_to(root / "site")) for f in (root / "site").rglob("*")}

    assert tracked(doc) == tracked(work) and len(tracked(work)) == 4
    assert pages(doc) == pages(work)
    assert list(elsewhere.iterdir()) == []

    # a config beside it adds settings; its profiles come from the sync conf
    (work / "rebuilder.toml").write_text('[rebuilder]\nstate_dir = "st2"\n')
    r = rebuild(work, "run", "--max-builds", "0", "--no-commit")
    assert r.returncode == 0, r.stderr
    assert (work / "st2" / "fixture.json").exists()


def test_profile_errors_name_file_profile_and_key_once(tmp_path: Path) -> None:
    cases = {
        'method = "suite-chrot"': "method: unknown method 'suite-chrot'",
        'releases = ["bookworm"]': "releases: no source (mirror URL) serves release 'bookworm'",
    }
    for line, message in cases.items():
        text = '[profile."deb"]\ndistro = "debian"\ncomponents = ["main"]\n'
        text += 'architectures = ["amd64"]\n' + line + "\n"
        if not line.startswith("releases"):
            text += 'releases = ["bookworm"]\nsource = "https://mirror.example/debian"\n'
        (tmp_path / "rebuilderd-sync.conf").write_text(text)
        for cmd in (["run"], ["status"], ["pkgs", "ls"], ["plan"]):
            r = rebuild(tmp_path, *cmd)
            assert r.returncode == 2, (cmd, r.stderr)
            assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
            assert r.stderr.startswith(
                f'rebuild: error: rebuilderd-sync.conf: [profile."deb"] {message}'
            ), r.stderr
    # a method with its own backend is fine
    (tmp_path / "rebuilder.toml").write_text(f'[backend."debian-mine"]\npath = "{BACKEND}"\n')
    (tmp_path / "rebuilderd-sync.conf").write_text(
        '[profile."deb"]\ndistro = "debian"\nreleases = ["bookworm"]\n'
        'source = "https://mirror.example/debian"\nmethod = "mine"\n'
    )
    r = rebuild(tmp_path, "status")
    assert r.returncode == 0, r.stderr


def _git(work: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(work), *args], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip


def test_init_audit_log_and_local_listings(mirror: tuple[Archive, str], tmp_path: Path) -> None:
    a, url = mirror
    r = rebuild(tmp_path, "init", "op")
    assert r.returncode == 0, r.stderr
    work = tmp_path / "op"
    assert "rebuilder.toml" in _git(work, "show", "--stat", "HEAD")
    first = _git(work, "log", "-1", "--format=%B")
    assert first.startswith("rebuilder: new working directory") and ".gitignore" in first
    assert rebuild(tmp_path, "init", "op").returncode == 2  # never overwrites
    text = (work / "rebuilder.toml").read_text().split("[profile.")[0]  # keep [rebuilder]
    text += _profile(a, url, buildinfo_url=f'"{url}"')
    text += f'[backend."debian"]\npath = "{BACKEND}"\n'
    (work / "rebuilder.toml").write_text(text)

    r = rebuild(work, "run")
    assert r.returncode == 0, r.stderr
    msg = _git(work, "log", "-1", "--format=%B")
    assert msg.startswith("rebuilder pass: 4 built (2 GOOD, 1 BAD, 1 FAIL); now tracking 4 groups")
    assert f"  fixture: fixture/main/{a.arch}/repro 1.0: UNKWN -> GOOD\n" in msg
    assert f"  fixture: fixture/main/{a.arch}/broken 1.0: UNKWN -> FAIL\n" in msg
    # `git add -A` would commit nothing secret: key, site, cache, journals, lock are ignored
    (work / "state" / "fixture.journal").write_text("")
    added = _git(work, "add", "-A", "--dry-run")
    assert added == "add 'rebuilder.toml'\n", added  # only the operator's own edit
    assert (work / "rebuilder.key").exists() and (work / "site" / "index.html").exists()
    # a FAIL's reason quotes the backend's last error line, on the group and list pages
    data = json.loads((work / "state" / "fixture.json").read_text())
    broken = next(v for k, v in data["groups"].items() if k.endswith("/broken"))
    reason = broken["attempts"][-1]["reason"]
    assert reason.startswith("backend exited with ") and len(reason) > 25, reason
    listing = (work / "site/p/fixture/fixture/main" / a.arch / "index.html").read_text()
    assert '<td class="reason">backend exited with ' in listing

    r = rebuild(work, "pkgs", "requeue", "--status", "BAD")
    assert r.returncode == 0 and "1 build groups requeued" in r.stderr
    msg = _git(work, "log", "-1", "--format=%B")
    assert msg.startswith("rebuilder requeue: 1 groups (--status BAD)")
    assert f"  fixture: fixture/main/{a.arch}/timestamped 1.0" in msg
    assert _git(work, "show", "--format=", "--name-only", "HEAD").split() == ["state/fixture.json"]

    def ls(*args: str) -> list[str]:
        out = rebuild(work, "pkgs", "ls", *args)
        assert out.returncode == 0, out.stderr
        return [ln.split("] ", 1)[1].split()[0] for ln in out.stdout.splitlines()]

    assert ls("--status", "FAIL") == ["broken"]
    assert ls("--status", "BAD") == ["timestamped"]
    assert rebuild(work, "pkgs", "ls", "--status", "FAIL").stdout.startswith("[FAIL ]")
    assert sorted(ls("--name", "repro")) == ["repro", "repro-doc"]  # the source's binaries
    assert ls("--name", "repro-doc") == ["repro-doc"]  # or a binary
    assert ls("--suite", "main", "--architecture", "all") == ["repro-doc"]  # suite: component
    nothing = rebuild(work, "pkgs", "ls", "--name", "nosuch*")
    assert nothing.stdout == "" and "no package matches --name nosuch*" in nothing.stderr
    r = rebuild(work, "pkgs", "requeue", "--name", "repro-doc")
    assert "1 build groups requeued" in r.stderr  # the same --name as pkgs ls
    assert "no build group matches" in rebuild(work, "pkgs", "requeue", "--name", "x*").stderr
    d = rebuild(work, "pkgs", "diffoscope", "--name", "repro", "--architecture", a.arch)
    assert d.returncode == 2 and "repro 1.0: GOOD: no diffoscope" in d.stderr, d.stderr
    assert "Traceback" not in d.stderr


def test_every_option_has_help_text() -> None:
    from rebuilder.cli import build_parser

    def walk(parser):
        for action in parser._actions:  # argparse keeps no public list of them
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    yield from walk(sub)
            elif action.dest != "help":
                yield parser.prog, action

    missing = [
        f"{prog} {'/'.join(action.option_strings) or action.dest}"
        for prog, action in walk(build_parser())
        if not action.help
    ]
    assert missing == []


def _slow_backend(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A backend that, for "timestamped", says what it does and waits for ``go`` (bounded);
    on SIGTERM it takes a moment and notes that in ``stopped``."""
    go, stopped = tmp_path / "go", tmp_path / "stopped"
    script = tmp_path / "slow.sh"
    script.write_text(f"""#!/bin/sh
case "$1" in *timestamped*)
    echo "creating base chroot"
    trap 'sleep 1; echo stopped > {stopped}; exit 143' TERM
    i=0
    while [ ! -e {go} ] && [ $i -lt 1500 ]; do sleep 0.2; i=$((i+1)); done;;
esac
exec {BACKEND} "$@"
""")
    script.chmod(0o755)
    return script, go, stopped


def _wait_for(check, what: str, tries: int = 600) -> None:
    for _ in range(tries):  # bounded: 600 x 0.2 s
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"never happened: {what}")


def test_a_running_pass_is_reported_and_ctrl_c_answers_at_once(
    mirror: tuple[Archive, str], tmp_path: Path
) -> None:
    a, url = mirror
    script, _go, stopped = _slow_backend(tmp_path)
    work = operator_dir(tmp_path, a, url, backend=script)
    err = tmp_path / "pass.err"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    with err.open("w") as f:
        proc = subprocess.Popen([sys.executable, str(REPO / "rebuild.py"), "run", "--no-commit"],
                                cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=f)  # fmt: skip
    try:
        # under cron (no terminal): a line when each build starts and when it ends
        _wait_for(lambda: "build started: timestamped 1.0" in err.read_text(), "start line")
        ended = re.compile(r"^build \d/4: ", re.M)
        _wait_for(lambda: len(ended.findall(err.read_text())) == 3, "the other builds' ends")
        st = rebuild(work, "status")
        assert f"a pass is running (pid {proc.pid}, started " in st.stdout, st.stdout
        assert "1 builds running: timestamped 1.0" in st.stdout
        ls = rebuild(work, "pkgs", "ls")
        assert "interrupted" not in ls.stderr and ls.returncode == 0
        assert "[GOOD ] repro " in ls.stdout  # the running pass's results so far
        q = rebuild(work, "queue", "ls")
        assert "timestamped" not in q.stdout and "1 builds running" in q.stderr
        js = json.loads(rebuild(work, "status", "--json").stdout)
        assert [b["name"] for b in js[0]["running"]["builds"]] == ["timestamped"]

        proc.send_signal(signal.SIGINT)
        # the answer comes before the backend has even finished stopping
        _wait_for(lambda: "stopping 1 builds..." in err.read_text(), "stopping line")
        assert proc.wait(timeout=120) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
    text = err.read_text()
    assert stopped.exists()  # the backend was stopped, not left behind
    assert "pass interrupted: 3 built (2 GOOD, 0 BAD, 1 FAIL), 1 still queued" in text, text
    assert "1 abandoned when interrupted" in text and "Traceback" not in text
    assert "timestamped" in rebuild(work, "plan", "--no-sync").stdout  # queued again
    assert "a pass is running" not in rebuild(work, "status").stdout


def test_a_terminal_shows_running_builds_with_phase_and_time(
    mirror: tuple[Archive, str], tmp_path: Path
) -> None:
    a, url = mirror
    script, go, _stopped = _slow_backend(tmp_path)
    work = operator_dir(tmp_path, a, url, backend=script)
    master, slave = pty.openpty()
    env = dict(os.environ, PYTHONPATH=str(REPO), COLUMNS="200")
    proc = subprocess.Popen([sys.executable, str(REPO / "rebuild.py"), "run", "--no-commit"],
                            cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=slave)  # fmt: skip
    os.close(slave)
    seen = b""
    try:
        for _ in range(600):  # bounded
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
            if b"timestamped 1.0 " in seen and b"creating base chroot" in seen:
                break
        shown = seen.decode(errors="replace")
        assert f"  timestamped 1.0 {a.arch} · " in shown and "· creating base chroot" in shown
        assert "running ·" in shown  # the bar counts the running builds
        go.touch()
        assert proc.wait(timeout=300) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_build_one_with_suite_chroot_finds_the_dsc_and_its_files(
    mirror: tuple[Archive, str], tmp_path: Path
) -> None:
    a, url = mirror
    seen = tmp_path / "seen"
    check = tmp_path / "check.sh"  # the real test backend, after a look at what it was given
    check.write_text(f"""#!/bin/sh
{{ echo "input=$1"; echo "release=$REBUILDER_RELEASE"; echo "cache=$REBUILDER_CACHE_DIR"
   ls; }} > {seen}
exec {BACKEND} "$@"
""")
    check.chmod(0o755)
    deb = f"{url}/{a.package('repro').pool_dir}/repro_1.0_{a.arch}.deb"
    r = rebuild(tmp_path, "build", "debian", deb, "--method", "suite-chroot", "--release",
                a.suite, "--keyring", str(a.keyring),
                "--backend", f"debian-suite-chroot={check}")  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip().endswith("GOOD"), r.stderr
    given = seen.read_text().splitlines()
    assert given[0].startswith("input=/") and given[0].endswith("/repro_1.0.dsc")
    assert given[1] == f"release={a.suite}"
    assert given[2] == f"cache={tmp_path / '.cache' / 'build'}"
    assert "repro_1.0.tar.xz" in given[3:]  # the .dsc's files were downloaded beside it

    # the .dsc named directly; its files come from the .dsc itself
    dsc = f"{url}/{a.package('repro').pool_dir}/repro_1.0.dsc"
    backend = f"debian-suite-chroot={check}"
    r = rebuild(tmp_path, "build", "debian", deb, "--method", "suite-chroot", "--release",
                a.suite, "--input-url", dsc, "--backend", backend)  # fmt: skip
    assert r.returncode == 0 and r.stdout.strip().endswith("GOOD"), r.stderr
    assert "repro_1.0.tar.xz" in seen.read_text().splitlines()[3:]

    bad = rebuild(tmp_path, "build", "debian", deb, "--method", "suite-chrot")
    assert bad.returncode == 2 and "unknown method 'suite-chrot'" in bad.stderr
    gone = rebuild(tmp_path, "build", "debian", deb, "--method", "suite-chroot", "--release",
                   "nosuch", "--keyring", str(a.keyring))  # fmt: skip
    assert gone.returncode != 0 and gone.stderr.startswith("rebuild: error: ")
    assert "Traceback" not in gone.stderr and "dists/nosuch" in gone.stderr


def test_plan_syncs_first_or_says_the_state_is_older(
    mirror: tuple[Archive, str], tmp_path: Path
) -> None:
    a, url = mirror
    work = operator_dir(tmp_path, a, url)
    stale = rebuild(work, "plan", "--no-sync")
    assert stale.stdout == "" and "the state is older than the config" in stale.stderr
    fresh = rebuild(work, "plan")  # a fresh config: plan syncs first
    assert fresh.returncode == 0, fresh.stderr
    assert len(fresh.stdout.splitlines()) == 4 and "4 builds queued" in fresh.stderr
    again = rebuild(work, "plan", "--no-sync")
    assert "older than the config" not in again.stderr and len(again.stdout.splitlines()) == 4


def test_a_profile_that_fails_to_sync_is_named_once(tmp_path: Path) -> None:
    work = tmp_path / "rb"
    work.mkdir()
    (work / "rebuilderd-sync.conf").write_text(
        '[profile."down"]\ndistro = "debian"\nreleases = ["bookworm"]\ncomponents = ["main"]\n'
        'architectures = ["amd64"]\nsource = "http://127.0.0.1:9/debian"\n'
    )
    r = rebuild(work, "run", "--no-commit", timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    errors = [ln for ln in r.stderr.splitlines() if "error" in ln]
    assert len(errors) == 1 and "down:" in errors[0], r.stderr
    assert "1 profile(s) failed to sync" in r.stderr
