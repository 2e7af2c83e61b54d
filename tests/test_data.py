"""Tests for osteo_helpers.data on a small, messy synthetic dataset (see conftest.py)."""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from osteo_helpers import data, tabular
from osteo_helpers.images import decode_letterbox

SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


# ----------------------------------------------------------------------------- clinical table


def test_clinical_table_is_clean(synthetic_dataset):
    clin = data.load_clinical(synthetic_dataset.spreadsheet)

    # one row per patient: the max/min/avg summary rows are gone
    assert list(clin["patient_id"]) == synthetic_dataset.patient_ids
    assert not clin["patient_id"].isin(["max", "min", "avg"]).any()
    assert clin["patient_id"].is_unique
    # tidy names
    bad_names = [c for c in clin.columns if not SNAKE.match(c)]
    assert bad_names == []
    for col in ("patient_id", "sex", "age_years", "menopause_age_years", "height_m", "weight_kg", "t_score",
                "z_score", "bmi", "diagnosis", "weight_category", "occupation_group", "prior_fracture",
                "fracture_site", "smoker", "joint_pain"):
        assert col in clin.columns, col
    # numbers are numbers, yes/no are booleans
    for col in ("age_years", "menopause_age_years", "height_m", "weight_kg", "t_score", "z_score", "bmi"):
        assert pd.api.types.is_float_dtype(clin[col]), col
    for col in [c for c in clin.columns if c in tabular.BOOLEAN_FEATURES] + ["alcohol"]:
        assert str(clin[col].dtype) == "boolean", col
    assert clin["smoker"].tolist() == [{"no": False, "yes": True, "No": False}[r["Smoker"]]
                                       for r in synthetic_dataset.rows]
    # categories normalised
    assert set(clin["sex"]) == {"male", "female"}
    assert set(clin["diagnosis"]) == {"normal", "osteopenia", "osteoporosis"}
    assert set(clin["weight_category"].dropna()) <= {"normal", "overweight", "obese", "underweight"}
    raw_by_id = {r["Patient Id"]: r for r in synthetic_dataset.rows}
    for rec in clin.itertuples():
        raw = raw_by_id[rec.patient_id]
        expected_dx = {"N": "normal", "OP": "osteopenia", "OS": "osteoporosis"}[rec.patient_id.rstrip("0123456789")]
        assert rec.diagnosis == expected_dx, (rec.patient_id, raw["Diagnosis"])
        wc = {"over weight": "overweight", "overweight": "overweight", "obesity ": "obese",
              "normal weight": "normal", "under weight": "underweight"}[raw["Obesity"]]
        assert rec.weight_category == wc
        if raw["Occupation "] == "h.wife":
            assert rec.occupation_group == "homemaker"
        if raw["Gender"].strip().lower() in {"f", "female"}:
            assert rec.sex == "female"
    # the real data's typo is understood
    assert any(r["Diagnosis"] == "osteopania" for r in synthetic_dataset.rows)


