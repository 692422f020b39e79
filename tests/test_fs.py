"""The one atomic write (rebuilder/_fs.py) that the state, the results store, the site, the
HTTP cache and downloads share."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rebuilder import _fs


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
