"""Writing a cohort as another site would hold it: a renamed table in other units, images, and its spec.

The export is how the tests get a second cohort from the published one: a CSV table with a hospital
export's column names (weight in pounds, height in centimetres, ``Y``/``N`` flags, a ``Site`` column
holding the acquisition batch), one image per row and the ``cohort.toml`` that maps it back. DICOM
images carry the original JPEG bitstream encapsulated (JPEG Baseline transfer syntax), so the export
decodes to the very pixels of the source; PNG images hold the decoded pixels losslessly. The folder
is written beside its destination and renamed into place: nothing is half-written.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
from PIL import Image

from ..errors import UsageError
from ..fileio import atomic_write_text
from ..folders import check_output_folder
from ..tasks import CLASSES_3
from ..vocabulary import BOOLEAN_FEATURES, CATEGORICAL_FEATURES, CATEGORY_VALUES, UNITS
from .cohort import Cohort
from .errors import ImageReadError
from .manifest import modelling_table
from .spec import GENERIC_DERIVED, CohortSpec

#: canonical input -> (the export's column, its unit)
EXPORT_COLUMNS: dict[str, tuple[str, str | None]] = {
    "age_years": ("AgeYears", "years"), "height_m": ("Height_cm", "cm"), "weight_kg": ("Weight_lb", "lb"),
    "bmi": ("BMI", "kg/m2"), "max_walking_km": ("WalkingDistance_m", "m"),
    "menopause_age_years": ("MenopauseAge", "years"), "pregnancies": ("Parity", "count"), "sex": ("Sex", None),
}
SEX_CODES = {"female": "F", "male": "M"}
SPEC_NAME = "cohort.toml"
TABLE_NAME = "cohort.csv"


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


def export_table(clinical: pd.DataFrame, manifest: pd.DataFrame, spec: CohortSpec, images: dict[str, str]
                 ) -> tuple[pd.DataFrame, dict[str, dict[str, Any]]]:
    """The exported table and, per canonical input, its spec entry."""
    man = manifest.set_index("patient_id")
    out = pd.DataFrame({"StudyID": clinical["patient_id"]})
    if "person_id" in clinical:
        out["PersonID"] = clinical["person_id"]
    out["Site"] = man.loc[clinical["patient_id"], "batch"].to_numpy()
    out["ImageFile"] = [images.get(pid, "") for pid in clinical["patient_id"]]
    entries: dict[str, dict[str, Any]] = {}
    for name in spec.inputs:
        if name in GENERIC_DERIVED or name not in clinical:
            continue
        column, unit = EXPORT_COLUMNS.get(name, (_camel(name), None))
        values = clinical[name]
        if name == "sex":
            out[column] = values.map(SEX_CODES)
            entries[name] = {"column": column, "values": {code: sex for sex, code in SEX_CODES.items()}}
        elif name in BOOLEAN_FEATURES:
            out[column] = [None if pd.isna(v) else ("Y" if v else "N") for v in values]
            entries[name] = {"column": column, "values": {"Y": True, "N": False}}
        elif name in CATEGORICAL_FEATURES:
            out[column] = values.astype(object).where(values.notna(), None)
            entries[name] = {"column": column, "values": {v: v for v in CATEGORY_VALUES[name]}}
        else:
            unit = unit or next(iter(UNITS.get(name, {"": 1.0})))
            factor = UNITS.get(name, {}).get(unit, 1.0)
            out[column] = values if factor == 1.0 else values / factor
            entries[name] = {"column": column, "unit": unit}
    out["T_Score"] = clinical["t_score"]
    if "z_score" in clinical:
        out["Z_Score"] = clinical["z_score"]
    out["WHO_Class"] = clinical["diagnosis"].str.capitalize()
    return out, entries


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    return json.dumps(value)


def spec_text(source: CohortSpec, entries: dict[str, dict[str, Any]], has_person: bool, fmt: str) -> str:
    """The exported cohort's spec (TOML)."""
    lines = [f"# {source.title}, exported by `osteo cohort export --format {fmt}` from {Path(source.source).name}.",
             "", "[cohort]", f"name = {json.dumps(source.name + '-export')}",
             f"title = {json.dumps(source.title + ' (export)')}", f"citation = {json.dumps(source.citation)}",
             'root = "."', "", "[table]", f'file = "{TABLE_NAME}"', 'id = "StudyID"', 'site = "Site"']
    if has_person:
        lines.append('person = "PersonID"')
    lines += ["", "[images]", 'column = "ImageFile"', "", "[outcome]", 'class = "WHO_Class"',
              f"class_values = {_toml_value({c.capitalize(): c for c in CLASSES_3})}"]
    if source.t_score is not None:
        lines += ['t_score = "T_Score"', f"t_score_method = {json.dumps(source.t_score_method)}"]
    if source.z_score is not None:
        lines.append('z_score = "Z_Score"')
    lines += ["", "[inputs]"]
    lines += [f"{name} = {_toml_value(entry)}" for name, entry in entries.items()]
    return "\n".join(lines) + "\n"


