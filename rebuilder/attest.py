"""Signed in-toto link attestations, in the shape rebuilderd publishes them.

A GOOD rebuild is attested by an in-toto *link* metablock: the build input is
its material, the rebuilt artifact its product, each with its SHA-256 and
SHA-512, signed with an Ed25519 key over the OLPC canonical JSON of the
``signed`` object (as securesystemslib and in-toto-rs do it)::

    {"signatures": [{"keyid": "<hex>", "sig": "<hex>"}],
     "signed": {"_type": "link", "name": "rebuild hello_2.10-3_amd64.deb",
                "materials": {"hello_2.10-3_amd64.buildinfo": {"sha256": ..., "sha512": ...}},
                "products": {"hello_2.10-3_amd64.deb": {"sha256": ..., "sha512": ...}},
                "byproducts": {}, "command": [], "environment": {}}}

Key compatibility with rebuilderd (see docs/trust.md):

* the key id is in-toto-rs' and securesystemslib's: the SHA-256 of the
  canonical JSON of ``{"keyid_hash_algorithms": ["sha256", "sha512"],
  "keytype": "ed25519", "keyval": {"public": <hex>}, "scheme": "ed25519"}``;
* the private key file is a PKCS#8 ``PRIVATE KEY`` PEM; rebuilderd's own key
  files (PKCS#8 v2, which OpenSSL does not read) load too;
* public keys are published as rebuilderd does, an SPKI ``PUBLIC KEY`` PEM with
  a NULL algorithm parameter; :func:`public_key_from_text` reads that, the
  RFC 8410 form, bare hex and in-toto key objects.

>>> canonical_json({"b": [1, None, True], "a": "x\\ny\\"z"})
b'{"a":"x\\ny\\\\"z","b":[1,null,true]}'
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from rebuilder.api import v0
from rebuilder.errors import RebuilderError

log = logging.getLogger(__name__)

__all__ = [
    "ArtifactMismatchError",
    "AttestationError",
    "LinkInfo",
    "SigningKey",
    "SigningKeyError",
    "canonical_json",
    "decode_links",
    "encode_links",
    "ensure_key",
    "generate_key",
    "key_id",
    "load_signing_key",
    "make_link",
    "public_key_from_text",
    "public_key_pem",
    "public_keys_from_json",
    "public_keys_json",
    "sign_links",
    "verify_link",
]

# DER prefixes of an Ed25519 SubjectPublicKeyInfo, before the 32 key bytes:
# RFC 8410 (no algorithm parameters) and the in-toto-rs/rebuilderd form (NULL).
_SPKI_RFC8410 = bytes.fromhex("302a300506032b6570032100")
_SPKI_NULL = bytes.fromhex("302c300706032b65700500032100")
# PKCS#8 v2 (OneAsymmetricKey with the public key), as ring writes rebuilderd's keys.
_PKCS8_V2_HEAD = bytes.fromhex("3051020101300506032b657004220420")
_PKCS8_V2_MID = bytes.fromhex("812100")
_PEM_BLOCK = re.compile(
    r"-----BEGIN ([A-Z ]+)-----\s*(.*?)\s*-----END \1-----", re.DOTALL | re.ASCII
)
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")
_KEYID_HASH_ALGORITHMS = ["sha256", "sha512"]
_DIGESTS = ("sha256", "sha512")


class AttestationError(RebuilderError):
    """An attestation is unreadable, malformed, wrongly signed or does not match."""


class ArtifactMismatchError(AttestationError):
    """A validly signed attestation names other bytes than the artifact at hand."""


class SigningKeyError(RebuilderError):
    """A signing key file is missing, unsafe, corrupt or would be overwritten."""


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An Ed25519 private key and where it came from."""

    private: Ed25519PrivateKey
    path: Path | None = None

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    @property
    def keyid(self) -> str:
        return key_id(self.public)


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """What a verified link says. ``product`` is the product matched to the artifact, if any."""

    name: str
    keyid: str
    materials: dict[str, dict[str, str]]
    products: dict[str, dict[str, str]]
    product: str | None = None


# --- canonical JSON --------------------------------------------------------------------------


def canonical_json(obj: Any) -> bytes:
    """OLPC canonical JSON, as securesystemslib encodes it.

    Keys sorted, no whitespace, only ``"`` and ``\\`` escaped in strings,
    UTF-8; floats are not representable.
    """
    try:
        return "".join(_canonical_parts(obj)).encode("utf-8")
    except UnicodeEncodeError:
        raise AttestationError("JSON text holds an invalid Unicode string") from None


