"""Shard mode: plan -> 3 shards -> build each -> merge equals one unsharded pass."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from .fixtures.debian import Archive
from .fixtures.operator import operator_dir, rebuild

pytestmark = pytest.mark.slow  # runs rebuild


def normalised(work: Path) -> dict[str, tuple]:
    """What must agree between a sharded and an unsharded pass (not times or build ids)."""
    data = json.loads((work / "state" / "fixture.json").read_text())
    out = {}
    for key, rec in data["groups"].items():
        atts = rec["attempts"]
        out[key] = (
            rec["status"],
            rec["group"],
            len(atts),
            [(a["status"], a.get("reason", "")) for a in atts],
            [[x["expected_sha256"] for x in a["artifacts"]] for a in atts],
        )
    return out


def test_three_shards_merge_to_the_same_state_as_one_pass(
    mirror: tuple[Archive, str], tmp_path: Path
):
    a, url = mirror
    (tmp_path / "single").mkdir()
    (tmp_path / "sharded").mkdir()
    single = operator_dir(tmp_path / "single", a, url)
    assert rebuild(single, "run").returncode == 0

    work = operator_dir(tmp_path / "sharded", a, url)
    r = rebuild(work, "plan", "--shards", "3", "--out", "plan")
    assert r.returncode == 0, r.stderr
    shard_files = sorted((work / "plan").glob("shard-*.json"))
    assert len(shard_files) == 3
    jobs = [j for f in shard_files for j in json.loads(f.read_text())["jobs"]]
    assert len(jobs) == 4 and len({j["build_id"] for j in jobs}) == 4

    before = (work / "state" / "fixture.json").read_bytes()
    for i in range(3):
        b = rebuild(work, "build", "--plan", f"plan/shard-{i}.json", "--results", f"res{i}")
        assert b.returncode == 0, b.stderr
    assert (work / "state" / "fixture.json").read_bytes() == before  # workers never write state

    # merge out of order, with one results dir twice: idempotent and order-independent
    m = rebuild(work, "merge", "res2", "res0", "res1", "res0")
    assert m.returncode == 0, m.stderr
    assert "merge done: 4 built (2 GOOD, 1 BAD, 1 FAIL)" in m.stderr
    assert normalised(work) == normalised(single)
    log = json.loads((work / "site" / "debian" / "api" / "v0" / "pkgs" / "list").read_text())
    assert {p["name"]: p["status"] for p in log}["timestamped"] == "BAD"

    again = rebuild(work, "merge", "res1")  # a duplicate result changes nothing
    assert again.returncode == 0 and "merge done: 0 built" in again.stderr
    assert normalised(work) == normalised(single)


def test_a_missing_shard_leaves_its_jobs_queued(mirror: tuple[Archive, str], tmp_path: Path):
    a, url = mirror
    work = operator_dir(tmp_path, a, url)
    assert rebuild(work, "plan", "--shards", "2", "--out", "plan").returncode == 0
    shard0 = json.loads((work / "plan/shard-0.json").read_text())["jobs"]
    names0 = {j["group"]["name"] for j in shard0}
    assert rebuild(work, "build", "--plan", "plan/shard-0.json", "--results", "r0").returncode == 0
    # a torn last line, as a killed worker leaves it, is skipped: that build stays queued
    with (work / "r0" / "results-0.jsonl").open("a") as f:
        f.write('{"job": {"profile": "fixt')
    assert rebuild(work, "merge", "r0").returncode == 0
    data = json.loads((work / "state" / "fixture.json").read_text())
    for key, rec in data["groups"].items():
        built = rec["group"]["name"] in names0
        assert (rec["status"] != "UNKWN") == built, key
    queued = rebuild(work, "plan").stdout
    assert all(n not in queued for n in names0)
    assert queued.count("\tnew") == 4 - len(shard0)  # the other shard's jobs
    shutil.rmtree(work / "r0")
