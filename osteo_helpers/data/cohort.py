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

from ..errors import UsageError
from ..vocabulary import IMAGE_FILE
from .clinical import load_clinical
from .layout import check_layout
from .location import cohort_root
from .problems import CohortProblemsError
from .spec import CohortSpec, load_spec


@dataclass
class Cohort:
    """One cohort: its checked spec and its folder. Open with `Cohort.open(spec, data_dir)`."""

    spec: CohortSpec
    root: Path
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def open(cls, spec: Cohort | str | os.PathLike | CohortSpec | None = None,
             data_dir: str | os.PathLike | None = None) -> Cohort:
        """Read and check the spec (None: the published dataset's), find the folder and check its
        layout: every problem here is one line, before any work. A cohort already open is returned as it is
        (the command line opens a run's cohort once and passes the value down: its table is read once)."""
        if isinstance(spec, Cohort):
            if data_dir is not None and Path(data_dir).resolve() != spec.root.resolve():
                raise UsageError(f"--data-dir {data_dir}: the cohort {spec.spec.source} is open in {spec.root}; "
                                 "give the folder once")
            return spec
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
        return CohortProblemsError(self.spec.name, self.spec.source, problems)

    def manifest(self, strict: bool = True) -> pd.DataFrame:
        """The manifest (`build_manifest`, built once per `Cohort`: it reads every image's checksum and
        header); ``strict`` False keeps unreadable images and leaves out the table's rows with a problem,
        for `findings`."""
        from .manifest import build_manifest  # deferred: imports scipy

        key = f"manifest-{strict}"
        if key not in self._cache:
            self._cache[key] = build_manifest(self.root, self.clinical if strict else self.table, strict=strict,
                                              spec=self.spec)
        return self._cache[key].copy()

    def findings(self, manifest: pd.DataFrame | None = None) -> dict[str, Any]:
        """Every problem found in the cohort (`validate`), read only."""
        from .validation import validate  # deferred: imports scipy

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

    def missing_image(self, patient_id: str) -> str:
        """Why a table row has no image: the spec's pattern finds none, the table names none, or names a
        missing file."""
        spec = self.spec
        if spec.image_pattern is not None:
            return f"no image matches {spec.image_pattern!r} under {self.root}"
        named = self.clinical.set_index("patient_id")[IMAGE_FILE].get(patient_id)
        if not isinstance(named, str) or not named.strip():
            return f"the table names no image (column {spec.image_column!r})"
        return f"{named.strip()!r} is not a file (paths are relative to the cohort folder {self.root})"
