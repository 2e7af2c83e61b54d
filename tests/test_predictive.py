"""Calibration of the T-score models' predictive distributions (osteo_helpers.evaluation.predictive): coverage
is judged conditional on the predictors, never against 95% per measured class, and the PIT."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from osteo_helpers import answer, evaluation


def _predictions(n: int = 20000, seed: int = 0, sd_factor: float = 1.0, bias: float = 0.0) -> pd.DataFrame:
    """T-scores drawn from N(mean, sd), the means gathered as in the cohort (15% near -0.8, 65% near -1.9,
    20% near -2.6); the model predicts that distribution (``sd_factor`` scales its spread, ``bias``
    shifts its mean)."""
    rng = np.random.default_rng(seed)
    component = rng.choice(3, n, p=[0.15, 0.65, 0.2])
    mean = np.array([-0.8, -1.9, -2.6])[component] + rng.normal(0, 1, n) * np.array([0.15, 0.24, 0.2])[component]
    sd = np.full(n, 0.4)
    t = mean + rng.normal(0, 1, n) * sd
    return pd.DataFrame({"patient_id": [f"P{i}" for i in range(n)], "fold": 0, "seed": 0, "y_true": t,
                         "pred_mean": mean + bias, "pred_sd": sd * sd_factor})


def test_a_correct_model_covers_95_percent_given_its_predictors_but_not_per_measured_class():
    """Selection on the outcome: a perfectly specified model's coverage per measured WHO class is not 95%
    (the class is chosen by the T-score), but matches what the model itself expects there; in bins of the
    predicted mean it is 95%."""
    table = evaluation.conditional_coverage(_predictions(), n_bins=4, n_boot=50, seed=0)
    bins = table[table["conditioned_on"] == "predicted mean"]
    classes = table[table["conditioned_on"] == "measured class"].set_index("group")
    assert len(bins) == 4 and set(classes.index) == {"normal", "osteopenia", "osteoporosis"}
    np.testing.assert_allclose(bins["coverage"], 0.95, atol=0.012)
    assert (bins["coverage_ci_low"] < 0.95).all() and (bins["coverage_ci_high"] > 0.95).all()
    np.testing.assert_allclose(bins["predicted_sd"], 0.4, rtol=1e-9)
    np.testing.assert_allclose(bins["residual_sd"], 0.4, rtol=0.05)
    np.testing.assert_allclose(classes["coverage"], classes["expected_coverage"], atol=0.012)
    np.testing.assert_allclose(classes["expected_coverage"], [0.89, 0.97, 0.89], atol=0.015)  # not 95%


def test_a_too_wide_or_biased_distribution_shows_in_the_bins():
    wide = evaluation.conditional_coverage(_predictions(sd_factor=1.6), n_boot=50)
    assert (wide.loc[wide["conditioned_on"] == "predicted mean", "coverage_ci_low"] > 0.95).all()
    biased = evaluation.conditional_coverage(_predictions(bias=-0.3), n_boot=50)
    bins = biased[biased["conditioned_on"] == "predicted mean"]
    assert (bins["mean_residual_ci_low"] > 0.2).all() and (bins["coverage_ci_high"] < 0.95).all()


def test_the_pit_of_a_calibrated_model_is_uniform():
    pit = evaluation.pit_values(_predictions())
    counts = np.histogram(pit, bins=10, range=(0, 1))[0] / len(pit)
    np.testing.assert_allclose(counts, 0.1, atol=0.01)
    narrow = np.histogram(evaluation.pit_values(_predictions(sd_factor=0.6)), bins=10, range=(0, 1))[0]
    assert narrow[0] > 1.5 * narrow[5] and narrow[-1] > 1.5 * narrow[5]  # the U of a too narrow spread


def test_the_tscore_text_judges_coverage_given_the_predictors_not_per_measured_class():
    """86% of osteoporosis inside its intervals is not 'too few' when the model itself expects 88% there; a
    bin of the predicted mean whose coverage CI stays below 95% is."""
    regression = pd.DataFrame({"model": "clinical_tscore", "metric": ["mae", "coverage_95", "coverage_95_osteoporosis"],
                               "value": [0.33, 0.95, 0.86], "ci_low": [0.3, 0.92, 0.76], "ci_high": [0.36, 0.97, 0.93],
                               "subset": "all"})
    coverage = pd.DataFrame({
        "model": "clinical_tscore", "conditioned_on": ["predicted mean"] * 4 + ["measured class"],
        "group": ["-2.9 to -2.2", "-2.2 to -1.9", "-1.9 to -1.5", "-1.5 to -0.5", "osteoporosis"],
        "n_patients": [60, 60, 60, 59, 49], "coverage": [0.90, 0.97, 0.95, 0.95, 0.86],
        "coverage_ci_low": [0.85, 0.94, 0.9, 0.9, 0.76], "coverage_ci_high": [0.94, 0.99, 0.99, 0.99, 0.93],
        "expected_coverage": [0.95, 0.95, 0.95, 0.95, 0.88], "mean_residual": [0.1, -0.05, 0.0, 0.0, 0.2]})
    text = answer.tscore_text(regression, coverage=coverage)
    assert "too few" not in text
    assert "by quarter of the predicted T-score: 90% (-2.9 to -2.2), 97% (-2.2 to -1.9), 95% (-1.9 to -1.5)" in text
    assert "below 95% where the predicted T-score is -2.9 to -2.2" in text
    assert "osteoporosis 86% (the model expects 88%)" in text
    assert "selection on the outcome" in text


def test_conditional_coverage_needs_a_predictive_table():
    with pytest.raises(ValueError, match="pred_sd"):
        evaluation.conditional_coverage(pd.DataFrame({"patient_id": ["a"], "y_true": [0.0], "pred_mean": [0.0]}))
