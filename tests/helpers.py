"""Small builders of domain objects shared by the unit tests."""

from __future__ import annotations

import datetime as dt

from rebuilder.model import Artifact, Attempt, BuildGroup, Status

T0 = dt.datetime(2026, 1, 1, 12, 0, 0)


def group(
    name: str = "hello", version: str = "1.0-1", arch: str = "amd64", **kw: object
) -> BuildGroup:
    art = Artifact(name, version, arch, f"https://mirror.example/pool/{name}_{version}_{arch}.deb",
                   kw.pop("sha256", "a" * 64), 100)  # type: ignore[arg-type]  # fmt: skip
    return BuildGroup(name, version, "debian", "bookworm", "main", arch,
                      f"https://mirror.example/{name}.buildinfo", (art,), **kw)  # type: ignore[arg-type]  # fmt: skip


def attempt(g: BuildGroup, status: Status, build_id: int = 1, at: dt.datetime = T0,
            reason: str = "") -> Attempt:  # fmt: skip
    return Attempt(build_id, g.version, status, at, 10.0, "test.sh", reason, g.inputs_digest)
