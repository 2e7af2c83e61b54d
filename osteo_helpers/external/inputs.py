"""Which rows of a cohort a saved bundle scores, and which of their inputs it never saw.

The rule (book/methods.md repeats it):

- **Refused, never scored** (one line each in ``refused.csv``, naming the patient and the field):
  what `predict` refuses (a missing image, a missing input the saved arms use, a value that is
  not a number or not finite, a category outside the project's vocabulary), an image that is not
  letterboxed at the bundle's size, a row without the outcome (validation needs the truth), and
  rows of one patient that disagree on the outcome or the site.
- **Scored and flagged**: a value outside the bundle's training range, or a category never seen
  in training (`bundle.range_warnings`, the rule `predict` warns by). Every flag is a row of the
  flag table (``unseen_inputs.csv`` counts them per input); a flag on an input the saved arms use
  sets ``outside_training``, and the metrics are given again without those patients. Flags on
  inputs the arms ignore are listed but cannot change a score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..bundle import Bundle, range_warnings
from ..patients import Patient, check_values
from ..tabular import INPUT_FEATURES

OUTCOME = "label_binary"
FLAG_COLUMNS = ["patient_id", "input", "value", "used_by_model", "reason"]


@dataclass
class CheckedRows:
    """The outcome of `check_rows`: patients to score (with their rows), refusals and flags."""

    patients: list[Patient]
    rows: pd.DataFrame
    refused: pd.DataFrame
    flags: pd.DataFrame


def _plain(value: Any) -> Any:
    """A cell as `check_values` reads it: None for every kind of missing, Python scalars otherwise."""
    if value is None or (not isinstance(value, (str, bytes, np.ndarray)) and pd.isna(value)):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _image_problem(image: Any, size: int) -> str | None:
    if not isinstance(image, np.ndarray):
        return "missing"
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
        problem = _image_problem(record.get("image"), size)
        if problem:
            patient.problems.append(f"patient {pid}: image: {problem}")
        else:
            patient.image = record["image"]
        if _plain(record.get(OUTCOME)) not in (0, 1):
            patient.problems.append(f"patient {pid}: {OUTCOME}: missing or not 0/1 (validation needs the outcome)")
        if pid in conflicts:
            patient.problems.append(f"patient {pid}: {conflicts[pid]}: differs between the patient's rows")
        refused += [(pid, line) for line in patient.problems]
        if not patient.problems:
            patients.append(patient)
            keep.append(i)
    return CheckedRows(patients, rows.iloc[keep].reset_index(drop=True),
                       pd.DataFrame(refused, columns=["patient_id", "problem"]), input_flags(patients, bundle))


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
