"""Where the package writes, and who writes there: the output and cache folders, the rule that nothing is
ever written inside a dataset folder, and the one-writer lock of a folder.

Ground floor: it imports only the standard library, `config` and `errors`, so the data layer and every
command check and lock their folders the same way.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import json
import os
import re
import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import PROJECT_ROOT, SPREADSHEET_NAME
from .errors import UsageError

OUTPUT_ENV_VAR = "OSTEO_OUTPUT_DIR"
CACHE_ENV_VAR = "OSTEO_CACHE_DIR"


def shorten_paths(text: str) -> str:
    """Absolute paths of the machine that ran the analysis, made relative (project) or cut to their last part."""
    text = str(text).replace(str(PROJECT_ROOT) + "/", "").replace(str(PROJECT_ROOT), ".")
    return re.sub(r"(?<![\w.])/(?:[^\s/`'\"]+/)+([^\s/`'\"]+)", r"…/\1", text)


def output_root(explicit: str | os.PathLike | None = None) -> Path:
    """Where runs write their artefacts (ignored by git)."""
    return Path(explicit or os.environ.get(OUTPUT_ENV_VAR) or PROJECT_ROOT / "outputs").resolve()


def cache_dir(explicit: str | os.PathLike | None = None, data_dir: str | os.PathLike | None = None) -> Path:
    """Where decoded images are cached, shared by all runs (ignored by git); never inside the data (``data_dir``,
    the cohort being read, or any folder that looks like the published dataset)."""
    path = explicit or os.environ.get(CACHE_ENV_VAR) or PROJECT_ROOT / "data" / "cache"
    return make_folder(ensure_outside_data(path, "cache folder", data_dir), "cache folder")


def ensure_outside_data(path: str | os.PathLike, what: str, data_dir: str | os.PathLike | None = None) -> Path:
    """`path` resolved (symlinks too); UsageError when it lies inside a dataset folder.

    Raw data is only ever read, so every folder the code writes to passes through here. A
    dataset folder is `data_dir` when given and any folder above `path` holding the
    spreadsheet, so callers that do not know which copy is in use are covered as well.
    """
    target = Path(path).expanduser().resolve()
    roots = [Path(data_dir).expanduser().resolve()] if data_dir is not None else []
    roots += [p for p in (target, *target.parents) if (p / SPREADSHEET_NAME).is_file()]
    for root in roots:
        if target == root or root in target.parents:
            raise UsageError(f"{what} {target} lies inside the dataset folder {root}; "
                             "the raw data is never written to, choose a folder outside it")
    return target


def make_folder(path: Path, what: str) -> Path:
    """mkdir -p, with a one-line UsageError naming the folder when it cannot be made."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{what} {path} cannot be created ({exc.strerror or exc})") from exc
    return path


LOCK_NAME = ".osteo-writer.lock"
#: the record of what made a folder's results (command, settings, data and code; `runfolder`)
IDENTITY_NAME = "run_identity.json"


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


def swap_in(built: Path, target: Path) -> None:
    """Replace `target` by the finished `built` folder: two renames, so `target` is never half-written."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    built.rename(target)
    shutil.rmtree(old, ignore_errors=True)
