"""The rendered site in a real headless Chromium: dashboard, search as you type, a
package page, its log; no console errors (CSP violations count), screenshots saved;
nothing scrolls sideways on a phone; a BAD page (diffoscope's reports of a real BAD
rebuild, tests/fixtures/bad_rebuilds.py) says why above the fold; every internal link answers.

Needs Debian's ``chromium`` and ``chromium-driver`` and Python's ``selenium``;
skips with the reason when one is missing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import gzip
import itertools
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from rebuilder import causes
from rebuilder.build import diffoscope
from rebuilder.model import GroupRecord, Status
from rebuilder.site import ProfileView, render
from rebuilder.state import history_point

from .fixtures import browser
from .fixtures.bad_rebuilds import Pair
from .fixtures.site import NOW, XSS, built_record, site_group, site_views, write_store

pytestmark = [
    pytest.mark.slow,  # starts Chromium
    pytest.mark.skipif(browser.missing() is not None, reason=str(browser.missing())),
]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
PREFIX = "mirror/rebuilder"  # served below a path prefix: every link must be relative


PROBE = "p/debian-main/bookworm/main/amd64/pkg/probe.html"


class _Hrefs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.links += [v for k, v in attrs if k in ("href", "src") and v]


def _real_bad(root: Path, pair: Pair, build_id: int, scratch: Path) -> dict[str, str]:
    """diffoscope's reports on a real BAD rebuild, stored as the runner stores them."""
    report = diffoscope.compare([(pair.first, pair.second)], scratch, timeout=120, limit=1 << 22)
    assert report.text and report.html and report.json, report.notes
    files = {}
    for kind, name, data in (
        ("diffoscope", "diffoscope.txt.gz", report.text),
        ("diffoscope_html", "diffoscope.html.gz", report.html),
        ("diffoscope_json", "diffoscope.json.gz", report.json),
        ("log", "log.gz", b"dpkg-buildpackage -us -uc -b\n" * 3),
    ):
        path = root / "builds" / str(build_id) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.compress(data, mtime=0))
        files[kind] = f"{build_id}/{name}"
    return files


def _history(recs: dict[str, GroupRecord]) -> list[dict[str, Any]]:
    """Passes over a week: the last is the records' own; the ones before it moved a few
    groups of each suite to UNKWN and counted causes more or less; the oldest was stored
    before causes were counted."""
    last = history_point(NOW, recs.values())
    points = []
    for day in range(6):
        point = json.loads(json.dumps(last))
        point["at"] = (NOW - dt.timedelta(days=6 - day)).isoformat()
        for i, counts in enumerate(point["suites"].values()):
            counts["UNKWN"] += (day + i) % 3
        if day:
            point["causes"] = {c: n + day % 2 for c, n in last["causes"].items()}
            point["causes"]["toolchain_drift"] = day % 2  # gone by the last pass
            point["counts"]["BAD"] += day % 2
        else:
            del point["causes"]
        points.append(point)
    return [*points, last]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, bad_pairs: dict[str, Pair]) -> Path:
    www = tmp_path_factory.mktemp("www")
    root = www / PREFIX
    views = site_views(root)
    recs = dict(views[0].records)
    probe = site_group("probe", maintainers=("Jane <jane@example.org>",))
    files = _real_bad(root, bad_pairs["build_path"], 900, tmp_path_factory.mktemp("diffoscope"))
    report = (root / "builds" / files["diffoscope_json"]).read_bytes()
    verdict = causes.classify(gzip.decompress(report))
    rec = built_record(probe, Status.BAD, 900, files, next_retry=NOW)
    rec.attempts[0] = dataclasses.replace(
        rec.attempts[0],
        reason="differs: probe_1.0_amd64.deb",
        causes=verdict.causes,
        differences=verdict.files,
    )
    recs[probe.key] = rec
    for i in range(60):  # enough names for a few shards
        g = site_group(f"help{i:02d}", bins=(f"help{i:02d}", f"libhelp{i:02d}-dev"))
        write_store(root, f"{100 + i}/log.gz", f"log of help{i:02d}\n")
        recs[g.key] = built_record(g, Status.GOOD, 100 + i, {"log": f"{100 + i}/log.gz"})
    views[0] = ProfileView(views[0].profile, recs, 3, NOW, history=_history(recs))
    render(root, views, now=NOW)
    # plain text files make the browser ask the host for /favicon.ico: the host's, not ours
    (www / "favicon.ico").write_bytes(b"")
    # a probe page with an inline script: the error check must see its CSP violation
    (www / "csp-probe.html").write_text(
        '<!doctype html><meta http-equiv="Content-Security-Policy" content="script-src \'self\'">'
        "<script>document.title = 'ran'</script>"
    )
    return www


