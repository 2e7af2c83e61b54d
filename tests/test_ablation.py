"""Tests of osteo_helpers.ablation on small synthetic tables (no real data, no real images).

Covers the clinical baselines (OST, age alone), the label-permutation switch, the wording of
paired comparisons, the patient aggregation of per-knee predictions, and the plumbing of the
image-biomarker arms (qa_* exclusion, failed patients excluded, same folds as the other arms).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from osteo_helpers import ablation, config, evaluation, splits, training
from osteo_helpers.biomarkers import BiomarkerData, ImageQA
from osteo_helpers.tabular import BOOLEAN_FEATURES

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
# gradient boosting is slow on a shared 2-core machine and not under test here
CLASSICAL = ("age", "ost", "logreg", "batch_only")


def make_cohort(n: int, seed: int = 0, age_effect: float = 0.0) -> pd.DataFrame:
    """A modelling table with every clinical input; age predicts the label with strength age_effect."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(40, 85, n)
    logit = age_effect * (age - 62) / 10 + rng.normal(0, 1, n)
    label = (logit > np.quantile(logit, 0.4)).astype(int)
    three = np.where(label == 0, 0, np.where(rng.random(n) < 0.5, 1, 2))
    c = pd.DataFrame({
        "patient_id": [f"P{i:04d}" for i in range(n)], "label_binary": label, "label_3class": three,
        "split_group": [f"G{i:04d}" for i in range(n)], "age_years": age,
        "height_m": rng.uniform(1.45, 1.85, n), "weight_kg": rng.uniform(45, 100, n),
        "max_walking_km": rng.uniform(0, 5, n), "menopause_age_years": np.where(rng.random(n) < 0.3, np.nan, 48.0),
        "years_since_menopause": np.where(rng.random(n) < 0.3, np.nan, 10.0),
        "pregnancies": rng.integers(0, 5, n).astype(float),
        "sex": rng.choice(["female", "male"], n), "occupation_group": rng.choice(["a", "b", "c"], n),
        "fracture_site": rng.choice(["none", "arm"], n),
        "batch": rng.choice(["rgb-1k", "gray-2k+"], n), "mode": "L", "width": 1024.0, "height": 1024.0,
    })
    c["bmi"] = c["weight_kg"] / c["height_m"] ** 2
    for f in BOOLEAN_FEATURES:
        c[f] = rng.integers(0, 2, n).astype(float)
    return c


@pytest.fixture
def profile():
    return config.get_profile("smoke", n_folds=3, n_repeats=1, n_boot=100, seed=7, gbm_estimators=10,
                              num_threads=1, roi_size=32, roi_epochs=1, batch_size=16, patience=1)


def _auroc(oof: pd.DataFrame) -> float:
    avg = evaluation.average_over_repeats(oof)
    return roc_auc_score(avg["y_true"], avg[evaluation.prob_columns(oof)[1]])


# --------------------------------------------------------------------------------------------
# clinical baselines
# --------------------------------------------------------------------------------------------
def test_ost_is_point_two_times_weight_minus_age(profile):
    c = pd.DataFrame({"weight_kg": [50.0, 70.0, 90.0], "age_years": [80.0, 60.0, 40.0]})
    x = ablation.sklearn_arms(profile)["ost"].features(c)
    assert x.shape == (3, 1)
    np.testing.assert_allclose(x[:, 0], [-6.0, 2.0, 10.0])


def test_age_alone_auroc_equals_auroc_of_age(profile):
    # Hand-made table: every (age, label) pair occurs twice, once in each of two folds, so the two
    # training folds are identical, both fitted models are the same increasing function of age, and
    # the out-of-fold AUROC must equal the AUROC of age itself (ties included).
    ages = np.array([45, 50, 52, 55, 58, 60, 60, 63, 66, 70, 72, 75, 78, 81], float)
    label = np.array([0, 0, 1, 0, 0, 1, 0, 0, 1, 1, 0, 1, 1, 1])
    n = len(ages)
    c = make_cohort(2 * n, seed=1)
    c["age_years"] = np.r_[ages, ages]
    c["label_binary"] = np.r_[label, label]
    folds = pd.DataFrame({"patient_id": c["patient_id"], "seed": 0, "fold": np.r_[np.zeros(n), np.ones(n)].astype(int)})
    task = training.TASKS["binary"]
    age_arm = ablation.sklearn_arms(profile)["age"]
    oof = ablation.cross_validate_sklearn(age_arm, c, folds, task, c["label_binary"].to_numpy())
    assert len(oof) == 2 * n and set(oof["fold"]) == {0, 1}
    expected = roc_auc_score(c["label_binary"], c["age_years"])
    assert 0.6 < expected < 0.95  # informative but not perfect, so the test can fail
    assert _auroc(oof) == pytest.approx(expected, abs=1e-12)
    res = ablation.score_arms({"age": oof}, "binary", 50, 0)
    assert res.query("metric == 'auroc'")["value"].iloc[0] == pytest.approx(expected, abs=1e-12)


