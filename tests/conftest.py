"""Shared fixtures: the real, signed Debian fixture archive and an operator's working dir."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .bad_rebuilds import Pair, build_pairs
from .debian_archive import Archive, build_archive, copy_archive, serve, stop_agent
from .test_sync_alpine import AlpineRepo, build_repo, copy_repo


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
def bad_pairs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Pair]:
    """Real BAD rebuilds of a tiny package and diffoscope's JSON on each, built once."""
    return build_pairs(tmp_path_factory.mktemp("bad-rebuilds"))
