"""The smoke run's book in Chromium, page by page, as a reader sees it: one tab that goes from page to page
(a fresh browser context per page fetched and compiled the theme's scripts again: 12 s against 3 s for the
19 pages).

To look at the pages: ``pytest tests/test_book_in_browser.py --screenshot=on`` keeps a full-page screenshot
of each in test-artifacts/playwright/pages/, ``--screenshot=only-on-failure`` of each page that failed
(pytest-playwright's option, read by the page test; off by default: 0.4 s a page). The plugin's ``--video``
and ``--tracing`` do not apply to this tab.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page
from playwright.sync_api import Error as PlaywrightError
from sphinx_external_toc.parsing import parse_toc_yaml

from osteo_helpers.config import PROJECT_ROOT
from tests.browser_checks import MUTE_IMAGES_JS, SOURCE_LINKS_JS, WIDE_TABLES_JS, WINDOW

TOC_PAGES = list(parse_toc_yaml(PROJECT_ROOT / "_toc.yml"))  # docnames, in the order of the book

# Lazy images are made eager so that images below the fold are checked too; decode() rejects for an
# image that cannot be fetched or decoded. Returns the sources of the images left without pixels.
UNDECODED_IMAGES_JS = """async () => {
  const images = Array.from(document.images);
  images.forEach(img => { img.loading = "eager"; });
  await Promise.all(images.map(img => img.decode().catch(() => null)));
  return images.filter(img => !img.complete || img.naturalWidth === 0).map(img => img.currentSrc || img.src);
}"""
# Sphinx 7.4 writes sphinx-thebe 0.3.1's inline `const THEBE_JS_URL = ...` script twice into every page (it
# registers the script after the builder started, and the builder then adds it again); the second copy throws.
# Nothing in the book's sources can remove it, and thebe (off here) keeps working.
UPSTREAM_EXCEPTIONS = {"Identifier 'THEBE_JS_URL' has already been declared"}
# Lines of the run's progress (the pipeline's log), which a page of the book must not hold (issue 32).
PROGRESS_LINE = re.compile(r"reusing \d+ of \d+ folds|\d+ fits done|\bretraining \w+ seed|label permutations: |"
                           r"about \d+m?\d*s left|cache: .* computing it again")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def book_url(smoke_run: Path) -> Iterator[str]:
    """The smoke run's book served over HTTP from 127.0.0.1, on a free port."""
    handler = functools.partial(_QuietHandler, directory=str(smoke_run / "_build" / "html"))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()
        thread.join()


@pytest.fixture(scope="module")
def reader(browser: Browser, browser_context_args: dict) -> Iterator[Page]:
    """One tab for every page of the book, as a reader clicks through it: every page after the first is
    visited with the browser's cache and storage warm."""
    context: BrowserContext = browser.new_context(**{**browser_context_args, "viewport": WINDOW})
    yield context.new_page()
    context.close()


def test_browser_is_the_system_chromium(browser: Browser, browser_type_launch_args: dict) -> None:
    """pytest-playwright launches the Chromium of scripts/ensure_chromium.sh, never a browser of its own."""
    chromium = browser_type_launch_args["executable_path"]
    version = subprocess.run([chromium, "--version"], capture_output=True, text=True, check=True).stdout
    assert browser.version in version, f"Playwright launched {browser.version}, not {chromium} ({version.strip()})"


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("docname", TOC_PAGES)
def test_toc_page_loads_in_chromium(book_url: str, reader: Page, docname: str, pytestconfig: pytest.Config) -> None:
    """HTTP 200, no console error or uncaught exception, every image decoded and described in words; at 1,280 px
    every table fits the box a reader sees it in (no table cut off or scrolling sideways), the CSV file linked
    beside each table is there, and no line of the run's progress reached the page (issue 32)."""
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        # The browser asks for /favicon.ico by itself; the book declares none.
        if msg.type == "error" and not msg.location["url"].endswith("/favicon.ico"):
            errors.append(f"console error: {msg.text} ({msg.location['url']})")

    def on_pageerror(exc: PlaywrightError) -> None:
        if exc.message not in UPSTREAM_EXCEPTIONS:
            errors.append(f"uncaught exception: {exc.message}")

    reader.on("console", on_console)
    reader.on("pageerror", on_pageerror)
    try:
        response = reader.goto(f"{book_url}/{docname}.html", wait_until="load")  # the page, its scripts and styles
        undecoded = reader.evaluate(UNDECODED_IMAGES_JS)
        wide, mute = reader.evaluate(WIDE_TABLES_JS), reader.evaluate(MUTE_IMAGES_JS)
        missing = [url for url in reader.evaluate(SOURCE_LINKS_JS) if reader.request.head(url).status != 200]
        progress = [line for line in reader.inner_text("main").splitlines() if PROGRESS_LINE.search(line)]
        failed = response is None or response.status != 200 or bool(undecoded or wide or mute or missing or progress
                                                                     or errors)
        wanted = pytestconfig.getoption("--screenshot")
        if wanted == "on" or (wanted == "only-on-failure" and failed):
            shot = Path(pytestconfig.getoption("--output")) / "pages" / f"{docname.replace('/', '__')}.png"
            reader.screenshot(path=shot, full_page=True)
    finally:
        reader.goto("about:blank")  # the page's late events (timers, unload) reach this test's listeners
        reader.remove_listener("console", on_console)
        reader.remove_listener("pageerror", on_pageerror)
    assert response is not None and response.status == 200, f"{docname}.html answered {response and response.status}"
    assert not undecoded, f"images without pixels on {docname}.html: {undecoded}"
    assert not errors, f"{docname}.html:\n" + "\n".join(errors)
    assert not wide, f"tables wider than their visible box at 1,280 px on {docname}.html: {wide}"
    assert not mute, f"images whose alt text says nothing on {docname}.html: {mute}"
    assert not missing, f"linked files the book does not serve on {docname}.html: {missing}"
    assert not progress, f"progress lines on {docname}.html: {progress[:5]}"


@pytest.mark.realdata
@pytest.mark.slow
def test_first_page_and_provenance_read_well(book_url: str, reader: Page, smoke_run: Path) -> None:
    """The first page states the run's answer; provenance shows the final status, the device and the
    parameters as tables and every full checksum; no download menu to unbuilt files."""
    record = json.loads((smoke_run / "provenance.json").read_text())
    reader.goto(f"{book_url}/book/index.html", wait_until="load")
    first = reader.inner_text("main")
    assert "The answer of this run." in first and "residual fusion" in first, first[:600]
    assert "{{" not in first and "filled in by the pipeline" not in first
    assert reader.locator(".dropdown-download-buttons").count() == 0, "download menu links to _sources/, not built"

    reader.goto(f"{book_url}/book/provenance.html", wait_until="load")
    status = reader.locator("main table").first.inner_text()
    assert "finished" in status and "running" not in status, status
    assert "CPU cores" in reader.inner_text("main") and "changed for this run" in reader.inner_text("main")
    reader.locator("summary", has_text="SHA-256 of all").click()
    digest = record["data"]["spreadsheet_sha256"]
    assert reader.get_by_text(digest).first.is_visible(), "full checksums are not shown"
