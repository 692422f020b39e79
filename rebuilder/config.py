"""Configuration: rebuilderd-sync.conf profiles plus this tool's own settings.

One TOML file holds both. Profiles keep rebuilderd's format so an operator's
existing ``rebuilderd-sync.conf`` works unchanged::

    [profile."debian-main"]
    distro = "debian"
    releases = ["bookworm"]            # or [{name = "bookworm", source = "https://..."}]
    components = ["main"]
    architectures = ["amd64", "all"]
    source = "https://mirror.example/debian"
    maintainers = ["Jane Doe <jane@"]  # prefix match on Maintainer / Uploaders
    pkgs = ["hello*"]                  # globs; empty means every package
    excludes = ["*-dbg"]               # globs; excludes win
    keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"
    check_valid_until = true

This tool's own settings live under ``[rebuilder]`` and backends under
``[backend."<distro>"]`` as rebuilderd-worker has them. Unknown keys are
errors, and every error names the file, the key and what is wrong.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rebuilder import distros
from rebuilder.errors import ConfigError

DEFAULT_CONFIG = "rebuilder.toml"
# rebuilderd's own profile file; found next to (or instead of) DEFAULT_CONFIG
SYNC_CONFIG = "rebuilderd-sync.conf"
# a profile's `source` may say this to take the mirror from this host's own apt sources
HOST_APT = "host-apt"
APT_SOURCES = (Path("/etc/apt/sources.list.d"), Path("/etc/apt/sources.list"))


@dataclass(frozen=True, slots=True)
class Release:
    """A release (Debian suite, Arch repo set, Alpine branch, Tails channel) and its mirror."""

    name: str
    source: str


@dataclass(frozen=True, slots=True)
class Profile:
    """One ``[profile."NAME"]`` table: what to sync and where from."""

    name: str
    distro: str
    releases: tuple[Release, ...]
    components: tuple[str, ...] = ()
    architectures: tuple[str, ...] = ()
    source: str = ""
    maintainers: tuple[str, ...] = ()
    pkgs: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    keyring: str | None = None
    check_valid_until: bool = True
    buildinfo_url: str | None = None  # base URL of the buildinfo service (Debian)
    method: str | None = None  # build method (Debian: "debrebuild" or "suite-chroot")
    origin: str = ""  # the file that defines it, for error messages

    @property
    def label(self) -> str:
        """``FILE: [profile."NAME"]``: how every error about this profile begins."""
        where = f"{self.origin}: " if self.origin else ""
        return f'{where}[profile."{self.name}"]'


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry of a BAD or FAIL: after ``backoff * 2**(n-1)`` seconds, at most ``max`` times."""

    backoff: int
    max: int


@dataclass(frozen=True, slots=True)
class Settings:
    """The ``[rebuilder]`` table. Paths are resolved against the config file's folder."""

    state_dir: Path = Path("state")
    site_dir: Path = Path("site")
    cache_dir: Path = Path(".cache")
    jobs: int = 0  # 0 = number of cores
    build_timeout: int = 4 * 3600  # seconds
    log_limit: int = 20 * 1024 * 1024  # bytes of build log kept; the rest is cut with a marker
    diffoscope: bool = True
    diffoscope_timeout: int = 30 * 60
    diffoscope_limit: int = 10 * 1024 * 1024
    signing_key: Path = Path("rebuilder.key")  # created on first use, mode 0600
    retry_bad: RetryPolicy = RetryPolicy(backoff=7 * 86400, max=2)
    retry_fail: RetryPolicy = RetryPolicy(backoff=6 * 3600, max=5)
    site_url: str = ""  # public URL of the site, for feeds and absolute links
    executor: str = ""  # where builds run: "" or "local" (this host), dask://HOST:PORT, tls://...
    # a hostile or broken mirror's cost is bounded (docs/hostile.md): each download ends within
    # download_timeout seconds plus its expected size at download_min_rate bytes a second,
    # each profile's sync within sync_timeout seconds (0: no limit)
    download_timeout: int = 600
    download_min_rate: int = 64 * 1024
    sync_timeout: int = 3600

    @property
    def effective_jobs(self) -> int:
        return self.jobs or os.cpu_count() or 1


@dataclass(frozen=True, slots=True)
class Config:
    path: Path | None
    settings: Settings
    profiles: dict[str, Profile]
    backends: dict[str, Path] = field(default_factory=dict)
    # the folder every relative path of the configuration is resolved against
    base: Path = field(default_factory=Path.cwd)

    def select(self, names: Sequence[str]) -> list[Profile]:
        """The named profiles (all, in file order, when none is named)."""
        if not names:
            return list(self.profiles.values())
        unknown = [n for n in names if n not in self.profiles]
        if unknown:
            known = ", ".join(self.profiles) or "none"
            raise ConfigError(f"unknown profile {unknown[0]!r} (known: {known})")
        return [self.profiles[n] for n in names]


