"""External validation of a saved bundle (`osteo validate`) and validation across sites.

The scoring tests share the session's bundle (conftest `synthetic_bundle`: train-final, smoke, on
30 synthetic patients); the statistics are checked on synthetic numbers; leave-one-site-out runs
the clinical arm (a logistic regression) on the same 30 patients.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from scipy import special

from osteo_helpers import evaluation
from osteo_helpers.cli import main
from osteo_helpers.config import get_profile
from osteo_helpers.external import (
    evaluate,
    flag_counts,
    leave_one_site_out,
    site_counts,
    site_folds,
    site_notes,
    site_results,
    site_text,
)
from osteo_helpers.external.metrics import per_patient
from osteo_helpers.patients import CATEGORY_SPELLINGS
from osteo_helpers.study import Study
from tests.browser_checks import MUTE_IMAGES_JS, WIDE_TABLES_JS, WINDOW
from tests.conftest import BUNDLE_SETTINGS

CONTRACT = {"auroc", "brier", "calibration_intercept", "calibration_slope"}


@pytest.fixture(scope="module")
def rows(synthetic_bundle, bundle_env, tmp_path_factory):
    """The bundle's own training patients, as `Study.rows` gives them at the bundle's image size."""
    study = Study.open("smoke", tmp_path_factory.mktemp("study"), synthetic_bundle.dataset.root, **BUNDLE_SETTINGS)
    return study.rows()


# ----------------------------------------------------------------------------- osteo validate


TRAINING_IMAGES = "30 of 30 images were in the training set: this is not an external validation"


def test_validation_on_the_training_cohort_reproduces_the_bundles_in_sample_scores(synthetic_bundle, rows, tmp_path,
                                                                                   capsys):
    """A bundle trained on the native cohort and validated on it gives back its in-sample scores and metrics,
    and says in its title, its tables and its output that this is no external validation (issue 28: a cohort
    of training images was reported as "External validation", no warning); the report names the cohort by
    its spec, adds the ROC curves and the fusion-minus-clinical AUROC difference with its CI."""
    bundle, folder = synthetic_bundle.bundle, synthetic_bundle.folder
    out = tmp_path / "validation"
    code = main(["validate", "--model", str(folder), "--data-dir", str(synthetic_bundle.dataset.root),
                 "--out", str(out), "--n-boot", "50"])
    assert code == 0, capsys.readouterr().err
    printed = capsys.readouterr().out
    assert "report:" in printed and TRAINING_IMAGES in printed
    pred = pd.read_csv(out / "predictions.csv", dtype={"patient_id": str}).set_index("patient_id")
    expected = bundle.predict(rows).set_index(rows["patient_id"])
    assert set(pred.index) == set(rows["patient_id"])
    for column in ("p_low_bmd", "p_low_bmd_clinical", "t_score_mean"):
        np.testing.assert_allclose(pred.loc[expected.index, column], expected[column], atol=1e-6, err_msg=column)
    assert (pred.loc[expected.index, "screen_positive"] == expected["screen_positive"]).all()
    metrics = pd.read_csv(out / "metrics.csv")
    assert CONTRACT <= set(metrics["metric"])
    y = rows["label_binary"].to_numpy()
    for model, column in (("fusion", "p_low_bmd"), ("clinical", "p_low_bmd_clinical")):
        row = metrics[(metrics["model"] == model) & (metrics["site"] == "all") & (metrics["subset"] == "all")]
        value = row.set_index("metric")["value"]
        p = expected[column].to_numpy()
        threshold = bundle.facts["arms"][model]["threshold"]
        point = evaluation.binary_point_metrics(y, p, threshold)
        assert value["auroc"] == pytest.approx(point["auroc"], abs=1e-9)
        assert value["sensitivity"] == pytest.approx(point["sensitivity"], abs=1e-9)
        assert value["brier"] == pytest.approx(evaluation.brier_score(y, p), abs=1e-9)
        assert value["calibration_slope"] == pytest.approx(evaluation.calibration_slope(y, p), abs=1e-9)
    sites = set(metrics["site"]) - {"all"}
    assert sites == set(rows["batch"]) and CONTRACT <= set(metrics.loc[metrics["site"].isin(sites), "metric"])
    page = (out / "report.html").read_text()
    assert "smoke profile: the numbers mean nothing" in page and page.count("data:image/png;base64,") == 4
    title = page[page.index("<h1>") + 4:page.index("</h1>")]
    assert title == f"Validation of model on knee-osteoporosis-v2: {TRAINING_IMAGES}", title
    assert page.count(f"<caption>{TRAINING_IMAGES}</caption>") >= 4 and (out / "figures" / "roc.png").is_file()
    facts = json.loads((out / "validation.json").read_text())
    assert facts["patients"] == len(rows) and facts["site_column"] == "batch" and facts["n_boot"] == 50
    assert facts["training_overlap"] | {"statement": None} == {
        "recorded": True, "images": 30, "of_images": 30, "persons": 30, "of_persons": 30, "external": False,
        "statement": None}
    assert pred["in_training_set"].all() and facts["cohort"] == "knee-osteoporosis-v2"
    comparison = pd.read_csv(out / "comparison.csv").set_index("subset").loc["all"]
    auroc = metrics[(metrics["metric"] == "auroc") & (metrics["site"] == "all") & (metrics["subset"] == "all")
                    & (metrics["recalibration"] == "none")].set_index("model")["value"]
    assert comparison["diff"] == pytest.approx(auroc["fusion"] - auroc["clinical"], abs=1e-12)
    assert comparison["ci_low"] <= comparison["diff"] <= comparison["ci_high"] and 0 <= comparison["p_value"] <= 1


def test_a_bundle_without_its_training_record_says_it_cannot_tell(synthetic_bundle, tmp_path, capsys):
    """A bundle made before the training set was recorded validates without crashing and says it cannot tell."""
    import shutil

    from osteo_helpers.bundle import FACTS_NAME, seal
    from osteo_helpers.external.inputs import UNRECORDED

    old = shutil.copytree(synthetic_bundle.folder, tmp_path / "old-model")
    facts = json.loads((old / FACTS_NAME).read_text())
    del facts["data"]["pixel_sha256"], facts["data"]["person_id_sha256"]
    facts["seal"] = seal(facts)
    (old / FACTS_NAME).write_text(json.dumps(facts, indent=2))
    out = tmp_path / "validation"
    code = main(["validate", "--model", str(old), "--data-dir", str(synthetic_bundle.dataset.root),
                 "--out", str(out), "--n-boot", "20"])
    assert code == 0, capsys.readouterr().err
    assert UNRECORDED in capsys.readouterr().out
    page = (out / "report.html").read_text()
    assert f"<h1>Validation of old-model on knee-osteoporosis-v2: {UNRECORDED}</h1>" in page
    assert f"<caption>{UNRECORDED}</caption>" in page
    assert pd.read_csv(out / "predictions.csv")["in_training_set"].isna().all()


def test_a_value_one_unit_round_trip_from_the_training_range_is_not_flagged():
    from osteo_helpers.bundle import range_warnings

    ranges = {"numeric": {"weight_kg": [39.0, 120.0], "height_m": [1.42, 1.83]}, "categories": {}}
    assert range_warnings({"weight_kg": 38.9999, "height_m": 1.42 * (1 - 1e-5)}, ranges) == []
    assert range_warnings({"weight_kg": 85.98 * 0.45359237}, ranges) == []  # 39 kg written as 85.98 lb
    assert range_warnings({"weight_kg": 38.5, "height_m": 1.84}, ranges) == [
        "weight_kg 38.5 outside the training range 39-120", "height_m 1.84 outside the training range 1.42-1.83"]


def test_one_and_two_images_per_patient_give_the_same_columns(synthetic_bundle, rows):
    """A cohort with both knees of every patient scores one row per patient with the columns of a cohort
    of one image each (issue 28: the two-image table lost the three-class and T-score columns)."""
    one = evaluate(rows, synthetic_bundle.bundle, person="split_group", n_boot=20).predictions
    knees = pd.concat([rows, rows.assign(image=[np.ascontiguousarray(im[:, ::-1]) for im in rows["image"]])],
                      ignore_index=True)
    two = evaluate(knees, synthetic_bundle.bundle, person="split_group", n_boot=20).predictions
    assert list(two.columns) == list(one.columns) and len(two) == len(one) and (two["n_images"] == 2).all()
    assert two[["p_normal", "p_osteopenia", "p_osteoporosis"]].sum(axis=1).to_numpy() == pytest.approx(1.0)


def test_unseen_inputs_are_scored_flagged_and_counted_bad_rows_refused(synthetic_bundle, rows):
    bundle = synthetic_bundle.bundle
    edited = rows.copy()
    top = bundle.facts["training_ranges"]["numeric"]["age_years"][1]
    edited.loc[[0, 1], "age_years"] = [top + 5, top + 12]                     # outside the range: scored, flagged
    seen = bundle.facts["training_ranges"]["categories"]["occupation_group"]
    edited.loc[2, "occupation_group"] = next(g for g in sorted(set(CATEGORY_SPELLINGS["occupation_group"].values()))
                                             if g not in seen)          # known word, never seen, unused: listed only
    edited.loc[3, "sex"] = "x"                                                  # not a category: refused
    edited.at[4, "image"] = None                                                # no image: refused
    edited.loc[5, "label_binary"] = np.nan                                      # no outcome: refused
    result = evaluate(edited, bundle, site="batch", person="split_group", n_boot=20)
    refused = result.refused.groupby("patient_id")["problem"].first()
    ids = edited["patient_id"]
    assert set(refused.index) == set(ids[3:6])
    assert "sex" in refused[ids[3]] and "image: missing" in refused[ids[4]] and "label_binary" in refused[ids[5]]
    counts = flag_counts(result.flags, result.summary["patients"]).set_index("input")
    assert counts.loc["age_years", "n_patients"] == 2 and counts.loc["age_years", "used_by_model"]
    assert counts.loc["occupation_group", "n_patients"] == 1 and not counts.loc["occupation_group", "used_by_model"]
    assert counts.loc["occupation_group", "values"] == edited.loc[2, "occupation_group"]
    assert set(result.predictions.loc[result.predictions["outside_training"], "patient_id"]) == set(ids[:2])
    assert result.summary["flagged_patients"] == 2 and result.summary["patients"] == len(rows) - 3
    inside = result.metrics[result.metrics["subset"] == "within_training_range"]
    assert set(inside["n_patients"]) == {len(rows) - 5}


def test_several_images_of_a_patient_score_the_mean_logit():
    scored = pd.DataFrame({"patient_id": ["a", "a", "b"], "y_true": [1, 1, 0], "site": "s", "group": ["a", "a", "b"],
                           "p_low_bmd": [0.2, 0.8, 0.3], "p_low_bmd_clinical": [0.5, 0.9, 0.1],
                           "outside_training": [False, True, False], "warnings": ["", "age", ""]})
    out = per_patient(scored).set_index("patient_id")
    assert out.loc["a", "p_low_bmd"] == pytest.approx(0.5)
    assert out.loc["a", "p_low_bmd_clinical"] == pytest.approx(special.expit((special.logit(0.5)
                                                                               + special.logit(0.9)) / 2))
    assert out.loc["a", "n_images"] == 2 and out.loc["a", "outside_training"] and out.loc["b", "n_images"] == 1


def test_validation_on_the_dicom_export_reproduces_the_bundles_in_sample_scores(synthetic_bundle, rows, tmp_path,
                                                                                   capsys):
    """The same patients exported as a second cohort (DICOM, renamed columns, pounds, centimetres, a site
    column) and validated through `--cohort`: the bundle gives back its in-sample scores."""
    export = tmp_path / "export"
    assert main(["cohort", "export", "--to", str(export), "--data-dir", str(synthetic_bundle.dataset.root)]) == 0
    out = tmp_path / "validation"
    code = main(["validate", "--model", str(synthetic_bundle.folder), "--cohort", str(export / "cohort.toml"),
                 "--out", str(out), "--n-boot", "20"])
    assert code == 0, capsys.readouterr().err
    pred = pd.read_csv(out / "predictions.csv", dtype={"patient_id": str}).set_index("patient_id")
    expected = synthetic_bundle.bundle.predict(rows).set_index(rows["patient_id"])
    assert set(pred.index) == set(rows["patient_id"])
    for column in ("p_low_bmd", "p_low_bmd_clinical", "t_score_mean"):
        np.testing.assert_allclose(pred.loc[expected.index, column], expected[column], atol=1e-6, err_msg=column)
    sites = set(pd.read_csv(out / "metrics.csv")["site"]) - {"all"}
    assert sites, "the export's site column gives per-site rows"


@pytest.fixture(scope="module")
def pseudonymised(synthetic_bundle, bundle_env, tmp_path_factory):
    """The bundle's cohort exported (DICOM) with 64-character pseudonyms for IDs, one row naming no image, one
    naming a file that is not there and one whose file is no DICOM; its validation folder."""
    import hashlib

    export = tmp_path_factory.mktemp("pseudonymised") / "export"
    assert main(["cohort", "export", "--to", str(export), "--data-dir", str(synthetic_bundle.dataset.root)]) == 0
    table = pd.read_csv(export / "cohort.csv", dtype={"StudyID": str})
    table["StudyID"] = [hashlib.sha256(pid.encode()).hexdigest() for pid in table["StudyID"]]
    (export / table.loc[2, "ImageFile"]).write_bytes(b"not a DICOM file" * 20)
    table.loc[0, "ImageFile"], table.loc[1, "ImageFile"] = None, "images/nowhere.dcm"
    table.to_csv(export / "cohort.csv", index=False)
    out = export.parent / "validation"
    assert main(["validate", "--model", str(synthetic_bundle.folder), "--cohort", str(export / "cohort.toml"),
                 "--out", str(out), "--n-boot", "20"]) == 0
    return export, table, out


def test_every_row_is_scored_or_refused_with_its_reason(pseudonymised, synthetic_bundle, capsys):
    """Issue 28: a row without an image was in neither predictions.csv nor refused.csv, an undecodable image
    stopped the command, and a cohort of rows without images was "a cohort that holds no rows"."""
    export, table, out = pseudonymised
    ids = table["StudyID"]
    scored = pd.read_csv(out / "predictions.csv", dtype={"patient_id": str})
    refused = pd.read_csv(out / "refused.csv", dtype={"patient_id": str}).set_index("patient_id")
    assert set(scored["patient_id"]) == set(ids[3:]) and set(refused.index) == set(ids[:3])
    assert "the table names no image (column 'ImageFile')" in refused.loc[ids[0], "problem"]
    assert "'images/nowhere.dcm' is not a file" in refused.loc[ids[1], "problem"]
    assert "not a readable DICOM file" in refused.loc[ids[2], "problem"]
    assert list(refused.loc[ids[:3], "row"]) == [2, 3, 4]  # the table's rows (the header is row 1)
    assert json.loads((out / "validation.json").read_text())["cohort"] == "knee-osteoporosis-v2-export"
    table.assign(ImageFile=None).to_csv(export / "none.csv", index=False)
    (export / "none.toml").write_text((export / "cohort.toml").read_text().replace('"cohort.csv"', '"none.csv"'))
    capsys.readouterr()
    code = main(["validate", "--model", str(synthetic_bundle.folder), "--cohort", str(export / "none.toml"),
                 "--out", str(out.parent / "none")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and lines[0] == f"error: knee-osteoporosis-v2-export: none of its {len(ids)} rows can be scored:"
    assert len(lines) == len(ids) + 1 and all("names no image" in line for line in lines[1:])
    assert not (out.parent / "none").exists()


def test_the_report_fits_a_1280_px_window(pseudonymised, browser, browser_context_args):
    """Every table of the report (with 64-character IDs and refused rows) fits its visible box in a 1,280 px
    window, nothing scrolls sideways, every table links its CSV file and every figure says in its alt text
    what it shows (issues 28 and 32: its tables were cut off; the book's check, `tests.browser_checks`)."""
    context = browser.new_context(**{**browser_context_args, "viewport": WINDOW})
    try:
        page = context.new_page()
        page.goto((pseudonymised[2] / "report.html").as_uri(), wait_until="load")
        wide, mute = page.evaluate(WIDE_TABLES_JS), page.evaluate(MUTE_IMAGES_JS)
        scroll = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth]")
        links = page.eval_on_selector_all("a.osteo-source", "links => links.map(a => a.getAttribute('href'))")
    finally:
        context.close()
    assert not wide and scroll[0] <= scroll[1], (wide, scroll)
    assert not mute, f"figures whose alt text says nothing: {mute}"
    assert {"metrics.csv", "comparison.csv", "refused.csv"} <= set(links)


