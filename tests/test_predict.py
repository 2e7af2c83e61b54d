"""`predict` as a clinic uses it (issue 32.5): DICOM images, alone or in a batch folder (with or without an
extension), and clinical values in the units a cohort spec accepts, as options and as CSV columns.

The DICOM files are written in tmp_path from real images of the dataset: the original JPEG bitstream
encapsulated (as `osteo cohort export` writes it) and a 16-bit MONOCHROME1 file of the decoded pixels.
The bundle is the session's synthetic one (tests/conftest.py); nothing here trains.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from osteo_helpers.cli import main
from osteo_helpers.data.export import _jpeg_to_dicom
from osteo_helpers.data.image_readers import read_grayscale
from osteo_helpers.patients import batch_patients, check_values, single_patient
from tests.test_cohort import write_dicom

REQUIRED = ("age_years", "sex")


@pytest.fixture(scope="module")
def env(bundle_env):
    return bundle_env


@pytest.fixture(scope="module")
def real_knees(real_data_dir) -> list[Path]:
    """Three real radiographs: a grey JPEG of 1024 px, another, and a colour-mode JPEG of 2660 x 2180 px."""
    paths = sorted(p for p in real_data_dir.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    assert len(paths) == 239
    return [paths[0], paths[100], paths[200]]


def monochrome1_16bit(source: Path, target: Path) -> Path:
    """The decoded pixels of ``source`` as a 12-bit-in-16 MONOCHROME1 DICOM (bright = low values)."""
    gray = read_grayscale(source)
    return write_dicom(target, np.rint((1 - gray) * 4095).astype(np.uint16), PhotometricInterpretation="MONOCHROME1",
                       BitsStored=12, HighBit=11)


def _predict(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["predict", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.realdata
def test_one_patient_from_a_dicom_file_is_scored_from_the_pixels_of_its_jpeg(real_knees, synthetic_bundle, env,
                                                                            tmp_path, capsys):
    size = synthetic_bundle.bundle.image_size
    for knee in real_knees:
        dicom = tmp_path / f"{knee.stem}.dcm"
        _jpeg_to_dicom(knee, dicom, knee.stem)
        from_dicom = single_patient({"age_years": "60", "sex": "female"}, str(dicom), None, REQUIRED, size)[0]
        from_jpeg = single_patient({"age_years": "60", "sex": "female"}, str(knee), None, REQUIRED, size)[0]
        assert from_dicom.problems == [] and from_dicom.flags == [], from_dicom
        np.testing.assert_array_equal(from_dicom.image, from_jpeg.image)
    out = tmp_path / "one.csv"
    code, stdout, err = _predict(capsys, "--model", str(synthetic_bundle.folder), "--image", str(dicom), "--age", "60",
                                 "--sex", "female", "--height-cm", "162", "--weight-lb", "150", "--out", str(out))
    assert code == 0, err
    assert pd.read_csv(out, dtype={"patient_id": str})["patient_id"].tolist() == [real_knees[-1].stem]


@pytest.mark.realdata
def test_a_batch_folder_of_dicoms_with_and_without_extension(real_knees, synthetic_bundle, env, tmp_path, capsys):
    """`--images FOLDER` finds `A.dcm`, `B.DCM` and `C` (no extension: the DICOM preamble says what it is);
    the MONOCHROME1 16-bit file gives the pixels of its JPEG (inverted once, scaled by its range)."""
    folder = tmp_path / "knees"
    (folder / "ward2").mkdir(parents=True)
    _jpeg_to_dicom(real_knees[0], folder / "A.dcm", "A")
    _jpeg_to_dicom(real_knees[1], folder / "ward2" / "B.DCM", "B")
    monochrome1_16bit(real_knees[2], folder / "C")
    (folder / "notes").write_text("a file without an extension that is not DICOM\n")
    rows = tmp_path / "rows.csv"
    pd.DataFrame({"patient_id": ["A", "B", "C"], "age_years": [60, 71, 55], "sex": ["female", "male", "female"],
                  "height_cm": [158, 171, ""], "weight_lb": [130, "", 176]}).to_csv(rows, index=False)
    size = synthetic_bundle.bundle.image_size
    patients = batch_patients(rows, folder, REQUIRED, size)
    assert [(p.patient_id, p.problems, p.flags) for p in patients] == [("A", [], []), ("B", [], []), ("C", [], [])]
    for patient, knee in zip(patients, real_knees, strict=True):
        jpeg = single_patient({"age_years": "60", "sex": "female"}, str(knee), None, REQUIRED, size)[0].image
        assert np.abs(patient.image.astype(int) - jpeg.astype(int)).mean() < 4, patient.patient_id
    assert patients[0].values["height_m"] == pytest.approx(1.58) and patients[2].values["height_m"] is None
    assert patients[0].values["weight_kg"] == pytest.approx(130 * 0.45359237)
    out = tmp_path / "many.csv"
    code, _, err = _predict(capsys, "--model", str(synthetic_bundle.folder), "--clinical", str(rows), "--images",
                            str(folder), "--out", str(out))
    assert code == 0, err
    assert pd.read_csv(out, dtype={"patient_id": str})["patient_id"].tolist() == ["A", "B", "C"]


def test_every_unit_of_the_cohort_spec_is_accepted_and_converted():
    """The units of `tabular.UNITS` (those a cohort spec accepts), as `<input>_<unit>`: the same tidy values."""
    metric = check_values("p", {"height_m": "1.62", "weight_kg": "68", "max_walking_km": "2"}, ())
    for raw in ({"height_cm": "162", "weight_lb": str(68 / 0.45359237), "max_walking_m": "2000"},
                {"height_in": str(1.62 / 0.0254), "weight_kg": "68", "max_walking_mi": str(2 / 1.609344)}):
        other = check_values("p", raw, ())
        assert other.problems == []
        for name in ("height_m", "weight_kg", "max_walking_km"):
            assert other.values[name] == pytest.approx(metric.values[name]), name


def test_a_height_in_centimetres_warns_as_the_same_height_in_metres(synthetic_bundle, env, tmp_path, capsys):
    """Outside the training range (synthetic heights 1.45-1.8 m) in either unit: the same warning."""
    image = str(synthetic_bundle.dataset.images["N1"])
    warnings = []
    for option, value in (("--height-m", "1.95"), ("--height-cm", "195"), ("--height-in", str(1.95 / 0.0254))):
        out = tmp_path / f"{option}.csv"
        code, _, err = _predict(capsys, "--model", str(synthetic_bundle.folder), "--image", image, "--age", "60",
                                "--sex", "female", option, value, "--out", str(out))
        assert code == 0, err
        warnings.append(pd.read_csv(out, keep_default_na=False).loc[0, "warnings"])
    assert "height_m 1.95 outside the training range" in warnings[0] and warnings == [warnings[0]] * 3


def test_the_help_names_every_unit_option():
    from osteo_helpers.cli import build_parser

    text = build_parser()._subparsers._group_actions[0].choices["predict"].format_help()
    for option in ("--height-m", "--height-cm", "--height-in", "--weight-kg", "--weight-lb", "--max-walking-m",
                   "--max-walking-mi", "DICOM", "height_cm"):
        assert option in text, option
