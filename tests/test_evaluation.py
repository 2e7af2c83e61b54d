"""Tests for osteo_helpers.evaluation: hand-checked values, sklearn agreement, bootstraps."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score, balanced_accuracy_score, confusion_matrix, roc_auc_score

from osteo_helpers import evaluation as ev

# Hand-checked binary example.
# Positives 0.9, 0.7, 0.4, 0.2 vs negatives 0.8, 0.3, 0.3, 0.1, 0.05, 0.6:
# pairs won = 6 + 5 + 4 + 2 = 17 of 24.  Ranked: P N P N P N N P N N, so
# precision at each positive is 1/1, 2/3, 3/5, 4/8.  At 0.5: tp 2, fn 2, fp 2, tn 4.
Y_HAND = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
P_HAND = np.array([0.9, 0.7, 0.4, 0.2, 0.8, 0.3, 0.3, 0.1, 0.05, 0.6])


def _separable(n: int = 120, seed: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels, an informative score and a noise score."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    good = np.clip(0.35 * y + 0.65 * rng.random(n), 0, 1)
    noise = rng.random(n)
    return y, good, noise


def _brute_force_delong(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Variance of AUC(a) - AUC(b) from the pairwise definition of V10 and V01."""

    def components(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return psi.mean(axis=1), psi.mean(axis=0)

    v10a, v01a = components(a)
    v10b, v01b = components(b)
    m, n = len(v10a), len(v01a)
    var = (
        (np.var(v10a, ddof=1) + np.var(v10b, ddof=1) - 2 * np.cov(v10a, v10b)[0, 1]) / m
        + (np.var(v01a, ddof=1) + np.var(v01b, ddof=1) - 2 * np.cov(v01a, v01b)[0, 1]) / n
    )
    return v10a.mean() - v10b.mean(), var


# --------------------------------------------------------------------------- OOF table


def _oof() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient_id": ["p1", "p2", "p1", "p2"],
            "fold": [0, 1, 1, 0],
            "seed": [0, 0, 1, 1],
            "y_true": [1, 0, 1, 0],
            "prob_normal": [0.2, 0.9, 0.4, 0.7],
            "prob_low_bmd": [0.8, 0.1, 0.6, 0.3],
        }
    )


def test_prob_columns_and_class_names_keep_table_order() -> None:
    oof = _oof()
    assert ev.prob_columns(oof) == ["prob_normal", "prob_low_bmd"]
    assert ev.class_names_from(oof) == ["normal", "low_bmd"]


def test_prob_columns_raises_without_probabilities() -> None:
    with pytest.raises(ValueError, match="prob_"):
        ev.prob_columns(pd.DataFrame({"patient_id": [1], "y_true": [0]}))


def test_average_over_repeats_averages_per_patient() -> None:
    avg = ev.average_over_repeats(_oof()).set_index("patient_id")
    assert list(avg.index) == ["p1", "p2"]
    np.testing.assert_allclose(avg.loc["p1", ["prob_normal", "prob_low_bmd"]], [0.3, 0.7])
    np.testing.assert_allclose(avg.loc["p2", ["prob_normal", "prob_low_bmd"]], [0.8, 0.2])
    assert avg["y_true"].tolist() == [1, 0]
    assert avg["n_repeats"].tolist() == [2, 2]


def test_average_over_repeats_names_patient_with_inconsistent_labels() -> None:
    oof = _oof()
    oof.loc[3, "y_true"] = 1
    with pytest.raises(ValueError, match="p2"):
        ev.average_over_repeats(oof)


def test_average_over_repeats_rejects_duplicate_patient_within_seed() -> None:
    oof = _oof()
    oof.loc[2, "seed"] = 0
    with pytest.raises(ValueError, match="p1"):
        ev.average_over_repeats(oof)


# --------------------------------------------------------------------------- point metrics


def test_binary_metrics_perfect_classifier() -> None:
    m = ev.binary_point_metrics([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9])
    for key in ("auroc", "auprc", "sensitivity", "specificity", "accuracy", "ppv", "npv"):
        assert m[key] == 1.0, key
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 0, 2, 0)