@pytest.fixture(scope="module")
def driver(site: Path, tmp_path_factory: pytest.TempPathFactory):
    with browser.chromium(tmp_path_factory.mktemp("chromium-profile")) as d:
        yield d


def _shot(driver, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def test_the_error_check_sees_a_csp_violation(site: Path, driver) -> None:
    with browser.serve(site) as base:
        browser.errors(driver)
        driver.get(f"{base}/csp-probe.html")
        assert driver.title != "ran"
        assert any("Content Security Policy" in m for m in browser.errors(driver))


def test_dashboard_search_package_page_and_log(site: Path, driver) -> None:
    from selenium.webdriver.common.by import By

    with browser.serve(site) as base:
        browser.errors(driver)
        driver.get(f"{base}/{PREFIX}/index.html")
        assert driver.title.startswith("Reproducible builds")
        assert driver.find_element(By.CSS_SELECTOR, "svg.chart")  # drawn without script
        # an answer to each key (how fast is bench/render.py --browser's: no duration is
        # asserted in a test, where a loaded machine would fail it)
        assert len(browser.type_query(driver, "hel")) == 3
        rows = driver.find_elements(By.CSS_SELECTOR, "#search-body tr")
        names = [r.find_element(By.TAG_NAME, "a").text for r in rows]
        assert "hello" in names and all(n.lower().startswith("hel") for n in names)
        assert len(names) == 64  # hello and hello-doc in two profiles, help00..help59
        assert driver.find_element(By.ID, "search-status").text == "64 packages"
        browser.type_query(driver, "lo")  # "hello": a shard answers the longer query
        names = [a.text for a in driver.find_elements(By.CSS_SELECTOR, "#search-body a")]
        assert set(names) == {"hello", "hello-doc"}
        _shot(driver, "dashboard-search")
        link = next(
            a
            for a in driver.find_elements(By.CSS_SELECTOR, "#search-body a")
            if a.text == "hello" and "debian-main/" in a.get_attribute("href")
        )
        link.click()
        assert driver.find_element(By.TAG_NAME, "h1").text.startswith("hello 1.0-1")
        assert f"/{PREFIX}/p/debian-main/bookworm/main/amd64/pkg/hello.html" in driver.current_url
        _shot(driver, "package")
        driver.find_element(By.LINK_TEXT, "log").click()
        # the view holds no copy: static/text.js loads and gunzips the results store's file
        assert _shown_text(driver).startswith("build log of hello")
        stored = driver.find_element(By.LINK_TEXT, "the file as stored").get_attribute("href")
        assert stored.endswith(f"/{PREFIX}/builds/1/log.gz"), stored
        # "plain text" opens the decoded text as text/plain, not the .gz as a download
        plain = driver.find_element(By.LINK_TEXT, "plain text")
        assert plain.get_attribute("href").startswith("blob:")
        plain.click()
        body = driver.find_element(By.TAG_NAME, "body").text
        assert body.startswith("build log of hello"), body[:200]
        driver.back()
        assert browser.errors(driver) == []


def _shown_text(driver: Any) -> str:
    """The text a view shows, once static/text.js has loaded it."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    def loaded(d: Any) -> str | None:
        pre = d.find_element(By.CSS_SELECTOR, "pre.text")
        text = pre.get_property("textContent")
        return None if not text or "JavaScript" in text else pre.text

    return str(WebDriverWait(driver, 10).until(loaded))  # until() never returns a None


def test_hostile_pages_run_no_script(site: Path, driver) -> None:
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    from rebuilder.site import paths

    with browser.serve(site) as base:
        browser.errors(driver)
        page = paths.url(paths.group_page("debian-main", f"bookworm/{XSS}/amd64/{XSS}"))
        driver.get(f"{base}/{PREFIX}/{page}.html")
        assert XSS in driver.find_element(By.TAG_NAME, "h1").text  # shown as text
        # the viewer, told a hostile name and version, and a hostile log
        driver.get(f"{base}/{PREFIX}/" + paths.text_view("log", "7/log.gz", 7, XSS, XSS))
        assert XSS in _shown_text(driver)  # as text: textContent, never markup
        assert driver.find_element(By.TAG_NAME, "h1").text == f"log: {XSS} {XSS} (build 7)"
        back = driver.find_element(By.LINK_TEXT, f"{XSS} {XSS}").get_attribute("href")
        assert back.endswith("/index.html?q=%3Cscript%3Ealert(1)%3C%2Fscript%3E"), back
        # nor is it sent anywhere but to a results store file
        for bad in ("../index.html", "//evil.example/x", "a/../../index.html", ""):
            driver.get(f"{base}/{PREFIX}/" + paths.text_view("log", bad, 7, "x", "1"))
            assert _shown_text(driver).startswith(f"could not load {bad}"), bad
        driver.get(f"{base}/{PREFIX}/index.html")
        browser.type_query(driver, "<scr")
        assert driver.find_element(By.CSS_SELECTOR, "#search-body a").text == XSS
        with pytest.raises(NoAlertPresentException):
            driver.switch_to.alert.text  # noqa: B018
        _shot(driver, "hostile-search")
        assert browser.errors(driver) == []


def test_list_pages_and_maintainers_without_javascript(site: Path, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    with browser.serve(site) as base, browser.chromium(tmp_path / "profile") as d:
        d.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
        d.get(f"{base}/{PREFIX}/index.html")
        d.find_element(By.LINK_TEXT, "bookworm").click()
        d.find_element(By.LINK_TEXT, "date").click()
        assert os.path.basename(d.current_url) == "all-date.html"
        assert d.find_elements(By.CSS_SELECTOR, "table.list tbody tr")
        d.get(f"{base}/{PREFIX}/maintainers.html")
        d.find_element(By.PARTIAL_LINK_TEXT, "Jane").click()
        assert "hello" in d.find_element(By.TAG_NAME, "main").text
        assert browser.errors(d) == []


PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}
# (name, page): one of each kind a visitor meets
PAGES = [
    ("dashboard", "index.html"),
    ("list", "p/debian-main/bookworm/main/amd64/index.html"),
    ("group", "p/debian-main/bookworm/main/amd64/pkg/hello.html"),
    ("bad", PROBE),
    ("fail", "p/debian-main/bookworm/main/arm64/pkg/fail.html"),
    ("report", "v/debian/builds/900/diffoscope-report.html"),
    ("diffoscope", "v/text.html?k=diffoscope&f=900/diffoscope.txt.gz&b=900&n=probe&v=1.0-1"),
    ("log", "v/text.html?k=log&f=900/log.gz&b=900&n=probe&v=1.0-1"),
    ("maintainers", "maintainers.html"),
    ("maintainer", "m/jane%2540example.org.html"),
]


@contextlib.contextmanager
def _phone(driver):
    """A 390x844 phone screen (its viewport meta honoured) for the block."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    try:
        yield
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _overflow(driver, width: int) -> int:
    """How many CSS pixels the page is wider than a screen ``width`` wide (0: no sideways
    scroll). Not innerWidth: a phone zooms out to fit a wide page, which widens it."""
    wide = driver.execute_script(
        "return Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
    )
    return max(0, int(wide) - width)


def test_nothing_scrolls_sideways_on_a_phone(site: Path, driver) -> None:
    with browser.serve(site) as base, _phone(driver):
        browser.errors(driver)
        wide = {}
        for name, page in PAGES:
            driver.get(f"{base}/{PREFIX}/{page}")
            wide[name] = _overflow(driver, PHONE["width"])
            _shot(driver, f"phone-{name}")
        assert wide == {name: 0 for name, _ in PAGES}
        # the check sees a page that is too wide
        driver.execute_script("document.body.style.minWidth = '800px'")
        assert _overflow(driver, PHONE["width"]) > 0
        assert browser.errors(driver) == []


def test_desktop_screenshots(site: Path, driver) -> None:
    driver.set_window_size(1366, 900)
    with browser.serve(site) as base:
        browser.errors(driver)
        for name, page in PAGES:
            driver.get(f"{base}/{PREFIX}/{page}")
            assert _overflow(driver, driver.execute_script("return window.innerWidth")) == 0, name
            _shot(driver, f"desktop-{name}")
        assert browser.errors(driver) == []


def test_bad_page_names_the_cause_and_the_files_above_the_fold(site: Path, driver) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    with browser.serve(site) as base, _phone(driver):
        driver.get(f"{base}/{PREFIX}/{PROBE}")
        why = driver.find_element(By.CSS_SELECTOR, "section.why")
        assert [c.text for c in why.find_elements(By.CSS_SELECTOR, ".cause")] == [
            "embedded build path"
        ]
        files = [li.text for li in why.find_elements(By.CSS_SELECTOR, ".files li")]
        assert files == ["probe_1.0_amd64.deb › data.tar › ./usr/bin/probe — embedded build path"]
        fold = driver.execute_script("return window.innerHeight")
        bottom = driver.execute_script(
            "return document.querySelector('section.why .files').getBoundingClientRect().bottom"
        )
        assert 0 < bottom <= fold
        assert "retry due" in driver.find_element(By.TAG_NAME, "main").text
        # the report: named after the package, with the way back
        why.find_element(By.LINK_TEXT, "diffoscope (html)").click()
        assert driver.title.startswith("diffoscope: probe 1.0-1")
        driver.find_element(By.LINK_TEXT, "probe 1.0-1").click()  # to the search for it
        found = WebDriverWait(driver, 10).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, "#search-body a")
        )
        found[0].click()
        assert driver.current_url.endswith(PROBE)


