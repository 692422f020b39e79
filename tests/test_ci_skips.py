"""The CI rule of tests/conftest.py: under CI a skip fails, elsewhere it stays a skip."""

from __future__ import annotations

import pytest

SUITE = """
import pytest

def test_needs_a_tool():
    pytest.skip("frobnicate is not installed")

@pytest.mark.skipif(True, reason="module missing")
def test_marked():
    pass

@pytest.mark.xfail(reason="a known bug, not a skip")
def test_known_bug():
    assert False

def test_runs():
    pass
"""
MODULE_SKIP = """
import pytest

pytest.importorskip("no_such_module_anywhere")

def test_never_collected():
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    # the hooks under test, exactly as the suite's conftest defines them
    pytester.makeconftest(
        "from tests.conftest import pytest_make_collect_report, pytest_runtest_makereport\n"
    )
    pytester.makepyfile(test_suite=SUITE, test_module_skip=MODULE_SKIP)
    return pytester


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_under_ci_every_skip_fails(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("CI", value)
    result = suite.runpytest("-ra", "--continue-on-collection-errors")
    # a skip in the call fails the test; one at setup (skipif) or at collection is an error
    result.assert_outcomes(passed=1, failed=1, errors=2, xfailed=1)
    assert result.ret != 0
    result.stdout.fnmatch_lines(
        ["*skipped under CI*frobnicate is not installed*", "*skipped under CI*module missing*"]
    )
    result.stdout.fnmatch_lines(["*skipped under CI*no_such_module_anywhere*"])  # at collection


@pytest.mark.parametrize("value", [None, "", "false", "0"])
def test_elsewhere_a_skip_is_a_skip(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is None:
        monkeypatch.delenv("CI", raising=False)
    else:
        monkeypatch.setenv("CI", value)
    suite.runpytest().assert_outcomes(passed=1, skipped=3, xfailed=1)
