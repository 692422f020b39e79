"""What every syncer shares (rebuilder/sync/__init__.py): the ``profile-settings`` fingerprint,
whose values state files keep, and the one rule for build methods, for every distribution of
the registry."""

from __future__ import annotations

import importlib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from rebuilder import config, distros
from rebuilder.config import Profile, Release, check_method
from rebuilder.errors import ConfigError
from rebuilder.sync import PROFILE_SETTINGS, SyncContext, unchanged

# The digests main computed for PROFILE (before the syncers shared settings_digest). State
# files store them: if one changes, every profile of that distribution re-syncs after an
# upgrade. Change a value only together with that distribution's SYNC_RULES_VERSION.
PINNED = {
    "debian": "bc732f23bee401c7f16b9ff00333cd025ceb5a9a5a31e84efd4e840f54f40103",
    "archlinux": "eb01f6d805f12f464f52af30f63656b9787788e0c4d025089bd9956787e3d0e9",
    "alpine": "837ec9093b0d8224b53e23d4342ac0ab4c86e987a801c8edd1ad2dd202a7aabb",
    "tails": "67b591eef19b47bd6c3c1ef9cbf2f8d47665d1b07e6c266625113c69c1c5fd1d",
}
PINNED_SUITE_CHROOT = "093952f1aeaf3a36836d66c5a2d07fd15bcd20ec580c30d986b6fb0b6f18dffa"


def profile(distro: str, **kw: Any) -> Profile:
    p = Profile(
        name="pinned",
        distro=distro,
        releases=(
            Release("r1", "https://mirror.example/a"),
            Release("r2", "https://mirror.example/b"),
        ),
        components=("main", "extra"),
        architectures=("x86_64", "aarch64"),
        pkgs=("hello*",),
        excludes=("*-dbg",),
        maintainers=("Jane <j@",),
    )
    return replace(p, **kw)


def options(p: Profile, backends: tuple[str, ...] = ()) -> Any:
    """The syncer's checked settings of ``p`` (every syncer has an ``Options.from_profile``)."""
    module: Any = importlib.import_module(distros.get(p.distro).syncer)
    return module.Options.from_profile(p, backends)


def test_every_distribution_is_pinned() -> None:
    assert set(PINNED) == set(distros.DISTROS)


@pytest.mark.parametrize("name", list(distros.DISTROS))
def test_settings_digest_is_what_state_files_hold(name: str) -> None:
    assert options(profile(name)).digest == PINNED[name]
    default = distros.get(name).default_method
    if default:  # naming the default method is the same profile
        assert options(profile(name, method=default)).digest == PINNED[name]
    # any setting the digest covers changes it
    assert options(profile(name, pkgs=("bye*",))).digest != PINNED[name]
    assert options(profile(name, releases=profile(name).releases[:1])).digest != PINNED[name]


def test_debians_method_was_always_in_its_digest() -> None:
    p = profile("debian", method="suite-chroot", buildinfo_url="https://bi.example/")
    assert options(p).digest == PINNED_SUITE_CHROOT


@pytest.mark.parametrize("name", list(distros.DISTROS))
def test_one_method_rule_for_config_and_syncer(name: str, tmp_path: Path) -> None:
    d = distros.get(name)
    # no method: the groups carry the default (none where there is one way to build)
    assert options(profile(name)).method == (d.default_method or "")
    # every method the registry lists is accepted by both
    for m in distros.methods(name):
        check_method(profile(name, method=m), ())
        assert options(profile(name, method=m)).method == m
    # another method: refused by both alike...
    odd = profile(name, method="by-hand")
    for check in (lambda: check_method(odd, ()), lambda: options(odd)):
        with pytest.raises(ConfigError, match=f"unknown method 'by-hand' for {name}"):
            check()
    # ...and accepted by both with the operator's own backend for it
    check_method(odd, (f"{name}-by-hand",))
    opts = options(odd, (f"{name}-by-hand",))
    assert opts.method == "by-hand"
    assert opts.digest != PINNED[name]  # choosing it is a change of the profile
    assert distros.backend_name(name, opts.method) == f"{name}-by-hand"
    # as the config file says it
    releases = 'releases = ["r1"]\n' if d.needs_releases else ""
    (tmp_path / "b.sh").write_text("#!/bin/sh\n")
    (tmp_path / "b.sh").chmod(0o755)
    toml = f'[profile."p"]\ndistro = "{name}"\nsource = "https://mirror.example/x"\n{releases}'
    (tmp_path / "rebuilder.toml").write_text(f'{toml}method = "by-hand"\n')
    with pytest.raises(ConfigError, match="unknown method 'by-hand'"):
        config.load(tmp_path / "rebuilder.toml")
    backend = f'[backend."{name}-by-hand"]\npath = "b.sh"\n'
    (tmp_path / "rebuilder.toml").write_text(f'{toml}method = "by-hand"\n{backend}')
    assert config.load(tmp_path / "rebuilder.toml").profiles["p"].method == "by-hand"


def test_unchanged_only_when_indexes_and_settings_are_the_same(tmp_path: Path) -> None:
    p = profile("tails")
    prints = {"https://mirror.example/a/": "1"}
    last = {**prints, PROFILE_SETTINGS: "s"}
    same = unchanged(p, SyncContext(tmp_path, last), dict(prints), "s", "index")
    assert same is not None and same.unchanged and same.groups == ()
    assert same.fingerprints == last and same.distro == "tails"
    assert unchanged(p, SyncContext(tmp_path, last), dict(prints), "t", "index") is None
    assert unchanged(p, SyncContext(tmp_path, last, force=True), dict(prints), "s", "x") is None
    fresh = {"https://mirror.example/a/": "2"}
    assert unchanged(p, SyncContext(tmp_path, last), fresh, "s", "index") is None
    assert fresh[PROFILE_SETTINGS] == "s"  # the snapshot of a full sync records the settings
