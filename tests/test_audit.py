"""The audit log's git repository: commits of the state, packed as they pile up."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from rebuilder import audit


def _objects(repo: Path) -> dict[str, str]:
    out = subprocess.run(
        ["git", "count-objects", "-v"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout
    return dict(line.partition(": ")[::2] for line in out.splitlines())


def _commit_versions(repo: Path, n: int, limit_mb: int) -> list[str]:
    state = repo / "state"
    state.mkdir(exist_ok=True)
    ids = []
    for i in range(n):
        # incompressible, as far as zlib goes: each version's loose object is ~1 MB
        (state / "p.json").write_bytes(os.urandom(1 << 20) + b"%d" % i)
        ids.append(audit.commit(state, [state / "p.json"], f"pass {i}", pack_loose_mb=limit_mb))
    return [i for i in ids if i]


def test_loose_objects_past_the_limit_are_packed_and_the_history_kept(tmp_path: Path) -> None:
    audit.git_init(tmp_path)
    ids = _commit_versions(tmp_path, 4, limit_mb=2)  # loose, they would take 4 MB

    objects = _objects(tmp_path)
    assert int(objects["packs"]) >= 1 and int(objects["size"]) <= 2 * 1024  # KiB
    log = subprocess.run(
        ["git", "log", "--format=%H %s"], cwd=tmp_path, capture_output=True, text=True
    ).stdout.split("\n")
    assert [line.split(" ", 1)[0] for line in log if line] == ids[::-1]
    first = subprocess.run(
        ["git", "show", f"{ids[0]}:state/p.json"], cwd=tmp_path, capture_output=True, check=True
    ).stdout
    assert first.endswith(b"0") and len(first) == (1 << 20) + 1


def test_loose_objects_under_the_limit_are_left_loose(tmp_path: Path) -> None:
    audit.git_init(tmp_path)
    _commit_versions(tmp_path, 3, limit_mb=64)

    objects = _objects(tmp_path)
    assert int(objects["size"]) > 3 * 1024 and objects["packs"] == "0"
