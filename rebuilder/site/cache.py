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

A Debian-sized cache is some 80 MB, and a pass changes a few hundred groups: writing
it whole would cost a small render more than its pages. So a render whose cache differs
little from the file on disk writes only the difference, ``.render-cache.delta`` (every
change since that file was written, not only this render's), and the whole file again
once the difference grows past a share of it.
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
DELTA = f"{FILE}.delta"  # what changed since FILE was written
COMPILED = ".render-templates"  # the templates compiled (Jinja2's bytecode cache)
VERSION = 5  # 5: a delta file beside the whole one
REWRITE_SHARE = 0.1  # a delta holding this share of the entries: the whole file again

Part = tuple[Any, ...]  # a walk.Part, as a plain tuple (see walk.part)


@dataclass
class RenderCache:
    code: str = ""  # parts are only good for the code that made them (:func:`code_digest`)
    inputs: str = ""
    parts: dict[str, dict[str, Part]] = field(default_factory=dict)  # profile -> key -> part
    digests: dict[str, bytes] = field(default_factory=dict)  # see Output.write_known
    # what the file on disk holds: its id, and the changes since (see :func:`finish`)
    base: str = field(default="", compare=False)
    delta: dict[str, Any] = field(default_factory=dict, compare=False)


def load(root: str) -> RenderCache:
    """The last render's cache (empty when there is none or it cannot be read)."""
    try:
        with open(f"{root}/{FILE}", "rb") as f:
            data = f.read()  # (marshal.load(f) would read the file in small pieces)
        magic, base, payload = data[: len(_MAGIC)], data[len(_MAGIC) : _HEAD], data[_HEAD:]
        if magic == _MAGIC:
            doc = marshal.loads(payload)
            last = RenderCache(doc["code"], doc["inputs"], doc["parts"], doc["digests"])
            last.base = base[:-1].decode()
            with contextlib.suppress(FileNotFoundError):
                with open(f"{root}/{DELTA}", "rb") as f:
                    delta = marshal.loads(f.read())
                if delta["base"] == last.base:  # else a stale delta: the file is newer
                    _apply(last, delta)
            return last
    except FileNotFoundError:
        pass
    except (OSError, EOFError, ValueError, TypeError, KeyError, AttributeError) as e:
        log.info("site: render cache unreadable (%s): walking every group", e)
    return RenderCache()


def _apply(cache: RenderCache, delta: dict[str, Any]) -> None:
    cache.code, cache.inputs = delta["code"], delta["inputs"]
    cache.parts = {p: cache.parts.get(p, {}) for p in delta["profiles"]}
    for profile, changes in delta["parts"].items():
        _update(cache.parts[profile], changes)
    _update(cache.digests, delta["digests"])
    cache.delta = delta


def _update(target: dict[str, Any], changes: dict[str, Any]) -> None:
    """Apply ``changes`` (None: the key is gone) to ``target``."""
    for k, v in changes.items():
        if v is None:
            target.pop(k, None)
        else:
            target[k] = v


def begin(root: str) -> None:
    """Set the last render's cache aside: until this render finishes, the site is not
    what the cache says (renamed, not removed: :func:`finish` may put it back as it was)."""
    for name in (FILE, DELTA):
        with contextlib.suppress(FileNotFoundError):
            os.replace(f"{root}/{name}", f"{root}/{name}.last")


def finish(root: str, last: RenderCache, cache: RenderCache) -> None:
    """Save this render's cache: the last one's files put back untouched when it is the
    same (a render that changes nothing changes no file), with the difference beside
    the whole while that is small, else the whole of it again."""
    old, old_delta = f"{root}/{FILE}.last", f"{root}/{DELTA}.last"
    if last.base and os.path.exists(old):
        delta, moved = _delta(last, cache)
        same = not moved and (last.code, last.inputs) == (cache.code, cache.inputs)
        if same and list(last.parts) == list(cache.parts):
            for name in (FILE, DELTA):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(f"{root}/{name}.last", f"{root}/{name}")
            return
        if delta is not None:
            try:
                _fs.write_atomic(f"{root}/{DELTA}", marshal.dumps(delta))
                os.replace(old, f"{root}/{FILE}")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(old_delta)
                return
            except (OSError, ValueError) as e:
                log.info("site: cannot save the render cache's difference: %s", e)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{root}/{DELTA}")  # (one written above for the file put back)
    _save(root, cache)
    for path in (old, old_delta):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


def _delta(last: RenderCache, cache: RenderCache) -> tuple[dict[str, Any] | None, int]:
    """Every change from the file on disk to ``cache`` (the last delta's and this
    render's; None when that is too large a share of the whole), and how many of
    them this render made."""
    before = last.delta
    parts: dict[str, dict[str, Any]] = {p: dict(c) for p, c in before.get("parts", {}).items()}
    moved = 0
    for profile in last.parts.keys() | cache.parts.keys():
        moved += _diff(last.parts.get(profile, {}), cache.parts.get(profile, {}), parts, profile)
    digests: dict[str, dict[str, Any]] = {"": dict(before.get("digests", {}))}
    moved += _diff(last.digests, cache.digests, digests, "")
    size = sum(map(len, parts.values())) + len(digests[""])
    whole = sum(map(len, cache.parts.values())) + len(cache.digests)
    if size > REWRITE_SHARE * whole:
        return None, moved
    kept = {p: c for p, c in parts.items() if p in cache.parts}
    delta = {
        "base": last.base, "code": cache.code, "inputs": cache.inputs,
        "profiles": list(cache.parts), "parts": kept, "digests": digests[""],
    }  # fmt: skip
    return delta, moved


def _diff(
    old: dict[str, Any], new: dict[str, Any], into: dict[str, dict[str, Any]], at: str
) -> int:
    """Record in ``into[at]`` what differs from ``old`` to ``new`` (None: gone), and
    count it. Values taken over from the last render are the same objects: most are
    passed by identity."""
    changes = into.setdefault(at, {})
    n = 0
    for k, v in new.items():
        was = old.get(k)
        if was is not v and was != v:
            changes[k] = v
            n += 1
    for k in old.keys() - new.keys():
        changes[k] = None
        n += 1
    return n


_MAGIC = b"rebuilder render cache %d\n" % VERSION
_HEAD = len(_MAGIC) + 33  # and the payload's digest (32 hex digits, a newline)


def _save(root: str, cache: RenderCache) -> None:
    payload = marshal.dumps({k: getattr(cache, k) for k in ("code", "inputs", "parts", "digests")})
    # the digest names this file for a delta (a delta made for another is not applied),
    # and the same cache makes the same file
    base = hashlib.blake2b(payload, digest_size=16).hexdigest().encode()
    try:
        _fs.write_atomic(f"{root}/{FILE}", _MAGIC + base + b"\n" + payload)
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