# --------------------------------------------------------------------------------------------
# permutation switch
# --------------------------------------------------------------------------------------------
def test_permutation_changes_order_but_keeps_labels(profile, tmp_path):
    c = make_cohort(60, seed=2, age_effect=2.0)
    folds = splits.make_folds(c, "label_3class", 3, 1, profile.seed)
    plain = ablation.run_arms(c, folds, "binary", profile, tmp_path, None, networks=(), progress=False,
                              classical=CLASSICAL)
    perm = ablation.run_arms(c, folds, "binary", profile, tmp_path, None, networks=(), permute=True, progress=False,
                                 classical=CLASSICAL)
    assert set(perm) == set(plain)
    a = plain["age"].set_index("patient_id").loc[c["patient_id"], "y_true"].to_numpy()
    b = perm["age"].set_index("patient_id").loc[c["patient_id"], "y_true"].to_numpy()
    assert not np.array_equal(a, b)
    assert sorted(a) == sorted(b)
    # every arm sees the same permuted labels, the biomarker arms included (on their patients)
    bio = make_biomarkers(c, True, failed={c["patient_id"].iloc[0]})
    perm.update(ablation.run_biomarker_arms(c, folds, "binary", profile, tmp_path, bio,
                                            ablation.permuted_labels(c["label_binary"].to_numpy(), profile.seed),
                                            permute=True, roi_networks=(), progress=False))
    truth = pd.Series(b, index=c["patient_id"])
    for name in ("age", "ost", "logreg", "batch_only", "biomarker", "biomarker+clinical"):
        oof = perm[name]
        np.testing.assert_array_equal(oof["y_true"], truth.loc[oof["patient_id"]].to_numpy(), err_msg=name)


def test_permutation_takes_age_to_chance(profile, tmp_path):
    c = make_cohort(600, seed=3, age_effect=3.0)
    folds = splits.make_folds(c, "label_3class", 3, 1, profile.seed)
    plain = ablation.run_arms(c, folds, "binary", profile, tmp_path, None, networks=(), progress=False,
                              classical=("age",))
    perm = ablation.run_arms(c, folds, "binary", profile, tmp_path, None, networks=(), permute=True, progress=False,
                                 classical=("age",))
    assert _auroc(plain["age"]) > 0.8
    assert abs(_auroc(perm["age"]) - 0.5) < 0.08


# --------------------------------------------------------------------------------------------
# paired comparisons and their wording
# --------------------------------------------------------------------------------------------
def _oof(ids, y, p):
    return pd.DataFrame({"patient_id": ids, "fold": 0, "seed": 0, "y_true": y, "prob_normal": 1 - p, "prob_low_bmd": p})


def test_verdict_follows_the_ci():
    assert "better" in ablation.verdict(0.1, 0.02, 0.2, "a", "b")
    assert "worse" in ablation.verdict(-0.1, -0.2, -0.01, "a", "b")
    for low, high in ((-0.05, 0.2), (-0.2, 0.0), (0.0, 0.1)):
        text = ablation.verdict(0.05, low, high, "a", "b")
        assert "better" not in text and "worse" not in text and "no detectable difference" in text