def _canonical_parts(obj: Any) -> Iterable[str]:
    if obj is None:
        yield "null"
    elif obj is True:
        yield "true"
    elif obj is False:
        yield "false"
    elif isinstance(obj, int):
        yield str(obj)
    elif isinstance(obj, str):
        yield '"' + obj.replace("\\", "\\\\").replace('"', '\\"') + '"'
    elif isinstance(obj, list | tuple):
        yield "["
        for i, item in enumerate(obj):
            if i:
                yield ","
            yield from _canonical_parts(item)
        yield "]"
    elif isinstance(obj, Mapping):
        yield "{"
        for i, key in enumerate(sorted(obj)):
            if not isinstance(key, str):
                raise AttestationError(f"canonical JSON keys must be strings, not {key!r}")
            if i:
                yield ","
            yield from _canonical_parts(key)
            yield ":"
            yield from _canonical_parts(obj[key])
        yield "}"
    else:
        raise AttestationError(f"canonical JSON cannot encode {type(obj).__name__} values")


# --- keys ------------------------------------------------------------------------------------


def key_id(public: Ed25519PublicKey) -> str:
    """The in-toto key id: SHA-256 of the canonical JSON of the public key object."""
    return hashlib.sha256(canonical_json(_key_object(public, legacy=True))).hexdigest()


def _key_ids(public: Ed25519PublicKey) -> set[str]:
    # Newer securesystemslib leaves keyid_hash_algorithms out of the hashed object.
    return {
        key_id(public),
        hashlib.sha256(canonical_json(_key_object(public, legacy=False))).hexdigest(),
    }


def _key_object(public: Ed25519PublicKey, *, legacy: bool) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "keytype": "ed25519",
        "scheme": "ed25519",
        "keyval": {"public": _raw_public(public).hex()},
    }
    if legacy:
        obj["keyid_hash_algorithms"] = list(_KEYID_HASH_ALGORITHMS)
    return obj


