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

Each file opens with a line naming what the cache is of (its payload's digest, the code
and the inputs). Every render writes last a small file, ``.render-cache.quiet``: what a
render that walks no group works from (:mod:`rebuilder.site.quiet`). Its line names the
inputs of the last render that finished: a render told that nothing changed compares
them (:func:`inputs_of`) without reading the rest, some 100 MB at Debian's size. The
queue's memo (:mod:`rebuilder.site.queue`) is a file of its own, ``.render-cache.queue``
(:func:`load_queue`).

Each part's v0 lines and v1 rows (one blob each, 60 % of the bytes) are in a file of
their own, ``.render-cache.blobs`` (:class:`Blobs`), written with the whole file: a render
reads only those of the groups it redoes.

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
import functools
import hashlib
import logging
import marshal
import operator
import os
from array import array
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, BinaryIO

from rebuilder import _fs
from rebuilder.site.paths import SiteError

log = logging.getLogger(__name__)

FILE = ".render-cache"  # a leading dot: no site path can be it (paths.segment encodes dots)
DELTA = f"{FILE}.delta"  # what changed since FILE was written
QUIET = f"{FILE}.quiet"  # what a render that walks no group needs (see :mod:`quiet`)
QUEUE = f"{FILE}.queue"  # the queue's memo (see :mod:`queue`)
FILES = f"{FILE}.files"  # which files the v0 and v1 lists are (RenderCache.list_files)
BLOBS = f"{FILE}.blobs"  # the parts' v0 lines and v1 rows, read one at a time (Blobs)
OWN = (FILE, DELTA, QUIET, QUEUE, FILES, BLOBS)  # the cache's files, none of them published
COMPILED = ".render-templates"  # the templates compiled (Jinja2's bytecode cache)
VERSION = 11  # 6: what a file is of, in a line before its payload; 8: QUIET, QUEUE; 9: columns
# 10: v0 lines and v1 rows as one blob each per part, and the lists' index; 11: those in BLOBS
REWRITE_SHARE = 0.1  # a delta holding this share of the entries: the whole file again

Part = tuple[Any, ...]  # a walk.Part, as a plain tuple (see walk.part)
# walk.Part's fields kept in BLOBS: in a part read from FILE, each is its blob's number there
# (see Blobs), in one made or read from a delta, the blob
BLOB_FIELDS = (4, 5)  # lines, v1
Memo = dict[tuple[str, ...], tuple[bytes, bytes]]  # the queue's (see site.queue)


@dataclass
class RenderCache:
    code: str = ""  # parts are only good for the code that made them (:func:`code_digest`)
    inputs: str = ""
    parts: dict[str, dict[str, Part]] = field(default_factory=dict)  # profile -> key -> part
    digests: dict[str, bytes] = field(default_factory=dict)  # see Output.write_known
    # in QUEUE (see site.queue): not compared, as a memo that holds other jobs' entries
    # too, or lacks some, makes the same files (see _memo_moved)
    queue: Memo = field(default_factory=dict, compare=False)
    # how many of its entries the memo it is saved over lacks (what a render counted as
    # it filled it: see _memo_moved); None: not counted, the keys are compared
    queue_new: int | None = field(default=None, compare=False)
    summary: dict[str, Any] | None = None  # in QUIET (see site.quiet); None: a render must walk
    # "v0" and "v1": each distribution's index of those lists (see aggregates.render_v0
    # and api_v1.write_packages)
    lists: dict[str, Any] = field(default_factory=dict)
    # the size, time and inode of each list file the render wrote, in FILES: of this
    # site's files, not of what a render makes (a copy of the site has other ones)
    list_files: dict[str, list[int]] = field(default_factory=dict, compare=False)
    # what the file on disk holds: its id, and the changes since (see :func:`finish`)
    base: str = field(default="", compare=False)
    delta: dict[str, Any] = field(default_factory=dict, compare=False)
    # what an incremental render may have changed of the last one's: the keys of each
    # profile's parts it made or dropped, and of the digests it set or dropped (None: any,
    # every entry is compared; see :func:`finish`)
    moved_parts: dict[str, set[str]] | None = field(default=None, compare=False)
    moved_digests: set[str] | None = field(default=None, compare=False)
    # where the blobs of the parts read from FILE are (None: FILE named none)
    blobs: Blobs | None = field(default=None, compare=False, repr=False)

    def blob(self, held: bytes | int) -> bytes:
        """A part's blob field (see BLOB_FIELDS) as bytes: read from BLOBS when a number."""
        if isinstance(held, bytes):
            return held
        try:
            if self.blobs is None:
                raise ValueError("a part names a blob, and the cache has no blob file")
            return self.blobs.read(held)
        # (changed under the render, which set the cache aside: the next one walks all)
        except (OSError, ValueError, TypeError) as e:
            raise SiteError(f"{BLOBS}: the render cache cannot be read: {e}") from None

    def resolved(self) -> RenderCache:
        """This cache with every blob as bytes (what two caches that describe the same
        site compare equal by: the numbers of their blobs differ)."""
        blob = self.blob
        parts = {
            p: {k: _with_blobs(part, blob) for k, part in by_key.items()}
            for p, by_key in self.parts.items()
        }
        return replace(self, parts=parts)


