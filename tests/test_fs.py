"""The one atomic write (rebuilder/_fs.py) that the state, the results store, the site, the
HTTP cache and downloads share."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rebuilder import _fs

from .fixtures import ROOT


def test_whole_or_not_at_all_and_no_temporary_left(tmp_path: Path) -> None:
    target = tmp_path / "f"
    _fs.write_atomic(target, b"one")
    _fs.write_atomic(target, b"two", durable=True)
    assert target.read_bytes() == b"two"
    with pytest.raises(ZeroDivisionError), _fs.replacing(target) as out:
        out.file.write(b"half of thr")
        _ = 1 / 0  # the writer fails halfway
    assert target.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f"]


def test_errors_of_the_block_pass_through_and_its_own_name_the_target(tmp_path: Path) -> None:
    class Refused(OSError):  # e.g. requests' exceptions, which are OSErrors
        pass

    with pytest.raises(Refused), _fs.replacing(tmp_path / "f"):
        raise Refused("not a file system error")
    with pytest.raises(FileNotFoundError) as e:
        _fs.write_atomic(tmp_path / "no-such-folder" / "f", b"x")
    assert e.value.filename == str(tmp_path / "no-such-folder" / "f")
    assert os.listdir(tmp_path) == []


def test_a_discarded_write_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    before = target.stat()
    with _fs.replacing(target, durable=True) as out:
        out.file.write(b"old")
        out.discard()
    assert target.stat().st_ino == before.st_ino and target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


def test_a_ground_floor_module() -> None:
    """Every other module may use it: it imports nothing of ours (but the package)."""
    code = "import sys, rebuilder._fs; print(' '.join(sorted(sys.modules)))"
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    ours = {m for m in r.stdout.split() if m.startswith("rebuilder")}
    assert ours <= {"rebuilder", "rebuilder.errors", "rebuilder._fs"}, ours
