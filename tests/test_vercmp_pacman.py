"""pacman's version comparison: our port against the real ``vercmp`` program, pair by pair.

``vercmp`` (Debian package ``makepkg``, built from pacman's sources) calls
libalpm's ``alpm_pkg_vercmp``: it is the reference. Each pair is compared
both ways, so that an answer that ignores its arguments' order fails.
"""

from __future__ import annotations

import importlib.util
import random
import shutil
import subprocess
import sys

import pytest

from rebuilder.sync import _vercmp_pacman as vc

VERCMP = shutil.which("vercmp")
needs_vercmp = pytest.mark.skipif(VERCMP is None, reason="vercmp not installed (apt: makepkg)")

# (a, b, expected): the expectations are pacman's, checked again against the program below
PAIRS: list[tuple[str, str, int]] = [
    # plain
    ("1.0", "1.0", 0), ("1.0", "1.1", -1), ("1.1", "1.0", 1), ("1.0", "2.0", -1),
    ("1.2.3", "1.2.4", -1), ("1.10", "1.9", 1), ("1.010", "1.9", 1), ("1.001", "1.1", 0),
    ("0001", "1", 0), ("1.0.0", "1.0", 1), ("1.0", "1.0.0", -1), ("1", "1.0", -1),
    ("2", "1.9.9", 1),
    # letters: 1.0a is a pre-release of 1.0, 1.0.a is not
    ("1.0a", "1.0", -1), ("1.0", "1.0a", 1), ("1.0a", "1.0b", -1), ("1.0alpha", "1.0beta", -1),
    ("1.0beta", "1.0rc1", -1), ("1.0rc1", "1.0", -1), ("1.0.a", "1.0", 1),
    ("1.0a", "1.0.1", -1), ("1.0a1", "1.0a2", -1), ("1.0a", "1.0aa", -1), ("1.0A", "1.0a", -1),
    ("a", "b", -1), ("a", "1", -1), ("1", "a", 1), ("1a", "1", -1), ("1.a", "1", 1),
    ("1.0pre1", "1.0", -1), ("1.0.b", "1.0.1", -1), ("1.0b", "1.0.b", -1),
    # separators: a longer run wins (alpm, not rpm); the kind does not matter
    ("1.0", "1..0", -1), ("1..0", "1.0", 1), ("1.0", "1_0", 0), ("1.0", "1+0", 0),
    ("1.0.", "1.0", 1), ("1.0", "1.0.", -1), ("1.0..", "1.0.", 0),
    ("1+1", "1.1", 0), ("1.0+r12", "1.0", 1), ("1.0+r12", "1.0+r9", 1),
    # ~ is a separator, not Debian's "before everything"
    ("1.0~rc1", "1.0", 1), ("1.0~1", "1.0.1", 0), ("1.0~", "1.0", 1), ("1~1", "1.1", 0),
    # pkgrel: compared only when both sides have one
    ("1.0-1", "1.0-2", -1), ("1.0-10", "1.0-9", 1), ("1.0-1", "1.0-1.1", -1),
    ("1.0-1.1", "1.0-1.2", -1), ("1.0-2", "1.0-1.1", 1), ("1.0", "1.0-1", 0),
    ("1.0-1", "1.0", 0), ("1.0-1", "1.0.1-1", -1), ("1.0-a", "1.0-1", -1),
    ("1.0-1-1", "1.0-1-2", -1), ("1.0-1-2", "1.0-2-1", -1),
    ("1-0", "1.0", -1),  # pkgver 1, pkgrel 0 against pkgver 1.0
    # epochs
    ("1:1.0", "2.0", 1), ("1:1.0-1", "1:1.0-2", -1), ("0:1.0", "1.0", 0), (":1.0", "1.0", 0),
    ("2:0.1", "1:9.9", 1), ("1:1.0", "1:1.0", 0), ("10:1", "9:1", 1), ("01:1", "1:1", 0),
    ("1:", "0:1", 1), ("a:1", "1", -1), ("1:1.0-1", "1.1-1", 1), ("0:1.0-1", "1.0-1", 0),
    ("1.0:2", "1.0:1", 1),
    # numbers beyond any integer type
    ("123456789012345678901234567890", "123456789012345678901234567891", -1),
    ("1.99999999999999999999", "1.100000000000000000000", -1),
    # empty and odd input; non-ASCII bytes are separators, one per byte
    ("", "", 0), ("", "1", -1), ("1", "", 1), ("", "a", 1), (".", "", 1), ("1.0", "1.0é", -1),
    ("é", "a", 1),
]  # fmt: skip


