"""Were the packages installed here reproduced? A quorum over rebuilders, and (with
``check_files``) their signed attestations checked against the local package files."""

from __future__ import annotations

import dataclasses
import glob
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from rebuilder.attest import ArtifactMismatchError, AttestationError, verify_link
from rebuilder.client.installed import Installed
from rebuilder.client.records import PkgEntry
from rebuilder.errors import RebuilderError
from rebuilder.model import Status

log = logging.getLogger(__name__)

APT_CACHE = Path("/var/cache/apt/archives")
PACMAN_CACHE = Path("/var/cache/pacman/pkg")
DEFAULT_CACHE_DIRS = (APT_CACHE, PACMAN_CACHE)
_ARCH_INDEPENDENT = frozenset({"all", "any"})


@dataclass(frozen=True, slots=True)
class FileCheck:
    """Whether one rebuilder's attestation names the bytes of the local package file.

    ``outcome``: ``ok``; ``mismatch`` (validly signed, other bytes);
    ``invalid`` (bad signature or malformed); ``no-file`` (not in the
    package cache); ``no-attestation``; ``no-key``; ``fetch-error``.
    """

    outcome: str
    message: str = ""
    path: Path | None = None

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"

    def to_json(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome,
            "message": self.message,
            "path": None if self.path is None else str(self.path),
        }


@dataclass(frozen=True, slots=True)
class PackageVerdict:
    """What every rebuilder says about one installed package.

    ``statuses`` maps each rebuilder to its v0 status for this exact name,
    version and architecture (UNKWN when it does not list it). A GOOD
    counts towards ``require`` only if, when files were checked, the
    rebuilder's attestation matched the local file.
    """

    package: Installed
    statuses: dict[str, Status]
    entries: dict[str, PkgEntry]
    require: int
    checks: dict[str, FileCheck] | None = None

    @property
    def good(self) -> list[str]:
        return [
            r
            for r, s in self.statuses.items()
            if s is Status.GOOD and (self.checks is None or self._check(r).ok)
        ]

    @property
    def bad(self) -> list[str]:
        return [r for r, s in self.statuses.items() if s is Status.BAD]

    @property
    def refuted(self) -> list[str]:
        """Rebuilders whose GOOD attestation did not match the local file (or did not verify)."""
        if self.checks is None:
            return []
        return [r for r, c in self.checks.items() if c.outcome in ("mismatch", "invalid")]

    @property
    def reproduced(self) -> bool:
        return len(self.good) >= self.require

    @property
    def disagreement(self) -> bool:
        """One rebuilder says GOOD where another says BAD for the same version."""
        raw_good = any(s is Status.GOOD for s in self.statuses.values())
        return raw_good and bool(self.bad)

    @property
    def status(self) -> Status:
        if self.reproduced:
            return Status.GOOD
        if self.bad or self.refuted:
            return Status.BAD
        return Status.UNKWN

    def _check(self, rebuilder: str) -> FileCheck:
        return (self.checks or {}).get(rebuilder, FileCheck("no-file"))

    def to_json(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.package.name,
            "version": self.package.version,
            "architecture": self.package.architecture,
            "status": self.status.value,
            "reproduced": self.reproduced,
            "disagreement": self.disagreement,
            "good": len(self.good),
            "rebuilders": {r: s.value for r, s in self.statuses.items()},
        }
        if self.checks is not None:
            d["checks"] = {r: c.to_json() for r, c in self.checks.items()}
        return d


@dataclass(frozen=True, slots=True)
class VerifyReport:
    """Verdicts for every installed package, against a quorum of ``require`` rebuilders."""

    verdicts: tuple[PackageVerdict, ...]
    rebuilders: tuple[str, ...]
    require: int
    files_checked: bool = False

    @property
    def total(self) -> int:
        return len(self.verdicts)

    @property
    def reproduced(self) -> int:
        return sum(v.reproduced for v in self.verdicts)

    @property
    def not_reproduced(self) -> int:
        return self.total - self.reproduced

    @property
    def share(self) -> float:
        """Fraction of installed packages reproduced (0.0 when none are installed)."""
        return self.reproduced / self.total if self.total else 0.0

    @property
    def disagreements(self) -> list[PackageVerdict]:
        return [v for v in self.verdicts if v.disagreement]

    def to_json(self) -> dict[str, Any]:
        return {
            "require": self.require,
            "rebuilders": list(self.rebuilders),
            "files_checked": self.files_checked,
            "summary": {
                "packages": self.total,
                "reproduced": self.reproduced,
                "not_reproduced": self.not_reproduced,
                "reproduced_share": round(self.share, 4),
                "disagreements": len(self.disagreements),
            },
            "packages": [v.to_json() for v in self.verdicts],
        }


