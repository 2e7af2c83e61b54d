"""The browser test's walk through a built book, side by side: a fresh browser context per page (what the
test did with pytest-playwright's function-scoped ``page``), one tab for every page (what it does now), and
one tab with a full-page screenshot of each page (what ``--screenshot=on`` adds).

Run: python benchmarks/bench_book_pages.py [--book test-artifacts/smoke-run/_build/html] [--rounds 2]
(after `make test`, which leaves the smoke run's book there)
"""

from __future__ import annotations

import argparse
import functools
import http.server
import sys
import tempfile
import threading
import time
from pathlib import Path

from playwright.sync_api import Browser, sync_playwright
from sphinx_external_toc.parsing import parse_toc_yaml

from _common import write_result

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.browser_checks import WIDE_TABLES_JS, WINDOW  # noqa: E402  the test's own checks and window
from tests.conftest import CHROMIUM, CHROMIUM_ARGS  # noqa: E402  the browser the tests launch
from tests.test_book_in_browser import UNDECODED_IMAGES_JS, _QuietHandler  # noqa: E402


def walk(browser: Browser, url: str, pages: list[str], mode: str, shots: Path) -> float:
    """Seconds to load every page, decode its images and look for tables wider than their box, in ``mode``."""
    start = time.perf_counter()
    tab = None if mode == "context per page" else browser.new_context(viewport=WINDOW).new_page()
    for name in pages:
        page = tab or browser.new_context(viewport=WINDOW).new_page()
        page.goto(f"{url}/{name}.html", wait_until="load")
        page.evaluate(UNDECODED_IMAGES_JS)
        page.evaluate(WIDE_TABLES_JS)
        if mode == "one tab, screenshots":
            page.screenshot(path=shots / f"{name.replace('/', '__')}.png", full_page=True)
        if tab is None:
            page.context.close()
        else:
            page.goto("about:blank")  # as the test leaves each page
    if tab is not None:
        tab.context.close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--book", type=Path, default=ROOT / "test-artifacts" / "smoke-run" / "_build" / "html")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    pages = list(parse_toc_yaml(ROOT / "_toc.yml"))
    modes = ("context per page", "one tab", "one tab, screenshots")
    times: dict[str, list[float]] = {mode: [] for mode in modes}
    handler = functools.partial(_QuietHandler, directory=str(args.book))
    with (http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server, sync_playwright() as pw,
          tempfile.TemporaryDirectory() as shots):
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        for _ in range(args.rounds):  # interleaved, so a busy moment hits every mode
            for mode in modes:
                times[mode].append(round(walk(browser, url, pages, mode, Path(shots)), 2))
        browser.close()
        server.shutdown()
    write_result("book_pages", {"pages": len(pages), "seconds": times})


if __name__ == "__main__":
    main()