def test_free_text_flags(synthetic_dataset):
    clin = data.load_clinical(synthetic_dataset.spreadsheet).set_index("patient_id")
    raw = {r["Patient Id"]: r["History of Fracture"] for r in synthetic_dataset.rows}
    by_text = {}
    for pid, text in raw.items():
        by_text.setdefault(text, []).append(pid)
    # an occupation typed into the fracture column is not understood: NA, not False
    for pid in by_text["lab technician"]:
        assert pd.isna(clin.at[pid, "prior_fracture"]), pid
        assert pd.isna(clin.at[pid, "fracture_site"]), pid
    for pid in by_text["no"]:
        value = clin.at[pid, "prior_fracture"]
        assert not pd.isna(value) and not value, pid
        assert clin.at[pid, "fracture_site"] == "none"
    for pid in by_text["R.arm"]:
        assert not pd.isna(clin.at[pid, "prior_fracture"]) and clin.at[pid, "prior_fracture"]
        assert clin.at[pid, "fracture_site"] == "upper_limb"
    for pid in by_text["vertebral fracture"]:
        assert clin.at[pid, "fracture_site"] == "spine"
    for pid in by_text["yes"]:
        assert clin.at[pid, "fracture_site"] == "unspecified"
    for pid in by_text[None]:
        assert pd.isna(clin.at[pid, "prior_fracture"])
    # the outcome named in free text is flagged (and excluded from inputs elsewhere)
    mentions = [r["Patient Id"] for r in synthetic_dataset.rows if r["Medical History"] == "disk. Osteopenia"]
    assert mentions and clin.loc[mentions, "text_mentions_outcome"].all()
    # derived menopause columns
    men = clin["sex"] == "male"
    assert not clin.loc[men, "postmenopausal"].any()
    assert clin.loc[men, "years_since_menopause"].isna().all()
    post = clin["postmenopausal"].fillna(False).astype(bool)
    np.testing.assert_allclose(clin.loc[post, "years_since_menopause"],
                               clin.loc[post, "age_years"] - clin.loc[post, "menopause_age_years"])


def _only_excel_row_for(ds, pid: str) -> int:
    return ds.patient_ids.index(pid) + 2  # header is row 1


def test_missing_required_column_names_file_and_column(synthetic_dataset_factory, synth):
    header = [h for h in synth.REAL_HEADER if h != "Age"]
    ds = synthetic_dataset_factory("no-age", header=header)
    with pytest.raises(data.DataValidationError) as err:
        data.load_clinical(ds.spreadsheet)
    msg = str(err.value)
    assert "patient details.xlsx" in msg
    assert "age" in msg.lower()
    assert "missing" in msg.lower()


def _set(pid: str, column: str, value):
    def edit(rows):
        for r in rows:
            if r["Patient Id"] == pid:
                r[column] = value
    return edit


def test_unknown_category_names_file_row_column_value(synthetic_dataset_factory):
    ds = synthetic_dataset_factory("robot", edit_rows=_set("OP3", "Gender", "robot"))
    with pytest.raises(data.DataValidationError) as err:
        data.load_clinical(ds.spreadsheet)
    msg = str(err.value)
    assert "patient details.xlsx" in msg
    assert f"row {_only_excel_row_for(ds, 'OP3')}" in msg
    assert re.search(r"gender|sex", msg, re.I)
    assert "robot" in msg


def test_non_numeric_age_names_file_row_column_value(synthetic_dataset_factory):
    ds = synthetic_dataset_factory("age-text", edit_rows=_set("N4", "Age", "forty"))
    with pytest.raises(data.DataValidationError) as err:
        data.load_clinical(ds.spreadsheet)
    msg = str(err.value)
    assert "patient details.xlsx" in msg
    assert f"row {_only_excel_row_for(ds, 'N4')}" in msg
    assert "age" in msg.lower()
    assert "forty" in msg


def test_duplicated_patient_id_names_both_rows(synthetic_dataset_factory):
    ds = synthetic_dataset_factory("dup-id", edit_rows=_set("OS2", "Patient Id", "OP5"))
    with pytest.raises(data.DataValidationError) as err:
        data.load_clinical(ds.spreadsheet)
    msg = str(err.value)
    assert "patient details.xlsx" in msg
    assert "OP5" in msg
    rows = [i + 2 for i, r in enumerate(ds.rows) if r["Patient Id"] == "OP5"]
    assert len(rows) == 2
    assert f"duplicated ID: 2 rows: {rows[0]} ('OP5'), {rows[1]} ('OP5')" in msg


def test_summary_rows_are_not_errors_but_unlabelled_rows_are(synthetic_dataset_factory):
    # a patient row with an empty diagnosis is an error, whereas summary rows (no ID) are dropped
    ds = synthetic_dataset_factory("no-dx", edit_rows=_set("N2", "Diagnosis", None))
    with pytest.raises(data.DataValidationError) as err:
        data.load_clinical(ds.spreadsheet)
    assert f"row {_only_excel_row_for(ds, 'N2')}" in str(err.value)
    assert "diagnosis" in str(err.value).lower()


