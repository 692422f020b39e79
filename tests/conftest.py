"""Shared fixtures (the real, signed Debian, Alpine and Tails fixture repositories, each built
once per session and copied for each test that serves it), and the CI rule for skips.

The builders are in tests/fixtures/; test modules import from there, never from each other.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Generator, Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from .fixtures import archlinux as ar
from .fixtures import debian_mirror
from .fixtures.alpine import AlpineRepo, build_repo, copy_repo
from .fixtures.bad_rebuilds import Pair, build_pairs
from .fixtures.debian import Archive, build_archive, copy_archive
from .fixtures.gpg import stop_agent
from .fixtures.http import serve
from .fixtures.tails import TailsMirror, build_mirror, copy_mirror

# -- under CI, a skip is a failure -------------------------------------------------------
#
# Tests skip themselves when a tool, a module or Debian's archive is missing, which is right
# on a developer's machine and wrong in CI: there `scripts/setup` installs everything, so a
# skip means a broken setup, and a suite that skips what it cannot run would pass green.
# No test is exempt (none needs to be: every skip in the suite is for something setup
# provides or the network CI has).


def _under_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")


def _fail_the_skip(report: pytest.CollectReport | pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail") and _under_ci():
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI (CI={os.environ['CI']}), which is a failure: {reason}"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    _fail_the_skip(report)
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    report = yield  # a module-level skip (pytestmark skipif, importorskip) lands here
    _fail_the_skip(report)
    return report


# -- slow tests ------------------------------------------------------------------------------
#
# `pytest -m "not slow"` is the quick run for development. A test is slow when it builds
# packages or repositories, runs `rebuild` or a browser: a module whose own fixtures do so
# says `pytestmark = pytest.mark.slow`; a test that asks for one of the fixture
# repositories below is marked here, so none can be forgotten.

BUILDS_PACKAGES = {
    "archive",
    "mirror",
    "alpine_repo",
    "alpine_served",
    "arch_repo",
    "arch_served",
    "tails_mirror",
    "tails_served",
    "bad_pairs",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if BUILDS_PACKAGES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


# -- the fixture repositories ----------------------------------------------------------------


@pytest.fixture(scope="session")
def archive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Archive]:
    gnupg = Path(tempfile.mkdtemp(prefix="rb-gpg-"))  # short: gpg-agent's socket lives there
    a = build_archive(tmp_path_factory.mktemp("archive"), gnupg)
    yield a
    stop_agent(gnupg)


@pytest.fixture
def mirror(archive: Archive, tmp_path: Path) -> Iterator[tuple[Archive, str]]:
    a = copy_archive(archive, tmp_path / "mirror")  # each test may corrupt its own copy
    url, stop = serve(a.root)
    yield a, url
    stop()


@pytest.fixture(scope="session")
def alpine_repo(tmp_path_factory: pytest.TempPathFactory) -> AlpineRepo:
    """The Alpine fixture repository (aports, packages, signed APKINDEX), built once."""
    return build_repo(tmp_path_factory.mktemp("alpine"))


@pytest.fixture
def alpine_served(alpine_repo: AlpineRepo, tmp_path: Path) -> Iterator[tuple[AlpineRepo, str]]:
    """A copy of the Alpine repository, served: tests may change it."""
    repo = copy_repo(alpine_repo, tmp_path)
    url, stop = serve(repo.mirror)
    yield repo, url
    stop()


@pytest.fixture(scope="session")
def arch_repo() -> ar.ArchRepo:
    """The Arch Linux fixture repository (makepkg builds, signed databases), built once."""
    return ar.shared_repo()


@pytest.fixture
def arch_served(arch_repo: ar.ArchRepo, tmp_path: Path) -> Iterator[tuple[ar.ArchRepo, str]]:
    """A copy of the Arch Linux repository, served: tests may change it."""
    repo = ar.copy_repo(arch_repo, tmp_path / "mirror")
    url, stop = serve(repo.root)
    yield repo, url
    stop()


@pytest.fixture(scope="session")
def tails_mirror(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TailsMirror]:
    """The Tails fixture (signed git repository, images, mirror tree), built once."""
    home = Path(tempfile.mkdtemp(prefix="rb-tails-gpg-"))  # short: gpg-agent's socket
    yield build_mirror(tmp_path_factory.mktemp("tails"), home)
    stop_agent(home)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def tails_served(tails_mirror: TailsMirror, tmp_path: Path) -> Iterator[tuple[TailsMirror, str]]:
    """A copy of the Tails mirror and git repository, served: tests may add releases."""
    fx = copy_mirror(tails_mirror, tmp_path)
    fx = replace(fx, git=tmp_path / "tails.git")
    shutil.copytree(tails_mirror.git, fx.git)
    url, stop = serve(fx.mirror)
    yield fx, url
    stop()


@pytest.fixture(scope="session")
def bad_pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pair]:
    """Real BAD rebuilds of a tiny package and diffoscope's JSON on each, built once."""
    return build_pairs(tmp_path_factory.mktemp("bad-rebuilds"))


@pytest.fixture(scope="session")
def debian_archive() -> debian_mirror.DebianMirror:
    """Debian's real archive, as this host's apt sources reach it (network tests skip without)."""
    found = debian_mirror.connect()
    if isinstance(found, str):
        pytest.skip(found)
    return found