_PROFILE_KEYS = {
    "distro",
    "suite",
    "releases",
    "components",
    "architecture",
    "architectures",
    "source",
    "maintainers",
    "maintainer",
    "pkgs",
    "excludes",
    "keyring",
    "check_valid_until",
    "buildinfo_url",
    "method",
}


def load(path: Path | str | None = None, *, sync_config: Path | str | None = None) -> Config:
    """Read the tool's TOML (and, optionally, a separate rebuilderd-sync.conf for profiles).

    Without ``path``, ``./rebuilder.toml``; a ``rebuilderd-sync.conf`` beside the config
    (or in the current folder, when there is no config) is read too. Every relative path,
    defaults included, is relative to the folder of the file that holds the settings.
    """
    cfg_path = Path(path) if path else Path(DEFAULT_CONFIG)
    data: dict[str, Any] = {}
    if sync_config is None and (path is None or cfg_path.exists()):
        beside = cfg_path.parent / SYNC_CONFIG
        sync_config = beside if beside.is_file() else None
    if cfg_path.exists() or path is not None:
        data = _read_toml(cfg_path)
    elif sync_config is None:
        raise ConfigError(
            f"{cfg_path}: no such file (run `rebuild init`, give --config FILE, or "
            f"--sync-config for a {SYNC_CONFIG})"
        )
    base = cfg_path.resolve().parent
    if not cfg_path.exists() and sync_config is not None:
        base = Path(sync_config).resolve().parent
    where = str(cfg_path)
    unknown = set(data) - {"rebuilder", "profile", "backend"}
    if unknown:
        raise ConfigError(f"{where}: unknown table or key {sorted(unknown)[0]!r}")
    settings = resolve_paths(_settings(data.get("rebuilder", {}), where, base), base)
    profiles = _profiles(data.get("profile", {}), where, base)
    if sync_config is not None:
        sc_path = Path(sync_config)
        sc = _read_toml(sc_path)
        extra = set(sc) - {"profile"}
        if extra:
            raise ConfigError(f"{sc_path}: unknown table or key {sorted(extra)[0]!r}")
        more = _profiles(sc.get("profile", {}), str(sc_path), sc_path.resolve().parent)
        twice = sorted(more.keys() & profiles.keys())
        if twice:
            raise ConfigError(f'{sc_path}: [profile."{twice[0]}"] is defined in {where} too')
        profiles.update(more)
    backends = _backends(data.get("backend", {}), where, base)
    for p in profiles.values():
        check_method(p, backends)
    _check_backend_names(backends, profiles, where)
    _check_key_outside_site(settings, where)
    return Config(cfg_path if cfg_path.exists() else None, settings, profiles, backends, base)


_PATH_SETTINGS = ("state_dir", "site_dir", "cache_dir", "signing_key")


def resolve_paths(settings: Settings, base: Path) -> Settings:
    """``settings`` with every relative path (defaults too) made absolute against ``base``.

    The one rule for paths: they follow the config file, never the current directory,
    so ``cd ~ && rebuild run --config /srv/rb/rebuilder.toml`` uses ``/srv/rb/state``.
    """
    changes = {
        k: base / getattr(settings, k)
        for k in _PATH_SETTINGS
        if not getattr(settings, k).is_absolute()
    }
    return replace(settings, **changes) if changes else settings


def check_method(p: Profile, backends: Collection[str]) -> None:
    """A profile's ``method`` must be one its distribution knows, or have its own backend
    (:func:`rebuilder.distros.has_method`); ``backends``: the ``[backend."..."]`` names."""
    if p.method is None or distros.has_method(p.distro, p.method, backends):
        return
    known = distros.methods(p.distro) if p.distro in distros.DISTROS else ()
    choices = f"one of {', '.join(known)}" if known else "not set (no methods)"
    raise ConfigError(
        f"{p.label} method: unknown method {p.method!r} for {p.distro}: expected {choices}, "
        f'or a [backend."{p.distro}-{p.method}"] for it'
    )


def _check_backend_names(
    backends: Mapping[str, Path], profiles: Mapping[str, Profile], where: str
) -> None:
    """A ``[backend."x"]`` must name a distribution or a ``<distro>-<method>`` a profile uses:
    a typo would otherwise leave the shipped backend in use, silently."""
    known = set(distros.DISTROS) | {f"{p.distro}-{p.method}" for p in profiles.values() if p.method}
    for name in backends:
        if name not in known:
            raise ConfigError(
                f'{where}: [backend."{name}"]: unknown backend (known: {", ".join(sorted(known))})'
            )