def test_paired_comparisons_wording_and_common_patients():
    rng = np.random.default_rng(0)
    n = 300
    ids = np.array([f"P{i}" for i in range(n)])
    y = rng.integers(0, 2, n)
    strong = np.clip(0.5 + 0.35 * (y - 0.5) * 2 + rng.normal(0, 0.15, n), 0, 1)
    noise = rng.random(n)
    similar = np.clip(strong + rng.normal(0, 0.01, n), 0, 1)
    keep = np.arange(n) % 10 != 0  # an arm that lacks 10% of the patients (failed localisation)
    oofs = {"strong": _oof(ids, y, strong), "noise": _oof(ids, y, noise), "similar": _oof(ids, y, similar),
            "subset": _oof(ids[keep], y[keep], strong[keep])}
    comp = ablation.paired_comparisons(oofs, (("strong", "noise"), ("strong", "similar"), ("subset", "noise"),
                                              ("noise", "subset")), 300, 0).set_index(["model_a", "model_b"])
    r = comp.loc[("strong", "noise")]
    assert r["ci_low"] > 0 and "better" in r["conclusion"] and r["p_delong"] < 0.001
    r = comp.loc[("strong", "similar")]
    assert r["ci_low"] <= 0 <= r["ci_high"] and "better" not in r["conclusion"] and "worse" not in r["conclusion"]
    assert comp.loc[("subset", "noise"), "n_patients"] == keep.sum()
    assert comp.loc[("noise", "subset"), "n_patients"] == keep.sum()
    assert comp.loc[("strong", "noise"), "n_patients"] == n
    # value of the subset arm is computed on its own patients only
    assert comp.loc[("subset", "noise"), "value_a"] == pytest.approx(roc_auc_score(y[keep], strong[keep]))
    band = set(ids[:100])
    sub = ablation.paired_comparisons(oofs, (("subset", "noise"),), 100, 0, subset=band, subset_name="band")
    assert sub["n_patients"].iloc[0] == len(band & set(ids[keep])) and sub["subset"].iloc[0] == "band"


# --------------------------------------------------------------------------------------------
# patient aggregation of per-knee predictions
# --------------------------------------------------------------------------------------------
def test_patient_oof_averages_knees():
    knee = pd.DataFrame({"patient_id": ["A", "A", "B", "C", "C"], "fold": [0, 0, 1, 2, 2], "seed": 5,
                         "y_true": [1, 1, 0, 1, 1], "prob_normal": [0.2, 0.6, 0.7, 0.1, 0.3],
                         "prob_low_bmd": [0.8, 0.4, 0.3, 0.9, 0.7], "threshold": [0.5, 0.5, 0.4, 0.6, 0.6]})
    out = ablation.patient_oof(knee).set_index("patient_id")
    assert list(out.index) == ["A", "B", "C"]
    assert out.loc["A", "prob_low_bmd"] == pytest.approx(0.6)
    assert out.loc["C", "prob_normal"] == pytest.approx(0.2)
    assert out.loc["B", "prob_low_bmd"] == pytest.approx(0.3)
    assert list(out["n_knees"]) == [2, 1, 2]
    assert list(out["fold"]) == [0, 1, 2] and (out["seed"] == 5).all()
    evaluation.average_over_repeats(out.reset_index())  # one row per patient per seed: accepted
    bad = knee.copy()
    bad.loc[1, "y_true"] = 0
    with pytest.raises(ValueError, match="y_true"):
        ablation.patient_oof(bad)
    bad = knee.copy()
    bad.loc[1, "fold"] = 3
    with pytest.raises(ValueError, match="fold"):
        ablation.patient_oof(bad)


