"""The backend scripts this tool ships, one per distribution (and per extra build method).

A backend is any executable following rebuilderd-worker's contract (see
:mod:`rebuilder.build.runner` and ``docs/backends.md``); a profile may name
its own. These are the defaults, installed beside this module.

>>> sorted(SHIPPED)
['alpine', 'archlinux', 'debian', 'debian-suite-chroot', 'tails']
"""

from __future__ import annotations

import os
from pathlib import Path

from rebuilder.errors import ConfigError

HERE = Path(__file__).resolve().parent

# distro -> script file name in this directory
SHIPPED: dict[str, str] = {
    "debian": "debian.sh",
    "debian-suite-chroot": "debian-suite-chroot.sh",  # method "suite-chroot"
    "archlinux": "archlinux.sh",
    "alpine": "alpine.sh",
    "tails": "tails.sh",
}


def shipped_backend(distro: str) -> Path:
    """The shipped backend script for ``distro``; ConfigError if none is usable.

    >>> shipped_backend("debian").name
    'debian.sh'
    """
    name = SHIPPED.get(distro)
    if name is None:
        known = ", ".join(sorted(SHIPPED))
        raise ConfigError(f"no shipped backend for distribution {distro!r} (known: {known})")
    return check_backend(HERE / name)


def check_backend(path: Path) -> Path:
    """``path`` if it is an executable file, else a ConfigError that says what is wrong."""
    if not path.is_file():
        raise ConfigError(f"backend {path} does not exist")
    if not os.access(path, os.X_OK):
        raise ConfigError(f"backend {path} is not executable (chmod +x it)")
    return path


def available() -> dict[str, Path]:
    """Every shipped backend that is present and executable, by distribution."""
    found = {}
    for distro, name in SHIPPED.items():
        path = HERE / name
        if path.is_file() and os.access(path, os.X_OK):
            found[distro] = path
    return found