def test_binary_metrics_hand_computed() -> None:
    m = ev.binary_point_metrics(Y_HAND, P_HAND, threshold=0.5)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (2, 2, 4, 2)
    assert m["sensitivity"] == pytest.approx(0.5)
    assert m["specificity"] == pytest.approx(4 / 6)
    assert m["ppv"] == pytest.approx(0.5)
    assert m["npv"] == pytest.approx(4 / 6)
    assert m["accuracy"] == pytest.approx(0.6)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 4 / 6) / 2)
    assert m["auroc"] == pytest.approx(17 / 24)
    assert m["auprc"] == pytest.approx((1 + 2 / 3 + 3 / 5 + 4 / 8) / 4)


def test_binary_threshold_is_inclusive() -> None:
    m = ev.binary_point_metrics([1, 0], [0.5, 0.49], threshold=0.5)
    assert m["tp"] == 1 and m["fp"] == 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binary_metrics_agree_with_sklearn_under_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 80)
    s = np.round(rng.random(80), 1)  # coarse rounding forces many ties
    m = ev.binary_point_metrics(y, s)
    assert m["auroc"] == pytest.approx(roc_auc_score(y, s))
    assert m["auprc"] == pytest.approx(average_precision_score(y, s))
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, s >= 0.5))


def test_binary_metrics_single_class_is_nan_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        m = ev.binary_point_metrics([1, 1, 1], [0.2, 0.6, 0.9])
    assert np.isnan(m["auroc"])
    assert np.isnan(m["specificity"])
    assert m["sensitivity"] == pytest.approx(2 / 3)


def test_multiclass_metrics_hand_computed() -> None:
    y = [0, 1, 2, 0]
    proba = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.5, 0.3], [0.6, 0.3, 0.1]])
    m = ev.multiclass_point_metrics(y, proba, ["normal", "osteopenia", "osteoporosis"])
    # argmax predictions 0, 1, 1, 0: only the osteoporosis patient is wrong.
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx(2 / 3)
    assert m["sensitivity_osteoporosis"] == 0.0
    assert m["sensitivity_normal"] == 1.0
    assert m["specificity_osteopenia"] == pytest.approx(2 / 3)
    assert m["auroc_normal"] == 1.0
    assert m["auroc_osteoporosis"] == 1.0


def test_multiclass_macro_auroc_matches_sklearn_ovr() -> None:
    rng = np.random.default_rng(7)
    y = np.tile([0, 1, 2], 30)
    proba = rng.dirichlet(np.ones(3), size=len(y))
    m = ev.multiclass_point_metrics(y, proba, ["a", "b", "c"])
    assert m["macro_auroc"] == pytest.approx(roc_auc_score(y, proba, multi_class="ovr"))
    assert m["auroc_b"] == pytest.approx(roc_auc_score(y == 1, proba[:, 1]))
    expected_auprc = np.mean([average_precision_score(y == c, proba[:, c]) for c in range(3)])
    assert m["macro_auprc"] == pytest.approx(expected_auprc)


def test_confusion_hand_computed() -> None:
    cm = ev.confusion([0, 0, 1, 2, 2, 1, 0], [0, 1, 1, 2, 0, 1, 0], n_classes=3)
    np.testing.assert_array_equal(cm, [[2, 1, 0], [0, 2, 0], [1, 0, 1]])


def test_confusion_rejects_out_of_range_labels() -> None:
    with pytest.raises(ValueError):
        ev.confusion([0, 3], [0, 1], n_classes=3)


# --------------------------------------------------------------------------- bootstrap


def test_bootstrap_metrics_ci_brackets_point_and_is_seeded() -> None:
    y, good, _ = _separable()
    proba = np.column_stack([1 - good, good])
    first = ev.bootstrap_metrics(y, proba, ["normal", "low_bmd"], n_boot=300, seed=11)
    again = ev.bootstrap_metrics(y, proba, ["normal", "low_bmd"], n_boot=300, seed=11)
    other = ev.bootstrap_metrics(y, proba, ["normal", "low_bmd"], n_boot=300, seed=12)
    assert list(first.columns) == ["metric", "value", "ci_low", "ci_high"]
    pd.testing.assert_frame_equal(first, again)
    assert not np.allclose(first["ci_low"], other["ci_low"])
    row = first.set_index("metric").loc["auroc"]
    assert row["value"] == pytest.approx(roc_auc_score(y, good))
    assert row["ci_low"] < row["value"] < row["ci_high"]
    rates = first[first["metric"].isin(["auroc", "sensitivity", "specificity", "ppv", "npv"])]
    assert (rates["ci_low"] <= rates["value"]).all() and (rates["value"] <= rates["ci_high"]).all()