def test_fail_page_shows_the_reason_and_the_log_s_last_lines(site: Path, driver) -> None:
    from selenium.webdriver.common.by import By

    with browser.serve(site) as base:
        driver.get(f"{base}/{PREFIX}/p/debian-main/bookworm/main/arm64/pkg/fail.html")
        why = driver.find_element(By.CSS_SELECTOR, "section.why")
        assert "Why it FAILed" in why.text
        assert driver.find_element(By.CSS_SELECTOR, "section.why pre").text == "plain failure log"


def test_every_internal_link_answers_200(site: Path) -> None:
    """A crawl from the dashboard: every page, file and asset the site links to is there."""
    with browser.serve(site) as base:
        top = f"{base}/{PREFIX}/"
        todo, seen, broken = [top + "index.html"], {top + "index.html"}, []
        while todo and len(seen) < 20000:
            u = todo.pop()
            try:
                with urllib.request.urlopen(u, timeout=10) as r:
                    kind, body = r.headers.get_content_type(), r.read()
            except urllib.error.HTTPError as e:
                broken.append((u, e.code))
                continue
            if kind != "text/html":
                continue
            parser = _Hrefs()
            parser.feed(body.decode("utf-8", "replace"))
            for link in parser.links:
                target = urllib.parse.urljoin(u, link).partition("#")[0].partition("?")[0]
                if target.startswith(top) and target not in seen:
                    seen.add(target)
                    todo.append(target)
        assert broken == []
        assert len(seen) > 200
        reached = {u[len(top) :] for u in seen}
        for kind in (  # pages and files of every kind, linked from somewhere
            "m/jane%2540example.org.html", "feeds/m/jane%2540example.org.atom",
            "feeds/m/jane%2540example.org.json", "badges/m/jane%2540example.org.svg",
            "badges/m/jane%2540example.org.json", "v/debian/builds/900/diffoscope-report.html",
            "v/text.html", PROBE, "feeds/debian-main.atom",
        ):  # fmt: skip
            assert kind in reached, kind