def _raw_public(public: Ed25519PublicKey) -> bytes:
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def generate_key(path: Path) -> None:
    """Write a new Ed25519 key to ``path`` (mode 0600); never overwrite an existing file."""
    path = Path(path)
    if path.exists() or path.is_symlink():
        raise SigningKeyError(f"{path}: already exists; refusing to overwrite a signing key")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise SigningKeyError(f"{path.parent}: cannot create directory: {e.strerror}") from None
    pem = serialization.Encoding.PEM
    data = Ed25519PrivateKey.generate().private_bytes(
        pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_new_file(path, data)
    log.info("generated signing key %s", path)


def _write_new_file(path: Path, data: bytes) -> None:
    # Write a private temp file (mkstemp: 0600), then link it into place: link fails
    # if the name exists, so a racing writer can never be overwritten nor see half a key.
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".key-")
    except OSError as e:
        raise SigningKeyError(f"{path}: cannot write: {e.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.link(tmp, path)
    except FileExistsError:
        raise SigningKeyError(
            f"{path}: already exists; refusing to overwrite a signing key"
        ) from None
    except OSError as e:
        raise SigningKeyError(f"{path}: cannot write: {e.strerror}") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def load_signing_key(path: Path) -> SigningKey:
    """Read a PKCS#8 PEM Ed25519 key; refuse a file that group or others may access."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            mode = os.fstat(f.fileno()).st_mode & 0o7777
            if mode & 0o077:
                raise SigningKeyError(
                    f"{path}: signing key is accessible by group or others (mode {mode:04o});"
                    f" run: chmod 600 {path}"
                )
            data = f.read(64 * 1024)
    except FileNotFoundError:
        raise SigningKeyError(f"{path}: no such signing key file") from None
    except OSError as e:
        raise SigningKeyError(f"{path}: cannot read signing key: {e.strerror}") from None
    return SigningKey(_private_key_from_pem(data, path), path)


def ensure_key(path: Path) -> SigningKey:
    """Load the key at ``path``, generating it first if the file does not exist."""
    path = Path(path)
    if not path.exists():
        try:
            generate_key(path)
        except SigningKeyError:
            if not path.exists():  # anything but losing a race to another writer
                raise
    return load_signing_key(path)


def _private_key_from_pem(data: bytes, path: Path) -> Ed25519PrivateKey:
    text = data.decode("ascii", errors="replace")
    for label, body in _PEM_BLOCK.findall(text):
        if label != "PRIVATE KEY":
            continue
        try:
            der = base64.b64decode("".join(body.split()), validate=True)
        except binascii.Error:
            raise SigningKeyError(f"{path}: corrupt PEM (bad base64)") from None
        return _private_key_from_der(der, path)
    raise SigningKeyError(f"{path}: no '-----BEGIN PRIVATE KEY-----' block (PKCS#8 PEM expected)")


def _private_key_from_der(der: bytes, path: Path) -> Ed25519PrivateKey:
    if len(der) == 83 and der.startswith(_PKCS8_V2_HEAD) and der[48:51] == _PKCS8_V2_MID:
        key = Ed25519PrivateKey.from_private_bytes(der[16:48])
        if _raw_public(key.public_key()) != der[51:]:
            raise SigningKeyError(f"{path}: corrupt key (public part does not match private)")
        return key
    try:
        loaded = serialization.load_der_private_key(der, password=None)
    except (ValueError, TypeError) as e:
        raise SigningKeyError(f"{path}: not a readable unencrypted PKCS#8 key ({e})") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise SigningKeyError(f"{path}: not an Ed25519 key ({type(loaded).__name__})")
    return loaded


def public_key_pem(key: SigningKey | Ed25519PublicKey, *, rfc8410: bool = False) -> str:
    """The public key as a ``PUBLIC KEY`` PEM.

    By default in rebuilderd's form (an SPKI with a NULL algorithm parameter,
    which in-toto-rs requires); ``rfc8410=True`` gives the standard form that
    OpenSSL reads.
    """
    public = key.public if isinstance(key, SigningKey) else key
    der = (_SPKI_RFC8410 if rfc8410 else _SPKI_NULL) + _raw_public(public)
    b64 = base64.b64encode(der).decode("ascii")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return "-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n"


def public_key_from_text(text: str) -> Ed25519PublicKey:
    """Read an Ed25519 public key: a PEM (either SPKI form), 64 hex digits or an in-toto key."""
    text = text.strip()
    m = _PEM_BLOCK.search(text)
    if m and m.group(1) == "PUBLIC KEY":
        try:
            der = base64.b64decode("".join(m.group(2).split()), validate=True)
        except binascii.Error:
            raise AttestationError("public key PEM is corrupt (bad base64)") from None
        return _public_key_from_der(der)
    if _HEX64.fullmatch(text):
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text))
    if text.startswith("{"):
        try:
            obj = json.loads(text)
            hexkey = obj["keyval"]["public"]
            if obj.get("keytype") == "ed25519" and _HEX64.fullmatch(hexkey):
                return Ed25519PublicKey.from_public_bytes(bytes.fromhex(hexkey))
        except (ValueError, KeyError, TypeError, AttributeError):
            pass
    raise AttestationError(
        "not an Ed25519 public key (expected a PUBLIC KEY PEM, 64 hex digits or an in-toto key)"
    )


def _public_key_from_der(der: bytes) -> Ed25519PublicKey:
    for prefix in (_SPKI_NULL, _SPKI_RFC8410):
        if len(der) == len(prefix) + 32 and der.startswith(prefix):
            return Ed25519PublicKey.from_public_bytes(der[len(prefix) :])
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, TypeError):
        raise AttestationError("public key PEM is not a readable SPKI key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise AttestationError(f"public key is not Ed25519 ({type(key).__name__})")
    return key


def public_keys_json(keys: Iterable[SigningKey | Ed25519PublicKey]) -> dict[str, list[str]]:
    """rebuilderd's ``api/v0/public-keys`` document: ``{"current": [<PEM>, ...]}``."""
    return v0.public_keys([public_key_pem(k) for k in keys])


def public_keys_from_json(doc: Any) -> list[Ed25519PublicKey]:
    """The keys of an ``api/v0/public-keys`` document (the inverse of :func:`public_keys_json`)."""
    current = doc.get("current") if isinstance(doc, dict) else None
    if not isinstance(current, list) or not all(isinstance(k, str) for k in current):
        raise AttestationError('public keys document is not {"current": [<PEM>, ...]}')
    return [public_key_from_text(k) for k in current]


# --- links -----------------------------------------------------------------------------------