def _same_part(blob: Callable[[bytes | int], bytes], a: Part, b: Part) -> bool:
    """Whether two parts are the same, their blobs as bytes or as numbers (``blob`` reads
    one): a part made again as it was is no change to save."""
    if len(a) != len(b) or any(
        x != y for i, (x, y) in enumerate(zip(a, b, strict=True)) if i not in BLOB_FIELDS
    ):
        return False
    return all(a[i] == b[i] or blob(a[i]) == blob(b[i]) for i in BLOB_FIELDS)


def _with_blobs(part: Part, blob: Callable[[bytes | int], bytes]) -> Part:
    out = list(part)
    for i in BLOB_FIELDS:
        out[i] = blob(out[i])
    return tuple(out)


class Blobs:
    """BLOBS, the blobs of the parts a whole cache file holds, side by side after a head
    line naming that file (its digest). Kept apart because a render needs few of them:
    those of the groups it redoes (the v0 lines and v1 rows it takes out of the lists), or
    all of them only when a list must be made anew or the whole cache is saved again; they
    are 60 % of the cache's bytes, read and freed on every render when they were in it.

    A part read from FILE holds each blob's number (a small int: cheap to read back and
    free, unlike 90,000 offsets); FILE holds where each one starts in BLOBS. A blob is read
    when asked for; past :data:`READS_ALONE` of them, the whole file once."""

    READS_ALONE = 1_000

    def __init__(self, root: str, base: str, starts: bytes) -> None:
        """The blob file of the cache file whose digest is ``base``; ``starts``: where
        each blob starts in it, then where the last one ends (``array("Q")``'s bytes).
        ``ValueError`` when it is not that file: the cache is then not used."""
        self._path, self._base = f"{root}/{BLOBS}", base
        self._start = len(_BLOBS_MAGIC) + len(_blobs_head(base))
        self._starts = array("Q", starts)
        self._reads = 0
        self._whole: memoryview | None = None
        with open(self._path, "rb") as f:
            self._check(f)
            size = self._starts[-1] if self._starts else 0
            if os.fstat(f.fileno()).st_size != self._start + size:
                raise ValueError("the blob file is not as long as the cache file says")

    def read(self, number: int) -> bytes:
        if not 0 <= number < len(self._starts) - 1:
            raise ValueError("a blob's number is not one of the blob file's")
        start = self._starts[number]
        length = self._starts[number + 1] - start
        self._reads += 1
        if self._whole is None and self._reads > self.READS_ALONE:
            with open(self._path, "rb") as f:
                self._check(f)  # (which reads the head: the rest is the blobs)
                self._whole = memoryview(f.read())
        if self._whole is not None:
            data = bytes(self._whole[start : start + length])
        else:
            with open(self._path, "rb") as f:
                self._check(f)
                data = os.pread(f.fileno(), length, self._start + start)
        if len(data) != length:
            raise ValueError("the blob file is shorter than the cache file says")
        return data

    def _check(self, f: BinaryIO) -> None:
        head, _ = _split(f.read(self._start), _BLOBS_MAGIC)
        if head is None or head[0] != self._base:
            raise ValueError("the blob file is not that of the cache file")


