"""One way to put a table on a page (the book's notebooks and `validate`'s report): it fits the text column.

A reader cannot read a table cut off at the right, nor one that scrolls sideways without saying so. The
page's table therefore holds what a reader needs in the width of the column: an estimate and its CI share
one cell and wrap between the two, names wrap at their underscores and slashes, long identifiers (hashed IDs)
are shortened, and the CSV file that holds all of it is linked beside it. The caption is plain text.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence

import pandas as pd

#: identifiers longer than this are shown as their first `SHORT_ID` characters and an ellipsis
LONG_ID, SHORT_ID = 16, 12
#: the class of every table made here, and of the paragraph linking its CSV file (the book's CSS and the
#: pipeline, which copies each linked file into the book, find them by these)
TABLE_CLASS, SOURCE_CLASS = "osteo-table", "osteo-source"


def short_ids(table: pd.DataFrame, columns: Sequence[str] = ("patient_id",)) -> pd.DataFrame:
    """Long identifiers (hashed IDs) shortened to their first characters, in their own columns and wherever
    a ``problem`` or ``reason`` text repeats them; the CSV files keep them whole."""
    out = table.copy()
    long = {v: f"{v[:SHORT_ID]}…" for c in columns if c in out for v in out[c].astype(str) if len(v) > LONG_ID}
    if not long:
        return out
    for c in columns:
        if c in out:
            out[c] = out[c].astype(str).map(lambda v: long.get(v, v))
    for c in ("problem", "reason"):
        if c in out:
            out[c] = [_replace_all(str(text), long) for text in out[c]]
    return out


def _replace_all(text: str, mapping: dict[str, str]) -> str:
    for old, new in mapping.items():
        text = text.replace(old, new)
    return text


#: a cell of one word longer than this (a checksum, a hashed ID) is shortened like a long identifier
LONG_WORD = 40


def _breakable(value: object) -> object:
    """``0.951\u00a0[0.915,\u00a00.976]`` may wrap between the estimate and its interval, never inside it; a
    checksum is shortened (the CSV file keeps it whole)."""
    if not isinstance(value, str):
        return value
    if len(value) > LONG_WORD and not any(c.isspace() for c in value):
        return f"{value[:SHORT_ID]}…"
    return value.replace("\u00a0[", " [")


def _float(value: float) -> str:
    """Floats to three decimals, or three significant digits when smaller (a p-value of 0.00012)."""
    return f"{value:.3g}" if value != 0 and abs(value) < 0.01 else f"{value:.3f}"


def table_html(table: pd.DataFrame, caption: str | None = None, source: str | None = None,
               what: str = "every row and column", index: bool = False) -> str:
    """The table as HTML that wraps rather than scrolls, its plain-text caption, and under it the link
    ``source`` (a relative URL of the CSV file holding all of it), introduced by ``what``."""
    shown = table.map(_breakable)
    shown.columns = [_breakable(c) for c in shown.columns]
    body = shown.to_html(index=index, border=0, classes=[TABLE_CLASS], na_rep="", escape=True,
                         float_format=_float)
    # names such as calibration_slope or family_history_osteoporosis may wrap at their underscores and slashes
    body = re.sub(r"(<t[hd][^>]*>)(.*?)(</t[hd]>)",
                  lambda m: m[1] + m[2].replace("_", "_<wbr>").replace("/", "/<wbr>") + m[3], body, flags=re.S)
    if caption:
        body = body.replace(f'class="dataframe {TABLE_CLASS}">',
                            f'class="dataframe {TABLE_CLASS}"><caption>{html.escape(caption)}</caption>', 1)
    if source:
        name = source.rsplit("/", 1)[-1]
        body += (f'<p class="{SOURCE_CLASS}">{html.escape(what)}: <a class="{SOURCE_CLASS}" '
                 f'href="{html.escape(source)}">{html.escape(name)}</a></p>')
    return body