def _check_key_outside_site(s: Settings, where: str) -> None:
    """The site is published: a private signing key inside it would be published too."""
    key, site = s.signing_key.resolve(), s.site_dir.resolve()
    if key == site or site in key.parents:
        raise ConfigError(
            f"{where}: [rebuilder] signing_key: {s.signing_key} is inside the site directory "
            f"{s.site_dir}, which is published; keep the private key elsewhere"
        )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {e.start}); TOML files are UTF-8"
        ) from None


def _settings(table: Any, where: str, base: Path) -> Settings:
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where}: [rebuilder] must be a table")
    known = {f.name for f in fields(Settings)}
    kwargs: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{where}: [rebuilder] unknown key {key!r}")
        kwargs[key] = _setting_value(key, value, where, base)
    return Settings(**kwargs)


def _setting_value(key: str, value: Any, where: str, base: Path) -> Any:
    default = getattr(Settings(), key)
    label = f"{where}: [rebuilder] {key}"
    if key in ("state_dir", "site_dir", "cache_dir", "signing_key"):
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{label}: expected a path string")
        return base / os.path.expanduser(value)
    if key in ("retry_bad", "retry_fail"):
        if not isinstance(value, Mapping) or set(value) - {"backoff", "max"}:
            raise ConfigError(f"{label}: expected {{backoff = SECONDS, max = N}}")
        b, m = value.get("backoff", default.backoff), value.get("max", default.max)
        if not _is_int(b) or not _is_int(m) or b < 0 or m < 0:
            raise ConfigError(f"{label}: backoff and max must be non-negative integers")
        return RetryPolicy(b, m)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"{label}: expected true or false")
        return value
    if isinstance(default, int):
        if not _is_int(value) or value < 0:
            raise ConfigError(f"{label}: expected a non-negative integer")
        return value
    if not isinstance(value, str):
        raise ConfigError(f"{label}: expected a string")
    return value


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _profiles(table: Any, where: str, base: Path) -> dict[str, Profile]:
    if not isinstance(table, Mapping):
        raise ConfigError(f'{where}: profiles must be tables: [profile."NAME"]')
    return {name: _profile(name, p, where, base) for name, p in table.items()}


def _profile(name: str, p: Any, where: str, base: Path) -> Profile:
    label = f'{where}: [profile."{name}"]'
    if not isinstance(p, Mapping):
        raise ConfigError(f"{label}: must be a table")
    if not name or "/" in name or name.startswith(".") or len(name) > 100:
        raise ConfigError(f"{label}: a profile name must be a plain word (no '/', not hidden)")
    for key in p:
        if key not in _PROFILE_KEYS:
            raise ConfigError(f"{label}: unknown key {key!r}")
    distro = p.get("distro")
    if not isinstance(distro, str) or distro not in distros.DISTROS:
        raise ConfigError(f"{label} distro: expected one of {', '.join(sorted(distros.DISTROS))}")
    source = p.get("source", "")
    if not isinstance(source, str):
        raise ConfigError(f"{label} source: expected a URL or path string")
    releases = _releases(p.get("releases", []), source, label)
    # rebuilderd's older single-valued spellings, kept so old files load unchanged
    components = _strings(p, "components", label) or _strings(p, "suite", label)
    arches = _strings(p, "architectures", label) or _strings(p, "architecture", label)
    keyring = p.get("keyring")
    if keyring is not None and not isinstance(keyring, str):
        raise ConfigError(f"{label} keyring: expected a path string")
    cvu = p.get("check_valid_until", True)
    if not isinstance(cvu, bool):
        raise ConfigError(f"{label} check_valid_until: expected true or false")
    for key in ("buildinfo_url", "method"):
        if key in p and not isinstance(p[key], str):
            raise ConfigError(f"{label} {key}: expected a string")
    if not releases and distros.get(distro).needs_releases:
        raise ConfigError(f"{label} releases: at least one release is needed")
    return Profile(
        name=name,
        distro=distro,
        releases=releases,
        components=components,
        architectures=arches,
        source=source,
        maintainers=_strings(p, "maintainers", label) or _strings(p, "maintainer", label),
        pkgs=_globs(p, "pkgs", label),
        excludes=_globs(p, "excludes", label),
        keyring=str(base / os.path.expanduser(keyring)) if keyring else None,
        check_valid_until=cvu,
        buildinfo_url=p.get("buildinfo_url"),
        method=p.get("method"),
        origin=where,
    )


def _strings(p: Mapping[str, Any], key: str, label: str) -> tuple[str, ...]:
    v = p.get(key)
    if v is None:
        return ()
    if isinstance(v, str):
        return (v,)
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ConfigError(f"{label} {key}: expected a string or a list of strings")
    return tuple(v)