def _jpeg_to_dicom(source: Path, target: Path, patient_id: str) -> None:
    """A DICOM file holding the source JPEG's bitstream as its one frame (JPEG Baseline transfer syntax)."""
    from pydicom.dataset import Dataset, FileMetaDataset  # deferred: imports pydicom
    from pydicom.encaps import encapsulate  # deferred: imports pydicom
    from pydicom.uid import JPEGBaseline8Bit, generate_uid  # deferred: imports pydicom

    data = source.read_bytes()
    with Image.open(source) as im:
        if im.format != "JPEG" or im.mode not in ("L", "RGB"):
            raise ImageReadError(f"{source}: a DICOM export needs an 8-bit grey or RGB JPEG, not {im.format} {im.mode}")
        width, height, mode = im.width, im.height, im.mode
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[patient_id, "sop"])
    meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=[patient_id, "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=[patient_id, "series"])
    ds.PatientID, ds.Modality, ds.BodyPartExamined = patient_id, "DX", "KNEE"
    ds.Rows, ds.Columns = height, width
    ds.SamplesPerPixel = 1 if mode == "L" else 3
    ds.PhotometricInterpretation = "MONOCHROME2" if mode == "L" else "YBR_FULL_422"
    if mode == "RGB":
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.LossyImageCompression = "01"
    ds.PixelData = encapsulate([data])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    ds.save_as(target, enforce_file_format=True)


def _to_png(source: Path, target: Path) -> None:
    with Image.open(source) as im:
        im.load()
        im.save(target, format="PNG")


def export_cohort(to: str | os.PathLike, fmt: str = "dicom", spec: str | os.PathLike | None = None,
                  data_dir: str | os.PathLike | None = None) -> Path:
    """Write the cohort (default: the published dataset) into the new or empty folder ``to`` as a CSV
    table, images (``dicom`` or ``png``) and its spec; returns the spec's path."""
    if fmt not in ("dicom", "png"):
        raise UsageError(f"--format {fmt!r}: choose dicom or png")
    cohort = Cohort.open(spec, data_dir)
    target = check_output_folder(to, "--to", cohort.root)
    if target.exists() and any(target.iterdir()):
        raise UsageError(f"--to {target}: already holds files; give a new or empty folder")
    manifest = cohort.manifest()
    rows = modelling_table(manifest, cohort.clinical)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.export-") as tmp:
        staged = Path(tmp) / "cohort"
        (staged / "images").mkdir(parents=True)
        images = {}
        for pid, rel in zip(rows["patient_id"], rows["image_path"], strict=True):
            name = f"images/{pid}.{'dcm' if fmt == 'dicom' else 'png'}"
            if fmt == "dicom":
                _jpeg_to_dicom(cohort.root / rel, staged / name, pid)
            else:
                _to_png(cohort.root / rel, staged / name)
            images[pid] = name
        table, entries = export_table(cohort.clinical, manifest, cohort.spec, images)
        table.to_csv(staged / TABLE_NAME, index=False)
        atomic_write_text(staged / SPEC_NAME, spec_text(cohort.spec, entries, "PersonID" in table, fmt))
        if target.exists():
            target.rmdir()
        staged.rename(target)
    return target / SPEC_NAME