def make_link(
    artifact_name: str,
    input_name: str,
    input_path: Path,
    artifact_path: Path,
    key: SigningKey | None,
) -> bytes:
    """A signed link for one GOOD artifact, as canonical JSON bytes.

    ``key`` None: the link without signatures, for whoever holds the key to sign
    (:func:`sign_links`); shard workers and Dask workers never hold it.
    """
    for label, name in (("artifact", artifact_name), ("input", input_name)):
        if not name or "\0" in name:
            raise AttestationError(f"{label} name {name!r} cannot be named in a link")
    signed = {
        "_type": "link",
        "name": f"rebuild {artifact_name}",
        "materials": {input_name: _file_digests(Path(input_path))},
        "products": {artifact_name: _file_digests(Path(artifact_path))},
        "byproducts": {},
        "command": [],
        "environment": {},
    }
    if key is None:
        return canonical_json({"signatures": [], "signed": signed})
    return canonical_json(_signed_link(signed, key))


def _signed_link(signed: dict[str, Any], key: SigningKey) -> dict[str, Any]:
    sig = key.private.sign(canonical_json(signed)).hex()
    return {"signatures": [{"keyid": key.keyid, "sig": sig}], "signed": signed}


def sign_links(attestation: bytes, key: SigningKey) -> bytes:
    """The same link(s), signed with ``key`` alone (any earlier signature is replaced).

    In :func:`encode_links`' encoding, as the runner writes it. Raises ValueError when
    ``attestation`` is not that.
    """
    try:
        links = decode_links(attestation)
    except AttestationError as e:
        raise ValueError(str(e)) from None

    def one(link: Any) -> bytes:
        signed = link.get("signed") if isinstance(link, dict) else None
        if not isinstance(signed, dict) or signed.get("_type") != "link":
            raise ValueError("not an in-toto link")
        return canonical_json(_signed_link(signed, key))

    return encode_links([one(link) for link in links])


def _file_digests(path: Path) -> dict[str, str]:
    hashes = [hashlib.new(name) for name in _DIGESTS]
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                for h in hashes:
                    h.update(chunk)
    except OSError as e:
        raise AttestationError(f"{path}: cannot read: {e.strerror}") from None
    return {name: h.hexdigest() for name, h in zip(_DIGESTS, hashes, strict=True)}


def verify_link(
    data: bytes,
    public_key: Ed25519PublicKey | Iterable[Ed25519PublicKey],
    artifact_path: Path | None = None,
) -> LinkInfo:
    """Check a link's signature by one of the given keys and, optionally, an artifact's digests.

    ``data`` may hold several links (:func:`encode_links`, a split package):
    each must verify, and the artifact is checked against the link naming it.
    Raises :class:`AttestationError` (:class:`ArtifactMismatchError` for a
    validly signed link about other bytes) with a one-line reason.
    """
    keys = [public_key] if isinstance(public_key, Ed25519PublicKey) else list(public_key)
    if not keys:
        raise AttestationError("no public key to verify the attestation with")
    infos = [_verify_one(doc, keys) for doc in decode_links(data)]
    if artifact_path is None:
        return infos[0]
    path = Path(artifact_path)
    info = _link_for(infos, path)
    product = _match_product(info.products, path)
    _check_digests(path, product, info.products[product])
    return LinkInfo(info.name, info.keyid, info.materials, info.products, product)


def encode_links(links: list[bytes]) -> bytes:
    """The one encoding of a build's attestation: a single link as it is (rebuilderd's shape),
    several (one per artifact of a split package) as a JSON list of links."""
    if not links:
        raise AttestationError("no link to encode")
    if len(links) == 1:
        return links[0]
    return b"[" + b",".join(canonical_json(_parse_json(link)) for link in links) + b"]"


def decode_links(data: bytes) -> list[Any]:
    """The links of an attestation written by :func:`encode_links` (not yet verified)."""
    doc = _parse_json(data)
    links = doc if isinstance(doc, list) else [doc]
    if not links:
        raise AttestationError('attestation is an empty list of links (no "signed" object)')
    return links


def _verify_one(doc: Any, keys: list[Ed25519PublicKey]) -> LinkInfo:
    signed, signatures = _check_shape(doc)
    keyid = _verify_signatures(canonical_json(signed), signatures, keys)
    return LinkInfo(signed["name"], keyid, signed["materials"], signed["products"])


