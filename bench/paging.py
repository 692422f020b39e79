"""How many suite list pages a pass of changes touches, cut in other ways (a simulation).

An incremental render makes again every list page whose content moves. Today a suite's
lists are cut every 500 rows by position, and every page shows the suite's counts, so
100 changes over every suite touch every page (docs/site.md, sessions 10 and 12). This
simulates the bench's lists (``--suites`` suites of ``--rows`` groups, every status and
each one, by name and by date, as :mod:`rebuilder.site.suites` makes them) through
``--passes`` passes of ``--changes`` rebuilds (a new verdict, the newest build), and
counts the pages each way of cutting them changes, and the rows those pages hold:

- by position, counts on every page (today), or on the first page only;
- cut by content: a row ends a page when a hash of its name says so (about one row in
  ``size``, as rsync and backup tools cut files into chunks), so a page holds the same
  rows whatever changes elsewhere; pages numbered by position, or named by their first row.

No page is rendered: a page counts as changed when its rows, its place (number and count,
when the pager shows them) or its counts differ.

    python bench/paging.py [--suites 6] [--rows 7500] [--changes 100] [--passes 3]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import statistics
from collections import Counter

STATUSES = ["GOOD"] * 70 + ["BAD"] * 15 + ["FAIL"] * 10 + ["UNKWN"] * 5
PAGE = 500  # rows of a page cut by position (html.PAGE_SIZE)

Row = tuple[str, str, int]  # name, status, built
Rows = dict[str, tuple[int, str, int]]  # name -> suite, status, built
Page = tuple[tuple[Row, ...], tuple[object, ...]]  # its rows, and what else it shows


def _cut(name: str) -> int:
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big")


def lists(rows: Rows, suites: int) -> dict[tuple[int, str, str], list[Row]]:
    """Each suite's lists: every status and each one, by name and by date (newest first)."""
    out = {}
    for s in range(suites):
        mine = [(n, st, t) for n, (ss, st, t) in rows.items() if ss == s]
        for sort, seq in (
            ("name", sorted(mine)),
            ("date", sorted(mine, key=lambda r: (-r[2], r[0]))),
        ):
            for only in ("all", "GOOD", "BAD", "FAIL", "UNKWN"):
                out[s, sort, only] = [r for r in seq if only in ("all", r[1])]
    return out


def cut(seq: list[Row], size: int | None) -> list[list[Row]]:
    """``seq`` in pages: every :data:`PAGE` rows (``size`` None), or by content."""
    if size is None:
        return [seq[i : i + PAGE] for i in range(0, len(seq), PAGE)] or [[]]
    pages: list[list[Row]] = [[]]
    for r in seq:
        pages[-1].append(r)
        if _cut(r[0]) % size == 0 or len(pages[-1]) >= 4 * size:  # (a bound on a page)
            pages.append([])
    return [p for p in pages if p] or [[]]


def files(rows: Rows, suites: int, size: int | None, counts_on_all: bool, named: bool) -> dict:
    """Every list page, by its file, with what it shows."""
    out: dict[tuple[object, ...], Page] = {}
    for (s, sort, only), seq in lists(rows, suites).items():
        counts = tuple(sorted(Counter(st for ss, st, _ in rows.values() if ss == s).items()))
        pages = cut(seq, size)
        for i, page in enumerate(pages):
            shown: tuple[object, ...] = () if named else (i, len(pages))
            if counts_on_all or i == 0:
                shown += (counts,)
            name = page[0][0] if named and page else i
            out[s, sort, only, name] = (tuple(page), shown)
    return out


def change(rows: Rows, n: int, now: int, rng: random.Random) -> None:
    """``n`` rebuilds: each group a new verdict and the newest build."""
    for k, name in enumerate(rng.sample(sorted(rows), n)):
        suite = rows[name][0]
        rows[name] = (suite, rng.choice(["GOOD", "BAD", "FAIL"]), now + k)


Scheme = tuple[str, int | None, bool, bool]
# label, page size cut by content (None: by position), counts on every page, named
SCHEMES: list[Scheme] = [
    ("every 500 rows, counts on every page (today)", None, True, False),
    ("every 500 rows, counts on the first page", None, False, False),
    ("cut by content, ~500 rows, numbered", 500, False, False),
    ("cut by content, ~500 rows, named by their first row", 500, False, True),
    ("cut by content, ~100 rows, named by their first row", 100, False, True),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--suites", type=int, default=6)
    ap.add_argument("--rows", type=int, default=7500, help="groups in each suite")
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    rows: Rows = {
        f"s{s}-pkg{i:05d}": (s, rng.choice(STATUSES), rng.randrange(10**6))
        for s in range(args.suites)
        for i in range(args.rows)
    }
    found: dict[str, list[tuple[int, int, int]]] = {label: [] for label, *_ in SCHEMES}
    now = 10**6
    for _ in range(args.passes):
        before = {s[0]: files(rows, args.suites, *s[1:]) for s in SCHEMES}
        change(rows, args.changes, now, rng)
        now += args.changes
        for label, size, counts_on_all, named in SCHEMES:
            after = files(rows, args.suites, size, counts_on_all, named)
            redone = [page for f, page in after.items() if before[label].get(f) != page]
            found[label].append((len(redone), len(after), sum(len(p[0]) for p in redone)))
    total = args.suites * args.rows
    print(f"{args.suites} suites of {args.rows} groups, {args.changes} rebuilds a pass, "
          f"median of {args.passes} passes:")  # fmt: skip
    for label, runs in found.items():
        moved, pages, held = (statistics.median(r[i] for r in runs) for i in range(3))
        print(f"  {label:<52} pages changed {moved:5.0f} of {pages:5.0f}, holding "
              f"{held:7.0f} rows ({held / total:.1f}x the groups)")  # fmt: skip


if __name__ == "__main__":
    main()
