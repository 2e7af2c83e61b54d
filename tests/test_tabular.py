"""Tests for osteo_helpers.tabular: the leakage guard, the preprocessor and clinical scores."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from osteo_helpers import data, tabular

LABEL_COLUMNS = ("t_score", "z_score", "diagnosis", "label_binary", "label_3class", "y_true",
                 "tscore", "T_Score", "Z_Score", "Diagnosis", "who_class", "mh_mentions_bone_diagnosis")


@pytest.fixture
def clinical(synthetic_dataset):
    clin = data.load_clinical(synthetic_dataset.spreadsheet)
    assert clin["menopause_age_years"].isna().any() and clin["menopause_age_years"].notna().any()
    return clin


@pytest.mark.parametrize("column", LABEL_COLUMNS)
def test_check_features_refuses_label_columns(column):
    with pytest.raises(tabular.LeakageError, match=column):
        tabular.check_features(["age_years", column])
    assert tabular.is_forbidden(column)


def test_check_features_refuses_raw_spreadsheet_spellings():
    """The raw headers ('T-score Value', 'Z-Score Value') name the label as surely as 't_score' does."""
    passed = []
    for column in ("T-score Value", "Z-Score Value", "t-score", "T score"):
        try:
            tabular.check_features(["age_years", column])
        except tabular.LeakageError:
            continue
        passed.append(column)
    assert passed == [], f"label columns accepted as model inputs: {passed}"


def test_check_features_accepts_the_allow_list():
    tabular.check_features(tabular.INPUT_FEATURES)
    tabular.check_features(list(tabular.INPUT_FEATURES))


def test_allow_list_contains_nothing_forbidden():
    assert not [f for f in tabular.INPUT_FEATURES if tabular.is_forbidden(f)]
    assert not set(tabular.INPUT_FEATURES) & set(data.TARGET_COLUMNS)
    assert not set(tabular.INPUT_FEATURES) & {"label_binary", "label_3class", "patient_id", "image_path",
                                               "split_group", "duplicate_group"}
    assert len(set(tabular.INPUT_FEATURES)) == len(tabular.INPUT_FEATURES)


@pytest.mark.parametrize("where", ["numeric", "numeric_with_indicator", "boolean", "categorical"])
def test_make_preprocessor_refuses_label_columns_anywhere(where):
    with pytest.raises(tabular.LeakageError):
        tabular.make_preprocessor(**{where: ("t_score",)})


def test_to_model_frame_refuses_label_columns(clinical):
    with pytest.raises(tabular.LeakageError):
        tabular.to_model_frame(clinical, tabular.INPUT_FEATURES + ("t_score",))
    with pytest.raises(KeyError, match="age_years"):
        tabular.to_model_frame(clinical.drop(columns=["age_years"]), tabular.INPUT_FEATURES)
    # without a list: the inputs the cohort has (a cohort may lack some)
    assert "age_years" not in tabular.to_model_frame(clinical.drop(columns=["age_years"])).columns


def test_preprocessor_output_never_carries_a_label(clinical):
    X = tabular.to_model_frame(clinical)
    rng = np.random.default_rng(0)
    # a frame that also carries every label-derived column, with values that would leak perfectly
    X = X.assign(t_score=clinical["t_score"].to_numpy(), z_score=clinical["z_score"].to_numpy(),
                 diagnosis=clinical["diagnosis"].to_numpy(),
                 label_binary=(clinical["diagnosis"] != "normal").astype(int).to_numpy(),
                 label_3class=clinical["diagnosis"].map({"normal": 0, "osteopenia": 1, "osteoporosis": 2}).to_numpy(),
                 noise=rng.normal(size=len(clinical)))
    pre = tabular.make_preprocessor().fit(X)
    out = pre.transform(X)
    names = list(pre.get_feature_names_out())
    assert out.shape == (len(X), len(names))
    assert np.isfinite(out).all()
    originals = {tabular.original_feature(n) for n in names}
    assert originals <= set(tabular.INPUT_FEATURES), originals - set(tabular.INPUT_FEATURES)
    assert not [n for n in names if tabular.is_forbidden(n)]
    assert not [o for o in originals if tabular.is_forbidden(o)]
    assert "noise" not in originals
    # no output column reproduces the T-score (a label copied under another name)
    t = clinical["t_score"].to_numpy()
    for j in range(out.shape[1]):
        col = out[:, j]
        if col.std() > 0:
            assert abs(np.corrcoef(col, t)[0, 1]) < 0.999, names[j]


def test_missing_indicator_for_menopause_age(clinical):
    X = tabular.to_model_frame(clinical)
    pre = tabular.make_preprocessor().fit(X)
    names = list(pre.get_feature_names_out())
    indicator = [n for n in names if "missingindicator" in n and n.endswith("menopause_age_years")]
    assert len(indicator) == 1
    j = names.index(indicator[0])
    out = pre.transform(X)
    missing = X["menopause_age_years"].isna().to_numpy()
    # indicator is scaled with the rest; it still separates missing from present exactly
    assert len(set(out[missing, j])) == 1 and len(set(out[~missing, j])) == 1
    assert out[missing, j][0] > out[~missing, j][0]
    assert tabular.original_feature(indicator[0]) == "menopause_age_years"
    # the imputed value itself is finite for men
    k = names.index("numeric_missing__menopause_age_years")
    assert np.isfinite(out[missing, k]).all()


def test_preprocessor_handles_unseen_category(clinical):
    X = tabular.to_model_frame(clinical)
    pre = tabular.make_preprocessor().fit(X)
    X2 = X.copy()
    X2.loc[X2.index[0], "occupation_group"] = "astronaut"
    out = pre.transform(X2)
    assert np.isfinite(out).all()


def test_to_model_frame_dtypes(clinical):
    X = tabular.to_model_frame(clinical)
    assert list(X.columns) == list(tabular.INPUT_FEATURES)
    for f in tabular.NUMERIC_FEATURES + tabular.NUMERIC_WITH_INDICATOR + tabular.BOOLEAN_FEATURES:
        assert X[f].dtype == float, f
    # nullable booleans become 1.0 / 0.0 / NaN
    pf = X["prior_fracture"]
    assert set(pf.dropna().unique()) <= {0.0, 1.0}
    assert pf.isna().sum() == clinical["prior_fracture"].isna().sum() > 0


@pytest.mark.parametrize("name,expected", [
    ("categorical__sex_female", "sex"),
    ("categorical__occupation_group_homemaker", "occupation_group"),
    ("categorical__fracture_site_upper_limb", "fracture_site"),
    ("numeric_missing__missingindicator_menopause_age_years", "menopause_age_years"),
    ("numeric_missing__years_since_menopause", "years_since_menopause"),
    ("numeric_missing__missingindicator_years_since_menopause", "years_since_menopause"),
    ("numeric__age_years", "age_years"),
    ("boolean__diet_low_fat", "diet_low_fat"),
    ("boolean__prior_fracture", "prior_fracture"),
])
def test_original_feature(name, expected):
    assert tabular.original_feature(name) == expected


def test_original_feature_groups_every_output(clinical):
    pre = tabular.make_preprocessor().fit(tabular.to_model_frame(clinical))
    groups = pd.Series([tabular.original_feature(n) for n in pre.get_feature_names_out()]).value_counts()
    assert set(groups.index) <= set(tabular.INPUT_FEATURES)
    assert groups["sex"] == 2  # female, male
    assert groups["menopause_age_years"] == 2  # value + missing indicator


def test_ost_index():
    assert tabular.ost_index(np.array([70.0]), np.array([50.0]))[0] == pytest.approx(4.0)
    table = pd.DataFrame({"weight_kg": [70, 55, 80.5], "age_years": [50, 75, 80.5]})
    np.testing.assert_allclose(tabular.ost_index(table["weight_kg"], table["age_years"]), [4.0, -4.0, 0.0])
    assert tabular.ost_index([60], [60]).dtype == float
