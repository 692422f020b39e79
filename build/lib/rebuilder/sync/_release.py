"""A Debian suite's signed ``InRelease``/``Release``: fetch, verify with gpgv, parse, check.

The Release file is the root of trust of a Debian repository: it is signed,
and it lists the SHA256 and size of every index (``Sources``, ``Packages``).
The signature is checked by a real ``gpgv`` against the profile's keyring,
its machine-readable ``--status-fd`` output decides (not its exit code, so
that a second signature by a key we do not have, as during Debian's key
rollovers, does not fail a release that a trusted key signed); only the
bytes gpgv says were signed are parsed, never the text around them.

>>> r = parse_release(b"Suite: unstable\\nCodename: sid\\nSHA256:\\n "
...                   + b"ab" * 32 + b" 12 main/source/Sources.gz\\n", what="test")
>>> r.suite, r.codename, r.files["main/source/Sources.gz"].size
('unstable', 'sid', 12)
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import hashlib
import logging
import os
import re
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rebuilder import fetch
from rebuilder.errors import ConfigError, RepositoryIndexError, SignatureError

log = logging.getLogger(__name__)

DEFAULT_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
GPGV_TIMEOUT = 60.0
_MAX_RELEASE = 64 << 20  # a Release listing every index of every architecture is ~1 MB
# OpenPGP hash algorithm ids (RFC 4880 9.4) that no longer protect anything: MD5, SHA1, RIPEMD160.
_WEAK_HASHES = {"1": "MD5", "2": "SHA1", "3": "RIPEMD160"}
_SUM_LINE = re.compile(r"^\s*([0-9a-fA-F]{64})\s+(\d+)\s+(\S+)\s*$")


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """One file the Release vouches for."""

    path: str
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class ReleaseFile:
    """A parsed, verified Release.

    ``url`` is where it came from and ``sha256`` the digest of the fetched
    bytes (``InRelease``, or ``Release`` when there is no ``InRelease``):
    the sync's fingerprint of the whole suite.
    """

    fields: dict[str, str]
    files: dict[str, IndexEntry]
    url: str = ""
    sha256: str = ""

    @property
    def suite(self) -> str:
        return self.fields.get("Suite", "")

    @property
    def codename(self) -> str:
        return self.fields.get("Codename", "")

    @property
    def architectures(self) -> tuple[str, ...]:
        return tuple(self.fields.get("Architectures", "").split())

    @property
    def acquire_by_hash(self) -> bool:
        return self.fields.get("Acquire-By-Hash", "").lower() == "yes"

    @property
    def all_in_arch_packages(self) -> bool:
        """Does each ``binary-ARCH/Packages`` also list the ``Architecture: all`` packages?

        ``No-Support-for-Architecture-all: Packages`` promises it (Debian's
        own archive says so), which makes reading ``binary-all`` redundant.
        """
        return self.fields.get("No-Support-for-Architecture-all", "") == "Packages"

    def valid_until(self) -> _dt.datetime | None:
        return _parse_date(self.fields.get("Valid-Until"), "Valid-Until", self.url)


def fetch_release(
    base_url: str,
    suite: str,
    keyring: str | None,
    *,
    check_valid_until: bool = True,
    now: _dt.datetime | None = None,
) -> ReleaseFile:
    """Fetch ``dists/<suite>/InRelease`` (or ``Release`` + ``Release.gpg``), verify and parse it."""
    keyring_path = _keyring(keyring)
    dists = f"{base_url.rstrip('/')}/dists/{suite}"
    url = f"{dists}/InRelease"
    data = fetch.fetch_bytes(url, max_size=_MAX_RELEASE, missing_ok=True)
    if data is not None:
        signed = verify_clearsigned(data, keyring_path, what=url)
    else:
        url = f"{dists}/Release"
        data = fetch.fetch_bytes(url, max_size=_MAX_RELEASE, missing_ok=True)
        if data is None:
            raise RepositoryIndexError(f"{dists}: neither InRelease nor Release exists")
        sig = fetch.fetch_bytes(f"{url}.gpg", max_size=1 << 20, missing_ok=True)
        if sig is None:
            raise SignatureError(f"{url}: not signed (no InRelease and no Release.gpg)")
        verify_detached(data, sig, keyring_path, what=url)
        signed = data
    release = parse_release(signed, what=url)
    release = ReleaseFile(release.fields, release.files, url, hashlib.sha256(data).hexdigest())
    check_suite(release, suite)
    if check_valid_until:
        check_fresh(release, now or _dt.datetime.now(_dt.UTC))
    return release


def check_suite(release: ReleaseFile, suite: str) -> None:
    """Refuse a Release of another suite: a validly signed but substituted file (a downgrade)."""
    names = {release.suite, release.codename} - {""}
    if names and suite not in names:
        raise SignatureError(
            f"{release.url}: signed for suite {' / '.join(sorted(names))}, not {suite!r} "
            "(substituted Release?)"
        )


def check_fresh(release: ReleaseFile, now: _dt.datetime) -> None:
    """Refuse an expired Release: replaying an old signed one would freeze us on old packages."""
    until = release.valid_until()
    if until is not None and until < now:
        raise SignatureError(
            f"{release.url}: expired (Valid-Until {until:%Y-%m-%d %H:%M:%S} UTC); "
            "set check_valid_until = false in the profile to accept it"
        )


def parse_release(data: bytes, *, what: str) -> ReleaseFile:
    """Parse the (already verified) Release text: its fields and its SHA256 list."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RepositoryIndexError(f"{what}: Release is not UTF-8 text") from None
    fields: dict[str, str] = {}
    files: dict[str, IndexEntry] = {}
    current: str | None = None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            if fields:
                break  # one paragraph only; anything after it is not the Release
            continue
        if line[0] in " \t":
            if current is None:
                raise RepositoryIndexError(f"{what}: line {n}: continuation without a field")
            if current == "SHA256":
                files.update(_sum_entry(line, n, what))
            else:
                fields[current] += "\n" + line.strip()
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or " " in name:
            raise RepositoryIndexError(f"{what}: line {n}: not a 'Field: value' line")
        current = name
        fields[name] = value.strip()
    if not fields:
        raise RepositoryIndexError(f"{what}: empty Release")
    if "SHA256" not in fields:
        raise RepositoryIndexError(f"{what}: no SHA256 list (only SHA256 is trusted)")
    return ReleaseFile(fields, files)


