"""The one atomic write of the tree: a file is replaced whole or not at all.

A ground-floor module (it imports nothing of rebuilder's). Its users add their own rules on
top: the state asks for a durable write (:mod:`rebuilder.state`), the results store makes its
folders (:mod:`rebuilder.results`), the site writes only what changed
(:mod:`rebuilder.site.output`). Errors are :class:`OSError` naming the target (not the
temporary file), for each caller to turn into its own one-line error.

A write that is not durable puts the new file in place of an old one by exchanging the two
(:func:`swap_in`), not by renaming over it: ext4 (``auto_da_alloc``, its default) starts
writing out a file renamed over another before the rename returns, some 0.3 ms of waiting
per small file, which is most of what an incremental render's 500-odd rewritten pages cost
the driver. The price is the one every file system without that rule pays (XFS...): a
system crash soon after may leave the new file empty. A render trusts nothing the last one
wrote after the machine restarted (:func:`boot_id`).

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
import errno
import functools
import itertools
import os
import queue
import stat
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO

# a file's bytes, whole or in pieces that are written one after the other without being
# joined first (a list file patched in a few places is 85 MB of slices of the old one)
Data = bytes | Sequence[bytes | memoryview]


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

    The temporary file is ``.<name>.<pid>.<thread>.<n>.tmp`` in the same folder (a rename
    cannot cross file systems; the ids keep two writers of one path apart, e.g. two
    threads downloading one file, and each write's own: the old file it swaps out may
    wait there for its removal, :func:`removing_later`). A crash leaves at most one such
    file per writer, and those still waiting for their removal.
    Its mode follows the umask, as ``open`` does.
    ``durable``: fsync the file before the rename and the folder after it, so that the new
    content survives a crash (the state); without, a system crash may lose the write or
    leave the file empty (derived files: the site, the results store), and the file is put
    in place by :func:`swap_in`. The folder must exist.
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
        if durable:
            os.replace(tmp, target)
            fsync_dir(os.path.dirname(target) or ".")
        else:
            swap_in(tmp, target)
    except OSError as e:
        _unlink_quietly(tmp)
        if finishing:  # a full disk: the error names the file, not only "No space left"
            raise _named(e, target) from None
        raise
    except BaseException:
        _unlink_quietly(tmp)
        raise


def write_atomic(path: str | os.PathLike[str], data: Data, *, durable: bool = False) -> None:
    """Replace ``path`` with ``data`` whole or not at all (see :func:`replacing`, whose
    rules it keeps: the same temporary name, mode and errors; plain descriptors rather than
    a file object, which costs more than the write itself for the site's small pages)."""
    target = os.fspath(path)
    tmp = temp_path(target)
    if data_size(data) >= DROP_OLD_MIN:
        _drop_cached(target)
    _write_file(tmp, os.O_TRUNC, data, target, durable=durable)
    try:
        if durable:
            os.replace(tmp, target)
            fsync_dir(os.path.dirname(target) or ".")
        else:
            swap_in(tmp, target)
    except OSError as e:
        _unlink_quietly(tmp)
        raise _named(e, target) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise


# bytes of a new version from which the old one's cached pages are dropped before it is
# written (see _drop_cached)
DROP_OLD_MIN = 1 << 20


def pieces(data: Data) -> Sequence[bytes | bytearray | memoryview]:
    """``data`` as the pieces it is written from: itself alone when it is one buffer."""
    return (data,) if isinstance(data, bytes | bytearray | memoryview) else data


def data_size(data: Data) -> int:
    return sum(map(len, pieces(data)))


def _drop_cached(target: str) -> None:
    """Free the page cache of ``target``'s old version before its new one is written.

    The kernel hands a write pages that were freed just before it for a tenth of what it
    takes to provide others (on this project's VMs, 31 MB in 0.01 s instead of 0.12 s):
    the old version's pages, dropped first, are those. A reader of the old file meanwhile
    reads it back from the disk, whole as before. Only its written-out pages are dropped
    (the old version of a list a render wrote the same minute is written out first, as the
    kernel would within half a minute anyway), so it is done for large files only."""
    try:
        fd = os.open(target, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return  # (no old version, or none to read: nothing to drop)
    try:
        with contextlib.suppress(OSError, AttributeError):  # (no fadvise: no gain, no harm)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def write_new(path: str | os.PathLike[str], data: Data) -> None:
    """Make ``path``, which must not exist, holding ``data``: for a file in a folder its
    writer has just made, which no reader can know of yet, so it needs no temporary name
    and rename. A failed write (a full disk) leaves no file behind. Not durable.
    :class:`FileExistsError` when it exists."""
    target = os.fspath(path)
    _write_file(target, os.O_EXCL, data, target)


def _write_file(path: str, flags: int, data: Data, target: str, *, durable: bool = False) -> None:
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


def _write_all(fd: int, data: Data) -> None:
    if isinstance(data, bytes | bytearray | memoryview):
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        return
    # pieces: as many as one call takes at a time; a short write goes on where it stopped
    left = [memoryview(piece) for piece in data if len(piece)]
    while left:
        batch = left[:_IOV_MAX]
        done = os.writev(fd, batch)
        at = 0
        while at < len(batch) and done >= len(batch[at]):
            done -= len(batch[at])
            at += 1
        if at < len(batch):
            left[: at + 1] = [left[at][done:]]
        else:
            del left[:at]


_IOV_MAX = os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 16


def swap_in(tmp: str, target: str) -> None:
    """Put the file ``tmp`` at ``target`` in one step, as :func:`os.replace` does (a reader
    of ``target`` sees the old file or the new, whole), then remove the old one (within
    :func:`removing_later`, by a thread of its own). Where ``target`` exists it is
    exchanged with ``tmp`` (Linux's ``renameat2``), which ext4 does not make wait for the
    new file's data to be written out (see the module's text); where that is not to be had
    (no such file yet, another system, a file system without it), a rename. A folder at
    ``target`` is left as it is (:class:`IsADirectoryError`), as by :func:`os.replace`.
    ``tmp`` must be a name no later write takes (:func:`temp_path`'s): the old file may
    wait there for its removal.
    """
    exchange = _exchanger()
    if exchange is not None:
        old, new = os.fsencode(tmp), os.fsencode(target)
        if exchange(_AT_FDCWD, old, _AT_FDCWD, new, _RENAME_EXCHANGE) == 0:
            if stat.S_ISDIR(os.lstat(tmp).st_mode):
                exchange(_AT_FDCWD, old, _AT_FDCWD, new, _RENAME_EXCHANGE)  # put it back
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), target)
            _remove(tmp)  # (the old file, now)
            return
        # ENOENT: no file at target yet; EINVAL, ENOSYS...: not here. A rename does it.
    os.replace(tmp, target)


