"""Tests for multiplicity, p-value reporting, the verdict sentence, the likelihood-ratio test
and permutation p-values (osteo_helpers.evaluation.comparisons / .permutation)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from osteo_helpers import evaluation as ev

# --------------------------------------------------------------------------- Holm


def test_holm_hand_computed() -> None:
    # Sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> monotone 0.06.
    np.testing.assert_allclose(ev.holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02])


def test_holm_caps_at_one_and_keeps_nan_out_of_the_family() -> None:
    np.testing.assert_allclose(ev.holm([0.5, 0.6]), [1.0, 1.0])
    np.testing.assert_allclose(ev.holm([0.01, np.nan, 0.04]), [0.02, np.nan, 0.04])
    np.testing.assert_allclose(ev.holm([0.2]), [0.2])


def test_holm_is_monotone_in_the_raw_p_values() -> None:
    p = np.random.default_rng(0).random(25) ** 3
    adjusted = ev.holm(p)
    order = np.argsort(p)
    assert (np.diff(adjusted[order]) >= 0).all()
    assert (adjusted >= p).all() and (adjusted <= 1).all()


def test_holm_rejects_invalid_p_values() -> None:
    with pytest.raises(ValueError):
        ev.holm([0.2, 1.5])


# --------------------------------------------------------------------------- format_p


@pytest.mark.parametrize(
    ("p", "n_boot", "text"),
    [
        (0.0, 1000, "< 0.001"),
        (0.0, 2000, "< 0.0005"),
        (0.012345, 1000, "0.0123"),
        (0.5, None, "0.5"),
        (0.0001234, None, "0.000123"),
        (1.0, 1000, "1"),
        (np.nan, 1000, "n/a"),
    ],
)
def test_format_p(p: float, n_boot: int | None, text: str) -> None:
    assert ev.format_p(p, n_boot) == text


def test_format_p_rejects_values_outside_unit_interval() -> None:
    with pytest.raises(ValueError):
        ev.format_p(-0.1, 100)


# --------------------------------------------------------------------------- verdict


def test_verdict_follows_the_ci() -> None:
    assert ev.verdict(0.1, 0.02, 0.2, "fusion", "clinical").startswith("fusion is better than clinical")
    assert ev.verdict(-0.1, -0.2, -0.01, "fusion", "clinical").startswith("fusion is worse than clinical")
    assert ev.verdict(0.05, -0.01, 0.1, "fusion", "clinical").startswith("no detectable difference")
    assert ev.verdict(0.1, 0.02, 0.2, "a", "b", p_adjusted=0.114).startswith("no detectable difference")
    assert ev.verdict(0.1, 0.02, 0.2, "a", "b", p_adjusted=0.0066) == "a is better than b (Holm-adjusted p = 0.0066)"
    assert ev.verdict(-0.1, -0.2, -0.02, "a", "b", lower_is_better=True).startswith("a is better than b")


def test_a_difference_below_the_tie_tolerance_is_a_tie_whatever_its_interval() -> None:
    """An MAE difference of -2e-8 with a CI that excludes 0 (every resample a hair below) states no
    difference between two models: the verdict and the rule every table reads call it a tie."""
    text = ev.verdict(-2e-8, -3e-8, -1e-8, "fusion_tscore", "clinical_tscore", lower_is_better=True)
    assert text.startswith("fusion_tscore and clinical_tscore tie (|difference| 2e-08, below the tie tolerance 1e-06")
    assert ev.direction(-2e-8, -3e-8, -1e-8, lower_is_better=True) == 0
    assert ev.direction(-2e-8, -3e-8, -1e-8, p_adjusted=0.001) == 0
    assert ev.direction(2 * ev.TIE_TOLERANCE, 1e-6, 3e-6) == 1  # just above the tolerance the CI decides again
    assert "tie" in ev.verdict(0.0, 0.0, 0.0, "fusion", "clinical")


def test_a_bootstrap_p_value_is_never_zero() -> None:
    """(1 + b) / (1 + B), two-sided: with no resample on the far side of 0 the p-value is 2 / (B + 1),
    the resolution B resamples have, not 0."""
    assert ev.bootstrap_p_value(np.full(99, 0.1)) == pytest.approx(2 / 100)
    assert ev.bootstrap_p_value([-0.1, 0.2, 0.3, 0.4]) == pytest.approx(2 * (1 + 1) / 5)
    assert ev.bootstrap_p_value([0.0, 0.0, 0.0]) == 1.0
    assert np.isnan(ev.bootstrap_p_value([np.nan]))
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 60)
    good, noise = y + rng.normal(0, 0.3, 120), rng.normal(0, 1, 120)
    res = ev.paired_bootstrap_difference(y, good, noise, n_boot=199, seed=0)
    assert res["ci_low"] > 0 and res["p_value"] == pytest.approx(2 / 200)
    mae = ev.paired_mae_difference(y.astype(float), y + 0.01, y + 1.0, n_boot=99, seed=0)
    assert mae["p_value"] == pytest.approx(2 / 100)


def test_the_table_and_the_sentences_read_a_comparison_by_one_rule() -> None:
    """The secondary verdicts show the adjusted p the table stores (never a bound beside a stored 0), and
    `answer.direction` says what the table's ``conclusion`` says, ties included."""
    from osteo_helpers import answer

    rows = pd.DataFrame({"model_a": ["a", "b", "c", "d"], "model_b": "clinical", "metric": "auroc",
                         "diff": [0.05, -0.04, 0.01, -2e-8], "ci_low": [0.02, -0.07, -0.01, -3e-8],
                         "ci_high": [0.08, -0.01, 0.03, -1e-8], "p_bootstrap": [2 / 101, 4 / 101, 0.4, 2 / 101],
                         "conclusion": "", "role": "secondary"})
    table = ev.with_holm(rows, rows["role"] == "secondary")
    assert (table["p_holm"] > 0).all() and (table["holm_tests"] == 4).all()
    for row in table.itertuples():
        assert f"Holm-adjusted p = {ev.format_p(row.p_holm)})" in row.conclusion
        words = {1: " is better than ", -1: " is worse than ", 0: ""}[answer.direction(pd.Series(row._asdict()))]
        assert (words in row.conclusion) if words else not (" better " in row.conclusion or " worse " in
                                                            row.conclusion)
    assert "tie" in table.loc[3, "conclusion"]


