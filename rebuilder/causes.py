"""Why a BAD build differs: diffoscope's JSON report classified into known causes.

diffoscope's ``--json`` output is a tree: each node compares two things
(``source1``/``source2``: an archive, a member, a command's output such as
``readelf --wide --notes {}``) and may hold a ``unified_diff`` and ``details``.
Each node with a diff (a *leaf*) is given to :data:`RULES`, an ordered table:
the first rule whose test holds names the leaf's cause. Names are those of
the reproducible-builds notes (``issues.yml``) where one fits; the others are
ours (marked in :data:`OURS`).

Some causes are *consequences*: a different build ID, section offsets,
file sizes, ``md5sums``. They are reported only when nothing else is found
(``build_id_differences_only``, ``changelog_or_md5sums_only``); a leaf no rule
explains makes the verdict include ``unknown``.

The classifier is pure: bytes in, a :class:`Verdict` out, never an exception
(a report that is not JSON, cut short by a size cap, is ``unknown``). Its work
is bounded by :data:`MAX_LEAVES` and :data:`MAX_LINES`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

MAX_LEAVES = 2000  # leaves looked at in one report
MAX_LINES = 4000  # changed lines looked at in one leaf
MAX_FILES = 20  # differing files kept in a verdict
UNKNOWN = "unknown"
BUILD_ID_ONLY = "build_id_differences_only"
MD5SUMS_ONLY = "changelog_or_md5sums_only"
# weak causes: the consequence of another difference, named only when alone
_BUILD_ID, _LAYOUT, _MD5SUMS = "~build_id", "~layout", "~md5sums"

LABELS = {
    "captures_build_path": "embedded build path",
    "timestamps_in_gzip_headers": "timestamp in a gzip header",
    "timestamps_in_zip": "timestamps in a zip archive",
    "timestamps_in_tarball": "file mtimes in a tarball",
    "timestamps_in_documentation": "date in documentation",
    "captures_build_time": "build date in a file",
    "random_order_in_md5sums": "file order in md5sums",
    "random_order_in_tarball": "file order in a tarball",
    "different_due_to_umask": "permissions (umask)",
    "users_and_groups_in_tarball": "owners in a tarball",
    "toolchain_drift": "toolchain drift (dependency or compiler versions)",
    "captures_locale": "locale",
    BUILD_ID_ONLY: "GNU build-id only",
    MD5SUMS_ONLY: "changelog or md5sums only",
    UNKNOWN: "unknown",
}
OURS = frozenset(
    {
        "captures_build_time",
        "random_order_in_tarball",
        "toolchain_drift",
        "captures_locale",
        MD5SUMS_ONLY,
    }
)
# the order causes are listed in (and the dashboard's columns): most specific first
ORDER = tuple(LABELS)


@dataclass(frozen=True)
class Leaf:
    """One difference: the chain of names down to it and its changed lines."""

    chain: tuple[str, ...]  # source1 of every node from the root, the leaf's own last
    removed: tuple[str, ...]
    added: tuple[str, ...]

    @property
    def source(self) -> str:
        return self.chain[-1]

    @property
    def file(self) -> str:
        """The innermost file the leaf is in, as a path through the archives."""
        return file_path(self.chain)


@dataclass(frozen=True)
class Verdict:
    """The causes of one report (in :data:`ORDER`) and the differing files with theirs."""

    causes: tuple[str, ...]
    files: tuple[tuple[str, str], ...] = field(default=())  # (file, cause), at most MAX_FILES


# -- the rules ----------------------------------------------------------------------------

_PATH = re.compile(r"/(?:[\w.+~@-]+/)+[\w.+~@-]*")
# numbers, hex offsets (also readelf's "[  bf]", which has no digit)
_NUM = re.compile(r"\b(?:0x[0-9a-f]+|[0-9a-f]*[0-9][0-9a-f]*)\b|\[\s*[0-9a-f]+\]", re.I)
_DATE = re.compile(
    r"\d{4}-\d\d-\d\d(?:[ T]\d\d:\d\d(?::\d\d(?:\.\d+)?)?)?(?:Z|[+-]\d\d:?\d\d)?"
    r"|\d\d:\d\d:\d\d(?:\.\d+)?"
    r"|\b(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),? "
    r"|\b(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]* +\d{1,2}\b"
    r"|\b\d{1,2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\b"
    r"|\b(?:19|20)\d\d\b"
    r"|\b1[5-9]\d{8}(?:\.\d+)?\b"  # seconds since the epoch, 2017..2033
)
_LOCALE = re.compile(r"\b[a-z]{2}_[A-Z]{2}(?:\.[\w-]+)?\b|\bC\.UTF-8\b|\bPOSIX\b")
_VERSIONS = re.compile(r"\d[\w.+~:-]*")
_DEP_FIELD = re.compile(
    r"^[-+]?\s*(Depends|Pre-Depends|Recommends|Suggests|Breaks|Conflicts|Provides|Built-Using"
    r"|Static-Built-Using):"
)
_DOCS = re.compile(r"(?:^|/)usr/share/(?:doc|man|info|gtk-doc|help)/|\.(?:html?|pdf|ps|dvi)$")
# tar/ar listings: mode, (links), owner, group, size, date, time, name
_LISTING = re.compile(
    r"^(?P<mode>[-dlcbps][-rwxsStT]{9})\s+(?:\d+\s+)?(?P<owner>\S+(?:\s+\(\d+\))?)\s+"
    r"(?P<group>\S+(?:\s+\(\d+\))?)\s+(?P<size>\d+)\s+(?P<date>\d{4}-\d\d-\d\d \S+)\s+"
    r"(?P<name>.*)$"
)
# sections and outputs that move when any byte before them changes
_LAYOUT_SOURCES = re.compile(
    r"--file-header|--program-header|--sections|--symbols|--relocs|--dynamic|--hex-dump|"
    r"--debug-dump=(?:frames|aranges|loc|ranges|abbrev)|objdump|md5sums|Installed-Size|"
    r"^file list$|^filetype from file"
)


def _pairs(leaf: Leaf) -> list[tuple[str, str]]:
    return list(zip(leaf.removed, leaf.added, strict=False))


def _same_after(leaf: Leaf, *subs: tuple[re.Pattern[str], str]) -> bool:
    """The changed lines are the same once each pattern is replaced, and not before."""

    def norm(lines: tuple[str, ...]) -> Counter[str]:
        out: Counter[str] = Counter()
        for line in lines:
            for pattern, repl in subs:
                line = pattern.sub(repl, line)
            out[line] += 1
        return out

    if not leaf.removed and not leaf.added:
        return False
    return norm(leaf.removed) == norm(leaf.added)


def _listing(leaf: Leaf, *fields: str, size_only: bool = False) -> bool:
    """A tar/ar listing whose paired lines differ only in the given fields, and not in
    the size alone unless ``size_only`` (a size follows from any change of content)."""
    if leaf.source != "file list" or len(leaf.removed) != len(leaf.added) or not leaf.removed:
        return False
    for a, b in _pairs(leaf):
        ma, mb = _LISTING.match(a), _LISTING.match(b)
        if not ma or not mb or ma["name"] != mb["name"]:
            return False
        differ = {k for k in ("mode", "owner", "group", "size", "date") if ma[k] != mb[k]}
        if not differ or not differ <= set(fields) or not (size_only or differ - {"size"}):
            return False
    return True


def _build_id(leaf: Leaf) -> bool:
    lines = leaf.removed + leaf.added
    if "--hex-dump=.note.gnu.build-id" in leaf.source:
        return True
    return bool(lines) and all(
        "Build ID:" in x or "/.build-id/" in x or "Build-Ids:" in x for x in lines
    )


def _gzip_header(leaf: Leaf) -> bool:
    lines = leaf.removed + leaf.added
    return (
        leaf.source.startswith("filetype from file")
        and all("gzip compressed data" in x for x in lines)
        and _same_after(leaf, (re.compile(r"last modified: [^,]*"), ""))
    )


def _zip_times(leaf: Leaf) -> bool:
    return leaf.source.startswith(("zipinfo", "zipdetails")) and _same_after(leaf, (_DATE, "D"))


def _tar_mtimes(leaf: Leaf) -> bool:
    return _listing(leaf, "date", "size")


def _umask(leaf: Leaf) -> bool:
    return _listing(leaf, "mode", "size")


def _owners(leaf: Leaf) -> bool:
    return _listing(leaf, "owner", "group", "size")


def _md5sums_order(leaf: Leaf) -> bool:
    return leaf.source.endswith("md5sums") and _file_order(leaf)


def _file_order(leaf: Leaf) -> bool:
    """The same lines, in another order."""
    return bool(leaf.removed) and Counter(leaf.removed) == Counter(leaf.added)


def _build_path(leaf: Leaf) -> bool:
    paths = {m for x in leaf.removed + leaf.added for m in _PATH.findall(x)}
    return len(paths) > 1 and _same_after(leaf, (_PATH, "P"), (_NUM, "N"))


def _toolchain(leaf: Leaf) -> bool:
    lines = leaf.removed + leaf.added
    if lines and all(_DEP_FIELD.match(x) for x in lines):
        return _same_after(leaf, (_VERSIONS, "V"))
    producer = all("DW_AT_producer" in x or "GCC: (" in x or "clang version" in x for x in lines)
    return bool(lines) and producer


def _doc_date(leaf: Leaf) -> bool:
    return bool(_DOCS.search(leaf.file)) and _date(leaf)


def _date(leaf: Leaf) -> bool:
    return any(_DATE.search(x) for x in leaf.removed) and _same_after(leaf, (_DATE, "D"))


def _locale(leaf: Leaf) -> bool:
    lines = leaf.removed + leaf.added
    return any(_LOCALE.search(x) for x in lines) and _same_after(leaf, (_LOCALE, "L"))


def _md5sums(leaf: Leaf) -> bool:
    return any(
        s.endswith(("md5sums", "changelog.Debian.gz", "changelog.gz", "changelog"))
        for s in leaf.chain
    )


def _layout(leaf: Leaf) -> bool:
    if _LAYOUT_SOURCES.search(leaf.source):
        return True
    return _listing(leaf, "size", size_only=True)


Rule = tuple[str, Callable[[Leaf], bool]]
# first match wins: the specific before the general, consequences last
RULES: tuple[Rule, ...] = (
    (_BUILD_ID, _build_id),
    ("timestamps_in_gzip_headers", _gzip_header),
    ("timestamps_in_zip", _zip_times),
    ("timestamps_in_tarball", _tar_mtimes),
    ("different_due_to_umask", _umask),
    ("users_and_groups_in_tarball", _owners),
    ("random_order_in_md5sums", _md5sums_order),
    ("random_order_in_tarball", lambda leaf: leaf.source == "file list" and _file_order(leaf)),
    ("captures_build_path", _build_path),
    ("toolchain_drift", _toolchain),
    (_MD5SUMS, _md5sums),
    (_LAYOUT, _layout),
    ("timestamps_in_documentation", _doc_date),
    ("captures_build_time", _date),
    ("captures_locale", _locale),
)


# -- walking the report -------------------------------------------------------------------


def leaves(report: Any) -> Iterator[Leaf]:
    """Every node of a diffoscope JSON report that has a diff, depth first, bounded."""
    stack: list[tuple[Any, tuple[str, ...]]] = [(report, ())]
    n = 0
    while stack and n < MAX_LEAVES:
        node, chain = stack.pop()
        if not isinstance(node, dict):
            continue
        chain = (*chain, str(node.get("source1") or ""))
        diff = node.get("unified_diff")
        if isinstance(diff, str) and diff:
            n += 1
            removed, added = _changed(diff)
            yield Leaf(chain, removed, added)
        details = node.get("details")
        if isinstance(details, list):
            stack.extend((d, chain) for d in reversed(details))


def _changed(diff: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    removed, added = [], []
    for line in diff.split("\n", MAX_LINES * 4)[: MAX_LINES * 4]:
        if line.startswith("-") and not line.startswith("---"):
            removed.append(line[1:])
        elif line.startswith("+") and not line.startswith("+++"):
            added.append(line[1:])
    return tuple(removed[:MAX_LINES]), tuple(added[:MAX_LINES])


_COMMANDS = re.compile(r"\{\}|^file list$|^filetype from file|^metadata$|^encoding$")
_WRAPPERS = re.compile(r"\.(?:xz|gz|bz2|zst|lzma)$")


def file_path(chain: tuple[str, ...]) -> str:
    """The differing file a chain of sources leads to: commands and compressed wrappers
    dropped, the root's own path cut to its name (``hello.deb › ./usr/bin/hello``)."""
    parts: list[str] = []
    for i, name in enumerate(chain):
        if not name or _COMMANDS.search(name):
            continue
        if i == 0:
            name = name.rstrip("/").rsplit("/", 1)[-1]
        if parts and _WRAPPERS.search(parts[-1]) and _WRAPPERS.sub("", parts[-1]) == name:
            parts[-1] = name  # data.tar.xz › data.tar: one step
            continue
        parts.append(name)
    return " › ".join(parts)


