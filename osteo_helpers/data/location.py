"""Where the published dataset is looked for (an argument, $OSTEO_DATA_DIR, data/raw, the shared folder),
and what a folder given as the dataset holds instead, in one line with how to get the data."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import PROJECT_ROOT, SPREADSHEET_NAME
from ..errors import DataNotFoundError, UsageError
from .layout import IMAGE_EXTENSIONS
from .spec import CohortSpec

DATASET_DOI = "10.17632/fxjm8fb6mw.2"


DATASET_URL = "https://data.mendeley.com/datasets/fxjm8fb6mw/2"


DATA_ENV_VAR = "OSTEO_DATA_DIR"


def _has_dataset(path: Path, table: str = SPREADSHEET_NAME) -> bool:
    return (path / table).is_file()


def _why_not_a_dataset(path: Path) -> str:
    """What a folder given as the dataset holds instead, in one line, with how to get the data."""
    get = (f"get the dataset (CC BY 4.0, DOI {DATASET_DOI}) and install it with "
           "`python -m osteo_helpers data import download.zip`")
    if not path.exists():
        return f"no such folder; {get}"
    if not path.is_dir():
        return f"is a file, not a folder; give the folder holding '{SPREADSHEET_NAME}' and the class folders"
    entries = list(path.iterdir())
    if not entries:
        return f"the folder is empty; {get}"
    images = sum(1 for p in path.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if images:
        return (f"holds {images} image file(s) but no '{SPREADSHEET_NAME}' (the clinical table with the labels); "
                f"copy it in from the download, or {get}")
    return f"holds no '{SPREADSHEET_NAME}' and no images; {get}"


def data_dir_candidates(explicit: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The places searched for the dataset, in priority order, with where each came from."""
    out: list[tuple[str, Path]] = []
    if explicit:
        out.append(("argument", Path(explicit)))
    if os.environ.get(DATA_ENV_VAR):
        out.append((f"${DATA_ENV_VAR}", Path(os.environ[DATA_ENV_VAR])))
    out.append(("checkout data/raw", PROJECT_ROOT / "data" / "raw"))
    out.append(("shared folder", PROJECT_ROOT.parent / "shared" / "data" / "knee-osteoporosis"))
    return out


def resolve_data_dir(explicit: str | os.PathLike | None = None, table: str = SPREADSHEET_NAME) -> Path:
    """Find a cohort folder holding ``table`` (default: the published dataset's spreadsheet): argument,
    then $OSTEO_DATA_DIR, then data/raw, then ../shared.

    An explicit argument that does not hold the data is an error rather than a fallback,
    because silently analysing another copy would mislabel the results.
    """
    candidates = data_dir_candidates(explicit)
    for source, path in candidates:
        if _has_dataset(path, table):
            return path.resolve()
        if source == "argument":
            raise DataNotFoundError(f"data folder {path}: {_why_not_a_dataset(path)}")
    looked = "\n".join(f"  - {src}: {p}" for src, p in candidates)
    if table != SPREADSHEET_NAME:
        raise DataNotFoundError(f"No cohort folder holding '{table}' was found. Looked in:\n{looked}\n"
                                "Give the folder with --data-dir, or as [cohort] root in the cohort spec.")
    raise DataNotFoundError(
        "The Knee X-ray Osteoporosis dataset was not found. Looked in:\n"
        f"{looked}\n"
        f"Each place must hold '{SPREADSHEET_NAME}' and the folders normal/, osteopenia/, "
        "osteoporosis/.\n"
        f"Get it (CC BY 4.0) from Mendeley Data, DOI {DATASET_DOI} ({DATASET_URL}): "
        "download the zip, then run\n"
        "  python -m osteo_helpers data import PATH/TO/download.zip\n"
        f"which verifies every file and installs it under data/raw/, or point ${DATA_ENV_VAR} "
        "at an unpacked copy."
    )


def cohort_root(spec: CohortSpec, data_dir: str | os.PathLike | None = None) -> Path:
    """The cohort's folder: the spec's [cohort] root, else ``data_dir`` or the documented search for the
    folder holding the spec's table (--data-dir, $OSTEO_DATA_DIR, data/raw, ../shared)."""
    if spec.root is not None:
        if data_dir is not None and Path(data_dir).resolve() != spec.root.resolve():
            raise UsageError(f"cohort spec {spec.source} names its folder ([cohort] root = {spec.root}); "
                             f"--data-dir {data_dir} names another: give the folder once")
        if not (spec.root / spec.table_file).is_file():
            raise UsageError(f"cohort spec {spec.source}: [cohort] root {spec.root} holds no {spec.table_file!r}")
        return spec.root.resolve()
    return resolve_data_dir(data_dir, spec.table_file)
