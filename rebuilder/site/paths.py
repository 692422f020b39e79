"""Where every site file lives: a safe, injective mapping from names to paths.

Package names, versions, releases and profile names come from repository
indexes and state files, so they are hostile input. Every name that becomes a
path component goes through :func:`segment`, which keeps ``[A-Za-z0-9._+-]``,
percent-encodes every other byte of its UTF-8 form (``%`` itself included, so
the mapping stays injective), encodes a leading ``.`` (no ``.``, ``..`` or
hidden files) and shortens very long names with a hash. The result never holds
``/``, NUL or ``..`` and is at most :data:`MAX_SEGMENT` bytes, so a path built
from segments stays under the site directory.

Layout (all paths relative to the site directory)::

    index.html, index.json, static/       the dashboard and our top-level JSON
    feed.atom, feed.json                  status changes of every profile
    maintainers.html, m/<maintainer>.html per-maintainer views
    search/index.json, search/<n>.json    the search index (a manifest and its shards)
    feeds/<profile>.{atom,json}           one profile's status changes
    badges/<profile>.{svg,json}           badges (SVG and shields.io endpoint JSON)
    badges/_/<STATUS>.{svg,json}          the per-package badges link to these
    p/<profile>/<release>/<component>/<arch>/index.html       a suite's list (paged)
    p/<profile>/<release>/<component>/<arch>/index.json       the suite as JSON
    p/<profile>/<release>/<component>/<arch>/<list>.html      other pages, sorts, statuses
    p/<profile>/<release>/<component>/<arch>/pkg/<name>.html  one build group
    p/<profile>/<release>/<component>/<arch>/pkg/<name>.json  its record, full history
    p/<profile>/<release>/<component>/<arch>/badge/<name>.{svg,json}  its badges
    <distro>/api/v0/{pkgs/list,dashboard,public-keys}         rebuilderd v0
    <distro>/api/v0/builds/<id>/{log,diffoscope,attestation}  the build v0 names, plain
    v/<distro>/builds/<id>/{log,diffoscope}.html, diffoscope-report.html  readable views
    <distro>/<arch>/api/v0/...            the same lists, for one architecture (no builds/)
    builds/                               the results store (never written here)

Fixed file names live only in directories whose other entries are segments
that cannot equal them (a segment never contains ``/``), so a hostile name can
never overwrite a fixed file.

>>> segment("hello")
'hello'
>>> segment("../../etc/passwd")
'%2E.%2F..%2Fetc%2Fpasswd'
>>> segment("<script>")
'%3Cscript%3E'
>>> segment("a\\x00b")
'a%00b'
>>> len(segment("x" * 5000)) <= MAX_SEGMENT
True
>>> group_page("debian", "bookworm/main/amd64/hello")
'p/debian/bookworm/main/amd64/pkg/hello'
>>> href("p/d/r/c/a/index.html", "p/d/r/c/a/pkg/1%3A2.html")
'../../../../../p/d/r/c/a/pkg/1%253A2.html'
>>> href("p/d/r/c/a/pkg/x.html", "p/d/r/c/a/pkg/x.json")
'x.json'
>>> list_page(None, "name", 1), list_page("good", "date", 3)
('index.html', 'good-date-3.html')

Paths are plain ``str`` (POSIX, relative to the site directory): a render
handles a few hundred thousand of them, and ``pathlib`` would dominate its time.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import stat
from pathlib import Path
from urllib.parse import quote

from rebuilder import results
from rebuilder.errors import RebuilderError

MAX_SEGMENT = 120  # bytes; far below NAME_MAX (255) even with a ".html" suffix
_KEEP = re.compile(r"[A-Za-z0-9._+-]+")
_URL_SAFE = re.compile(r"[A-Za-z0-9._+/~-]*")
_HASH_CHARS = 16
# each byte as a segment shows it: itself if _KEEP has it, else escaped (a maintainer's
# address takes this way, for every page, feed and badge of theirs)
_BYTE = tuple(chr(b) if b < 128 and _KEEP.fullmatch(chr(b)) else f"%{b:02X}" for b in range(256))

PAGES = "p"  # all per-profile pages live under this directory
STATIC = "static"
STORE = results.STORE  # the results store (rebuilder.results), never written here
MAINTAINERS = "m"
SEARCH = "search"
FEEDS = "feeds"
BADGES = "badges"
STATUS_BADGES = f"{BADGES}/_"  # '_' + '/' can't be a profile's "<segment>.svg"
VIEWS_DIR = "v"  # readable views of build files, outside the API trees: v/<distro>/builds/<id>/
RESERVED_TOP = frozenset(
    {
        PAGES,
        STATIC,
        STORE,
        MAINTAINERS,
        SEARCH,
        FEEDS,
        BADGES,
        VIEWS_DIR,
        "index.html",
        "index.json",
    }
    | {"feed.atom", "feed.json", "maintainers.html"}
)
STATUS_PAGES = ("good", "bad", "fail", "unkwn")  # list pages of one status
SORTS = ("name", "date")
API_KINDS = ("log", "diffoscope", "attestation")  # what rebuilderd's v0 serves per build
API = "api"  # <distro>/api/v0 and <distro>/<arch>/api/v0: an arch named "api" gets no tree


class SiteError(RebuilderError):
    """The site cannot be rendered (bad layout input, unwritable directory...)."""


def segment(name: str) -> str:
    """One safe, reversible-in-spirit path component for any string (see the module doc)."""
    if not name:
        return "~"  # '~' is never produced otherwise except before a hash
    if _KEEP.fullmatch(name) and not name.startswith(".") and len(name) <= MAX_SEGMENT:
        return name  # the common case, kept fast
    raw = name.encode("utf-8", "surrogatepass")
    enc = "".join([_BYTE[b] for b in raw])
    if enc.startswith("."):
        enc = "%2E" + enc[1:]
    if len(enc) <= MAX_SEGMENT:
        return enc
    digest = hashlib.sha256(raw).hexdigest()[:_HASH_CHARS]
    head = enc[: MAX_SEGMENT - _HASH_CHARS - 1]
    head = re.sub(r"%[0-9A-F]?$", "", head)  # never cut an escape in half
    return f"{head}~{digest}"


def profile_dir(profile: str) -> str:
    """Everything of one profile's pages lives below this directory."""
    return f"{PAGES}/{segment(profile)}"