@pytest.mark.parametrize("case", ["not a bundle", "out inside the data", "out is a file", "out holds other files",
                                  "n-boot 0", "cohort spec"])
def test_bad_model_or_out_is_exit_2_with_one_line(case, synthetic_bundle, tmp_path, capsys, synth):
    root = synthetic_bundle.dataset.root
    args = {"--model": str(synthetic_bundle.folder), "--data-dir": str(root), "--out": str(tmp_path / "v")}
    if case == "not a bundle":
        args["--model"] = str(tmp_path)
    elif case == "out inside the data":
        args["--out"] = str(root / "validation")
    elif case == "out is a file":
        (tmp_path / "v").write_text("mine")
    elif case == "out holds other files":
        (tmp_path / "v").mkdir()
        (tmp_path / "v" / "thesis.docx").write_text("mine")
    elif case == "n-boot 0":
        args["--n-boot"] = "0"
    else:
        del args["--data-dir"]
        args["--cohort"] = str(tmp_path / "hospital.toml")
    before = synth.snapshot(root)
    code = main(["validate", *[x for kv in args.items() for x in kv]])
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), captured.err
    expected = {"not a bundle": "bundle", "out inside the data": "inside the dataset folder", "out is a file": "file",
                "out holds other files": "holds files", "n-boot 0": "--n-boot", "cohort spec": "cohort spec"}
    assert expected[case] in lines[0]
    assert captured.out == "" and synth.snapshot(root) == before
    assert not (tmp_path / "v" / "metrics.csv").exists() and not (root / "validation").exists()


