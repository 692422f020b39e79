"""Compare Arch Linux package versions as pacman does (``vercmp``, ``alpm_pkg_vercmp``).

A version is ``[epoch:]pkgver[-pkgrel]``. The epoch (``0`` when absent)
decides first, then ``pkgver``, then ``pkgrel`` only when both versions
have one. Each part is compared with alpm's variant of rpm's algorithm
(:func:`rpmvercmp`): runs of digits compare as numbers, runs of letters as
strings, a number beats letters, and, unlike rpm, a longer run of
separators wins over a shorter one. Letters after an otherwise equal
version make it *older* (``1.0a`` < ``1.0``: a pre-release), digits make
it newer (``1.0.1`` > ``1.0``); ``~`` is only a separator, not Debian's
"before everything".

:func:`vercmp` uses the ``pyalpm`` binding of libalpm when it is importable
and :func:`py_vercmp`, a line-by-line port of libalpm's ``version.c``
(pacman 6), otherwise; tests/test_vercmp_pacman.py checks the port against
the real ``vercmp`` program pair by pair.

>>> vercmp("1:1.0-1", "2.0-1"), vercmp("1.0a", "1.0"), vercmp("1.0-2", "1.0-10")
(1, -1, -1)
>>> vercmp("1.0", "1.0-5")  # no pkgrel on one side: pkgrel is not compared
0
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["BACKEND", "parse_evr", "py_vercmp", "rpmvercmp", "vercmp"]


_DIGITS = frozenset(b"0123456789")
_ALPHA = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# C's isalnum() in the C locale: ASCII only (str.isalnum() would accept "é" or "²")
_ALNUM = _DIGITS | _ALPHA


def rpmvercmp(a: str, b: str) -> int:
    """Compare two version parts (no epoch, no pkgrel split): -1, 0 or 1.

    Works on the UTF-8 bytes, as libalpm does on C strings: a non-ASCII
    character is a separator as long as its bytes.

    >>> rpmvercmp("1.0.0", "1.0"), rpmvercmp("1.0", "1..0"), rpmvercmp("1.0alpha", "1.0beta")
    (1, -1, -1)
    """
    if a == b:
        return 0
    x, y = a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape")
    one = p1 = 0  # start of the current segment / its end, in x
    two = p2 = 0  # the same in y
    lx, ly = len(x), len(y)
    while one < lx and two < ly:
        while one < lx and x[one] not in _ALNUM:
            one += 1
        while two < ly and y[two] not in _ALNUM:
            two += 1
        if not (one < lx and two < ly):
            break
        # alpm (not rpm): a longer run of separators is a newer version
        if one - p1 != two - p2:
            return -1 if one - p1 < two - p2 else 1
        p1, p2 = one, two
        kind = _DIGITS if x[p1] in _DIGITS else _ALPHA
        while p1 < lx and x[p1] in kind:
            p1 += 1
        while p2 < ly and y[p2] in kind:
            p2 += 1
        isnum = kind is _DIGITS
        if two == p2:  # segments of different kinds: numbers are newer than letters
            return 1 if isnum else -1
        seg1, seg2 = x[one:p1], y[two:p2]
        if isnum:
            seg1, seg2 = seg1.lstrip(b"0"), seg2.lstrip(b"0")
            if len(seg1) != len(seg2):  # the longer number (without leading zeros) wins
                return 1 if len(seg1) > len(seg2) else -1
        if seg1 != seg2:
            return 1 if seg1 > seg2 else -1
        one, two = p1, p2
    if one >= lx and two >= ly:
        return 0
    # What is left decides: a remaining alpha run never beats the end of the other string.
    if (one >= lx and y[two] not in _ALPHA) or (one < lx and x[one] in _ALPHA):
        return -1
    return 1


def parse_evr(version: str) -> tuple[str, str, str | None]:
    """``(epoch, pkgver, pkgrel)`` of a version, as alpm splits it.

    The epoch is the leading digits before a ``:`` (``0`` when absent or
    empty); the pkgrel what follows the last ``-`` (None when there is none).

    >>> parse_evr("2:1.0-3"), parse_evr("1.0"), parse_evr("a:1-2-3")
    (('2', '1.0', '3'), ('0', '1.0', None), ('0', 'a:1-2', '3'))
    """
    s = 0
    while s < len(version) and "0" <= version[s] <= "9":
        s += 1
    dash = version.rfind("-", s)
    if s < len(version) and version[s] == ":":
        epoch = version[:s] or "0"
        rest_start = s + 1
    else:
        epoch, rest_start = "0", 0
    if dash >= 0:
        return epoch, version[rest_start:dash], version[dash + 1 :]
    return epoch, version[rest_start:], None


def py_vercmp(a: str, b: str) -> int:
    """``alpm_pkg_vercmp`` in Python: -1 if ``a`` is older, 0 if equal, 1 if newer.

    >>> py_vercmp("1:0.1-1", "9.9-1"), py_vercmp("1.0-1", "1.0-1.1"), py_vercmp("1.0", "1.0")
    (1, -1, 0)
    """
    if a == b:
        return 0
    e1, v1, r1 = parse_evr(a)
    e2, v2, r2 = parse_evr(b)
    ret = rpmvercmp(e1, e2)
    if ret == 0:
        ret = rpmvercmp(v1, v2)
        if ret == 0 and r1 is not None and r2 is not None:
            ret = rpmvercmp(r1, r2)
    return ret


def _load() -> tuple[str, Callable[[str, str], int]]:
    try:
        import pyalpm  # type: ignore[import-not-found]
    except ImportError:
        return "python", py_vercmp

    def alpm_vercmp(a: str, b: str) -> int:
        r = int(pyalpm.vercmp(a, b))
        return (r > 0) - (r < 0)

    return "pyalpm", alpm_vercmp


# which implementation vercmp() is: "pyalpm" (libalpm itself) or "python" (py_vercmp)
BACKEND, _impl = _load()


def vercmp(a: str, b: str) -> int:
    """Compare two Arch package versions: -1 if ``a`` is older, 0 if equal, 1 if newer."""
    return _impl(a, b)
