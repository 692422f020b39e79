"""What the site publishes of each build, and the tree GitHub Pages gets (rebuilder.site.pages).

Pages packs the site with links dereferenced, so every name is a full copy: a build's log
may be published under the names rebuilderd's clients read and nowhere else, and the Pages
tree keeps it only in the results store, which the pages' views load.
"""

from __future__ import annotations

import gzip
import os
import shutil
from collections import defaultdict
from pathlib import Path

import pytest

from rebuilder import client
from rebuilder.site import ProfileView, cache, pages, render

from .fixtures.http import serve
from .fixtures.site import NOW, page_links, site_profile, site_records, site_views

CLIENT_NAMES = {"api/v0/builds/{id}/log", "api/v1/builds/{id}/log"}


def _published(site: Path) -> dict[bytes, list[str]]:
    """Every file's bytes outside the results store -> its paths, links followed (as the
    Pages upload does)."""
    out: dict[bytes, list[str]] = defaultdict(list)
    for root, dirs, files in os.walk(site, followlinks=True):
        rel = Path(root).relative_to(site)
        if rel.parts[:1] == ("builds",):
            dirs.clear()
            continue
        for f in files:
            out[Path(root, f).read_bytes()].append(str(rel / f))
    return out


def _logs(site: Path) -> dict[int, bytes]:
    """Build id -> its log as the results store holds it, decompressed."""
    logs = {}
    for f in (site / "builds").glob("*/log*"):
        data = f.read_bytes()
        logs[int(f.parent.name)] = gzip.decompress(data) if f.suffix == ".gz" else data
    return logs


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    render(site, site_views(site), now=NOW)
    return site


def test_each_log_is_published_only_where_clients_read_it(site: Path) -> None:
    published = _published(site)
    logs = _logs(site)
    assert len(logs) >= 5
    served = 0
    for build_id, log in logs.items():
        names = {p.replace(f"/{build_id}/", "/{id}/", 1).partition("/")[2] for p in published[log]}
        assert names <= CLIENT_NAMES, (build_id, published[log])
        served += bool(names)
        # no readable view holds it again: they load it from the store
        for data, where in published.items():
            if any(p.startswith("v/") for p in where):
                assert log.strip() not in data, (build_id, where)
    assert served >= 3  # the builds v0 names (GOOD, BAD, FAIL, hostile)
    assert not (site / "debian/amd64/api/v0/builds").exists()


def test_the_pages_tree_holds_each_log_once_and_every_link_answers(site: Path) -> None:
    logs = _logs(site)
    assert list((site / cache.COMPILED).iterdir())  # what the trim must leave out
    assert pages.trim(site) > 0
    published = _published(site)
    for build_id, log in logs.items():
        assert log not in published, (build_id, published.get(log))  # only in builds/, gzip'd
    assert not list(site.glob("*/api/v1/builds")) and not list(site.glob("*/api/v1/*/by-name"))
    assert (site / "debian/api/v0/builds/1/attestation").is_file()  # what verify reads
    checked = 0
    for page, link, target in page_links(site):  # a crawl: every page's links answer
        if target is not None:
            assert target.is_file() and target.is_relative_to(site.resolve()), (page, link)
            checked += 1
    assert checked > 100
    assert pages.trim(site) == 0  # a second run finds nothing more
    # the next render, even told that nothing changed, puts back what the trim left out
    assert not [n for n in cache.OWN if (site / n).exists()]
    assert not (site / cache.COMPILED).exists()  # the renderer's, not published
    render(site, site_views(site), now=NOW, changed=set())
    assert list(site.glob("*/api/v1/*/by-name"))


def test_our_client_reads_the_pages_tree(tmp_path: Path) -> None:
    site = tmp_path / "site"
    recs = site_records(site)  # the plain ones: the client refuses the hostile names
    plain = {k: r for k, r in recs.items() if r.group.name in ("hello", "bad", "fail")}
    render(site, [ProfileView(site_profile(), plain)], now=NOW)
    tree = tmp_path / "pages"
    shutil.copytree(site, tree)  # links dereferenced, as the upload does
    pages.trim(tree)
    url, stop = serve(tree)
    try:
        entries = {e.name: e for e in client.fetch_pkgs(f"{url}/debian")}
        hello = entries["hello"]
        # v1's per-build files are left out: the client falls back to v0's
        got = client.fetch_build_file(f"{url}/debian", hello, "attestation")
        assert got == (site / "debian/api/v0/builds/1/attestation").read_bytes()
    finally:
        stop()


def test_the_module_refuses_what_is_not_a_site(tmp_path: Path, capsys) -> None:
    assert pages.main([str(tmp_path)]) == 2
    assert "usage:" in capsys.readouterr().err
