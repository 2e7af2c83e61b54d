"""Tests for osteo_helpers.evaluation.power: the analytic AUROC-difference variance and the
smallest detectable AUROC gain, checked against hand values and simulated DeLong tests."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from osteo_helpers import evaluation as ev


def test_null_variance_is_the_mann_whitney_variance() -> None:
    # AUROC 0.5, independent scores: Var(AUC) = (m + n + 1) / (12 m n) for each, twice for the difference.
    m, n = 30, 40
    sd = ev.auroc_difference_sd(m, n, 0.5, 0.5, correlation=0.0)
    assert sd**2 == pytest.approx(2 * (m + n + 1) / (12 * m * n))


def test_identical_scores_have_no_difference_variance() -> None:
    assert ev.auroc_difference_sd(50, 60, 0.8, 0.8, correlation=1.0) == pytest.approx(0.0, abs=1e-12)


def _binormal(rng: np.random.Generator, n_pos: int, n_neg: int, auc_a: float, auc_b: float, rho: float,
              n_sim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulated labels and two scores: unit-variance normals per class, correlation rho."""
    y = np.repeat([1, 0], [n_pos, n_neg])
    shift = np.sqrt(2) * stats.norm.ppf([auc_a, auc_b])
    z = rng.multivariate_normal([0, 0], [[1, rho], [rho, 1]], size=(n_sim, n_pos + n_neg))
    scores = z + y[None, :, None] * shift
    return y, scores[..., 0], scores[..., 1]


def test_difference_sd_matches_simulated_mann_whitney_auroc() -> None:
    rng = np.random.default_rng(0)
    y, a, b = _binormal(rng, 40, 80, 0.85, 0.75, 0.5, n_sim=2000)
    diffs = [ev.delong_test(y, a[i], b[i])["diff"] for i in range(len(a))]
    # 2000 simulations estimate an SD to about 1.6%.
    assert np.std(diffs, ddof=1) == pytest.approx(ev.auroc_difference_sd(40, 80, 0.75, 0.85, 0.5), rel=0.06)


def test_detectable_gain_has_the_target_power_in_simulated_delong_tests() -> None:
    n_pos, n_neg, ref, rho = 80, 159, 0.75, 0.6
    gain = ev.detectable_auroc_gain(n_pos, n_neg, ref, rho)
    assert ev.auroc_power(n_pos, n_neg, ref, ref + gain, rho) == pytest.approx(0.8, abs=1e-6)
    rng = np.random.default_rng(1)
    y, new, old = _binormal(rng, n_pos, n_neg, ref + gain, ref, rho, n_sim=1000)
    rejected = np.mean([ev.delong_test(y, new[i], old[i])["p_value"] < 0.05 for i in range(len(new))])
    # Monte Carlo SE 0.013; the rest allows for the normal approximation of the DeLong z.
    assert rejected == pytest.approx(0.8, abs=0.05)


def test_detectable_gain_shrinks_with_n_and_vanishes_at_huge_n() -> None:
    gains = [ev.detectable_auroc_gain(n, 2 * n, 0.75, 0.5) for n in (25, 50, 100, 400, 1600)]
    assert all(np.diff(gains) < 0)
    # Roughly 1 / sqrt(n): quadrupling n halves the gain once the AUROC ceiling is far away.
    assert gains[4] / gains[3] == pytest.approx(0.5, abs=0.05)
    assert ev.detectable_auroc_gain(10**6, 10**6, 0.75, 0.5) < 0.003


def test_detectable_gain_grows_as_correlation_falls() -> None:
    gains = [ev.detectable_auroc_gain(80, 159, 0.75, rho) for rho in (0.95, 0.8, 0.5, 0.2, 0.0)]
    assert all(np.diff(gains) > 0)


def test_detectable_gain_is_nan_when_even_a_perfect_model_is_not_detectable() -> None:
    assert np.isnan(ev.detectable_auroc_gain(3, 3, 0.9, 0.0))


def test_detectable_gain_summary_estimates_inputs_from_scores() -> None:
    rng = np.random.default_rng(2)
    y, new, old = _binormal(rng, 1500, 1500, 0.80, 0.70, 0.6, n_sim=1)
    # Probabilities are monotone transforms of the binormal scores: the estimate must not care.
    row = ev.detectable_gain_summary(y, stats.norm.cdf(new[0]), np.exp(old[0])).iloc[0]
    assert (row["n_pos"], row["n_neg"]) == (1500, 1500)
    assert row["auroc_ref"] == pytest.approx(ev.binary_point_metrics(y, old[0])["auroc"])
    assert row["observed_gain"] == pytest.approx(row["auroc_new"] - row["auroc_ref"])
    assert row["correlation"] == pytest.approx(0.6, abs=0.04)
    assert row["detectable_gain"] == pytest.approx(
        ev.detectable_auroc_gain(1500, 1500, row["auroc_ref"], row["correlation"]))


def test_power_inputs_are_validated() -> None:
    with pytest.raises(ValueError, match="correlation"):
        ev.detectable_auroc_gain(50, 50, 0.7, 1.5)
    with pytest.raises(ValueError, match="AUROC"):
        ev.auroc_power(50, 50, 0.7, 1.0, 0.5)


def test_riley_sample_size_reproduces_the_published_example() -> None:
    """pmsampsize's binary example (Riley et al. 2020): R2cs 0.288, 24 parameters, prevalence 0.174
    need 623 (shrinkage), 662 (optimism) and 221 (overall risk) patients: 662 in all."""
    need = ev.riley_sample_size(24, 0.174, r2_cs=0.288)
    assert np.ceil(need["n_shrinkage"]) == 623 and np.ceil(need["n_optimism"]) == 662
    assert np.ceil(need["n_overall_risk"]) == 221 and need["n_required"] == 662
    default = ev.riley_sample_size(2, 0.85)
    assert default["r2_cs"] == pytest.approx(0.15 * default["max_r2_cs"])
    with pytest.raises(ValueError):
        ev.riley_sample_size(0, 0.5)


def test_no_gain_is_detectable_over_a_reference_that_separates_the_classes():
    """A clinical model with AUROC 1 (the classes apart in age) leaves nothing to detect: NaN, not an error."""
    assert np.isnan(ev.detectable_auroc_gain(20, 20, 1.0, 0.5))
