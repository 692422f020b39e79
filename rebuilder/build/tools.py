"""What each build method and each distribution's sync need on the host, declared once.

Like diffoscope's ``--list-tools``: ``rebuild doctor`` lists every method's
tools, which are missing here and the Debian package that provides each;
``rebuild doctor --apt`` prints the packages the configured profiles need
(the CI workflow installs them); and the pass checks a method's tools before
it starts a backend, so that a build which cannot run FAILs saying why.

Keys are backend names (:data:`rebuilder.build.backends.SHIPPED`): the
distribution for its default method, ``<distro>-<method>`` for another.
A tool is a command on ``PATH`` or, for a library, a file a package installs.

>>> missing_tools("no-such-method")
[]
>>> sorted({t.package for t in METHOD_TOOLS["debian-suite-chroot"]})[:3]
['arch-test', 'coreutils', 'curl']
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class Tool:
    """``command`` on PATH (or the file ``path``), provided by the Debian package ``package``.

    ``package`` is "" where Debian has none (the operator installs it by other means).
    """

    command: str
    package: str
    path: str = ""  # for a library: a file whose presence proves the package

    def present(self) -> bool:
        if self.path:
            return Path(self.path).exists()
        return shutil.which(self.command) is not None


def _perl(module: str, package: str) -> Tool:
    rel = module.replace("::", "/") + ".pm"
    return Tool(f"perl {module}", package, path=f"/usr/share/perl5/{rel}")


# the shipped backends' "Host needs", as their scripts check them
METHOD_TOOLS: dict[str, tuple[Tool, ...]] = {
    "debian": (
        Tool("debrebuild", "devscripts"),
        Tool("sbuild", "sbuild"),
        Tool("mmdebstrap", "mmdebstrap"),
        Tool("newuidmap", "uidmap"),
        _perl("String::ShellQuote", "libstring-shellquote-perl"),
        _perl("Dpkg::Control", "libdpkg-perl"),
        _perl("LWP::UserAgent", "libwww-perl"),
        _perl("URI", "liburi-perl"),
        _perl("Debian::DistroInfo", "libdistro-info-perl"),
    ),
    "debian-suite-chroot": (
        Tool("mmdebstrap", "mmdebstrap"),
        Tool("arch-test", "arch-test"),  # mmdebstrap's check of the chroot's architecture
        Tool("zstd", "zstd"),
        Tool("curl", "curl"),
        Tool("unshare", "util-linux"),
        Tool("flock", "util-linux"),
        Tool("newuidmap", "uidmap"),
        Tool("chroot", "coreutils"),
        Tool("dpkg-source", "dpkg-dev"),
    ),
    "archlinux": (Tool("repro", ""), Tool("bsdtar", "libarchive-tools")),
    "alpine": (Tool("podman", "podman"), Tool("git", "git"), Tool("python3", "python3")),
    "tails": (
        Tool("git", "git"),
        Tool("gpg", "gpg"),
        Tool("rake", "rake"),
        Tool("vagrant", "vagrant"),
        Tool("dpkg-parsechangelog", "dpkg-dev"),
    ),
}

# what syncing a distribution's indexes needs (signature checks)
SYNC_TOOLS: dict[str, tuple[Tool, ...]] = {
    "debian": (
        Tool("gpgv", "gpgv"),
        Tool(
            "debian keyring",
            "debian-archive-keyring",
            path="/usr/share/keyrings/debian-archive-keyring.gpg",
        ),
    ),
    "tails": (Tool("gpgv", "gpgv"),),
}

# every pass: git for the audit log, diffoscope to explain a BAD build
COMMON_TOOLS: tuple[Tool, ...] = (Tool("git", "git"), Tool("diffoscope", "diffoscope-minimal"))


def missing_tools(method: str) -> list[Tool]:
    """The tools of ``method`` (a backend name) that this host lacks; [] for an unknown one."""
    return [t for t in METHOD_TOOLS.get(method, ()) if not t.present()]


def missing_reason(method: str) -> str:
    """A FAIL reason naming what is missing for ``method``, or "" when nothing is.

    >>> missing_reason("no-such-method")
    ''
    """
    missing = missing_tools(method)
    if not missing:
        return ""
    return f"missing tools for method {method}: " + ", ".join(_named(t) for t in missing)


def _named(t: Tool) -> str:
    return f"{t.command} (apt: {t.package})" if t.package else t.command


def apt_packages(methods: Iterable[str], distros: Iterable[str] = ()) -> list[str]:
    """The Debian packages that ``methods`` and syncing ``distros`` need, with the common ones.

    >>> apt_packages(["debian-suite-chroot"], ["debian"])[:4]
    ['arch-test', 'coreutils', 'curl', 'debian-archive-keyring']
    """
    wanted = list(COMMON_TOOLS)
    for m in methods:
        wanted += METHOD_TOOLS.get(m, ())
    for d in distros:
        wanted += SYNC_TOOLS.get(d, ())
    return sorted({t.package for t in wanted if t.package})
