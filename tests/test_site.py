"""The static site renderer: v0 API shapes, safe paths, escaping, write-only-on-change."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import logging
import os
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from rebuilder.config import Profile, Release
from rebuilder.model import Artifact, ArtifactResult, Attempt, BuildGroup, GroupRecord, Status
from rebuilder.site import ProfileView, RenderStats, SiteError, api_v0, paths, render

NOW = dt.datetime(2024, 5, 6, 7, 8, 9)
T0 = dt.datetime(2024, 5, 1, 12, 0, 0)
XSS = "<script>alert(1)</script>"
HOSTILE_NAMES = ["../../etc/passwd", "/abs", "a\x00b", "x" * 5000, XSS, "..", ".", "", "%2F", "é/ü"]
V0_KEYS = {
    "name", "version", "status", "distro", "suite", "architecture", "artifact_url",
    "build_id", "built_at", "has_diffoscope", "has_attestation",
}  # fmt: skip
LOG_GOOD = "build log of hello\n" + "line\n" * 100
DIFF_BAD = "--- a/usr/bin/x\n+++ b/usr/bin/x\n@@ timestamps differ\n"


def _profile(name: str = "debian-main", distro: str = "debian") -> Profile:
    return Profile(name, distro, (Release("bookworm", "https://mirror.example/debian"),))


def _group(
    name: str,
    version: str = "1.0-1",
    *,
    release: str = "bookworm",
    component: str = "main",
    arch: str = "amd64",
    bins: tuple[str, ...] = (),
    maintainers: tuple[str, ...] = (),
    url: str | None = None,
) -> BuildGroup:
    arts = tuple(
        Artifact(
            b,
            version,
            arch,
            url or f"https://mirror.example/pool/{b}_{version}.deb",
            hashlib.sha256(f"{b}{version}".encode()).hexdigest(),
            100,
        )
        for b in (bins or (name,))
    )
    buildinfo = f"https://mirror.example/{name}.buildinfo"
    return BuildGroup(
        name, version, "debian", release, component, arch, buildinfo, arts,
        maintainers=maintainers, method="debrebuild",
    )  # fmt: skip


def _attempt(g: BuildGroup, build_id: int, status: Status, files: dict[str, str]) -> Attempt:
    built = {a.name: a.sha256 if status is Status.GOOD else "f" * 64 for a in g.artifacts}
    results = tuple(
        ArtifactResult(a.name, a.filename, a.sha256, built[a.name]) for a in g.artifacts
    )
    started = T0 + dt.timedelta(hours=build_id)
    return Attempt(
        build_id, g.version, status, started, 83.4, "debian", "new", g.inputs_digest, results, files
    )


def _write_store(site: Path, rel: str, text: str) -> None:
    path = site / "builds" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode()
    path.write_bytes(gzip.compress(data, mtime=0) if rel.endswith(".gz") else data)


def _built(
    g: BuildGroup, status: Status, build_id: int, files: dict[str, str], **kw
) -> GroupRecord:
    """A record whose only attempt (``build_id``) built the group's current version."""
    return GroupRecord(g, status, [_attempt(g, build_id, status, files)], **kw)


def _records(site: Path) -> dict[str, GroupRecord]:
    """GOOD, BAD (diffoscope), FAIL, UNKWN, unseen, outdated and hostile records,
    with their results store files written under ``site/builds``."""
    for rel, text in [
        ("1/log.gz", LOG_GOOD), ("1/attestation.json.gz", '{"_type": "link"}'),
        ("2/log.gz", "bad log\n"), ("2/diffoscope.txt.gz", DIFF_BAD),
        ("2/diffoscope.html", "<html>diff</html>"), ("3/log", "plain failure log\n"),
        ("5/log.gz", "gone log\n"), ("6/log.gz", "old\n"), ("7/log.gz", XSS),
    ]:  # fmt: skip
        _write_store(site, rel, text)
    good = _group("hello", bins=("hello", "hello-doc"), maintainers=("Jane <jane@example.org>",))
    bad_files = {
        "log": "2/log.gz",
        "diffoscope": "2/diffoscope.txt.gz",
        "diffoscope_html": "2/diffoscope.html",
    }
    # a new version appeared after a BAD build: UNKWN, and the old build id must not show
    bumped = GroupRecord(
        _group("bumped", "1.1-1"),
        Status.UNKWN,
        [_attempt(_group("bumped", "1.0-1"), 6, Status.BAD, {"log": "6/log.gz"})],
    )
    evil = _group(
        XSS, f"1:{XSS}../", component=XSS, maintainers=(XSS, "../x"), url="javascript:alert(1)"
    )
    # hostile store paths: must be neither read nor advertised
    evil_files = {"log": "7/log.gz", "diffoscope": "../../../../etc/passwd", "attestation": "/etc"}
    recs = [
        _built(good, Status.GOOD, 1, {"log": "1/log.gz", "attestation": "1/attestation.json.gz"}),
        _built(_group("bad", "2.0-1"), Status.BAD, 2, bad_files),
        _built(_group("fail", "3.0-1", arch="arm64"), Status.FAIL, 3, {"log": "3/log"}),
        GroupRecord(_group("new"), Status.UNKWN),
        _built(_group("gone"), Status.GOOD, 5, {"log": "5/log.gz"}, seen=False),
        bumped,
        _built(evil, Status.BAD, 7, evil_files),
    ]
    recs += [
        GroupRecord(_group(n, n, release=n, arch=n), Status.UNKWN, first_seen=T0)
        for n in HOSTILE_NAMES
    ]
    return {r.group.key: r for r in recs}


