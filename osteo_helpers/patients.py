"""New patients for `predict`: clinical inputs and knee images, checked before anything is scored.

Inputs use the tidy names of the cohort table (``tabular.INPUT_FEATURES``), from command-line
options or a CSV file with a ``patient_id`` column; a number named for its unit (``height_m``) may
instead be given in any other unit a cohort spec accepts (``height_cm``, ``height_in``:
`UNIT_FIELDS`). Every problem is collected as one line naming the patient and the field, so a batch
reports all its bad rows at once; nothing is scored until the inputs are known to be good (or the
bad rows are explicitly skipped). A value outside its hard limit (`data.plausibility.HARD_LIMITS`:
an age of 300) is such a problem, and when it is plausible in another unit the line says which
(``--height-m 162``: did you mean centimetres?). Images are read in every format a cohort may hold
(JPEG, PNG, TIFF, BMP, DICOM); one that is not a knee radiograph is refused or flagged by the check
of `radiograph_check`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data import IMAGE_EXTENSIONS, DataValidationError, find_images
from .data.errors import separator_note, some_columns
from .data.plausibility import likely_unit, value_problem
from .errors import UsageError
from .radiograph_check import radiograph_problems
from .vocabulary import (
    BOOLEAN_FEATURES,
    CATEGORICAL_FEATURES,
    CATEGORY_SPELLINGS,
    FALSE_WORDS,
    FIELDS,
    INPUT_FEATURES,
    NUMBER_FIELDS,
    TRUE_WORDS,
    UNIT_FIELDS,
    UNIT_NAMES,
    UNITS,
    field_of,
    spellings,
)


class BadInputError(UsageError):
    """One or more bad inputs; each problem is one line naming the patient and the field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass
class Patient:
    """One patient's checked inputs: tidy clinical values (None = missing) and the letterboxed image."""

    patient_id: str
    values: dict[str, Any]
    image: np.ndarray | None = None
    problems: list[str] = field(default_factory=list)
    #: things to say beside the score (the image was not recognised as a knee radiograph)
    flags: list[str] = field(default_factory=list)


def _is_missing(raw: Any) -> bool:
    return raw is None or (isinstance(raw, float) and math.isnan(raw)) or (isinstance(raw, str) and not raw.strip())


def parse_field(name: str, raw: Any) -> Any:
    """A tidy value for one allow-list field; ValueError with the reason when it is not one."""
    if _is_missing(raw):
        return None
    text = str(raw).strip()
    if name in NUMBER_FIELDS:
        try:
            number = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not math.isfinite(number):
            raise ValueError(f"{text!r} is not a finite number")
        return number
    if name in BOOLEAN_FEATURES:
        word = text.lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
        raise ValueError(f"{text!r} is not yes or no")
    if name in CATEGORICAL_FEATURES:
        spellings = CATEGORY_SPELLINGS[name]
        key = " ".join(text.lower().split())
        if key not in spellings:
            raise ValueError(f"{text!r} is not one of {', '.join(sorted(spellings))}")
        return spellings[key]
    raise ValueError(f"{name!r} is not a clinical input")


def check_values(patient_id: str, raw: Mapping[str, Any], required: tuple[str, ...], options: bool = False
                 ) -> Patient:
    """Parse every given field (`FIELDS`: a number in any of its units, converted to the input's own); a problem
    line for each bad value and each missing required one. ``options``: the fields came as command-line options
    (``--height-cm``), not CSV columns, which is how a line names them."""
    def named(field: str) -> str:
        return f"--{field.replace('_', '-')}" if options else field

    patient = Patient(patient_id, {name: None for name in INPUT_FEATURES})
    for name in INPUT_FEATURES:
        given = [(field, unit) for field, unit in spellings(name) if not _is_missing(raw.get(field))]
        if len(given) > 1:
            patient.problems.append(f"patient {patient_id}: {name}: given twice, as "
                                    f"{' and '.join(named(field) for field, _ in given)}; give one")
            continue
        if not given:
            if name in required:
                patient.problems.append(f"patient {patient_id}: {name}: missing (required by the model)")
            continue
        field, unit = given[0]
        try:
            value = parse_field(name, raw[field])
        except ValueError as exc:
            patient.problems.append(f"patient {patient_id}: {field}: {exc}")
            continue
        impossible = value_problem(name, value, unit)
        if impossible:
            meant = likely_unit(name, value, unit)
            if meant:
                other = field_of(name, meant)
                impossible += (f"; did you mean {UNIT_NAMES[meant]} "
                               + (f"({named(other)} {str(raw[field]).strip()})?" if options else f"(column {other})?"))
            patient.problems.append(f"patient {patient_id}: {field}: {impossible}")
            continue
        patient.values[name] = value * UNITS[name][unit] if unit else value
    return patient


