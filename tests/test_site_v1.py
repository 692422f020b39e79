"""The static v1 API (rebuildctl's) and v0's queue: shapes, ids, statuses, per-artifact
attestations of a split package, and our client reading them back from the site on disk."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import pytest

from rebuilder import attest, client
from rebuilder.api import v0, v1
from rebuilder.config import Profile, Release
from rebuilder.model import Artifact, ArtifactResult, Attempt, BuildGroup, GroupRecord, Job, Status
from rebuilder.site import ProfileView, render

NOW = dt.datetime(2026, 5, 1, 12, 0)


def _group(name: str, binaries: tuple[str, ...], tmp: Path) -> BuildGroup:
    arts = []
    for b in binaries:
        data = f"the bytes of {b}\n".encode()
        (tmp / f"{b}_1.0-1_amd64.deb").write_bytes(data)
        arts.append(Artifact(b, "1.0-1", "amd64", f"https://mirror.example/{b}_1.0-1_amd64.deb",
                             hashlib.sha256(data).hexdigest(), len(data)))  # fmt: skip
    return BuildGroup(name, "1.0-1", "debian", "sid", "main", "amd64",
                      f"https://mirror.example/{name}.buildinfo", tuple(arts))  # fmt: skip


@pytest.fixture
def site(tmp_path: Path) -> tuple[Path, Path]:
    debs = tmp_path / "debs"
    debs.mkdir()
    site = tmp_path / "site"
    key = attest.ensure_key(tmp_path / "key.pem")
    split = _group("split", ("split", "split-doc", "libsplit++1"), debs)
    bad = _group("bad", ("bad",), debs)
    fail = _group("fail", ("fail",), debs)
    new = _group("new", ("new",), debs)
    store = site / "builds"
    for bid in (1, 2, 3):
        (store / str(bid)).mkdir(parents=True)
        (store / str(bid) / "log").write_text(f"log of build {bid}\n")
    links = [
        attest.make_link(a.filename, "split.buildinfo", debs / a.filename, debs / a.filename, key)
        for a in split.artifacts
    ]
    (store / "1/attestation").write_bytes(attest.encode_links(links))
    (store / "2/diffoscope").write_text("the diff\n")

    def done(g: BuildGroup, bid: int, status: Status, files: dict[str, str]) -> GroupRecord:
        results = tuple(
            ArtifactResult(a.name, a.filename, a.sha256, a.sha256 if status is Status.GOOD else "0")
            for a in g.artifacts
            if status is not Status.FAIL
        )
        at = Attempt(bid, "1.0-1", status, NOW, 10.0, "debian", "new", g.inputs_digest, results,
                     {"log": f"{bid}/log", **files})  # fmt: skip
        return GroupRecord(g, status, [at], first_seen=NOW)

    records = [
        done(split, 1, Status.GOOD, {"attestation": "1/attestation"}),
        done(bad, 2, Status.BAD, {"diffoscope": "2/diffoscope"}),
        done(fail, 3, Status.FAIL, {}),
        GroupRecord(new, first_seen=NOW),
    ]
    jobs = [Job("p", fail, "requeued"), Job("p", new, "new")]
    profile = Profile("p", "debian", (Release("sid", "https://mirror.example/debian"),))
    view = ProfileView(profile, {r.group.key: r for r in records}, 2, NOW, (), jobs)
    render(site, [view], now=NOW, public_keys=[attest.public_key_pem(key)])
    return site, debs


def test_v1_packages_page_ids_and_statuses(site: tuple[Path, Path]) -> None:
    root = site[0] / "debian/api/v1"
    doc = json.loads((root / "packages/binary").read_text())
    records = [v1.BinaryPackage.from_json(r) for r in doc["records"]]
    assert doc["total"] == len(records) == 6
    # each package's id is its own: a digest of its identity, not its place in the list
    assert len({p.id for p in records}) == 6 and all(0 < p.id < 2**31 for p in records)
    for p in records:
        identity = "\0".join(
            (p.name, p.version, p.architecture, p.release or "", p.component or "", p.url)
        )
        digest = hashlib.blake2b(identity.encode(), digest_size=8).digest()
        assert p.id == int.from_bytes(digest, "big") % (2**31 - 1) + 1, p.name
    assert [p.name for p in records] == sorted(p.name for p in records)
    by = {p.name: p for p in records}
    assert (by["split-doc"].status, by["split-doc"].build_id) == ("GOOD", 1)
    assert [by[n].artifact_id for n in ("split", "split-doc", "libsplit++1")] == [1, 2, 3]
    assert by["split"].attestation_log_id is not None and by["split"].diffoscope_log_id is None
    assert (by["bad"].status, by["bad"].diffoscope_log_id) == ("BAD", 1)
    assert by["fail"].failed and by["fail"].artifact_id is None  # null with a build: FAIL
    assert (by["new"].status, by["new"].build_id) == (None, None)
    assert json.loads((root / "page-end").read_text()) == {"total": 0, "records": []}
    plain = json.loads((root / "packages/by-name/libsplit++1").read_text())
    assert plain == json.loads((root / "packages/by-name/libsplit%2B%2B1").read_text())
    assert [r["name"] for r in plain["records"]] == ["libsplit++1"] and plain["total"] == 1
    board = v1.Dashboard.from_json(json.loads((root / "dashboard").read_text()))
    assert (board.good, board.bad, board.fail, board.unknown, board.available) == (1, 1, 1, 1, 2)


def test_v1_and_v0_queues(site: tuple[Path, Path]) -> None:
    api = site[0] / "debian/api"
    page = json.loads((api / "v1/queue").read_text())
    jobs = [v1.QueuedJob.from_json(r) for r in page["records"]]
    assert [(j.id, j.name, j.priority) for j in jobs] == [(1, "fail", 0), (2, "new", 1)]
    assert jobs[0].url == "https://mirror.example/fail.buildinfo" and jobs[0].release == "sid"
    queue = v0.QueueList.from_json(json.loads((api / "v0/queue/list").read_text()))
    assert [(q.id, q.name, q.suite) for q in queue.queue] == [
        (1, "fail", "main"),
        (2, "new", "main"),
    ]
    assert queue.queue[1].artifacts == (
        v0.PkgArtifact("new", "1.0-1", "https://mirror.example/new_1.0-1_amd64.deb"),
    )


def test_each_artifact_gets_its_own_link(site: tuple[Path, Path]) -> None:
    root, debs = site
    keys = attest.public_keys_from_json(
        json.loads((root / "debian/api/v1/meta/public-keys").read_text())
    )
    for n, name in enumerate(("split", "split-doc", "libsplit++1"), start=1):
        data = (root / f"debian/api/v1/builds/1/artifacts/{n}/attestation").read_bytes()
        deb = debs / f"{name}_1.0-1_amd64.deb"
        assert len(attest.decode_links(data)) == 1  # one link: this artifact's
        assert set(attest.verify_link(data, keys, deb).products) == {deb.name}
    # the rest of a build's v1 files are its v0 copies, answered by the rules of docs/site.md
    # (tests/test_rebuilderd_tools.py runs them in nginx and Caddy): no link or folder each
    assert (root / "debian/api/v0/builds/2/diffoscope").read_text() == "the diff\n"
    assert (root / "debian/api/v0/builds/3/log").read_text() == "log of build 3\n"
    v1_builds = root / "debian/api/v1/builds"
    assert sorted(str(p.relative_to(v1_builds)) for p in v1_builds.rglob("*") if p.is_file()) == [
        "1/artifacts/1/attestation", "1/artifacts/2/attestation", "1/artifacts/3/attestation",
    ]  # fmt: skip


def test_our_client_reads_the_site_on_disk(site: tuple[Path, Path]) -> None:
    root, debs = site
    base = str(root / "debian")
    entries = {e.name: e for e in client.fetch_pkgs(base)}
    assert {n: e.status for n, e in entries.items()} == {
        "bad": Status.BAD, "fail": Status.FAIL, "libsplit++1": Status.GOOD, "new": Status.UNKWN,
        "split": Status.GOOD, "split-doc": Status.GOOD,
    }  # fmt: skip
    installed = [client.Installed(n, "1.0-1", "amd64") for n in entries]
    report = client.verify_installed(installed, {"site": list(entries.values())}, 1)
    keys = {"site": client.fetch_public_keys(base)}
    checked = client.check_files(report, [debs], client.attestation_fetcher({"site": base}), keys)
    ok = {v.package.name for v in checked.verdicts if v.reproduced}
    assert ok == {"split", "split-doc", "libsplit++1"}
    assert client.fetch_build_file(base, entries["fail"], "log") == b"log of build 3\n"


@pytest.mark.parametrize(
    "text",
    ["hello", 'quo"te', "back\\slash", "tab\tand\nnewline\x00\x1f", "é ü 中", "lone \udc80", ""],
)
def test_a_binary_package_encodes_as_json_dumps_would(text: str) -> None:
    """The hand-made encoder (what the render uses) against json.dumps of to_json(), in
    every field a hostile index or state can fill, null or not."""
    full = v1.BinaryPackage(
        2**31 - 1, text, text, text, text, text, text, text, text, 7, 2, None, 2,
        NOW.replace(microsecond=5), seen_in_last_sync=False,
    )  # fmt: skip
    empty = v1.BinaryPackage(1, text, text, text, None, None, text, text, None)
    for p in (full, empty):
        expected = json.dumps(p.to_json(), ensure_ascii=False, separators=(",", ":"))
        assert p.encode() == expected
