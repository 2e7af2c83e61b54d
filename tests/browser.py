"""Headless-browser check of a built Jupyter Book (1.x) HTML site.

Public API
----------
``check_site(html_dir, toc_pages, screenshot_dir) -> list[str]``
    Serve ``html_dir`` on ``127.0.0.1`` (ephemeral port, background thread),
    open every page with Chromium (Playwright sync API) and return a list of
    human-readable problems (empty list = site OK).  A full-page screenshot of
    every visited page is written to ``screenshot_dir``.

``toc_pages_from_toc(toc_yml) -> list[str]``
    The html paths (``file`` + ``".html"``) of a jb-book / jb-article
    ``_toc.yml``, in TOC order.

``CHROMIUM`` / ``CHROMIUM_ARGS``
    Browser binary (Debian's ``/usr/bin/chromium``; override with the
    ``OSTEO_CHROMIUM`` environment variable) and its launch arguments.
    Playwright cannot download its own browsers on the CI network, so we
    always launch the system Chromium; install it with
    ``scripts/ensure_chromium.sh``.

What counts as a problem (per page)
-----------------------------------
* the page itself not answering HTTP 200;
* ``pageerror`` events (uncaught JavaScript exceptions) and page crashes;
* ``console`` messages of type ``error`` (filtered, see below);
* same-origin sub-resources (CSS, JS, fonts, images, ...) answering HTTP
  status >= 400 or failing at the network level;
* ``<img>`` elements that did not finish loading or have ``naturalWidth == 0``
  (lazy images are switched to eager loading first, so images below the fold
  are checked too);
* internal links (``a[href]`` resolving to the local server) whose target does
  not answer 200 on a ``HEAD`` request, and -- when the link carries a
  ``#fragment`` and points to another HTML page -- fragments that are not an
  ``id``/``name`` on the target page.  Fragment-only links (``href="#..."``,
  e.g. Sphinx header links and the "on this page" navigation) and
  ``mailto:``/``tel:``/``javascript:``/external ``http(s)`` links are ignored.

Offline / external resources
----------------------------
The CI machines have no internet.  The book theme may still reference external
resources (e.g. thebe from unpkg.com, MathJax/require.js from CDNs when a page
uses math or widgets, Google fonts from custom CSS).  To keep the check
deterministic and fast (no waiting for DNS/connect time-outs), Chromium is
given a proxy that refuses every connection (``127.0.0.1:9``) with only the
local server bypassing it, so every external request fails at once with
``net::ERR_PROXY_CONNECTION_FAILED``.  (This is much cheaper than a Playwright
``route`` interceptor, which costs ~0.5 s per page.)  Failures concerning those
external resources are deliberately not reported:

* network failures/HTTP errors are only reported for same-origin URLs;
* console ``"Failed to load resource: ..."`` messages are never reported as
  such -- the same-origin ones are already reported precisely (with their URL)
  by the network tracking above, the cross-origin ones are expected offline;
* console errors whose source location is a cross-origin script, or whose text
  mentions a cross-origin ``http(s)`` URL (CORS/CSP/font-loading complaints
  about CDN resources), are ignored;
* ``<img>`` elements whose source is cross-origin are not checked.

Same-origin console errors and all uncaught JS exceptions still count.  (With
sphinx-book-theme 1.3 / Jupyter Book 1.0.4 a plain markdown book emits no
console errors at all offline; thebe is only fetched when a launch button is
clicked.)
"""

from __future__ import annotations

import functools
import html.parser
import logging
import http.server
import os
import re
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "KNOWN_BENIGN_ERRORS",
    "check_site",
    "toc_pages_from_toc",
]

