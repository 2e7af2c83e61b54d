"""Files written so that a crash never leaves a half-written one (write beside, then rename), and read
back only when their bytes are the ones recorded when they were written (SHA-256)."""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path

import numpy as np
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
        self.index: dict[str, str] = {}
        path = self.root / self.INDEX
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                digest, _, name = line.partition("\t")
                if len(digest) == 64 and name:
                    self.index[name] = digest

    def path_for(self, key: str) -> Path:
        return self.root / f"{key}.npy"

    def get(self, key: str, shape: tuple[int, ...], dtype: str) -> np.ndarray | None:
        """The verified entry, memory-mapped (read-only: memory does not grow with the cohort), or None."""
        from .progress import note

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
        with open(self.root / self.INDEX, "a", encoding="utf-8") as fh:
            fh.write(f"{digest}\t{self.path_for(key).name}\n")
        self.index[self.path_for(key).name] = digest
        return array
