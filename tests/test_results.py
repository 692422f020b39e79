"""The results store's one rule for paths and its one writer (rebuilder/results.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rebuilder import results
from rebuilder.site import paths

HOSTILE = ["", "/etc/passwd", "../x", "7/../8/log", "7//log", "7/./log", "a\0b", "7\\..\\x"]


@pytest.mark.parametrize("rel", [*HOSTILE, "x" * (results.MAX_REL + 1)])
def test_every_reader_refuses_what_the_rule_refuses(rel: str) -> None:
    assert results.safe_rel(rel) is None
    assert paths.store_rel(rel) is None  # the site serves nothing the rule refuses


def test_a_build_s_files_stay_in_its_folder() -> None:
    assert results.safe_rel("7/meta/env.txt", build_id=7) is not None
    assert results.safe_rel("8/log.gz", build_id=7) is None
    assert paths.store_rel("7/log.gz") == f"{results.STORE}/7/log.gz"


def test_write_atomic_replaces_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "7" / "log.gz"
    results.write_atomic(target, results.gzip_bytes(b"first"))
    results.write_atomic(target, results.gzip_bytes(b"second"))
    assert target.read_bytes() == results.gzip_bytes(b"second")  # no timestamp: same bytes
    with pytest.raises(TypeError):
        results.write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == results.gzip_bytes(b"second")
    assert sorted(p.name for p in target.parent.iterdir()) == ["log.gz"]  # no temporary left
