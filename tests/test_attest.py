"""Attestations: signing, verification, key files and public key formats (rebuilderd's too)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from rebuilder import attest
from rebuilder.attest import ArtifactMismatchError, AttestationError, SigningKeyError
from rebuilder.errors import RebuilderError


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    inp = tmp_path / "hello_2.10-3_amd64.buildinfo"
    inp.write_bytes(b"Format: 1.0\nSource: hello\n")
    art = tmp_path / "hello_2.10-3_amd64.deb"
    art.write_bytes(b"!<arch>\n" + bytes(range(256)) * 40)
    return {"input": inp, "artifact": art}


@pytest.fixture
def key(tmp_path: Path) -> attest.SigningKey:
    return attest.ensure_key(tmp_path / "keys" / "signing.pem")


def _link(files: dict[str, Path], key: attest.SigningKey) -> bytes:
    return attest.make_link(
        files["artifact"].name, files["input"].name, files["input"], files["artifact"], key
    )


def test_sign_and_verify(files: dict[str, Path], key: attest.SigningKey) -> None:
    data = _link(files, key)
    info = attest.verify_link(data, key.public, files["artifact"])
    assert info.name == "rebuild hello_2.10-3_amd64.deb"
    assert info.keyid == key.keyid
    assert info.product == "hello_2.10-3_amd64.deb"
    doc = json.loads(data)
    assert set(doc) == {"signatures", "signed"}
    assert doc["signed"]["_type"] == "link"
    assert set(doc["signed"]["materials"]["hello_2.10-3_amd64.buildinfo"]) == {"sha256", "sha512"}
    # Ed25519 is deterministic and the encoding canonical: the same inputs give the same bytes.
    assert _link(files, key) == data
    assert data == attest.canonical_json(doc)


def test_verify_ignores_formatting_and_key_order(
    files: dict[str, Path], key: attest.SigningKey
) -> None:
    doc = json.loads(_link(files, key))
    reordered = {
        "signed": dict(reversed(list(doc["signed"].items()))),
        "signatures": doc["signatures"],
    }
    pretty = json.dumps(reordered, indent=2).encode()
    assert attest.verify_link(pretty, [key.public]).keyid == key.keyid


def test_tampered_product_digest_fails(files: dict[str, Path], key: attest.SigningKey) -> None:
    doc = json.loads(_link(files, key))
    doc["signed"]["products"]["hello_2.10-3_amd64.deb"]["sha256"] = "0" * 64
    with pytest.raises(AttestationError, match="altered"):
        attest.verify_link(json.dumps(doc).encode(), key.public)


def test_wrong_key_fails(files: dict[str, Path], key: attest.SigningKey, tmp_path: Path) -> None:
    other = attest.ensure_key(tmp_path / "other.pem")
    with pytest.raises(AttestationError, match="signed by another key"):
        attest.verify_link(_link(files, other), key.public)


def test_forged_keyid_label_does_not_help(
    files: dict[str, Path], key: attest.SigningKey, tmp_path: Path
) -> None:
    other = attest.ensure_key(tmp_path / "other.pem")
    doc = json.loads(_link(files, other))
    doc["signatures"][0]["keyid"] = key.keyid  # claims to be the trusted key
    with pytest.raises(AttestationError, match="does not verify"):
        attest.verify_link(json.dumps(doc).encode(), key.public)


@pytest.mark.parametrize("cut", [0, 1, 40, -1])
def test_truncated_file_fails(files: dict[str, Path], key: attest.SigningKey, cut: int) -> None:
    data = _link(files, key)
    with pytest.raises(AttestationError, match=r"empty|not JSON"):
        attest.verify_link(data[:cut], key.public)


@pytest.mark.parametrize(
    ("doc", "why"),
    [
        ([], 'no "signed"'),
        ({"signed": {"_type": "layout"}, "signatures": [{"keyid": "a", "sig": "b"}]}, "_type"),
        ({"signed": {"_type": "link", "name": "x"}, "signatures": []}, "signatures"),
        (
            {
                "signed": {"_type": "link", "name": "x", "materials": [], "products": {}},
                "signatures": [{"keyid": "a", "sig": "00"}],
            },
            "materials",
        ),
    ],
)
def test_wrong_shape_fails(doc: object, why: str, key: attest.SigningKey) -> None:
    with pytest.raises(AttestationError, match=why):
        attest.verify_link(json.dumps(doc).encode(), key.public)


def test_duplicate_keys_refused(files: dict[str, Path], key: attest.SigningKey) -> None:
    data = _link(files, key).replace(b'"_type":"link"', b'"_type":"link","_type":"link"')
    with pytest.raises(AttestationError, match="repeats the key"):
        attest.verify_link(data, key.public)


def test_artifact_with_different_bytes_fails(
    files: dict[str, Path], key: attest.SigningKey, tmp_path: Path
) -> None:
    data = _link(files, key)
    changed = tmp_path / "elsewhere" / files["artifact"].name
    changed.parent.mkdir()
    changed.write_bytes(files["artifact"].read_bytes()[:-1] + b"\x00")
    with pytest.raises(ArtifactMismatchError, match=r"sha256 .* differs from the attested"):
        attest.verify_link(data, key.public, changed)


def test_artifact_under_another_name_matches_the_single_product(
    files: dict[str, Path], key: attest.SigningKey, tmp_path: Path
) -> None:
    # apt's cache spells the epoch into the file name; the link names the pool file
    cached = tmp_path / "hello_1%3a2.10-3_amd64.deb"
    cached.write_bytes(files["artifact"].read_bytes())
    info = attest.verify_link(_link(files, key), key.public, cached)
    assert info.product == "hello_2.10-3_amd64.deb"


def test_key_file_mode_0644_refused(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    attest.generate_key(path)
    os.chmod(path, 0o644)
    with pytest.raises(SigningKeyError) as e:
        attest.load_signing_key(path)
    assert str(path) in str(e.value) and "0644" in str(e.value)
    os.chmod(path, 0o600)
    assert len(attest.load_signing_key(path).keyid) == 64


def test_generate_key_mode_and_no_overwrite(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "k.pem"
    attest.generate_key(path)
    assert path.stat().st_mode & 0o777 == 0o600
    before = path.read_bytes()
    with pytest.raises(SigningKeyError, match="refusing to overwrite"):
        attest.generate_key(path)
    assert path.read_bytes() == before
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".key-")]


def test_ensure_key_is_stable(tmp_path: Path) -> None:
    path = tmp_path / "k.pem"
    assert attest.ensure_key(path).keyid == attest.ensure_key(path).keyid


def test_missing_and_corrupt_key_files(tmp_path: Path) -> None:
    with pytest.raises(SigningKeyError, match="no such signing key"):
        attest.load_signing_key(tmp_path / "nope.pem")
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    bad.chmod(0o600)
    with pytest.raises(SigningKeyError, match="PKCS#8"):
        attest.load_signing_key(bad)


def test_openssl_reads_our_key_files(tmp_path: Path, key: attest.SigningKey) -> None:
    assert key.path is not None
    run = subprocess.run(["openssl", "pkey", "-in", str(key.path), "-noout"], capture_output=True)
    assert run.returncode == 0, run.stderr
    std = attest.public_key_pem(key, rfc8410=True)
    run = subprocess.run(
        ["openssl", "pkey", "-pubin", "-outform", "DER"], input=std.encode(), capture_output=True
    )
    assert run.returncode == 0, run.stderr
    raw = key.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert run.stdout.endswith(raw)


def test_rebuilderd_pkcs8_v2_key_file_loads(tmp_path: Path) -> None:
    # rebuilderd (ring) writes PKCS#8 v2: the seed, then the public key as [1] IMPLICIT BIT STRING
    seed = bytes(range(32))
    expected = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    raw_pub = expected.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    der = bytes.fromhex("3051020101300506032b657004220420") + seed + b"\x81\x21\x00" + raw_pub
    path = tmp_path / "rebuilderd.key"
    path.write_text(
        "-----BEGIN PRIVATE KEY-----\r\n"
        + base64.b64encode(der).decode()
        + "\r\n-----END PRIVATE KEY-----\r\n"
    )
    path.chmod(0o600)
    key = attest.load_signing_key(path)
    assert key.keyid == attest.key_id(expected)
    corrupt = der[:-1] + bytes([der[-1] ^ 1])
    path.write_text(
        "-----BEGIN PRIVATE KEY-----\n"
        + base64.b64encode(corrupt).decode()
        + "\n-----END PRIVATE KEY-----\n"
    )
    with pytest.raises(SigningKeyError, match="does not match"):
        attest.load_signing_key(path)


def test_public_key_forms(key: attest.SigningKey) -> None:
    pem = attest.public_key_pem(key)
    der = base64.b64decode("".join(pem.splitlines()[1:-1]))
    assert der.startswith(bytes.fromhex("302c300706032b65700500032100"))  # rebuilderd's form
    raw = key.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    in_toto_key = json.dumps(
        {"keytype": "ed25519", "scheme": "ed25519", "keyval": {"public": raw.hex()}}
    )
    for text in (pem, attest.public_key_pem(key, rfc8410=True), raw.hex(), in_toto_key):
        assert attest.key_id(attest.public_key_from_text(text)) == key.keyid
    with pytest.raises(AttestationError, match="not an Ed25519 public key"):
        attest.public_key_from_text("hello")


def test_public_keys_json_round_trip(key: attest.SigningKey, tmp_path: Path) -> None:
    other = attest.ensure_key(tmp_path / "o.pem")
    doc = attest.public_keys_json([key, other.public])
    assert list(doc) == ["current"] and len(doc["current"]) == 2
    keys = attest.public_keys_from_json(json.loads(json.dumps(doc)))
    assert [attest.key_id(k) for k in keys] == [key.keyid, other.keyid]
    with pytest.raises(AttestationError, match="current"):
        attest.public_keys_from_json({"keys": []})


def test_key_id_is_in_toto_convention(key: attest.SigningKey) -> None:
    raw = key.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    obj = (
        '{"keyid_hash_algorithms":["sha256","sha512"],"keytype":"ed25519",'
        f'"keyval":{{"public":"{raw.hex()}"}},"scheme":"ed25519"}}'
    )
    import hashlib

    assert key.keyid == hashlib.sha256(obj.encode()).hexdigest()


def test_canonical_json_rules() -> None:
    assert (
        attest.canonical_json({"b": 1, "a": ["é", None, False]})
        == '{"a":["é",null,false],"b":1}'.encode()
    )
    # only quote and backslash are escaped; control characters stay raw (OLPC)
    assert attest.canonical_json('a\nb"\\') == b'"a\nb\\"\\\\"'
    with pytest.raises(AttestationError, match="float"):
        attest.canonical_json({"x": 1.5})


def test_errors_are_rebuilder_errors() -> None:
    assert issubclass(AttestationError, RebuilderError)
    assert issubclass(SigningKeyError, RebuilderError)


def test_several_links_verify_by_the_product_each_names(
    files: dict[str, Path], key: attest.SigningKey, tmp_path: Path
) -> None:
    doc = tmp_path / "hello-doc_2.10-3_all.deb"
    doc.write_bytes(b"!<arch>\ndocumentation\n")
    links = [
        attest.make_link(a.name, files["input"].name, files["input"], a, key)
        for a in (files["artifact"], doc)
    ]
    data = attest.encode_links(links)
    assert attest.encode_links(links[:1]) == links[0]  # one link stays rebuilderd's shape
    assert [d["signed"]["name"] for d in attest.decode_links(data)] == [
        "rebuild hello_2.10-3_amd64.deb",
        "rebuild hello-doc_2.10-3_all.deb",
    ]
    assert attest.verify_link(data, key.public, doc).product == doc.name
    assert attest.verify_link(data, key.public, files["artifact"]).product == files["artifact"].name
    renamed = tmp_path / "hello-doc_1%3a2.10-3_all.deb"  # a cache's spelling: found by digest
    renamed.write_bytes(doc.read_bytes())
    assert attest.verify_link(data, key.public, renamed).product == doc.name
    stranger = tmp_path / "other_1_all.deb"
    stranger.write_bytes(b"other bytes")
    with pytest.raises(ArtifactMismatchError, match="names no such product"):
        attest.verify_link(data, key.public, stranger)
    # every link must verify, not only the one about the artifact
    forged = json.loads(data)
    forged[0]["signed"]["products"][files["artifact"].name]["sha256"] = "0" * 64
    with pytest.raises(AttestationError, match="altered"):
        attest.verify_link(json.dumps(forged).encode(), key.public, doc)