def load_image(patient: Patient, path: Path | None, size: int) -> None:
    """Check the file is a knee radiograph (`radiograph_check`), then decode it as the training images were
    (letterboxed to `size`); or record why not."""
    from .images import decode_letterbox  # deferred: imports scipy and tqdm

    if path is None:
        return
    if not Path(path).is_file():
        patient.problems.append(f"patient {patient.patient_id}: image: {path}: no such file")
        return
    try:
        refused, flag = radiograph_problems(Path(path))
        if refused:
            patient.problems.append(f"patient {patient.patient_id}: image: {path}: {refused}")
            return
        patient.image = decode_letterbox(Path(path), size)
    except DataValidationError as exc:
        reason = str(exc).split(": ", 1)[-1]
        patient.problems.append(f"patient {patient.patient_id}: image: {path}: {reason}")
        return
    if flag:
        patient.flags.append(f"image: {flag}")


def single_patient(values: Mapping[str, Any], image: str | None, patient_id: str | None,
                   required: tuple[str, ...], size: int) -> list[Patient]:
    """The patient of the single form (`--image` and options); the ID defaults to the image's file stem."""
    pid = patient_id or (Path(image).stem if image else "without an ID")  # "patient without an ID: ..."
    patient = check_values(pid, values, required, options=True)
    if not image:
        patient.problems.append(f"patient {pid}: image: missing (give --image)")
    else:
        load_image(patient, Path(image), size)
    return [patient]


def read_clinical_csv(path: Path) -> pd.DataFrame:
    """The batch's CSV as text cells; UsageError naming the file for anything but a table of inputs."""
    if not path.is_file():
        raise UsageError(f"--clinical {path}: no such file")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises many types for a file that is not a CSV table
        raise UsageError(f"--clinical {path}: cannot be read as CSV ({type(exc).__name__}: {exc})") from exc
    table.columns = [str(c).strip() for c in table.columns]
    if "patient_id" not in table.columns:
        separator = separator_note(table.columns)
        raise UsageError(f"--clinical {path}: " + (f"read as one column: {separator}; save it with commas" if separator
                         else f"no patient_id column (it has {len(table.columns)}: "
                              f"{some_columns(table.columns, ['patient_id'])})"))
    unknown = [c for c in table.columns if c != "patient_id" and c not in FIELDS]
    if unknown:
        raise UsageError(f"--clinical {path}: column(s) {some_columns(unknown)} are not clinical inputs; "
                         f"known: patient_id, {', '.join(INPUT_FEATURES)} (numbers also in other units: "
                         f"{', '.join(UNIT_FIELDS)})")
    for name in INPUT_FEATURES:
        twice = [field for field, _ in spellings(name) if field in table.columns]
        if len(twice) > 1:
            raise UsageError(f"--clinical {path}: columns {' and '.join(twice)} both give {name}; keep one")
    return table


def batch_patients(clinical: Path, images: Path, required: tuple[str, ...], size: int) -> list[Patient]:
    """Every row of the CSV, matched to its image in the folder by patient ID (the file stem, any
    image extension, at any depth, as in the dataset; a DICOM file may have no extension)."""
    table = read_clinical_csv(clinical)
    if not images.is_dir():
        raise UsageError(f"--images {images}: no such folder")
    try:
        found = find_images(images)
    except DataValidationError as exc:
        raise UsageError(f"--images {images}: {exc}") from exc
    patients: list[Patient] = []
    ids = table["patient_id"].str.strip()
    for line, (pid, row) in enumerate(zip(ids, table.to_dict("records"), strict=True), start=2):
        if not pid:
            patients.append(Patient(f"(row {line})", {}, problems=[
                f"patient (row {line} of {clinical.name}): patient_id: missing"]))
            continue
        patient = check_values(pid, row, required)
        if (ids == pid).sum() > 1:
            rows = ", ".join(str(i + 2) for i in np.flatnonzero(ids.to_numpy() == pid))
            patient.problems.append(f"patient {pid}: patient_id: appears in rows {rows} of {clinical.name}")
        if pid not in found:
            extensions = ", ".join(sorted(IMAGE_EXTENSIONS))
            patient.problems.append(f"patient {pid}: image: no file named {pid}.* ({extensions}) or {pid} (DICOM) "
                                    f"in {images}")
        else:
            load_image(patient, found[pid], size)
        patients.append(patient)
    if not patients:
        raise UsageError(f"--clinical {clinical}: holds no patients")
    return patients


def as_rows(patients: list[Patient]) -> pd.DataFrame:
    """The patients as the rows an arm predicts from: every allow-list column with the cohort's dtypes,
    and ``image``."""
    table = pd.DataFrame({"patient_id": [p.patient_id for p in patients]})
    for name in INPUT_FEATURES:
        values = [p.values.get(name) for p in patients]
        if name in BOOLEAN_FEATURES:
            table[name] = pd.array([pd.NA if v is None else v for v in values], dtype="boolean")
        elif name in CATEGORICAL_FEATURES:
            table[name] = pd.Series(values, dtype=object)
        else:
            table[name] = pd.Series([np.nan if v is None else v for v in values], dtype=float)
    table["image"] = [p.image for p in patients]
    return table
