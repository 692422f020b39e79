"""Shard files: one pass's queue cut into N independent job files, and their results.

Any batch scheduler can then be the engine: a CI job matrix, a Slurm array,
a Kubernetes Indexed Job. ``rebuild plan --shards N --out DIR`` writes
``DIR/shard-<i>.json``; each worker runs ``rebuild build --plan
DIR/shard-<i>.json --results RES`` without touching the state, which appends
one line per finished build to ``RES/results-<i>.jsonl`` (and the build's
files under ``RES/builds/<id>/``); ``rebuild merge RES...`` is the only
writer of the state.

The split is deterministic: longest first by the durations recorded for
each group (hashing evens out counts but not cost), or by a stable hash of
the source name when nothing has been built yet.

"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from rebuilder import _fs
from rebuilder.errors import RebuilderError
from rebuilder.model import SCHEMA_VERSION, Attempt, Job

RESULTS_GLOB = "results-*.jsonl"
INDEX_NAME = "shards.json"  # the list of shard numbers (a CI matrix) and the plan's errors
MAX_SHARDS = 256  # a GitHub Actions matrix runs at most 256 jobs


class ShardError(RebuilderError):
    """A shard or results file is missing, corrupt or of another schema."""


def split(jobs: Sequence[Job], n: int, durations: Mapping[str, float]) -> list[list[Job]]:
    """Cut ``jobs`` into ``n`` shards.

    With recorded ``durations`` (group key -> seconds), longest-processing-time
    first: each job goes to the least loaded shard, unknown durations counting
    as the median. Without any, a stable hash of the source name, so that a
    package lands on the same shard from one pass to the next.

    >>> from rebuilder.model import BuildGroup
    >>> g = lambda n: BuildGroup(n, "1", "debian", "s", "main", "amd64", "u", ())
    >>> js = [Job("p", g(n), "new") for n in ("a", "b", "c", "d")]
    >>> [[j.group.name for j in s] for s in split(js, 2, {})]
    [['a', 'b', 'c'], ['d']]
    >>> d = {"s/main/amd64/a": 10, "s/main/amd64/b": 9, "s/main/amd64/c": 2, "s/main/amd64/d": 1}
    >>> [[j.group.name for j in s] for s in split(js, 2, d)]
    [['a', 'd'], ['b', 'c']]
    """
    if n < 1:
        raise ShardError(f"the number of shards must be at least 1, not {n}")
    shards: list[list[Job]] = [[] for _ in range(n)]
    known = [durations[j.group.key] for j in jobs if j.group.key in durations]
    if not known:
        for j in jobs:
            shards[_stable_hash(j.group.name) % n].append(j)
        return shards
    median = sorted(known)[len(known) // 2]
    cost = {j.group.key: durations.get(j.group.key, median) for j in jobs}
    loads = [(0.0, i) for i in range(n)]
    for j in sorted(jobs, key=lambda j: (-cost[j.group.key], j.group.key)):
        load, i = heapq.heappop(loads)
        shards[i].append(j)
        heapq.heappush(loads, (load + cost[j.group.key], i))
    return shards


def _stable_hash(text: str) -> int:
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def shard_path(out: Path, i: int) -> Path:
    return out / f"shard-{i}.json"


def check_count(n: int) -> None:
    """Refuse a number of shards no scheduler we document runs in one go."""
    if n < 1 or n > MAX_SHARDS:
        raise ShardError(
            f"--shards {n}: expected 1 to {MAX_SHARDS} (a GitHub Actions matrix runs at most "
            f"{MAX_SHARDS} jobs; give each shard more work instead)"
        )


def write_index(out: Path, n: int, jobs: int, errors: Sequence[str]) -> Path:
    """``shards.json``: the shard numbers written (what a CI matrix runs) and sync errors."""
    doc = {"schema": SCHEMA_VERSION, "shards": list(range(n)), "jobs": jobs, "errors": list(errors)}
    path = out / INDEX_NAME
    _fs.write_atomic(path, (json.dumps(doc, sort_keys=True) + "\n").encode())
    return path


def write_shards(out: Path, shards: Sequence[Sequence[Job]]) -> list[Path]:
    """Write one job file per shard (and remove stale ones of an earlier, larger split)."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("shard-*.json"):
        old.unlink()
    paths = []
    for i, jobs in enumerate(shards):
        doc = {
            "schema": SCHEMA_VERSION,
            "shard": i,
            "shards": len(shards),
            "jobs": [j.to_json() for j in jobs],
        }
        path = shard_path(out, i)
        _fs.write_atomic(path, (json.dumps(doc, sort_keys=True, indent=1) + "\n").encode())
        paths.append(path)
    return paths


def read_shard(path: Path) -> tuple[int, list[Job]]:
    """(shard number, its jobs)."""
    try:
        doc = json.loads(path.read_bytes())
        if doc.get("schema") != SCHEMA_VERSION:
            raise ShardError(f"{path}: schema {doc.get('schema')!r}, expected {SCHEMA_VERSION}")
        return int(doc["shard"]), [Job.from_json(j) for j in doc["jobs"]]
    except OSError as e:
        raise ShardError(f"{path}: cannot read: {e.strerror}") from None
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise ShardError(f"{path}: not a shard file ({e!r})") from None


class ResultWriter:
    """Appends one line per finished build, fsynced: a killed worker loses only running builds."""

    def __init__(self, results: Path, shard: int) -> None:
        results.mkdir(parents=True, exist_ok=True)
        self.path = results / f"results-{shard}.jsonl"
        self._f = self.path.open("ab")

    def append(self, job: Job, attempt: Attempt) -> None:
        line = json.dumps({"job": job.to_json(), "attempt": attempt.to_json()}, sort_keys=True)
        self._f.write(line.encode() + b"\n")
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        self._f.close()


def read_results(results: Path) -> Iterator[tuple[Job, Attempt]]:
    """Every (job, attempt) in a results directory; a torn last line (killed worker) is skipped."""
    if not results.is_dir():
        raise ShardError(f"{results}: no such results directory")
    for f in sorted(results.glob(RESULTS_GLOB)):
        for line in f.read_bytes().splitlines():
            try:
                entry: dict[str, Any] = json.loads(line)
                yield Job.from_json(entry["job"]), Attempt.from_json(entry["attempt"])
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a killed worker: that build stays queued
