"""Files written so that a crash never leaves a half-written one (write beside, then rename), and read
back only when their bytes are the ones recorded when they were written (SHA-256).

Every CSV table the project writes goes through `csv_bytes` (`atomic_to_csv`), and every one it reads
back through `read_csv`. A spreadsheet runs a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or
a carriage return as a formula (CSV injection: a patient ID ``=HYPERLINK(...)`` from a cohort's table
would be a live link in ``predictions.csv``), so text cells that start so are written with a single
quote before them (OWASP's rule), as are text cells already starting with quotes before such a
character, which keeps the rule reversible: `read_csv` takes exactly one quote off what `csv_bytes`
put on, so every table reads back as it was written. Numbers are never quoted (-0.5 is a number, not
a formula); a patient ID "-12" is text and is.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .progress import note

#: a text cell a spreadsheet would run as a formula, after any quotes already there
_FORMULA = re.compile(r"'*[=+\-@\t\r]")


class ChecksumError(ValueError):
    """A file whose bytes are not the ones recorded when it was written (or that is gone); names the file."""

    def __init__(self, path: Path, why: str = "content changed since it was written (SHA-256 mismatch)") -> None:
        super().__init__(f"{path}: {why}")
        self.path = Path(path)


def _temporary(path: Path) -> Path:
    """A name beside ``path`` that no other writer uses: the process and the thread (two threads may write the
    same cache entry at once, e.g. the biomarkers of two identical images)."""
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _replace(path: Path, write) -> Path:
    """Write beside ``path`` with ``write(tmp)``, then rename over it; the partial file goes however the
    write ends (an error, Ctrl-C), so nothing half-written stays behind."""
    path = Path(path)
    tmp = _temporary(path)
    try:
        write(tmp)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: Path, text: str) -> Path:
    return _replace(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return _replace(path, lambda tmp: tmp.write_bytes(data))


def neutralised(value: Any) -> Any:
    """A text cell that a spreadsheet would run as a formula, with a quote before it; anything else as it is."""
    return "'" + value if isinstance(value, str) and _FORMULA.match(value) else value


def restored(value: Any) -> Any:
    """`neutralised` undone: the quote it put before a text cell taken off again."""
    return value[1:] if isinstance(value, str) and value.startswith("'") and _FORMULA.match(value, 1) else value


def _text_columns(table: pd.DataFrame) -> list[int]:
    """The positions of the text and category columns (numbers and booleans are never formulas)."""
    return [i for i, dtype in enumerate(table.dtypes) if pd.api.types.is_object_dtype(dtype)
            or pd.api.types.is_string_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype)]


def _text_cells(table: pd.DataFrame, change: Callable[[Any], Any], index: bool = False) -> pd.DataFrame:
    """``table`` with ``change`` applied to its column names (and ``index`` labels) and to the cells of its
    text columns."""
    table = table.rename(columns=change, index=change if index else None)
    text = _text_columns(table)
    if text:
        table = table.copy()
        for i in text:
            table.isetitem(i, table.iloc[:, i].astype(object).map(change))
    return table


def csv_bytes(table: pd.DataFrame, index: bool = False) -> bytes:
    """The table as CSV, every text cell a spreadsheet would run as a formula neutralised (module docstring).

    Lines end in CRLF when a text cell holds a carriage return: the csv module quotes a cell holding a
    character of the line ending only, and an unquoted one would start a new row in a spreadsheet, whose
    first cell could be a formula."""
    table = _text_cells(table, neutralised, index)
    text = [table.columns, *([table.index] if index else []), *(table.iloc[:, i] for i in _text_columns(table))]
    carriage = any(isinstance(v, str) and "\r" in v for values in text for v in values)
    return table.to_csv(index=index, lineterminator="\r\n" if carriage else "\n").encode("utf-8")


def atomic_to_csv(table: pd.DataFrame, path: Path, index: bool = False) -> Path:
    """Write the table as `csv_bytes`, atomically."""
    return atomic_write_bytes(path, csv_bytes(table, index))


def read_csv(source: Any, **options: Any) -> pd.DataFrame:
    """A CSV table written by `csv_bytes`, as it was before it was neutralised (``options``: pandas'
    read_csv). Only for the project's own tables: a cohort's or a user's table is read as it is."""
    return _text_cells(pd.read_csv(source, **options), restored)


def read_verified(path: Path, sha256: str | None) -> bytes:
    """The file's bytes, read once and checked against the recorded SHA-256; ChecksumError otherwise
    (None recorded: the file was never checksummed, so it is not trusted either)."""
    path = Path(path)
    if sha256 is None:
        raise ChecksumError(path, "no checksum recorded for it")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ChecksumError(path, f"cannot be read ({exc.strerror or type(exc).__name__})") from exc
    if sha256_bytes(data) != sha256:
        raise ChecksumError(path)
    return data


def read_index(path: Path) -> dict[str, str]:
    """A cache index (lines ``<64 hex digits> TAB <key>``, appended to by every writer): key -> digest, the
    last line of a key winning."""
    out: dict[str, str] = {}
    if path.is_file():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            digest, _, name = line.partition("\t")
            if len(digest) == 64 and name:
                out[name] = digest
    return out


def append_index(path: Path, key: str, digest: str) -> None:
    """Record one entry of a cache index: one short write, so appends of two processes never interleave."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(f"{digest}\t{key}\n")


class ArrayStore:
    """Arrays on disk (``<name>.npy``), each read back only when its bytes are the ones recorded when it was
    written: the decoded-image and feature caches.

    Every write is recorded in the folder's ``index.tsv`` with the SHA-256 of the entry's bytes. The index
    is only appended to (one short line per write, so the appends of runs sharing a cache never
    interleave); the last line of an entry wins. An entry that changed, or was never recorded, reads as
    missing (a changed one with a one-line note), so the caller computes it again.
    """

    INDEX = "index.tsv"

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.index = read_index(self.root / self.INDEX)

    def path_for(self, key: str) -> Path:
        return self.root / f"{key}.npy"

    def get(self, key: str, shape: tuple[int, ...], dtype: str) -> np.ndarray | None:
        """The verified entry, memory-mapped (read-only: memory does not grow with the cohort), or None."""
        path = self.path_for(key)
        if not path.is_file() or path.name not in self.index:
            return None
        with open(path, "rb") as fh:
            digest = hashlib.file_digest(fh, "sha256").hexdigest()
        if digest != self.index[path.name]:
            note(f"{self.root.parent.name} cache: {ChecksumError(path)}; computing it again")
            return None
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError):
            return None
        return array if array.shape == tuple(shape) and array.dtype == np.dtype(dtype) else None

    def put(self, key: str, array: np.ndarray) -> np.ndarray:
        """Write (atomically) and record an entry; returns the array."""
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(array))
        atomic_write_bytes(self.path_for(key), buffer.getvalue())
        digest = sha256_bytes(buffer.getvalue())
        append_index(self.root / self.INDEX, self.path_for(key).name, digest)
        self.index[self.path_for(key).name] = digest
        return array


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file read in chunks: identifies an image whatever its name (registry, caches, duplicates)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()
