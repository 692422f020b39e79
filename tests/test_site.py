"""The static site renderer: v0 API shapes, safe paths, escaping, write-only-on-change."""

from __future__ import annotations

import datetime as dt
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from rebuilder.api.v0 import PkgRelease
from rebuilder.model import ArtifactResult, Attempt, BuildGroup, GroupRecord, Status
from rebuilder.site import (
    ProfileView,
    RenderStats,
    SiteError,
    api_v0,
    api_v1,
    cache,
    paths,
    render,
    search,
)
from rebuilder.state import history_point as site_history_point

from .fixtures.site import (
    DIFF_BAD,
    HOSTILE_NAMES,
    LOG_GOOD,
    NOW,
    T0,
    XSS,
    LinkParser,
    built_record,
    page_links,
    site_attempt,
    site_group,
    site_profile,
    site_views,
    write_store,
)

V0_KEYS = {
    "name", "version", "status", "distro", "suite", "architecture", "artifact_url",
    "build_id", "built_at", "has_diffoscope", "has_attestation",
}  # fmt: skip


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
    views = site_views(site)
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
    assert by_name["fail"]["status"] == "UNKWN"  # v0 has no FAIL: rebuilderd 0.28 says UNKWN
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
    # artifacts of seen groups: hello + hello-doc; bad; fail, new, bumped + 10 hostile names
    assert board["suites"]["main"] == {"good": 2, "unknown": 13, "bad": 1}
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
    # the attempt v0 names of each seen group; not an older version's (6): clients learn no
    # other build id, and every copy counts on a host that copies links
    assert sorted(int(p.name) for p in api.iterdir()) == [1, 2, 3, 7]
    views = site / "v/debian/builds"  # diffoscope's reports, outside the API trees
    # each text once (its view loads the store's file): no .txt names beside the
    # extensionless files; the attestation also under a .json name (a link), which the page
    # links, so that a plain server shows it rather than offering a download
    assert sorted(p.name for p in (api / "7").iterdir()) == ["log"]
    assert sorted(p.name for p in (api / "2").iterdir()) == ["diffoscope", "log"]
    assert sorted(p.name for p in (api / "1").iterdir()) == [
        "attestation",
        "attestation.json",
        "log",
    ]
    alias = api / "1/attestation.json"  # (the same file: a hard link, no symlink)
    assert not alias.is_symlink() and alias.samefile(api / "1/attestation")
    assert json.loads((site / "debian/api/v0/pkgs/list.json").read_text()) == _pkgs(site)
    assert (site / "debian/api/v0/public-keys.json").is_file()
    page = (site / "p/debian-main/bookworm/main/amd64/pkg/hello.html").read_text()
    # the viewer told which store file to show, and the store's file; the attestation's
    # v0 copy
    assert '"../../../../../../v/text.html?k=log&amp;f=1/log.gz&amp;b=1&amp;n=hello&amp;v=' in page
    assert '"../../../../../../builds/1/log.gz">log (gz)</a>' in page
    assert 'v0/builds/1/attestation.json">attestation</a>' in page
    assert 'api/v0/public-keys.json">public key</a>' in page
    assert sorted(p.name for p in (views / "2").iterdir()) == ["diffoscope-report.html"]
    # an older attempt's log is readable too (the viewer, told build 6's store file); every
    # text through the one viewer: no page per build
    older = (site / "p/debian-main/bookworm/main/amd64/pkg/bumped.html").read_text()
    assert "v/text.html?k=log&amp;f=6/log.gz&amp;b=6&amp;n=bumped&amp;v=1.0-1" in older
    assert not list((site / "v").rglob("log.html"))


def test_readable_views_escape_everything_and_the_report_has_a_strict_csp(rendered) -> None:
    site, _, _ = rendered
    api = site / "v/debian/builds"
    view = (site / "v/text.html").read_text()  # the viewer: no build's text, no name in it
    shown = view[view.index('<pre class="text"') : view.index("</pre>")]  # text.js loads it
    assert "<noscript>" in shown and 'data-root="../"' in shown
    assert "build 7" not in view and "failure" not in view
    # build 7's log is hostile markup, and its name too: the links to the viewer quote both
    pages = [p.read_text() for p in site.rglob("*.html") if "k=log&amp;f=7/" in p.read_text()]
    assert pages and all(XSS not in p for p in pages)
    report = (api / "2/diffoscope-report.html").read_text()
    assert report.startswith('<!DOCTYPE html>\n<meta http-equiv="Content-Security-Policy"')
    assert "default-src 'none'" in report.split("\n")[1] and "<html>diff</html>" in report


CSP = "default-src 'self'; script-src 'self'; style-src 'self'"
SCRIPT_TAG = '<script src="static/search.js" defer></script>'


def _pages(site: Path) -> list[Path]:
    """Our HTML pages (not the results store, not diffoscope's own report)."""
    return [
        p
        for p in site.rglob("*.html")
        if p.relative_to(site).parts[0] != "builds" and p.name != "diffoscope-report.html"
    ]


def test_no_hostile_markup_and_csp_everywhere(rendered) -> None:
    site, _, _ = rendered
    pages = _pages(site)
    assert len(pages) > 20
    for p in pages:
        text = p.read_text()
        # the only scripts: the dashboard's search, the maintainers' filter, the text views'
        # loader; no inline code
        scripted = {
            site / "index.html": SCRIPT_TAG,
            site / "maintainers.html": '<script src="static/filter.js" defer></script>',
        }
        scripted[site / paths.VIEWER] = '<script src="../static/text.js" defer></script>'
        assert text.lower().count("<script") == (1 if p in scripted else 0), p
        if p in scripted:
            assert scripted[p] in text
        assert "javascript:" not in text and XSS not in text
        assert CSP in text
        assert "style=" not in text and "<style" not in text and " on" not in text.lower()
    # the page exists under an encoded name and shows the names escaped
    page = site / _file(paths.group_page("debian-main", f"bookworm/{XSS}/amd64/{XSS}"), ".html")
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.read_text()


def _file(p: str, suffix: str) -> Path:
    return Path(p + suffix)


def test_every_relative_link_resolves(rendered) -> None:
    site, _, _ = rendered
    checked = 0
    for page, link, target in page_links(site):
        if target is None:
            assert urlsplit(link).scheme in ("http", "https"), link
            continue
        assert target.is_relative_to(site.resolve()), (page, link)
        assert target.is_file(), (page, link)
        checked += 1
    assert checked > 100