def verify_installed(
    installed: Iterable[Installed],
    rebuilders: Mapping[str, Sequence[PkgEntry]],
    require: int,
) -> VerifyReport:
    """Which rebuilders reproduced each installed package; reproduced iff ``>= require`` GOOD.

    A rebuilder's entry matches on exact name and version, and on
    architecture, where ``all``/``any`` on either side matches any.
    """
    if require < 1:
        raise RebuilderError(f"require must be at least 1, not {require}")
    if require > len(rebuilders):
        raise RebuilderError(
            f"require={require} but only {len(rebuilders)} rebuilder(s) given: nothing could pass"
        )
    indexes = {r: _index(entries) for r, entries in rebuilders.items()}
    verdicts = []
    for pkg in sorted(set(installed), key=lambda p: (p.name, p.architecture, p.version)):
        statuses: dict[str, Status] = {}
        matched: dict[str, PkgEntry] = {}
        for r, index in indexes.items():
            entry = _best(e for e in index.get((pkg.name, pkg.version), ()) if _arch_ok(pkg, e))
            statuses[r] = entry.status if entry else Status.UNKWN
            if entry:
                matched[r] = entry
        verdicts.append(PackageVerdict(pkg, statuses, matched, require))
    return VerifyReport(tuple(verdicts), tuple(rebuilders), require)


def _index(entries: Iterable[PkgEntry]) -> dict[tuple[str, str], list[PkgEntry]]:
    index: dict[tuple[str, str], list[PkgEntry]] = {}
    for e in entries:
        index.setdefault((e.name, e.version), []).append(e)
    return index


def _arch_ok(pkg: Installed, entry: PkgEntry) -> bool:
    return (
        pkg.architecture == entry.architecture
        or pkg.architecture in _ARCH_INDEPENDENT
        or entry.architecture in _ARCH_INDEPENDENT
    )


_RANK = {Status.GOOD: 0, Status.BAD: 1, Status.FAIL: 1, Status.UNKWN: 2}


def _best(entries: Iterable[PkgEntry]) -> PkgEntry | None:
    # A rebuilder listing a package twice (e.g. in two suites) vouches for it if either is GOOD.
    return min(entries, key=lambda e: _RANK[e.status], default=None)


def check_files(
    report: VerifyReport,
    cache_dirs: Sequence[Path],
    fetch_attestation: Callable[[str, PkgEntry], bytes],
    public_keys: Mapping[str, Sequence[Ed25519PublicKey]],
) -> VerifyReport:
    """Check every GOOD claim's attestation against the package file in the local cache.

    Returns a new report in which a GOOD counts only when the rebuilder's
    attestation verifies with its key and names the local file's digests.
    ``fetch_attestation(rebuilder, entry)`` returns the attestation bytes
    (see :func:`attestation_fetcher`).
    """
    verdicts = []
    for v in report.verdicts:
        path = _find_package_file(v.package, cache_dirs)
        checks = {
            r: _check_one(r, v.entries[r], path, fetch_attestation, public_keys.get(r, ()))
            for r, s in v.statuses.items()
            if s is Status.GOOD
        }
        verdicts.append(dataclasses.replace(v, checks=checks))
    return dataclasses.replace(report, verdicts=tuple(verdicts), files_checked=True)


def _check_one(
    rebuilder: str,
    entry: PkgEntry,
    path: Path | None,
    fetch_attestation: Callable[[str, PkgEntry], bytes],
    keys: Sequence[Ed25519PublicKey],
) -> FileCheck:
    if path is None:
        return FileCheck("no-file", "package file not in the local cache")
    if not entry.has_attestation or entry.build_id is None:
        return FileCheck("no-attestation", "publishes no attestation", path)
    if not keys:
        return FileCheck("no-key", "no public key to check its attestation", path)
    try:
        data = fetch_attestation(rebuilder, entry)
    except RebuilderError as e:
        return FileCheck("fetch-error", f"cannot fetch attestation: {e}", path)
    try:
        verify_link(data, keys, path)
    except ArtifactMismatchError as e:
        log.warning("%s: %s", rebuilder, e)
        return FileCheck("mismatch", f"attestation does not match the local file: {e}", path)
    except AttestationError as e:
        log.warning("%s: %s", rebuilder, e)
        return FileCheck("invalid", f"invalid attestation: {e}", path)
    return FileCheck("ok", "", path)


def _find_package_file(pkg: Installed, cache_dirs: Sequence[Path]) -> Path | None:
    if any(c in pkg.name + pkg.version + pkg.architecture for c in "/\0"):
        return None  # never let a hostile database entry name a path outside the cache
    deb = f"{pkg.name}_{pkg.version.replace(':', '%3a')}_{pkg.architecture}.deb"
    pacman = f"{glob.escape(pkg.name)}-{glob.escape(pkg.version)}-{glob.escape(pkg.architecture)}"
    for d in cache_dirs:
        if (d / deb).is_file():
            return d / deb
        hits = sorted(p for p in d.glob(pacman + ".pkg.tar*") if not p.name.endswith(".sig"))
        if hits:
            return hits[0]
    return None
