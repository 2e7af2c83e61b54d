"""The study's answer in words (osteo_helpers.answer): every rule, at its edges (none, one, all folds;
tables without a row), and the sentences that must never appear."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from osteo_helpers import answer, arms, config, estimability


def _comparison(diff: float, low: float, high: float, a: str = "fusion", b: str = "clinical", task: str = "binary",
                role: str = "primary", p_holm: float = 0.5, **extra) -> dict:
    row = {"task": task, "model_a": a, "model_b": b, "metric": "auroc", "value_a": 0.95 + diff, "value_b": 0.95,
           "diff": diff, "ci_low": low, "ci_high": high, "n_patients": 239, "role": role, "p_bootstrap": p_holm,
           "p_holm": p_holm, "p_delong": 0.4, "fold_diff_mean": diff, "fold_diff_sd": 0.01, "folds_a_better": 0,
           "folds_b_better": 2, "folds_tied": 8, "n_folds": 10, "a_untrained_folds": 8, "a_fitted_folds": 10}
    return {**row, **extra}


def _history(best_epochs: list[int]) -> pd.DataFrame:
    rows = [{"seed": 42, "fold": k, "epoch": e, "train_loss": 0.5, "val_loss": 0.5, "best": e == best}
            for k, best in enumerate(best_epochs) for e in range(4)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("k,n,words", [(0, 10, "none of the 10 folds"), (1, 10, "1 of 10 folds"),
                                       (10, 10, "all 10 folds"), (3, 10, "3 of 10 folds"), (1, 1, "the only fold"),
                                       (0, 0, "no folds"), (2, np.nan, "no folds")])
def test_fold_counts_read_at_the_edges(k, n, words):
    assert answer.of_folds(k, n) == words


def test_kept_epochs_never_lists_an_empty_set():
    every = answer.kept_epochs_text(_history([0, 0, 0]))
    assert "in **all 3 folds**" in every and "[]" not in every and "no fold found an epoch" in every
    one = answer.kept_epochs_text(_history([0, 0, 2]))
    assert "in **2 of 3 folds**; the other fold kept epoch 2." in one
    none = answer.kept_epochs_text(_history([1, 3]))
    assert "in **none of the 2 folds**; every fold kept epochs 1, 3." in none
    assert "No training history" in answer.kept_epochs_text(pd.DataFrame())


@pytest.mark.parametrize("diff,low,high,words", [(0.03, 0.01, 0.05, "is better than"),
                                                 (-0.03, -0.05, -0.01, "is worse than"),
                                                 (0.001, -0.01, 0.012, "shows no detectable difference from")])
def test_the_primary_answer_follows_its_interval_and_states_the_folds(diff, low, high, words):
    comparisons = pd.DataFrame([_comparison(diff, low, high),
                                _comparison(0.0, -0.02, 0.02, b="age", role="secondary", p_holm=0.9)])
    text = answer.comparison_text(comparisons, "binary")
    assert f"residual fusion (AUROC {0.95 + diff:.3f}) {words} the clinical model" in text
    assert "fusion (residual) better in none of the 10 folds, clinical (age, sex) in 2 of 10 folds" in text
    assert "kept its untrained state, the clinical model itself, in 8 of 10 folds" in text
    assert "Against age alone the fusion shows no detectable difference" in text and "Holm-adjusted p = 0.9" in text


def test_identical_arms_are_said_to_be_identical_once():
    tied = pd.DataFrame([_comparison(0.0, 0.0, 0.0, folds_b_better=0, folds_tied=10, a_untrained_folds=10)])
    text = answer.comparison_text(tied, "binary")
    assert ("pooled difference 0.000, identical in every resample; fold by fold the two AUROCs are equal in all 10 "
            "folds; fusion (residual) kept its untrained state, the clinical model itself, in all 10 folds.") in text
    assert "better in none" not in text and "(SD" not in text and "((" not in text
    conclusion = answer.conclusion(tied, pd.DataFrame(columns=["model", "metric", "value", "subset"]))
    assert conclusion.startswith("The residual fusion reverted to the clinical model in all 10 folds and showed no "
                                 "detectable difference from it (pooled AUROC difference 0.000, identical in every "
                                 "resample; fold by fold the two AUROCs are equal in all 10 folds), so this cohort "
                                 "cannot tell")


def test_a_secondary_verdict_follows_holm_not_the_raw_interval():
    row = pd.Series(_comparison(-0.02, -0.04, -0.001, a="clinical_full", role="secondary", p_holm=0.28))
    assert answer.difference_words(row) == "shows no detectable difference from"
    assert answer.difference_words(row.copy().replace({0.28: 0.01})) == "is worse than"


def test_the_conclusion_follows_from_the_folds_the_null_and_the_control():
    comparisons = pd.DataFrame([_comparison(0.002, -0.01, 0.015)])
    results = pd.DataFrame({"model": "image", "metric": ["auroc", "auroc_fold_mean", "auroc_fold_sd"],
                            "value": [0.39, 0.377, 0.125], "ci_low": [0.298, np.nan, np.nan],
                            "ci_high": [0.489, np.nan, np.nan], "subset": "all"})
    pvalues = pd.DataFrame([{"model": "image", "metric": "auroc", "observed": 0.39, "null_mean": 0.48,
                             "null_q025": 0.33, "null_q975": 0.62, "n_permutations": 10, "p_value": 0.9,
                             "p_less": 0.2}])
    control = pd.DataFrame({"target": ["sex", "age", "age", "age", "age"], "model": "image",
                            "metric": ["auroc", "pearson_r", "mae", "r2", "mae_no_information"],
                            "value": [0.66, 0.03, 9.8, -0.02, 9.8], "ci_low": [0.58, -0.1, 8.7, -0.1, 8.9],
                            "ci_high": [0.74, 0.15, 10.7, 0.05, 10.6]})
    text = answer.conclusion(comparisons, results, pvalues, control)
    assert text.startswith("The residual fusion reverted to the clinical model in 8 of 10 folds and showed no "
                           "detectable difference from it")
    assert "fusion (residual) better in none of the 10 folds, clinical (age, sex) in 2 of 10 folds" in text
    assert "cannot tell whether the knee radiograph adds to age and sex" in text
    assert "The positive-control gate failed (sex AUROC 0.660" in text and "not interpreted" in text
    assert "The image arm alone, not interpreted: pooled AUROC 0.390" in text and "discrimination" not in text
    assert "fold-averaged 0.377, SD 0.125" in text and "centres at 0.480, p = 0.9" in text
    assert "worse than chance" not in text
    control.loc[control["target"] == "sex", ["value", "ci_low", "ci_high"]] = [0.84, 0.78, 0.9]
    control.loc[(control["target"] == "age") & (control["metric"] == "pearson_r"), ["value", "ci_low"]] = [0.3, 0.17]
    passed = answer.conclusion(comparisons, results, pvalues, control)
    assert "The positive-control gate passed (sex AUROC 0.840" in passed
    assert "The image arm alone showed no discrimination (pooled AUROC 0.390" in passed
    without = answer.conclusion(comparisons, results)  # no control: the gate cannot pass, the image is not read
    assert "the positive control was not run, so the image results are not interpreted" in without


def test_a_primary_comparison_the_fusion_cannot_make_is_not_estimable():
    """Issue 30: the residual fusion kept the clinical model in every fold, so its difference of exactly 0 [0, 0]
    is no finding: the table, the answer sentence and the comparison text say 'not estimable'."""
    from osteo_helpers.ablation import with_training_states

    rows = pd.DataFrame([_comparison(0.0, 0.0, 0.0, folds_b_better=0, folds_tied=10)]).drop(
        columns=["a_untrained_folds", "a_fitted_folds"], errors="ignore").assign(task="binary", conclusion="x")
    states = pd.DataFrame({"model": "fusion", "task": "binary", "metric": ["untrained_folds", "fitted_folds"],
                           "value": [10, 10]})
    table = with_training_states(rows, states)
    assert not table.at[0, "estimable"] and table.at[0, "conclusion"].startswith("not estimable on this cohort")
    text = answer.conclusion(table, pd.DataFrame(columns=["model", "metric", "value", "subset"]))
    assert text.startswith("The residual fusion kept its untrained state, the clinical model of age and sex itself, in "
                           "all 10 folds") and "**not estimable on this cohort**" in text
    assert "cannot be compared" in answer.comparison_text(table, "binary")
    moved = with_training_states(rows, states.assign(value=[9, 10]))
    assert moved.at[0, "estimable"] and moved.at[0, "conclusion"] == "x"


def test_an_arm_below_half_without_a_null_reads_as_no_discrimination():
    results = pd.DataFrame({"model": "image", "metric": ["auroc"], "value": [0.39], "ci_low": [0.3],
                            "ci_high": [0.48], "subset": "all"})
    assert answer.discrimination_words(results, "image").startswith("showed no discrimination")
    assert answer.discrimination_words(results, "fusion") == "was not run (fusion (residual))"


def test_power_says_each_thing_once_and_names_the_arms_whose_scores_are_the_clinical_models():
    base = {"n_pos": 203, "n_neg": 36, "power": 0.8, "alpha": 0.05, "auroc_ref": 0.95}
    power = pd.DataFrame([{**base, "model": "any", "correlation_source": "declared", "correlation": r,
                           "detectable_gain": g} for r, g in ((0.9, 0.03), (0.7, 0.045), (0.5, np.nan))]
                         + [{**base, "model": "fusion_concat", "correlation_source": "observed", "correlation": 0.62,
                             "detectable_gain": np.nan},
                            {**base, "model": "fusion", "correlation_source": "same scores", "correlation": 0.997,
                             "detectable_gain": np.nan}])
    text = estimability.power_words(power)
    assert "239 patients (36 normal)" in text and "0.030 at correlation 0.9, 0.045 at correlation 0.7" in text
    assert text.count("none up to AUROC 1 (a gain of 0.050)") == 2  # once per place it applies, not doubled
    assert "maximum possible" not in text
    assert "fusion (concatenation) none up to AUROC 1 (a gain of 0.050) (correlation 0.62)" in text
    assert "The scores of the fusion (residual) (within-class correlation 0.997) are the clinical model's" in text
    table = estimability.power_table(power)
    assert not table.isna().any().any() and "not stated" in table.iloc[-1]["smallest detectable gain"]


def test_permutation_text_says_which_arms_were_rerun_and_where_the_null_centres():
    row = {"metric": "auroc", "null_mean": 0.49, "null_q025": 0.36, "null_q95": 0.6, "null_q975": 0.62,
           "n_permutations": 200, "p_value": 1 / 201, "p_less": 1.0}
    pvalues = pd.DataFrame([{**row, "model": "age", "observed": 0.94}, {**row, "model": "clinical", "observed": 0.95},
                            {**row, "model": "age", "metric": "auroc_fold_mean", "observed": 0.93}])
    profile = config.get_profile("fast")
    text = answer.permutation_text(pvalues, profile)
    assert "200 label permutations, the folds re-stratified" in text
    assert "age: observed 0.940, null mean 0.490 (central 95% 0.360 to 0.620), p = 0.00498" in text
    assert text.count("age:") == 1 and "no permutation p-value" in text
    primary = pd.concat([pvalues, pd.DataFrame([{**row, "model": "fusion - clinical", "metric": "auroc_difference",
                                                 "observed": 0.0, "n_permutations": 10, "p_value": 0.6}])])
    assert "re-run on 10 permutations: permutation p = 0.6" in answer.permutation_text(primary, profile)
    assert answer.permutation_text(pvalues.iloc[:0], profile) == "No arm was re-run on permuted labels."


def test_calibration_is_read_in_words():
    metrics = ["calibration_slope", "calibration_intercept", "brier_scaled"]
    results = pd.DataFrame({"model": "clinical", "metric": metrics,
                            "value": [1.2, -0.3, 0.4], "ci_low": [1.05, -0.5, 0.3], "ci_high": [1.4, -0.1, 0.5],
                            "subset": "all"})
    text = answer.calibration_words(results, "clinical")
    assert text.startswith("Clinical (age, sex): slope 1.20") and "((" not in text
    assert "too moderate (slope above 1" in text and "over-estimates the risk on average" in text
    assert "better than giving everyone the prevalence" in text
    results["ci_low"], results["ci_high"] = [0.8, -0.2, -0.1], [1.3, 0.2, 0.1]
    text = answer.calibration_words(results, "clinical")
    assert "no miscalibration detectable" in text and "no better than giving everyone" in text
    results["value"], results["ci_low"], results["ci_high"] = [-1.3, 1.6, -0.9], [-2.3, 1.5, -1.1], [-0.3, 1.7, -0.8]
    text = answer.calibration_words(results, "clinical")
    assert "no usable ranking (slope below 0" in text and "overfitted" not in text and "worse than giving" in text


def test_the_equation_in_the_book_is_the_fitted_clinical_model():
    rng = np.random.default_rng(3)
    n = 300
    rows = pd.DataFrame({"age_years": rng.uniform(25, 85, n), "sex": rng.choice(["female", "male"], n)})
    logit = -6 + 0.1 * rows["age_years"] - 0.8 * (rows["sex"] == "male")
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int).to_numpy()
    equation = arms.logistic_equation(rows, y)
    assert list(equation["term"]) == ["intercept", "age_years", "sex_male"]
    beta = equation["coefficient"].to_numpy()
    by_equation = 1 / (1 + np.exp(-(beta[0] + beta[1] * rows["age_years"] + beta[2] * (rows["sex"] == "male"))))
    fitted = arms.make_arm("clinical", "binary").fit(rows, y).predict_proba(rows)[:, 1]
    np.testing.assert_allclose(by_equation, fitted, atol=1e-5)  # the arm is this equation, unpenalised
    assert (equation["ci_low"] < beta).all() and (beta < equation["ci_high"]).all()
    text = answer.equation_text(equation, n)
    assert f"{beta[1]:.4f} × age in years" in text and f"- {abs(beta[2]):.4f} × [male]" in text
    table = answer.equation_table(equation)
    assert table.iloc[1, 0] == "age (per year)" and table.iloc[1, 1].startswith(f"+{beta[1]:.3f}")


def test_tscore_text_never_reads_a_measured_class_coverage_against_95_percent():
    """Coverage per measured WHO class is below 95% at the edges even for a correct model (selection on the
    outcome): without the coverage given the predictors, the text says nothing about it."""
    rows = [("mae", 0.33, 0.29, 0.37), ("mae_no_information", 0.558, 0.5, 0.6), ("r2", 0.59, 0.44, 0.7),
            ("coverage_95", 0.95, 0.92, 0.97), ("coverage_95_normal", 0.97, 0.93, 1.0),
            ("coverage_95_osteoporosis", 0.85, 0.7, 0.93)]
    regression = pd.DataFrame(rows, columns=["metric", "value", "ci_low", "ci_high"]).assign(
        model="clinical_tscore", subset="all")
    text = answer.tscore_text(regression)
    assert "MAE 0.330\u00a0[0.290,\u00a00.370] against 0.558 from the training folds' mean" in text
    assert "its 95% intervals hold 95% of the measured T-scores." in text
    assert "too few" not in text and "osteoporosis" not in text


def test_the_clinical_equation_states_the_ages_it_holds_for():
    """No normal patient is 50 or older: the equation holds for 23-49 and gives every woman from 50 on a
    risk of at least 0.98 by extrapolation, which the text and the model card say."""
    from osteo_helpers.model_card import _equation_lines

    age = np.r_[np.arange(23, 50), np.arange(17, 108)]
    y = np.r_[np.zeros(27), np.ones(91)]
    assert arms.overlap_range(age, y) == (23.0, 49.0)
    assert all(np.isnan(arms.overlap_range([1, 2, 3, 4], [0, 0, 1, 1])))  # classes that never overlap
    equation = pd.DataFrame({"term": ["intercept", "age_years", "sex_male"], "coefficient": [-8.1955, 0.24525, -1.7941],
                             "se": 0.1, "ci_low": 0.0, "ci_high": 0.0})
    text = answer.equation_text(equation, 239, (23.0, 49.0))
    assert "**It holds for ages 23 to 49 only**, where both normal and low-BMD patients were seen" in text
    assert "from age 50 it gives P(low BMD) of at least 0.98 for women and 0.91 for men" in text
    assert "It holds" not in answer.equation_text(equation, 239)
    card = "\n".join(_equation_lines({"clinical_equation": equation.to_dict("records"),
                                       "clinical_equation_ages": [23.0, 49.0], "cohort": {"patients": 239}}))
    assert "It holds for ages 23 to 49 only" in card and "0.98 for women" in card


def test_the_clinical_model_is_counted_as_the_selection_it_was():
    """Issue 30: two parameters for a model chosen after exploring the whole allow-list understate what the
    cohort had to support; the candidates are counted, and the cohort said too small to select among them."""
    sizes = pd.DataFrame([
        {"model": "clinical", "candidate_parameters": 2, "events": 36, "events_per_parameter": 18.0, "patients": 239,
         "patients_required": 180.0, "enough": True},
        {"model": "clinical_full", "candidate_parameters": 51, "events": 36, "events_per_parameter": 0.71,
         "patients": 239, "patients_required": 5100.0, "enough": False}])
    text = estimability.sample_size_text(sizes)
    assert "a choice among the 51 candidate parameters of the allow-list" in text
    assert "asks for 5,100 patients" in text and "too small to select among the candidates" in text


def test_calibration_and_equation_that_cannot_be_estimated_say_so():
    """Issue 28: on a cohort whose classes the inputs separate (no age holds both), the calibration slope and the
    clinical equation have no maximum-likelihood fit; the page says "not estimable" and why, never "nan"."""
    results = pd.DataFrame({"model": "clinical", "metric": ["calibration_slope", "calibration_intercept"],
                            "value": [np.inf, 0.2], "ci_low": [np.nan, 0.1], "ci_high": [np.nan, 0.3], "subset": "all"})
    text = answer.calibration_words(results, "clinical")
    assert text.startswith("Clinical (age, sex): calibration slope not estimable on this cohort") and "nan" not in text
    age = np.r_[np.arange(25, 45), np.arange(55, 75)]
    rows = pd.DataFrame({"age_years": age, "sex": ["female", "male"] * 20})
    equation = arms.logistic_equation(rows, (age > 50).astype(int))
    assert equation["coefficient"].isna().all() and equation["se"].isna().all()
    text = answer.equation_text(equation, 40, arms.overlap_range(age, age > 50))
    assert "has no coefficients: **not estimable on this cohort**, because no age holds both" in text
    assert "nan" not in text


def test_a_difference_the_gate_leaves_uninterpreted_is_not_read_as_what_the_image_adds():
    """A review found the primary sentence saying 'the knee radiograph added to age and sex' beside a failed gate."""
    comparisons = pd.DataFrame([_comparison(0.03, 0.01, 0.05, a_untrained_folds=2)])
    results = pd.DataFrame(columns=["model", "metric", "value", "subset"])
    weak = pd.DataFrame({"target": ["sex", "age"], "model": "image", "metric": ["auroc", "pearson_r"],
                         "value": [0.6, 0.05], "ci_low": [0.52, -0.1], "ci_high": [0.68, 0.2]})
    text = answer.conclusion(comparisons, results, control=weak)
    assert "a difference the positive-control gate leaves uninterpreted" in text and "added to age" not in text
    other = weak.assign(model="image_cnn", value=[0.9, 0.5], ci_low=[0.85, 0.4])
    assert "positive control was not run" in answer.conclusion(comparisons, results, control=other)
