"""What a reader sees on a page, asked of the browser: one check for the book and for `validate`'s report."""

from __future__ import annotations

#: the window every page is read in: a 1,280 px laptop screen
WINDOW = {"width": 1280, "height": 900}

# Every displayed table whose content is wider than the box a reader sees it in: the page's text column
# (the article, else the body) narrowed by any ancestor that clips or scrolls. A table that scrolls
# sideways is as bad as one cut off: nothing on the page says it scrolls. Also a cell whose text runs
# out of it. Tables not displayed (a closed <details>) are left out.
WIDE_TABLES_JS = r"""() => {
  const column = document.querySelector('article') || document.body;
  const columnRight = column.getBoundingClientRect().right;
  const wide = [];
  for (const table of document.querySelectorAll('table')) {
    if (!table.getClientRects().length) continue;
    let right = columnRight;
    for (let box = table.parentElement; box && box !== document.documentElement; box = box.parentElement) {
      if (getComputedStyle(box).overflowX !== 'visible') right = Math.min(right, box.getBoundingClientRect().right);
    }
    const r = table.getBoundingClientRect();
    const cells = Array.from(table.querySelectorAll('td, th')).filter(c => c.scrollWidth > c.clientWidth + 1);
    if (r.right > right + 1 || table.scrollWidth > table.clientWidth + 1 || cells.length) {
      const name = (table.querySelector('caption') || table).textContent.replace(/\s+/g, ' ').trim();
      wide.push(`${name.slice(0, 70)} (${Math.round(r.width)} px wide, ${Math.round(right - r.left)} px visible)`);
    }
  }
  return wide;
}"""

# Images whose alt text says nothing: missing, fewer than two words, a file name or a hash (Sphinx named
# output images by their hash, and wrote the file's name as the alt text).
MUTE_IMAGES_JS = r"""() => Array.from(document.querySelectorAll('article img, figure img')).filter(img => {
  const alt = (img.alt || '').trim();
  return (alt.match(/[a-z]{3,}/gi) || []).length < 2 || /^[0-9a-f]{16,}|\.(png|jpe?g|svg|gif)$/i.test(alt);
}).map(img => (img.getAttribute('src') || '').slice(0, 80))"""

# The files a page links beside its tables (`htmltable.SOURCE_CLASS`), as absolute URLs.
SOURCE_LINKS_JS = "() => Array.from(document.querySelectorAll('a.osteo-source')).map(a => a.href)"