@functools.lru_cache(maxsize=4096)  # a few suites, asked for once per group
def suite_dir(profile: str, release: str, component: str, architecture: str) -> str:
    """The directory of one suite's list pages."""
    parts = (profile, release, component, architecture)
    return "/".join([PAGES, *(segment(p) for p in parts)])


def group_page(profile: str, key: str) -> str:
    """A build group's page path, without suffix (``.html`` and ``.json`` go beside it).

    ``key`` is ``BuildGroup.key`` (``release/component/arch/name``); a name
    holding ``/`` stays in the last part, so the mapping is injective.
    """
    parts = key.split("/", 3)
    if len(parts) != 4:
        raise SiteError(
            f"malformed build group key {key[:200]!r} (expected release/component/arch/name)"
        )
    release, component, arch, name = parts
    return f"{suite_dir(profile, release, component, arch)}/pkg/{segment(name)}"


@functools.lru_cache(maxsize=64)
def api_base(distro: str) -> str:
    """rebuilderd's v0 API root for one distribution."""
    seg = segment(distro)
    if seg in RESERVED_TOP:
        raise SiteError(f"distribution name {distro!r} clashes with the site's own {seg!r}")
    return f"{seg}/{API}/v0"


def list_page(status: str | None, sort: str, page: int) -> str:
    """The file name of one page of a suite's list (``status`` None: every status).

    Page 1 of the name sort keeps the short names (``index.html``, ``good.html``).
    """
    if sort not in SORTS or page < 1 or (status is not None and status not in STATUS_PAGES):
        raise ValueError(f"no such list page: {status!r} {sort!r} {page!r}")
    stem = status or "all"
    parts = [stem] + ([sort] if sort != "name" else []) + ([str(page)] if page > 1 else [])
    if parts == ["all"]:
        return "index.html"
    return "-".join(parts) + ".html"