def load(root: str) -> RenderCache:
    """The last render's cache (empty when there is none or it cannot be read)."""
    try:
        found = _read(root)
        if found is not None:
            head, payload, delta, changes = found
            doc = marshal.loads(payload)
            last = RenderCache(head[1], head[2], _by_key(doc["parts"]), doc["digests"])
            last.blobs = Blobs(root, head[0], doc["blobs"])
            last.lists, last.list_files = doc["lists"], _load_files(root)
            last.base = head[0]
            if delta is not None:
                _apply(last, delta, marshal.loads(changes))
            small = load_quiet(root)
            if small is not None and small[0] == last.code:
                last.inputs, last.summary = small[1], small[2]
            last.queue = load_queue(root, last.code)
            return last
    except FileNotFoundError:
        pass
    except (OSError, EOFError, ValueError, TypeError, KeyError, AttributeError) as e:
        log.info("site: render cache unreadable (%s): walking every group", e)
    return RenderCache()


def inputs_of(root: str) -> tuple[str, str] | None:
    """The code and inputs digests of the last render, read from the head of the small
    file every render writes last (None: no cache, or one that cannot be read)."""
    try:
        with open(f"{root}/{QUIET}", "rb") as f:
            head, _ = _split(f.read(_PEEK), _QUIET_MAGIC)
    except OSError:
        return None
    return None if head is None else (head[1], head[2])


def load_quiet(root: str) -> tuple[str, str, dict[str, Any] | None] | None:
    """The code, inputs and summary the last render left in QUIET: what a render that
    walks no group reads, with :func:`load_queue` (None: none, or one that cannot be read)."""
    try:
        with open(f"{root}/{QUIET}", "rb") as f:
            head, payload = _split(f.read(), _QUIET_MAGIC)
        if head is None:
            return None
        summary = marshal.loads(payload)
        return (head[1], head[2], summary) if isinstance(summary, dict | None) else None
    except FileNotFoundError:
        return None
    except (OSError, EOFError, ValueError, TypeError) as e:
        log.info("site: render cache unreadable (%s): walking every group", e)
        return None


def load_queue(root: str, code: str) -> Memo:
    """The queue's memo, made by ``code`` (empty: none, of other code, or unreadable).

    Its own file, apart from what a render sets aside: each entry is good for as long as
    its job's fields (its key) are the same, whatever became of the site since, and the
    file (62 MB for Debian's first queue) is written only when the memo moved by more than a
    share of it (:func:`_memo_moved`)."""
    try:
        with open(f"{root}/{QUEUE}", "rb") as f:
            head, payload = _split(f.read(), _QUEUE_MAGIC)
        if head is None or head[1] != code:
            return {}
        memo = marshal.loads(payload)
        return memo if isinstance(memo, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, EOFError, ValueError, TypeError) as e:
        log.info("site: the queue's memo is unreadable (%s): every job encoded", e)
        return {}


Head = tuple[str, str, str]  # what a file is of: the whole file's digest, the code, the inputs


def _read(root: str, size: int = -1) -> tuple[Head, memoryview, Head | None, memoryview] | None:
    """The whole file's head and payload, and its delta's when there is one made for it
    (``size``: the bytes read of each); None when the file is not a cache. Raises
    ``ValueError`` for a delta that is not one: the file alone is older than the site."""
    with open(f"{root}/{FILE}", "rb") as f:
        head, payload = _split(f.read(size), _MAGIC)  # (not marshal.load(f): small reads)
    if head is None:
        return None
    try:
        with open(f"{root}/{DELTA}", "rb") as f:
            delta, changes = _split(f.read(size), _DELTA_MAGIC)
    except FileNotFoundError:
        return head, payload, None, memoryview(b"")
    if delta is None:
        raise ValueError("the delta beside it is not one")
    if delta[0] != head[0]:  # a stale delta: the file is newer
        return head, payload, None, memoryview(b"")
    return head, payload, delta, changes


def _split(data: bytes, magic: bytes) -> tuple[Head | None, memoryview]:
    """A file's head (its base, code and inputs) and its payload, a view of ``data`` (no
    copy of some 100 MB); (None, empty) when it is not such a file."""
    end = data.find(b"\n", len(magic), len(magic) + _PEEK)
    if not data.startswith(magic) or end < 0:
        return None, memoryview(b"")
    fields = data[len(magic) : end].decode("ascii", "replace").split(" ")
    if len(fields) != 3:
        return None, memoryview(b"")
    return (fields[0], fields[1], fields[2]), memoryview(data)[end + 1 :]


