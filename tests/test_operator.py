"""The operator's path (issue 10): cron from another folder, a stock rebuilderd-sync.conf,
values checked at load. Real git, the real signed fixture archive on 127.0.0.1, the real
backend script of tests/backends."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

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
