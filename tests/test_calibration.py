"""Tests for osteo_helpers.evaluation.calibration: Brier, intercept/slope, reliability, net benefit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, special, stats
from sklearn.linear_model import LogisticRegression

from osteo_helpers import evaluation as ev


def _calibrated(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """y ~ Bernoulli(p): p is perfectly calibrated by construction."""
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.05, 0.95, n)
    return rng.binomial(1, p), p


def _standard_errors(p: np.ndarray) -> tuple[float, float]:
    """Large-sample SEs of the intercept (offset model) and of the slope at the truth,
    from the Fisher information of the two logistic models."""
    w = p * (1 - p)
    x = special.logit(p)
    info = np.array([[w.sum(), (w * x).sum()], [(w * x).sum(), (w * x * x).sum()]])
    return 1 / np.sqrt(w.sum()), float(np.sqrt(np.linalg.inv(info)[1, 1]))


# --------------------------------------------------------------------------- Brier


def test_brier_score_hand_computed_binary_and_multiclass() -> None:
    assert ev.brier_score([1, 0], [0.8, 0.4]) == pytest.approx((0.2**2 + 0.4**2) / 2)
    # Two columns: the binary Brier of column 1, not the two-class sum.
    assert ev.brier_score([1, 0], [[0.2, 0.8], [0.6, 0.4]]) == pytest.approx(0.1)
    # Three classes: (0.09 + 0.04 + 0.01 + 0.04 + 0.04 + 0.16) / 2 patients.
    proba = np.array([[0.7, 0.2, 0.1], [0.2, 0.2, 0.6]])
    assert ev.brier_score([0, 2], proba) == pytest.approx(0.19)


def test_brier_score_rejects_probabilities_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ev.brier_score([0, 1], [0.2, 1.3])


# --------------------------------------------------------------------------- intercept and slope


def test_calibrated_scores_have_unit_slope_and_zero_intercept() -> None:
    n = 20_000
    y, p = _calibrated(n, seed=0)
    se_intercept, se_slope = _standard_errors(p)
    assert abs(ev.calibration_intercept(y, p)) < 4 * se_intercept  # about 0.06 here
    assert abs(ev.calibration_slope(y, p) - 1) < 4 * se_slope


def test_overconfident_scores_have_slope_below_one_underconfident_above() -> None:
    y, p = _calibrated(20_000, seed=1)
    _, se_slope = _standard_errors(p)
    overconfident = special.expit(2 * special.logit(p))  # pushed towards 0 and 1
    underconfident = special.expit(0.5 * special.logit(p))
    assert ev.calibration_slope(y, overconfident) == pytest.approx(0.5, abs=4 * se_slope / 2)
    assert ev.calibration_slope(y, overconfident) < 1 - 4 * se_slope
    assert ev.calibration_slope(y, underconfident) == pytest.approx(2.0, abs=4 * se_slope * 2)


def test_shifted_scores_have_intercept_of_the_shift() -> None:
    y, p = _calibrated(20_000, seed=2)
    se_intercept, _ = _standard_errors(p)
    too_high = special.expit(special.logit(p) + 1.0)
    assert ev.calibration_intercept(y, too_high) == pytest.approx(-1.0, abs=4 * se_intercept)


@pytest.mark.parametrize(("slope", "shift"), [(1.0, 0.0), (0.05, 3.0), (4.0, -2.0), (10.0, 5.0)])
def test_intercept_and_slope_match_reference_fits(slope: float, shift: float) -> None:
    """Far from calibration too (where a plain Newton start diverges)."""
    y, p = _calibrated(150, seed=3)
    q = special.expit(slope * special.logit(p) + shift)
    x = special.logit(np.clip(q, 1e-6, 1 - 1e-6))
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(x[:, None], y)
    assert ev.calibration_slope(y, q) == pytest.approx(reference.coef_[0, 0], rel=1e-5)

    def neg_log_lik(a: float) -> float:
        return -np.sum(y * (a + x) - np.logaddexp(0, a + x))

    offset_fit = optimize.minimize_scalar(neg_log_lik, bounds=(-30, 30), method="bounded", options={"xatol": 1e-10})
    assert ev.calibration_intercept(y, q) == pytest.approx(offset_fit.x, abs=1e-6)


def test_calibration_metrics_table_and_ci() -> None:
    y, p = _calibrated(300, seed=4)
    table = ev.calibration_metrics(y, p, n_boot=300, seed=0).set_index("metric")
    assert list(table.index) == ["brier", "brier_scaled", "calibration_intercept", "calibration_slope"]
    assert table.loc["calibration_slope", "value"] == pytest.approx(ev.calibration_slope(y, p))
    assert table.loc["brier", "value"] == pytest.approx(np.mean((y - p) ** 2))
    assert (table["ci_low"] < table["value"]).all() and (table["value"] < table["ci_high"]).all()
    assert table.loc["calibration_slope", "ci_low"] < 1 < table.loc["calibration_slope", "ci_high"]


def test_three_class_calibration_is_about_low_bmd_versus_normal() -> None:
    rng = np.random.default_rng(5)
    y = np.tile([0, 1, 2], 60)
    proba = rng.dirichlet(np.ones(3), len(y)) + 0.5 * np.eye(3)[y]
    proba /= proba.sum(axis=1, keepdims=True)
    table = ev.calibration_metrics(y, proba, n_boot=100, seed=0).set_index("metric")
    low_bmd, p_low = (y != 0).astype(int), 1 - proba[:, 0]
    assert table.loc["calibration_slope", "value"] == pytest.approx(ev.calibration_slope(low_bmd, p_low))
    assert table.loc["calibration_intercept", "value"] == pytest.approx(ev.calibration_intercept(low_bmd, p_low))
    onehot = np.eye(3)[y]
    assert table.loc["brier_multiclass", "value"] == pytest.approx(np.mean(((onehot - proba) ** 2).sum(axis=1)))
    assert table.loc["brier", "value"] == pytest.approx(np.mean((low_bmd - p_low) ** 2))


def test_scaled_brier_is_zero_for_the_prevalence_model_and_one_for_a_perfect_one() -> None:
    y = np.r_[np.zeros(30), np.ones(170)].astype(int)
    table = ev.calibration_metrics(y, np.full(len(y), y.mean()), n_boot=50, seed=0).set_index("metric")
    assert table.loc["brier_scaled", "value"] == pytest.approx(0.0, abs=1e-12)
    assert table.loc["brier", "value"] == pytest.approx(0.85 * 0.15)
    perfect = ev.calibration_metrics(y, y.astype(float), n_boot=50, seed=0).set_index("metric")
    assert perfect.loc["brier_scaled", "value"] == pytest.approx(1.0)
    worse = ev.calibration_metrics(y, np.full(len(y), 0.5), n_boot=50, seed=0).set_index("metric")
    assert worse.loc["brier_scaled", "value"] < 0  # worse than knowing the prevalence
    three = np.repeat([0, 1, 2], [30, 100, 70])
    freq = np.bincount(three) / len(three)
    table = ev.calibration_metrics(three, np.tile(freq, (len(three), 1)), n_boot=50, seed=0).set_index("metric")
    assert table.loc["brier_multiclass_scaled", "value"] == pytest.approx(0.0, abs=1e-12)


def test_oof_metrics_adds_calibration_rows() -> None:
    y, p = _calibrated(80, seed=6)
    oof = pd.DataFrame({"patient_id": np.arange(80), "y_true": y, "prob_normal": 1 - p, "prob_low_bmd": p})
    table = ev.oof_metrics(oof, n_boot=100).set_index("metric")
    assert {"auroc", "brier", "calibration_intercept", "calibration_slope"} <= set(table.index)
    assert table.loc["brier", "value"] == pytest.approx(ev.brier_score(y, p))
    assert table.loc[["brier", "calibration_slope"], ["ci_low", "ci_high"]].notna().all().all()


# --------------------------------------------------------------------------- reliability


def test_reliability_curve_bins_and_wilson_intervals() -> None:
    y, p = _calibrated(200, seed=7)
    curve = ev.reliability_curve(y, p, n_bins=5, ci=0.95)
    assert curve["n"].tolist() == [40] * 5
    assert curve["mean_predicted"].is_monotonic_increasing
    order = np.argsort(p)
    for b, idx in enumerate(np.array_split(order, 5)):
        k = int(y[idx].sum())
        assert curve.loc[b, "observed"] == pytest.approx(k / 40)
        wilson = stats.binomtest(k, 40).proportion_ci(0.95, method="wilson")
        assert curve.loc[b, "ci_low"] == pytest.approx(wilson.low)
        assert curve.loc[b, "ci_high"] == pytest.approx(wilson.high)


def test_reliability_curve_counts_groups_not_duplicates() -> None:
    y, p = _calibrated(100, seed=8)
    single = ev.reliability_curve(y, p, n_bins=4)
    doubled = ev.reliability_curve(np.tile(y, 2), np.tile(p, 2), n_bins=4, groups=np.tile(np.arange(100), 2))
    naive = ev.reliability_curve(np.tile(y, 2), np.tile(p, 2), n_bins=4)
    cols = ["observed", "ci_low", "ci_high"]
    pd.testing.assert_frame_equal(doubled[cols], single[cols])
    assert ((naive["ci_high"] - naive["ci_low"]) < (single["ci_high"] - single["ci_low"])).all()


# --------------------------------------------------------------------------- decision curve


def test_net_benefit_hand_computed() -> None:
    y = [1, 1, 0, 0]
    p = [0.9, 0.3, 0.6, 0.1]
    # t = 0.5: treat 0.9 (TP) and 0.6 (FP): 1/4 - 1/4 * 1 = 0.
    # t = 0.2: treat 0.9, 0.3 (TP) and 0.6 (FP): 2/4 - 1/4 * 0.25 = 0.4375.
    np.testing.assert_allclose(ev.net_benefit(y, p, [0.5, 0.2]), [0.0, 0.4375])


def test_decision_curve_table() -> None:
    y, p = _calibrated(200, seed=9)
    curve = ev.decision_curve(y, p, n_boot=200, seed=0)
    np.testing.assert_allclose(curve["threshold"], np.round(np.arange(0.05, 0.501, 0.01), 2))
    t = curve["threshold"].to_numpy()
    prevalence = y.mean()
    np.testing.assert_allclose(curve["treat_all"], prevalence - (1 - prevalence) * t / (1 - t))
    assert (curve["treat_none"] == 0).all()
    np.testing.assert_allclose(curve["net_benefit"], ev.net_benefit(y, p, t))
    assert ((curve["ci_low"] <= curve["net_benefit"]) & (curve["net_benefit"] <= curve["ci_high"])).all()
    # A calibrated, informative score beats treat-all at thresholds above the lowest ones.
    assert (curve.loc[curve["threshold"] >= 0.3, "net_benefit"] > curve.loc[curve["threshold"] >= 0.3,
                                                                            "treat_all"]).all()


def test_decision_curve_rejects_thresholds_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        ev.net_benefit([0, 1], [0.2, 0.7], [0.0, 0.5])


# --------------------------------------------------------------------------- figures


def test_figures_draw_one_series_per_model() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y, p = _calibrated(150, seed=10)
    q = special.expit(2 * special.logit(p))
    fig = ev.reliability_figure({"a": ev.reliability_curve(y, p, 5), "b": ev.reliability_curve(y, q, 5)})
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["perfect calibration", "a", "b"]
    plt.close(fig)
    curves = {"a": ev.decision_curve(y, p, n_boot=50), "b": ev.decision_curve(y, q, n_boot=50)}
    fig = ev.decision_curve_figure(curves)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["a", "treat all", "b", "treat none"]  # same patients: treat-all drawn once
    plt.close(fig)