def test_pages_are_written_after_the_pages_they_link_down_to(tmp_path: Path, monkeypatch) -> None:
    """Leaves first: when a page is written, the group pages, build files, badges and static
    files it links to are on disk already (links up, to lists and the dashboard, may wait)."""
    from rebuilder.site import output

    site = tmp_path / "site"
    early: list[tuple[str, str]] = []
    write = output.Output.write

    def checked(self: output.Output, rel: str, data: bytes) -> bool:
        if rel.endswith(".html"):
            parser = LinkParser()
            parser.feed(data.decode("utf-8", "replace"))
            for link in parser.links:
                link = link.partition("#")[0]
                if not link or urlsplit(link).scheme:
                    continue
                target = os.path.normpath(f"{site}/{rel.rpartition('/')[0]}/{unquote(link)}")
                down = re.search(r"/pkg/|/builds/|/static/|/badges?/", target)
                if down and not os.path.exists(target):
                    early.append((rel, link))
        return write(self, rel, data)

    monkeypatch.setattr(output.Output, "write", checked)
    render(site, site_views(site), now=NOW)
    assert early == []


def test_every_written_path_is_safe_and_inside_the_site(tmp_path: Path) -> None:
    site = tmp_path / "site"
    views = site_views(site)
    outside_before = {p for p in tmp_path.rglob("*") if not p.is_relative_to(site)}
    render(site, views, now=NOW)
    assert {p for p in tmp_path.rglob("*") if not p.is_relative_to(site)} == outside_before
    for p in site.rglob("*"):
        rel = p.relative_to(site)
        assert ".." not in rel.parts and "\x00" not in str(rel)
        assert all(len(part.encode()) <= paths.MAX_SEGMENT + 10 for part in rel.parts), rel
        if p.is_symlink() and p.suffix in (".txt", ".json") and "v1" not in rel.parts:
            name = os.readlink(p)  # a .txt/.json name: beside its file, in its folder
            assert "/" not in name, rel
            assert p.with_name(name).is_file() and not p.with_name(name).is_symlink()
        elif p.is_symlink():  # v1 files linking to v0 or by-name
            target = p.resolve()
            assert target.exists() and target.is_relative_to(site.resolve()), rel
            if "by-name" in rel.parts:
                assert target.parent == p.parent.resolve(), rel
            else:
                assert rel.parts[:3] == ("debian", "api", "v1"), rel
                assert target.is_relative_to((site / "debian/api/v0/builds").resolve()), rel


def test_second_render_writes_nothing_and_builds_is_untouched(tmp_path: Path) -> None:
    site = tmp_path / "site"
    views = site_views(site)
    store_before = _tree(site / "builds")
    first = render(site, views, now=NOW)
    assert first.written > 30 and first.removed == 0
    tree = _tree(site)
    second = render(site, views, now=NOW)
    assert (second.written, second.removed) == (0, 0)
    assert second.unchanged == first.written + first.unchanged
    assert _tree(site) == tree
    assert _tree(site / "builds") == store_before


def test_an_attestation_s_json_name_left_a_symlink_becomes_a_hard_link(tmp_path: Path) -> None:
    """A site an older rebuilder made has the attestation's .json name as a symlink: the
    next render makes it the same file (a hard link), not one that only leads to it."""
    site = tmp_path / "site"
    views = site_views(site)
    render(site, views, now=NOW)
    alias = site / "debian/api/v0/builds/1/attestation.json"
    alias.unlink()
    alias.symlink_to("attestation")
    assert render(site, views, now=NOW).written == 1
    assert not alias.is_symlink() and alias.samefile(alias.with_name("attestation"))


def test_incremental_render_equals_full_render(tmp_path: Path) -> None:
    site = tmp_path / "site"
    views = site_views(site)
    render(site, views, now=NOW)
    # "new" gets built GOOD; "hello" leaves the state entirely
    recs = dict(views[0].records)
    key = "bookworm/main/amd64/new"
    g = recs[key].group
    write_store(site, "8/log.gz", "fresh log\n")
    recs[key] = built_record(g, Status.GOOD, 8, {"log": "8/log.gz"})
    gone_key = "bookworm/main/amd64/hello"
    del recs[gone_key]
    # the hostile group changes maintainers: the old ones' pages must go
    evil_key = f"bookworm/{XSS}/amd64/{XSS}"
    evil = recs[evil_key]
    recs[evil_key] = replace(evil, group=replace(evil.group, maintainers=("Carol <c@x.org>",)))
    assert (site / paths.maintainer_page(XSS)).is_file()
    # "bumped" leaves the repository: its badge goes, its page stays
    bumped_key = "bookworm/main/amd64/bumped"
    recs[bumped_key] = replace(recs[bumped_key], seen=False)
    views2 = [ProfileView(views[0].profile, recs, 0, NOW), views[1]]
    stats = render(site, views2, now=NOW, changed={key, gone_key, evil_key, bumped_key})
    assert stats.skipped == len(recs) - 3 + len(views[1].records) - 1
    assert not (site / paths.maintainer_page(XSS)).exists()
    assert (site / "m/c%40x.org.html").is_file()
    assert not (site / paths.badge_file("debian-main", bumped_key, ".svg")).exists()
    assert stats.removed >= 2  # hello's page and JSON (its build 1 is still in profile 2)
    assert (site / "debian/api/v0/builds/8/log").read_text() == "fresh log\n"
    page = site / _file(paths.group_page("debian-main", key), ".html")
    assert "GOOD" in page.read_text()
    full = tmp_path / "full"
    shutil.copytree(site / "builds", full / "builds")  # same store, fresh site
    render(full, views2, now=NOW)
    own = cache.OWN  # (compared as data below)
    ours = {k: v[2] for k, v in _tree(site).items() if k not in own}
    theirs = {k: v[2] for k, v in _tree(full).items() if k not in own}
    assert ours == theirs
    assert (
        cache.load(str(site)).resolved() == cache.load(str(full)).resolved()
    )  # what the next render starts from


def test_unreadable_store_file_is_skipped_with_a_warning(tmp_path: Path, caplog) -> None:
    site = tmp_path / "site"
    g = site_group("corrupt")
    (site / "builds/9").mkdir(parents=True)
    (site / "builds/9/log.gz").write_bytes(b"not gzip at all")
    rec = built_record(g, Status.FAIL, 9, {"log": "9/log.gz"})
    with caplog.at_level(logging.WARNING, logger="rebuilder.site"):
        render(site, [ProfileView(site_profile(), {g.key: rec})], now=NOW)
    assert not (site / "debian/api/v0/builds/9/log").exists()
    assert "missing or unreadable" in caplog.text
    assert (site / "builds/9/log.gz").read_bytes() == b"not gzip at all"


def test_multi_member_gzip_log_is_served_whole(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "builds/10").mkdir(parents=True)
    parts = [gzip.compress(b"first part\n"), gzip.compress(b"second part\n")]
    (site / "builds/10/log.gz").write_bytes(b"".join(parts))
    g = site_group("two")
    render(
        site,
        [
            ProfileView(
                site_profile(), {g.key: built_record(g, Status.GOOD, 10, {"log": "10/log.gz"})}
            )
        ],
    )
    assert (site / "debian/api/v0/builds/10/log").read_bytes() == b"first part\nsecond part\n"