# --------------------------------------------------------------------------- likelihood-ratio test


def test_likelihood_ratio_test_equals_the_g_test_for_a_binary_feature() -> None:
    """With an uninformative base, adding a 0/1 feature is the G-test of the 2 x 2 table."""
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2, 200)
    y = rng.binomial(1, np.where(x == 1, 0.6, 0.35))
    res = ev.likelihood_ratio_test(y, np.zeros(200), x)
    table = pd.crosstab(x, y).to_numpy()
    g, p_g, dof, _ = stats.chi2_contingency(table, correction=False, lambda_="log-likelihood")
    assert dof == 1 and res["df"] == 1
    assert res["statistic"] == pytest.approx(g, rel=1e-4)
    assert res["p_value"] == pytest.approx(p_g, rel=1e-3)


def test_likelihood_ratio_test_of_a_redundant_score_is_null() -> None:
    rng = np.random.default_rng(2)
    age = rng.normal(size=150)
    y = rng.binomial(1, 1 / (1 + np.exp(-age)))
    res = ev.likelihood_ratio_test(y, age, 2 * age)  # adds nothing that age does not carry
    assert res["statistic"] == pytest.approx(0.0, abs=1e-4)
    assert res["p_value"] > 0.99
    informative = ev.likelihood_ratio_test(y, rng.normal(size=150), age)
    assert informative["p_value"] < 1e-4


def test_likelihood_ratio_test_counts_extra_columns_as_degrees_of_freedom() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 80)
    res = ev.likelihood_ratio_test(y, rng.normal(size=(80, 1)), rng.normal(size=(80, 3)))
    assert res["df"] == 3
    assert res["p_value"] == pytest.approx(stats.chi2.sf(res["statistic"], 3))


# --------------------------------------------------------------------------- permutation p-values


def test_permutation_p_value_hand_computed() -> None:
    null = [0.5, 0.7, 0.8, 0.6]
    assert ev.permutation_p_value(0.7, null) == pytest.approx(3 / 5)  # 0.7 and 0.8 reach it
    assert ev.permutation_p_value(0.9, null) == pytest.approx(1 / 5)  # never 0
    assert ev.permutation_p_value(0.7, null, "less") == pytest.approx(4 / 5)
    assert ev.permutation_p_value(0.9, null, "two-sided") == pytest.approx(2 / 5)
    assert ev.permutation_p_value(0.9, [*null, np.nan]) == pytest.approx(1 / 5)  # nan dropped from N


def test_permutation_p_value_rejects_unknown_alternative() -> None:
    with pytest.raises(ValueError, match="alternative"):
        ev.permutation_p_value(0.5, [0.1], "bigger")


def _auroc_null(y: np.ndarray, score: np.ndarray, n_perm: int, rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """Observed AUROC and its null over label permutations (Mann-Whitney from score ranks)."""
    ranks = stats.rankdata(score)
    labels = np.vstack([y, np.array([rng.permutation(y) for _ in range(n_perm)])])
    n1 = y.sum()
    aucs = ((labels * ranks).sum(axis=1) - n1 * (n1 + 1) / 2) / (n1 * (len(y) - n1))
    return aucs[0], aucs[1:]


def test_permutation_p_values_of_noise_scores_are_roughly_uniform() -> None:
    """Random scores against random labels: under the null the p-value is uniform, so of 40
    seeds about 4 fall below 0.1 (Binomial(40, 0.1): 1..8 holds with probability ~0.97) and
    the mean is about 0.5 (SE 0.046)."""
    p_values = []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        y = rng.permutation(np.repeat([0, 1], [60, 40]))
        observed, null = _auroc_null(y, rng.random(100), n_perm=199, rng=rng)
        p_values.append(ev.permutation_p_value(observed, null))
    p_values = np.array(p_values)
    assert 0.02 <= np.mean(p_values < 0.1) <= 0.2
    assert 0.35 <= p_values.mean() <= 0.65


def test_permutation_p_value_of_a_real_signal_is_at_the_floor() -> None:
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 50)
    observed, null = _auroc_null(y, y + rng.normal(0, 0.5, 100), n_perm=199, rng=rng)
    assert ev.permutation_p_value(observed, null) == pytest.approx(1 / 200)