# ----------------------------------------------------------------------------- images


def test_corrupt_jpeg_raises_image_read_error_naming_file(synthetic_dataset):
    victim = synthetic_dataset.images["OP2"]
    victim.write_bytes(np.random.default_rng(0).bytes(3000))
    assert victim.suffix.lower() in {".jpg", ".jpeg"}
    with pytest.raises(data.ImageReadError) as err:
        data.build_manifest(synthetic_dataset.root)
    assert victim.name in str(err.value)
    with pytest.raises(data.ImageReadError) as err:
        decode_letterbox(victim, 32)
    assert victim.name in str(err.value)
    assert issubclass(data.ImageReadError, data.DataValidationError)


def test_truncated_jpeg_raises_image_read_error(tmp_path, synth):
    good = synth.jpeg_bytes(1, (64, 48))
    path = tmp_path / "OS1.jpg"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(data.ImageReadError) as err:
        decode_letterbox(path, 32)
    assert "OS1.jpg" in str(err.value)
    # the intact file decodes to a square uint8 letterbox
    path.write_bytes(good)
    arr = decode_letterbox(path, 32)
    assert arr.shape == (32, 32) and arr.dtype == np.uint8
    # 64x48 -> 32x24 content, padded above and below with zeros
    assert (arr[:4] == 0).all() and (arr[-4:] == 0).all() and arr[8:24].mean() > 0


def test_find_images_handles_nesting_and_extension_case(synthetic_dataset):
    root = synthetic_dataset.root
    (root / "README.md").write_text("not an image")
    (root / "normal" / ".hidden.jpg").write_bytes(b"junk")
    found = data.find_images(root)
    assert set(found) == set(synthetic_dataset.patient_ids)
    for pid, path in found.items():
        assert path == synthetic_dataset.images[pid]
    suffixes = {p.suffix for p in found.values()}
    assert {".JPEG", ".jpg"} <= suffixes
    assert any(p.parent.name == "batch2" for p in found.values())


def test_find_images_refuses_two_files_for_one_patient(synthetic_dataset):
    src = synthetic_dataset.images["N1"]
    (src.parent / "copy").mkdir()
    (src.parent / "copy" / "N1.jpg").write_bytes(src.read_bytes())
    with pytest.raises(data.DataValidationError, match="N1"):
        data.find_images(synthetic_dataset.root)


# ----------------------------------------------------------------------------- manifest and validation


def test_manifest_columns_and_values(synthetic_dataset):
    clin = data.load_clinical(synthetic_dataset.spreadsheet)
    man = data.build_manifest(synthetic_dataset.root, clin)
    for col in ("patient_id", "diagnosis", "label_3class", "label_binary", "t_score", "image_path",
                "image_sha256", "width", "height", "mode", "batch", "split_group", "has_image"):
        assert col in man.columns, col
    assert len(man) == len(synthetic_dataset.rows)
    assert man["has_image"].all()
    assert (man["label_binary"] == (man["diagnosis"] != "normal").astype(int)).all()
    assert (man["label_3class"] == man["diagnosis"].map({"normal": 0, "osteopenia": 1, "osteoporosis": 2})).all()
    assert set(man["width"]) == {40} and set(man["height"]) == {32} and set(man["mode"]) == {"L"}
    for rec in man.itertuples():
        assert (synthetic_dataset.root / rec.image_path) == synthetic_dataset.images[rec.patient_id]
        assert not Path(rec.image_path).is_absolute()
    assert (man["split_group"] == man["patient_id"]).all()  # no duplicates here


@pytest.fixture
def problem_dataset(synthetic_dataset_factory):
    """Every kind of problem `validate` must report, each exactly once."""
    def edits(rows):
        for r in rows:
            if r["Patient Id"] == "N3":
                r["T-score Value"] = -2.0  # labelled normal, T-score says osteopenia
    return synthetic_dataset_factory(
        "problems", edit_rows=edits, without_image=("OP6",), extra_images={"OS99": "osteoporosis"},
        identical_images=(("N2", "OP4"), ("OS1", "OS5")),
    )