def _blobs_head(base: str) -> bytes:
    return f"{base} - -\n".encode("ascii")


def _head(base: str, cache: RenderCache) -> bytes:
    # (digests are hex: no space, no newline)
    return f"{base} {cache.code} {cache.inputs}\n".encode("ascii")


def _apply(cache: RenderCache, head: Head, delta: dict[str, Any]) -> None:
    cache.code, cache.inputs = head[1], head[2]
    cache.parts = {p: cache.parts.get(p, {}) for p in delta["profiles"]}
    for profile, changes in delta["parts"].items():
        _update(cache.parts[profile], changes)
    _update(cache.digests, delta["digests"])
    cache.lists = delta["lists"]
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
    with contextlib.suppress(FileNotFoundError):
        os.replace(f"{root}/{QUIET}", f"{root}/{QUIET}.last")  # (every render writes its own)


def finish_quiet(root: str, cache: RenderCache, last_queue: Memo) -> None:
    """Save the cache of a render that walked no group: the last one's files put back
    as they were (its parts and digests are this render's), QUIET, and QUEUE if the
    memo is not ``last_queue`` (the last render's)."""
    for name in (FILE, DELTA):
        with contextlib.suppress(FileNotFoundError):
            os.replace(f"{root}/{name}.last", f"{root}/{name}")
    _save_small(root, cache, last_queue)


def finish(root: str, last: RenderCache, cache: RenderCache) -> None:
    """Save this render's cache: the last one's files put back untouched when it is the
    same (a render that changes nothing changes no file), with the difference beside
    the whole while that is small, else the whole of it again."""
    old, old_delta = f"{root}/{FILE}.last", f"{root}/{DELTA}.last"
    # the memo in QUEUE: the last render's code's, which this one's replaces whole (the
    # same jobs, other entries: compared with it, the memo would look unmoved, and the next
    # render would find one of other code, none, and encode every job again)
    on_disk = last.queue if last.code == cache.code else {}
    if last.base and os.path.exists(old):
        delta, moved = _delta(last, cache)
        same = not moved and (last.code, last.inputs) == (cache.code, cache.inputs)
        if same and list(last.parts) == list(cache.parts):
            finish_quiet(root, cache, on_disk)
            return
        if delta is not None:
            try:
                data = _DELTA_MAGIC + _head(last.base, cache) + marshal.dumps(delta)
                _fs.write_atomic(f"{root}/{DELTA}", data)
                _save_files(root, cache)
                os.replace(old, f"{root}/{FILE}")
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(old_delta)
                _save_small(root, cache, on_disk)
                return
            except (OSError, ValueError) as e:
                log.info("site: cannot save the render cache's difference: %s", e)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(f"{root}/{DELTA}")  # (one written above for the file put back)
    _save_files(root, cache)
    _save(root, cache)
    for path in (old, old_delta):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
    _save_small(root, cache, on_disk)


def _delta(last: RenderCache, cache: RenderCache) -> tuple[dict[str, Any] | None, int]:
    """Every change from the file on disk to ``cache`` (the last delta's and this
    render's; None when that is too large a share of the whole), and how many of
    them this render made."""
    before = last.delta
    parts: dict[str, dict[str, Any]] = {p: dict(c) for p, c in before.get("parts", {}).items()}
    moved = 0
    by_profile = cache.moved_parts or {}
    same = functools.partial(_same_part, cache.blob)
    for profile in last.parts.keys() | cache.parts.keys():
        old, new = last.parts.get(profile, {}), cache.parts.get(profile, {})
        moved += _diff(old, new, parts, profile, by_profile.get(profile), same)
    digests: dict[str, dict[str, Any]] = {"": dict(before.get("digests", {}))}
    moved += _diff(last.digests, cache.digests, digests, "", cache.moved_digests)
    moved += last.lists != cache.lists
    size = sum(map(len, parts.values())) + len(digests[""])
    whole = sum(map(len, cache.parts.values())) + len(cache.digests)
    if size > REWRITE_SHARE * whole:
        return None, moved
    kept = {p: c for p, c in parts.items() if p in cache.parts}
    delta = {"profiles": list(cache.parts), "parts": kept, "digests": digests[""]}
    delta["lists"] = cache.lists  # (small: whole)
    return delta, moved


