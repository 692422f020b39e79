"""The one atomic write (rebuilder/_fs.py) that the state, the results store, the site, the
HTTP cache and downloads share."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from rebuilder import _fs

from .fixtures import ROOT


def test_whole_or_not_at_all_and_no_temporary_left(tmp_path: Path) -> None:
    target = tmp_path / "f"
    _fs.write_atomic(target, b"one")
    _fs.write_atomic(target, b"two", durable=True)
    assert target.read_bytes() == b"two"
    with pytest.raises(ZeroDivisionError), _fs.replacing(target) as out:
        out.file.write(b"half of thr")
        _ = 1 / 0  # the writer fails halfway
    assert target.read_bytes() == b"two"
    assert os.listdir(tmp_path) == ["f"]


def test_errors_of_the_block_pass_through_and_its_own_name_the_target(tmp_path: Path) -> None:
    class Refused(OSError):  # e.g. requests' exceptions, which are OSErrors
        pass

    with pytest.raises(Refused), _fs.replacing(tmp_path / "f"):
        raise Refused("not a file system error")
    with pytest.raises(FileNotFoundError) as e:
        _fs.write_atomic(tmp_path / "no-such-folder" / "f", b"x")
    assert e.value.filename == str(tmp_path / "no-such-folder" / "f")
    assert os.listdir(tmp_path) == []


def test_a_discarded_write_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    before = target.stat()
    with _fs.replacing(target, durable=True) as out:
        out.file.write(b"old")
        out.discard()
    assert target.stat().st_ino == before.st_ino and target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f"]


def test_a_ground_floor_module() -> None:
    """Every other module may use it: it imports nothing of ours (but the package)."""
    code = "import sys, rebuilder._fs; print(' '.join(sorted(sys.modules)))"
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True
    )
    ours = {m for m in r.stdout.split() if m.startswith("rebuilder")}
    assert ours <= {"rebuilder", "rebuilder.errors", "rebuilder._fs"}, ours


def test_a_replaced_file_is_swapped_in_and_its_old_version_removed(tmp_path: Path) -> None:
    """Where the target exists, the new file takes its place by an exchange (no wait for
    ext4 to write it out): readers see one whole version, an old hard link keeps the old
    bytes, and within removing_later the old file is gone by the end of the block."""
    target, other = tmp_path / "f", tmp_path / "link"
    _fs.write_atomic(target, b"one")  # (no file there yet: a rename)
    os.link(target, other)
    before = target.stat().st_ino
    with _fs.removing_later():
        for i in range(50):
            _fs.write_atomic(target, b"version %d" % i)
        with _fs.replacing(target) as out:
            out.file.write(b"last")
        _fs.wait_removed()
        assert sorted(os.listdir(tmp_path)) == ["f", "link"]
    assert target.read_bytes() == b"last" and target.stat().st_ino != before
    assert other.read_bytes() == b"one"  # as os.replace leaves a hard link of the old file
    assert _fs._exchanger() is not None, "renameat2 should be found on Linux with glibc"


def test_a_folder_in_the_way_is_left_as_it_is(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "inside").write_bytes(b"x")
    with pytest.raises(IsADirectoryError) as e, _fs.removing_later():
        _fs.write_atomic(tmp_path / "d", b"new")
    assert e.value.filename == str(tmp_path / "d")
    assert os.listdir(tmp_path) == ["d"] and (tmp_path / "d" / "inside").read_bytes() == b"x"


@pytest.mark.parametrize("why", ["no renameat2", "not on this file system"])
def test_without_an_exchange_a_rename_replaces_the_file(
    tmp_path: Path, monkeypatch, why: str
) -> None:
    import ctypes
    import errno

    def refused(*args: object) -> int:
        ctypes.set_errno(errno.EINVAL)
        return -1

    monkeypatch.setattr(_fs, "_exchanger", lambda: None if why == "no renameat2" else refused)
    target = tmp_path / "f"
    for data in (b"one", b"two"):
        _fs.write_atomic(target, data)
    assert target.read_bytes() == b"two" and os.listdir(tmp_path) == ["f"]


def test_a_forked_process_removes_its_own_old_files(tmp_path: Path) -> None:
    """The parent's thread is not in a forked process: the child's block has its own."""
    target = tmp_path / "f"
    target.write_bytes(b"old")
    with _fs.removing_later():
        pid = os.fork()
        if pid == 0:  # the child: its removals must not wait on the parent's thread
            code = 1
            try:
                with _fs.removing_later():
                    _fs.write_atomic(target, b"child's")
                code = 0 if os.listdir(tmp_path) == ["f"] else 2
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert target.read_bytes() == b"child's" and os.listdir(tmp_path) == ["f"]


def test_the_boot_id_tells_this_run_of_the_machine() -> None:
    first = _fs.boot_id()
    assert first == _fs.boot_id() and len(first) == 36  # a UUID, the kernel's


def test_a_folder_removed_later_is_out_of_the_way_at_once(tmp_path: Path) -> None:
    tree = tmp_path / "builds" / "12"
    (tree / "artifacts" / "1").mkdir(parents=True)
    for f in ("log", "artifacts/1/attestation"):
        (tree / f).write_bytes(b"x")
    with _fs.removing_later():
        _fs.remove_tree(str(tree))
        assert not tree.exists()  # renamed away before the thread removes it
        with pytest.raises(FileNotFoundError):
            _fs.remove_tree(str(tree))
    assert os.listdir(tmp_path / "builds") == []
    (tree / "sub").mkdir(parents=True)
    _fs.remove_tree(str(tree))  # (outside the block: here and now)
    assert os.listdir(tmp_path / "builds") == []


def test_a_removal_that_fails_does_not_stop_the_others(tmp_path: Path) -> None:
    def refused() -> None:
        raise PermissionError("not allowed")

    target = tmp_path / "f"
    target.write_bytes(b"old")
    with _fs.removing_later():
        assert _fs._later is not None
        _fs._later.queue.put(refused)
        _fs.write_atomic(target, b"new")
        _fs.wait_removed()  # returns: the failure was counted done
        assert os.listdir(tmp_path) == ["f"]


def test_pieces_are_written_in_order_whatever_each_call_takes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a file written from pieces (a patched list: slices of the old file and new records),
    # more of them than one call takes, through a writev that stops short now and then (a
    # signal, a disk nearly full), as the kernel may
    rng = random.Random(5)
    pieces: list[bytes | memoryview] = [
        bytes([65 + i % 26]) * rng.randrange(0, 9) for i in range(2_500)
    ]
    pieces += [memoryview(b"0123456789")[2:7], b""]
    real, calls = os.writev, []

    def short(fd: int, buffers: list[memoryview]) -> int:
        calls.append(len(buffers))
        whole = b"".join(buffers)
        return real(fd, [whole[: max(1, len(whole) * rng.randrange(1, 4) // 4)]])

    monkeypatch.setattr(os, "writev", short)
    monkeypatch.setattr(_fs, "_IOV_MAX", 1024)
    _fs.write_atomic(tmp_path / "f", pieces)
    _fs.write_new(tmp_path / "g", pieces)
    want = b"".join(pieces)
    assert (tmp_path / "f").read_bytes() == want == (tmp_path / "g").read_bytes()
    assert max(calls) == 1024 and len(calls) > 2 * len(want) // sum(map(len, pieces[:1024]))


def _cached_pages(fd: int) -> int:
    """How many pages of the file open at ``fd`` the page cache holds (mincore(2) on a
    mapping not touched: a file mapping's answer is the page cache's)."""
    import ctypes
    import mmap

    size = os.fstat(fd).st_size
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    m = mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ | mmap.PROT_WRITE)
    try:
        start = ctypes.c_char.from_buffer(m)
        pages = (size + mmap.PAGESIZE - 1) // mmap.PAGESIZE
        vec = ctypes.create_string_buffer(pages)
        got = libc.mincore(ctypes.addressof(start), size, vec)
        del start
        assert got == 0, os.strerror(ctypes.get_errno())
        return sum(b & 1 for b in vec.raw)
    finally:
        m.close()


def _drops_pages(folder: Path) -> bool:
    """Whether the file system of ``folder`` lets a file's written-out pages be dropped from
    the page cache (not tmpfs, whose pages are the file)."""
    probe = folder / "probe"
    probe.write_bytes(os.urandom(1 << 16))
    fd = os.open(probe, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.read(fd, 1 << 17)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        return _cached_pages(fd) == 0
    finally:
        os.close(fd)
        probe.unlink()


@pytest.mark.parametrize("big", [True, False])
def test_a_large_file_s_old_version_leaves_the_page_cache_before_the_new_one_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, big: bool
) -> None:
    # the pages it frees are those the new version is written into, which the kernel hands
    # out for a tenth of the time others take (see _fs._drop_cached)
    drops = _drops_pages(tmp_path)
    target = tmp_path / "list"
    size = _fs.DROP_OLD_MIN if big else _fs.DROP_OLD_MIN // 2
    _fs.write_atomic(target, os.urandom(size))
    old = os.open(target, os.O_RDONLY)
    asked: list[tuple[int, int]] = []  # (inode, advice)
    fadvise = os.posix_fadvise

    def spied(fd: int, offset: int, length: int, advice: int) -> None:
        asked.append((os.fstat(fd).st_ino, advice))
        fadvise(fd, offset, length, advice)

    try:
        os.fsync(old)  # (written out: only such pages can be dropped)
        assert len(os.read(old, size + 1)) == size
        assert _cached_pages(old) == size // os.sysconf("SC_PAGE_SIZE")
        monkeypatch.setattr(os, "posix_fadvise", spied)
        with _fs.removing_later():
            _fs.write_atomic(target, [os.urandom(size // 2), os.urandom(size - size // 2)])
        assert target.stat().st_size == size and os.fstat(old).st_nlink == 0
        dropped = [(os.fstat(old).st_ino, os.POSIX_FADV_DONTNEED)] if big else []
        assert asked == dropped
        if drops:  # (where the file system keeps them whatever it is told, as tmpfs does)
            assert (_cached_pages(old) == 0) is big
    finally:
        os.close(old)
