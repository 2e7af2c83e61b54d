"""The dataset folder's layout: one folder per class beside the spreadsheet, one image per patient ID.

Checked before anything reads the folder, so that a folder without images fails at once.
"""

from __future__ import annotations

from pathlib import Path

from ..config import SPREADSHEET_NAME
from ..tasks import CLASSES_3
from .errors import DatasetLayoutError, DataValidationError

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp"}


def find_images(data_dir: Path) -> dict[str, Path]:
    """Map patient ID (file stem) to image path, whatever the extension's case or nesting."""
    found: dict[str, Path] = {}
    for path in sorted(Path(data_dir).rglob("*")):
        if not path.is_file() or path.suffix.lower() not in IMAGE_EXTENSIONS or path.name.startswith("."):
            continue
        pid = path.stem.strip()
        if pid in found:
            raise DataValidationError(
                f"two image files claim patient {pid!r}: {found[pid]} and {path}; remove one"
            )
        found[pid] = path
    return found


def check_layout(data_dir: Path, images: dict[str, Path] | None = None) -> None:
    """Refuse a dataset folder that lacks a class folder or holds no image, before anything reads it.

    Otherwise a folder with only the spreadsheet passes every check and fails deep inside a model fit.
    """
    data_dir = Path(data_dir)
    present = {p.name.lower() for p in data_dir.iterdir() if p.is_dir()}
    missing = [f"{c}/" for c in CLASSES_3 if c not in present]
    if missing:
        raise DatasetLayoutError(f"{data_dir}: class folder(s) missing: {', '.join(missing)} "
                                 f"(expected {', '.join(c + '/' for c in CLASSES_3)} beside '{SPREADSHEET_NAME}')")
    if not (find_images(data_dir) if images is None else images):
        raise DatasetLayoutError(f"{data_dir}: no images found (looked for {', '.join(sorted(IMAGE_EXTENSIONS))} "
                                 f"under {', '.join(c + '/' for c in CLASSES_3)})")