def test_search_offers_a_maintainer_s_page_with_feed_and_badge(site: Path, driver) -> None:
    from selenium.webdriver.common.by import By

    with browser.serve(site) as base:
        browser.errors(driver)
        row = "{} 3 packages 1 BAD/FAIL maintainer"  # hello in two profiles, and probe
        for query, names in (
            ("jane", ["Jane", "jane@example.org"]),
            ("jane@", ["jane@example.org"]),
        ):
            driver.get(f"{base}/{PREFIX}/index.html")
            browser.type_query(driver, query)
            rows = driver.find_elements(By.CSS_SELECTOR, "#search-body tr")
            assert [r.text for r in rows] == [row.format(n) for n in names], query
        assert driver.find_element(By.ID, "search-status").text == "0 packages, 1 maintainer"
        driver.find_element(By.LINK_TEXT, "jane@example.org").click()
        assert driver.find_element(By.TAG_NAME, "h1").text.startswith("Jane <jane@example.org>")
        badge = driver.find_element(By.CSS_SELECTOR, "h1 img.badge")
        assert driver.execute_script("return arguments[0].naturalWidth", badge) > 0  # it loaded
        driver.find_element(By.LINK_TEXT, "JSON").click()
        feed = json.loads(driver.find_element(By.TAG_NAME, "body").text)
        assert {i["_rebuilder"]["name"] for i in feed["items"]} == {"hello", "probe"}
        assert browser.errors(driver) == []


