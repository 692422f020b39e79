#!/usr/bin/env python3
"""Benchmark: a 50,000-job synthetic plan cut into 64 shards, results merged back.

Prints the time to plan and split, the time to merge every shard's results
into the state (``rebuild merge`` without render and commit), and checks
that the merged records equal those of one unsharded pass that recorded the
same attempts.

Usage: python bench/shards.py [--jobs 50000] [--shards 64]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rebuilder import pipeline, plan, shards, state
from rebuilder.config import Config, Profile, Release, Settings
from rebuilder.model import Artifact, Attempt, BuildGroup, GroupRecord, Job, Status, utcnow

STATUSES = (Status.GOOD, Status.GOOD, Status.GOOD, Status.BAD, Status.FAIL)
BUILT_AT = dt.datetime(2026, 1, 1)
POOL = "https://mirror.example/debian/pool/main/s"


def synthetic_state(n: int) -> state.ProfileState:
    st = state.ProfileState("bench", "debian")
    for i in range(n):
        name = f"src{i:06d}"
        arts = tuple(
            Artifact(
                f"{name}-{k}",
                "1.0-1",
                "amd64",
                f"{POOL}/{name}/{name}-{k}_1.0-1_amd64.deb",
                f"{i:064x}",
                1000 + k,
            )
            for k in range(1 + i % 3)
        )
        g = BuildGroup(
            name,
            "1.0-1",
            "debian",
            "sid",
            "main",
            "amd64",
            f"https://buildinfo.example/{name}_1.0-1_amd64.buildinfo",
            arts,
        )
        st.records[g.key] = GroupRecord(g)
    return st


def attempt_for(job_index: int, job: Job) -> Attempt:
    return Attempt(
        job.build_id,
        job.group.version,
        STATUSES[job_index % len(STATUSES)],
        BUILT_AT,
        60.0 + job_index % 600,
        "debian.sh",
        "",
        job.group.inputs_digest,
    )


def records_json(st: state.ProfileState) -> str:
    return json.dumps({k: r.to_json() for k, r in sorted(st.records.items())}, sort_keys=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=50_000)
    ap.add_argument("--shards", type=int, default=64)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="rebuilder-shards-"))
    settings = Settings(state_dir=work / "state", site_dir=work / "site", cache_dir=work / "c")
    profile = Profile("bench", "debian", (Release("sid", "https://mirror.example/debian"),))
    config = Config(None, settings, {"bench": profile})
    pol = pipeline.policies(settings)

    st = synthetic_state(args.jobs)
    state.save(settings.state_dir, st)

    t = time.perf_counter()
    todo = plan.plan({"bench": st.records}, utcnow(), pol)
    first = state.reserve_build_ids(settings.state_dir, len(todo))
    jobs = [j.with_build_id(first + i) for i, j in enumerate(todo)]
    parts = shards.split(jobs, args.shards, {})
    shards.write_shards(work / "plan", parts)
    t_plan = time.perf_counter() - t

    # what each shard's worker would have appended (written in bulk: no builds run here)
    index = {j.build_id: i for i, j in enumerate(jobs)}
    for n, part in enumerate(parts):
        res = work / f"res{n}"
        res.mkdir()
        with (res / f"results-{n}.jsonl").open("w") as f:
            for j in part:
                a = attempt_for(index[j.build_id], j)
                f.write(json.dumps({"job": j.to_json(), "attempt": a.to_json()}) + "\n")

    opts = pipeline.PassOptions(commit=False, render=False)
    t = time.perf_counter()
    report = pipeline.merge(config, [work / f"res{n}" for n in range(len(parts))], opts)
    t_merge = time.perf_counter() - t

    single = synthetic_state(args.jobs)
    for i, j in enumerate(jobs):
        plan.after_attempt(single.records[j.group.key], attempt_for(i, j), pol)
    merged = state.load(settings.state_dir, "bench", "debian")
    equal = records_json(merged) == records_json(single)

    sizes = [len(p) for p in parts]
    print(f"jobs:                      {len(jobs):8d}")
    print(f"shards:                    {len(parts):8d}  (jobs per shard {min(sizes)}-{max(sizes)})")
    print(f"plan + split + write:      {t_plan:8.2f} s")
    print(f"merge ({sum(report.built.values())} results):      {t_merge:8.2f} s")
    print(f"merged state == unsharded: {equal!s:>8}")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS:                  {rss:8.0f} MB")
    if not equal:
        sys.exit(1)


if __name__ == "__main__":
    main()
