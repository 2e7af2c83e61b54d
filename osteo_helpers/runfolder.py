"""Run-folder safety: check an output folder before any work, and let one process write it at a time.

Two runs writing the same folder would interleave tables, models and provenance into a record
that neither run made. `exclusive` holds an advisory lock (flock) on a file in the folder; the
kernel drops it when its process dies, however it dies, so a killed run never blocks the next.
The file says who holds it (pid, host, start, command) for the refusal message.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import UsageError, ensure_outside_data, make_folder

LOCK_NAME = ".osteo-writer.lock"


class FolderBusyError(UsageError):
    """Another live process is writing into the folder."""


@dataclass(frozen=True)
class FolderLock:
    """A held lock: who we are, and the owner of a stale lock we took over (None if there was none)."""

    path: Path
    owner: dict[str, Any]
    replaced: dict[str, Any] | None


def check_output_folder(path: str | os.PathLike, what: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The resolved folder, or UsageError before any work: inside the data, under a file, not writable.

    Nothing is created; the nearest existing folder above `path` must be writable.
    """
    target = ensure_outside_data(path, what, data_dir)
    if target.exists() and not target.is_dir():
        raise UsageError(f"{what} {target} is a file, not a folder")
    existing = next(p for p in (target, *target.parents) if p.exists())
    if not existing.is_dir():
        raise UsageError(f"{what} {target} cannot be created: {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{what} {target} cannot be written: no write permission on {existing}")
    return target


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs on this host (signal 0 checks without sending anything)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_owner(path: Path) -> dict[str, Any]:
    try:
        owner = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def _describe(owner: dict[str, Any]) -> str:
    return (f"pid {owner.get('pid', '?')} on {owner.get('host', '?')}, started {owner.get('started', '?')}, "
            f"command: {owner.get('command', '?')}")


def _is_dead_here(owner: dict[str, Any]) -> bool:
    return owner.get("host") == socket.gethostname() and isinstance(owner.get("pid"), int) \
        and not pid_alive(owner["pid"])


def _acquire(path: Path) -> tuple[int, dict[str, Any]]:
    """Open and flock the lock file; return the descriptor and what the file said before."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            owner = _read_owner(path)
            if _is_dead_here(owner):  # a child of the dead owner still holds the old file: leave it, start a new one
                path.unlink(missing_ok=True)
                continue
            raise FolderBusyError(f"{path.parent} is being written by another run ({_describe(owner)}); "
                                  "wait for it to finish or choose another folder") from None
        try:
            same_file = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            return fd, _read_owner(path)
        os.close(fd)  # the holder removed the file between our open and flock: try again on the new one


@contextmanager
def exclusive(folder: str | os.PathLike, command: str | None = None,
              lock_name: str = LOCK_NAME) -> Iterator[FolderLock]:
    """Hold the folder's writer lock for the block; FolderBusyError (one line) when a live process holds it.

    A lock whose process is gone (killed, crashed, host rebooted) is taken over; its record is
    returned as `replaced` so the run can say so.
    """
    folder = make_folder(Path(folder), "folder")
    path = folder / lock_name
    fd, before = _acquire(path)
    owner = {"pid": os.getpid(), "host": socket.gethostname(),
             "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
             "command": command or " ".join(sys.argv)}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)
        yield FolderLock(path, owner, before or None)
    finally:
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()
        except FileNotFoundError:
            pass
        os.close(fd)
