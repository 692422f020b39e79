"""Alpine package versions: validity and ordering exactly as ``apk version -t`` has them.

A transcription of apk-tools' ``src/version.c`` (the tokenizer of apk-tools
2.14/3.x), so that the sync picks the same "newest" version apk would::

    digit{.digit}...{letter}{_suffix{number}}...{~hash}{-r#}

Tokens are compared left to right while both versions have a token of the
same kind; the first difference decides:

- numbers by value, except a dotted number where either side starts with
  ``0``: then both compare as strings (``1.05 < 1.5``, ``8.2.0015 < 8.2.002``);
- the letter by its character; suffixes in the order ``alpha < beta < pre <
  rc < (none) < cvs < svn < git < hg < p``; a commit hash as a string;
  the ``-rN`` revision by value.

When the token kinds differ, the version that ends first is older unless the
other continues with a pre-release suffix (``1.0_rc1 < 1.0 < 1.0_p1``), and
otherwise the "smaller" kind of token is newer (a letter beats a suffix,
``1.0a > 1.0_p1``). Invalid versions still compare, like apk does: up to
their first invalid token.

>>> compare("1.0_rc1", "1.0"), compare("1.0-r1", "1.0"), compare("1.05", "1.5")
(-1, 1, -1)
>>> is_valid("1.2.3_git20240101-r0"), is_valid("1.0bc"), is_valid("1.0-r")
(True, False, False)
>>> sorted(["1.10", "1.9_p1", "1.9", "1.10_rc1"], key=sort_key)
['1.9', '1.9_p1', '1.10_rc1', '1.10']
"""

from __future__ import annotations

import functools
from typing import NamedTuple

# token kinds, in the order the grammar allows them (the order is the semantics)
INITIAL_DIGIT, DIGIT, LETTER, SUFFIX, SUFFIX_NO, COMMIT_HASH, REVISION_NO, END, INVALID = range(9)

# suffix values; NONE (no suffix) is the pivot between pre- and post-releases
_SUFFIX_NONE = 5
SUFFIXES = {
    "alpha": 1, "beta": 2, "pre": 3, "rc": 4,
    "cvs": 6, "svn": 7, "git": 8, "hg": 9, "p": 10,
}  # fmt: skip
_UINT64 = (1 << 64) - 1
_DIGITS = frozenset("0123456789")
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
_HEX = frozenset("0123456789abcdef")


class Token(NamedTuple):
    kind: int
    value: str = ""  # the token's text (digits, letter, suffix name, hash)
    number: int = 0  # digits as apk's uint64 (wraps on overflow, as apk's does)
    suffix: int = 0


def tokens(version: str) -> list[Token]:
    """The tokens of ``version``, the last one ``END`` or ``INVALID``.

    >>> [t.kind for t in tokens("1.2a_rc3-r4")] == [INITIAL_DIGIT, DIGIT, LETTER, SUFFIX,
    ...                                             SUFFIX_NO, REVISION_NO, END]
    True
    """
    out: list[Token] = []
    pos, n = 0, len(version)
    tok, pos = _digits(version, pos, INITIAL_DIGIT)
    while True:
        out.append(tok)
        if tok.kind >= END:
            return out
        tok, pos = _next(version, pos, tok.kind, n)


def _digits(s: str, pos: int, kind: int) -> tuple[Token, int]:
    end = pos
    while end < len(s) and s[end] in _DIGITS:
        end += 1
    if end == pos:
        return Token(INVALID), pos
    text = s[pos:end]
    return Token(kind, text, int(text) & _UINT64), end


def _next(s: str, pos: int, prev: int, n: int) -> tuple[Token, int]:
    if pos >= n:
        return Token(END), pos
    c = s[pos]
    if c in _LOWER:
        if prev > DIGIT:
            return Token(INVALID), pos
        return Token(LETTER, c), pos + 1
    if c == "." or c in _DIGITS:
        if c == ".":
            if prev > DIGIT:
                return Token(INVALID), pos
            pos += 1
        if prev in (INITIAL_DIGIT, DIGIT):
            return _digits(s, pos, DIGIT)
        if prev == SUFFIX:
            return _digits(s, pos, SUFFIX_NO)
        return Token(INVALID), pos
    if c == "_":
        if prev > SUFFIX_NO:
            return Token(INVALID), pos
        end = pos + 1
        while end < n and s[end] in _LOWER:
            end += 1
        name = s[pos + 1 : end]
        value = SUFFIXES.get(name)
        if value is None:
            return Token(INVALID), pos
        return Token(SUFFIX, name, suffix=value), end
    if c == "~":
        if prev >= COMMIT_HASH:
            return Token(INVALID), pos
        end = pos + 1
        while end < n and s[end] in _HEX:
            end += 1
        if end == pos + 1:
            return Token(INVALID), pos
        return Token(COMMIT_HASH, s[pos + 1 : end]), end
    if c == "-":
        if prev >= REVISION_NO or not s.startswith("-r", pos):
            return Token(INVALID), pos
        return _digits(s, pos + 2, REVISION_NO)
    return Token(INVALID), pos


def is_valid(version: str) -> bool:
    """Does apk accept ``version`` (``apk_version_validate``)?"""
    return tokens(version)[-1].kind == END


def _token_cmp(a: Token, b: Token) -> int:
    kind = a.kind
    if kind == DIGIT and (a.value.startswith("0") or b.value.startswith("0")):
        return _cmp(a.value.encode(), b.value.encode())  # Gentoo's rule for leading zeros
    if kind in (INITIAL_DIGIT, DIGIT, SUFFIX_NO, REVISION_NO):
        return _cmp(a.number, b.number)
    if kind == LETTER:
        return _cmp(a.value, b.value)
    if kind == SUFFIX:
        return _cmp(a.suffix, b.suffix)
    return _cmp(a.value.encode(), b.value.encode())  # commit hash: string sort


def _cmp(a: object, b: object) -> int:
    return (a > b) - (a < b)  # type: ignore[operator]


def compare(a: str, b: str) -> int:
    """-1, 0 or 1 as ``a`` is older than, the same as, or newer than ``b``."""
    ta, tb = tokens(a), tokens(b)
    i = 0
    while ta[i].kind == tb[i].kind and ta[i].kind < END:
        r = _token_cmp(ta[i], tb[i])
        if r:
            return r
        i += 1
    x, y = ta[i], tb[i]
    if x.kind == y.kind:
        return 0
    # the one that goes on is newer, unless it goes on with a pre-release suffix
    if x.kind == SUFFIX and x.suffix < _SUFFIX_NONE:
        return -1
    if y.kind == SUFFIX and y.suffix < _SUFFIX_NONE:
        return 1
    return -1 if x.kind > y.kind else 1


sort_key = functools.cmp_to_key(compare)
