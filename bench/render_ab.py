"""Two codes' renders of the same passes, alternated: ``bench/render_pass.py``'s recipe, run.

A single render moves by a fifth with the load of other work on this shared machine, more
than most changes to the renderer: two codes are compared by rendering the same passes with
each, alternately, each on its own copy of one bench site, and comparing medians.

``DIR/a`` is rendered by this tree, ``DIR/b`` by ``OLD`` (a tree: ``git worktree add ../old
<commit>``). On first use ``DIR/a`` is synthesized and rendered whole, and copied to ``DIR/b``,
which ``OLD`` renders whole; a later call first renders each whole by its own code (a render
cache is its code's, and a tree edited since would render everything), unless ``--no-full``. Each
round renders one pass of changes on each site (the two start as copies, so they see the same
changes), the order swapped every round; it prints each render, then the medians of wall,
CPU, the driver's page faults and each of the driver's phases, and the two codes compared
round by round (the median of this tree's wall less ``OLD``'s in the same round, and the
rounds this tree was quicker in): the machine's speed drifts within a run, and a pair of
renders a few seconds apart shares the drift.

The two sites must have seen the same changes (each keeps its records and random state in
``state.pickle``): a render of one of them alone (by ``bench/render_pass.py``, or a profile
of it) makes them part, and the script refuses to compare them until ``DIR/b`` is removed
(it is then copied from ``DIR/a`` again).

    python bench/render_ab.py OLD DIR [--rounds 10] [--every] [--no-full]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PASS = HERE / "render_pass.py"


@dataclass
class Run:
    wall: float
    cpu: float
    faults: float
    freed: float
    written: int
    phases: dict[str, float]

    def __str__(self) -> str:
        return (
            f"wall {self.wall:.3f} s  cpu {self.cpu:.3f} s  faults {self.faults:.0f}  "
            f"freed after {self.freed:.3f} s  written {self.written}"
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("old", type=Path, help="the tree to compare this one with")
    ap.add_argument("dir", type=Path, help="where the two sites are kept")
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--every", action="store_true", help="changes of every kind")
    ap.add_argument("--no-full", action="store_true", help="the sites are their codes' already")
    args = ap.parse_args()
    sites = {"this": (args.dir / "a", HERE.parent), "old": (args.dir / "b", args.old.resolve())}
    a, b = sites["this"][0], sites["old"][0]
    full = set() if args.no_full else set(sites)
    if not a.exists():  # (synthesized, and rendered whole by this tree)
        args.dir.mkdir(parents=True, exist_ok=True)
        print(f"this: first render  {_render(*sites['this'], ['--full'])}", flush=True)
        full.discard("this")
    if not b.exists():  # (a copy of this tree's render)
        subprocess.run(["cp", "-a", str(a), str(b)], check=True)  # (hard links kept)
        full.add("old")
    if (a / "state.pickle").read_bytes() != (b / "state.pickle").read_bytes():
        sys.exit(f"{a} and {b} have seen different changes (their state.pickle differ): "
                 f"remove {b} to copy {a} again")  # fmt: skip
    for name in [n for n in sites if n in full]:
        print(f"{name}: full render  {_render(*sites[name], ['--full'])}", flush=True)
    runs: dict[str, list[Run]] = {name: [] for name in sites}
    extra = ["--every"] if args.every else []
    for i in range(args.rounds):
        for name in list(sites) if i % 2 == 0 else list(reversed(sites)):
            site, code = sites[name]
            run = _render(site, code, extra)
            runs[name].append(run)
            print(f"round {i + 1} {name}: {run}", flush=True)
        if runs["this"][-1].written != runs["old"][-1].written:
            print(f"round {i + 1}: the two wrote other counts of files: other changes?")
    _medians(runs)
    _paired(runs["this"], runs["old"])
    return 0


def _render(site: Path, code: Path, extra: list[str]) -> Run:
    """One render_pass.py call, and its figures."""
    argv = [sys.executable, str(PASS), str(site), "--code", str(code), "--json", *extra]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{done.stderr[-2000:]}")
    return Run(**json.loads(done.stdout))


def _medians(runs: dict[str, list[Run]]) -> None:
    names = list(runs)
    print(f"\nmedians of {len(runs[names[0]])} renders each" + "".join(f"{n:>12}" for n in names))
    for key, places in (("wall", 3), ("cpu", 3), ("faults", 0)):
        cells = [statistics.median(getattr(r, key) for r in runs[n]) for n in names]
        print(f"{key:<36}" + "".join(f"{c:>12.{places}f}" for c in cells))
    phases = dict.fromkeys(p for n in names for r in runs[n] for p in r.phases)
    for phase in phases:
        cells = []
        for n in names:
            kept = [r.phases[phase] for r in runs[n] if phase in r.phases]
            cells.append(f"{statistics.median(kept):>12.3f}" if kept else f"{'-':>12}")
        print(f"  {phase:<34}" + "".join(cells))


def _paired(this: list[Run], old: list[Run]) -> None:
    """This tree's wall less the old one's, round by round: the median, and the rounds it
    was quicker in."""
    walls = [t.wall - o.wall for t, o in zip(this, old, strict=True)]
    cpus = [t.cpu - o.cpu for t, o in zip(this, old, strict=True)]
    quicker = sum(d < 0 for d in walls)
    print(
        f"round by round, this less old: wall {statistics.median(walls):+.3f} s (median), "
        f"CPU {statistics.median(cpus):+.3f} s; this quicker in {quicker} of {len(walls)}"
    )


if __name__ == "__main__":
    sys.exit(main())
