"""A list file patched (rebuilder.site.splice) is the file made anew from its records."""

from __future__ import annotations

import random
import re
from collections import Counter
from pathlib import Path

import pytest

from rebuilder.site import splice

PLAIN = splice.Layout(b"[\n", b",\n", b"\n]\n", b"[]\n")
# as v1's packages/binary: a head line that counts, and an id before each record
NUMBERED = splice.Layout(
    b'{"total": ', b",\n", b"\n]}\n", b'{"total": 0, "records": []}\n', re.compile(rb"<\d+>")
)


def _file(layout: splice.Layout, records: list[bytes]) -> bytes:
    if not records:
        return layout.empty
    if layout is PLAIN:
        return b"[\n" + b",\n".join(records) + b"\n]\n"
    lines = [b"<%d>%s" % (len(r), r) for r in records]
    return b'{"total": %d, "records": [\n' % len(lines) + b",\n".join(lines) + b"\n]}\n"


def _key(layout: splice.Layout, line: bytes) -> bytes:
    found = layout.prefix.match(line) if layout.prefix else None
    return line[found.end() :] if found else line


@pytest.mark.parametrize("layout", [PLAIN, NUMBERED], ids=["plain", "numbered"])
@pytest.mark.parametrize("seed", range(40))
def test_a_patched_list_is_the_list_made_anew(layout: splice.Layout, seed: int) -> None:
    rng = random.Random(seed)
    names = [b'"%03d"' % i for i in range(rng.choice([0, 1, 2, 5, 40]))]
    given = Counter({n: rng.choice([1, 1, 1, 2, 3]) for n in names})  # records, by group
    data = _file(layout, sorted(given))
    multi = {r: n for r, n in given.items() if n > 1}
    removed = [r for r in given.elements() if rng.random() < 0.3]
    added = [b'"%03d"' % rng.randrange(60) for _ in range(rng.randrange(6))]
    added += [r for r in removed if rng.random() < 0.3]  # rebuilt, the same record again
    rng.shuffle(removed)
    after = given.copy()
    after.subtract(removed)
    after.update(added)
    done = splice.patch(
        layout, data, lambda line: _key(layout, line),
        [(r, r) for r in removed], [(r, r) for r in added], multi,
        head=b"[\n" if layout is PLAIN else (lambda n: b'{"total": %d, "records": [\n' % n),
        make=lambda r: r if layout is PLAIN else b"<%d>%s" % (len(r), r),
    )  # fmt: skip
    assert done is not None
    new, dropped, came = done.join(), done.dropped, done.came
    assert new == _file(layout, sorted(+after))
    assert multi == {r: n for r, n in after.items() if n > 1}
    assert {r for _, r in dropped} == set(+given) - set(+after)
    assert {r for _, r in came} == set(+after) - set(+given)
    ranges = [(b'"%03d"' % lo, b'"%03d"' % (lo + 7)) for lo in range(0, 60, 7)]
    found = splice.between(layout, new, lambda line: _key(layout, line), ranges)
    for (lo, hi), lines in zip(ranges, found, strict=True):
        assert [_key(layout, x) for x in lines] == sorted(r for r in +after if lo <= r < hi)
    assert done.between(ranges) == found  # (found in the old file and what moved)


def test_a_record_that_is_not_there_is_no_patch() -> None:
    data = _file(PLAIN, [b'"a"', b'"c"'])
    assert splice.patch(PLAIN, data, bytes, [(b'"b"', b'"b"')], [], {}) is None
    assert splice.patch(PLAIN, b"not a list", bytes, [], [(b'"b"', b'"b"')], {}) is None
    # (a record that only starts like the one asked for is not it)
    assert splice.patch(PLAIN, data, bytes, [(b'"a', b'"a')], [], {}) is None


def test_a_patched_file_is_written_from_its_pieces_and_compared_without_joining(
    tmp_path: Path,
) -> None:
    from rebuilder.site.output import Output

    out = Output(str(tmp_path))
    data = _file(PLAIN, [b'"a"', b'"bb"', b'"c"'])
    out.write("list", data)
    same = splice.patch(
        PLAIN, data, bytes, [(b'"bb"', b'"bb"')], [(b'"bb"', b'"bb"')], {}, head=b"[\n"
    )
    other = splice.patch(
        PLAIN, data, bytes, [(b'"bb"', b'"bb"')], [(b'"bx"', b'"bx"')], {}, head=b"[\n"
    )
    assert same is not None and other is not None and len(other.pieces) > 1
    assert len(same.join()) == len(other.join())  # (the same size: compared piece by piece)
    assert not out.write("list", same.pieces) and out.stats.unchanged == 1
    assert out.write("list", other.pieces)
    assert (
        (tmp_path / "list").read_bytes() == other.join() == _file(PLAIN, [b'"a"', b'"bx"', b'"c"'])
    )
