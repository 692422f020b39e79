"""Sync: read a distribution's repository indexes and turn them into a :class:`Snapshot`.

One module per distribution, each exposing ``sync(profile, ctx) -> Snapshot``
and named by its entry in :mod:`rebuilder.distros`. What every distribution shares
lives here: the :class:`SyncContext` the pipeline hands in, the package
filter of rebuilderd-sync.conf (``pkgs``/``excludes`` globs, ``maintainers``
prefixes) in :func:`selected` and its fast form :func:`compile_filter`, the
fingerprint of a profile's settings and the "nothing changed" answer
(:func:`settings_digest`, :func:`unchanged`), and a profile's build method
(:func:`build_method`, by the one rule of :func:`rebuilder.config.check_method`).

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
import hashlib
import importlib
import logging
import re
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rebuilder import _gc, distros
from rebuilder.config import Profile, check_method
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
    one small download; ``force`` ignores them. ``backends`` names the operator's
    ``[backend."..."]`` tables: a build method with its own backend is valid
    (:func:`build_method`).
    """

    cache_dir: Path
    previous: Mapping[str, str] = field(default_factory=dict)
    force: bool = False
    backends: Collection[str] = ()


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


PROFILE_SETTINGS = "profile-settings"


@dataclass(frozen=True)
class ProfileOptions:
    """What every syncer's checked profile holds (its ``Options`` adds its own settings):
    the package filter (None: every package), the build method its groups carry
    (:func:`build_method`) and the settings digest (:func:`settings_digest`)."""

    keep: Filter | None
    method: str
    digest: str


def package_filter(profile: Profile) -> Filter | None:
    """:func:`compile_filter`, or None when the profile keeps every package (a loop over a
    whole index then skips the call)."""
    return compile_filter(profile) if has_filter(profile) else None


def settings_digest(rules_version: str, *settings: object) -> str:
    """The fingerprint of what a profile asks of its sync (stored as ``profile-settings``).

    State files keep it: a change of its form (or of a distribution's order of settings)
    would make every profile look changed after an upgrade, so the form is frozen (the
    sha256 of the ``repr`` of ``[rules_version, *settings]``) and
    ``tests/test_sync_settings.py`` pins one value per distribution. A syncer bumps its
    ``rules_version`` instead when its grouping rules change.
    """
    return hashlib.sha256(repr([rules_version, *settings]).encode()).hexdigest()


def custom_method(profile: Profile) -> tuple[str, ...]:
    """The profile's method when it is not the distribution's default, for a syncer whose
    settings digest predates methods: empty for the default, so that digest is unchanged."""
    default = distros.get(profile.distro).default_method
    return (profile.method,) if profile.method and profile.method != default else ()


def unchanged(
    profile: Profile, ctx: SyncContext, fingerprints: dict[str, str], digest: str, what: str
) -> Snapshot | None:
    """The empty ``unchanged`` snapshot when the indexes (``fingerprints``) and the settings
    (``digest``, added to ``fingerprints``) are as at the last sync, else None (sync fully).
    ``what`` names the indexes in the log line ("release", "repository database", ...)."""
    fingerprints[PROFILE_SETTINGS] = digest
    if ctx.force or dict(ctx.previous) != fingerprints:
        return None
    log.info("%s: every %s unchanged since the last sync", profile.name, what)
    return Snapshot(profile.name, profile.distro, (), dict(fingerprints), unchanged=True)


def build_method(profile: Profile, backends: Collection[str] = ()) -> str:
    """The build method the profile's groups carry: its own, if valid by the one rule of
    :func:`rebuilder.config.check_method` (ConfigError if not), else the distribution's
    default ("" for a distribution with one way to build)."""
    check_method(profile, backends)
    return profile.method or distros.get(profile.distro).default_method or ""


_TEMPLATE_VAR = re.compile(r"\$(\{?)([A-Za-z_]*)(\}?)")


def check_variables(template: str, allowed: tuple[str, ...], what: str) -> None:
    """ConfigError (starting with ``what``) unless every variable of the mirror URL
    ``template`` is one of ``allowed``, written ``$name`` or ``${name}`` as in pacman's
    mirrorlist.

    >>> check_variables("https://m.example/${repo}/$arch", ("repo", "arch"), "source")
    >>> check_variables("https://m.example/$carch", ("repo", "arch"), "source")
    Traceback (most recent call last):
    ...
    rebuilder.errors.ConfigError: source: unknown variable '$carch' in 'https://m.example/$carch' (only $repo and $arch)
    """  # noqa: E501 (a doctest's output is one line)
    for m in _TEMPLATE_VAR.finditer(template):
        if m.group(2) not in allowed or m.group(1) + m.group(3) not in ("", "{}"):
            only = " and ".join((", ".join(f"${v}" for v in allowed[:-1]), f"${allowed[-1]}"))
            raise ConfigError(
                f"{what}: unknown variable {m.group(0)!r} in {template!r} (only {only})"
            )


def fill_template(template: str, values: Mapping[str, str]) -> str:
    """A checked mirror URL template with its variables filled in, without a trailing '/'."""
    return _TEMPLATE_VAR.sub(lambda m: values[m.group(2)], template).rstrip("/")


Syncer = Callable[[Profile, SyncContext], Snapshot]


def syncer(distro: str) -> Syncer:
    """The ``sync`` function of ``distro``'s module (imported on first use: the modules
    import this one). KeyError for a distribution the registry does not know."""
    module: Any = importlib.import_module(distros.get(distro).syncer)
    fn: Syncer = module.sync
    return fn


def sync_profile(profile: Profile, ctx: SyncContext) -> Snapshot:
    """Sync one profile with its distribution's syncer (the collector paused: a sync
    makes a Snapshot of ~10^5 objects and hardly a reference cycle)."""
    try:
        fn = syncer(profile.distro)
    except KeyError as e:
        raise ConfigError(f'[profile."{profile.name}"] distro: {e.args[0]}') from None
    with _gc.paused():
        return fn(profile, ctx)