def _diff(
    old: dict[str, Any],
    new: dict[str, Any],
    into: dict[str, dict[str, Any]],
    at: str,
    keys: set[str] | None = None,
    same: Callable[[Any, Any], bool] = operator.eq,
) -> int:
    """Record in ``into[at]`` what differs from ``old`` to ``new`` (None: gone), and
    count it; ``keys``: the only ones that can differ (None: any). Values taken over from
    the last render are the same objects: most are passed by identity. An incremental
    render names what it moved: a few hundred keys, not the 300,000 digests and 45,000
    parts of a Debian-sized site looked at one by one."""
    changes = into.setdefault(at, {})
    n = 0
    if keys is not None:
        for k in keys:
            v, was = new.get(k), old.get(k)
            if was is not v and (was is None or v is None or not same(was, v)):
                changes[k] = v  # (None when gone)
                n += 1
        return n
    for k, v in new.items():
        was = old.get(k)
        if was is not v and (was is None or not same(was, v)):
            changes[k] = v
            n += 1
    for k in old.keys() - new.keys():
        changes[k] = None
        n += 1
    return n


_MAGIC = b"rebuilder render cache %d\n" % VERSION
_BLOBS_MAGIC = b"rebuilder render cache blobs %d\n" % VERSION
_DELTA_MAGIC = b"rebuilder render cache delta %d\n" % VERSION
_QUIET_MAGIC = b"rebuilder render cache quiet %d\n" % VERSION
_QUEUE_MAGIC = b"rebuilder render cache queue %d\n" % VERSION
_PEEK = 512  # bytes that hold a file's head


def _save(root: str, cache: RenderCache) -> None:
    """FILE and its BLOBS, whole (a part's blobs that are numbers in the last BLOBS are read
    from it: ``cache.blobs``, open since the last render's cache was read)."""
    try:
        parts, blobs, starts = _placed(cache)
        # (digests sorted: forked processes hand theirs in after the driver set its own)
        digests = dict(sorted(cache.digests.items()))
        doc = {"parts": _by_column(parts), "digests": digests, "blobs": starts}
        payload = marshal.dumps(doc | {"lists": cache.lists})
        # the digest names this file for a delta (a delta made for another is not applied)
        # and for its blobs, and the same cache makes the same file
        base = hashlib.blake2b(payload, digest_size=16).hexdigest()
        _fs.write_atomic(f"{root}/{BLOBS}", _BLOBS_MAGIC + _blobs_head(base) + blobs)
        _fs.write_atomic(f"{root}/{FILE}", _MAGIC + _head(base, cache) + payload)
    except (OSError, ValueError) as e:  # a missing cache costs the next render time, no more
        log.warning("site: cannot save the render cache: %s", e)


def _placed(cache: RenderCache) -> tuple[dict[str, dict[str, Part]], bytes, bytes]:
    """The parts with each blob replaced by its number in the blob file, that file's blobs
    (each one once: the empty blob of every unseen group, a blob of the last file), and
    where each starts (``array("Q")``'s bytes, see :class:`Blobs`)."""
    pieces: list[bytes] = []
    starts = array("Q", [0])
    seen: dict[bytes | int, int] = {}
    parts: dict[str, dict[str, Part]] = {}
    for profile, by_key in cache.parts.items():
        out = parts[profile] = {}
        for key, part in by_key.items():
            fields = list(part)
            for i in BLOB_FIELDS:
                held = fields[i]
                number = seen.get(held)
                if number is None:
                    data = cache.blob(held)
                    number = seen[held] = len(pieces)
                    pieces.append(data)
                    starts.append(starts[-1] + len(data))
                fields[i] = number
            out[key] = tuple(fields)
    return parts, b"".join(pieces), starts.tobytes()


Columns = dict[str, tuple[list[str], list[tuple[Any, ...]]]]