def cause_of(leaf: Leaf) -> str:
    for name, test in RULES:
        if test(leaf):
            return name
    return UNKNOWN


def classify(data: bytes | None) -> Verdict:
    """The verdict on diffoscope's JSON report (None or broken: unknown)."""
    try:
        report = json.loads(data) if data else None
    except (ValueError, RecursionError):
        report = None
    if not isinstance(report, dict):
        return Verdict((UNKNOWN,))
    found: dict[str, list[str]] = {}  # file -> causes of its leaves
    for leaf in leaves(report):
        found.setdefault(leaf.file, []).append(cause_of(leaf))
    strong = {c for cs in found.values() for c in cs if not c.startswith("~")}
    weak = {c for cs in found.values() for c in cs if c.startswith("~")}
    if strong:
        causes = strong
    elif _MD5SUMS in weak:
        causes = {MD5SUMS_ONLY}
    elif _BUILD_ID in weak:
        causes = {BUILD_ID_ONLY}
    else:
        causes = {UNKNOWN}
    files = []
    for f, cs in found.items():
        mine = [c for c in cs if not c.startswith("~")] or [_weak_name(c) for c in cs]
        files.append((f, _first(mine)))
    if any(c for _, c in files):  # files that only follow from the others are left out
        files = [x for x in files if x[1]]
    files.sort(key=lambda x: (ORDER.index(x[1]) if x[1] in ORDER else len(ORDER), x[0]))
    return Verdict(tuple(c for c in ORDER if c in causes), tuple(files[:MAX_FILES]))


def _weak_name(c: str) -> str:
    return {_BUILD_ID: BUILD_ID_ONLY, _MD5SUMS: MD5SUMS_ONLY}.get(c, "")


def _first(causes: list[str]) -> str:
    named = [c for c in causes if c]
    return min(named, key=ORDER.index) if named else ""


def label(cause: str) -> str:
    """A cause for people."""
    return LABELS.get(cause, cause)
