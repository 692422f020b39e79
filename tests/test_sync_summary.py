"""A pass over unchanged indexes reads the profile's small summary, never its state file.

The proof is behavioural: after a first pass, the state file's bytes are replaced by garbage
of the same size with the same mtime (same inode). A pass that parsed it would stop with
"corrupt state file"; a pass that trusts the summary does not notice. Any real write of the
state file (another mtime or size) makes the summary stale, and then the state is parsed.
"""

from __future__ import annotations

import os
from pathlib import Path

from .fixtures.debian import Archive
from .fixtures.operator import operator_dir, rebuild


def _garble_in_place(path: Path) -> None:
    st = path.stat()
    with path.open("r+b") as f:
        f.write(b"#" * st.st_size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def test_unchanged_profile_is_not_parsed(mirror: tuple[Archive, str], tmp_path: Path) -> None:
    a, url = mirror
    work = operator_dir(tmp_path, a, url)
    first = rebuild(work, "run", "--max-builds", "0", "--no-render", "--no-commit")
    assert first.returncode == 0, first.stderr
    assert (work / "state" / ".summary" / "fixture.json").is_file()
    state_file = work / "state" / "fixture.json"
    _garble_in_place(state_file)

    quiet = rebuild(work, "run", "--max-builds", "0", "--no-render", "--no-commit")
    assert quiet.returncode == 0, quiet.stderr
    assert "state not loaded" in quiet.stderr

    # a forced sync, or a state file written since, reads the state: here, the garbage
    forced = rebuild(work, "run", "--max-builds", "0", "--no-render", "--no-commit", "--force-sync")
    assert forced.returncode != 0 and "corrupt state file" in forced.stderr
    os.utime(state_file)
    stale = rebuild(work, "run", "--max-builds", "0", "--no-render", "--no-commit")
    assert stale.returncode != 0 and "corrupt state file" in stale.stderr


def test_a_profile_with_builds_to_do_is_loaded(mirror: tuple[Archive, str], tmp_path: Path) -> None:
    a, url = mirror
    work = operator_dir(tmp_path, a, url)
    assert rebuild(work, "run", "--max-builds", "0", "--no-render", "--no-commit").returncode == 0
    _garble_in_place(work / "state" / "fixture.json")
    # four groups wait to be built: the pass must read the state to build them
    r = rebuild(work, "run", "--max-builds", "1", "--no-render", "--no-commit")
    assert r.returncode != 0 and "corrupt state file" in r.stderr