def test_validate_reports_every_problem(problem_dataset):
    ds = problem_dataset
    clin = data.load_clinical(ds.spreadsheet)
    man = data.build_manifest(ds.root, clin)
    f = data.validate(man, clin, ds.root)
    assert f["patients"] == 20
    assert f["images"] == 20  # 19 patients' images + 1 without a row
    assert f["rows_without_image"] == ["OP6"]
    assert f["images_without_row"] == ["OS99"]
    groups = sorted(map(sorted, f["duplicate_groups"]))
    assert groups == [["N2", "OP4"], ["OS1", "OS5"]]
    assert [sorted(g) for g in f["cross_class_duplicate_groups"]] == [["N2", "OP4"]]
    for g in f["cross_class_duplicate_groups"]:
        assert g in f["duplicate_groups"]
    assert f["label_tscore_mismatches"] == ["N3"]
    # identical images share a split group
    sg = man.set_index("patient_id")["split_group"]
    assert sg["N2"] == sg["OP4"] and sg["OS1"] == sg["OS5"] and sg["N2"] != sg["OS1"]
    # the patient without an image keeps its row, unlabelled images are not added
    assert not man.set_index("patient_id").at["OP6", "has_image"]
    assert "OS99" not in set(man["patient_id"])
    # the modelling cohort holds only patients with an image
    cohort = data.modelling_table(man, clin)
    assert "OP6" not in set(cohort["patient_id"]) and len(cohort) == 19
    # the text report carries the same findings
    text = data.format_findings(f)
    for token in ("OP6", "OS99", "N3", "N2 = OP4", "crosses classes"):
        assert token in text


def test_unparsed_free_text_reported(synthetic_dataset):
    clin = data.load_clinical(synthetic_dataset.spreadsheet)
    man = data.build_manifest(synthetic_dataset.root, clin)
    f = data.validate(man, clin, synthetic_dataset.root)
    unparsed = {v["patient_id"]: v["value"] for v in f["unparsed_free_text"]}
    expected = {r["Patient Id"] for r in synthetic_dataset.rows if r["History of Fracture"] == "lab technician"}
    assert set(unparsed) == expected and set(unparsed.values()) == {"lab technician"}
    assert f["label_tscore_mismatches"] == [] and f["duplicate_groups"] == []


def test_raw_files_unchanged_by_reading(problem_dataset, synth):
    ds = problem_dataset
    before = synth.snapshot(ds.root)
    clin = data.load_clinical(ds.spreadsheet)
    man = data.build_manifest(ds.root, clin)
    data.validate(man, clin, ds.root)
    reg_path = ds.root.parent / "reg.csv"
    data.write_registry(ds.root, reg_path)
    assert data.verify_files(ds.root, data.read_registry(reg_path))["mismatched"] == []
    after = synth.snapshot(ds.root)
    assert after == before  # same files, sizes, modification times and bytes


# ----------------------------------------------------------------------------- registry and import


@pytest.fixture
def registry(synthetic_dataset, tmp_path):
    path = tmp_path / "registry" / "synthetic.csv"
    table = data.write_registry(synthetic_dataset.root, path)
    assert len(table) == len(synthetic_dataset.images) + 1  # images + spreadsheet
    reg = data.read_registry(path)
    assert list(reg.columns) == ["path", "bytes", "sha256"]
    return reg


def _assert_installed(dest: Path, src: Path, reg: pd.DataFrame) -> None:
    for row in reg.itertuples():
        target = dest / row.path
        assert target.is_file(), row.path
        assert target.read_bytes() == (src / row.path).read_bytes()
    assert data.verify_files(dest, reg) == {"missing": [], "mismatched": [], "unexpected": []}
    # no staging folder left beside the destination
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".import-")]