def test_template_override_shadows_one_file(tmp_path: Path) -> None:
    site = tmp_path / "site"
    tpl = tmp_path / "tpl"
    tpl.mkdir()
    (tpl / "index.html").write_text("custom {{ profiles[0].name }}\n")
    g = site_group("hello")
    render(site, [ProfileView(site_profile(f"p{XSS}"), {g.key: GroupRecord(g)})], templates=tpl)
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


def test_binary_rows_alone_agree_with_the_rendered_v1_list(rendered) -> None:
    """The pipeline calls ``api_v1.binary_rows`` on its own (``pkgs ls`` without -H)."""
    site, views, _ = rendered
    rows = {
        json.dumps(row.record.to_json() | {"id": 0}, sort_keys=True)
        for v in views
        for r in v.records.values()
        if r.seen
        for row in api_v1.binary_rows(
            r, api_v0.v0_attempt(r), api_v1.published(api_v0.v0_attempt(r)), NOW
        )
    }
    doc = json.loads((site / "debian/api/v1/packages/binary").read_text())
    assert doc["total"] == len(doc["records"])
    assert len({p["id"] for p in doc["records"]}) == doc["total"]  # each package its own
    names = [p["name"] for p in doc["records"]]
    assert names == sorted(names)  # rebuildctl's sort=name
    assert {json.dumps(p | {"id": 0}, sort_keys=True) for p in doc["records"]} == rows


# -- the full site: lists, search, maintainers, dashboard, feeds, badges, per-arch v0 ----


def _lookup(site: Path, query: str) -> list[tuple[str, Path]]:
    """What static/search.js answers for ``query``: (name, page file) of each entry.

    The same walk as the script: the longest prefix of the query in the manifest,
    then its shard (all entries of a leaf; the head of an inner node only when the
    query is that prefix).
    """
    manifest = json.loads((site / "search/index.json").read_text())
    q = query.strip().lower()
    for i in range(len(q), -1, -1):
        node = manifest["nodes"].get(q[:i])
        if node is None:
            continue
        shard, _count, leaf = node
        entries = json.loads((site / f"search/{shard}.json").read_text())["e"]
        if leaf:
            entries = [e for e in entries if e[0].lower().startswith(q)]
        elif q[:i] != q:
            entries = []
        out = []
        for name, _version, _status, suite, page, source in entries:
            base = "" if suite == search.MAINTAINER else manifest["suites"][suite][2]
            url = page[1:] if page.startswith("/") else f"{base}pkg/{page or source or name}.html"
            out.append((name, site / unquote(url)))
        return out
    return []


