"""The scheduled workflow, run here: every ``run:`` step of .github/workflows/rebuild.yml in job
order (plan -> one process and directory per matrix shard -> merge -> publish) against the real
fixture archive and a real backend, artifacts passed as directories, pushes to a real bare git
repository standing in for GitHub.

GitHub itself cannot run here, so its parts are emulated, and only those: ``actions/checkout``
is a ``git clone`` (with the project's ``.venv`` linked in), ``upload-artifact`` and
``download-artifact`` copy directories with GitHub's path rules, ``upload-pages-artifact``
copies the site to the "published" directory, ``deploy-pages`` does nothing, and ``${{ }}``
expressions are replaced from a table (an unknown one fails the test). The "Set up" steps are
skipped: they install with apt and pip what scripts/setup already installed on this host.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from rebuilder.site import paths

from .fixtures import ROOT as REPO
from .fixtures.debian import Archive
from .fixtures.operator import SETTINGS, fixture_profile, operator_dir, rebuild

pytestmark = pytest.mark.slow  # runs the workflow's steps: rebuild, git

WORKFLOW = REPO / ".github" / "workflows" / "rebuild.yml"
SKIPPED = ("Set up", "Set up the container")  # apt/pip installs: done by scripts/setup here


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: nothing listens there


@dataclass
class Run:
    """One run of the workflow: a GitHub stand-in (origin, artifacts, published site)."""

    root: Path
    origin: Path
    secret: str = ""
    run_builds: bool = True  # False: every build job dies before it produces anything
    annotations: list[str] = field(default_factory=list)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    stderr: dict[str, str] = field(default_factory=dict)  # "job/step name" -> its stderr

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def published(self) -> Path:
        return self.root / "published"

    def env(self, ws: Path) -> dict[str, str]:
        return dict(
            os.environ,
            GITHUB_ACTIONS="true",
            GITHUB_OUTPUT=str(ws / ".gh-output"),
            GITHUB_STEP_SUMMARY=str(ws / ".gh-summary"),
            GIT_CONFIG_GLOBAL=str(self.root / "gitconfig"),  # the steps' --global settings
            SHARDS="3",
        )

    def expr(self, text: str, matrix: dict[str, str]) -> str:
        table = {
            "matrix.shard": matrix.get("shard", ""),
            "secrets.REBUILDER_SIGNING_KEY": self.secret,
            "github.token": "",  # restore_site.py then restores nothing, as on a first run
        }

        def one(m: re.Match[str]) -> str:
            key = m.group(1).strip()
            assert key in table, f"expression not emulated: {key}"
            return table[key]

        return re.sub(r"\$\{\{(.*?)\}\}", one, text)

    def job(self, name: str, spec: dict, matrix: dict[str, str] | None = None) -> bool:
        """Run one job in a fresh checkout; True when every step succeeded."""
        matrix = matrix or {}
        ws = self.root / (f"{name}-{matrix['shard']}" if matrix else name)
        failed = False
        for step in spec["steps"]:
            cond = str(step.get("if", ""))
            if failed and "always()" not in cond and "failure()" not in cond:
                continue
            if "failure()" in cond and not failed:
                continue
            if step.get("name") in SKIPPED:
                continue
            if "uses" in step:
                self.action(step["uses"], step.get("with", {}), ws, matrix)
                continue
            env = self.env(ws)
            env.update({k: self.expr(str(v), matrix) for k, v in step.get("env", {}).items()})
            r = subprocess.run(
                [
                    "bash",
                    "--noprofile",
                    "--norc",
                    "-eo",
                    "pipefail",
                    "-c",
                    self.expr(step["run"], matrix),
                ],
                cwd=ws,
                env=env,
                capture_output=True,
                text=True,
                timeout=900,
            )
            self.annotations += [ln for ln in r.stdout.splitlines() if ln.startswith("::")]
            self.stderr[f"{name}/{step.get('name')}"] = r.stderr
            if r.returncode != 0:
                failed = True
                self.failures.append(f"{name}/{step.get('name')}: {r.stderr[-2000:]}")
        out = ws / ".gh-output"
        if out.exists():
            self.outputs[name] = dict(
                ln.split("=", 1) for ln in out.read_text().splitlines() if "=" in ln
            )
        return not failed

    def action(self, uses: str, with_: dict, ws: Path, matrix: dict[str, str]) -> None:
        what = uses.split("@")[0]
        opts = {k: self.expr(str(v), matrix) for k, v in with_.items()}
        if what == "actions/checkout":
            subprocess.run(["git", "clone", "-q", str(self.origin), str(ws)], check=True)
            (ws / ".venv").symlink_to(REPO / ".venv")
        elif what == "actions/upload-artifact":
            paths = [p.strip().rstrip("/") for p in opts["path"].splitlines() if p.strip()]
            dest = self.artifacts / opts["name"]
            shutil.rmtree(dest, ignore_errors=True)
            # one directory: its contents are the artifact; several: their common parent
            if len(paths) == 1 and (ws / paths[0]).is_dir():
                shutil.copytree(ws / paths[0], dest)
            else:
                for p in paths:
                    for src in ws.glob(p):
                        shutil.copytree(src, dest / src.relative_to(ws))
        elif what == "actions/download-artifact":
            if "name" in opts:
                shutil.copytree(self.artifacts / opts["name"], ws, dirs_exist_ok=True)
            else:
                for a in sorted(self.artifacts.iterdir()):
                    if fnmatch.fnmatch(a.name, opts["pattern"]):
                        shutil.copytree(a, ws / a.name, dirs_exist_ok=True)
        elif what == "actions/upload-pages-artifact":
            shutil.rmtree(self.published, ignore_errors=True)
            shutil.copytree(ws / opts["path"].rstrip("/"), self.published)
        elif what != "actions/deploy-pages":
            raise AssertionError(f"action not emulated: {uses}")

    def all_jobs(self) -> None:
        jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]
        assert list(jobs) == ["plan", "build", "merge"]
        plan_ok = self.job("plan", jobs["plan"])
        shards = json.loads(self.outputs.get("plan", {}).get("shards", "[]"))
        assert len(shards) <= 256
        if plan_ok and shards != [] and self.run_builds:  # the build job's `if:`
            for i in shards:  # one process and one directory per matrix job
                self.job("build", jobs["build"], {"shard": str(i)})
        if plan_ok:  # merge: always() && needs.plan.result == 'success'
            self.job("merge", jobs["merge"])


def _fork(tmp_path: Path, a: Archive, url: str) -> Path:
    """A fork as GitHub holds it: a bare repository with the instance's files."""
    seed = tmp_path / "seed"
    seed.mkdir()
    shutil.copytree(REPO / ".ci", seed / ".ci")
    shutil.copytree(REPO / "state", seed / "state")
    shutil.copy(REPO / ".gitignore", seed / ".gitignore")
    down_url = f"http://127.0.0.1:{_closed_port()}/debian"
    down = fixture_profile(a, down_url, backend=None, name="mirror-down")  # one [backend]
    (seed / "rebuilder.toml").write_text(SETTINGS + fixture_profile(a, url) + down)
    git = ["git", "-C", str(seed), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", "-b", "main", str(seed)], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "fork"], check=True)
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(origin)], check=True)
    return origin