def test_import_from_folder(synthetic_dataset, registry, tmp_path):
    dest = tmp_path / "install" / "raw"
    out = data.import_dataset(synthetic_dataset.root, dest, registry)
    assert Path(out) == dest
    _assert_installed(dest, synthetic_dataset.root, registry)
    # the installed copy is a usable dataset
    assert len(data.load_clinical(dest / "patient details.xlsx")) == 20


def test_import_from_zip(synthetic_dataset, registry, tmp_path):
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(synthetic_dataset.root.rglob("*")):
            if p.is_file():
                zf.write(p, f"Knee X-ray Osteoporosis Database/{p.relative_to(synthetic_dataset.root).as_posix()}")
    dest = tmp_path / "install" / "raw"
    data.import_dataset(archive, dest, registry)
    _assert_installed(dest, synthetic_dataset.root, registry)


def test_import_refuses_wrong_checksum_and_installs_nothing(synthetic_dataset, registry, tmp_path):
    bad = synthetic_dataset.images["OP3"]
    raw = bytearray(bad.read_bytes())
    raw[len(raw) // 2] ^= 0xFF  # same size, different bytes
    bad.write_bytes(bytes(raw))
    rel = bad.relative_to(synthetic_dataset.root).as_posix()
    dest = tmp_path / "install" / "raw"
    with pytest.raises(data.DataValidationError) as err:
        data.import_dataset(synthetic_dataset.root, dest, registry)
    assert rel in str(err.value)
    other = [p for p in registry["path"] if p != rel]
    assert not any(p in str(err.value) for p in other)
    assert not dest.exists() or not any(dest.iterdir())
    if dest.parent.exists():
        assert not [p for p in dest.parent.iterdir() if p.name.startswith(".import-")]


def test_import_refuses_wrong_checksum_from_zip(synthetic_dataset, registry, tmp_path):
    archive = tmp_path / "download.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(synthetic_dataset.root.rglob("*")):
            if p.is_file():
                payload = p.read_bytes()
                if p.name == "N5.JPEG":
                    payload = payload[:-10] + b"\0" * 10
                zf.writestr(p.relative_to(synthetic_dataset.root).as_posix(), payload)
    dest = tmp_path / "install" / "raw"
    dest.mkdir(parents=True)  # an existing, empty destination stays empty
    with pytest.raises(data.DataValidationError, match="N5.JPEG"):
        data.import_dataset(archive, dest, registry)
    assert not any(dest.iterdir())


def test_import_reports_missing_file(synthetic_dataset, registry, tmp_path):
    synthetic_dataset.images["OS4"].unlink()
    dest = tmp_path / "install" / "raw"
    with pytest.raises(data.DataValidationError, match="OS4"):
        data.import_dataset(synthetic_dataset.root, dest, registry)
    assert not dest.exists() or not any(dest.iterdir())


# ----------------------------------------------------------------------------- data dictionary


def test_data_dictionary(synthetic_dataset):
    from osteo_helpers import tabular

    clin = data.load_clinical(synthetic_dataset.spreadsheet)
    dd = data.data_dictionary(clin)
    assert list(dd["column"]) == list(clin.columns)
    assert dd["column"].is_unique
    roles = dd.set_index("column")["role"]
    for col in ("t_score", "z_score", "diagnosis"):
        assert roles[col] == "target"
    assert roles["patient_id"] == "id"
    assert roles["text_mentions_outcome"] != "input"
    inputs = set(dd.loc[dd["model_input"], "column"])
    assert not [c for c in inputs if tabular.is_forbidden(c)]
    # every allow-listed model input is documented as an input
    assert set(tabular.INPUT_FEATURES) <= inputs
    assert (dd["missing"] == [int(clin[c].isna().sum()) for c in clin.columns]).all()
    assert (dd["meaning"] != "(undocumented)").all()


def test_manifest_without_duplicates_uses_no_deprecated_pandas_behaviour(synthetic_dataset):
    """build_manifest must not rely on behaviour that the next pandas major version turns into an error.

    With no duplicated images `duplicate_group` is all-NaN (float64); filling it with the
    string patient IDs is deprecated (Pandas4Warning) and will raise in pandas 4.
    """
    import warnings

    clin = data.load_clinical(synthetic_dataset.spreadsheet)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        warnings.simplefilter("error", FutureWarning)
        man = data.build_manifest(synthetic_dataset.root, clin)
    assert (man["split_group"] == man["patient_id"]).all()


# ----------------------------------------------------------------------------- one person, one group


def _same_person(source: str, copy: str):
    """Make `copy`'s row the same person as `source`: every value equal, free text spelled differently."""
    def edit(rows):
        by_id = {r["Patient Id"]: r for r in rows}
        clone = dict(by_id[source], **{"S.No": by_id[copy]["S.No"], "Patient Id": copy})
        clone["Occupation "] = str(clone["Occupation "]).upper() + " "
        medical = clone["Medical History"]
        clone["Medical History"] = None if medical in (None, "no") else str(medical).upper()
        rows[rows.index(by_id[copy])] = clone
    return edit


def test_split_group_joins_image_and_clinical_duplicates_in_a_chain(synthetic_dataset_factory):
    # N2 = OP4 by image bytes, OP4 = OP5 by clinical record: one person, three rows, one group.
    # OP4 is a man (no menopause age, no pregnancies), so NaN must equal NaN.
    def edits(rows):
        _same_person("OP4", "OP5")(rows)
        _same_person("N5", "N6")(rows)
        for r in rows:
            if r["Patient Id"] == "N6":
                r["Z-Score Value"] = round(r["Z-Score Value"] + 0.01, 2)  # one value differs: another person
    ds = synthetic_dataset_factory("chain", edit_rows=edits, identical_images=(("N2", "OP4"),))
    clin = data.load_clinical(ds.spreadsheet)
    assert clin.set_index("patient_id").loc[["OP4", "OP5"], "menopause_age_years"].isna().all()
    assert data.clinical_duplicate_groups(clin) == [["OP4", "OP5"]]
    man = data.build_manifest(ds.root, clin)
    groups = man.groupby("split_group")["patient_id"].agg(sorted)
    assert sorted(g for g in groups if len(g) > 1) == [["N2", "OP4", "OP5"]]
    assert len(groups) == len(man) - 2
    f = data.validate(man, clin, ds.root)
    assert f["duplicate_clinical_records"] == [["OP4", "OP5"]]
    assert f["duplicate_groups"] == [["N2", "OP4"]]
    assert "OP4 = OP5" in data.format_findings(f)


# ----------------------------------------------------------------------------- data check reads every byte


def _check(root: Path, capsys, *extra: str) -> tuple[int, str, str]:
    from osteo_helpers.cli import main

    rc = main(["data", "check", "--data-dir", str(root), *extra])
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("damage", ["truncated", "truncated progressive", "garbage"])
def test_data_check_decodes_every_image(synthetic_dataset, capsys, damage):
    """Every byte is read although JPEGs are decoded at 1/8 scale: a cut in the last scan of a progressive
    JPEG is found too."""
    import io
    import json

    from PIL import Image

    victim = synthetic_dataset.images["OP2"]
    good = victim.read_bytes()
    if damage == "truncated progressive":
        buffer = io.BytesIO()
        Image.open(victim).resize((400, 320)).save(buffer, "JPEG", progressive=True, quality=95)
        good = buffer.getvalue()
        victim.write_bytes(good[: len(good) * 19 // 20])
    else:
        victim.write_bytes(good[: len(good) // 2] if damage == "truncated" else np.random.default_rng(0).bytes(3000))
    rc, out, err = _check(synthetic_dataset.root, capsys, "--json")
    assert rc == 2  # an unreadable image stops a run: the same status as `run` and `ablation` on it
    findings = json.loads(out)
    assert [u["patient_id"] for u in findings["unreadable_images"]] == ["OP2"]
    assert findings["unreadable_images"][0]["path"] == victim.relative_to(synthetic_dataset.root).as_posix()
    assert findings["patients"] == 20  # the other findings are still there
    assert len(err.strip().splitlines()) == 1 and victim.name in err and "Traceback" not in err
    rc, out, _ = _check(synthetic_dataset.root, capsys)
    assert rc == 2 and "unreadable images (cannot be decoded to the last byte): 1" in out and "OP2" in out
    victim.write_bytes(good)
    rc, out, err = _check(synthetic_dataset.root, capsys, "--json")
    assert rc == 0 and json.loads(out)["unreadable_images"] == [] and err == ""


@pytest.mark.parametrize("layout,missing", [
    ("no osteoporosis folder", ["osteoporosis/"]),
    ("spreadsheet only", ["normal/", "osteopenia/", "osteoporosis/"]),
    ("no images", ["no images"]),
])
def test_data_check_refuses_incomplete_dataset_folder(synthetic_dataset, capsys, layout, missing):
    import shutil

    root = synthetic_dataset.root
    for folder in ("normal", "osteopenia", "osteoporosis"):
        if layout == "spreadsheet only" or folder == "osteoporosis" and layout == "no osteoporosis folder":
            shutil.rmtree(root / folder)
        elif layout == "no images":
            shutil.rmtree(root / folder)
            (root / folder).mkdir()
    rc, out, err = _check(root, capsys)
    assert rc == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and str(root) in err
    for name in missing:
        assert name in err
    with pytest.raises(data.DatasetLayoutError):
        data.build_manifest(root)


# ----------------------------------------------------------------------------- imports that clean up


def _zip_of(root: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(root).as_posix())
    return archive


def test_import_names_zip_member_failing_its_crc(synthetic_dataset, registry, tmp_path, capsys):
    from osteo_helpers.cli import main

    archive = _zip_of(synthetic_dataset.root, tmp_path / "download.zip")
    member = next(n for n in zipfile.ZipFile(archive).namelist() if n.endswith("OP3.jpg") or n.endswith("OP3.JPEG"))
    payload = synthetic_dataset.images["OP3"].read_bytes()
    raw = bytearray(archive.read_bytes())
    at = raw.index(payload) + len(payload) // 2  # stored uncompressed: the member's bytes are in the archive
    raw[at] ^= 0xFF
    archive.write_bytes(bytes(raw))
    dest = tmp_path / "install" / "raw"
    with pytest.raises(data.DataValidationError) as err:
        data.import_dataset(archive, dest, registry)
    assert str(archive) in str(err.value) and member in str(err.value) and "\n" not in str(err.value)
    assert not dest.parent.exists()  # nothing half-copied, and no empty folder left either
    assert main(["data", "import", str(archive), "--dest", str(dest)]) == 1
    stderr = capsys.readouterr().err
    assert len(stderr.strip().splitlines()) == 1 and member in stderr and "Traceback" not in stderr


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, OSError])
def test_interrupted_import_leaves_nothing_and_stale_staging_is_removed(synthetic_dataset, registry, tmp_path,
                                                                        monkeypatch, interrupt):
    dest = tmp_path / "install" / "raw"
    stale = dest.parent / f"{data.IMPORT_PREFIX}killed"  # as left by an import killed with SIGKILL
    (stale / "staged").mkdir(parents=True)
    (stale / "staged" / "half.jpg").write_bytes(b"half")
    real_copy = shutil.copy2
    copies = []

    def copy_then_fail(src, dst):
        copies.append(real_copy(src, dst))
        if len(copies) == 5:
            raise interrupt("interrupted")

    monkeypatch.setattr(shutil, "copy2", copy_then_fail)
    with pytest.raises(interrupt):
        data.import_dataset(synthetic_dataset.root, dest, registry)
    assert len(copies) == 5  # it was interrupted in the middle of copying
    assert sorted(p.name for p in dest.parent.iterdir()) == []  # no staging folder, no lock, no stale folder
    monkeypatch.setattr(shutil, "copy2", real_copy)
    stale.mkdir()
    data.import_dataset(synthetic_dataset.root, dest, registry)
    _assert_installed(dest, synthetic_dataset.root, registry)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["raw"]


def test_identical_images_with_disagreeing_records_and_near_copies_are_findings(synthetic_dataset_factory):
    """One radiograph under two records of different sex is a wrong image-to-record link; a re-encoded,
    resized copy is not byte-identical but the perceptual hash finds it (and only it)."""
    import io

    from PIL import Image, ImageFilter

    ds = synthetic_dataset_factory("linkage", identical_images=(("N1", "OP2"),))
    rng = np.random.default_rng(0)
    for pid, path in ds.images.items():  # distinct pictures: smooth random blobs, not the shared ramp
        if pid != "OP2":
            blobs = np.asarray(Image.fromarray((rng.random((64, 64)) * 255).astype(np.uint8)).filter(
                ImageFilter.GaussianBlur(4)), dtype=float)
            blobs = (blobs - blobs.min()) / np.ptp(blobs) * 255
            Image.fromarray(blobs.astype(np.uint8)).resize((128, 128)).save(path, format="JPEG", quality=95)
    ds.images["OP2"].write_bytes(ds.images["N1"].read_bytes())
    copy = io.BytesIO()
    Image.open(ds.images["N2"]).resize((96, 96)).save(copy, format="JPEG", quality=60)
    ds.images["OS3"].write_bytes(copy.getvalue())
    clin = data.load_clinical(ds.spreadsheet)
    clin.loc[clin["patient_id"] == "N1", "sex"] = "male"
    clin.loc[clin["patient_id"] == "OP2", "sex"] = "female"
    man = data.build_manifest(ds.root, clin)
    f = data.validate(man, clin, ds.root)
    assert [c["patients"] for c in f["image_record_conflicts"]] == [["N1", "OP2"]]
    conflict = f["image_record_conflicts"][0]
    assert conflict["sex"] == ["male", "female"] and "sex" in conflict["disagree"]
    near = {tuple(p["patients"]): p for p in f["near_duplicate_images"]}
    assert set(near) == {("N1", "OP2"), ("N2", "OS3")}
    assert near[("N1", "OP2")]["identical_bytes"] and not near[("N2", "OS3")]["identical_bytes"]
    assert near[("N2", "OS3")]["bits"] <= 3 and "Hamming distance <= 3" in f["near_duplicate_rule"]
    assert len(f["closest_distinct_image_pairs"]) == 4 and all(p["bits"] > 3 for p in f["closest_distinct_image_pairs"])
    text = data.format_findings(f)
    assert "N1 = OP2: sex male/female" in text
    assert "not in a duplicate group (pHash of 64 bits, Hamming distance <= 3): 1  N2 ~ OS3" in text


def test_near_duplicate_search_equals_every_pair_compared():
    """The vectorised search keeps exactly the pairs a full comparison keeps, and the nearest ones beyond."""
    import itertools

    import imagehash

    from osteo_helpers.data.linkage import hash_pairs

    rng = np.random.default_rng(0)
    hashes = {f"P{i}": f"{int(rng.integers(0, 2**63)):016x}" for i in range(60)}
    hashes["Q"] = hashes["P3"][:-1] + ("0" if hashes["P3"][-1] != "0" else "1")  # within a few bits of P3
    every = sorted((int(imagehash.hex_to_hash(hashes[a]) - imagehash.hex_to_hash(hashes[b])), a, b)
                   for a, b in itertools.combinations(sorted(hashes), 2))
    pairs = hash_pairs(hashes, max_bits=3, closest_above=5)
    assert [(r.bits, r.a, r.b) for r in pairs.itertuples()] == [p for p in every if p[0] <= 3] + [
        p for p in every if p[0] > 3][:5]
