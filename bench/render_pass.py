"""One pass's render on a kept bench site, a process each: how two codes are compared.

The first call synthesizes bench/render.py's state (45,000 groups) into ``DIR/site`` and
renders it whole; it keeps the records (``DIR/state.pickle``). Each later call makes 100
changes (``--every``: of every kind a Debian pass makes) and renders them, told which, as a
pass does, then prints its wall time, CPU (with its forked processes), the page faults of
the driver, the time the freeing thread took after it, and the driver's phases.

A single render moves by a few tenths of a second with the load of other work here, and the
machine's speed moves by half within a day: to compare two codes, render one site each,
alternately, each on its own copy (``cp -a``) of one site, and compare the medians:
``bench/render_ab.py`` does that with this script::

    git worktree add ../old <commit>
    python bench/render_ab.py ../old /tmp/ab

``--code`` is the tree whose ``rebuilder`` renders (default: this one's, not an installed one;
it says which on stderr). The two trees read one pickle of the records: their models must
be alike. ``--json``: the same figures as one JSON object on stdout.

    python bench/render_pass.py DIR [--every] [--changes 100] [--full] [--code TREE] [--json]
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pickle
import random
import resource
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dir", type=Path)
    ap.add_argument("--every", action="store_true", help="changes of every kind")
    ap.add_argument("--changes", type=int, default=100)
    ap.add_argument("--full", action="store_true", help="render the whole site, no change")
    ap.add_argument("--groups", type=int, default=45_000, help="for the first call")
    ap.add_argument("--code", type=Path, default=HERE.parent, help="the tree that renders")
    ap.add_argument("--json", action="store_true", help="the figures as JSON")
    args = ap.parse_args()
    # that tree's rebuilder first: bench/render.py then finds it imported
    sys.path.insert(0, str(args.code.resolve()))
    importlib.import_module("rebuilder.site")
    sys.path.insert(1, str(HERE))
    bench = importlib.import_module("render")  # bench/render.py
    from rebuilder import _gc
    from rebuilder.site import render

    code = Path(sys.modules["rebuilder"].__file__ or "").parent.parent
    print(f"code: {code}; python: {bench.interpreter()}", file=sys.stderr)
    site, kept = args.dir / "site", args.dir / "state.pickle"
    full = args.full
    if kept.exists():
        records, history, rng = pickle.loads(kept.read_bytes())
    else:
        rng = random.Random(1)
        records = bench.synthesize(site, args.groups, rng)
        history = bench._history(records, bench.NOW)
        full = True
    changed = None
    if not full:
        make = bench.change_every_kind if args.every else bench.change
        changed = make(site, records, args.changes, rng)
    views = bench.views(records, history, bench.NOW)
    os.sync()  # (what the last call wrote is not this one's to wait for)
    faults, cpu = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, bench._cpu()
    started = time.perf_counter()
    stats = render(site, views, now=bench.NOW, changed=changed)
    wall = time.perf_counter() - started
    _gc.wait_freed()
    freed = time.perf_counter() - started - wall
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults
    cpu = bench._cpu() - cpu  # (the render's and its thread's, not the pickling's below)
    kept.write_bytes(pickle.dumps((records, history, rng)))  # (before printing: a closed pipe)
    if args.json:
        figures = {"wall": wall, "cpu": cpu, "faults": faults, "freed": freed}
        json.dump({**figures, "written": stats.written, "phases": stats.phases}, sys.stdout)
        print(flush=True)
        return 0
    print(
        f"wall {wall:.3f} s  cpu {cpu:.3f} s  faults {faults}  "
        f"freed after {freed:.3f} s  written {stats.written}",
        flush=True,
    )
    print(" · ".join(f"{k} {v:.3f}" for k, v in stats.phases.items()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
