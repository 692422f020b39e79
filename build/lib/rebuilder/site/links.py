"""Links to each distribution's own page for a package: the one place their URLs live.

A template is formatted with the group's fields (``name``, ``version``,
``release``, ``component``, ``architecture``), each URL-quoted, so a hostile
name can only land inside the path. ``render(package_pages=...)`` replaces
the whole table (e.g. for a mirror, or ``{}`` for no links).

>>> package_page({"debian": "https://tracker.example/pkg/{name}"}, "debian", name="a b/../c")
'https://tracker.example/pkg/a%20b%2F..%2Fc'
>>> package_page({}, "debian", name="x") is None
True
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote

# these are the distributions' package pages for people, not archives this tool reads
PACKAGE_PAGES: Mapping[str, str] = {
    "debian": "https://tracker.debian.org/pkg/{name}",
    "archlinux": "https://archlinux.org/packages/{component}/{architecture}/{name}/",
    "alpine": "https://pkgs.alpinelinux.org/packages?name={name}&branch={release}"
    "&repo={component}&arch={architecture}",
}


def package_page(pages: Mapping[str, str], distro: str, **fields: str) -> str | None:
    """The distribution's page for a package, or None when there is none (or it is not http)."""
    template = pages.get(distro)
    if not template:
        return None
    try:
        u = template.format(**{k: quote(v, safe="") for k, v in fields.items()})
    except (KeyError, IndexError, ValueError):
        return None
    return u if u.startswith(("https://", "http://")) else None
