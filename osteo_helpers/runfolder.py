"""A run's folder: where it is (outputs/<profile>, or a folder named by the changed settings), its layout
(`RunPaths`), and one run per folder: the record of what made its results (command, settings, data,
code), and results of another run moved aside, never mixed with the new ones.

The folder checks and the writer lock every command shares are `folders`'.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import __version__
from .config import PROFILES, Profile, get_profile
from .folders import IDENTITY_NAME, LOCK_NAME, ensure_outside_data, make_folder, output_root

if TYPE_CHECKING:
    from .data import Cohort


# ----------------------------------------------------------------------------- one run per folder

#: where results of another run are moved, each into a folder named by the time they were moved
PREVIOUS = "previous"
#: kept in place whatever run made them: the fold cache (each fold is fingerprinted and reused only
#: when everything that made it matches), the writer lock and the earlier runs set aside
KEPT = ("models", PREVIOUS, LOCK_NAME, IDENTITY_NAME)


def data_digest(cohort: Cohort) -> str:
    """SHA-256 over the cohort's spec, table and every image (IDs, paths and contents, from its manifest)."""
    from .fileio import sha256_file  # deferred: imports pandas and numpy

    digest = hashlib.sha256(sha256_file(cohort.table_path).encode())
    digest.update(json.dumps(cohort.spec.source).encode())
    manifest = cohort.manifest()
    for pid, rel, sha in sorted(zip(manifest["patient_id"], manifest["image_path"].fillna(""),
                                    manifest["image_sha256"].fillna(""), strict=True)):
        digest.update(f"{pid}:{rel}:{sha}".encode())
    return digest.hexdigest()


def run_identity(command: str, settings: dict[str, Any], cohort: Cohort) -> dict[str, Any]:
    """What makes a folder's results one run's: the command and its settings, the data, the code."""
    from .provenance import git_state  # deferred: imports pandas, numpy and PIL

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
    from .fileio import atomic_write_text  # deferred: imports pandas and numpy

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


@dataclass
class RunPaths:
    """The folder layout of one run; every notebook writes under its own subfolder."""

    root: Path
    tables: Path = field(init=False)
    figures: Path = field(init=False)
    models: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = ensure_outside_data(self.root, "run folder")
        self.tables = self.root / "tables"
        self.figures = self.root / "figures"  # made by the first figure saved: a run without one has none
        self.models = self.root / "models"
        for p in (self.root, self.tables, self.models):
            make_folder(p, "run folder")

    @property
    def manifest(self) -> Path:
        return self.tables / "manifest.csv"


#: suffix of the default folder of a notebook session run without overrides (JupyterLab, nbconvert)
INTERACTIVE_SUFFIX = "interactive"


def changed_fields(profile: Profile) -> dict[str, Any]:
    """The fields where `profile` differs from the built-in profile of its name (all of them for another name)."""
    base = PROFILES.get(profile.name)
    return {k: v for k, v in profile.to_dict().items() if base is None or getattr(base, k) != v}


def settings_tag(profile: Profile) -> str:
    """A short hash of the changed fields, '' for a built-in profile as defined: names the folder of an override run."""
    changed = changed_fields(profile)
    if not changed:
        return ""
    return hashlib.sha256(json.dumps(changed, sort_keys=True, default=str).encode()).hexdigest()[:8]


def run_folder(run_dir: str | os.PathLike | None, profile: str | Profile,
               overrides: Mapping[str, Any] | None = None, *, interactive: bool = False,
               announce: bool = False) -> Path:
    """A run folder's path, without creating it (so it can be checked first).

    An explicit `run_dir` wins. Otherwise only a run of a built-in profile as defined writes
    outputs/<profile> (the report `make report` builds); changed settings go to
    outputs/<profile>-<settings_tag>, and a notebook session without overrides (`interactive`)
    to outputs/<profile>-interactive, so neither overwrites the last full report. With
    `announce`, a redirected folder is said in one line.
    """
    if run_dir:
        return Path(run_dir)
    prof = profile if isinstance(profile, Profile) else get_profile(profile, **(overrides or {}))
    tag = settings_tag(prof)
    suffix = tag or (INTERACTIVE_SUFFIX if interactive else "")
    path = output_root() / (f"{prof.name}-{suffix}" if suffix else prof.name)
    if announce and suffix:
        why = ("settings differ from the profile: " + ", ".join(f"{k}={v}" for k, v in changed_fields(prof).items())
               if tag else "a notebook session without run_dir")
        print(f"run folder: {path} ({why}; {output_root() / prof.name} keeps the report of profile {prof.name})")
    return path


def run_paths(run_dir: str | os.PathLike | None, profile: str | Profile,
              overrides: Mapping[str, Any] | None = None, *, interactive: bool = True) -> RunPaths:
    """Resolve and create the run folder a Study opens (see `run_folder`; without run_dir it is a notebook session)."""
    return RunPaths(run_folder(run_dir, profile, overrides, interactive=interactive, announce=True))