def test_bootstrap_metrics_multiclass_has_per_class_rows() -> None:
    rng = np.random.default_rng(5)
    y = np.tile([0, 1, 2], 20)
    proba = rng.dirichlet(np.ones(3), size=len(y))
    df = ev.bootstrap_metrics(y, proba, ["n", "op", "os"], n_boot=200, seed=0).set_index("metric")
    assert {"macro_auroc", "auroc_os", "sensitivity_op", "specificity_n"} <= set(df.index)
    assert df[["ci_low", "ci_high"]].notna().all().all()
    row = df.loc["macro_auroc"]
    assert row["ci_low"] <= row["value"] <= row["ci_high"]


def test_bootstrap_confusion_is_stratified_by_true_class() -> None:
    y = np.array([0] * 6 + [1] * 4)
    out = ev.bootstrap_confusion(y, y, n_classes=2, n_boot=200, seed=0)
    # Perfect predictions plus fixed class counts per resample: no spread at all.
    diag = out[out["true"] == out["pred"]]
    assert diag["count"].tolist() == [6, 4]
    assert (diag["ci_low"] == diag["count"]).all() and (diag["ci_high"] == diag["count"]).all()
    off = out[out["true"] != out["pred"]]
    assert (off[["count", "ci_low", "ci_high"]] == 0).all().all()


def test_bootstrap_confusion_counts_match_confusion() -> None:
    y_true, y_pred = [0, 0, 1, 2, 2, 1, 0], [0, 1, 1, 2, 0, 1, 0]
    out = ev.bootstrap_confusion(y_true, y_pred, n_classes=3, n_boot=200, seed=1)
    counts = out.pivot(index="true", columns="pred", values="count").to_numpy()
    hand = np.array([[2, 1, 0],  # true 0: predicted 0, 1, 0
                     [0, 2, 0],  # true 1: predicted 1, 1
                     [1, 0, 1]])  # true 2: predicted 2, 0
    np.testing.assert_array_equal(counts, hand)
    np.testing.assert_array_equal(counts, confusion_matrix(y_true, y_pred, labels=[0, 1, 2]))
    assert (out["ci_low"] <= out["count"]).all() and (out["count"] <= out["ci_high"]).all()
    # Resampling within true classes: both class-1 patients are always predicted 1, and cells
    # nobody falls into stay empty in every resample.
    cells = out.set_index(["true", "pred"])
    assert tuple(cells.loc[(1, 1), ["ci_low", "ci_high"]]) == (2, 2)
    assert tuple(cells.loc[(0, 2), ["ci_low", "ci_high"]]) == (0, 0)


def test_paired_bootstrap_identical_scores_give_zero_difference() -> None:
    y, good, _ = _separable()
    res = ev.paired_bootstrap_difference(y, good, good.copy(), n_boot=200, seed=0)
    assert res["diff"] == 0.0
    assert (res["ci_low"], res["ci_high"]) == (0.0, 0.0)
    assert res["p_value"] == 1.0


def test_paired_bootstrap_detects_clearly_better_score() -> None:
    y, good, noise = _separable()
    res = ev.paired_bootstrap_difference(y, good, noise, metric="auroc", n_boot=500, seed=0)
    assert res["value_a"] == pytest.approx(roc_auc_score(y, good))
    assert res["diff"] == pytest.approx(res["value_a"] - res["value_b"])
    assert 0 < res["ci_low"] < res["diff"] < res["ci_high"]
    assert res["p_value"] < 0.01
    flipped = ev.paired_bootstrap_difference(y, noise, good, metric="auroc", n_boot=500, seed=0)
    assert flipped["ci_high"] < 0 and flipped["p_value"] < 0.01


def test_paired_bootstrap_macro_auroc_on_probability_matrices() -> None:
    rng = np.random.default_rng(2)
    y = np.tile([0, 1, 2], 40)
    informative = rng.dirichlet(np.ones(3), size=len(y)) + 0.6 * np.eye(3)[y]
    informative /= informative.sum(axis=1, keepdims=True)
    noise = rng.dirichlet(np.ones(3), size=len(y))
    res = ev.paired_bootstrap_difference(y, informative, noise, metric="macro_auroc", n_boot=300)
    assert res["value_a"] == pytest.approx(roc_auc_score(y, informative, multi_class="ovr"))
    assert res["ci_low"] > 0