def test_permutation_summary_per_model() -> None:
    null = pd.DataFrame({
        "permutation": [0, 1, 2, 3, 0, 1, 2, 3, 0],
        "model": ["a"] * 4 + ["b"] * 4 + ["c"],
        "metric": ["auroc"] * 9,
        "value": [0.5, 0.55, 0.45, 0.6, 0.5, 0.52, 0.48, np.nan, 0.5],
    })
    observed = pd.DataFrame({"model": ["a", "b", "d"], "metric": ["auroc"] * 3, "value": [0.58, 0.7, 0.9]})
    out = ev.permutation_summary(null, observed).set_index("model")
    assert list(out.index) == ["a", "b"]  # c has no observed value, d no null
    assert out.loc["a", "p_value"] == pytest.approx((1 + 1) / 5)
    assert out.loc["b", "p_value"] == pytest.approx(1 / 4)
    assert out.loc["b", "n_permutations"] == 3
    assert out.loc["a", "null_mean"] == pytest.approx(0.525)
    assert out.loc["a", "observed"] == 0.58


def test_permutation_summary_rejects_ambiguous_observed_values() -> None:
    null = pd.DataFrame({"permutation": [0], "model": ["a"], "metric": ["auroc"], "value": [0.5]})
    observed = pd.DataFrame({"model": ["a", "a"], "metric": ["auroc"] * 2, "value": [0.6, 0.7]})
    with pytest.raises(ValueError, match="more than once"):
        ev.permutation_summary(null, observed)


# --------------------------------------------------------------------------- what a cohort cannot estimate


def _two_arms(n_normal: int, n_low: int) -> dict[str, pd.DataFrame]:
    rng = np.random.default_rng(0)
    y = np.r_[np.zeros(n_normal, int), np.ones(n_low, int)]
    out = {}
    for name in ("a", "b"):
        p = np.clip(0.3 * y + rng.uniform(0, 0.7, len(y)), 0.01, 0.99)
        out[name] = pd.DataFrame({"patient_id": [f"P{i}" for i in range(len(y))], "fold": np.arange(len(y)) % 2,
                                  "seed": 0, "y_true": y, "prob_normal": 1 - p, "prob_low_bmd": p})
    return out


def test_a_subset_without_two_of_each_class_has_no_auroc_and_its_comparison_says_why() -> None:
    """Issue 28: a subgroup of a small cohort (an age band, a sex, the patients with a localised knee) may hold
    one normal patient: its arms have no rows, and a comparison there is a row that says why it is not estimable,
    kept out of Holm's family."""
    oofs = _two_arms(6, 10)
    one_normal = {"P0", *(f"P{i}" for i in range(6, 16))}
    assert ev.too_few(np.r_[0, np.ones(10, int)], ("normal", "low_bmd")) == \
        "1 normal and 10 low-BMD patients (at least 2 of each class are needed)"
    assert ev.too_few(np.r_[0, 0, 1, 1], ("normal", "low_bmd")) is None
    assert ev.score_arms(oofs, "binary", 20, 0, subset=one_normal, subset_name="band").empty
    assert set(ev.score_arms(oofs, "binary", 20, 0, subset={"P0", "P1", "P6", "P7"})["model"]) == {"a", "b"}
    comp = ev.paired_comparisons(oofs, [("a", "b")], 20, 0, subset=one_normal, subset_name="band")
    row = comp.iloc[0]
    assert not row["estimable"] and np.isnan(row["diff"]) and row["n_patients"] == 11
    assert row["conclusion"] == ("not estimable: the patients both arms predicted are 1 normal and 10 low-BMD "
                                 "patients (at least 2 of each class are needed)")
    table = pd.concat([ev.paired_comparisons(oofs, [("a", "b")], 20, 0), comp], ignore_index=True)
    held = ev.with_holm(table, pd.Series([True, True]))
    assert list(held["holm_tests"]) == [1, 0] and np.isnan(held.loc[1, "p_holm"])


def test_a_task_a_cohort_cannot_estimate_is_named_with_the_reason() -> None:
    from osteo_helpers.tasks import why_not_estimable

    rows = pd.DataFrame({"label_3class": [0, 0, 2, 2], "label_binary": [0, 0, 1, 1], "t_score": np.nan,
                         "age_years": [30, 40, 60, 70], "sex": ["female", "male"] * 2})
    assert why_not_estimable("binary", rows) is None
    assert why_not_estimable("3class", rows) == "no patient of this cohort is in the class osteopenia"
    assert why_not_estimable("tscore", rows) == "the cohort has no T-score"
    assert why_not_estimable("binary", rows.assign(label_binary=1, label_3class=2)) == \
        "no patient of this cohort is in the class normal"