# ----------------------------------------------------------------------------- the statistics


def test_recalibration_of_a_calibrated_score_is_the_identity_and_undoes_a_known_miscalibration():
    rng = np.random.default_rng(0)
    p = rng.beta(2, 2, 20_000)
    y = (rng.random(len(p)) < p).astype(int)
    a, b = evaluation.recalibration(y, p, "logistic")
    assert abs(a) < 0.06 and abs(b - 1) < 0.06
    a, b = evaluation.recalibration(y, p, "intercept")
    assert abs(a) < 0.05 and b == 1.0
    overconfident = special.expit(0.8 + 2.0 * special.logit(p))                # true logit = (logit p' - 0.8) / 2
    a, b = evaluation.recalibration(y, overconfident, "logistic")
    assert a == pytest.approx(-0.4, abs=0.06) and b == pytest.approx(0.5, abs=0.03)
    fixed = evaluation.recalibrate(overconfident, a, b)
    assert evaluation.calibration_slope(y, fixed) == pytest.approx(1.0, abs=1e-6)


def test_random_effects_pooling():
    same = evaluation.random_effects([0.5, 0.5, 0.5], [0.04, 0.01, 0.02])
    assert same["estimate"] == pytest.approx(0.5) and same["tau2"] == 0.0 and same["ci_low"] < 0.5 < same["ci_high"]
    spread = evaluation.random_effects([0.0, 1.0, 2.0], [0.01, 0.01, 0.01])
    assert spread["tau2"] == pytest.approx(0.99) and spread["i2"] > 0.9
    y = np.r_[np.zeros(10), np.ones(10)]
    good = np.r_[np.linspace(0, 0.6, 10), np.linspace(0.4, 1, 10)]
    pooled = evaluation.pooled_auroc({"a": (y, good), "b": (y, good**2), "one class": (np.ones(5), good[:5]),
                                      "perfect": (y, y + good * 0.01)})
    assert pooled["k"] == 2 and set(pooled["excluded"]) == {"one class", "perfect"}
    assert pooled["value"] == pytest.approx(evaluation.binary_point_metrics(y, good)["auroc"])


