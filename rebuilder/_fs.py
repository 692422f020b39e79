"""The one atomic write of the tree: a file is replaced whole or not at all.

A ground-floor module (it imports nothing of rebuilder's). Its users add their own rules on
top: the state asks for a durable write (:mod:`rebuilder.state`), the results store makes its
folders (:mod:`rebuilder.results`), the site writes only what changed
(:mod:`rebuilder.site.output`). Errors are :class:`OSError` naming the target (not the
temporary file), for each caller to turn into its own one-line error.

>>> import tempfile
>>> from pathlib import Path
>>> d = Path(tempfile.mkdtemp())
>>> write_atomic(d / "a", b"first")
>>> with replacing(d / "a") as out:
...     _ = out.file.write(b"second")
...     out.discard()  # e.g. the same bytes as the file already holds
>>> (d / "a").read_bytes(), [p.name for p in d.iterdir()]
(b'first', ['a'])
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO


@dataclass
class Replacement:
    """A write in progress: ``file`` is the temporary file beside the target."""

    file: BinaryIO
    discarded: bool = False

    def discard(self) -> None:
        """Leave the target as it was (the temporary file is removed)."""
        self.discarded = True


@contextlib.contextmanager
def replacing(path: str | os.PathLike[str], *, durable: bool = False) -> Iterator[Replacement]:
    """Write the new content of ``path`` to the yielded file (open for reading too); at the
    end of the block it replaces ``path`` in one rename (unless discarded, or the block
    raised). Errors of the block itself pass through unchanged.

    The temporary file is ``.<name>.<pid>.<thread>.tmp`` in the same folder (a rename
    cannot cross file systems; the ids keep two writers of one path apart, e.g. two
    threads downloading one file, and a crash leaves at most one such file per writer).
    Its mode follows the umask, as ``open`` does.
    ``durable``: fsync the file before the rename and the folder after it, so that the new
    content survives a crash (the state); without, a crash may lose a write, never half of
    one (derived files: the site, the results store). The folder must exist.
    """
    target = os.fspath(path)
    tmp = temp_path(target)
    try:
        f = open(tmp, "w+b")  # noqa: SIM115 (closed below, before the rename)
    except OSError as e:
        raise _named(e, target) from None
    out, finishing = Replacement(f), False
    try:
        with f:
            yield out  # what the block raises goes on as it is (the temp file removed)
            finishing = True
            if durable and not out.discarded:
                f.flush()
                os.fsync(f.fileno())
        if out.discarded:
            os.unlink(tmp)
            return
        os.replace(tmp, target)
        if durable:
            fsync_dir(os.path.dirname(target) or ".")
    except OSError as e:
        _unlink_quietly(tmp)
        if finishing:  # a full disk: the error names the file, not only "No space left"
            raise _named(e, target) from None
        raise
    except BaseException:
        _unlink_quietly(tmp)
        raise


def write_atomic(path: str | os.PathLike[str], data: bytes, *, durable: bool = False) -> None:
    """Replace ``path`` with ``data`` whole or not at all (see :func:`replacing`, whose
    rules it keeps: the same temporary name, mode and errors; plain descriptors rather than
    a file object, which costs more than the write itself for the site's small pages)."""
    target = os.fspath(path)
    tmp = temp_path(target)
    _write_file(tmp, os.O_TRUNC, data, target, durable=durable)
    try:
        os.replace(tmp, target)
        if durable:
            fsync_dir(os.path.dirname(target) or ".")
    except OSError as e:
        _unlink_quietly(tmp)
        raise _named(e, target) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


def write_new(path: str | os.PathLike[str], data: bytes) -> None:
    """Make ``path``, which must not exist, holding ``data``: for a file in a folder its
    writer has just made, which no reader can know of yet, so it needs no temporary name
    and rename. A failed write (a full disk) leaves no file behind. Not durable.
    :class:`FileExistsError` when it exists."""
    target = os.fspath(path)
    _write_file(target, os.O_EXCL, data, target)


def _write_file(path: str, flags: int, data: bytes, target: str, *, durable: bool = False) -> None:
    """Make ``path`` (opened with ``flags`` besides :data:`_CREATE`) hold ``data``, fsync'd
    when ``durable``; a failed write removes it. OSError names ``target``."""
    try:
        fd = os.open(path, _CREATE | flags, 0o666)
    except OSError as e:
        raise _named(e, target) from None
    try:
        try:
            _write_all(fd, data)
            if durable:
                os.fsync(fd)
        finally:
            os.close(fd)
    except BaseException as e:
        _unlink_quietly(path)
        if isinstance(e, OSError):
            raise _named(e, target) from None
        raise


_CREATE = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def temp_path(target: str) -> str:
    """Where a new version of ``target`` is made before it is renamed over it (see
    :func:`replacing`; also for a hard link replacing a file)."""
    folder, name = os.path.split(target)
    return os.path.join(folder, f".{name}.{os.getpid()}.{threading.get_native_id()}.tmp")


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename in folder ``path`` durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _named(e: OSError, target: str) -> OSError:
    return OSError(e.errno, e.strerror, target)


def _unlink_quietly(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
