"""A cohort as a value: its spec and its folder, and everything read from them (spec -> table -> manifest -> rows).

`Cohort.open` checks the spec, finds the folder and its layout before any work; the study, the
command line and `cohort_rows` (what a saved model scores on another cohort) all read through it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import UsageError, resolve_data_dir
from .spec import CohortSpec, load_spec


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


@dataclass
class Cohort:
    """One cohort: its checked spec and its folder. Open with `Cohort.open(spec, data_dir)`."""

    spec: CohortSpec
    root: Path
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, spec: str | os.PathLike | CohortSpec | None = None,
             data_dir: str | os.PathLike | None = None) -> Cohort:
        """Read and check the spec (None: the published dataset's), find the folder and check its
        layout: every problem here is one line, before any work."""
        from .layout import check_layout

        spec = spec if isinstance(spec, CohortSpec) else load_spec(spec)
        cohort = cls(spec, cohort_root(spec, data_dir))
        if spec.image_pattern is not None:
            check_layout(cohort.root, spec=spec)
        return cohort

    @property
    def table_path(self) -> Path:
        return self.root / self.spec.table_file

    @property
    def table(self) -> pd.DataFrame:
        """The tidy clinical table without the rows that have a problem, which are listed in
        ``attrs["problems"]`` (`clinical.load_clinical` with ``strict`` False): what `findings` reads."""
        if "table" not in self._cache:
            from .clinical import load_clinical

            self._cache["table"] = load_clinical(self.table_path, self.spec, strict=False)
        return self._cache["table"]

    @property
    def clinical(self) -> pd.DataFrame:
        """The tidy clinical table (one row per table row); every problem of the table at once
        (`CohortProblemsError`, exit status 2) when it has any."""
        table = self.table
        if table.attrs["problems"].problems:
            raise self._refusal(list(table.attrs["problems"].problems))
        return table

    def _refusal(self, problems: list) -> Exception:
        from .problems import CohortProblemsError

        return CohortProblemsError(self.spec.name, self.spec.source, problems)

    def manifest(self, strict: bool = True) -> pd.DataFrame:
        """The manifest (`build_manifest`, built once per `Cohort`: it reads every image's checksum and
        header); ``strict`` False keeps unreadable images and leaves out the table's rows with a problem,
        for `findings`."""
        from .manifest import build_manifest

        key = f"manifest-{strict}"
        if key not in self._cache:
            self._cache[key] = build_manifest(self.root, self.clinical if strict else self.table, strict=strict,
                                              spec=self.spec)
        return self._cache[key].copy()

    def findings(self, manifest: pd.DataFrame | None = None) -> dict[str, Any]:
        """Every problem found in the cohort (`validate`), read only."""
        from .validation import validate

        return validate(self.manifest(strict=False) if manifest is None else manifest, self.table, self.root,
                        self.spec)

    def require_usable(self) -> dict[str, Any]:
        """The findings, once every image has been decoded to its last byte; every problem that stops a
        run (a table value, an unreadable image, no image at all) at once, before any work, when there
        is one (`CohortProblemsError`, exit status 2). `run`, `ablation` and `train-final` start here."""
        findings = self.findings()
        if findings["fatal_problems"]:
            raise self._refusal(findings["fatal_problems"])
        return findings


def cohort_rows(spec: str | os.PathLike | CohortSpec | None, image_size: int, data_dir: str | os.PathLike | None = None,
                cache: str | os.PathLike | None = None, progress: bool = False) -> pd.DataFrame:
    """The rows a model scores on a cohort: every table row: ``patient_id``, ``person_id``, ``source_row``,
    ``site`` / ``batch`` / ``knee_side`` / ``view`` where the spec names them, every canonical input the
    cohort has, ``diagnosis``, ``label_3class``, ``label_binary``, ``t_score``, ``split_group``, ``image``
    (the letterboxed ``image_size`` px uint8 array, from the on-disk cache) and ``pixel_sha256`` (the
    checksum of its decoded pixels). A row without an image to score keeps its place, with ``image`` None
    and ``image_problem`` saying why (the table names none, the file is not there, it cannot be decoded):
    a validation refuses it by name, never drops it.
    """
    from tqdm.auto import tqdm

    from ..config import cache_dir
    from ..images import ImageCache, PixelHashes
    from ..progress import show_progress
    from .errors import ImageReadError
    from .manifest import modelling_table

    cohort = Cohort.open(spec, data_dir)
    table = modelling_table(cohort.manifest(strict=False), cohort.clinical, every_row=True).reset_index(drop=True)
    root = cache_dir(cache)
    letterboxes, checksums = ImageCache(root, image_size), PixelHashes(root)
    images, pixels, problems = [], [], []
    for rec in tqdm(table.to_dict("records"), desc=f"images {image_size}px", disable=not show_progress(progress),
                    leave=False):
        image = checksum = problem = None
        if isinstance(rec["image_path"], str):
            path = cohort.root / rec["image_path"]
            try:
                image, checksum = letterboxes.get(path, rec["image_sha256"]), checksums.get(path, rec["image_sha256"])
            except ImageReadError as exc:
                problem = str(exc).removeprefix(f"{path}: ")
        else:
            problem = _no_image(cohort, rec["patient_id"])
        images.append(image)
        pixels.append(checksum)
        problems.append(problem)
    return table.assign(image=images, pixel_sha256=pixels, image_problem=problems)


def _no_image(cohort: Cohort, patient_id: str) -> str:
    """Why a table row has no image: the spec's pattern finds none, the table names none, or names a missing file."""
    from ..vocabulary import IMAGE_FILE

    spec = cohort.spec
    if spec.image_pattern is not None:
        return f"no image matches {spec.image_pattern!r} under {cohort.root}"
    named = cohort.clinical.set_index("patient_id")[IMAGE_FILE].get(patient_id)
    if not isinstance(named, str) or not named.strip():
        return f"the table names no image (column {spec.image_column!r})"
    return f"{named.strip()!r} is not a file (paths are relative to the cohort folder {cohort.root})"
