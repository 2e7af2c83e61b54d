"""Signed bundles: tamper evidence for a model bundle, with a secret key (``--sign-key FILE``).

A bundle's own checks (the SHA-256 of every arm file and the seal of ``bundle.json``) catch damage:
a truncated copy, a flipped byte. They are not keyed, so whoever edits a file can recompute them.
A site that needs to know that a bundle is the one it made signs it: ``signature.json`` lists the
SHA-256 of every other file of the folder and an HMAC-SHA256 of that list under the key. Verifying
with the same key first checks the HMAC (another key, or an edited signature, fails), then that the
folder holds exactly the files listed, unchanged (an edited, added or removed file fails, named).
Only a holder of the key can make a signature that verifies; the key never goes into the bundle.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from pathlib import Path

from .errors import UsageError

SIGNATURE_NAME = "signature.json"
ALGORITHM = "HMAC-SHA256"
#: shortest key accepted, in bytes (a random key of 32 bytes or more is what HMAC-SHA256 wants)
MIN_KEY_BYTES = 16


def read_key(path: str | os.PathLike | None) -> bytes | None:
    """The key in the file (surrounding whitespace dropped); None without a file; UsageError naming it."""
    if path is None:
        return None
    try:
        key = Path(path).read_bytes().strip()
    except OSError as exc:
        raise UsageError(f"--sign-key {path}: cannot be read ({exc.strerror or type(exc).__name__})") from None
    if len(key) < MIN_KEY_BYTES:
        raise UsageError(f"--sign-key {path}: a key of {len(key)} bytes; give at least {MIN_KEY_BYTES} random bytes "
                         "(e.g. openssl rand -hex 32 > FILE)")
    return key


def _files(folder: Path) -> dict[str, str]:
    """The SHA-256 of every file of the folder but the signature, by relative path."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.relative_to(folder).as_posix() != SIGNATURE_NAME}


def _mac(key: bytes, files: dict[str, str]) -> str:
    return hmac.new(key, json.dumps(files, sort_keys=True).encode(), hashlib.sha256).hexdigest()


def sign(folder: str | os.PathLike, key: bytes) -> Path:
    """Write ``signature.json`` into a bundle folder (an existing bundle too)."""
    from .fileio import atomic_write_text  # deferred: imports pandas and numpy

    folder = Path(folder)
    files = _files(folder)
    return atomic_write_text(folder / SIGNATURE_NAME, json.dumps(
        {"algorithm": ALGORITHM, "files": files, "hmac": _mac(key, files)}, indent=2))


def verify(folder: str | os.PathLike, key: bytes) -> None:
    """UsageError in one line unless the folder holds a signature made with ``key`` over exactly its files."""
    folder = Path(folder)
    path = folder / SIGNATURE_NAME
    if not path.is_file():
        raise UsageError(f"--model {folder}: not signed (no {SIGNATURE_NAME}), and --sign-key asks for a signed "
                         "bundle; sign it with `osteo train-final --sign-key` (or leave --sign-key out)")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        signed, mac = dict(record["files"]), str(record["hmac"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise UsageError(f"--model {path}: not a signature ({type(exc).__name__})") from None
    if record.get("algorithm") != ALGORITHM or not hmac.compare_digest(_mac(key, signed), mac):
        raise UsageError(f"--model {path}: does not verify with this --sign-key (another key signed the bundle, or "
                         "its signature was edited); the bundle is refused")
    here = _files(folder)
    changed = sorted(n for n in set(signed) | set(here) if signed.get(n) != here.get(n))
    if changed:
        name = changed[0]
        how = "added" if name not in signed else "missing" if name not in here else "changed"
        raise UsageError(f"--model {folder}: {name} {how} since the bundle was signed"
                         + (f" (and {len(changed) - 1} more)" if len(changed) > 1 else "") + "; the bundle is refused")