def cause_page(cause: str, page: int) -> str:
    """One page of a suite's list of the BAD groups with one cause (``cause-<name>.html``).

    >>> cause_page("captures_build_path", 1), cause_page("x/y", 2)
    ('cause-captures_build_path.html', 'cause-x%2Fy-2.html')
    """
    return f"cause-{segment(cause)}" + (f"-{page}" if page > 1 else "") + ".html"


def badge_file(profile: str, key: str, suffix: str) -> str:
    """A build group's badge (``suffix`` ``.svg`` or ``.json``), beside its suite's ``pkg/``."""
    page = group_page(profile, key)
    head, _, name = page.rpartition("/pkg/")
    return f"{head}/badge/{name}{suffix}"


def maintainer_page(key: str) -> str:
    return f"{MAINTAINERS}/{segment(key)}.html"


def profile_badge(profile: str, suffix: str) -> str:
    return f"{BADGES}/{segment(profile)}{suffix}"


def profile_feed(profile: str, suffix: str) -> str:
    return f"{FEEDS}/{segment(profile)}{suffix}"


# a maintainer's feed and badge: in a folder of feeds/ and badges/ ('m' + '/' can't be a
# profile's "<segment>.atom"), named as their page is
def maintainer_feed(key: str, suffix: str) -> str:
    return f"{FEEDS}/{MAINTAINERS}/{segment(key)}{suffix}"


def maintainer_badge(key: str, suffix: str) -> str:
    return f"{BADGES}/{MAINTAINERS}/{segment(key)}{suffix}"


def distro_dir(distro: str) -> str:
    """``<distro>``: a distribution's API trees, its own (``api/``) and one per architecture."""
    return api_base(distro).partition("/")[0]


def arch_api_base(distro: str, architecture: str) -> str | None:
    """``<distro>/<arch>/api/v0``: one architecture's v0 tree (None for an arch named ``api``)."""
    seg = segment(architecture)
    if seg == API:
        return None
    return f"{segment(distro)}/{seg}/api/v0"


def api_v1_base(distro: str) -> str:
    """rebuilderd's v1 API root for one distribution, beside v0."""
    return api_base(distro)[: -len("v0")] + "v1"


_FORM_SAFE = re.compile(r"[A-Za-z0-9*._-]*")  # what form encoding leaves as it is


def by_name(name: str) -> tuple[str, str | None] | None:
    """The file names of one package's ``api/v1/packages/by-name/`` page: the name as a
    client form-encodes it in ``?name=`` (nginx looks it up undecoded) and, when it
    differs, the name itself (Caddy decodes ``{query.name}``). None: no safe file name.

    >>> by_name("libstdc++6"), by_name("hello"), by_name("..")
    (('libstdc%2B%2B6', 'libstdc++6'), ('hello', None), None)
    """
    encoded = name if _FORM_SAFE.fullmatch(name) else "".join(
        c if c.isascii() and (c.isalnum() or c in "*-._") else "+" if c == " " else
        "".join(f"%{b:02X}" for b in c.encode("utf-8", "surrogatepass"))
        for c in name
    )  # fmt: skip
    if encoded in ("", ".", "..") or len(encoded) > MAX_SEGMENT:
        return None
    plain = name != encoded and len(name.encode("utf-8", "surrogatepass")) <= MAX_SEGMENT
    if plain and ("/" in name or "\0" in name or name.startswith(".")):
        plain = False
    return encoded, name if plain else None


def api_build_dir(distro: str, build_id: int) -> str:
    """``<distro>/api/v0/builds/<id>``: where rebuilderd serves a build's ``API_KINDS``."""
    return f"{api_base(distro)}/builds/{int(build_id)}"


def views_base(distro: str) -> str:
    """``v/<distro>``: the pages made of a distribution's build files, outside the API
    trees: those hold what rebuilderd's clients read, and nothing twice."""
    api_base(distro)  # the same check of the name
    return f"{VIEWS_DIR}/{segment(distro)}"


def view_build_dir(distro: str, build_id: int) -> str:
    """``v/<distro>/builds/<id>``: diffoscope's (wrapped) HTML report of a build."""
    return f"{views_base(distro)}/builds/{int(build_id)}"


