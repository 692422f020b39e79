"""The packages installed on this machine: dpkg's status file (deb822, read with
python-debian) and pacman's local database."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rebuilder.errors import RebuilderError

DPKG_STATUS = Path("/var/lib/dpkg/status")
PACMAN_LOCAL = Path("/var/lib/pacman/local")


class PackageDatabaseError(RebuilderError):
    """The local package database (dpkg status, pacman local db) is unreadable or corrupt."""


@dataclass(frozen=True, slots=True, order=True)
class Installed:
    """One installed binary package, as the local package manager records it."""

    name: str
    version: str
    architecture: str


def read_dpkg_status(path: Path = DPKG_STATUS) -> list[Installed]:
    """Packages dpkg has fully installed (``Status: install ok installed``)."""
    from debian import deb822  # here, not at start-up: its import alone takes ~0.5 s

    out = []
    text = _read_db(path)
    wanted = ["Package", "Version", "Architecture", "Status"]  # only these: twice as fast
    paras = deb822.Deb822.iter_paragraphs(text.splitlines(), fields=wanted, use_apt_pkg=False)
    for n, para in enumerate(paras, start=1):
        if para.get("Status", "").strip() != "install ok installed":
            continue
        fields = {k: para.get(k, "").strip() for k in ("Package", "Version", "Architecture")}
        missing = [k.lower() for k, v in fields.items() if not v]
        if missing:
            raise PackageDatabaseError(
                f"{path}: installed entry #{n} ({fields['Package'] or '?'}) has no {missing[0]}"
            )
        out.append(Installed(fields["Package"], fields["Version"], fields["Architecture"]))
    return out


def _read_db(path: Path) -> str:
    try:
        return path.read_bytes().decode("utf-8", errors="replace")
    except FileNotFoundError:
        raise PackageDatabaseError(
            f"{path}: no such file (is this package manager in use?)"
        ) from None
    except OSError as e:
        raise PackageDatabaseError(f"{path}: cannot read: {e.strerror}") from None


def read_pacman_local(path: Path = PACMAN_LOCAL) -> list[Installed]:
    """Packages in pacman's local database (``<name>-<version>/desc`` files)."""
    try:
        dirs = sorted(p for p in path.iterdir() if p.is_dir())
    except FileNotFoundError:
        raise PackageDatabaseError(f"{path}: no such directory (is pacman in use?)") from None
    except OSError as e:
        raise PackageDatabaseError(f"{path}: cannot read: {e.strerror}") from None
    out = []
    for d in dirs:
        desc = _pacman_desc(_read_db(d / "desc"))
        missing = [k for k in ("NAME", "VERSION", "ARCH") if not desc.get(k)]
        if missing:
            raise PackageDatabaseError(f"{d / 'desc'}: no %{missing[0]}% entry")
        out.append(Installed(desc["NAME"], desc["VERSION"], desc["ARCH"]))
    return out


def _pacman_desc(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    lines = iter(text.splitlines())
    for line in lines:
        if line.startswith("%") and line.endswith("%") and len(line) > 2:
            fields[line[1:-1]] = next(lines, "").strip()
    return fields