def _sum_entry(line: str, n: int, what: str) -> dict[str, IndexEntry]:
    m = _SUM_LINE.match(line)
    if not m:
        raise RepositoryIndexError(f"{what}: line {n}: not a 'SHA256 SIZE PATH' line")
    sha, size, path = m.groups()
    return {path: IndexEntry(path, sha.lower(), int(size))}


def _parse_date(value: str | None, name: str, what: str) -> _dt.datetime | None:
    if not value:
        return None
    try:
        t = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise RepositoryIndexError(f"{what}: {name}: not a date: {value!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=_dt.UTC)


# --- OpenPGP ---------------------------------------------------------------


def verify_clearsigned(data: bytes, keyring: Path, *, what: str) -> bytes:
    """Verify a clearsigned message with gpgv; return exactly the bytes that were signed."""
    if b"-----BEGIN PGP SIGNED MESSAGE-----" not in data[:4096]:
        raise SignatureError(f"{what}: not a clearsigned message")
    with tempfile.TemporaryDirectory(prefix="rebuilder-gpgv-") as tmp:
        msg = Path(tmp, "InRelease")
        msg.write_bytes(data)
        out = Path(tmp, "signed")
        _gpgv(["--output", str(out), str(msg)], keyring, Path(tmp), what)
        try:
            return out.read_bytes()
        except OSError:
            raise SignatureError(f"{what}: gpgv wrote no signed content") from None


def verify_detached(data: bytes, signature: bytes, keyring: Path, *, what: str) -> None:
    """Verify ``data`` against a detached signature (``Release`` + ``Release.gpg``)."""
    with tempfile.TemporaryDirectory(prefix="rebuilder-gpgv-") as tmp:
        msg, sig = Path(tmp, "Release"), Path(tmp, "Release.gpg")
        msg.write_bytes(data)
        sig.write_bytes(signature)
        _gpgv([str(sig), str(msg)], keyring, Path(tmp), what)


def _gpgv(args: Sequence[str], keyring: Path, home: Path, what: str) -> None:
    keyring = _binary_keyring(keyring, home)
    cmd = ["gpgv", "--homedir", str(home), "--status-fd", "1", "--keyring", str(keyring), *args]
    try:
        p = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=GPGV_TIMEOUT,
            env={**os.environ, "LC_ALL": "C"},
            check=False,
        )
    except FileNotFoundError:
        raise SignatureError("gpgv is not installed (apt-get install gpgv)") from None
    except subprocess.TimeoutExpired:
        raise SignatureError(f"{what}: gpgv did not answer in {GPGV_TIMEOUT:.0f} s") from None
    status = p.stdout.decode("utf-8", "replace")
    good = judge_status(status, what=what, keyring=str(keyring))
    log.debug("%s: signed by %s", what, ", ".join(good))


