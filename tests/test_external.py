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
from osteo_helpers.__main__ import main
from osteo_helpers.config import get_profile
from osteo_helpers.external import (
    evaluate,
    flag_counts,
    leave_one_site_out,
    site_counts,
    site_folds,
    site_notes,
    site_results,
)
from osteo_helpers.external.metrics import per_patient
from osteo_helpers.patients import CATEGORY_SPELLINGS
from osteo_helpers.study import Study
from tests.conftest import BUNDLE_SETTINGS

CONTRACT = {"auroc", "brier", "calibration_intercept", "calibration_slope"}


@pytest.fixture(scope="module")
def rows(synthetic_bundle, bundle_env, tmp_path_factory):
    """The bundle's own training patients, as `Study.rows` gives them at the bundle's image size."""
    study = Study.open("smoke", tmp_path_factory.mktemp("study"), synthetic_bundle.dataset.root, **BUNDLE_SETTINGS)
    return study.rows()


# ----------------------------------------------------------------------------- osteo validate


def test_validation_on_the_training_cohort_reproduces_the_bundles_in_sample_scores(synthetic_bundle, rows, tmp_path,
                                                                                   capsys):
    """A bundle trained on the native cohort and validated on it gives back its in-sample scores and metrics."""
    bundle, folder = synthetic_bundle.bundle, synthetic_bundle.folder
    out = tmp_path / "validation"
    code = main(["validate", "--model", str(folder), "--data-dir", str(synthetic_bundle.dataset.root),
                 "--out", str(out), "--n-boot", "50"])
    assert code == 0, capsys.readouterr().err
    assert "report:" in capsys.readouterr().out
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
    assert "smoke profile: the numbers mean nothing" in page and page.count("data:image/png;base64,") == 3
    facts = json.loads((out / "validation.json").read_text())
    assert facts["patients"] == len(rows) and facts["site_column"] == "batch" and facts["n_boot"] == 50


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
