"""The audit log: each pass that changed the state becomes one git commit.

The commit message summarises the pass (new GOOD/BAD/FAIL, regressions named)
so that ``git log state/`` reads as the rebuilder's history.
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from rebuilder.errors import StateError

log = logging.getLogger(__name__)


def _git(cwd: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # a cron job or CI runner may have no git identity; the commit must not fail for that
    env.setdefault("GIT_AUTHOR_NAME", "rebuilder")
    env.setdefault("GIT_AUTHOR_EMAIL", "rebuilder@localhost")
    env.setdefault("GIT_COMMITTER_NAME", env["GIT_AUTHOR_NAME"])
    env.setdefault("GIT_COMMITTER_EMAIL", env["GIT_AUTHOR_EMAIL"])
    try:
        r = subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise StateError("git is not installed; cannot record the audit log") from None
    if check and r.returncode != 0:
        msg = (r.stderr or r.stdout).strip().splitlines()
        raise StateError(f"git {args[0]} failed: {msg[-1] if msg else r.returncode}")
    return r


LIST_LIMIT = 50  # names in one commit message, then "and N more"


def bounded_list(items: Sequence[str], limit: int = LIST_LIMIT, total: int | None = None) -> str:
    """Indented lines of the first ``limit`` items, then "and N more" (a commit stays short);
    ``total``: how many there were, when ``items`` holds only the first ones.

    >>> print(bounded_list(["a", "b", "c"], limit=2))
      a
      b
      and 1 more
    """
    lines = [f"  {x}" for x in items[:limit]]
    total = len(items) if total is None else total
    if total > len(lines):
        lines.append(f"  and {total - len(lines)} more")
    return "\n".join(lines)


def git_init(path: Path) -> None:
    """A new git repository at ``path`` (``rebuild init``)."""
    _git(path, "init", "-q")


def work_tree(path: Path) -> Path | None:
    r = _git(path, "rev-parse", "--show-toplevel", check=False)
    return Path(r.stdout.strip()) if r.returncode == 0 else None


# Loose objects packed past this size. A commit stores each changed state file whole (zlib'd:
# ~8 MB at Debian's size), and git's automatic gc counts loose objects (6,700), not bytes: a
# few passes a day kept thousands of whole copies, gigabytes a year. Packed, each version is a
# delta of the one before: 22 versions of a 46 MB state, 171 MB loose, took 6.9 MB (git gc:
# 34 s and 0.9 GB of memory on a two-core machine, once every ~30 passes).
PACK_LOOSE_MB = 256


def commit(
    state_dir: Path, files: Sequence[Path], message: str, *, pack_loose_mb: int = PACK_LOOSE_MB
) -> str | None:
    """Commit ``files`` (and only them) with ``message``; the new commit id, or None
    when nothing changed or the state dir is not in a git work tree (with a warning).
    The repository is packed when its loose objects exceed ``pack_loose_mb`` MB."""
    top = work_tree(state_dir)
    if top is None:
        log.warning("%s is not in a git work tree: no audit commit (git init it)", state_dir)
        return None
    paths = [str(f.resolve().relative_to(top.resolve())) for f in files if f.exists()]
    if not paths:
        return None
    _git(top, "add", "--", *paths)
    if _git(top, "diff", "--cached", "--quiet", "--", *paths, check=False).returncode == 0:
        return None
    _git(top, "commit", "-q", "--no-verify", "-m", message, "--", *paths)
    head = _git(top, "rev-parse", "HEAD").stdout.strip()
    _pack(top, pack_loose_mb)
    return head


def _pack(top: Path, limit_mb: int) -> None:
    """``git gc`` once the loose objects pass ``limit_mb`` MB (see :data:`PACK_LOOSE_MB`); a
    failure is only logged: the commit is made, and the next one tries again."""
    r = _git(top, "count-objects", "-v", check=False)
    counts = dict(line.partition(": ")[::2] for line in r.stdout.splitlines())
    loose_kib = int(counts.get("size", "0")) if counts.get("size", "").isdigit() else 0
    if r.returncode != 0 or loose_kib <= limit_mb * 1024:
        return
    log.info("%s: packing %d MB of loose git objects (the state's history)", top, loose_kib >> 10)
    r = _git(top, "gc", "--quiet", check=False)
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip().splitlines()
        log.warning("git gc failed in %s: %s", top, msg[-1] if msg else r.returncode)