# --------------------------------------------------------------------------------------------
# biomarker arms plumbing
# --------------------------------------------------------------------------------------------
def make_biomarkers(c: pd.DataFrame, informative: bool, failed: set[str], roi_size: int = 32,
                    seed: int = 0) -> BiomarkerData:
    """Knee table (one or two knees per patient) with a qa_ column that equals the label (a shortcut
    that must not be used), noise features with gaps, and, if informative, one feature that tracks
    the label. Patients in `failed` have no knee."""
    rng = np.random.default_rng(seed)
    rows, tiles, status = [], [], []
    for pid, y in zip(c["patient_id"], c["label_binary"]):
        if pid in failed:
            status.append({"patient_id": pid, "n_knees": 0, "status": "failed", "reason": "no bone found"})
            continue
        k = 1 + int(rng.random() < 0.5)
        for side in (["single"] if k == 1 else ["left", "right"]):
            f = {"patient_id": pid, "side": side, "n_knees": k, "qa_shortcut": float(y),
                 "qa_plateau_width_px": 300.0 + 50 * y,
                 "tibia_noise": rng.normal(), "femur_noise": rng.normal() if rng.random() > 0.2 else np.nan,
                 "tibia_signal": (1.5 * y if informative else 0.0) + rng.normal()}
            rows.append(f)
            tile = rng.integers(0, 256, (2 * roi_size, roi_size)).astype(np.uint8)
            tiles.append(tile)
        status.append({"patient_id": pid, "n_knees": k, "status": "localised", "reason": ""})
    qa = [ImageQA(s["patient_id"], s["status"], None, 1, [], []) for s in status]
    return BiomarkerData(pd.DataFrame(rows), pd.DataFrame(status), np.stack(tiles), qa, roi_size)


@pytest.mark.parametrize("informative", [False, True])
def test_biomarker_arms_exclude_qa_and_failed_patients(profile, tmp_path, informative):
    c = make_cohort(240, seed=4)
    failed = set(c["patient_id"].iloc[[3, 50, 100]])
    bio = make_biomarkers(c, informative, failed)
    folds = splits.make_folds(c, "label_3class", 3, 1, profile.seed)
    oofs = ablation.run_arms(c, folds, "binary", profile, tmp_path, None, networks=(), biomarkers=bio,
                             roi_networks=(), progress=False, classical=("age", "logreg"))
    assert {"biomarker", "biomarker+clinical", "age", "logreg"} <= set(oofs)
    assert "roi_cnn" not in oofs
    expected = set(c["patient_id"]) - failed
    for name in ablation.BIOMARKER_ARMS:
        oof = oofs[name]
        assert set(oof["patient_id"]) == expected and len(oof) == len(expected)
        # same folds, seeds and labels as the clinical arms for the same patients
        ref = oofs["age"].set_index("patient_id").loc[oof["patient_id"]]
        np.testing.assert_array_equal(oof["fold"], ref["fold"])
        np.testing.assert_array_equal(oof["seed"], ref["seed"])
        np.testing.assert_array_equal(oof["y_true"], ref["y_true"])
    auc = _auroc(oofs["biomarker"])
    if informative:
        assert auc > 0.75
    else:  # the qa_ columns equal the label: using them would give AUROC ~ 1
        assert auc < 0.7
    comp = ablation.paired_comparisons(oofs, ablation.BIOMARKER_COMPARISONS, 100, 0)
    assert set(comp["model_b"]) == {"age", "logreg"} and (comp["n_patients"] == len(expected)).all()


def test_biomarker_arms_refuse_qa_columns():
    with pytest.raises(ValueError, match="qa_"):
        ablation.biomarker_sklearn_arms(["tibia_noise", "qa_score"])


def test_roi_cnn_arm_one_prediction_per_patient(profile, tmp_path):
    c = make_cohort(36, seed=5)
    failed = {c["patient_id"].iloc[0]}
    bio = make_biomarkers(c, False, failed, roi_size=32, seed=1)
    folds = splits.make_folds(c, "label_3class", 3, 1, profile.seed)
    oofs = ablation.run_biomarker_arms(c, folds, "binary", profile, tmp_path, bio, c["label_binary"].to_numpy(),
                                       roi_networks=("roi_cnn",), progress=False)
    oof = oofs["roi_cnn"]
    assert set(oof["patient_id"]) == set(c["patient_id"]) - failed
    assert not oof.duplicated(["patient_id", "seed"]).any()
    n_knees = bio.knees.groupby("patient_id").size()
    assert (oof.set_index("patient_id")["n_knees"] == n_knees.loc[oof["patient_id"]].to_numpy()).all()
    fold_of = folds.set_index("patient_id")["fold"]
    np.testing.assert_array_equal(oof["fold"], fold_of.loc[oof["patient_id"]].to_numpy())
    probs = oof[["prob_normal", "prob_low_bmd"]].sum(axis=1)
    np.testing.assert_allclose(probs, 1.0, atol=1e-5)
    assert (tmp_path / ablation.roi_arm_dir("roi_cnn", "binary")).is_dir()