def _git(origin: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(origin), *args], check=True, capture_output=True, text=True
    ).stdout


def _push_from_elsewhere(tmp_path: Path, origin: Path) -> None:
    """A commit that reaches the branch while the pass runs (the push must rebase onto it)."""
    other = tmp_path / "other"
    subprocess.run(["git", "clone", "-q", str(origin), str(other)], check=True)
    (other / "NOTES.md").write_text("pushed during the pass\n")
    git = ["git", "-C", str(other), "-c", "user.name=o", "-c", "user.email=o@example.org"]
    subprocess.run([*git, "add", "NOTES.md"], check=True)
    subprocess.run([*git, "commit", "-qm", "meanwhile"], check=True)
    subprocess.run([*git, "push", "-q", "origin", "HEAD:main"], check=True)


def _keygen(tmp_path: Path) -> str:
    key = tmp_path / "instance.key"
    r = subprocess.run(
        [str(REPO / ".venv/bin/rebuild"), "keygen", "--key", str(key)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert r.returncode == 0, r.stderr
    return key.read_text()


def test_the_workflow_runs_here_and_its_attestations_verify(
    mirror: tuple[Archive, str], tmp_path: Path
) -> None:
    a, url = mirror
    origin = _fork(tmp_path, a, url)
    run = Run(tmp_path / "run1", origin, secret=_keygen(tmp_path))
    run.root.mkdir()
    jobs = yaml.safe_load(WORKFLOW.read_text())["jobs"]

    assert run.job("plan", jobs["plan"]), run.failures
    # one profile's mirror is down: reported as a job annotation; the other is planned
    assert any(
        x.startswith("::error title=a profile failed to sync") and "mirror-down" in x
        for x in run.annotations
    ), run.annotations
    shards = json.loads(run.outputs["plan"]["shards"])
    assert shards == [0, 1, 2]  # from the plan's output: 3 shards of the 4 fixture jobs
    for i in shards:
        assert run.job("build", jobs["build"], {"shard": str(i)}), run.failures
        assert (run.artifacts / f"results-{i}" / f"results-{i}.jsonl").exists()
    _push_from_elsewhere(tmp_path, origin)
    assert run.job("merge", jobs["merge"]), run.failures

    # the state reached the branch, on top of the commit pushed meanwhile
    log = _git(origin, "log", "--format=%s", "main")
    head, meanwhile = log.splitlines()[:2]
    assert (
        head.startswith("rebuilder pass: 4 built (2 GOOD, 1 BAD, 1 FAIL)")
        and meanwhile == "meanwhile"
    )
    state = json.loads(_git(origin, "show", "main:state/fixture.json"))
    assert {r["status"] for r in state["groups"].values()} == {"GOOD", "BAD", "FAIL"}

    # every attestation published verifies against the key the site publishes
    site = run.published
    keys = json.loads((site / "debian" / "api" / "v0" / "public-keys").read_text())["current"]
    assert len(keys) == 1
    (tmp_path / "pub.pem").write_text(keys[0])
    links = sorted(site.glob("builds/*/attestation"))
    assert len(links) == 2  # one per GOOD group
    for link in links:
        r = subprocess.run(
            [
                str(REPO / ".venv/bin/rebuild"),
                "attestation",
                "verify",
                str(link),
                "--key",
                str(tmp_path / "pub.pem"),
            ],
            capture_output=True,
            text=True,
        )
        assert r.returncode == 0 and r.stdout.startswith("OK:"), r.stderr
    assert json.loads((site / "index.json").read_text())["attestations"] == "signed"
    assert not (run.root / "merge" / "rebuilder.key").exists()  # removed after the merge


def test_all_shards_failed_still_commits_and_renders_unsigned(
    mirror: tuple[Archive, str], tmp_path: Path
) -> None:
    a, url = mirror
    origin = _fork(tmp_path, a, url)
    before = _git(origin, "rev-parse", "main").strip()
    run = Run(tmp_path / "run", origin, secret="", run_builds=False)
    run.root.mkdir()
    run.all_jobs()
    assert run.failures == [], run.failures
    # the sync of the plan job is committed; every group is still queued
    assert _git(origin, "rev-parse", "main~1").strip() == before
    state = json.loads(_git(origin, "show", "main:state/fixture.json"))
    assert len(state["groups"]) == 4
    assert {r["status"] for r in state["groups"].values()} == {"UNKWN"}
    merged = run.stderr["merge/Merge, render, commit"]
    assert "results-*: no such results directory" in merged, merged
    # rendered and published, marked unsigned, with no key made up along the way
    assert (run.published / "index.html").exists()
    assert json.loads((run.published / "index.json").read_text())["attestations"] == "unsigned"
    assert 'id="unsigned"' in (run.published / "index.html").read_text()
    for key in state["groups"]:  # every group's page, though none changed in this merge
        assert (run.published / (paths.group_page("fixture", key) + ".html")).is_file(), key
    assert any(x.startswith("::warning title=unsigned::") for x in run.annotations)
    assert not list((run.root / "merge").glob("*.key"))


def test_push_fails_loudly_on_a_real_conflict(tmp_path: Path) -> None:
    seed = tmp_path / "seed"
    subprocess.run(["git", "init", "-q", "-b", "main", str(seed)], check=True)
    g = ["-c", "user.name=t", "-c", "user.email=t@example.org"]
    (seed / "state").mkdir()
    (seed / "state" / "p.json").write_text("a\n")
    subprocess.run(["git", "-C", str(seed), *g, "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(seed), *g, "commit", "-qm", "one"], check=True)
    origin = tmp_path / "origin.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(origin)], check=True)
    clones = []
    for name, text in (("mine", "b\n"), ("theirs", "c\n")):
        c = tmp_path / name
        subprocess.run(["git", "clone", "-q", str(origin), str(c)], check=True)
        (c / "state" / "p.json").write_text(text)
        subprocess.run(["git", "-C", str(c), *g, "commit", "-qam", name], check=True)
        clones.append(c)
    subprocess.run(["git", "-C", str(clones[1]), "push", "-q"], check=True)
    r = subprocess.run(
        [str(REPO / ".ci" / "push")],
        cwd=clones[0],
        capture_output=True,
        text=True,
        env=dict(os.environ, PUSH_TRIES="2"),
        timeout=120,
    )
    assert r.returncode == 1
    assert r.stdout.startswith("::error title=state not pushed::"), r.stdout
    assert _git(origin, "log", "-1", "--format=%s", "main").strip() == "theirs"
    status = subprocess.run(
        ["git", "-C", str(clones[0]), "status"], capture_output=True, text=True
    ).stdout
    assert "rebase" not in status  # the rebase was undone: the work tree is the merge's


@pytest.mark.parametrize("n", ["257", "0"])
def test_more_shards_than_a_matrix_runs_are_refused(tmp_path: Path, n: str) -> None:
    (tmp_path / "rebuilder.toml").write_text(
        '[profile."p"]\ndistro = "debian"\nreleases = ["x"]\nsource = "https://mirror.example/d"\n'
    )
    r = subprocess.run(
        [str(REPO / ".venv/bin/rebuild"), "plan", "--shards", n, "--out", "plan"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert r.returncode != 0
    assert r.stderr.strip() == (
        f"rebuild: error: --shards {n}: expected 1 to 256 (a GitHub Actions matrix runs at most "
        "256 jobs; give each shard more work instead)"
    )
    assert not (tmp_path / "plan").exists()


def test_an_empty_queue_plans_no_shards(mirror: tuple[Archive, str], tmp_path: Path) -> None:
    a, url = mirror
    work = operator_dir(tmp_path, a, url)
    assert rebuild(work, "plan", "--shards", "8", "--out", "plan").returncode == 0
    index = json.loads((work / "plan" / "shards.json").read_text())
    assert (index["shards"], index["jobs"]) == ([0, 1, 2, 3], 4)  # no more shards than jobs
    assert rebuild(work, "run").returncode == 0  # everything built: retries are not due yet
    r = rebuild(work, "plan", "--shards", "8", "--out", "plan")
    assert r.returncode == 0, r.stderr
    index = json.loads((work / "plan" / "shards.json").read_text())
    assert (index["shards"], index["jobs"], index["errors"]) == ([], 0, [])  # the matrix skips
    assert not list((work / "plan").glob("shard-*.json"))  # the earlier split's files are gone
