"""Real BAD rebuilds: one tiny Debian package built in pairs of builds that differ in one
thing each, and diffoscope's JSON report of each pair.

The source package ``probe`` 1.0 (debhelper-free ``debian/rules``, built with
``dpkg-buildpackage -b``, ``SOURCE_DATE_EPOCH`` fixed by the changelog) has a C
program compiled with debug info from an absolute path (so ``__FILE__`` and
DWARF name the build directory), a man page and a README. Each pair:

- ``build_path``: the same build from two build directories;
- ``timestamp``: the rules embed ``date`` into the man page's header and gzip
  it without ``-n`` (a date in a doc, a gzip header's mtime);
- ``umask``: the rules install the README with ``cp``, built under umask 022
  and 002 (file modes in ``data.tar``).

Nothing here needs pytest: ``python -m tests.bad_rebuilds DIR`` builds them
and prints where the reports are.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.debian_archive import SOURCE_DATE_EPOCH

CHANGELOG = (
    "probe (1.0) unstable; urgency=medium\n\n  * Test fixture.\n\n"
    " -- Jane Doe <jane@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n"
)
CONTROL = (
    "Source: probe\nSection: misc\nPriority: optional\nMaintainer: Jane Doe <jane@example.org>\n"
    "Standards-Version: 4.6.2\nRules-Requires-Root: no\n\n"
    "Package: probe\nArchitecture: any\nDescription: rebuilder test fixture\n A probe.\n"
)
PROGRAM = "#include <stdio.h>\nint main(void) { puts(__FILE__); return 0; }\n"
# $(CURDIR)/probe.c: __FILE__ and DW_AT_name carry the build directory
RULES = """#!/usr/bin/make -f
D = debian/probe
STAMP = $(if $(PROBE_STAMP),$$(date -u '+%F %T.%N'),2024-01-01)
build: build-arch build-indep
build-arch:
\tcc -g -O0 -o probe $(CURDIR)/probe.c
\tprintf '.TH PROBE 1 "%s"\\n.SH NAME\\nprobe\\n' "$(STAMP)" > probe.1
build-indep:
binary: binary-arch
binary-indep:
binary-arch: build-arch
\trm -rf $(D)
\tinstall -d $(D)/DEBIAN $(D)/usr/bin $(D)/usr/share/man/man1 $(D)/usr/share/doc/probe
\tinstall -m755 probe $(D)/usr/bin/probe
\t$(if $(PROBE_STAMP),gzip -9c probe.1,gzip -9nc probe.1) > $(D)/usr/share/man/man1/probe.1.gz
\tcp README $(D)/usr/share/doc/probe/README
\tdpkg-gencontrol -pprobe -P$(D)
\tdpkg-deb --root-owner-group --build $(D) ..
clean:
\trm -rf $(D) probe probe.1 debian/files debian/substvars
.PHONY: build build-arch build-indep binary binary-arch binary-indep clean
"""


@dataclass(frozen=True)
class Pair:
    """Two builds of ``probe`` that differ in one way, and diffoscope's report on them."""

    name: str
    first: Path  # the .deb
    second: Path
    report: Path  # diffoscope --json


def _build(work: Path, out: Path, *, stamp: bool = False, umask: int = 0o022) -> Path:
    """One build in ``work/probe-1.0`` (removed after); returns the .deb, moved to ``out``."""
    tree = work / "probe-1.0"
    (tree / "debian" / "source").mkdir(parents=True)
    (tree / "debian" / "source" / "format").write_text("3.0 (native)\n")
    (tree / "debian" / "control").write_text(CONTROL)
    (tree / "debian" / "changelog").write_text(CHANGELOG)
    (tree / "debian" / "rules").write_text(RULES)
    (tree / "debian" / "rules").chmod(0o755)
    (tree / "probe.c").write_text(PROGRAM)
    (tree / "README").write_text("A probe for reproducible builds.\n")
    (tree / "README").chmod(0o666 & ~umask)  # as a checkout under that umask makes it
    env = {**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "LC_ALL": "C.UTF-8",
           "DEB_BUILD_OPTIONS": "nostrip", **({"PROBE_STAMP": "1"} if stamp else {})}  # fmt: skip
    old = os.umask(umask)
    try:
        p = subprocess.run(
            ["dpkg-buildpackage", "-us", "-uc", "-d", "-b"],
            cwd=tree, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
        )  # fmt: skip
    finally:
        os.umask(old)
    if p.returncode != 0:
        raise RuntimeError(f"dpkg-buildpackage of probe failed:\n{p.stdout}{p.stderr}")
    (deb,) = work.glob("probe_1.0_*.deb")
    out.mkdir(parents=True)
    deb = deb.rename(out / deb.name)
    shutil.rmtree(work)
    return deb


def diffoscope_json(first: Path, second: Path, report: Path) -> Path:
    """Run diffoscope as the runner does, keeping its JSON report."""
    exe = shutil.which("diffoscope")
    if exe is None:
        raise RuntimeError("diffoscope is not installed")
    env = {**os.environ, "LC_ALL": "C.UTF-8", "TZ": "UTC"}
    p = subprocess.run(
        [exe, "--json", str(report), "--exclude-directory-metadata=yes", "--no-progress",
         str(first), str(second)],
        env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
    )  # fmt: skip
    if p.returncode != 1 or not report.exists():
        raise RuntimeError(f"diffoscope exited with {p.returncode}: {p.stderr}")
    return report


def build_pairs(root: Path) -> dict[str, Pair]:
    """Build every pair under ``root`` and compare each with diffoscope."""
    here = root / "build" / "a"  # every pair but build_path builds in this one directory
    base = _build(here, root / "base")
    builds = {
        "build_path": (base, _build(root / "build" / "a-second-build-directory", root / "path")),
        "timestamp": (
            _build(here, root / "stamp1", stamp=True),
            _build(here, root / "stamp2", stamp=True),
        ),
        "umask": (base, _build(here, root / "umask", umask=0o002)),
    }
    return {
        name: Pair(name, a, b, diffoscope_json(a, b, root / f"{name}.json"))
        for name, (a, b) in builds.items()
    }


if __name__ == "__main__":
    for pair in build_pairs(Path(sys.argv[1]).resolve()).values():
        print(pair.name, pair.report)