def judge_status(status: str, *, what: str, keyring: str) -> list[str]:
    """The fingerprints of the good signatures in gpgv's status output, or SignatureError.

    One good signature by a key of the keyring suffices (apt's rule); a bad
    signature anywhere fails, as does a good one made with a broken hash.

    >>> judge_status("[GNUPG:] NEWSIG\\n[GNUPG:] GOODSIG AB Key\\n"
    ...              "[GNUPG:] VALIDSIG F00D 2024-01-01 1 0 4 0 1 8 01 F00D\\n",
    ...              what="x", keyring="k")
    ['F00D']
    >>> judge_status("[GNUPG:] NEWSIG\\n[GNUPG:] BADSIG AB Key\\n", what="x", keyring="k")
    Traceback (most recent call last):
    ...
    rebuilder.errors.SignatureError: x: BAD signature by key AB (the file was altered)
    """
    good: list[str] = []
    missing: list[str] = []
    problems: list[str] = []
    state = ""
    for line in status.splitlines():
        if not line.startswith("[GNUPG:] "):
            continue
        keyword, *args = line[9:].split()
        if keyword == "NEWSIG":
            state = ""
        elif keyword == "BADSIG":
            key = args[0] if args else "?"
            raise SignatureError(f"{what}: BAD signature by key {key} (the file was altered)")
        elif keyword == "GOODSIG":
            state = "good"
        elif keyword in ("EXPKEYSIG", "REVKEYSIG", "EXPSIG"):
            state = "unusable"
            kind = {"EXPKEYSIG": "expired key", "REVKEYSIG": "revoked key"}.get(
                keyword, "expired signature"
            )
            problems.append(f"{kind} {args[0] if args else '?'}")
        elif keyword == "ERRSIG" and args:
            if len(args) > 5 and args[5] == "9":  # rc 9: no public key
                missing.append(args[0])
            else:
                problems.append(f"unverifiable signature by key {args[0]}")
        elif keyword == "VALIDSIG" and state == "good" and args:
            hash_algo = args[7] if len(args) > 7 else ""
            if hash_algo in _WEAK_HASHES:
                problems.append(f"signature by {args[0]} uses weak hash {_WEAK_HASHES[hash_algo]}")
            else:
                good.append(args[0])
    if good:
        return good
    if problems:
        raise SignatureError(f"{what}: no valid signature: {'; '.join(problems)}")
    if missing:
        raise SignatureError(
            f"{what}: signed by key {', '.join(missing)}, which is not in the keyring {keyring}"
        )
    raise SignatureError(f"{what}: no valid OpenPGP signature")


def _keyring(keyring: str | None) -> Path:
    path = Path(keyring or DEFAULT_KEYRING)
    if not path.is_file():
        raise ConfigError(f"keyring {path}: no such file (set keyring = ... in the profile)")
    return path


def _binary_keyring(keyring: Path, home: Path) -> Path:
    # gpgv reads only binary keyrings; accept an armored .asc export too, as apt does.
    with keyring.open("rb") as f:
        head = f.read(64)
    if not head.lstrip().startswith(b"-----BEGIN PGP"):
        return keyring
    out = home / "keyring.gpg"
    p = subprocess.run(
        ["gpg", "--batch", "--homedir", str(home), "--dearmor", "--output", str(out),
         str(keyring)],
        stdin=subprocess.DEVNULL, capture_output=True, timeout=GPGV_TIMEOUT, check=False,
    )  # fmt: skip
    if p.returncode != 0 or not out.exists():
        raise ConfigError(f"keyring {keyring}: not an OpenPGP keyring")
    return out