def _views(site: Path) -> list[ProfileView]:
    recs = _records(site)
    evil_profile = _profile(f"evil{XSS}")
    evil_recs = {k: r for k, r in recs.items() if r.group.name in ("hello", "fail")}
    return [
        ProfileView(_profile(), recs, queue_length=3, last_pass=NOW),
        ProfileView(evil_profile, evil_recs, queue_length=1, last_pass=T0),
    ]


def _tree(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under root: (size, mtime_ns, sha256)."""
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = Path(dirpath, f)
            st = p.stat()
            out[str(p.relative_to(root))] = (
                st.st_size,
                st.st_mtime_ns,
                hashlib.sha256(p.read_bytes()).hexdigest(),
            )
    return out


@pytest.fixture
def rendered(tmp_path: Path) -> tuple[Path, list[ProfileView], RenderStats]:
    site = tmp_path / "site"
    views = _views(site)
    stats = render(site, views, now=NOW)
    return site, views, stats


def _pkgs(site: Path) -> list[dict]:
    return json.loads((site / "debian/api/v0/pkgs/list").read_text())


def test_pkgs_list_has_rebuilderd_shape_and_values(rendered) -> None:
    site, _, _ = rendered
    pkgs = _pkgs(site)
    assert all(set(p) == V0_KEYS for p in pkgs)
    by_name = {p["name"]: p for p in pkgs}
    assert by_name["hello"] == {
        "name": "hello", "version": "1.0-1", "status": "GOOD", "distro": "debian",
        "suite": "main", "architecture": "amd64",
        "artifact_url": "https://mirror.example/pool/hello_1.0-1.deb", "build_id": 1,
        "built_at": "2024-05-01T13:01:23", "has_diffoscope": False, "has_attestation": True,
    }  # fmt: skip
    assert by_name["hello-doc"]["build_id"] == 1  # one object per artifact
    assert by_name["bad"]["status"] == "BAD" and by_name["bad"]["has_diffoscope"] is True
    assert by_name["fail"]["status"] == "BAD"  # v0 has no FAIL
    assert by_name["fail"]["build_id"] == 3 and by_name["fail"]["has_diffoscope"] is False
    assert by_name["new"]["status"] == "UNKWN" and by_name["new"]["build_id"] is None
    assert by_name["new"]["built_at"] is None
    assert by_name["bumped"]["status"] == "UNKWN" and by_name["bumped"]["build_id"] is None
    assert "gone" not in by_name  # unseen
    # unsafe store paths are never advertised
    assert by_name[XSS]["has_diffoscope"] is False and by_name[XSS]["has_attestation"] is False
    # overlapping profiles of one distro do not duplicate rows; the list is sorted
    assert len(pkgs) == len({json.dumps(p, sort_keys=True) for p in pkgs})
    keys = [(p["name"], p["version"], p["architecture"]) for p in pkgs]
    assert keys == sorted(keys)


def test_dashboard_and_index_json(rendered) -> None:
    site, _, _ = rendered
    board = json.loads((site / "debian/api/v0/dashboard").read_text())
    assert set(board) == {"suites", "active_builds", "queue_length", "now"}
    assert board["queue_length"] == 4 and board["active_builds"] == []
    assert board["now"] == "2024-05-06T07:08:09"
    # artifacts of seen groups: hello + hello-doc; bad + fail; new, bumped + 10 hostile names
    assert board["suites"]["main"] == {"good": 2, "unknown": 12, "bad": 2}
    assert board["suites"][XSS] == {"good": 0, "unknown": 0, "bad": 1}
    index = json.loads((site / "index.json").read_text())
    main = index["profiles"][0]
    assert main["name"] == "debian-main" and main["api"] == "debian/api/v0/"
    amd64 = next(
        s for s in main["suites"] if s["architecture"] == "amd64" and s["component"] == "main"
    )
    assert amd64["counts"] == {"GOOD": 1, "BAD": 1, "FAIL": 0, "UNKWN": 2}
    assert amd64["reproduced"] == 0.25
    assert (site / amd64["url"]).is_file()


def test_v0_build_files_are_served_decompressed(rendered) -> None:
    site, _, _ = rendered
    api = site / "debian/api/v0/builds"
    assert (api / "1/log").read_text() == LOG_GOOD
    assert (api / "1/attestation").read_text() == '{"_type": "link"}'
    assert (api / "2/diffoscope").read_text() == DIFF_BAD
    assert (api / "3/log").read_text() == "plain failure log\n"
    # only build ids pkgs/list references: not the unseen group's, not the outdated one's
    assert sorted(int(p.name) for p in api.iterdir()) == [1, 2, 3, 7]
    assert sorted(p.name for p in (api / "7").iterdir()) == ["log"]


def test_no_hostile_markup_and_csp_everywhere(rendered) -> None:
    site, _, _ = rendered
    pages = list(site.rglob("*.html"))
    pages = [p for p in pages if "builds" not in p.relative_to(site).parts]
    assert len(pages) > 20
    for p in pages:
        text = p.read_text()
        assert "<script" not in text.lower(), p
        assert 'href="javascript' not in text
        assert "default-src 'self'; script-src 'self'; style-src 'self'" in text
        assert "style=" not in text and "<style" not in text
    # the page exists under an encoded name and shows the names escaped
    page = site / _file(paths.group_page("debian-main", f"bookworm/{XSS}/amd64/{XSS}"), ".html")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.read_text()


def _file(p: str, suffix: str) -> Path:
    return Path(p + suffix)


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for k, v in attrs:
            if k in ("href", "src") and v:
                self.links.append(v)


def test_every_relative_link_resolves(rendered) -> None:
    site, _, _ = rendered
    checked = 0
    for page in site.rglob("*.html"):
        if page.relative_to(site).parts[0] == "builds":
            continue
        parser = _Links()
        parser.feed(page.read_text())
        for link in parser.links:
            if urlsplit(link).scheme:
                assert urlsplit(link).scheme in ("http", "https"), link
                continue
            target = (page.parent / unquote(link)).resolve()
            assert target.is_relative_to(site.resolve()), (page, link)
            assert target.is_file(), (page, link)
            checked += 1
    assert checked > 100


def test_every_written_path_is_safe_and_inside_the_site(tmp_path: Path) -> None:
    site = tmp_path / "site"
    views = _views(site)
    outside_before = {p for p in tmp_path.rglob("*") if not p.is_relative_to(site)}
    render(site, views, now=NOW)
    assert {p for p in tmp_path.rglob("*") if not p.is_relative_to(site)} == outside_before
    for p in site.rglob("*"):
        rel = p.relative_to(site)
        assert ".." not in rel.parts and "\x00" not in str(rel)
        assert all(len(part.encode()) <= paths.MAX_SEGMENT + 10 for part in rel.parts), rel
        assert not p.is_symlink()


def test_second_render_writes_nothing_and_builds_is_untouched(tmp_path: Path) -> None:
    site = tmp_path / "site"
    views = _views(site)
    store_before = _tree(site / "builds")
    first = render(site, views, now=NOW)
    assert first.written > 30 and first.removed == 0
    tree = _tree(site)
    second = render(site, views, now=NOW)
    assert (second.written, second.removed) == (0, 0)
    assert second.unchanged == first.written + first.unchanged
    assert _tree(site) == tree
    assert _tree(site / "builds") == store_before


def test_incremental_render_equals_full_render(tmp_path: Path) -> None:
    site = tmp_path / "site"
    views = _views(site)
    render(site, views, now=NOW)
    # "new" gets built GOOD; "hello" leaves the state entirely
    recs = dict(views[0].records)
    key = "bookworm/main/amd64/new"
    g = recs[key].group
    _write_store(site, "8/log.gz", "fresh log\n")
    recs[key] = _built(g, Status.GOOD, 8, {"log": "8/log.gz"})
    gone_key = "bookworm/main/amd64/hello"
    del recs[gone_key]
    views2 = [ProfileView(views[0].profile, recs, 0, NOW), views[1]]
    stats = render(site, views2, now=NOW, changed={key, gone_key})
    assert stats.skipped == len(recs) - 1 + len(views[1].records) - 1
    assert stats.removed >= 2  # hello's page and JSON (its build 1 is still in profile 2)
    assert (site / "debian/api/v0/builds/8/log").read_text() == "fresh log\n"
    page = site / _file(paths.group_page("debian-main", key), ".html")
    assert "GOOD" in page.read_text()
    full = tmp_path / "full"
    shutil.copytree(site / "builds", full / "builds")  # same store, fresh site
    render(full, views2, now=NOW)
    ours = {k: v[2] for k, v in _tree(site).items()}
    theirs = {k: v[2] for k, v in _tree(full).items()}
    assert ours == theirs


def test_unreadable_store_file_is_skipped_with_a_warning(tmp_path: Path, caplog) -> None:
    site = tmp_path / "site"
    g = _group("corrupt")
    (site / "builds/9").mkdir(parents=True)
    (site / "builds/9/log.gz").write_bytes(b"not gzip at all")
    rec = _built(g, Status.FAIL, 9, {"log": "9/log.gz"})
    with caplog.at_level(logging.WARNING, logger="rebuilder.site"):
        render(site, [ProfileView(_profile(), {g.key: rec})], now=NOW)
    assert not (site / "debian/api/v0/builds/9/log").exists()
    assert "missing or unreadable" in caplog.text
    assert (site / "builds/9/log.gz").read_bytes() == b"not gzip at all"


def test_multi_member_gzip_log_is_served_whole(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "builds/10").mkdir(parents=True)
    parts = [gzip.compress(b"first part\n"), gzip.compress(b"second part\n")]
    (site / "builds/10/log.gz").write_bytes(b"".join(parts))
    g = _group("two")
    render(
        site, [ProfileView(_profile(), {g.key: _built(g, Status.GOOD, 10, {"log": "10/log.gz"})})]
    )
    assert (site / "debian/api/v0/builds/10/log").read_bytes() == b"first part\nsecond part\n"


def test_template_override_shadows_one_file(tmp_path: Path) -> None:
    site = tmp_path / "site"
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    (tpl / "index.html").write_text("custom {{ profiles[0].name }}\n")
    g = _group("hello")
    render(site, [ProfileView(_profile(f"p{XSS}"), {g.key: GroupRecord(g)})], templates=tpl)
    assert (site / "index.html").read_text() == "custom p&lt;script&gt;alert(1)&lt;/script&gt;\n"
    assert (site / "static/style.css").is_file()  # static still comes from the defaults
    (tpl / "index.html").write_text("{{ nope }}")
    with pytest.raises(SiteError, match=r"template index.html: 'nope' is undefined"):
        render(site, [], templates=tpl)
    (tpl / "index.html").write_text("{% if %}")
    with pytest.raises(SiteError, match=r"template .*index.html:1: "):
        render(site, [], templates=tpl)
    with pytest.raises(SiteError, match="no such template directory"):
        render(site, [], templates=tmp_path / "missing")


def test_segments_are_safe_and_injective() -> None:
    names = [*HOSTILE_NAMES, "x" * 4999, "x" * 5001, "a%00b", "%2E.", "A", "a", "1:2.0+b1", "~"]
    segs = [paths.segment(n) for n in names]
    assert len(set(segs)) == len(names)
    for s in segs:
        assert s and "/" not in s and "\x00" not in s and not s.startswith(".")
        assert len(s) <= paths.MAX_SEGMENT
    assert paths.segment("hello-1.0+b1") == "hello-1.0+b1"


def test_malformed_key_is_a_clear_error() -> None:
    with pytest.raises(SiteError, match="malformed build group key"):
        paths.group_page("p", "no-slashes")


def test_store_paths_cannot_escape(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "builds").mkdir(parents=True)
    (tmp_path / "secret").write_text("x")
    (site / "builds/link").symlink_to(tmp_path / "secret")
    (site / "builds/dirlink").symlink_to(tmp_path, target_is_directory=True)
    (site / "builds/ok").write_text("fine")
    for rel in ["../secret", "/etc/passwd", "a/../../x", "", "a\x00b", "link", "dirlink/secret"]:
        assert paths.store_file(site, rel) is None, rel
    found = paths.store_file(site, "ok")
    assert found is not None and found[1].st_size == 4


def test_pkg_releases_alone_agrees_with_the_rendered_list(rendered) -> None:
    """The pipeline calls ``api_v0.pkg_releases(record)`` on its own (``client``'s local list)."""
    site, views, _ = rendered
    rows = [p for v in views for r in v.records.values() if r.seen for p in api_v0.pkg_releases(r)]
    assert api_v0.unique_pkgs(rows) == _pkgs(site)
