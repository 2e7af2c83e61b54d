"""Self-test of tests/browser.py: build two tiny Jupyter Books and check them
in headless Chromium.  Needs /usr/bin/chromium (scripts/ensure_chromium.sh);
fails -- never skips -- when it is missing."""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from .browser import CHROMIUM, check_site, toc_pages_from_toc

JUPYTER_BOOK = Path(sys.executable).parent / "jupyter-book"

CONFIG = """\
title: Browser check self-test
author: CI
execute:
  execute_notebooks: "off"
only_build_toc_files: true
"""

TOC = """\
format: jb-book
root: index
chapters:
- file: page
"""

GOOD_INDEX = """\
# Home

Welcome. Go to the [next page](page.md).

![a red square](red.png)

<a href="page.html#section-a">Section A on the next page</a>
"""

GOOD_PAGE = """\
# Page

Some text.

## Section A

More text, and a [link home](index.md).

[external](https://example.org/) and <a href="mailto:ci@example.org">mail</a>
"""

BAD_PAGE = """\
# Page

<img src="missing.png" alt="this image does not exist">

<a href="nonexistent.html">a broken internal link</a>

<a href="index.html#no-such-anchor">a link to a missing anchor</a>

## Section A

text
"""


def _png(width: int = 16, height: int = 16) -> bytes:
    """A solid red RGB PNG (no Pillow needed)."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(tag + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)

    raw = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )


def _require_chromium() -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium not found at {CHROMIUM}: run scripts/ensure_chromium.sh "
            "(installs Debian's chromium via apt-get)",
            pytrace=False,
        )


def _write_book(root: Path, index_md: str, page_md: str) -> None:
    root.mkdir(parents=True)
    (root / "_config.yml").write_text(CONFIG)
    (root / "_toc.yml").write_text(TOC)
    (root / "index.md").write_text(index_md)
    (root / "page.md").write_text(page_md)
    (root / "red.png").write_bytes(_png())


def _build_books(base: Path) -> dict[str, Path]:
    """Build the clean and the broken book concurrently (saves ~10 s)."""
    assert JUPYTER_BOOK.exists(), f"{JUPYTER_BOOK} missing (jupyter-book not in this venv)"
    sources = {"good": (GOOD_INDEX, GOOD_PAGE), "bad": (GOOD_INDEX, BAD_PAGE)}
    procs = {}
    for name, (index_md, page_md) in sources.items():
        _write_book(base / name, index_md, page_md)
        procs[name] = subprocess.Popen(
            [str(JUPYTER_BOOK), "build", str(base / name)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    out = {}
    for name, proc in procs.items():
        try:
            log, _ = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            log, _ = proc.communicate()
        html = base / name / "_build" / "html"
        assert proc.returncode == 0 and (html / "index.html").is_file(), (
            f"jupyter-book build of the {name} book failed (rc={proc.returncode}):\n"
            f"{log[-6000:]}"
        )
        out[name] = html
    return out


@pytest.fixture(scope="module")
def books(tmp_path_factory):
    """``books(name)`` -> html dir of the "good"/"bad" book, built on first use
    (lazily, so that a missing Chromium fails the test before any build)."""
    cache: dict[str, Path] = {}

    def get(name: str) -> Path:
        if not cache:
            cache.update(_build_books(tmp_path_factory.mktemp("books")))
        return cache[name]

    return get


def test_clean_book_has_no_problems(books, tmp_path):
    _require_chromium()
    html = books("good")
    pages = toc_pages_from_toc(html.parent.parent / "_toc.yml")
    assert pages == ["index.html", "page.html"]

    shots = tmp_path / "shots"
    problems = check_site(html, pages, shots)
    assert problems == [], "\n".join(problems)
    for name in ("index", "page"):
        png = shots / f"{name}.png"
        assert png.is_file() and png.stat().st_size > 1000, png
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_broken_image_and_link_are_reported(books, tmp_path):
    _require_chromium()
    shots = tmp_path / "shots"
    # toc_pages=None: page.html must be discovered from the sidebar TOC
    problems = check_site(books("bad"), None, shots)
    report = "\n".join(problems)

    assert any(
        p.startswith("page.html:") and "broken image" in p and "missing.png" in p
        for p in problems
    ), report
    assert any(
        p.startswith("page.html:") and "broken link" in p and "nonexistent.html" in p
        for p in problems
    ), report
    assert any(
        p.startswith("page.html:") and "no-such-anchor" in p for p in problems
    ), report
    # index.html is fine, and nothing else is flagged on page.html
    assert not [p for p in problems if p.startswith("index.html:")], report
    assert len(problems) == 3, report
    assert (shots / "index.png").is_file() and (shots / "page.png").is_file()