def text_view(kind: str, rel: str, build_id: int, name: str, version: str) -> str:
    """The viewer's address for results store file ``rel`` (a ``kind`` of build
    ``build_id`` of ``name`` ``version``): :data:`VIEWER` and its query, which the
    viewer's script reads (its title and the way back are in it too).

    >>> text_view("log", "12/log.gz", 12, "libc++", "1:2.0")
    'v/text.html?k=log&f=12/log.gz&b=12&n=libc%2B%2B&v=1:2.0'
    """
    q = _query_value
    return f"{VIEWER}?k={q(kind)}&f={q(rel)}&b={int(build_id)}&n={q(name)}&v={q(version)}"


_QUERY_SAFE = re.compile(r"[A-Za-z0-9._/~:@-]*")  # what a query value may hold as it is
_QUERY_PLUS = re.compile(r"[A-Za-z0-9._/~:@+-]*")


def _query_value(value: str) -> str:
    # the common cases first: quote() costs more than the rest of a page's links
    if _QUERY_SAFE.fullmatch(value):
        return value
    if _QUERY_PLUS.fullmatch(value):  # a query's "+" is a space: 1.2+dfsg-1 needs %2B
        return value.replace("+", "%2B")
    return quote(value, safe="/:@")


# text files with a readable view: the one viewer page, told by its query which results
# store file to load (static/text.js). One page for every build, not a page each: no
# second copy of the text, and no file and folder per build to write and publish
VIEWS = ("log", "diffoscope")
VIEWER = f"{VIEWS_DIR}/text.html"
REPORT = "diffoscope-report.html"  # diffoscope's own HTML report, in view_build_dir
# a v0 file without a readable view, also under a name a plain server sends as JSON
ALIASES = {"attestation": "attestation.json"}


def store_rel(rel: str) -> str | None:
    """The site path of a results store file (``rel`` is relative to ``builds/``), if safe.

    Paths come from the state file, so they are checked like any input
    (:func:`rebuilder.results.safe_rel`).

    >>> store_rel("12/log.gz")
    'builds/12/log.gz'
    >>> store_rel("../x") is None, store_rel("/etc/passwd") is None, store_rel("a\\x00") is None
    (True, True, True)
    """
    return f"{STORE}/{rel}" if results.is_safe_rel(rel) else None


def store_file(site_dir: Path | str, rel: str) -> tuple[str, os.stat_result] | None:
    """The results store file ``rel`` names, and its ``lstat``, if it is safe to read.

    Safe: ``rel`` passes :func:`store_rel`, and no component below
    ``builds/`` is a symlink (``builds/`` itself may be one, e.g. to another
    disk), and the file is a regular file. That keeps a hostile state from
    publishing any file outside the store.
    """
    if store_rel(rel) is None:
        return None
    path = f"{site_dir}/{STORE}"
    st = None
    for part in rel.split("/"):
        path = f"{path}/{part}"
        try:
            st = os.lstat(path)
        except OSError:
            return None
        if stat.S_ISLNK(st.st_mode):
            return None
    if st is None or not stat.S_ISREG(st.st_mode):
        return None
    return path, st


def root_prefix(page: str) -> str:
    """The relative prefix from ``page`` back to the site root (``""`` at the root)."""
    return "../" * page.count("/")


def href(page: str, target: str) -> str:
    """A relative, URL-quoted link from ``page`` (a file) to ``target`` (both site-relative).

    Through the root unless both are in one folder: always right, never slow. The
    viewer's query (:func:`text_view`) is kept as it is: no file's name starts so.
    """
    if target.startswith(VIEWER + "?"):
        return root_prefix(page) + target
    folder, _, name = target.rpartition("/")
    if folder == page.rpartition("/")[0]:
        return url(name)
    return root_prefix(page) + url(target)


def url(target: str) -> str:
    """A site-relative path, URL-quoted (``%`` in a file name becomes ``%25``); the
    viewer's address (:func:`text_view`) is quoted already."""
    if _URL_SAFE.fullmatch(target) or target.startswith(VIEWER + "?"):
        return target  # the common case: nothing to quote, and quote() is slow
    return quote(target, safe="/+")