def test_paired_bootstrap_rejects_unknown_metric() -> None:
    y, good, noise = _separable()
    with pytest.raises(ValueError, match="metric"):
        ev.paired_bootstrap_difference(y, good, noise, metric="f1")


# --------------------------------------------------------------------------- DeLong

# Tiny example: patients pos1..pos3 then neg1, neg2.
Y_DL = np.array([1, 1, 1, 0, 0])
A_DL = np.array([0.8, 0.5, 0.4, 0.5, 0.3])
B_DL = np.array([0.2, 0.9, 0.6, 0.4, 0.1])


def test_delong_single_auc_variance_hand_computed() -> None:
    # Score A: psi rows (1, 1), (0.5, 1), (0, 1) -> V10 = 1, .75, .5 ; V01 = .5, 1.
    # AUC = .75, S10 = var(V10) = 1/16, S01 = var(V01) = 1/8,
    # Var(AUC) = S10/3 + S01/2 = 1/48 + 1/16 = 1/12.
    # A constant comparator has V10 = V01 = 0.5 everywhere, so it adds no variance
    # and the SE of the difference equals the SE of AUC(A).
    res = ev.delong_test(Y_DL, A_DL, np.full(5, 0.5))
    assert res["auc_a"] == pytest.approx(0.75)
    assert res["auc_b"] == pytest.approx(0.5)
    assert res["se"] == pytest.approx(np.sqrt(1 / 12))
    assert res["z"] == pytest.approx(0.25 / np.sqrt(1 / 12))
    assert res["p_value"] == pytest.approx(2 * stats.norm.sf(0.25 / np.sqrt(1 / 12)))


def test_delong_two_correlated_aucs_hand_computed() -> None:
    # Score B: V10 = .5, 1, 1 ; V01 = 2/3, 1 ; AUC = 5/6.
    # cov10(A,B) = -1/16, var10(B) = 1/12 ; cov01(A,B) = 1/12, var01(B) = 1/18.
    # Var(diff) = (1/16 + 1/12 + 1/8)/3 + (1/8 + 1/18 - 1/6)/2 = 13/144 + 1/144 = 7/72.
    res = ev.delong_test(Y_DL, A_DL, B_DL)
    assert res["auc_b"] == pytest.approx(5 / 6)
    assert res["diff"] == pytest.approx(0.75 - 5 / 6)
    assert res["se"] == pytest.approx(np.sqrt(7 / 72))
    assert res["z"] == pytest.approx((0.75 - 5 / 6) / np.sqrt(7 / 72))


@pytest.mark.parametrize("seed", [0, 1])
def test_delong_matches_pairwise_definition_and_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 60)
    a = np.round(rng.random(60) + 0.3 * y, 1)  # rounded: exercises midranks for ties
    b = np.round(rng.random(60), 1)
    res = ev.delong_test(y, a, b)
    diff, var = _brute_force_delong(y, a, b)
    assert res["auc_a"] == pytest.approx(roc_auc_score(y, a))
    assert res["auc_b"] == pytest.approx(roc_auc_score(y, b))
    assert res["diff"] == pytest.approx(diff)
    assert res["se"] == pytest.approx(np.sqrt(var))


def test_delong_identical_scores_have_zero_z_and_unit_p() -> None:
    y, good, _ = _separable()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = ev.delong_test(y, good, good.copy())
    assert res["diff"] == 0.0 and res["se"] == 0.0
    assert res["z"] == 0.0 and res["p_value"] == 1.0


def test_delong_requires_two_of_each_class() -> None:
    with pytest.raises(ValueError, match="two positives"):
        ev.delong_test([1, 0, 0], [0.9, 0.1, 0.2], [0.5, 0.4, 0.3])


# --------------------------------------------------------------------------- thresholds


def test_threshold_for_sensitivity_hand_computed() -> None:
    y = np.array([1] * 10 + [0] * 5)
    p = np.concatenate([np.arange(1, 11) / 10, np.full(5, 0.05)])
    # 9 of 10 positives needed: the 9th largest positive score is 0.2.
    assert ev.threshold_for_sensitivity(y, p, target=0.90) == pytest.approx(0.2)
    assert ev.threshold_for_sensitivity(y, p, target=0.70) == pytest.approx(0.4)
    assert ev.threshold_for_sensitivity(y, p, target=1.0) == pytest.approx(0.1)