def test_search_index_finds_every_name_by_its_prefixes(tmp_path: Path, monkeypatch) -> None:
    from rebuilder.site import search

    monkeypatch.setattr(search, "LEAF", 3)  # force inner nodes on a small site
    site = tmp_path / "site"
    views = site_views(site)
    render(site, views, now=NOW)
    names = {
        name
        for v in views
        for r in v.records.values()
        if r.seen
        for name in (r.group.name, *(a.name for a in r.group.artifacts))
    }
    assert {"hello", "hello-doc", XSS, "a\x00b", "é/ü"} <= names
    for name in names:
        found = _lookup(site, name)
        hits = [page for n, page in found if n == name]
        assert hits, name
        assert all(p.is_file() for p in hits), (name, hits)
    # a short prefix answers too, only with names that start with it
    found = _lookup(site, "h")
    assert found and all(n.lower().startswith("h") for n, _ in found)
    assert _lookup(site, "zzz-nothing") == []
    # no shard holds more than a leaf's worth (inner ones hold a head of HEAD entries)
    for shard in (site / "search").glob("[0-9]*.json"):
        assert len(json.loads(shard.read_text())["e"]) <= max(3, search.HEAD)
    # the script never turns data into markup
    script = (site / "static/search.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script


def _suite_site(tmp_path: Path, n: int) -> tuple[Path, dict[str, GroupRecord]]:
    site = tmp_path / "site"
    recs = {}
    for i in range(n):
        g = site_group(f"pkg{i}", maintainers=("Jane <jane@example.org>",))
        status = [Status.GOOD, Status.BAD, Status.FAIL][i % 3]
        recs[g.key] = built_record(g, status, 100 + (i * 7) % n, {})
    recs.update({r.group.key: r for r in [GroupRecord(site_group("zz-unbuilt"))]})
    return site, recs


@pytest.mark.parametrize("keys", ["own", "reversed"])
def test_list_pages_are_paged_and_sorted_by_name_and_date(
    tmp_path: Path, monkeypatch, keys: str
) -> None:
    from rebuilder.site import html

    monkeypatch.setattr(html, "PAGE_SIZE", 2)
    site, recs = _suite_site(tmp_path, 5)
    if keys == "reversed":  # keys that sort the other way from the names (the walk's order)
        recs = {f"bookworm/main/amd64/k{9 - i}": r for i, r in enumerate(recs.values())}
    render(site, [ProfileView(site_profile(), recs)], now=NOW)
    suite = site / "p/debian-main/bookworm/main/amd64"

    def names(page: str) -> list[str]:
        return re.findall(r'<tr><td><a href="pkg/[^"]+">([^<]+)</a>', (suite / page).read_text())

    by_name = names("index.html") + names("all-2.html") + names("all-3.html")
    assert by_name == sorted(r.group.name for r in recs.values())
    assert not (suite / "all-4.html").exists()
    by_date = names("all-date.html") + names("all-date-2.html") + names("all-date-3.html")
    built = {r.group.name: r.attempts[-1].started_at for r in recs.values() if r.attempts}
    assert by_date[:-1] == sorted(built, key=lambda n: built[n], reverse=True)
    assert by_date[-1] == "zz-unbuilt"  # never built: last
    assert names("good.html") == ["pkg0", "pkg3"] and names("bad.html") == ["pkg1", "pkg4"]
    assert names("unkwn.html") == ["zz-unbuilt"]
    page2 = (suite / "all-2.html").read_text()
    assert 'href="index.html">1</a>' in page2 and 'href="all-3.html">3</a>' in page2
    assert 'href="all-date.html">date</a>' in page2  # the other sort, first page


def test_maintainer_pages_list_packages_needing_attention_first(rendered) -> None:
    site, _, _ = rendered
    jane = site / "m/jane%40example.org.html"
    assert "hello" in jane.read_text()
    index = (site / "maintainers.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in index
    # hostile maintainer names: safe file names inside m/, listed and linked
    evil = site / paths.maintainer_page(XSS)
    assert evil.parent == site / "m" and evil.is_file()
    assert paths.url(paths.maintainer_page("../x")).startswith("m/%252E.%252Fx")
    group_page = site / _file(
        paths.group_page("debian-main", f"bookworm/{XSS}/amd64/{XSS}"), ".html"
    )
    assert "../../../../../../m/%253Cscript" in group_page.read_text()
    ET.fromstring((site / paths.maintainer_feed(XSS, ".atom")).read_bytes())  # well-formed


def test_a_maintainer_has_a_feed_a_badge_and_is_found_by_search(tmp_path: Path) -> None:
    site, recs = _suite_site(tmp_path, 6)  # Jane's: 2 GOOD, 2 BAD, 2 FAIL
    bob = site_group("bobs", maintainers=("Bob <bob@example.org>",))
    recs[bob.key] = built_record(bob, Status.GOOD, 300, {})
    view = ProfileView(site_profile(), recs)
    render(site, [view], now=NOW)
    page = site / "m/jane%40example.org.html"
    text = page.read_text()
    links = dict(re.findall(r'<a href="([^"]+)">(Atom|JSON|SVG|shields.io)</a>', text))
    assert links == {
        "../feeds/m/jane%2540example.org.atom": "Atom",
        "../feeds/m/jane%2540example.org.json": "JSON",
        "../badges/m/jane%2540example.org.svg": "SVG",
        "../badges/m/jane%2540example.org.json": "shields.io",
    }
    files = {kind: page.parent / unquote(href) for href, kind in links.items()}
    ns = {"a": "http://www.w3.org/2005/Atom"}
    atom = ET.fromstring(files["Atom"].read_bytes())
    titles = [e.findtext("a:title", namespaces=ns) or "" for e in atom.findall("a:entry", ns)]
    assert sorted(t.split()[0] for t in titles) == [f"pkg{i}" for i in range(6)]  # not bobs
    for e in atom.findall("a:entry", ns):  # relative to the feed, resolving to group pages
        href = e.find("a:link", ns).get("href", "")  # type: ignore[union-attr]
        assert (files["Atom"].parent / unquote(href)).resolve().is_file(), href
    doc = json.loads(files["JSON"].read_text())
    assert doc["title"] == "rebuilder: Jane <jane@example.org>" and len(doc["items"]) == 6
    assert "33.3%" in files["SVG"].read_text()
    assert json.loads(files["shields.io"].read_text())["message"] == "33.3%"
    # search: the name as written and the address offer the page
    assert _lookup(site, "jan") == [("Jane", page), ("jane@example.org", page)]
    assert _lookup(site, "JANE@ex") == [("jane@example.org", page)]
    # incremental: Jane's badge and feed follow her changed group; Bob's stay
    g = recs["bookworm/main/amd64/pkg1"].group
    recs[g.key] = GroupRecord(g, Status.GOOD, [*recs[g.key].attempts,
                                               site_attempt(g, 400, Status.GOOD, {})])  # fmt: skip
    bob_badge = site / "badges/m/bob%40example.org.svg"
    before = bob_badge.stat().st_mtime_ns
    render(site, [view], now=NOW, changed={g.key})
    assert "50.0%" in files["SVG"].read_text()
    assert len(json.loads(files["JSON"].read_text())["items"]) == 7
    assert bob_badge.stat().st_mtime_ns == before
    assert (site / "feeds/m/bob%40example.org.atom").is_file()


def test_maintainer_page_puts_bad_and_fail_first(tmp_path: Path) -> None:
    site, recs = _suite_site(tmp_path, 6)
    render(site, [ProfileView(site_profile(), recs)], now=NOW)
    text = (site / "m/jane%40example.org.html").read_text()
    statuses = re.findall(r'<td class="s-(\w+)">', text)
    assert statuses == ["BAD", "FAIL", "BAD", "FAIL", "GOOD", "GOOD"]


def _history_records() -> dict[str, GroupRecord]:
    def at(g: BuildGroup, i: int, status: Status) -> Attempt:
        return replace(site_attempt(g, i, status, {}), started_at=T0 + dt.timedelta(days=i))

    reg, fixed, first = site_group("regressed"), site_group("fixed"), site_group("first")
    recs = [
        GroupRecord(reg, Status.BAD, [at(reg, 1, Status.GOOD), at(reg, 4, Status.BAD)]),
        GroupRecord(fixed, Status.GOOD, [at(fixed, 2, Status.FAIL), at(fixed, 5, Status.GOOD)]),
        GroupRecord(first, Status.GOOD, [at(first, 3, Status.GOOD)]),
    ]
    return {r.group.key: r for r in recs}


def _more_changes() -> dict[str, GroupRecord]:
    """_history_records and a BAD that was FAIL, and a first build that FAILed."""
    wobbly, broke = site_group("wobbly"), site_group("broke")
    t = [
        replace(site_attempt(wobbly, i, s, {}), started_at=T0 + dt.timedelta(days=i))
        for i, s in ((0, Status.FAIL), (1, Status.BAD))
    ]
    recs = [
        GroupRecord(wobbly, Status.BAD, t),
        GroupRecord(broke, Status.FAIL, [site_attempt(broke, 2, Status.FAIL, {})]),
    ]
    return _history_records() | {r.group.key: r for r in recs}


def test_dashboard_lists_regressions_then_newly_reproduced(tmp_path: Path) -> None:
    site = tmp_path / "site"
    render(site, [ProfileView(site_profile(), _more_changes(), 7, NOW)], now=NOW)
    text = (site / "index.html").read_text()
    blocks = dict(re.findall(r"<h3>([\w ]+)(?: <span[^<]*</span>)?</h3>(.*?)</div>", text, re.S))

    def names(title: str) -> list[str]:
        return re.findall(r'html">(\w+)</a>', blocks[title])

    assert names("Regressions") == ["regressed"]
    assert names("Newly BAD") == ["regressed", "wobbly"]  # from anything: FAIL, first builds
    assert names("Newly FAIL") == ["broke"]
    assert names("Newly reproduced") == ["fixed", "first"]  # newest first
    assert "queue: 7" in text and "last pass: 2024-05-06 07:08 UTC" in text


def test_capped_change_lists_say_their_total(tmp_path: Path, monkeypatch) -> None:
    import rebuilder.site.walk as site_mod

    monkeypatch.setattr(site_mod, "DASHBOARD_CHANGES", 1)
    site = tmp_path / "site"
    render(site, [ProfileView(site_profile(), _more_changes(), 7, NOW)], now=NOW)
    text = (site / "index.html").read_text()
    assert '<h3>Newly BAD <span class="meta">(1 newest of 2)</span></h3>' in text
    assert '<h3>Newly FAIL <span class="meta">(1)</span></h3>' in text


def test_changes_no_list_keeps_are_still_counted(tmp_path: Path, monkeypatch) -> None:
    """Once every list is full, an older change is counted without its group's attempts
    being looked at: the totals stay those of every change."""
    import rebuilder.site.walk as site_mod

    monkeypatch.setattr(site_mod, "DASHBOARD_CHANGES", 2)
    monkeypatch.setattr(site_mod, "FEED_ITEMS", 3)
    recs = {}
    for i in range(40):  # in key order, older and older: the lists are full early
        g = site_group(f"pkg{i:02d}")
        kind = [[Status.GOOD], [Status.BAD], [Status.FAIL], [Status.GOOD, Status.BAD]][i % 4]
        when = T0 - dt.timedelta(days=i)
        attempts = [
            replace(site_attempt(g, 10 * i + j, st, {}), started_at=when + dt.timedelta(hours=j))
            for j, st in enumerate(kind)
        ]
        recs[g.key] = GroupRecord(g, kind[-1], attempts)
    site = tmp_path / "site"
    render(site, [ProfileView(site_profile(), recs)], now=NOW)
    text = (site / "index.html").read_text()
    for title, total in [("Regressions", 10), ("Newly BAD", 20), ("Newly FAIL", 10),
                         ("Newly reproduced", 10)]:  # fmt: skip
        assert f'<h3>{title} <span class="meta">(2 newest of {total})</span></h3>' in text


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_capped_lists_keep_the_newest_changes_whatever_order_the_groups_come_in(
    tmp_path: Path, monkeypatch, seed: int
) -> None:
    """The walk offers a change only when it may be among the newest a list keeps (the
    n-th newest end among the groups each list is offered): the lists hold the newest
    changes of all, whether the walk meets the groups oldest first, newest first or in
    no order."""
    import random

    import rebuilder.site.walk as site_mod

    monkeypatch.setattr(site_mod, "DASHBOARD_CHANGES", 2)
    monkeypatch.setattr(site_mod, "FEED_ITEMS", 3)
    rng = random.Random(seed)
    # the newest changes are of groups whose standing change no dashboard list takes (a
    # new version not rebuilt yet): the feed alone may keep them
    newest_ages, ages = rng.sample(range(12), 12), rng.sample(range(12, 60), 48)
    recs, ends = {}, {}
    for i in range(60):
        g = site_group(f"pkg{i:02d}")
        kind = [[Status.GOOD], [Status.BAD], [Status.FAIL], [Status.GOOD, Status.BAD],
                [Status.FAIL, Status.GOOD]][i % 5]  # fmt: skip
        when = T0 - dt.timedelta(days=newest_ages.pop() if i % 5 == 4 else ages.pop())
        attempts = [
            replace(site_attempt(g, 10 * i + j, st, {}), started_at=when + dt.timedelta(hours=j))
            for j, st in enumerate(kind)
        ]
        status = Status.UNKWN if i % 5 == 4 else kind[-1]
        recs[g.key] = GroupRecord(g, status, attempts)
        ends[g.name] = (attempts[-1].ended_at, kind if i % 5 != 4 else [])
    site = tmp_path / "site"
    render(site, [ProfileView(site_profile(), recs)], now=NOW)
    text = (site / "index.html").read_text()
    blocks = dict(re.findall(r"<h3>([\w ]+)(?: <span[^<]*</span>)?</h3>(.*?)</div>", text, re.S))

    def newest(pick) -> list[str]:
        found = sorted((e, n) for n, (e, kind) in ends.items() if pick(kind))
        return [n for _, n in reversed(found)][:2]

    assert re.findall(r'html">(\w+)</a>', blocks["Regressions"]) == newest(lambda k: len(k) == 2)
    assert re.findall(r'html">(\w+)</a>', blocks["Newly FAIL"]) == newest(
        lambda k: k == [Status.FAIL]
    )
    feed = json.loads((site / "feeds/debian-main.json").read_text())
    every = sorted((a.ended_at, r.group.name) for r in recs.values() for a in r.attempts)
    assert [i["title"].split()[0] for i in feed["items"]] == [n for _, n in every[::-1][:3]]


def test_chart_is_drawn_from_the_pass_history(tmp_path: Path) -> None:
    site = tmp_path / "site"
    recs = _history_records()
    history: list[dict[str, Any]] = [
        {"at": "2024-05-01T00:00:00", "counts": {"GOOD": 1, "BAD": 1, "FAIL": 1, "UNKWN": 0}},
        {"at": "garbage", "counts": {}},  # a hand-edited state must not break the render
        {"at": "2024-05-02T00:00:00", "counts": "nope"},
        site_history_point(dt.datetime(2024, 5, 3), recs.values()),
        {
            "at": "2024-05-04T00:00:00",
            "counts": {"GOOD": 2, "BAD": 1},
            "suites": {"bookworm/main/amd64": {"GOOD": 2, "BAD": 1}, XSS: {"GOOD": 1}},
        },
    ]
    render(site, [ProfileView(site_profile(), recs, history=history)], now=NOW)
    text = (site / "index.html").read_text()
    chart = text[text.index('<svg class="chart"') : text.index("</svg>", text.index("chart"))]
    assert chart.count("<polygon") == 4  # GOOD, BAD, FAIL, UNKWN bands over 3 points
    assert "<polyline" not in chart  # suites get a small line each, not one over another
    # one row per suite of the last point, each line in its own box: close shares stay apart
    table = text[text.index('<table class="trends trends-suites">') :]
    table = table[: table.index("</table>")]
    rows = re.findall(r"<tr><td>(.*?)</td>.*?<polyline[^>]*>.*?data-l=\"now\">([^<]*)<", table)
    link = '<a href="p/debian-main/bookworm/main/amd64/index.html">bookworm/main/amd64</a>'
    assert rows == [("&lt;script&gt;alert(1)&lt;/script&gt;", "100.0%"),  # no list: not a suite now
                    (link, "66.7%")]  # fmt: skip
    assert XSS not in text
    point = site_history_point(NOW, recs.values())
    assert point["counts"] == {"GOOD": 2, "BAD": 1, "FAIL": 0, "UNKWN": 0}
    assert point["suites"] == {"bookworm/main/amd64": {"GOOD": 2, "BAD": 1, "FAIL": 0, "UNKWN": 0}}
    assert point["causes"] == {}  # the BAD attempt was not classified


def test_close_suites_get_lines_apart() -> None:
    """Two suites a tenth of a point apart: one chart would draw one line over the other;
    each small line spans its own box, so both show their change."""
    from rebuilder.site import history as site_history

    def at(day: int, a: int, b: int) -> dict[str, Any]:
        suites = {
            "r/main/amd64": {"GOOD": a, "BAD": 1000 - a},
            "r/main/arm64": {"GOOD": b, "BAD": 1000 - b},
        }
        return {"at": f"2024-05-0{day}T00:00:00", "counts": {"GOOD": a + b}, "suites": suites}

    pts = site_history.points([at(1, 970, 971), at(2, 975, 972), at(3, 980, 970)])
    lines = site_history.trends(pts)["suites"]
    ys = [[float(p.split(",")[1]) for p in re.findall(r'points="([^"]*)"', t.svg)[0].split()]
          for t in lines]  # fmt: skip
    assert [t.name for t in lines] == ["r/main/amd64", "r/main/arm64"]
    assert ys[0][0] > ys[0][-1]  # amd64 rose: its line climbs (y grows downwards)
    assert ys[1][0] < ys[1][-1]  # arm64 fell
    # a box spans at least 2 points of share (20 units): 1 point is half of it, 0.2 a tenth
    assert max(ys[0]) - min(ys[0]) == pytest.approx(10)
    assert max(ys[1]) - min(ys[1]) == pytest.approx(2)
    assert [(t.now, t.change, t.groups) for t in lines] == [
        ("98.0%", "+1.0 pts", 1000),
        ("97.0%", "-0.1 pts", 1000),
    ]


def test_history_counts_causes_and_the_dashboard_shows_their_shares(tmp_path: Path) -> None:
    def bad(name: str, build_id: int, found: tuple[str, ...]) -> GroupRecord:
        g = site_group(name)
        rec = built_record(g, Status.BAD, build_id, {})
        rec.attempts[0] = replace(rec.attempts[0], causes=found)
        return rec

    path, drift = "captures_build_path", "toolchain_drift"
    recs = {r.group.key: r for r in (bad("a", 1, (path,)), bad("b", 2, (path, drift)))}
    early = site_history_point(dt.datetime(2024, 5, 2), recs.values())
    recs |= {r.group.key: r for r in (bad("c", 3, (drift,)), bad("d", 4, (drift,)))}
    late = site_history_point(dt.datetime(2024, 5, 3), recs.values())
    assert early["causes"] == {"captures_build_path": 2, "toolchain_drift": 1}
    assert late["causes"] == {"captures_build_path": 2, "toolchain_drift": 3}
    old = {"at": "2024-05-01T00:00:00", "counts": {"GOOD": 1, "BAD": 1}}  # stored before causes
    site = tmp_path / "site"
    render(site, [ProfileView(site_profile(), recs, history=[old, early, late])], now=NOW)
    text = (site / "index.html").read_text()
    table = text[text.index('<table class="trends trends-causes">') :]
    table = table[: table.index("</table>")]
    rows = re.findall(
        r'<tr><td>([^<]*)</td>.*?"now">([^<]*)<.*?"groups">([^<]*)<.*?"change">([^<]*)<', table
    )
    assert rows == [
        ("embedded build path", "50.0%", "2", "-50.0 pts"),
        ("toolchain drift (dependency or compiler versions)", "75.0%", "3", "+25.0 pts"),
    ]
    doc = json.loads((site / "index.json").read_text())
    assert doc["profiles"][0]["cause_history"] == {
        "at": ["2024-05-02T00:00:00", "2024-05-03T00:00:00"],  # the old point has no causes
        "BAD": [2, 4],
        "causes": {"captures_build_path": [2, 2], "toolchain_drift": [1, 3]},
    }


def test_feeds_are_valid_and_escape_hostile_names(tmp_path: Path) -> None:
    site = tmp_path / "site"
    recs = _history_records()
    nasty = site_group(f"n\x00\x1b{XSS}&")
    recs[nasty.key] = built_record(nasty, Status.BAD, 9, {})
    render(site, [ProfileView(site_profile(), recs)], now=NOW)
    ns = {"a": "http://www.w3.org/2005/Atom"}
    atom = ET.fromstring((site / "feed.atom").read_bytes())  # parses: no raw control chars
    entries = atom.findall("a:entry", ns)
    assert len(entries) == 6  # first builds and changes: 2 + 2 + 1 + 1
    titles = [e.findtext("a:title", namespaces=ns) for e in entries]
    assert "regressed 1.0-1 (bookworm/main/amd64): GOOD → BAD" in titles
    assert any(XSS in (t or "") for t in titles)  # as text, escaped in the XML
    assert b"<script" not in (site / "feed.atom").read_bytes()
    for e in entries:  # no site_url: links relative to the feed, resolving to pages
        assert (e.findtext("a:id", namespaces=ns) or "").startswith("urn:uuid:")
        link = e.find("a:link", ns)
        assert link is not None
        href = link.get("href", "")
        assert (site / unquote(href)).is_file(), href
    doc = json.loads((site / "feed.json").read_text())
    assert doc["version"] == "https://jsonfeed.org/version/1.1" and len(doc["items"]) == 6
    assert "url" not in doc["items"][0] and "feed_url" not in doc
    assert (site / "feeds/debian-main.atom").is_file()
    render(
        site, [ProfileView(site_profile(), recs)], now=NOW, site_url="https://rebuilder.example/x/"
    )
    doc = json.loads((site / "feed.json").read_text())
    assert doc["feed_url"] == "https://rebuilder.example/x/feed.json"
    assert all(i["url"].startswith("https://rebuilder.example/x/p/") for i in doc["items"])
    atom = ET.fromstring((site / "feed.atom").read_bytes())
    self_link = [x.get("href") for x in atom.findall("a:link", ns) if x.get("rel") == "self"]
    assert self_link == ["https://rebuilder.example/x/feed.atom"]


def test_badges_per_profile_and_per_package(tmp_path: Path) -> None:
    site = tmp_path / "site"
    recs = _history_records()
    view = ProfileView(site_profile(f"p{XSS}"), recs)
    render(site, [view], now=NOW)
    svg = site / paths.profile_badge(f"p{XSS}", ".svg")
    ET.fromstring(svg.read_bytes())  # well-formed SVG
    assert "66.7%" in svg.read_text()
    shields = json.loads((site / paths.profile_badge(f"p{XSS}", ".json")).read_text())
    assert shields == {"schemaVersion": 1, "label": "reproducible", "message": "66.7%",
                       "color": "yellow"}  # fmt: skip
    key = "bookworm/main/amd64/regressed"
    pkg = site / paths.badge_file(f"p{XSS}", key, ".svg")
    assert os.path.samefile(pkg, site / "badges/_/BAD.svg")  # a hard link, not a copy
    endpoint = json.loads((site / paths.badge_file(f"p{XSS}", key, ".json")).read_text())
    assert endpoint["message"] == "BAD" and endpoint["color"] == "red"
    # an incremental render moves the badge with the verdict
    g = recs[key].group
    recs[key] = GroupRecord(
        g, Status.GOOD, [*recs[key].attempts, site_attempt(g, 20, Status.GOOD, {})]
    )
    render(site, [view], now=NOW, changed={key})
    assert os.path.samefile(pkg, site / "badges/_/GOOD.svg")


def test_per_architecture_v0_trees(rendered, tmp_path: Path, caplog) -> None:
    site, _, _ = rendered
    amd64 = json.loads((site / "debian/amd64/api/v0/pkgs/list").read_text())
    assert amd64 and {p["architecture"] for p in amd64} == {"amd64"}
    arm64 = json.loads((site / "debian/arm64/api/v0/pkgs/list").read_text())
    assert [p["name"] for p in arm64] == ["fail"]
    # lists only: their clients fetch no build files, which live once, in the distro's tree
    assert sorted(p.name for p in (site / "debian/amd64/api/v0").iterdir()) == [
        "dashboard", "dashboard.json", "pkgs", "public-keys", "public-keys.json",
    ]  # fmt: skip
    board = json.loads((site / "debian/arm64/api/v0/dashboard").read_text())
    assert board["suites"] == {"main": {"good": 0, "unknown": 1, "bad": 0}}  # FAIL: UNKWN
    # an architecture named "api" would shadow the distro's own tree: it gets none
    other = tmp_path / "other"
    g = site_group("odd", arch="api")
    with caplog.at_level(logging.WARNING, logger="rebuilder.site"):
        render(other, [ProfileView(site_profile(), {g.key: GroupRecord(g)})], now=NOW)
    assert "architecture named 'api'" in caplog.text
    assert json.loads((other / "debian/api/v0/pkgs/list").read_text())[0]["name"] == "odd"


def test_our_json_index_suite_shards_and_group_documents(rendered) -> None:
    site, _, _ = rendered
    index = json.loads((site / "index.json").read_text())
    assert index["schema"] == 2 and (site / index["search"]).is_file()
    main = index["profiles"][0]
    assert main["counts"]["GOOD"] == 1 and (site / main["feeds"]["atom"]).is_file()
    assert (site / main["badge"]["svg"]).is_file() and main["arch_api"]["amd64"]
    for suite in main["suites"]:
        shard = json.loads((site / unquote(suite["json"])).read_text())
        assert shard["fields"] == ["name", "version", "status", "built_at", "build_id", "url"]
        assert len(shard["groups"]) == suite["total"]
        for row in shard["groups"]:
            assert (site / unquote(row[5])).is_file()
    page = paths.group_page("debian-main", "bookworm/main/amd64/bad")
    doc = json.loads((site / f"{page}.json").read_text())
    assert doc["schema"] == 1 and doc["record"]["attempts"][0]["build_id"] == 2
    assert doc["changes"] == [
        {"at": "2024-05-01T14:01:23", "before": None, "after": "BAD", "build_id": 2}
    ]
    files = doc["files"]["2"]
    assert files["log"] == "debian/api/v0/builds/2/log"
    assert files["diffoscope_html"] == "v/debian/builds/2/diffoscope-report.html"
    assert files["log.html"] == "v/text.html?k=log&f=2/log.gz&b=2&n=bad&v=2.0-1"
    assert all((site / f.partition("?")[0]).exists() for f in files.values())


def test_link_to_the_distributions_own_page(tmp_path: Path) -> None:
    from rebuilder.site import links

    assert links.PACKAGE_PAGES["debian"].startswith("https://")  # one table, one place
    site = tmp_path / "site"
    g = site_group(XSS)
    pages = {"debian": "https://tracker.example/pkg/{name}"}
    render(site, [ProfileView(site_profile(), {g.key: GroupRecord(g)})], package_pages=pages)
    text = (site / _file(paths.group_page("debian-main", g.key), ".html")).read_text()
    assert 'href="https://tracker.example/pkg/%3Cscript%3Ealert%281%29%3C%2Fscript%3E"' in text
    render(site, [ProfileView(site_profile(), {g.key: GroupRecord(g)})], package_pages={})
    text = (site / _file(paths.group_page("debian-main", g.key), ".html")).read_text()
    assert "tracker.example" not in text


def test_forked_workers_render_the_same_site(tmp_path: Path, monkeypatch) -> None:
    import rebuilder.site.groups as site_module
    from rebuilder.site import forks, maintainers

    serial = tmp_path / "serial"
    views = site_views(serial)
    render(serial, views, now=NOW)
    forked = tmp_path / "forked"
    shutil.copytree(serial / "builds", forked / "builds")
    for module in (site_module, maintainers):  # group pages, and maintainer pages
        monkeypatch.setattr(module, "PARALLEL_MIN", 1)
        monkeypatch.setattr(module, "MAX_WORKERS", 2)
    monkeypatch.setattr(site_module.os, "sched_getaffinity", lambda pid: {0, 1})
    started: list[int] = []
    run = forks.start

    def counted(calls):
        started.append(len(calls))
        return run(calls)

    monkeypatch.setattr(forks, "start", counted)
    stats = render(forked, views, now=NOW)
    assert started == [2, 2]  # the group pages, then the maintainer pages, each in two processes
    assert stats.written > 100 and stats.removed == 0
    mine = {k: v[2] for k, v in _tree(forked).items() if k != cache.FILES}  # (which files)
    assert mine == {k: v[2] for k, v in _tree(serial).items() if k != cache.FILES}
    assert render(forked, views, now=NOW).written == 0  # the workers' files were all expected


def test_the_driver_makes_the_maintainer_pages_its_processes_have_not_taken(
    tmp_path: Path, monkeypatch
) -> None:
    """The maintainer pages are handed out one at a time: the driver, once done with its
    own work, makes those its processes have not taken, and none is made twice. (Here
    each process holds its first page until the driver has taken one.)"""
    import multiprocessing

    from rebuilder.site import forks, maintainers

    views = site_views(tmp_path / "serial")
    render(tmp_path / "serial", views, now=NOW)
    site = tmp_path / "forked"
    shutil.copytree(tmp_path / "serial" / "builds", site / "builds")
    monkeypatch.setattr(maintainers, "PARALLEL_MIN", 1)
    monkeypatch.setattr(forks.os, "sched_getaffinity", lambda pid: {0, 1})
    driver, took = os.getpid(), multiprocessing.get_context("fork").Event()
    render_pages = maintainers._render_pages
    log = tmp_path / "made"

    def held(out, *, cfg, redo):
        def pages():
            for key, items in redo:
                if os.getpid() == driver:
                    took.set()
                else:
                    assert took.wait(60), "the driver took no maintainer page"
                with open(log, "a") as f:
                    f.write(f"{os.getpid()} {key}\n")
                yield key, items

        render_pages(out, cfg=cfg, redo=pages())

    monkeypatch.setattr(maintainers, "_render_pages", held)
    render(site, views, now=NOW)
    made = [line.split() for line in log.read_text().splitlines()]
    keys = [key for _, key in made]
    assert len(keys) == len(set(keys)) >= 3  # each page once
    assert {m.name for m in (tmp_path / "serial" / "m").glob("*.html")} == {
        m.name for m in (site / "m").glob("*.html")
    }
    by = {int(pid) for pid, _ in made}
    assert driver in by and len(by) == 3  # the driver, and each of its two processes
    assert render(site, views, now=NOW).written == 0  # (their files were all expected)


def test_encoded_pkg_lines_are_exactly_the_json_encoder_s(rendered) -> None:
    _, views, _ = rendered
    encode = json.JSONEncoder(sort_keys=True, ensure_ascii=False).encode
    odd = site_group('q"uo\\te\x7f\x01é\u2028', url='https://mirror.example/"x\\y".deb')
    records = [*views[0].records.values(), built_record(odd, Status.GOOD, 30, {"log": "x"})]
    for r in records:
        a = api_v0.v0_attempt(r)
        for has in ({"log"}, {"log", "diffoscope", "attestation"}):
            for p in api_v0.pkg_lines(r, a, has):
                doc = json.loads(p[api_v0.LINE])
                assert p[api_v0.LINE] == encode(doc).encode("utf-8", "surrogatepass")
                if doc["name"]:  # the v0 record reader refuses a hostile index's empty name
                    assert doc == PkgRelease.from_json(doc).to_json()


def test_search_index_stays_shallow_for_names_sharing_long_prefixes() -> None:
    from rebuilder.site import search

    long = "x" * 3000
    entries = [search.Entry(f"{long}{i}", "1", "GOOD", 0, "p", "") for i in range(50)]
    files = search.build(entries, [["p", "r/c/a", "p/"]], leaf=10)
    nodes = json.loads(files["index.json"])["nodes"]
    assert max(len(p) for p in nodes) == search.MAX_PREFIX
    deepest = max(nodes, key=len)
    shard, count, leaf = nodes[deepest]
    assert (count, leaf) == (50, 1)  # one leaf: a query of any length filters it
    assert len(json.loads(files[f"{shard}.json"])["e"]) == 50


def test_recorded_environment_is_linked_and_unpublished_digests_show_the_compared_one(
    tmp_path: Path,
) -> None:
    """A suite-chroot build's installed packages and .buildinfo sit beside its log; an index
    that publishes no SHA256 (Alpine, Tails) shows the digest the build compared with."""
    site = tmp_path / "site"
    g = site_group("tails")
    g = replace(g, artifacts=tuple(replace(a, sha256="") for a in g.artifacts))
    digest = "c" * 64
    files = {"log": "7/log.gz", "meta/installed-packages.txt": "7/meta/installed-packages.txt"}
    for rel in files.values():
        write_store(site, rel, "dpkg 1.21\n")
    results = tuple(ArtifactResult(a.name, a.filename, digest, digest) for a in g.artifacts)
    att = Attempt(7, g.version, Status.GOOD, T0, 1.0, "tails.sh", "", g.inputs_digest, results,
                  files)  # fmt: skip
    rec = GroupRecord(g, Status.GOOD, [att])
    render(site, [ProfileView(site_profile(), {g.key: rec}, 0, T0)], now=T0)
    page = next(site.rglob("pkg/tails.html")).read_text()
    assert "installed-packages.txt" in page
    href = re.search(r'href="([^"]*installed-packages\.txt)"', page)
    assert href and (next(site.rglob("pkg/tails.html")).parent / unquote(href.group(1))).is_file()
    assert page.count(digest) >= 2  # published (as compared) and rebuilt, side by side


def test_causes_are_shown_counted_and_listed(tmp_path: Path) -> None:
    site = tmp_path / "site"
    recs = {}
    for i, (name, cs) in enumerate(
        [
            ("pathy", ("captures_build_path",)),
            ("stampy", ("timestamps_in_gzip_headers", "captures_build_path")),
            ("umasky", ("different_due_to_umask",)),
            ("plain", ()),  # not classified (an older attempt): counted in no cause
        ]
    ):
        g = site_group(name)
        rec = built_record(g, Status.BAD, 40 + i, {})
        files = (("x.deb › data.tar › ./usr/bin/x", cs[0]),) if cs else ()
        rec.attempts[0] = replace(rec.attempts[0], causes=cs, differences=files)
        recs[g.key] = GroupRecord.from_json(json.loads(json.dumps(rec.to_json())))  # as stored
    render(site, [ProfileView(site_profile(), recs, 0, NOW)], now=NOW)
    index = json.loads((site / "index.json").read_text())
    (suite,) = index["profiles"][0]["suites"]
    want = {"captures_build_path": 2, "different_due_to_umask": 1, "timestamps_in_gzip_headers": 1}
    assert suite["causes"] == want and index["profiles"][0]["causes"] == want
    base = site / "p/debian-main/bookworm/main/amd64"
    listed = re.findall(
        r'href="pkg/(\w+)\.html"', (base / "cause-captures_build_path.html").read_text()
    )
    assert listed == ["pathy", "stampy"]
    assert (
        "<strong>embedded build path 2</strong>"
        in (base / "cause-captures_build_path.html").read_text()
    )
    assert 'href="cause-different_due_to_umask.html"' in (base / "bad.html").read_text()
    board = (site / "index.html").read_text()
    assert "Causes of BAD" in board
    assert 'cause-captures_build_path.html">embedded build path</a> 2' in board
    page = (base / "pkg/stampy.html").read_text()
    assert "timestamp in a gzip header</strong> <code>timestamps_in_gzip_headers</code>" in page
    assert "x.deb › data.tar › ./usr/bin/x" in page


def test_bad_and_fail_rows_link_their_log_and_report(rendered) -> None:
    site, _, _ = rendered
    lists = site / "p/debian-main/bookworm/main/amd64"
    row = next(r for r in (lists / "bad.html").read_text().split("<tr>") if ">bad</a>" in r)
    links = re.findall(r'href="([^"]+)">(log|diffoscope)</a>', row)
    assert [label for _, label in links] == ["log", "diffoscope"]
    for href, _ in links:
        assert (lists / unquote(href.partition("?")[0])).resolve().is_file()  # the viewer's query
    assert "k=log&amp;f=2/log.gz&amp;b=2&amp;" in links[0][0]
    good = next(r for r in (lists / "index.html").read_text().split("<tr>") if ">hello</a>" in r)
    assert ">log</a>" not in good  # a GOOD row needs no why
    # on a maintainer's page too (one folder down from the site root)
    page = site / paths.maintainer_page(XSS)
    row = next(r for r in page.read_text().split("<tr>") if '<td class="s-BAD">' in r)
    links = re.findall(r'href="([^"]+)">(log|diffoscope)</a>', row)
    assert [label for _, label in links] == ["log"]  # its hostile diffoscope path: not served
    assert (page.parent / unquote(links[0][0].partition("?")[0])).resolve().is_file()