# ----------------------------------------------------------------------------- across sites


def _with_sites(rows: pd.DataFrame) -> pd.DataFrame:
    """Three sites; site C holds no normal patient; one person has rows at sites A and B."""
    out = rows.copy()
    normal = out["label_binary"] == 0
    out["hospital"] = np.where(normal, np.where(np.arange(len(out)) % 2 == 0, "A", "B"),
                               np.array(["A", "B", "C"])[np.arange(len(out)) % 3])
    first_a, first_b = out.index[out["hospital"] == "A"][0], out.index[out["hospital"] == "B"][0]
    out.loc[first_b, "split_group"] = out.loc[first_a, "split_group"]
    return out


def test_leave_one_site_out_never_puts_a_site_or_a_person_on_both_sides(rows):
    data = _with_sites(rows)
    folds, spanning = site_folds(data, "hospital", person="split_group")
    assert len(spanning) == 2 and not set(spanning) & set(folds["patient_id"])
    assert folds.groupby("fold")["site"].nunique().eq(1).all() and folds["site"].nunique() == 3
    used = data[~data["patient_id"].isin(spanning)]
    site_of = used.set_index("patient_id")["hospital"]
    for _, part in folds.groupby("fold"):
        tested = set(site_of[part["patient_id"]])
        trained = set(site_of[~site_of.index.isin(part["patient_id"])])
        assert len(tested) == 1 and not tested & trained and len(trained) == 2
    profile = get_profile("smoke", **BUNDLE_SETTINGS)
    oof = leave_one_site_out(data, "hospital", ("clinical",), profile, person="split_group")["clinical"]
    assert not set(spanning) & set(oof["patient_id"]) and len(oof) == len(used)
    assert (oof["site"].to_numpy() == site_of[oof["patient_id"]].to_numpy()).all()
    assert (oof.groupby("fold")["site"].nunique() == 1).all()


