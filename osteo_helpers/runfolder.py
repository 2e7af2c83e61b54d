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
from typing import TYPE_CHECKING, Any

from .config import UsageError, ensure_outside_data, make_folder

if TYPE_CHECKING:
    from .data import Cohort

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
    folder = Path(folder)
    existed = _folders(folder)
    folder = make_folder(folder, "folder")
    path = folder / lock_name
    try:
        fd, before = _acquire(path)
    except BaseException:
        remove_new_empty_folders(folder, existed)
        raise
    owner = {"pid": os.getpid(), "host": socket.gethostname(),
             "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
             "command": command or " ".join(sys.argv)}
    failed = True
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(owner).encode(), 0)
        yield FolderLock(path, owner, before or None)
        failed = False
    finally:
        try:
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()
        except FileNotFoundError:
            pass
        os.close(fd)
        if failed:  # a command that failed or was interrupted leaves no empty skeleton of folders
            remove_new_empty_folders(folder, existed)


def _folders(root: Path) -> set[Path]:
    """Every folder at or below ``root`` and above it that exists now."""
    out = {p for p in (root, *root.parents) if p.is_dir()}
    if root.is_dir():
        out |= {p for p in root.rglob("*") if p.is_dir()}
    return out


def remove_new_empty_folders(root: Path, existed: set[Path]) -> None:
    """Remove the folders made since ``existed`` was taken that are empty, or hold only the run's record
    (deepest first), up to and above ``root``: what a failed command created and never filled."""
    made = [p for p in _folders(root) if p not in existed]
    for path in sorted(made, key=lambda p: len(p.parts), reverse=True):
        try:
            if [p.name for p in path.iterdir()] == [IDENTITY_NAME]:  # the record of a run that made nothing
                (path / IDENTITY_NAME).unlink()
            path.rmdir()  # only an empty folder goes
        except OSError:
            pass


# ----------------------------------------------------------------------------- one run per folder

#: the record of what made a folder's results: command, settings, data and code
IDENTITY_NAME = "run_identity.json"
#: where results of another run are moved, each into a folder named by the time they were moved
PREVIOUS = "previous"
#: kept in place whatever run made them: the fold cache (each fold is fingerprinted and reused only
#: when everything that made it matches), the writer lock and the earlier runs set aside
KEPT = ("models", PREVIOUS, LOCK_NAME, IDENTITY_NAME)


def data_digest(cohort: Cohort) -> str:
    """SHA-256 over the cohort's spec, table and every image (IDs, paths and contents, from its manifest)."""
    import hashlib

    from .data import sha256_file

    digest = hashlib.sha256(sha256_file(cohort.table_path).encode())
    digest.update(json.dumps(cohort.spec.source).encode())
    manifest = cohort.manifest()
    for pid, rel, sha in sorted(zip(manifest["patient_id"], manifest["image_path"].fillna(""),
                                    manifest["image_sha256"].fillna(""), strict=True)):
        digest.update(f"{pid}:{rel}:{sha}".encode())
    return digest.hexdigest()


def run_identity(command: str, settings: dict[str, Any], cohort: Cohort) -> dict[str, Any]:
    """What makes a folder's results one run's: the command and its settings, the data, the code."""
    from . import __version__
    from .provenance import git_state

    return {"command": command, "settings": json.loads(json.dumps(settings, default=str)),
            "data": data_digest(cohort), "code": {"osteo_helpers": __version__, "commit": git_state()["commit"]}}


def holds_run(folder: Path, identity: dict[str, Any]) -> bool:
    """Whether ``folder``'s results were made by the run ``identity`` describes (same command, settings, data
    and code), so that `claim_for_run` keeps them: what a run of some notebooks may build its book from."""
    try:
        old = json.loads((Path(folder) / IDENTITY_NAME).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(old, dict) and _difference(old, identity) is None


def _difference(old: dict[str, Any], new: dict[str, Any]) -> str | None:
    """The first thing that differs between two identities, in words; None when they are the same run."""
    if old.get("command") != new["command"]:
        return f"made by `{old.get('command')}`, not `{new['command']}`"
    a, b = old.get("settings", {}), new["settings"]
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if changed:
        return "settings differ: " + ", ".join(f"{k}={a.get(k)!r} (now {b.get(k)!r})" for k in changed[:3])
    if old.get("data") != new["data"]:
        return "made on other data"
    if old.get("code") != new["code"]:
        return f"made by other code (commit {str(old.get('code', {}).get('commit'))[:10]})"
    return None


def claim_for_run(folder: Path, identity: dict[str, Any]) -> Path | None:
    """Make ``folder`` hold this run's results only (call it holding the folder's writer lock).

    Results of another run (other command, settings, data or code; or of an unknown run, made
    before the record existed) are moved into ``previous/<time>/`` and that folder is returned
    (the caller says so); the fold cache stays, being checked fold by fold. The record is written.
    """
    folder = Path(folder)
    record = folder / IDENTITY_NAME
    try:
        old = json.loads(record.read_text()) if record.is_file() else None
    except (OSError, ValueError):
        old = {}
    results = [p for p in folder.iterdir() if p.name not in KEPT] if folder.is_dir() else []
    moved = None
    if results and (old is None or not isinstance(old, dict) or _difference(old, identity)):
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        moved = folder / PREVIOUS / stamp
        moved.mkdir(parents=True)
        for path in results:
            path.rename(moved / path.name)
        if record.is_file():
            record.rename(moved / IDENTITY_NAME)
    folder.mkdir(parents=True, exist_ok=True)
    from .fileio import atomic_write_text

    atomic_write_text(record, json.dumps(identity, indent=2))
    return moved


def why_moved(folder: Path, moved: Path) -> str:
    """The one line that says a folder's earlier results were set aside, and why."""
    try:
        old = json.loads((moved / IDENTITY_NAME).read_text())
        new = json.loads((Path(folder) / IDENTITY_NAME).read_text())
        reason = _difference(old, new) or "another run"
    except (OSError, ValueError):
        reason = "made by an unknown run (no run_identity.json)"
    return f"{folder} held results of another run ({reason}); moved them to {moved}"