def system_vercmp(a: str, b: str) -> int:
    assert VERCMP is not None
    out = subprocess.run([VERCMP, a, b], capture_output=True, text=True, check=True)
    return int(out.stdout.strip())


def many_system_vercmp(pairs: list[tuple[str, str]]) -> list[int]:
    """The program's answers for many pairs, from one shell (one process per pair is slow)."""
    assert VERCMP is not None
    script = "".join(f'"$V" "$(printf %s {_sh(a)})" "$(printf %s {_sh(b)})"\n' for a, b in pairs)
    out = subprocess.run(
        ["sh", "-c", script],
        env={"V": VERCMP, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    return [int(x) for x in out.stdout.split()]


def _sh(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


@pytest.mark.parametrize(("a", "b", "expected"), PAIRS)
def test_python_port_matches_expectation(a: str, b: str, expected: int) -> None:
    assert vc.py_vercmp(a, b) == expected
    assert vc.py_vercmp(b, a) == -expected
    assert vc.vercmp(a, b) == expected  # whichever implementation is active


@needs_vercmp
def test_expectations_are_pacmans() -> None:
    assert many_system_vercmp([(a, b) for a, b, _ in PAIRS]) == [e for _, _, e in PAIRS]
    assert system_vercmp("1.0a", "1.0") == -1  # one pair through the plain interface too


@needs_vercmp
def test_random_versions_agree_with_the_program() -> None:
    """Versions made of the pieces that matter: digits, letters, separators, ':' and '-'."""
    rng = random.Random(20240101)
    atoms = [
        "0",
        "1",
        "2",
        "9",
        "10",
        "01",
        "a",
        "b",
        "rc",
        "alpha",
        "Z",
        ".",
        "..",
        "_",
        "+",
        "~",
        "-",
        ":",
    ]
    pairs = []
    for _ in range(1500):
        a = "".join(rng.choice(atoms) for _ in range(rng.randint(1, 6)))
        b = (
            a
            if rng.random() < 0.1
            else "".join(rng.choice(atoms) for _ in range(rng.randint(1, 6)))
        )
        pairs.append((a, b))
    # arguments the program would take as options are left out
    pairs = [(a, b) for a, b in pairs if not a.startswith("-") and not b.startswith("-")]
    got = [vc.py_vercmp(a, b) for a, b in pairs]
    want = many_system_vercmp(pairs)
    mismatches = [(a, b, g, w) for (a, b), g, w in zip(pairs, got, want, strict=True) if g != w]
    assert not mismatches, mismatches[:10]


def test_parse_evr() -> None:
    assert vc.parse_evr("3:2.1-4") == ("3", "2.1", "4")
    assert vc.parse_evr("2.1") == ("0", "2.1", None)
    assert vc.parse_evr(":2.1-1") == ("0", "2.1", "1")
    assert vc.parse_evr("1.0-1-2") == ("0", "1.0-1", "2")


def test_backend_is_named_after_what_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    installed = importlib.util.find_spec("pyalpm") is not None
    assert ("pyalpm" if installed else "python") == vc.BACKEND
    assert (vc.vercmp("1.0", "1.0a"), vc.vercmp("1.0a", "1.0")) == (1, -1)  # either way
    monkeypatch.setitem(sys.modules, "pyalpm", None)  # an import of it now fails
    assert vc._load() == ("python", vc.py_vercmp)


def test_pyalpm_and_our_implementation_agree() -> None:
    """Both paths of vercmp(): libalpm through pyalpm (where installed) and our port."""
    try:
        import pyalpm  # type: ignore[import-not-found]
    except ImportError:
        pytest.skip("pyalpm is not installed (pip install pyalpm, needs libalpm-dev)")
    assert vc.BACKEND == "pyalpm"
    for a, b, want in PAIRS:
        assert int(pyalpm.vercmp(a, b)) == vc.py_vercmp(a, b) == want, (a, b)
