"""What a render remembers for the next one: the site's hidden ``.render-cache`` file.

An incremental render (``changed`` given) must cost what changed, yet the aggregates
(``pkgs/list``, the v1 list, the search index, suite and maintainer counts) are built
from every group. So each render saves, per profile and group key, the group's
*part*: what the walk derived from its record that is costly to derive again (the
encoded v0 and v1 lines, the served build files, its list row). The next render takes
the part of every group not in ``changed`` from here instead of from its record.
Besides the parts it keeps ``inputs``, a digest of everything a render reads but the
records (the code, the templates, the other fields of the views, the options): when
that differs, no part is trusted; when it is equal and ``changed`` is empty, the site
is as the last render left it and the render does nothing.

The file is derived data like the rest of the site: it is set aside when a render
starts and written when it ends, so a render that stops half-way leaves none, and
one that is missing, unreadable or of another version means a full walk. marshal:
builtin types only, nothing in the file can run code when it is read.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import marshal
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rebuilder import _fs

log = logging.getLogger(__name__)

FILE = ".render-cache"  # a leading dot: no site path can be it (paths.segment encodes dots)
COMPILED = ".render-templates"  # the templates compiled (Jinja2's bytecode cache)
VERSION = 4  # 4: parts keep the v1 rows' sort keys and the build files' folders

Part = tuple[Any, ...]  # see walk.part / walk.from_part


@dataclass
class RenderCache:
    code: str = ""  # parts are only good for the code that made them (:func:`code_digest`)
    inputs: str = ""
    parts: dict[str, dict[str, Part]] = field(default_factory=dict)  # profile -> key -> part
    digests: dict[str, bytes] = field(default_factory=dict)  # see Output.write_known


def load(root: str) -> RenderCache:
    """The last render's cache (empty when there is none or it cannot be read)."""
    try:
        with open(f"{root}/{FILE}", "rb") as f:
            doc = marshal.loads(f.read())  # load(f) reads the file in small pieces
        if isinstance(doc, dict) and doc.get("version") == VERSION:
            return RenderCache(doc["code"], doc["inputs"], doc["parts"], doc["digests"])
    except FileNotFoundError:
        pass
    except (OSError, EOFError, ValueError, TypeError, KeyError) as e:
        log.info("site: render cache unreadable (%s): walking every group", e)
    return RenderCache()


def begin(root: str) -> None:
    """Set the last render's cache aside: until this render finishes, the site is not
    what the cache says (renamed, not removed: :func:`finish` may put it back as it was)."""
    with contextlib.suppress(FileNotFoundError):
        os.replace(f"{root}/{FILE}", f"{root}/{FILE}.last")


def finish(root: str, last: RenderCache, cache: RenderCache) -> None:
    """Save this render's cache; one equal to the last is put back untouched (a render
    that changes nothing changes no file)."""
    old = f"{root}/{FILE}.last"
    if last == cache:
        with contextlib.suppress(FileNotFoundError):
            os.replace(old, f"{root}/{FILE}")
            return
    _save(root, cache)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(old)


def _save(root: str, cache: RenderCache) -> None:
    doc = {"version": VERSION, **vars(cache)}
    try:
        _fs.write_atomic(f"{root}/{FILE}", marshal.dumps(doc))
    except (OSError, ValueError) as e:  # a missing cache costs the next render time, no more
        log.warning("site: cannot save the render cache: %s", e)


def code_digest() -> str:
    """Size and mtime of every module of the package: an upgrade makes the parts stale."""
    return files_digest(Path(__file__).resolve().parent.parent.rglob("*.py"))


def files_digest(files: Iterable[Path | str]) -> str:
    """Names, sizes and mtimes of ``files`` (a str is taken as it is: another digest)."""
    h = hashlib.sha256(str(VERSION).encode())
    for f in sorted(files, key=str):
        if isinstance(f, str):
            h.update(f"{f}\n".encode())
            continue
        with contextlib.suppress(OSError):
            st = f.stat()
            h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()