def _globs(p: Mapping[str, Any], key: str, label: str) -> tuple[str, ...]:
    """Glob patterns, checked: fnmatch reads a "[" that opens no class as a literal, so a typo
    like ``[abc`` would silently match nothing (and mark every group gone)."""
    patterns = _strings(p, key, label)
    for pat in patterns:
        why = glob_error(pat)
        if why:
            raise ConfigError(f"{label} {key}: invalid glob {pat!r}: {why}")
    return patterns


def glob_error(pattern: str) -> str | None:
    """Why ``pattern`` is not a well-formed glob, or None.

    >>> glob_error("hello*"), glob_error("lib[a-z]*"), glob_error("[!x]y")
    (None, None, None)
    >>> glob_error("[abc")
    "'[' at 0 opens a character class that is never closed"
    >>> glob_error("")
    'empty pattern'
    """
    if not pattern:
        return "empty pattern"
    i = 0
    while i < len(pattern):
        if pattern[i] == "[":
            j = i + 1
            if j < len(pattern) and pattern[j] == "!":
                j += 1
            if j < len(pattern) and pattern[j] == "]":
                j += 1  # a "]" first in the class is a literal
            close = pattern.find("]", j)
            if close < 0:
                return f"'[' at {i} opens a character class that is never closed"
            i = close
        i += 1
    return None


def _releases(value: Any, source: str, label: str) -> tuple[Release, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise ConfigError(f"{label} releases: expected a list of names or {{name, source}} tables")
    out = []
    for r in value:
        if isinstance(r, str):
            out.append(Release(r, source))
        elif (
            isinstance(r, Mapping)
            and isinstance(r.get("name"), str)
            and not set(r)
            - {
                "name",
                "source",
            }
        ):
            src = r.get("source", source)
            if not isinstance(src, str):
                raise ConfigError(f"{label} releases: source must be a string")
            out.append(Release(r["name"], src))
        else:
            raise ConfigError(f"{label} releases: expected a name or {{name, source}}, got {r!r}")
    for i, r in enumerate(out):
        if not r.source:
            raise ConfigError(
                f"{label} releases: no source (mirror URL) serves release {r.name!r}: set the "
                "profile's source or the release's {name, source}"
            )
        if r.source == HOST_APT:
            out[i] = Release(r.name, host_apt_mirror(r.name, label, key="releases"))
    return tuple(out)


def host_apt_mirror(
    suite: str | None,
    label: str = "host-apt",
    roots: tuple[Path, ...] = APT_SOURCES,
    key: str = "source",
) -> str:
    """The first http(s) mirror this host's apt sources use for ``suite``
    (``None``: for any suite but a security one, i.e. the main archive).

    Reads deb822 ``*.sources`` files and one-line ``sources.list`` entries.
    """
    for uri, suites in _apt_entries(roots):
        if not uri.startswith(("http://", "https://")):
            continue
        if suite in suites or (suite is None and not all(s.endswith("-security") for s in suites)):
            return uri.rstrip("/")
    what = repr(suite) if suite else "Debian's main archive"
    raise ConfigError(f"{label} {key}: no apt source of this host serves {what}")


def _apt_entries(roots: tuple[Path, ...]) -> Iterator[tuple[str, list[str]]]:
    files: list[Path] = []
    for root in roots:
        files += (
            sorted(root.glob("*.sources")) + sorted(root.glob("*.list"))
            if root.is_dir()
            else [root]
        )
    for f in files:
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        if f.suffix == ".sources":
            from debian.deb822 import Deb822  # python-debian: comments, continuation lines

            for fields in Deb822.iter_paragraphs(text.splitlines(), use_apt_pkg=False):
                if (
                    "deb" in fields.get("Types", "").split()
                    and fields.get("Enabled", "yes").strip() != "no"
                ):
                    for uri in fields.get("URIs", "").split():
                        yield uri, fields.get("Suites", "").split()
        else:
            for line in text.splitlines():
                words = [w for w in line.split("#", 1)[0].split() if not w.startswith("[")]
                if len(words) >= 3 and words[0] == "deb":
                    yield words[1], [words[2]]


def _backends(table: Any, where: str, base: Path) -> dict[str, Path]:
    if not isinstance(table, Mapping):
        raise ConfigError(f'{where}: backends must be tables: [backend."DISTRO"]')
    out = {}
    for distro, b in table.items():
        if not isinstance(b, Mapping) or set(b) - {"path"} or not isinstance(b.get("path"), str):
            raise ConfigError(f'{where}: [backend."{distro}"] expects exactly: path = "..."')
        out[distro] = base / os.path.expanduser(b["path"])
    return out