def test_trend_lines_of_close_suites_stay_apart_on_a_phone(site: Path, driver) -> None:
    from selenium.webdriver.common.by import By

    with browser.serve(site) as base, _phone(driver):
        driver.get(f"{base}/{PREFIX}/index.html")
        for kind in ("suites", "causes"):
            lines = driver.find_elements(By.CSS_SELECTOR, f"table.trends-{kind} svg.spark")
            boxes = [ln.rect for ln in lines]
            assert len(boxes) >= 2, kind
            assert all(b["width"] >= 300 and b["height"] >= 20 for b in boxes), boxes
            tops = sorted(b["y"] for b in boxes)  # each in its own row: none over another
            assert all(b - a >= 20 for a, b in itertools.pairwise(tops)), tops
        assert _overflow(driver, PHONE["width"]) == 0


_COLOURS = """
const out = [];
for (const el of document.querySelectorAll("main a, main .meta, main [class^='s-'], header a")) {
  if (!el.textContent.trim() || !el.getClientRects().length) continue;
  let bg = null;
  for (let n = el; n && !bg; n = n.parentElement) {
    const c = getComputedStyle(n).backgroundColor;
    if (!c.endsWith(", 0)") && c !== "transparent") bg = c;
  }
  bg = bg || getComputedStyle(document.documentElement).backgroundColor;
  const what = el.tagName + "." + el.className + ": " + el.textContent.trim().slice(0, 30);
  out.push([getComputedStyle(el).color, bg, what]);
}
return out;
"""


def _contrast(fg: str, bg: str) -> float:
    """WCAG 2 contrast ratio of two CSS ``rgb(...)`` colours."""

    def luminance(css: str) -> float:
        r, g, b = (int(float(v)) / 255 for v in css[css.index("(") + 1 : -1].split(",")[:3])
        lin = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_text_and_links_are_readable_in_light_and_dark_mode(site: Path, driver, scheme) -> None:
    """Every link, status and note of a page kind contrasts at least 4.5:1 (WCAG AA)
    with what it sits on, as the browser computes the colours."""
    media = {"media": "", "features": [{"name": "prefers-color-scheme", "value": scheme}]}
    driver.execute_cdp_cmd("Emulation.setEmulatedMedia", media)
    try:
        with browser.serve(site) as base:
            low = []
            for name, page in PAGES:
                if name in ("report", "log", "diffoscope"):
                    continue  # diffoscope's own styles; the text views are a <pre>
                driver.get(f"{base}/{PREFIX}/{page}")
                colours = driver.execute_script(_COLOURS)
                assert colours, name
                low += [(name, w, round(_contrast(fg, bg), 2)) for fg, bg, w in colours
                        if _contrast(fg, bg) < 4.5]  # fmt: skip
            assert low == []
            assert _contrast("rgb(119, 119, 119)", "rgb(136, 136, 136)") < 4.5  # the check bites
    finally:
        driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"media": "", "features": []})


def test_maintainers_filter_as_you_type(site: Path, driver: Any) -> None:
    from selenium.webdriver.common.by import By

    with browser.serve(site) as base:
        browser.errors(driver)
        driver.get(f"{base}/{PREFIX}/maintainers.html")
        rows = driver.find_elements(By.CSS_SELECTOR, "#maintainer-list tbody tr")
        assert len(rows) > 2
        driver.find_element(By.ID, "filter").send_keys("jane")
        shown = [r.text for r in rows if r.is_displayed()]
        assert shown and all("jane" in t.lower() for t in shown) and len(shown) < len(rows)
        assert driver.find_element(By.ID, "filter-status").text == f"{len(shown)} of {len(rows)}"
        assert browser.errors(driver) == []