class _Remover:
    """Removes files in a thread of its own: a file ext4 frees waits some 0.3 ms in the
    kernel (its journal), little of it on the processor, which the writer need not."""

    def __init__(self) -> None:
        self.queue: queue.Queue[Callable[[], object] | None] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="rebuilder-remover", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (remove := self.queue.get()) is not None:
            try:
                remove()
            except OSError:
                pass  # (left under its temp name, which the site's prune removes)
            finally:
                self.queue.task_done()  # (else wait_removed would wait for ever)

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join()


_later: _Remover | None = None  # within removing_later


def _remove(path: str) -> None:
    if _later is None:
        _unlink_quietly(path)
    else:  # (no later write uses its name: see temp_path)
        _later.queue.put(functools.partial(_unlink_quietly, path))


def remove_tree(path: str) -> None:
    """Remove the folder ``path`` and all it holds: within :func:`removing_later`, it is
    given a temporary name beside it at once (:func:`temp_path`'s) and removed by the
    thread. :class:`FileNotFoundError` when there is no such folder."""
    import shutil

    if _later is None:
        shutil.rmtree(path)
        return
    gone = temp_path(path)
    os.rename(path, gone)
    _later.queue.put(functools.partial(shutil.rmtree, gone, ignore_errors=True))


@contextlib.contextmanager
def removing_later() -> Iterator[None]:
    """Within the block, the old files :func:`swap_in` takes out of the way are removed by
    a thread of their own (every thread's; a forked process does its own removals); at its
    end, all of them are gone (see :func:`wait_removed`)."""
    global _later
    if _later is not None:  # (within another: that one's)
        yield
        return
    _later = remover = _Remover()
    try:
        yield
    finally:
        _later = None
        remover.close()


def wait_removed() -> None:
    """Wait until the old files taken out so far are gone (before a look at their folders,
    which would find them under their temporary names)."""
    if _later is not None:
        _later.queue.join()


def _forget_remover() -> None:
    global _later
    _later = None  # (its thread is the parent's)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_remover)


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2  # <fcntl.h>, <linux/fs.h>


@functools.cache
def _exchanger() -> Callable[..., int] | None:
    """libc's ``renameat2``, on Linux (None elsewhere, or in a libc without it: glibc
    < 2.28). Looked up on first use: ctypes is no import for every command to pay."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def boot_id() -> str:
    """What tells this run of the machine from the last: after a restart, a write that was
    not durable may not have reached the disk (see the module's text). Empty where the
    system does not say."""
    try:
        with open("/proc/sys/kernel/random/boot_id", "rb") as f:
            return f.read(64).decode("ascii", "replace").strip()
    except OSError:
        return ""


def temp_path(target: str) -> str:
    """Where a new version of ``target`` is made before it takes its place (see
    :func:`replacing`; also for a hard link replacing a file): a name no other write
    has."""
    folder, name = os.path.split(target)
    ids = f"{os.getpid()}.{threading.get_native_id()}.{next(_writes)}"
    return os.path.join(folder, f".{name}.{ids}.tmp")


_writes = itertools.count()


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