def test_threshold_for_sensitivity_survives_float_rounding() -> None:
    # 0.56 * 25 is 14.000000000000002 in floating point, yet 14 of 25 positives
    # reach the target: the 14th largest of 1/25 .. 25/25 is 12/25.
    y = np.ones(25, dtype=int)
    p = np.arange(1, 26) / 25
    assert ev.threshold_for_sensitivity(y, p, target=0.56) == pytest.approx(12 / 25)


@pytest.mark.parametrize("target", [0.8, 0.9, 0.95])
def test_threshold_for_sensitivity_is_highest_reaching_target(target: float) -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 2, 200)
    p = np.round(np.clip(0.3 * y + rng.random(200), 0, 1), 2)  # with ties
    t = ev.threshold_for_sensitivity(y, p, target)
    assert ev.apply_threshold(y, p, t)["sensitivity"] >= target
    higher = np.unique(p[p > t])
    assert ev.apply_threshold(y, p, higher[0])["sensitivity"] < target


def test_apply_threshold_hand_computed() -> None:
    res = ev.apply_threshold(Y_HAND, P_HAND, 0.35)
    # Positive calls: 0.9, 0.7, 0.4 (tp) and 0.8, 0.6 (fp); tn 4, fn 1.
    assert set(res) == {"sensitivity", "specificity", "ppv", "npv"}
    assert res["sensitivity"] == pytest.approx(3 / 4)
    assert res["specificity"] == pytest.approx(4 / 6)
    assert res["ppv"] == pytest.approx(3 / 5)
    assert res["npv"] == pytest.approx(4 / 5)


# --------------------------------------------------------------------------- regression, WHO


def test_regression_metrics_point_values_and_ci() -> None:
    rng = np.random.default_rng(8)
    y = rng.normal(-1.5, 1.0, 100)
    pred = y + rng.normal(0, 0.5, 100)
    df = ev.regression_metrics(y, pred, n_boot=300, seed=0).set_index("metric")
    assert list(df.index) == ["mae", "pearson_r", "r2", "calibration_intercept", "calibration_slope"]
    assert df.loc["mae", "value"] == pytest.approx(np.mean(np.abs(y - pred)))
    assert df.loc["pearson_r", "value"] == pytest.approx(stats.pearsonr(y, pred)[0])
    assert df.loc["r2", "value"] == pytest.approx(1 - np.sum((y - pred) ** 2) / np.sum((y - y.mean()) ** 2))
    assert df.loc["calibration_intercept", "value"] == pytest.approx(np.mean(y - pred))
    assert df.loc["calibration_slope", "value"] == pytest.approx(stats.linregress(pred, y).slope)
    for metric in df.index:
        assert df.loc[metric, "ci_low"] < df.loc[metric, "value"] < df.loc[metric, "ci_high"]


def test_regression_metrics_hand_computed() -> None:
    df = ev.regression_metrics([0.0, 1.0, 2.0], [0.0, 2.0, 4.0], n_boot=50).set_index("metric")
    assert df.loc["mae", "value"] == pytest.approx(1.0)
    assert df.loc["pearson_r", "value"] == pytest.approx(1.0)


def test_who_class_index_boundaries() -> None:
    from osteo_helpers.tasks import who_class_index

    t = np.array([0.5, -1.0, -1.01, -2.49, -2.5, -4.0])
    np.testing.assert_array_equal(who_class_index(t), [0, 0, 1, 1, 2, 2])
    assert who_class_index(t).dtype.kind == "i"


# --------------------------------------------------------------------------- package layout

LEGACY_API = [
    "PROB_PREFIX", "apply_threshold", "average_over_repeats", "binary_point_metrics", "bootstrap_confusion",
    "bootstrap_metrics", "class_names_from", "confusion", "delong_test", "multiclass_point_metrics", "oof_metrics",
    "operating_point", "paired_bootstrap_difference", "prob_columns", "regression_metrics",
    "threshold_for_sensitivity",
]


def test_package_reexports_the_legacy_api_and_every_submodule_api() -> None:
    import importlib

    assert set(LEGACY_API) <= set(ev.__all__)
    for module in ("metrics", "resampling", "bootstrap", "calibration", "comparisons", "power", "permutation"):
        sub = importlib.import_module(f"osteo_helpers.evaluation.{module}")
        for name in sub.__all__:
            assert getattr(ev, name) is getattr(sub, name), f"{module}.{name}"
        assert set(sub.__all__) <= set(ev.__all__), module
