"""Profiles (smoke / fast / full) and path resolution.

A profile is a frozen dataclass: every knob that changes a result lives here, so a run
is described completely by its profile (plus overrides), which is recorded with it.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DATASET_DOI = "10.17632/fxjm8fb6mw.2"
DATASET_URL = "https://data.mendeley.com/datasets/fxjm8fb6mw/2"
DATA_ENV_VAR = "OSTEO_DATA_DIR"
OUTPUT_ENV_VAR = "OSTEO_OUTPUT_DIR"
CACHE_ENV_VAR = "OSTEO_CACHE_DIR"
SPREADSHEET_NAME = "patient details.xlsx"

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class DataNotFoundError(FileNotFoundError):
    """The dataset is not where any of the documented settings point."""


@dataclass(frozen=True)
class Profile:
    """Everything that determines a run's numbers. Override fields with `with_overrides`."""

    name: str
    image_size: int = 128
    encoder: str = "smallcnn"
    weights: str | None = None
    epochs: int = 20
    patience: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4
    n_folds: int = 5
    n_repeats: int = 1
    inner_val_fraction: float = 0.2
    balanced_sampling: bool = False
    augment: bool = True
    n_boot: int = 1000
    target_sensitivity: float = 0.90
    seed: int = 42
    num_threads: int = 2
    gbm_estimators: int = 200
    explain_patients: int = 6
    shap_background: int = 50
    shap_samples: int = 60
    biomarker_limit: int | None = None
    roi_size: int = 128
    roi_epochs: int = 15
    modes: tuple[str, ...] = ("image", "tabular", "fusion")
    tasks: tuple[str, ...] = ("binary", "3class")

    def with_overrides(self, **overrides: Any) -> "Profile":
        """Return a copy with fields replaced; unknown names raise (typos must not pass silently)."""
        known = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown profile field(s) {unknown}; known: {sorted(known)}")
        cleaned = {k: (tuple(v) if isinstance(getattr(self, k), tuple) else v) for k, v in overrides.items()}
        return replace(self, **cleaned)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PROFILES: dict[str, Profile] = {
    # CI: proves every notebook runs end to end on the real data; numbers are not meaningful.
    "smoke": Profile(
        name="smoke", image_size=64, epochs=2, patience=2, n_folds=3, n_repeats=1,
        n_boot=200, gbm_estimators=30, explain_patients=2, shap_background=20,
        shap_samples=10, biomarker_limit=None, roi_size=64, roi_epochs=2,
    ),
    # Default: the whole analysis on 2 CPU cores; settings chosen by measurement (benchmarks/README.md).
    "fast": Profile(
        name="fast", image_size=128, epochs=25, patience=6, n_folds=5, n_repeats=2,
        n_boot=1000, roi_size=96, roi_epochs=15,
    ),
    # GPU: pretrained DenseNet-121 at 448 px, more repeats.
    "full": Profile(
        name="full", image_size=448, encoder="densenet121", weights="imagenet", epochs=40,
        patience=8, batch_size=16, lr=1e-4, n_folds=5, n_repeats=3, n_boot=2000,
        roi_size=224, roi_epochs=30,
    ),
}


def get_profile(name: str, **overrides: Any) -> Profile:
    """Look up a named profile, applying overrides (e.g. from notebook parameters)."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {sorted(PROFILES)}")
    return PROFILES[name].with_overrides(**{k: v for k, v in overrides.items() if v is not None})


def _has_dataset(path: Path) -> bool:
    return (path / SPREADSHEET_NAME).is_file()


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


def resolve_data_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Find the dataset: argument, then $OSTEO_DATA_DIR, then data/raw, then ../shared.

    An explicit argument that does not hold the data is an error rather than a fallback,
    because silently analysing another copy would mislabel the results.
    """
    candidates = data_dir_candidates(explicit)
    for source, path in candidates:
        if _has_dataset(path):
            return path.resolve()
        if source == "argument":
            break
    looked = "\n".join(f"  - {src}: {p}" for src, p in candidates)
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


def output_root(explicit: str | os.PathLike | None = None) -> Path:
    """Where runs write their artefacts (ignored by git)."""
    return Path(explicit or os.environ.get(OUTPUT_ENV_VAR) or PROJECT_ROOT / "outputs").resolve()


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    """Where decoded images are cached, shared by all runs (ignored by git)."""
    path = Path(explicit or os.environ.get(CACHE_ENV_VAR) or PROJECT_ROOT / "data" / "cache")
    path.mkdir(parents=True, exist_ok=True)
    return path.resolve()


@dataclass
class RunPaths:
    """The folder layout of one run; every notebook writes under its own subfolder."""

    root: Path
    tables: Path = field(init=False)
    figures: Path = field(init=False)
    models: Path = field(init=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).resolve()
        self.tables = self.root / "tables"
        self.figures = self.root / "figures"
        self.models = self.root / "models"
        for p in (self.root, self.tables, self.figures, self.models):
            p.mkdir(parents=True, exist_ok=True)

    @property
    def manifest(self) -> Path:
        return self.tables / "manifest.csv"


def run_paths(run_dir: str | os.PathLike | None, profile: str) -> RunPaths:
    """Resolve a run folder: explicit, else outputs/<profile>."""
    return RunPaths(Path(run_dir) if run_dir else output_root() / profile)


def show_progress(progress: bool = True) -> bool:
    """Progress bars on unless asked off, or disabled for batch runs with TQDM_DISABLE=1 (the pipeline sets it)."""
    return progress and os.environ.get("TQDM_DISABLE", "").lower() not in {"1", "true", "yes"}
