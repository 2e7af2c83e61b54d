"""Where a cohort's images are: a folder pattern (one walk of the folder) or a column of relative paths.

A pattern such as ``{class_folder}/**/{id}.*`` is matched against every image file's path relative
to the cohort folder: ``{id}`` is the table's ID, ``{class_folder}`` a folder named after a class
(normal, osteopenia, osteoporosis), ``**/`` any depth, ``*`` any run of characters within one name
(``.*`` any image extension, in any case). Checked before anything reads the folder, so that a
folder without images fails at once.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..tasks import CLASSES_3
from .errors import DatasetLayoutError
from .image_readers import IMAGE_SUFFIXES, is_dicom
from .spec import CohortSpec, load_spec

IMAGE_EXTENSIONS = IMAGE_SUFFIXES
#: the pattern of `find_images`: the file stem is the ID, at any depth (`predict --images`)
STEM_PATTERN = "**/{id}.*"


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """The regular expression a folder pattern stands for (see the module docstring)."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("{id}", i):
            out.append("(?P<id>[^/]+?)")
            i += 4
        elif pattern.startswith("{class_folder}", i):
            out.append("(?P<class_folder>[^/]+)")
            i += len("{class_folder}")
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out), re.IGNORECASE)


def _image_files(root: Path, bare_dicom: bool = False) -> list[Path]:
    """Every image file under root (not hidden), in a stable order, from one walk of the tree; with
    ``bare_dicom``, also every file without an extension that holds DICOM (as PACS exports name them)."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            suffix = Path(name).suffix.lower()
            if suffix in IMAGE_SUFFIXES or (bare_dicom and not suffix and is_dicom(Path(folder) / name)):
                found.append(Path(folder) / name)
    return sorted(found)


def locate_images(root: Path, pattern: str = STEM_PATTERN, bare_dicom: bool = False) -> dict[str, Path]:
    """Map ID to image path for every image file under root that the pattern matches (with ``bare_dicom``,
    a DICOM file without an extension matches ``.*`` as an empty one)."""
    regex = pattern_regex(pattern)
    classes = "{class_folder}" in pattern
    found: dict[str, Path] = {}
    for path in _image_files(Path(root), bare_dicom):
        relative = path.relative_to(root).as_posix()
        match = regex.fullmatch(relative if path.suffix else relative + ".")
        if match is None or (classes and match["class_folder"].lower() not in CLASSES_3):
            continue
        pid = match["id"].strip()
        if pid in found:
            raise DatasetLayoutError(f"two image files claim patient {pid!r}: {found[pid]} and {path}; remove one")
        found[pid] = path
    return found


def find_images(data_dir: Path) -> dict[str, Path]:
    """Map ID (file stem) to image path, whatever the extension's case or nesting; a DICOM file without an
    extension is named by its whole name (`predict --images`)."""
    return locate_images(Path(data_dir), STEM_PATTERN, bare_dicom=True)


def check_layout(data_dir: Path, images: dict[str, Path] | None = None, spec: CohortSpec | None = None) -> None:
    """Refuse a cohort folder that lacks a class folder its pattern needs or holds no image, before
    anything reads it: otherwise a folder with only the table passes every check and fails deep
    inside a model fit. ``spec`` None: the published dataset's."""
    spec = load_spec() if spec is None else spec
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DatasetLayoutError(f"{data_dir}: no such folder")
    pattern = spec.image_pattern
    if pattern is not None and "{class_folder}" in pattern:
        present = {p.name.lower() for p in data_dir.iterdir() if p.is_dir()}
        missing = [f"{c}/" for c in CLASSES_3 if c not in present]
        if missing:
            raise DatasetLayoutError(f"{data_dir}: class folder(s) missing: {', '.join(missing)} "
                                     f"(expected {', '.join(c + '/' for c in CLASSES_3)} beside "
                                     f"'{spec.table_file}')")
    if pattern is not None and not (locate_images(data_dir, pattern) if images is None else images):
        raise DatasetLayoutError(f"{data_dir}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))} "
                                 f"matching {pattern!r})")
