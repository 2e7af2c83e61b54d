"""Cohorts as inputs: specs and their errors, DICOM decoding, several images per person, the export.

Small cohorts are written by the tests (CSV or Excel tables, PNG or DICOM images); the equivalence
of the published dataset and its DICOM export runs on the real data.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from osteo_helpers import data, folders
from osteo_helpers.cli import main
from osteo_helpers.data import image_readers
from osteo_helpers.images import decode_letterbox
from tests.conftest import TOY_SETTINGS

BASE_SPEC = """
[cohort]
name = "tiny"
citation = "written by tests/test_cohort.py"
root = "."

[table]
file = "table.csv"
id = "Exam"
{table_extra}

[images]
column = "File"

[outcome]
t_score = "TScore"
t_score_method = "DXA"

[inputs]
age_years = {{ column = "Age" }}
sex = {{ column = "Sex", values = {{ F = "female", M = "male" }} }}
height_m = {{ column = "Height", unit = "cm" }}
weight_kg = {{ column = "Weight", unit = "lb" }}
{inputs_extra}
"""


def tiny_cohort(root: Path, persons: int = 12, knees: int = 1, table_extra: str = "", inputs_extra: str = "",
                edit=None) -> Path:
    """A CSV cohort of ``persons`` x ``knees`` rows with small PNG images; returns the spec's path."""
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    (root / "img").mkdir(exist_ok=True)
    rows = []
    for p in range(persons):
        t = [-0.2, -1.8, -3.0][p % 3] + rng.uniform(-0.3, 0.3)
        for k in range(knees):
            exam = f"E{p:02d}{'LR'[k] if knees > 1 else ''}"
            pixels = rng.integers(0, 255, (32, 40), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(root / "img" / f"{exam}.png")
            rows.append({"Exam": exam, "Person": f"P{p:02d}", "Knee": "LR"[k], "File": f"img/{exam}.png",
                         "Age": 50 + p, "Sex": "FM"[p % 2], "Height": 150 + p, "Weight": 130 + 3 * p,
                         "TScore": round(t, 2), "Smoking": ["yes", "no"][p % 2]})
    table = pd.DataFrame(rows)
    if edit is not None:
        table = edit(table)
    table.to_csv(root / "table.csv", index=False)
    spec = root / "cohort.toml"
    spec.write_text(BASE_SPEC.format(table_extra=table_extra, inputs_extra=inputs_extra))
    return spec


def _check(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main(["cohort", "check", *argv])
    out, err = capsys.readouterr()
    return rc, out, err


# ----------------------------------------------------------------------------- specs


def test_tiny_cohort_reads_units_values_and_person(tmp_path, capsys):
    spec = tiny_cohort(tmp_path / "c", knees=2, table_extra='person = "Person"\nknee_side = "Knee"',
                       inputs_extra='smoker = { column = "Smoking" }')
    cohort = data.Cohort.open(spec)
    clin = cohort.clinical
    assert clin.loc[0, "height_m"] == pytest.approx(1.50)
    assert clin.loc[0, "weight_kg"] == pytest.approx(130 * 0.45359237)
    assert set(clin["sex"]) == {"female", "male"} and str(clin["smoker"].dtype) == "boolean"
    assert clin["bmi"].notna().all()  # derived from weight and height: the spec gives none
    assert list(clin.drop_duplicates("person_id")["diagnosis"][:3]) == ["normal", "osteopenia", "osteoporosis"]
    man = cohort.manifest()
    assert (man.groupby("person_id")["split_group"].nunique() == 1).all()  # both knees: one split group
    assert man["split_group"].nunique() == 12
    rc, out, err = _check(capsys, str(spec), "--json")
    findings = json.loads(out)
    assert rc == 0 and err == ""
    for key in ("patients", "images", "rows_without_image", "images_without_row", "duplicate_groups",
                "cross_class_duplicate_groups", "label_tscore_mismatches", "duplicate_clinical_records"):
        assert key in findings, key
    assert findings["patients"] == 24 and findings["images"] == 24


def test_excel_table_with_a_sheet(tmp_path):
    spec = tiny_cohort(tmp_path / "c")
    table = pd.read_csv(tmp_path / "c" / "table.csv")
    with pd.ExcelWriter(tmp_path / "c" / "table.xlsx") as writer:
        pd.DataFrame({"note": ["not this sheet"]}).to_excel(writer, sheet_name="readme", index=False)
        table.to_excel(writer, sheet_name="patients", index=False)
    spec.write_text(spec.read_text().replace('file = "table.csv"', 'file = "table.xlsx"\nsheet = "patients"'))
    assert list(data.Cohort.open(spec).clinical["patient_id"]) == list(table["Exam"])


def test_parquet_table(tmp_path):
    spec = tiny_cohort(tmp_path / "c")
    from_csv = data.Cohort.open(spec).clinical
    pd.read_csv(tmp_path / "c" / "table.csv").to_parquet(tmp_path / "c" / "table.parquet", index=False)
    spec.write_text(spec.read_text().replace('file = "table.csv"', 'file = "table.parquet"'))
    pd.testing.assert_frame_equal(data.Cohort.open(spec).clinical, from_csv)


def test_heights_in_centimetres_in_a_metre_column_are_a_unit_problem(tmp_path, capsys):
    spec = tiny_cohort(tmp_path / "c")
    spec.write_text(spec.read_text().replace('unit = "cm"', 'unit = "m"'))
    rc, out, _ = _check(capsys, str(spec), "--json")
    problems = json.loads(out)["unit_problems"]
    assert rc == 0 and len(problems) == 12
    assert {p["looks_like"] for p in problems} == {"cm"} and {p["column"] for p in problems} == {"Height"}
    rc, out, _ = _check(capsys, str(spec))
    assert "values that look like another unit: 12" in out and "E00: Height = 150 m (looks like cm)" in out


SPEC_ERRORS = [
    ("unknown key", lambda s: s.replace("[images]", "[images]\ncolumns = 'x'"), "[images] columns"),
    ("no ID", lambda s: s.replace('id = "Exam"', ""), "[table] id"),
    ("unknown unit", lambda s: s.replace('unit = "lb"', 'unit = "stone"'), "[inputs.weight_kg] unit"),
    ("unknown input", lambda s: s + 'shoe_size = { column = "Age" }\n', "[inputs.shoe_size]"),
    ("not a canonical value", lambda s: s.replace('M = "male"', 'M = "man"'), "[inputs.sex] values.M"),
    ("bad rule", lambda s: s + "occupation_group = { column = \"Sex\", rules = [['(', \"manual\"]] }\n",
     "[inputs.occupation_group] rules[0]"),
    ("images twice", lambda s: s.replace('column = "File"', 'column = "File"\npattern = "{id}.png"'), "[images]"),
    ("no method", lambda s: s.replace('t_score_method = "DXA"', ""), "[outcome] t_score_method"),
    ("no age", lambda s: s.replace('age_years = { column = "Age" }', ""), "[inputs.age_years]"),
    ("derived", lambda s: s + 'postmenopausal = { column = "Sex" }\n', "[inputs.postmenopausal]"),
    ("not TOML", lambda s: s + "[[[", "not valid TOML"),
    ("missing column", lambda s: s.replace('column = "Age"', 'column = "AgeAtScan"'), "'AgeAtScan'"),
]


@pytest.mark.parametrize("case,edit,key", SPEC_ERRORS, ids=[c[0] for c in SPEC_ERRORS])
def test_each_spec_error_is_one_line_naming_the_key_exit_2(tmp_path, capsys, case, edit, key):
    spec = tiny_cohort(tmp_path / "c")
    spec.write_text(edit(spec.read_text()))
    rc, out, err = _check(capsys, str(spec))
    assert rc == 2 and out == "", (case, out)
    assert len(err.strip().splitlines()) == 1 and key in err and "Traceback" not in err, err


def test_a_spec_that_is_not_there(tmp_path, capsys):
    rc, _, err = _check(capsys, str(tmp_path / "nowhere.toml"))
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "nowhere.toml: no such file" in err


def test_shipped_spec_is_the_published_dataset():
    from osteo_helpers import config, tabular

    spec = data.load_spec()
    assert spec.name == data.PUBLISHED and spec.table_file == config.SPREADSHEET_NAME
    assert spec.t_score_method == "QUS" and spec.batch_from_header
    assert set(spec.inputs) == set(tabular.INPUT_FEATURES) - {"postmenopausal", "years_since_menopause"}


# ----------------------------------------------------------------------------- DICOM


def write_dicom(path: Path, pixels: np.ndarray, **attrs) -> Path:
    """An uncompressed DICOM file of ``pixels`` (uint8 or uint16) with extra attributes."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Rows, ds.Columns = "DX", pixels.shape[0], pixels.shape[1]
    bits = pixels.dtype.itemsize * 8
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits, bits - 1, 0
    for key, value in attrs.items():
        setattr(ds, key, value)
    ds.PixelData = pixels.tobytes()
    ds.save_as(path, enforce_file_format=True)
    return path


def test_monochrome1_is_inverted_after_the_image_range(tmp_path):
    pixels = np.array([[0, 1000], [3000, 4000]], dtype=np.uint16)
    path = write_dicom(tmp_path / "m1.dcm", pixels, PhotometricInterpretation="MONOCHROME1", BitsStored=12,
                       HighBit=11, PixelSpacing=[0.15, 0.2])
    np.testing.assert_allclose(image_readers.read_grayscale(path), 1 - pixels / 4000, atol=1e-6)
    assert (decode_letterbox(path, 2) == np.rint((1 - pixels / 4000) * 255)).all()
    header = image_readers.image_header(path)
    assert header["pixel_spacing_row_mm"] == 0.15 and header["pixel_spacing_col_mm"] == 0.2 and header["mode"] == "I;16"


def test_voi_lut_and_window_are_applied(tmp_path):
    from pydicom.dataset import Dataset

    pixels = np.array([[0, 1, 2, 3]], dtype=np.uint16)
    lut = Dataset()
    lut.LUTDescriptor = [4, 0, 8]  # 4 entries, first stored value 0, 8-bit output
    lut.LUTData = np.array([10, 200, 30, 255], dtype=np.uint16).tobytes()
    path = write_dicom(tmp_path / "lut.dcm", pixels, VOILUTSequence=[lut])
    np.testing.assert_array_equal(decode_letterbox(path, 4)[1:2], [[10, 200, 30, 255]])  # padded above and below
    # a window of centre 2048 and width 1024 on 12-bit data (slope 2, intercept -100): clipped outside it
    values = np.array([[0, 1000, 1100, 1124, 1200, 4095]], dtype=np.uint16)
    win = write_dicom(tmp_path / "win.dcm", values, BitsStored=12, HighBit=11, WindowCenter=2048, WindowWidth=1024,
                      RescaleSlope=2, RescaleIntercept=-100)
    got = image_readers.read_grayscale(win)[0]
    x = values[0] * 2.0 - 100  # modality LUT
    expected = np.clip(((x - 2047.5) / 1023 + 0.5), 0, 1)  # DICOM LINEAR window, as pydicom applies it
    np.testing.assert_allclose(got, expected, atol=1e-6)


def _broken_dicoms(folder: Path) -> dict[str, Path]:
    good = write_dicom(folder / "good.dcm", np.zeros((40, 40), np.uint8))  # a size the image limits accept
    out = {"not DICOM": folder / "garbage.dcm", "no pixel data": folder / "nopixels.dcm",
           "truncated pixels": folder / "short.dcm"}
    out["not DICOM"].write_bytes(b"this is not a DICOM file" * 20)
    import pydicom

    ds = pydicom.dcmread(good)
    del ds.PixelData
    ds.save_as(out["no pixel data"])
    write_dicom(out["truncated pixels"], np.zeros((40, 40), np.uint8))
    ds = pydicom.dcmread(out["truncated pixels"])
    ds.PixelData = ds.PixelData[:20]
    ds.save_as(out["truncated pixels"])
    return out


@pytest.mark.parametrize("kind", ["not DICOM", "no pixel data", "truncated pixels"])
def test_each_unreadable_dicom_is_exit_2_with_one_line(tmp_path, capsys, kind):
    spec = tiny_cohort(tmp_path / "c")
    broken = _broken_dicoms(tmp_path / "c" / "img")[kind]
    table = pd.read_csv(tmp_path / "c" / "table.csv")
    table.loc[3, "File"] = f"img/{broken.name}"
    table.to_csv(tmp_path / "c" / "table.csv", index=False)
    with pytest.raises(data.ImageReadError, match=broken.name):
        decode_letterbox(broken, 16)
    rc = main(["ablation", "--profile", "smoke", "--cohort", str(spec), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert rc == 2 and len(err.strip().splitlines()) == 1 and broken.name in err and "Traceback" not in err, err
    assert not (tmp_path / "out").exists()  # refused before any work: no manifest, no run_identity.json
    rc, out, check_err = _check(capsys, str(spec), "--json")  # the check reports it with every other finding
    assert rc == 2 and [u["patient_id"] for u in json.loads(out)["unreadable_images"]] == ["E03"]
    assert check_err == err  # and says it as `ablation` does


def _first_real_image(root: Path, mode: str) -> Path:
    """The first radiograph of the published dataset (sorted paths) whose JPEG has this colour mode."""
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() in (".jpg", ".jpeg"):
            with Image.open(path) as im:
                if im.mode == mode:
                    return path
    raise AssertionError(f"no {mode} JPEG in {root}")


@pytest.mark.realdata
@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_the_same_picture_as_jpeg_png_and_dicom_gives_the_same_network_input(real_data_dir, tmp_path, mode):
    """One resampling policy for every container: a real radiograph as its JPEG file, a PNG of its pixels,
    an uncompressed DICOM of its pixels and a DICOM encapsulating the JPEG decode to the same letterbox
    (JPEG used to be decoded at a reduced DCT scale, the others at full size: up to 33 grey levels apart)."""
    from osteo_helpers.data.export import _jpeg_to_dicom

    source = _first_real_image(real_data_dir, mode)
    with Image.open(source) as im:
        pixels = np.asarray(im.convert(mode))
    files = {"jpeg": tmp_path / "knee.jpg", "png": tmp_path / "knee.png", "encapsulated": tmp_path / "jpeg.dcm"}
    files["jpeg"].write_bytes(source.read_bytes())
    Image.fromarray(pixels, mode=mode).save(files["png"])
    _jpeg_to_dicom(source, files["encapsulated"], "P1")
    colour = {"SamplesPerPixel": 3, "PhotometricInterpretation": "RGB", "PlanarConfiguration": 0} if mode == "RGB" \
        else {}
    files["dicom"] = write_dicom(tmp_path / "pixels.dcm", pixels, **colour)
    for size in (64, 96):
        inputs = {name: decode_letterbox(path, size) for name, path in files.items()}
        for name, array in inputs.items():
            worst = int(np.abs(array.astype(int) - inputs["png"]).max())
            assert worst == 0, f"{mode} at {size} px: {name} differs from the PNG by up to {worst} grey levels"


@pytest.mark.realdata
def test_a_jpeg_rotated_by_its_exif_orientation_is_read_upright(real_data_dir, tmp_path):
    """A camera or a phone stores a portrait knee as a landscape bitstream plus an EXIF orientation (6: turn 90
    degrees clockwise to view): every reader turns it upright, for the network, the pixel checksum and the
    biomarkers' native-resolution grey."""
    from osteo_helpers.data.image_readers import open_grayscale, read_grayscale

    source = _first_real_image(real_data_dir, "L")
    with Image.open(source) as im:
        upright = im.convert("L")
    exif = Image.Exif()
    exif[0x0112] = 6
    upright.save(tmp_path / "upright.png")
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "stored.jpg", quality=100, exif=exif)
    upright.transpose(Image.Transpose.ROTATE_90).save(tmp_path / "stored.png")  # what the JPEG holds, losslessly
    turned = decode_letterbox(tmp_path / "stored.jpg", 64)
    assert np.abs(turned.astype(int) - decode_letterbox(tmp_path / "upright.png", 64)).mean() < 2  # JPEG's loss only
    sideways = decode_letterbox(tmp_path / "stored.png", 64)
    assert np.abs(turned.astype(int) - sideways).mean() > 10
    assert read_grayscale(tmp_path / "stored.jpg").shape == np.asarray(upright).shape
    with Image.open(tmp_path / "stored.jpg") as again:
        assert again.getexif()[0x0112] == 6 and again.size == upright.size[::-1]
    assert open_grayscale(tmp_path / "stored.jpg").size == upright.size  # what the checksum and letterboxes read


def test_a_dicom_whose_stored_values_exceed_bits_stored_is_a_fatal_finding(tmp_path, capsys):
    """pydicom masks the bits above BitsStored: a 16-bit image labelled 12-bit would lose its high bits (parts of
    the image wrap to white). The file is refused by name (cohort check: a finding, exit 2 as for any unreadable
    image), never masked; a file whose high bits hold a (retired) embedded overlay is masked as the standard says."""
    spec = tiny_cohort(tmp_path / "c")
    ramp = (np.add.outer(np.arange(40), np.arange(40)) * 840).astype(np.uint16)  # 0..65520: 16 bits used
    bad = write_dicom(tmp_path / "c" / "img" / "wide.dcm", ramp, BitsStored=12, HighBit=11)
    with pytest.raises(data.ImageReadError, match=r"wide\.dcm.*BitsStored"):
        decode_letterbox(bad, 16)
    table = pd.read_csv(tmp_path / "c" / "table.csv")
    table.loc[3, "File"] = "img/wide.dcm"
    table.to_csv(tmp_path / "c" / "table.csv", index=False)
    rc, out, _ = _check(capsys, str(spec), "--json")
    found = json.loads(out)["unreadable_images"]
    assert rc == 2 and [u["patient_id"] for u in found] == ["E03"] and "BitsStored" in found[0]["error"]
    overlay = write_dicom(tmp_path / "overlay.dcm", ramp & 0x1FFF, BitsStored=12, HighBit=11)
    import pydicom

    ds = pydicom.dcmread(overlay)
    ds.add_new(0x60000100, "US", 1)   # OverlayBitsAllocated
    ds.add_new(0x60000102, "US", 12)  # OverlayBitPosition: the overlay plane is bit 12 of the pixel data
    ds.save_as(overlay)
    np.testing.assert_allclose(image_readers.read_grayscale(overlay), (ramp & 0x0FFF) / (ramp & 0x0FFF).max(),
                               atol=1e-6)


# ----------------------------------------------------------------------------- several images per person


def test_two_images_per_person_share_a_fold_and_one_score(tmp_path):
    from osteo_helpers import arms, splits
    from osteo_helpers.arms.persons import per_person

    spec = tiny_cohort(tmp_path / "c", persons=18, knees=2, table_extra='person = "Person"')
    cohort = data.Cohort.open(spec)
    rows = data.modelling_table(cohort.manifest(), cohort.clinical).reset_index(drop=True)
    folds = splits.make_folds(rows, "label_3class", 3, 1, 0)
    fold_of = folds.set_index("patient_id")["fold"]
    assert (rows.assign(fold=fold_of.loc[rows["patient_id"]].to_numpy())
            .groupby("person_id")["fold"].nunique() == 1).all()
    oof = arms.cross_validate("clinical", rows, folds, "binary", profile=None)
    assert sorted(oof["patient_id"]) == sorted(rows["person_id"].unique())  # one row per person
    # a cohort with a few of the canonical inputs: the arm learns which it has
    _, fitted = arms.cross_validate("clinical_full", rows, folds, "binary", profile=None, keep_arms=True)
    assert fitted[0].inputs_ == ("age_years", "height_m", "weight_kg", "bmi", "sex")
    # the person's probability is the logistic of the mean of the two knees' logits
    images = pd.DataFrame({"patient_id": ["A", "B"], "fold": 0, "seed": 0, "y_true": 1,
                           "prob_normal": [0.8, 0.4], "prob_low_bmd": [0.2, 0.6]})
    person = per_person(images, pd.DataFrame({"patient_id": ["A", "B"], "person_id": ["P", "P"]}))
    logit = np.mean(np.log([0.2 / 0.8, 0.6 / 0.4]))
    assert person["prob_low_bmd"].iloc[0] == pytest.approx(1 / (1 + np.exp(-logit)))
    assert len(person) == 1 and person["prob_normal"].iloc[0] + person["prob_low_bmd"].iloc[0] == pytest.approx(1)


def test_a_study_of_people_with_two_knees_reads_its_subsets_per_person(tmp_path, monkeypatch):
    """The out-of-fold tables have one row per person: subsets (a sex, an age band, the localised knees) and
    lookups are made from `Study.people`, keyed the same way; what the cohort cannot estimate is named."""
    from osteo_helpers.study import Study

    monkeypatch.setenv(folders.CACHE_ENV_VAR, str(tmp_path / "cache"))
    spec = tiny_cohort(tmp_path / "c", knees=2, table_extra='person = "Person"')
    study = Study.open("smoke", tmp_path / "run", cohort=spec)
    assert len(study.cohort) == 24
    assert list(study.people["patient_id"]) == list(dict.fromkeys(study.cohort["person_id"]))
    assert study.people_of(["E00L", "E00R", "E05R"]) == {"P00", "P05"}
    assert study.not_estimable("3class") is None and study.unfitted() == {}  # a T-score and a weight: every arm


# ----------------------------------------------------------------------------- the export


@pytest.fixture(scope="module")
def published_export(real_data_dir, tmp_path_factory) -> Path:
    """The published dataset exported as a DICOM cohort (`osteo cohort export`), once for this file's tests."""
    folder = tmp_path_factory.mktemp("published") / "export"
    assert main(["cohort", "export", "--to", str(folder), "--data-dir", str(real_data_dir)]) == 0
    return folder


@pytest.fixture(scope="module")
def native_study(real_data_dir, tmp_path_factory):
    """The published dataset as a study with `TOY_SETTINGS` (the arms see identical inputs or they do not)."""
    from osteo_helpers.study import Study

    return Study.open("smoke", tmp_path_factory.mktemp("native"), real_data_dir, **TOY_SETTINGS)


@pytest.mark.realdata
def test_dicom_export_of_the_published_dataset_gives_the_same_predictions(published_export, native_study, tmp_path):
    """Issue 18's acceptance check (~30 s on 2 cores): the published dataset exported as a second cohort
    (DICOM from the real JPEG bitstreams, renamed columns, pounds, centimetres, a site column) gives the
    same manifest, split groups, folds, pixels and out-of-fold predictions as the native run."""
    from osteo_helpers.arms import run_arm
    from osteo_helpers.study import Study

    spec = published_export / "cohort.toml"
    exported = pd.read_csv(published_export / "cohort.csv")
    assert {"Weight_lb", "Height_cm", "Site", "ImageFile"} <= set(exported.columns)
    assert exported["ImageFile"].dropna().str.endswith(".dcm").all()
    native = native_study
    other = Study.open("smoke", tmp_path / "other", cohort=spec, **TOY_SETTINGS)
    a, b = native.rows(), other.rows()
    assert list(a["patient_id"]) == list(b["patient_id"])
    for column in ("split_group", "label_3class", "batch", "mode", "width", "height"):
        assert a[column].astype(str).tolist() == b[column].astype(str).tolist(), column

    def same_image(rows):
        return sorted(sorted(g) for _, g in rows.groupby("duplicate_group")["patient_id"])
    assert same_image(a) == same_image(b) and len(same_image(a)) == 21  # the DICOMs of one JPEG: one image
    assert all(np.array_equal(x, y) for x, y in zip(a["image"], b["image"], strict=True))  # the same pixels
    assert native.folds().equals(other.folds())
    worst = 0.0
    for name in ("age", "ost", "clinical", "clinical_full", "batch_only", "pixel_1nn", "image"):
        screening = name != "image"  # the network's threshold cross-fit would only repeat the same fits
        x = run_arm(name, a, native.folds(), "binary", profile=native.profile, progress_bar=False,
                    screening=screening)
        y = run_arm(name, b, other.folds(), "binary", profile=other.profile, progress_bar=False,
                    screening=screening)
        assert x[["patient_id", "fold", "seed"]].equals(y[["patient_id", "fold", "seed"]]), name
        numbers = [c for c in x.columns if c != "patient_id"]
        worst = max(worst, float(np.abs(x[numbers].to_numpy(float) - y[numbers].to_numpy(float)).max()))
    print(f"max abs OOF difference, native vs DICOM export: {worst:.3g}")
    assert worst < 1e-9


@pytest.mark.realdata
def test_a_pseudonymised_export_gets_the_same_folds_and_predictions(published_export, native_study, tmp_path):
    """Issue 28: the export as a hospital pseudonymises it (every ID hashed, every image file renamed, rows in
    another order) with weight and height written in pounds and centimetres to two decimals gives the same
    folds as the published dataset, the same `clinical` out-of-fold predictions and thresholds (1e-9), and
    `clinical_full` within 0.01. Folds used to follow the IDs' spelling: 77 of the 239 patients kept their fold."""
    import hashlib
    import os

    from osteo_helpers.arms import run_arm
    from osteo_helpers.study import Study

    table = pd.read_csv(published_export / "cohort.csv", dtype={"StudyID": str})
    hashed = {pid: hashlib.sha256(f"hospital salt {pid}".encode()).hexdigest()[:16] for pid in table["StudyID"]}
    (published_export / "pseudo").mkdir()
    for pid, image in zip(table["StudyID"], table["ImageFile"], strict=True):
        if isinstance(image, str):
            os.link(published_export / image, published_export / "pseudo" / f"{hashed[pid]}.dcm")
    table = table.assign(StudyID=table["StudyID"].map(hashed), Weight_lb=table["Weight_lb"].round(2),
                         Height_cm=table["Height_cm"].round(2),
                         ImageFile=[f"pseudo/{hashed[pid]}.dcm" if isinstance(image, str) else image
                                    for pid, image in zip(table["StudyID"], table["ImageFile"], strict=True)])
    table.sample(frac=1.0, random_state=0).to_csv(published_export / "pseudo.csv", index=False)
    spec = published_export / "pseudo.toml"
    spec.write_text((published_export / "cohort.toml").read_text().replace('"cohort.csv"', '"pseudo.csv"'))
    pseudo = Study.open("smoke", tmp_path / "pseudo", cohort=spec, **TOY_SETTINGS)
    back = {v: k for k, v in hashed.items()}

    def original(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.assign(patient_id=frame["patient_id"].map(back))
        return out.sort_values(["seed", "fold", "patient_id"]).reset_index(drop=True)

    a, b = native_study.folds(), original(pseudo.folds())
    fold_a = a.set_index(["seed", "patient_id"])["fold"]
    kept = int((fold_a == b.set_index(["seed", "patient_id"])["fold"].reindex(fold_a.index)).sum())
    assert kept == len(a), f"{kept} of {len(a)} patients kept their fold"
    rows = {"native": native_study.cohort, "pseudo": pseudo.cohort}
    assert (rows["pseudo"]["weight_kg"] != rows["pseudo"]["patient_id"].map(
        dict(zip(rows["native"]["patient_id"].map(hashed), rows["native"]["weight_kg"], strict=True)))).any()
    for name, tolerance in (("clinical", 1e-9), ("clinical_full", 0.01)):
        x = run_arm(name, rows["native"], a, "binary", profile=native_study.profile, progress_bar=False)
        y = original(run_arm(name, rows["pseudo"], pseudo.folds(), "binary", profile=pseudo.profile,
                             progress_bar=False))
        x = x.sort_values(["seed", "fold", "patient_id"]).reset_index(drop=True)
        assert x[["patient_id", "fold", "seed"]].equals(y[["patient_id", "fold", "seed"]]), name
        numbers = [c for c in x.columns if c != "patient_id"]
        worst = float(np.abs(x[numbers].to_numpy(float) - y[numbers].to_numpy(float)).max())
        print(f"{name}: max abs OOF difference, published vs pseudonymised export: {worst:.3g}")
        assert worst <= tolerance, (name, worst)
