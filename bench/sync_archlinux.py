#!/usr/bin/env python3
"""Benchmark: sync a generated 15,000-package Arch Linux database with rebuilder.sync.archlinux.

The database is made here, in the layout repo-add writes: a real tar of
``<name>-<version>/`` directories and ``desc`` files with every field an
official database has (descriptions, checksums, a base64 package signature,
dependency lists...), about as big per entry as the real ones, compressed
with zstd. A third of the pkgbases have split packages, as in Arch's repositories.
It is served on 127.0.0.1 by a separate ``http.server`` process (serving
costs this process nothing) and the sync is timed:

1. ``cold``: download + decompress + parse + group (as after a mirror update),
2. ``unchanged``: with the fingerprints of run 1 (every quiet pass after it),
3. ``parse only``: :func:`iter_database` over the bytes already in memory.

With ``--sign`` the database is signed by a throwaway key and the profile
sets a keyring, so that gpgv's cost is in the figures. Target: under 3 s cold.

Usage: python bench/sync_archlinux.py [--packages 15000] [--compression zst] [--sign]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import random
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rebuilder.config import Profile
from rebuilder.sync import SyncContext
from rebuilder.sync import archlinux as arch
from tests.fixtures import archlinux as ar

WORDS = (
    "lib",
    "python",
    "perl",
    "gtk",
    "qt",
    "font",
    "x",
    "kde",
    "gnome",
    "rust",
    "go",
    "tool",
    "data",
    "doc",
    "util",
    "core",
    "net",
    "media",
    "audio",
    "video",
)


def generate(n: int, rng: random.Random) -> list[list[tuple[str, list[str]]]]:
    """``n`` desc entries; every third pkgbase is split into 2-4 packages."""
    entries: list[list[tuple[str, list[str]]]] = []
    i = 0
    while len(entries) < n:
        base = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}{i}"
        version = f"{rng.randint(0, 2)}:" * (rng.random() < 0.05) + (
            f"{rng.randint(0, 30)}.{rng.randint(0, 99)}.{rng.randint(0, 9)}-{rng.randint(1, 5)}"
        )
        split = rng.randint(2, 4) if i % 3 == 0 else 1
        for k in range(min(split, n - len(entries))):
            name = base if k == 0 else f"{base}-{('docs', 'devel', 'libs', 'extra')[k - 1]}"
            entries.append(desc(name, base, version, rng))
        i += 1
    return entries


def desc(name: str, base: str, version: str, rng: random.Random) -> list[tuple[str, list[str]]]:
    arch = "any" if name.endswith("-docs") else "x86_64"
    data = f"{name}{version}".encode()
    return [
        ("FILENAME", [f"{name}-{version}-{arch}.pkg.tar.zst"]),
        ("NAME", [name]),
        ("BASE", [base]),
        ("VERSION", [version]),
        ("DESC", [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))]),
        ("GROUPS", ["base-devel"] if rng.random() < 0.05 else []),
        ("CSIZE", [str(rng.randint(10_000, 50_000_000))]),
        ("ISIZE", [str(rng.randint(30_000, 150_000_000))]),
        ("MD5SUM", [hashlib.md5(data).hexdigest()]),
        ("SHA256SUM", [hashlib.sha256(data).hexdigest()]),
        ("PGPSIG", [base64.b64encode(rng.randbytes(310)).decode()]),
        ("URL", [f"https://upstream.example/{base}"]),
        ("LICENSE", rng.sample(["GPL-2.0-or-later", "MIT", "Apache-2.0", "BSD-3-Clause"], 2)),
        ("ARCH", [arch]),
        ("BUILDDATE", [str(1_700_000_000 + rng.randint(0, 50_000_000))]),
        ("PACKAGER", [f"Packager {rng.randint(1, 80)} <p{rng.randint(1, 80)}@example.org>"]),
        (
            "DEPENDS",
            [f"{rng.choice(WORDS)}{rng.randint(0, 999)}" for _ in range(rng.randint(1, 12))],
        ),
        (
            "OPTDEPENDS",
            [
                f"{rng.choice(WORDS)}: for {rng.choice(WORDS)} support"
                for _ in range(rng.randint(0, 4))
            ],
        ),
        ("MAKEDEPENDS", [rng.choice(WORDS) for _ in range(rng.randint(0, 6))]),
    ]


def serve(root: Path) -> tuple[str, subprocess.Popen[bytes]]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "http.server",
            str(port),
            "--bind",
            "127.0.0.1",
            "--directory",
            str(root),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--packages", type=int, default=15_000)
    ap.add_argument("--compression", default="zst", choices=["zst", "gz", "xz", "bz2", "none"])
    ap.add_argument("--sign", action="store_true", help="sign the database, verify with gpgv")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-arch-"))
    gnupghome = Path(tempfile.mkdtemp(prefix="rb-bgpg-"))
    server = None
    try:
        entries, t_gen = timed(lambda: generate(args.packages, random.Random(15000)))
        tar, t_tar = timed(lambda: ar.db_tar(entries))
        db_dir = tmp / "mirror" / "extra" / "os" / "x86_64"
        db_dir.mkdir(parents=True)
        data, t_zip = timed(lambda: ar.compress(tar, args.compression))
        (db_dir / "extra.db").write_bytes(data)
        keyring = None
        if args.sign:
            from tests.fixtures.gpg import generate_key, gpg, stop_agent

            key = generate_key(gnupghome, "Bench <bench@example.org>")
            keyring = gnupghome / "keyring.gpg"
            keyring.write_bytes(gpg(gnupghome, "--export", key))
            gpg(
                gnupghome,
                "--local-user",
                key,
                "--detach-sign",
                "--output",
                str(db_dir / "extra.db.sig"),
                str(db_dir / "extra.db"),
            )
            stop_agent(gnupghome)
        print(
            f"generated {len(entries)} packages in {t_gen + t_tar:.2f} s: tar "
            f"{len(tar) / 1e6:.1f} MB, {args.compression} {len(data) / 1e6:.1f} MB "
            f"({t_zip:.2f} s to compress)"
        )

        url, server = serve(tmp / "mirror")
        profile = Profile(
            "bench",
            "archlinux",
            (),
            components=("extra",),
            architectures=("x86_64",),
            source=f"{url}/$repo/os/$arch",
            keyring=str(keyring) if keyring else None,
        )
        cache = tmp / "cache"
        snap, cold = timed(lambda: arch.sync(profile, SyncContext(cache)))
        again, unchanged = timed(lambda: arch.sync(profile, SyncContext(cache, snap.fingerprints)))
        assert again.unchanged
        parsed, parse = timed(lambda: list(arch.iter_database(data, what="bench")))
        assert len(parsed) == len(entries)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        artifacts = sum(len(g.artifacts) for g in snap.groups)
        print(
            f"sync (cold: fetch, {'verify, ' if args.sign else ''}parse, group): {cold:6.2f} s"
            f"   target < 3 s: {'OK' if cold < 3 else 'MISSED'}"
        )
        print(f"sync (unchanged):                  {unchanged:6.3f} s")
        print(f"parse only (decompress + tar + desc): {parse:5.2f} s")
        print(f"groups:                            {len(snap.groups):6d}")
        print(f"artifacts:                         {artifacts:6d}")
        print(f"peak RSS:                          {rss:6.0f} MB")
    finally:
        if server is not None:
            server.terminate()
            server.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(gnupghome, ignore_errors=True)


if __name__ == "__main__":
    main()
