"""Files written so that a crash never leaves a half-written one (write beside, then rename), and read
back only when their bytes are the ones recorded when they were written (SHA-256)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd


class ChecksumError(ValueError):
    """A file whose bytes are not the ones recorded when it was written (or that is gone); names the file."""

    def __init__(self, path: Path, why: str = "content changed since it was written (SHA-256 mismatch)") -> None:
        super().__init__(f"{path}: {why}")
        self.path = Path(path)


def _temporary(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


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


def atomic_to_csv(table: pd.DataFrame, path: Path, index: bool = False) -> Path:
    return _replace(path, lambda tmp: table.to_csv(tmp, index=index))


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
