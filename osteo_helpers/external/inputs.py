"""Which rows of a cohort a saved bundle scores, which of their inputs it never saw, and which of their
images it was trained on.

The rule (book/methods.md repeats it):

- **Refused, never scored** (one line each in ``refused.csv``, naming the patient, the table row and
  the field; every row of the cohort is either scored or refused): what `predict` refuses (a missing
  or undecodable image, with the cohort's reason, a missing input the saved arms use, a value that is
  not a number or not finite, a category outside the project's vocabulary), an image that is not
  letterboxed at the bundle's size, a row without the outcome (validation needs the truth), and
  rows of one patient that disagree on the outcome or the site.
- **Scored and flagged**: a value outside the bundle's training range, or a category never seen
  in training (`bundle.range_warnings`, the rule `predict` warns by). Every flag is a row of the
  flag table (``unseen_inputs.csv`` counts them per input); a flag on an input the saved arms use
  sets ``outside_training``, and the metrics are given again without those patients. Flags on
  inputs the arms ignore are listed but cannot change a score.
- **Seen in training** (`training_overlap`): an image whose decoded pixels are those of a training
  image (the bundle records their checksums, `train_final.data_facts`). Any such image makes the run an
  internal, not an external, validation, and the report says so in its title and tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..bundle import Bundle, person_digest, range_warnings
from ..patients import Patient, check_values
from ..tabular import INPUT_FEATURES

OUTCOME = "label_binary"
FLAG_COLUMNS = ["patient_id", "input", "value", "used_by_model", "reason"]
REFUSED_COLUMNS = ["patient_id", "row", "problem"]
UNRECORDED = "the training set of this bundle is not recorded: cannot tell whether this is an external validation"


@dataclass
class CheckedRows:
    """The outcome of `check_rows`: patients to score (with their rows), refusals and flags."""

    patients: list[Patient]
    rows: pd.DataFrame
    refused: pd.DataFrame
    flags: pd.DataFrame
    kept: np.ndarray  # the positions, in the given rows, of the rows scored


def _plain(value: Any) -> Any:
    """A cell as `check_values` reads it: None for every kind of missing, Python scalars otherwise."""
    if value is None or (not isinstance(value, (str, bytes, np.ndarray)) and pd.isna(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _image_problem(image: Any, size: int, reason: Any = None) -> str | None:
    if not isinstance(image, np.ndarray):
        return reason if isinstance(reason, str) and reason else "missing"
    if image.shape != (size, size) or image.dtype != np.uint8:
        return (f"{'x'.join(map(str, image.shape))} {image.dtype} pixels; the bundle reads {size}x{size} uint8 "
                "images letterboxed as in training")
    return None


def _disagreeing(rows: pd.DataFrame, ids: pd.Series, column: str | None) -> dict[str, str]:
    """Patients whose rows (several images of one patient) give different values of ``column``."""
    if column is None or column not in rows or not ids.duplicated().any():
        return {}
    counts = rows.groupby(ids.to_numpy())[column].nunique(dropna=False)
    return {str(pid): column for pid in counts.index[counts > 1]}


def check_rows(rows: pd.DataFrame, bundle: Bundle, site: str | None = None) -> CheckedRows:
    """Split cohort rows into patients to score (with their flags) and refused rows, by the rule above."""
    size, required = bundle.image_size, bundle.required
    ids = rows["patient_id"].astype(str)
    conflicts = {**_disagreeing(rows, ids, site), **_disagreeing(rows, ids, OUTCOME)}
    patients, keep, refused = [], [], []
    for i, (pid, record) in enumerate(zip(ids, rows.to_dict("records"), strict=True)):
        patient = check_values(pid, {n: _plain(record.get(n)) for n in INPUT_FEATURES}, required)
        problem = _image_problem(record.get("image"), size, record.get("image_problem"))
        if problem:
            patient.problems.append(f"patient {pid}: image: {problem}")
        else:
            patient.image = record["image"]
        if _plain(record.get(OUTCOME)) not in (0, 1):
            patient.problems.append(f"patient {pid}: {OUTCOME}: missing or not 0/1 (validation needs the outcome)")
        if pid in conflicts:
            patient.problems.append(f"patient {pid}: {conflicts[pid]}: differs between the patient's rows")
        refused += [(pid, _plain(record.get("source_row")), line) for line in patient.problems]
        if not patient.problems:
            patients.append(patient)
            keep.append(i)
    return CheckedRows(patients, rows.iloc[keep].reset_index(drop=True),
                       pd.DataFrame(refused, columns=REFUSED_COLUMNS), input_flags(patients, bundle),
                       np.asarray(keep, dtype=int))


def input_flags(patients: list[Patient], bundle: Bundle) -> pd.DataFrame:
    """One row per input value the bundle never saw in training (`FLAG_COLUMNS`), checked input by input."""
    ranges = bundle.facts["training_ranges"]
    used = set(bundle.required)
    single = {name: {"numeric": {name: bounds}, "categories": {}} for name, bounds in ranges["numeric"].items()}
    single |= {name: {"numeric": {}, "categories": {name: seen}} for name, seen in ranges["categories"].items()}
    out = []
    for patient in patients:
        for name, one in single.items():  # range_warnings reads the row with .get: the plain dict is enough
            out += [(patient.patient_id, name, patient.values.get(name), name in used, reason)
                    for reason in range_warnings(patient.values, one)]
    return pd.DataFrame(out, columns=FLAG_COLUMNS)


def flag_counts(flags: pd.DataFrame, n_patients: int) -> pd.DataFrame:
    """Per input: how many scored patients carry a value the bundle never saw, and which values."""
    columns = ["input", "used_by_model", "n_patients", "share", "values"]
    if flags.empty:
        return pd.DataFrame(columns=columns)
    table = flags.groupby("input", sort=False).agg(used_by_model=("used_by_model", "first"),
                                                   n_patients=("patient_id", "nunique"),
                                                   values=("value", lambda v: ", ".join(sorted(set(map(str, v))))))
    table["share"] = table["n_patients"] / n_patients
    return table.reset_index()[columns].sort_values(["used_by_model", "n_patients"], ascending=False)


@dataclass
class Overlap:
    """How much of a cohort the bundle was trained on (`training_overlap`)."""

    recorded: bool
    in_training: np.ndarray  # per cohort row: its image's decoded pixels are a training image's
    images: int = 0  # the cohort's images seen in training ...
    of_images: int = 0  # ... of its images with a pixel checksum
    persons: int = 0  # the cohort's persons whose ID is a training person's ID ...
    of_persons: int = 0  # ... of its persons

    @property
    def external(self) -> bool:
        """Whether no image of the cohort was a training image (known only when both sides are recorded)."""
        return self.recorded and self.of_images > 0 and self.images == 0

    @property
    def statement(self) -> str:
        """One sentence for the report's title, tables and the command's output."""
        if not self.recorded:
            return UNRECORDED
        if self.of_images == 0:
            return "the cohort's images carry no pixel checksums: cannot tell whether this is an external validation"
        if self.images:
            return (f"{self.images} of {self.of_images} images were in the training set: this is not an external "
                    "validation")
        ids = (f"; {self.persons} of {self.of_persons} person IDs are IDs of training persons (IDs can coincide "
               "between cohorts: the images decide)") if self.persons else ""
        return f"none of the {self.of_images} images was in the training set{ids}"

    def facts(self) -> dict[str, Any]:
        return {"recorded": self.recorded, "images": self.images, "of_images": self.of_images,
                "persons": self.persons, "of_persons": self.of_persons, "external": self.external,
                "statement": self.statement}


def training_overlap(rows: pd.DataFrame, bundle: Bundle) -> Overlap:
    """The cohort rows whose image the bundle was trained on (by decoded-pixel checksum, ``pixel_sha256``),
    and how many of the cohort's persons (``person_id``, else ``patient_id``) carry the ID of a training
    person. A bundle made before the training set was recorded: ``recorded`` False."""
    data = bundle.facts.get("data") or {}
    pixels = rows["pixel_sha256"] if "pixel_sha256" in rows else pd.Series(None, index=rows.index, dtype=object)
    if "pixel_sha256" not in data:
        return Overlap(False, np.zeros(len(rows), dtype=bool))
    seen = pixels.isin(set(data["pixel_sha256"])).to_numpy()
    column = "person_id" if "person_id" in rows else "patient_id"
    persons = {person_digest(pid, data["spreadsheet_sha256"]) for pid in rows[column].astype(str)}
    return Overlap(True, seen, int(seen.sum()), int(pixels.notna().sum()),
                   len(persons & set(data.get("person_id_sha256", []))), len(persons))