def _by_column(parts: dict[str, dict[str, Part]]) -> Columns:
    """Each profile's parts as its keys and one tuple per field of a part.

    Read back, the objects of one field then lie side by side in memory (not each part's
    between the next one's). A render touches most fields of a kind together (its v1 rows,
    its v0 lines) after it forked a process for its lists; each memory page it writes
    to then is a copy, and a field in a few pages costs few."""
    return {p: (list(c), list(zip(*c.values(), strict=True))) for p, c in parts.items()}


def _by_key(columns: Columns) -> dict[str, dict[str, Part]]:
    return {
        p: dict(zip(keys, zip(*fields, strict=True), strict=True))
        for p, (keys, fields) in columns.items()
    }


def _load_files(root: str) -> dict[str, list[int]]:
    """FILES: a file it names is patched only while it is the same (an older FILES names
    files a render replaced since, a new inode each; one that cannot be read, none)."""
    try:
        with open(f"{root}/{FILES}", "rb") as f:
            found = marshal.loads(f.read())
    except (OSError, EOFError, ValueError, TypeError):
        return {}
    return found if isinstance(found, dict) else {}


def _save_files(root: str, cache: RenderCache) -> None:
    if cache.list_files != _load_files(root):
        try:
            _fs.write_atomic(f"{root}/{FILES}", marshal.dumps(cache.list_files))
        except (OSError, ValueError) as e:
            log.warning("site: cannot save the render cache: %s", e)


def _save_small(root: str, cache: RenderCache, last_queue: Memo) -> None:
    """QUEUE when the memo moved (:func:`_memo_moved`), then QUIET, whole and last, so that
    its head names the inputs of a render that finished (:func:`inputs_of`)."""
    if _memo_moved(cache.queue, last_queue, cache.queue_new):
        try:
            payload = marshal.dumps(cache.queue)
            head = f"- {cache.code} -\n".encode("ascii")  # (the code alone: see load_queue)
            _fs.write_atomic(f"{root}/{QUEUE}", _QUEUE_MAGIC + head + payload)
        except (OSError, ValueError) as e:
            log.warning("site: cannot save the queue's memo: %s", e)
    path, last = f"{root}/{QUIET}", f"{root}/{QUIET}.last"
    try:  # a render that changes nothing changes no file (marshal's bytes for the same
        # data vary with how its objects are shared: the data is compared)
        with open(last, "rb") as f:
            was, kept = _split(f.read(), _QUIET_MAGIC)
        if was == ("-", cache.code, cache.inputs) and marshal.loads(kept) == cache.summary:
            os.replace(last, path)
            return
    except (OSError, EOFError, ValueError, TypeError):
        pass
    try:
        _fs.write_atomic(path, _QUIET_MAGIC + _head("-", cache) + marshal.dumps(cache.summary))
    except (OSError, ValueError) as e:
        log.warning("site: cannot save the render cache: %s", e)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(last)


def _memo_moved(memo: Memo, last: Memo, new: int | None = None) -> bool:
    """Whether the queue's memo is worth writing over the file's (``last``): when the jobs
    they hold differ by more than a share of them. A memo is keyed by all that its entries
    are made of, so one that lacks a few of this render's jobs costs the next render their
    encoding (about a millisecond for a hundred), and one that holds a few gone jobs their
    room; writing it whole would cost every pass that moves the queue a little (62 MB at
    Debian's first queue).

    ``new``: how many of the memo's keys ``last`` lacks, as the render counted them while
    it filled the memo from ``last`` (:func:`rebuilder.site.queue.write_queue`); the others
    are keys of ``last``, so the two differ by those and by the keys of ``last`` the memo
    lacks. None: the keys are compared (each a tuple of a job's dozen fields: 40 ms for
    18,000 jobs, on every render).

    >>> _memo_moved({("a",): (b"", b"")}, {}), _memo_moved({}, {})
    (True, False)
    >>> last = {(str(i),): (b"", b"") for i in range(20)}
    >>> memo = {k: v for k, v in last.items() if k != ("0",)} | {("x",): (b"", b"")}
    >>> _memo_moved(memo, last), _memo_moved(memo, last, 1), _memo_moved(memo, last, 3)
    (False, False, True)
    """
    if new is not None:
        differ = new + len(last) - (len(memo) - new)
    elif memo.keys() == last.keys():  # (the same keys, the same entries: the same code)
        return False
    else:
        differ = len(memo.keys() ^ last.keys())
    return differ > REWRITE_SHARE * len(memo)


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