def test_validation_per_site_reports_only_what_each_site_defines(synthetic_bundle, rows):
    result = evaluate(_with_sites(rows), synthetic_bundle.bundle, site="hospital", person="split_group", n_boot=20)
    metrics = result.metrics[result.metrics["recalibration"] == "none"]
    by_site = metrics.groupby("site")["metric"].agg(set)
    assert CONTRACT <= by_site["A"] and CONTRACT <= by_site["B"] and CONTRACT <= by_site["all"]
    assert by_site["C"] == {"brier", "sensitivity", "mean_predicted"}
    assert any(n.startswith("Site C holds no normal patient") for n in result.notes)


def test_a_site_with_one_class_gets_no_auroc_and_a_sentence(rows):
    data = _with_sites(rows)
    profile = get_profile("smoke", **BUNDLE_SETTINGS)
    oofs = leave_one_site_out(data, "hospital", ("clinical",), profile, person="split_group")
    table = site_results(oofs, n_boot=20, seed=0)
    per_site = table[table["estimate"] == "left-out site"]
    assert set(per_site["site"]) == {"A", "B"} and "C" not in set(table["site"])
    notes = site_notes(site_counts(data["label_binary"], data["hospital"]))
    assert any(n.startswith("Site C holds no normal patient") and "none is reported" in n for n in notes)
    assert any(n.startswith("Site A holds only") for n in notes)


