"""Sync: read a distribution's repository indexes and turn them into a :class:`Snapshot`.

One module per distribution, each exposing ``sync(profile, ctx) -> Snapshot``
and registered in :data:`SYNCERS` by one line. What every distribution shares
lives here: the :class:`SyncContext` the pipeline hands in, and the package
filter of rebuilderd-sync.conf (``pkgs``/``excludes`` globs, ``maintainers``
prefixes) in :func:`selected` and its fast form :func:`compile_filter`.

>>> from rebuilder.config import Profile, Release
>>> p = Profile("p", "debian", (Release("sid", "https://mirror.example/debian"),),
...             pkgs=("hello*", "rust-*"), excludes=("*-dbg",),
...             maintainers=("Jane Doe <jane@",))
>>> selected("hello", ["Jane Doe <jane@example.org>"], p)
True
>>> selected("hello-dbg", ["Jane Doe <jane@example.org>"], p)
False
>>> selected("hello", ["John Roe <john@example.org>"], p)
False
>>> selected("bash", ["Jane Doe <jane@example.org>"], p)
False
"""

from __future__ import annotations

import fnmatch
import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from rebuilder.config import Profile
from rebuilder.errors import ConfigError
from rebuilder.model import BuildGroup, Snapshot

log = logging.getLogger(__name__)

Filter = Callable[[str, Iterable[str]], bool]


@dataclass(frozen=True)
class SyncContext:
    """What a sync may use besides its profile.

    ``cache_dir`` is this profile's own cache (downloaded indexes live
    there); ``previous`` holds the fingerprints of the last sync
    (:attr:`Snapshot.fingerprints`), so that an unchanged repository costs
    one small download; ``force`` ignores them.
    """

    cache_dir: Path
    previous: Mapping[str, str] = field(default_factory=dict)
    force: bool = False


def selected(name: str, maintainers: Iterable[str], profile: Profile) -> bool:
    """Does the profile's filter keep package ``name`` maintained by ``maintainers``?

    ``pkgs`` globs (none: every package) and ``excludes`` globs (excludes win)
    match the name; ``maintainers`` entries are prefixes of a
    ``Name <email>`` string, as in rebuilderd (none: any maintainer).
    """
    return compile_filter(profile)(name, maintainers)


def compile_filter(profile: Profile) -> Filter:
    """:func:`selected` for one profile, compiled once for hot loops over whole indexes."""
    return _compile(profile.pkgs, profile.excludes, profile.maintainers)


def has_filter(profile: Profile) -> bool:
    """True when the profile narrows the packages at all (a sync may skip filtering if not)."""
    return bool(profile.pkgs or profile.excludes or profile.maintainers)


@functools.lru_cache(maxsize=64)
def _compile(pkgs: tuple[str, ...], excludes: tuple[str, ...], prefixes: tuple[str, ...]) -> Filter:
    include = _globs(pkgs)
    exclude = _globs(excludes)

    def keep(name: str, maintainers: Iterable[str]) -> bool:
        if include is not None and not include(name):
            return False
        if exclude is not None and exclude(name):
            return False
        if prefixes:
            return any(m.startswith(prefixes) for m in maintainers)
        return True

    return keep


def _globs(patterns: tuple[str, ...]) -> Callable[[str], object] | None:
    # One regex for all globs: one C-level match per name instead of one fnmatch per pattern.
    if not patterns:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)).match


class Warnings:
    """Problems with single index entries: the first few of each kind are logged, the rest
    counted in one summary line, so a hostile index cannot flood the log."""

    MAX = 5

    def __init__(self, where: str) -> None:
        self.where = where
        self.counts: dict[str, int] = {}

    def __call__(self, kind: str, message: str) -> None:
        n = self.counts[kind] = self.counts.get(kind, 0) + 1
        if n <= self.MAX:
            log.warning("%s", message)

    def summary(self) -> None:
        extra = {k: n - self.MAX for k, n in self.counts.items() if n > self.MAX}
        if extra:
            more = ", ".join(f"{n} {k}" for k, n in sorted(extra.items()))
            log.warning("%s: %s more entries skipped (not shown)", self.where, more)


def snapshot(
    profile: Profile, distro: str, groups: list[BuildGroup], fingerprints: Mapping[str, str]
) -> Snapshot:
    """A syncer's result: its groups in a stable order, logged in one line."""
    groups.sort(key=lambda g: (g.release, g.component, g.architecture, g.name))
    artifacts = sum(len(g.artifacts) for g in groups)
    log.info("%s: %d build groups, %d artifacts", profile.name, len(groups), artifacts)
    return Snapshot(profile.name, distro, tuple(groups), dict(fingerprints))


def sync_profile(profile: Profile, ctx: SyncContext) -> Snapshot:
    """Sync one profile with its distribution's syncer."""
    try:
        syncer = SYNCERS[profile.distro]
    except KeyError:
        known = ", ".join(sorted(SYNCERS))
        raise ConfigError(
            f"{profile.label} distro: no sync for {profile.distro!r} yet (supported: {known})"
        ) from None
    return syncer(profile, ctx)


# Imported last: the distribution modules import SyncContext and selected from here.
from rebuilder.sync import alpine, archlinux, debian, tails  # noqa: E402

SYNCERS: dict[str, Callable[[Profile, SyncContext], Snapshot]] = {
    "alpine": alpine.sync,
    "archlinux": archlinux.sync,
    "debian": debian.sync,
    "tails": tails.sync,
}
