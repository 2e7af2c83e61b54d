"""Errors about raw data that cannot be used; every message names the file (and the row and column)."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from ..errors import DatasetLayoutError, DataValidationError, ImageReadError, TableColumnError  # noqa: F401

#: the separators a CSV read with commas is recognised by when it came out as one column
OTHER_SEPARATORS = (";", "\t", "|")


def some_columns(columns: Sequence[object], near: Sequence[str] = (), shown: int = 8) -> str:
    """A table's columns for a one-line message: those whose names are close to ``near`` (the ones looked
    for) first, then the others in order, at most ``shown`` and how many more (a wide table has hundreds)."""
    names = [str(c) for c in columns]
    close = [m for n in near for m in difflib.get_close_matches(str(n), names, n=2, cutoff=0.6)]
    ordered = list(dict.fromkeys(close + names))
    more = len(ordered) - shown
    return ", ".join(ordered[:shown]) + (f" and {more} more" if more > 0 else "")


def separator_note(columns: Sequence[object]) -> str:
    """Why a CSV read with commas came out as one column: "its separator looks like ';', not a comma", or ""."""
    if len(columns) != 1:
        return ""
    header = str(columns[0])
    found = max(OTHER_SEPARATORS, key=header.count)
    return f"its separator looks like {found!r}, not a comma" if header.count(found) else ""
