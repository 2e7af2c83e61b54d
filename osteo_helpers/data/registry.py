"""The checksum registry of the published dataset, and installing a downloaded copy that matches it.

The registry (shipped in ``osteo_helpers/registry/``) pins every file's size and SHA-256, so an
analysis never runs on a copy that differs from the published one.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
import zlib
from importlib import resources
from pathlib import Path

import pandas as pd

from ..config import PROJECT_ROOT, SPREADSHEET_NAME
from ..errors import UsageError
from ..fileio import atomic_to_csv, read_csv, sha256_file
from ..folders import check_output_folder, exclusive
from .errors import DataValidationError
from .layout import IMAGE_EXTENSIONS

REGISTRY_NAME = "knee-osteoporosis-v2.csv"
IMPORT_PREFIX = ".import-"  # staging folders of `import_dataset`, beside the destination


def registry_path() -> Path:
    """The registry shipped as package data, wherever the package is installed."""
    return Path(str(resources.files("osteo_helpers") / "registry" / REGISTRY_NAME))


def read_registry(path: Path | None = None) -> pd.DataFrame:
    """The shipped checksum registry: relative path, byte size and SHA-256 of every file."""
    return read_csv(path or registry_path(), dtype={"path": str, "bytes": int, "sha256": str})


def write_registry(data_dir: Path, out: Path) -> pd.DataFrame:
    """Hash every dataset file (used once, by maintainers, to make the registry)."""
    rows = []
    for p in sorted(Path(data_dir).rglob("*")):
        if p.is_file() and (p.suffix.lower() in IMAGE_EXTENSIONS or p.name == SPREADSHEET_NAME):
            rows.append({"path": p.relative_to(data_dir).as_posix(), "bytes": p.stat().st_size,
                         "sha256": sha256_file(p)})
    table = pd.DataFrame(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_to_csv(table, out)
    return table


def verify_files(data_dir: Path, registry: pd.DataFrame | None = None) -> dict[str, list[str]]:
    """Compare a dataset folder with the registry: missing, mismatched and unexpected files."""
    registry = read_registry() if registry is None else registry
    by_name = _index_by_name(Path(data_dir))
    missing, mismatched = [], []
    for row in registry.itertuples():
        src = by_name.get(Path(row.path).name)
        if src is None:
            missing.append(row.path)
        elif src.stat().st_size != row.bytes or sha256_file(src) != row.sha256:
            mismatched.append(row.path)
    expected = {Path(p).name for p in registry["path"]}
    unexpected = sorted(n for n in by_name if n not in expected)
    return {"missing": missing, "mismatched": mismatched, "unexpected": unexpected}


def _index_by_name(root: Path) -> dict[str, Path]:
    return {p.name: p for p in sorted(root.rglob("*")) if p.is_file() and "__MACOSX" not in p.parts}


def _unzip(archive: Path, into: Path, name: str) -> None:
    """Extract every member; a member failing its CRC (or not inflatable) is named, not a BadZipFile traceback."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile as exc:
        raise DataValidationError(f"{name}: not a readable zip file ({exc}); nothing was installed") from exc
    with zf:
        for member in zf.infolist():
            try:
                zf.extract(member, into)
            except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
                raise DataValidationError(f"{name}: member {member.filename!r} is damaged ({exc}); "
                                          "nothing was installed") from exc


def import_dataset(source: Path, dest: Path | None = None, registry: pd.DataFrame | None = None) -> Path:
    """Install a downloaded copy (folder or zip) under data/raw after verifying every file.

    Files are staged in a temporary folder beside the destination and moved into place
    only when all of them match, so a failed import leaves nothing half-copied: the staging
    folder goes however the import ends (error, Ctrl-C), and one left by a killed import is
    removed by the next (imports into one place take turns, so none is removed while in use).
    """
    source = Path(source)
    if not source.exists():
        raise UsageError(f"{source}: no such file or folder")
    if not (source.is_dir() or zipfile.is_zipfile(source)):
        raise UsageError(f"{source}: expected a folder or a .zip file")
    installed = Path(dest or PROJECT_ROOT / "data" / "raw")
    if (installed / SPREADSHEET_NAME).is_file():
        raise UsageError(f"import destination {installed} already holds an installed dataset ({SPREADSHEET_NAME}); "
                         "nothing was imported: use it as it is, or move it away first to import again")
    dest = check_output_folder(installed, "import destination", data_dir=source if source.is_dir() else None)
    if dest.exists() and any(dest.iterdir()):
        raise UsageError(f"import destination {dest} already holds files; move them away before importing again")
    registry = read_registry() if registry is None else registry
    with exclusive(dest.parent, command=f"data import {source}", lock_name=".import.lock"), \
            tempfile.TemporaryDirectory(dir=dest.parent, prefix=IMPORT_PREFIX) as tmp:
        for stale in dest.parent.glob(IMPORT_PREFIX + "*"):
            if stale != Path(tmp):
                shutil.rmtree(stale, ignore_errors=True)
        tmp_path = Path(tmp)
        root = source
        if not source.is_dir():
            root = tmp_path / "unpacked"
            _unzip(source, root, str(source))
            for inner in list(root.rglob("*.zip")):
                _unzip(inner, inner.with_suffix(""), f"{source} > {inner.relative_to(root).as_posix()}")
        problems = verify_files(root, registry)
        if problems["missing"] or problems["mismatched"]:
            lines = [f"  checksum mismatch: {p}" for p in problems["mismatched"]]
            lines += [f"  missing: {p}" for p in problems["missing"]]
            raise DataValidationError(
                f"{source} does not match the registry ({len(lines)} problem(s)); nothing was installed:\n"
                + "\n".join(lines)
            )
        by_name = _index_by_name(root)
        staged = tmp_path / "staged"
        for row in registry.itertuples():
            target = staged / row.path
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(by_name[Path(row.path).name], target)
        if dest.exists():
            dest.rmdir()
        staged.rename(dest)
    return dest