def _link_for(infos: list[LinkInfo], artifact: Path) -> LinkInfo:
    """The link about ``artifact``: the one naming it, else the one whose digest it has."""
    if len(infos) == 1:
        return infos[0]
    for info in infos:
        if artifact.name in info.products:
            return info
    # a cache may spell the file name differently (an epoch's "%3a"): match by content
    digest = _file_digests(artifact)["sha256"]
    for info in infos:
        if any(d.get("sha256", "").lower() == digest for d in info.products.values()):
            return info
    names = ", ".join(sorted(n for i in infos for n in i.products)) or "none"
    raise ArtifactMismatchError(f"{artifact}: the attestation names no such product ({names})")


def _parse_json(data: bytes) -> Any:
    if not data.strip():
        raise AttestationError("attestation is empty")
    try:
        return json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys)
    except UnicodeDecodeError:
        raise AttestationError("attestation is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise AttestationError(
            f"attestation is not JSON (truncated or corrupt: {e.msg} at line {e.lineno}"
            f" column {e.colno})"
        ) from None


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two verifiers that keep different copies of a duplicated key would disagree
    # on what was signed: refuse the ambiguity outright.
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise AttestationError(f"attestation repeats the key {k!r}")
        out[k] = v
    return out


def _check_shape(doc: Any) -> tuple[dict[str, Any], list[dict[str, str]]]:
    def bad(why: str) -> AttestationError:
        return AttestationError(f"attestation is not an in-toto link metablock: {why}")

    if not isinstance(doc, dict) or not isinstance(doc.get("signed"), dict):
        raise bad('no "signed" object')
    signatures = doc.get("signatures")
    if not isinstance(signatures, list) or not signatures:
        raise bad('no "signatures"')
    for s in signatures:
        if not (isinstance(s, dict) and isinstance(s.get("keyid"), str)):
            raise bad("a signature lacks its keyid")
        if not isinstance(s.get("sig"), str):
            raise bad("a signature lacks its sig")
    signed = doc["signed"]
    if signed.get("_type") != "link":
        raise bad(f'_type is {signed.get("_type")!r}, not "link"')
    if not isinstance(signed.get("name"), str):
        raise bad("no step name")
    for field in ("materials", "products"):
        files = signed.get(field)
        if not isinstance(files, dict) or not all(
            isinstance(d, dict) and all(isinstance(v, str) for v in d.values())
            for d in files.values()
        ):
            raise bad(f"{field} is not a map of file names to digests")
    return signed, signatures


def _verify_signatures(
    message: bytes, signatures: list[dict[str, str]], keys: list[Ed25519PublicKey]
) -> str:
    ids = {kid: k for k in keys for kid in _key_ids(k)}
    named = [s for s in signatures if s["keyid"] in ids]
    for s in named:
        if _verifies(ids[s["keyid"]], s["sig"], message):
            return key_id(ids[s["keyid"]])
    # keyids are labels, not proof: a signature by a trusted key under another label counts.
    for s in signatures:
        for k in keys:
            if _verifies(k, s["sig"], message):
                return key_id(k)
    trusted = ", ".join(sorted(key_id(k)[:16] for k in keys))
    if not named:
        signers = ", ".join(s["keyid"][:16] for s in signatures)
        raise AttestationError(
            f"attestation is signed by another key (keyid {signers}), not a trusted one ({trusted})"
        )
    raise AttestationError(
        f"attestation signature by {named[0]['keyid'][:16]} does not verify: "
        "the signed content was altered or the signature is corrupt"
    )


def _verifies(key: Ed25519PublicKey, sig_hex: str, message: bytes) -> bool:
    try:
        key.verify(bytes.fromhex(sig_hex), message)
    except (InvalidSignature, ValueError):
        return False
    return True


def _match_product(products: dict[str, dict[str, str]], artifact: Path) -> str:
    if artifact.name in products:
        return artifact.name
    # apt's cache spells an epoch into the file name ("1%3a2.0"); the link names the pool file.
    if len(products) == 1:
        return next(iter(products))
    names = ", ".join(sorted(products)) or "none"
    raise ArtifactMismatchError(f"{artifact}: the attestation names no such product ({names})")


def _check_digests(path: Path, product: str, attested: dict[str, str]) -> None:
    usable = [a for a in _DIGESTS if a in attested]
    if not usable:
        raise AttestationError(f"attestation gives no sha256 or sha512 for {product}")
    actual = _file_digests(path)
    for alg in usable:
        if actual[alg] != attested[alg].lower():
            raise ArtifactMismatchError(
                f"{path}: {alg} {actual[alg][:16]}… differs from the attested"
                f" {attested[alg][:16]}… of {product}"
            )
