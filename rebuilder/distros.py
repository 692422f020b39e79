"""The registry of distributions: everything the tool knows about one, in one entry.

A ground-floor module (it imports nothing of rebuilder's), read by config (which names are
valid, whether releases are needed), sync (which module syncs), build (which backend script
is shipped), pipeline (which method is the default) and the site (the package page link).
Adding a distribution is its own sync module and backend script, plus one entry here;
``tests/test_distros.py`` checks that every entry is complete.

>>> get("archlinux").needs_releases
False
>>> backend_name("debian", "suite-chroot"), backend_name("debian", "debrebuild")
('debian-suite-chroot', 'debian')
>>> sorted(shipped_backends())
['alpine', 'archlinux', 'debian', 'debian-suite-chroot', 'tails']
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Distro:
    """One distribution.

    ``syncer``: the module under :mod:`rebuilder.sync` whose ``sync(profile, ctx)`` reads its
    repository (named, not imported: the sync modules import config, which reads this).
    ``backend``: the shipped script (in ``rebuilder/build/backends/``) for the default build
    method; ``methods``: other build methods a profile may choose, each with its script.
    ``default_method``: the method its groups carry when the profile names none (None: the
    distribution has one way to build and its groups name none). ``package_page``: the
    distribution's page for a package, for people (a template of the group's fields).
    ``needs_releases``: whether a profile must list releases (Arch Linux has one, rolling).
    """

    name: str
    syncer: str
    backend: str
    default_method: str | None = None
    methods: Mapping[str, str] = field(default_factory=dict)
    package_page: str | None = None
    needs_releases: bool = True


# the package pages are the distributions' sites for people, not archives this tool reads
DISTROS: Mapping[str, Distro] = {
    d.name: d
    for d in (
        Distro(
            "debian",
            syncer="rebuilder.sync.debian",
            backend="debian.sh",
            default_method="debrebuild",
            methods={"suite-chroot": "debian-suite-chroot.sh"},
            package_page="https://tracker.debian.org/pkg/{name}",
        ),
        Distro(
            "archlinux",
            syncer="rebuilder.sync.archlinux",
            backend="archlinux.sh",
            package_page="https://archlinux.org/packages/{component}/{architecture}/{name}/",
            needs_releases=False,
        ),
        Distro(
            "alpine",
            syncer="rebuilder.sync.alpine",
            backend="alpine.sh",
            default_method="abuild",
            package_page="https://pkgs.alpinelinux.org/packages?name={name}&branch={release}"
            "&repo={component}&arch={architecture}",
        ),
        Distro("tails", syncer="rebuilder.sync.tails", backend="tails.sh"),
    )
}


def get(name: str) -> Distro:
    """The entry for ``name``; KeyError (naming the known ones) when there is none."""
    try:
        return DISTROS[name]
    except KeyError:
        raise KeyError(f"unknown distribution {name!r} (known: {', '.join(DISTROS)})") from None


def backend_name(distro: str, method: str | None) -> str:
    """The backend a group needs: the distribution's, or ``<distro>-<method>`` for another
    method than its default (an operator's ``[backend."debian-suite-chroot"]``)."""
    d = DISTROS.get(distro)
    default = d.default_method if d else method
    if method and method != default:
        return f"{distro}-{method}"
    return distro


def methods(name: str) -> tuple[str, ...]:
    """The build methods a profile of ``name`` may choose, the default first (none: one way).

    >>> methods("debian"), methods("tails")
    (('debrebuild', 'suite-chroot'), ())
    """
    d = get(name)
    return (d.default_method, *d.methods) if d.default_method else ()


def has_method(distro: str, method: str, backends: Collection[str] = ()) -> bool:
    """The one rule for build methods: ``method`` is one of ``distro``'s when the registry
    lists it, or when the operator gave it its own backend (``<distro>-<method>`` in
    ``backends``, the names of the ``[backend."..."]`` tables).

    >>> has_method("debian", "suite-chroot"), has_method("tails", "vagrant")
    (True, False)
    >>> has_method("tails", "vagrant", {"tails-vagrant"})
    True
    """
    known = methods(distro) if distro in DISTROS else ()
    return method in known or f"{distro}-{method}" in backends


def shipped_backends() -> dict[str, str]:
    """Backend name -> the script shipped for it, for every distribution and method."""
    out = {}
    for d in DISTROS.values():
        out[d.name] = d.backend
        out.update({f"{d.name}-{m}": script for m, script in d.methods.items()})
    return out


def package_pages() -> dict[str, str]:
    """Distribution -> its package page template, for those that have one."""
    return {d.name: d.package_page for d in DISTROS.values() if d.package_page}