def test_one_site_cannot_be_left_out_and_people_are_keyed_as_their_tables(rows):
    """Issue 28: a cohort of one site has no site to leave out: no table, and one sentence; a cohort whose people
    have several images gets each person's out-of-site score with the person's site."""
    profile = get_profile("smoke", **BUNDLE_SETTINGS)
    one = rows.assign(hospital="only")
    assert leave_one_site_out(one, "hospital", ("clinical",), profile, person="split_group") == {}
    table = site_results({}, n_boot=20, seed=0)
    counts = site_counts(one["label_binary"], one["hospital"])
    assert table.empty and site_text(table, counts) == (
        "This cohort holds 1 site (only): with fewer than two, no site can be left out and the validation across "
        "sites is not estimable on this cohort.")
    data = _with_sites(rows)
    twice = pd.concat([data, data.assign(patient_id=data["patient_id"] + "-R")], ignore_index=True)
    twice = twice.assign(person_id="person " + twice["patient_id"].str.removesuffix("-R"))
    oof = leave_one_site_out(twice, "hospital", ("clinical",), profile, person="split_group")["clinical"]
    site_of = data.set_index("person " + data["patient_id"])["hospital"]
    assert set(oof["patient_id"]) <= set(site_of.index) and oof["patient_id"].is_unique
    assert (oof["site"].to_numpy() == site_of[oof["patient_id"]].to_numpy()).all()