CHROMIUM = os.environ.get("OSTEO_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ENSURE_HINT = "run scripts/ensure_chromium.sh (apt-get install -y chromium)"

#: Console errors / JS exceptions emitted by the Jupyter Book 1.0.4 stack
#: itself on *every* site, harmless, and not fixable from the book sources.
#: Regexes, matched (``re.search``) against the message text.  Pass your own
#: list to ``check_site(..., ignore=...)`` to tighten or extend it.
KNOWN_BENIGN_ERRORS: tuple[str, ...] = (
    # sphinx-thebe 0.3.1: its config snippet ``const THEBE_JS_URL = ...;
    # const thebe_selector = ...`` ends up twice in every page's <head> of a
    # jupyter-book build (its ``env-before-read-docs`` hook adds it as an
    # inline-body script, which Sphinx does not de-duplicate; the
    # togglebutton snippet is doubled the same way but uses ``var``), so the
    # second inline <script> throws a SyntaxError.  The first copy already
    # defined the constants, so thebe still works.
    r"^Identifier 'THEBE_JS_URL' has already been declared$",
    # pydata-sphinx-theme 0.17.1: with an empty localStorage (first visit, and
    # every fresh Playwright context) the inline head script sets
    # ``data-mode=""`` and the theme JS console.error()s before falling back to
    # "auto".  Seen once per browser context on the first page visited.
    r"^Got invalid theme mode: \. Resetting to auto\.$",
)

_VIEWPORT = {"width": 1280, "height": 900}
# Nothing listens on the TCP "discard" port of the loopback interface: every
# request routed through this proxy is refused immediately.
_DEAD_PROXY = "http://127.0.0.1:9"
_NAV_TIMEOUT_MS = 30_000
_SOURCE_SUFFIXES = {".md", ".ipynb", ".rst", ".myst", ".txt"}
_IGNORED_SCHEMES = ("mailto:", "tel:", "javascript:", "data:", "blob:", "about:")
_log = logging.getLogger(__name__)
_URL_RE = re.compile(r"https?://[^\s'\"<>()]+")


# --------------------------------------------------------------------------
# _toc.yml
# --------------------------------------------------------------------------
def _strip_source_suffix(name: str) -> str:
    p = PurePosixPath(name)
    return str(p.with_suffix("")) if p.suffix in _SOURCE_SUFFIXES else name


def toc_pages_from_toc(toc_yml: Path) -> list[str]:
    """Html paths (relative to the html root) of every page in a ``_toc.yml``.

    Supports the jb-book format (``root`` plus ``chapters`` or ``parts`` with
    ``chapters``, nested ``sections``) and jb-article (``root`` plus
    ``sections``), as well as the generic ``subtrees``/``entries`` keys.
    ``file`` entries become ``file + ".html"`` (a source suffix such as
    ``.md``/``.ipynb`` is stripped first); ``glob`` entries are expanded
    against the directory holding ``_toc.yml``; ``url`` entries are skipped.
    Order follows the TOC, duplicates are dropped.
    """
    import yaml  # pyyaml ships with jupyter-book

    toc_yml = Path(toc_yml)
    data = yaml.safe_load(toc_yml.read_text(encoding="utf-8")) or {}
    src_dir = toc_yml.parent
    pages: list[str] = []

    def add(name: str) -> None:
        html = _strip_source_suffix(str(name).strip().lstrip("/")) + ".html"
        if html not in pages:
            pages.append(html)

    def walk(node) -> None:
        if isinstance(node, list):
            for item in node:
                walk(item)
            return
        if not isinstance(node, dict):
            return
        if "file" in node:
            add(node["file"])
        if "glob" in node:
            pattern = str(node["glob"])
            for f in sorted(src_dir.glob(pattern + ".*")) + sorted(src_dir.glob(pattern)):
                if f.is_file() and f.suffix in _SOURCE_SUFFIXES:
                    add(f.relative_to(src_dir).as_posix())
        for key in ("parts", "chapters", "sections", "subtrees", "entries"):
            if key in node:
                walk(node[key])

    if "root" in data:
        add(data["root"])
    walk({k: v for k, v in data.items() if k != "root"})
    return pages


# --------------------------------------------------------------------------
# local HTTP server
# --------------------------------------------------------------------------
class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static file handler: no request logging, no directory listings."""

    def log_message(self, format, *args):  # noqa: A002 - stdlib signature
        pass

    def list_directory(self, path):
        # A static host would not list directories: a link to a directory
        # without index.html is broken.
        self.send_error(404, "No index.html in directory")
        return None


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Chromium aborts connections freely (preload, navigation); ignore.
        pass


class _LocalSite:
    def __init__(self, root: Path):
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.httpd = _Server(("127.0.0.1", 0), handler)
        host, port = self.httpd.server_address[:2]
        self.origin = f"http://{host}:{port}"
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, name="check_site-http", daemon=True
        )

    def __enter__(self) -> "_LocalSite":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
class _IdCollector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if value and (key == "id" or (key == "name" and tag == "a")):
                self.ids.add(value)


class _LinkChecker:
    """HEAD/GET requests against the local server, cached across pages."""

    def __init__(self, origin: str):
        self.origin = origin
        self._status: dict[str, str | int] = {}
        self._ids: dict[str, set[str] | None] = {}
        self._opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def status(self, url: str) -> int | str:
        if url not in self._status:
            req = urllib.request.Request(url, method="HEAD")
            try:
                with self._opener.open(req, timeout=10) as resp:
                    self._status[url] = resp.status
            except urllib.error.HTTPError as exc:
                self._status[url] = exc.code
            except (urllib.error.URLError, OSError) as exc:
                self._status[url] = f"error {exc}"
        return self._status[url]

    def ids(self, url: str) -> set[str] | None:
        """ids/anchor names of an HTML page (None if not HTML/unreadable)."""
        if url not in self._ids:
            try:
                with self._opener.open(url, timeout=10) as resp:
                    ctype = resp.headers.get("Content-Type", "")
                    if "html" not in ctype:
                        self._ids[url] = None
                    else:
                        parser = _IdCollector()
                        parser.feed(resp.read().decode("utf-8", "replace"))
                        self._ids[url] = parser.ids
            except (urllib.error.URLError, OSError):
                self._ids[url] = None
        return self._ids[url]


def _same_origin(url: str, origin: str) -> bool:
    return url == origin or url.startswith(origin + "/")


def _rel(url: str, origin: str) -> str:
    """Short display form of a same-origin URL ("/_static/x.css")."""
    return url[len(origin):] or "/" if _same_origin(url, origin) else url


def _page_path(url: str) -> str:
    path = urllib.parse.urlsplit(url).path
    path = urllib.parse.unquote(path).lstrip("/")
    if path == "" or path.endswith("/"):
        path += "index.html"
    return path


def _screenshot_name(page: str) -> str:
    name = page[:-5] if page.endswith(".html") else page
    return re.sub(r"[^A-Za-z0-9._-]+", "__", name).strip("_") or "index"


def _mentions_external(text: str, origin: str) -> bool:
    urls = _URL_RE.findall(text)
    external = [u for u in urls if not _same_origin(u, origin) and u.rstrip("/") != origin]
    return bool(external)


_JS_IMAGES = """
async () => {
  const imgs = Array.from(document.images);
  for (const img of imgs) { if (img.loading === 'lazy') img.loading = 'eager'; }
  await Promise.all(imgs.map(img => img.complete ? null : new Promise(resolve => {
    img.addEventListener('load', resolve, {once: true});
    img.addEventListener('error', resolve, {once: true});
    setTimeout(resolve, 10000);
  })));
  return imgs.map(img => ({
    src: img.currentSrc || img.src,
    raw: img.getAttribute('src') || img.getAttribute('srcset') || '',
    complete: img.complete,
    width: img.naturalWidth,
  }));
}
"""

_JS_LINKS = """
() => Array.from(document.querySelectorAll('a[href]')).map(a => ({
  raw: a.getAttribute('href'),
  href: a.href,
  text: (a.textContent || '').trim().slice(0, 60),
}))
"""

_JS_SIDEBAR = """
() => {
  const selectors = [
    'nav.bd-docs-nav a[href]',
    '.bd-sidebar-primary a.reference.internal[href]',
    'nav a.reference.internal[href]',
  ];
  for (const sel of selectors) {
    const links = Array.from(document.querySelectorAll(sel)).map(a => a.href);
    if (links.length) return links;
  }
  return [];
}
"""


# --------------------------------------------------------------------------
# main entry point
# --------------------------------------------------------------------------
def check_site(
    html_dir: Path,
    toc_pages: list[str] | None,
    screenshot_dir: Path,
    *,
    ignore: Iterable[str] = KNOWN_BENIGN_ERRORS,
) -> list[str]:
    """Check a built Jupyter Book site in headless Chromium; see module doc.

    ``html_dir``: the built site (``_build/html``).
    ``toc_pages``: html paths relative to ``html_dir`` to visit (e.g. from
    :func:`toc_pages_from_toc`); ``None`` = ``index.html`` plus every page
    linked from the index page's sidebar navigation (the book's TOC).
    ``screenshot_dir``: receives ``<page-name>.png`` (a full-page screenshot
    per page; ``sub/page.html`` -> ``sub__page.png``).

    ``ignore``: regexes for console errors / JS exceptions that are known to
    be harmless (default :data:`KNOWN_BENIGN_ERRORS`); ignored messages are
    logged at INFO level on this module's logger.

    Returns human-readable problems, each naming the page; ``[]`` means OK.
    Raises ``FileNotFoundError`` if Chromium or ``html_dir`` is missing.
    """
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    html_dir = Path(html_dir)
    if not html_dir.is_dir():
        raise FileNotFoundError(f"{html_dir} is not a directory (book not built?)")
    screenshot_dir = Path(screenshot_dir)
    if not Path(CHROMIUM).exists():
        raise FileNotFoundError(f"Chromium not found at {CHROMIUM}: {ENSURE_HINT}")
    if not (html_dir / "index.html").is_file() and toc_pages is None:
        raise FileNotFoundError(f"{html_dir}/index.html not found (book not built?)")
    screenshot_dir.mkdir(parents=True, exist_ok=True)

    ignore_res = [re.compile(rx) for rx in ignore]
    problems: list[str] = []
    with _LocalSite(html_dir) as site, sync_playwright() as pw:
        origin = site.origin
        links = _LinkChecker(origin)
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            # Send everything except the local server to a dead proxy, so
            # external requests fail at once instead of hanging offline.
            proxy={"server": _DEAD_PROXY, "bypass": "127.0.0.1"},
        )
        try:
            context = browser.new_context(viewport=_VIEWPORT, service_workers="block")
            context.set_default_timeout(_NAV_TIMEOUT_MS)

            if toc_pages is None:
                pages = _discover_pages(context, origin)
            else:
                pages = [p.lstrip("/") for p in toc_pages]

            for name in pages:
                try:
                    _check_page(
                        context, origin, name, links, screenshot_dir, problems, ignore_res
                    )
                except PlaywrightError as exc:
                    problems.append(f"{name}: browser error: {exc}")
            context.close()
        finally:
            browser.close()
    return problems


def _discover_pages(context, origin: str) -> list[str]:
    """index.html plus the same-origin pages linked from its sidebar TOC."""
    pages = ["index.html"]
    page = context.new_page()
    try:
        resp = page.goto(f"{origin}/index.html", wait_until="load")
        if resp is None or resp.status != 200:
            return pages  # reported again when index.html is checked
        for href in page.evaluate(_JS_SIDEBAR):
            url = href.split("#", 1)[0]
            if not _same_origin(url, origin):
                continue
            path = _page_path(url)
            if path not in pages:
                pages.append(path)
    finally:
        page.close()
    return pages


def _check_page(
    context, origin, name, links: _LinkChecker, screenshot_dir, problems, ignore_res
):
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    page_problems: list[str] = []

    def benign(kind: str, text: str) -> bool:
        if any(rx.search(text) for rx in ignore_res):
            _log.info("%s: ignored known-benign %s: %s", name, kind, text)
            return True
        return False

    failed_resources: dict[str, str] = {}
    page = context.new_page()

    def on_console(msg):
        if msg.type != "error":
            return
        text = msg.text
        loc = (msg.location or {}).get("url") or ""
        if text.startswith("Failed to load resource"):
            # network tracking reports the same-origin failures, with URL
            _log.debug("%s: skipped console error (%s): %s", name, loc, text)
            return
        if (loc and not _same_origin(loc, origin)) or _mentions_external(text, origin):
            # raised by an external script / about an external resource
            _log.debug("%s: skipped external console error (%s): %s", name, loc, text)
            return
        if benign("console error", text):
            return
        where = f" ({_rel(loc, origin)})" if loc else ""
        page_problems.append(f"{name}: console error{where}: {text}")

    def on_pageerror(err):
        if benign("JavaScript exception", err.message or str(err)):
            return
        page_problems.append(f"{name}: JavaScript exception: {err}")

    def on_response(resp):
        url = resp.url
        if resp.status >= 400 and _same_origin(url, origin):
            failed_resources.setdefault(url, f"HTTP {resp.status}")

    def on_requestfailed(req):
        url = req.url
        if _same_origin(url, origin) and req.resource_type != "document":
            failed_resources.setdefault(url, req.failure or "request failed")

    page.on("console", on_console)
    page.on("pageerror", on_pageerror)
    page.on("crash", lambda _p: page_problems.append(f"{name}: page crashed"))
    page.on("response", on_response)
    page.on("requestfailed", on_requestfailed)

    page_url = f"{origin}/{urllib.parse.quote(name)}"
    try:
        resp = page.goto(page_url, wait_until="load")
        status = resp.status if resp is not None else None
        if status != 200:
            problems.append(f"{name}: page answered HTTP {status}")
            return
        try:  # let deferred scripts/fonts settle; not fatal if it never idles
            page.wait_for_load_state("networkidle", timeout=3_000)
        except PlaywrightTimeoutError:
            pass

        # images
        broken_images: set[str] = set()
        for img in page.evaluate(_JS_IMAGES):
            src = img["src"]
            if not src or src.startswith("data:") or not _same_origin(src, origin):
                continue
            if not img["complete"] or img["width"] == 0:
                if img["width"] == 0 and img["complete"] and links.status(src) == 200 \
                        and src.split("?")[0].lower().endswith(".svg"):
                    continue  # SVG without intrinsic size: loaded fine
                broken_images.add(src.split("#", 1)[0])
                why = failed_resources.get(src.split("#", 1)[0]) or (
                    "not loaded" if not img["complete"] else "naturalWidth 0"
                )
                page_problems.append(
                    f"{name}: broken image {img['raw']!r} ({_rel(src, origin)}: {why})"
                )

        # other same-origin resources that failed
        for url, why in failed_resources.items():
            if url not in broken_images and url != page_url:
                page_problems.append(f"{name}: resource {_rel(url, origin)} failed: {why}")

        # internal links
        seen: set[str] = set()
        for link in page.evaluate(_JS_LINKS):
            raw, href = (link["raw"] or "").strip(), link["href"]
            if not raw or raw.startswith("#") or raw.lower().startswith(_IGNORED_SCHEMES):
                continue
            if not _same_origin(href, origin) or href in seen:
                continue
            seen.add(href)
            target, _, fragment = href.partition("#")
            st = links.status(target)
            if st != 200:
                page_problems.append(
                    f"{name}: broken link {raw!r} (text {link['text']!r}) -> "
                    f"{_rel(target, origin)} answered {st}"
                )
                continue
            if fragment:
                ids = links.ids(target)
                frag = urllib.parse.unquote(fragment)
                if ids is not None and frag not in ids:
                    page_problems.append(
                        f"{name}: broken link {raw!r} (text {link['text']!r}): "
                        f"no id {frag!r} on {_rel(target, origin)}"
                    )

        shot = screenshot_dir / f"{_screenshot_name(name)}.png"
        page.screenshot(path=str(shot), full_page=True)
    finally:
        page.close()
        problems.extend(page_problems)
