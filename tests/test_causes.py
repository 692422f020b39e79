"""The cause classifier on diffoscope's JSON reports of real BAD rebuilds (fixtures/bad_rebuilds.py:
a tiny Debian package built twice from another build path, with a timestamp, under another
umask), and its rules one by one on the shapes diffoscope prints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from rebuilder import causes
from rebuilder.causes import Leaf, cause_of, classify

from .fixtures.bad_rebuilds import Pair

needs = pytest.mark.skipif(
    shutil.which("diffoscope") is None or shutil.which("dpkg-buildpackage") is None,
    reason="diffoscope and dpkg-buildpackage are needed (scripts/setup installs them)",
)


@pytest.fixture
def pairs(bad_pairs: dict[str, Pair]) -> dict[str, Pair]:
    return bad_pairs  # built once per session, in conftest


def _verdict(pair: Pair) -> causes.Verdict:
    return classify(pair.report.read_bytes())


@needs
def test_another_build_path_is_captures_build_path(pairs: dict[str, Pair]) -> None:
    v = _verdict(pairs["build_path"])
    # the build ID, section offsets and sizes differ too: they follow from the path
    assert v.causes == ("captures_build_path",)
    assert v.files == (("probe_1.0_amd64.deb › data.tar › ./usr/bin/probe", "captures_build_path"),)


@needs
def test_a_build_date_is_timestamps(pairs: dict[str, Pair]) -> None:
    v = _verdict(pairs["timestamp"])
    assert v.causes == ("timestamps_in_gzip_headers", "timestamps_in_documentation")
    man = "probe_1.0_amd64.deb › data.tar › ./usr/share/man/man1/probe.1.gz"
    assert v.files == (
        (man, "timestamps_in_gzip_headers"),
        (man + " › probe.1", "timestamps_in_documentation"),
    )


@needs
def test_another_umask_is_different_due_to_umask(pairs: dict[str, Pair]) -> None:
    v = _verdict(pairs["umask"])
    assert v.causes == ("different_due_to_umask",)
    assert v.files == (("probe_1.0_amd64.deb › data.tar", "different_due_to_umask"),)


@needs
def test_only_the_build_id_left_is_build_id_differences_only(pairs: dict[str, Pair]) -> None:
    """The build-path report with every leaf but the build ID note and the layout removed."""
    report = json.loads(pairs["build_path"].report.read_bytes())

    def prune(node: dict) -> dict | None:
        src = node.get("source1", "")
        keep = "--notes" in src or "--sections" in src or src == "file list"
        kids = [k for d in node.get("details", []) if (k := prune(d)) is not None]
        if not kids and not (keep and node.get("unified_diff")):
            return None
        return {**node, "details": kids}

    pruned = prune(report)
    assert pruned is not None
    assert classify(json.dumps(pruned).encode()).causes == ("build_id_differences_only",)


def test_broken_or_missing_reports_are_unknown() -> None:
    assert classify(None).causes == ("unknown",)
    assert classify(b'{"source1": "a", "details": [').causes == ("unknown",)  # cut by a cap
    assert classify(b"[]").causes == ("unknown",)


def _leaf(source: str, removed: list[str], added: list[str], *, file: str = "x.deb") -> Leaf:
    return Leaf((file, source), tuple(removed), tuple(added))


def test_each_rule_on_the_lines_diffoscope_prints() -> None:
    ls = "-rw-r--r--   0 root         (0) root         (0)       33 2024-01-01 00:00:00.000000 ./a"
    cases = {
        "random_order_in_tarball": _leaf(
            "file list", [ls, ls.replace("./a", "./b")], [ls.replace("./a", "./b"), ls]
        ),
        "timestamps_in_tarball": _leaf("file list", [ls], [ls.replace("2024-01-01", "2025-03-04")]),
        "users_and_groups_in_tarball": _leaf("file list", [ls], [ls.replace("root  ", "jane  ")]),
        "random_order_in_md5sums": _leaf("./md5sums", ["1 a", "2 b"], ["2 b", "1 a"]),
        "toolchain_drift": _leaf(
            "./control", ["Depends: libc6 (>= 2.36)"], ["Depends: libc6 (>= 2.38)"]
        ),
        "captures_locale": _leaf(
            "foo.txt", ["built with LANG=en_US.UTF-8"], ["built with LANG=C.UTF-8"]
        ),
        "captures_build_time": _leaf("built-at", ["1764459585.123"], ["1764459599.456"]),
        "unknown": _leaf("hello.txt", ["hello world"], ["hello there"]),
    }
    assert {name: cause_of(leaf) for name, leaf in cases.items()} == {n: n for n in cases}
    # a size alone follows from another change: a consequence, never a cause of its own
    assert cause_of(_leaf("file list", [ls], [ls.replace(" 33 ", " 34 ")])) == "~layout"


def test_the_table_is_ordered_and_every_cause_has_a_label() -> None:
    names = [name for name, _ in causes.RULES if not name.startswith("~")]
    assert len(names) == len(set(names))
    assert set(names) | {causes.BUILD_ID_ONLY, causes.MD5SUMS_ONLY, causes.UNKNOWN} == set(
        causes.ORDER
    )
    assert causes.label("captures_build_path") == "embedded build path"


def test_a_huge_report_is_bounded(tmp_path: Path) -> None:
    leaf = {"source1": "f", "unified_diff": "@@\n-a\n+b\n"}
    report = {"source1": "x.deb", "details": [leaf] * (causes.MAX_LEAVES * 3)}
    assert len(list(causes.leaves(report))) == causes.MAX_LEAVES
