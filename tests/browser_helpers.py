"""A real headless Chromium driving the rendered site: used by tests/test_browser.py and
by bench/render.py (search latency on a Debian-sized index).

Debian's ``chromium`` and ``chromium-driver`` packages and Python's ``selenium``
are used as they are installed; nothing is downloaded. The site is served by a
threaded ``http.server`` on 127.0.0.1 under a path prefix, which proves that
every link is relative.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1280,1000",
)
TYPES = {
    "": "text/plain; charset=utf-8",  # v0 files (log, diffoscope, pkgs/list) have no suffix
    ".json": "application/json",
    ".atom": "application/atom+xml",
    ".svg": "image/svg+xml",
    ".js": "text/javascript",
    ".css": "text/css",
    ".html": "text/html; charset=utf-8",
}


def missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "Python package 'selenium' is not installed (pip install selenium)"
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    if shutil.which("chromedriver") is None:
        return "chromedriver is missing (apt-get install chromium-driver)"
    return None


class _Quiet(http.server.SimpleHTTPRequestHandler):
    extensions_map = TYPES

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    """Serve ``root`` on 127.0.0.1 (a free port) until the block ends; yields the base URL."""
    handler = functools.partial(_Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@contextlib.contextmanager
def chromium(profile_dir: Path) -> Iterator[Any]:
    """A headless Chromium under chromedriver, with a fresh profile; logs every console line."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={profile_dir}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=shutil.which("chromedriver"))
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def errors(driver: Any) -> list[str]:
    """Console errors since the last call (CSP violations and failed loads are errors)."""
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def type_query(driver: Any, text: str, timeout: float = 10.0) -> list[float]:
    """Type ``text`` into the dashboard's search box a key at a time, waiting for each
    answer; the script's own time per keystroke (ms, input event to results shown)."""
    from selenium.webdriver.common.by import By

    box = driver.find_element(By.ID, "q")
    times = []
    for ch in text:
        before = driver.execute_script("return document.getElementById('q').value")
        box.send_keys(ch)
        want = before + ch
        deadline = time.monotonic() + timeout
        while True:
            ms = driver.execute_script(
                "const n = document.getElementById('search-status');"
                "return document.getElementById('q').value === arguments[0] && n.dataset.q"
                " === arguments[0].trim().toLowerCase() ? n.dataset.ms : null;",
                want,
            )
            if ms is not None:
                times.append(float(ms))
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"no search answer for {want!r}")
            time.sleep(0.005)
    return times
