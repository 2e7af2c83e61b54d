"""Writing files so that a crash never leaves a half-written one: write beside, then rename."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def atomic_write_text(path: Path, text: str) -> Path:
    path = Path(path)
    tmp = _temporary(path)
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    path = Path(path)
    tmp = _temporary(path)
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def atomic_to_csv(table: pd.DataFrame, path: Path, index: bool = False) -> Path:
    path = Path(path)
    tmp = _temporary(path)
    table.to_csv(tmp, index=index)
    tmp.replace(path)
    return path
