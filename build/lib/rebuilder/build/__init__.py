"""The build stage: one build (:mod:`.runner`), many builds (:mod:`.pool`), shipped backends.

A build takes a :class:`~rebuilder.model.Job` and returns an
:class:`~rebuilder.model.Attempt`; the pool drives many of them in parallel
and hands each attempt back as it finishes. Nothing here knows about the
state or the site: they meet in :mod:`rebuilder.model`.
"""

from rebuilder.build.backends import shipped_backend
from rebuilder.build.pool import BuildPool, PoolProgress, PoolSummary
from rebuilder.build.runner import Abandoned, BuildContext, run_build

__all__ = [
    "Abandoned",
    "BuildContext",
    "BuildPool",
    "PoolProgress",
    "PoolSummary",
    "run_build",
    "shipped_backend",
]
