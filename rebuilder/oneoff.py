"""The build group of a one-off ``rebuild build debian <.deb URL> --method suite-chroot``.

The suite-chroot method rebuilds from the source package (``.dsc`` and every file it
lists) in a chroot of the suite. Given only a ``.deb`` URL, the group is found the way a
sync finds it: the mirror's signed Release of the suite, its Sources and Packages, the
group whose binaries include that file. Given ``--input-url`` of a ``.dsc``, its files
are taken from the ``.dsc`` itself.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from rebuilder import fetch, sync
from rebuilder.config import Profile, Release
from rebuilder.errors import ConfigError, RepositoryIndexError
from rebuilder.model import Artifact, BuildGroup

SUITE_CHROOT = "suite-chroot"
DEFAULT_RELEASE = "stable"


@dataclasses.dataclass(frozen=True, slots=True)
class Where:
    """Where a pool URL says a package lives: ``<mirror>/pool/<component>/...``."""

    mirror: str
    component: str

    @classmethod
    def of(cls, url: str) -> Where | None:
        mirror, sep, rest = url.partition("/pool/")
        if not sep or "/" not in rest:
            return None
        return cls(mirror, rest.split("/", 1)[0])


def suite_chroot_group(
    artifact: Artifact,
    release: str | None,
    input_url: str | None,
    *,
    cache_dir: Path,
    keyring: str | None = None,
    check_valid_until: bool = True,
    work: Path,
) -> BuildGroup:
    """The group to rebuild ``artifact`` with the suite-chroot method (see the module doc)."""
    where = Where.of(artifact.url)
    if where is None:
        raise ConfigError(
            f"{artifact.url}: not a Debian pool URL (<mirror>/pool/<component>/...); the "
            "suite-chroot method needs the mirror"
        )
    rel = release or DEFAULT_RELEASE
    if input_url:
        if not input_url.endswith(".dsc"):
            raise ConfigError(f"--input-url {input_url}: the suite-chroot method builds a .dsc")
        sources = dsc_files(input_url, work / "input.dsc")
        return _group(artifact, rel, where.component, input_url, None, sources)
    profile = Profile(
        name="build", distro="debian", releases=(Release(rel, where.mirror),),
        components=(where.component,), architectures=(artifact.architecture,),
        pkgs=(artifact.name,), keyring=keyring, check_valid_until=check_valid_until,
        method=SUITE_CHROOT, origin="rebuild build",
    )  # fmt: skip
    snap = sync.sync_profile(profile, sync.SyncContext(cache_dir, {}, force=True))
    for g in snap.groups:
        if any(a.filename == artifact.filename for a in g.artifacts):
            return _group(artifact, rel, where.component, g.input_url, g.input_sha256, g.sources, g)
    raise RepositoryIndexError(
        f"{where.mirror}/dists/{rel}: {artifact.filename} is not in {where.component}'s "
        f"Packages (another version, or another release: give --release, or --input-url "
        "of its .dsc)"
    )


def _group(
    artifact: Artifact,
    release: str,
    component: str,
    input_url: str,
    input_sha256: str | None,
    sources: tuple[Artifact, ...],
    found: BuildGroup | None = None,
) -> BuildGroup:
    return BuildGroup(
        name=found.name if found else artifact.name,
        version=found.version if found else artifact.version,
        distro="debian", release=release, component=component,
        architecture=artifact.architecture, input_url=input_url, artifacts=(artifact,),
        input_sha256=input_sha256, sources=sources,
        maintainers=found.maintainers if found else (), method=SUITE_CHROOT,
    )  # fmt: skip


def dsc_files(dsc_url: str, dest: Path) -> tuple[Artifact, ...]:
    """The files a ``.dsc`` lists (``Checksums-Sha256``), as artifacts beside it."""
    from debian.deb822 import Dsc

    fetch.download(dsc_url, dest)
    with dest.open("rb") as f:
        dsc = Dsc(f)
    base = dsc_url.rsplit("/", 1)[0]
    out = []
    for entry in dsc.get("Checksums-Sha256", []):
        name = entry.get("name", "")
        if not name or "/" in name or name.startswith("."):
            raise RepositoryIndexError(f"{dsc_url}: lists a file named {name!r}")
        out.append(
            Artifact(
                name,
                dsc.get("Version", ""),
                "source",
                f"{base}/{name}",
                entry.get("sha256", ""),
                int(entry.get("size", 0)),
            )
        )
    if not out:
        raise RepositoryIndexError(f"{dsc_url}: no Checksums-Sha256 files listed")
    return tuple(out)
