"""The results store: every attempt's files under ``<site>/builds/<build id>/``.

The one place for its layout, for what a path into it may be, and for how its files are
written. The runner and the Dask path write it, the pipeline copies into it (shards), the
site reads it; each names a file by its path relative to the store, as the state records it
(``Attempt.files``), and a state file is input like any other: :func:`safe_rel` is checked
before any such path is used.

>>> str(safe_rel("12/log.gz")), str(safe_rel("12/meta/env.txt", build_id=12))
('12/log.gz', '12/meta/env.txt')
>>> [safe_rel(p) for p in ("", "/etc/passwd", "12/../13/log.gz", "12//x", "a\\x00", "a\\\\b")]
[None, None, None, None, None, None]
>>> safe_rel("13/log.gz", build_id=12) is None, safe_rel("12", build_id=12) is None
(True, True)
"""

from __future__ import annotations

import gzip
from pathlib import Path, PurePosixPath

from rebuilder import _fs

STORE = "builds"  # the store's folder in the site
MAX_REL = 1024  # longer relative paths are refused: no file system needs them


def store_dir(site_dir: Path) -> Path:
    """The results store of the site in ``site_dir``."""
    return site_dir / STORE


def safe_rel(rel: object, *, build_id: int | None = None) -> PurePosixPath | None:
    """``rel`` if it is a plain path relative to the store, else None.

    Plain: a non-empty string, relative, without NUL or backslash, no empty, ``.`` or ``..``
    component, at most :data:`MAX_REL` characters. With ``build_id``, it must also lie in
    that build's own folder (``<build_id>/...``).
    """
    return (
        PurePosixPath(rel) if isinstance(rel, str) and is_safe_rel(rel, build_id=build_id) else None
    )


def is_safe_rel(rel: object, *, build_id: int | None = None) -> bool:
    """Whether :func:`safe_rel` takes ``rel`` (without making a path: a render asks it for
    every file of every build)."""
    if not isinstance(rel, str) or not rel or len(rel) > MAX_REL:
        return False
    if "\0" in rel or "\\" in rel or rel.startswith("/"):
        return False
    parts = rel.split("/")
    if "" in parts or "." in parts or ".." in parts:
        return False
    return build_id is None or (len(parts) >= 2 and parts[0] == str(build_id))


def gzip_bytes(data: bytes) -> bytes:
    """A text file as the store keeps it: gzip, with no timestamp (same bytes, same file)."""
    return gzip.compress(data, compresslevel=6, mtime=0)


def write_atomic(path: Path, data: bytes) -> None:
    """Write a store file whole or not at all (:func:`rebuilder._fs.write_atomic`), making
    its folders. OSError names ``path``.

    Not durable: a store file lost in a crash is a missing file the site reports, and the
    attempt is rebuilt; the state, which must survive, has its own durable write.
    """
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OSError(e.errno, e.strerror, str(path)) from None
    _fs.write_atomic(path, data)
