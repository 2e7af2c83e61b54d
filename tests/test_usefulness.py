"""Clinical usefulness in words (the decision curve over a declared threshold range) and calibration by
subgroup (osteo_helpers.evaluation.usefulness, report.calibration_by_subgroup), on synthetic tables."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import special

from osteo_helpers import evaluation, report


def _curve(gains: np.ndarray, half_width: float = 0.01, prevalence: float = 0.85) -> pd.DataFrame:
    t = evaluation.DCA_THRESHOLDS
    treat_all = prevalence - (1 - prevalence) * t / (1 - t)
    nb = treat_all + gains
    return pd.DataFrame({"threshold": t, "net_benefit": nb, "ci_low": nb - half_width, "ci_high": nb + half_width,
                         "treat_all": treat_all, "treat_none": 0.0})


def test_the_decision_curve_in_one_sentence_over_the_declared_range():
    """The clinical model's net benefit over treat-all runs from -0.003 to +0.007 between 5% and 30%, with a CI
    that holds treat-all everywhere: said as such; a gain beyond 30% does not enter the sentence."""
    t = evaluation.DCA_THRESHOLDS
    gains = np.interp(t, [0.05, 0.30, 0.31, 0.50], [-0.003, 0.007, 0.05, 0.05])
    text = evaluation.decision_sentence(_curve(gains), "clinical (age, sex)")
    assert text == ("clinical (age, sex): over threshold probabilities of 5% to 30%, the net benefit of acting on its "
                    "predictions minus that of treating everyone runs from -0.003 to +0.007 (at best +0.7 true "
                    "positives per 100 patients at no more false positives); its 95% CI holds treat-all at every "
                    "threshold: acting on it is not detectably more useful than treating every patient of this "
                    "cohort.")
    summary = evaluation.decision_summary(_curve(gains))
    assert summary["n_thresholds"] == 26 and summary["gain_max"] == pytest.approx(0.007)
    better = evaluation.decision_sentence(_curve(np.full(len(t), 0.05)), "m")
    assert "its 95% CI lies above treat-all at every threshold: it is more useful than treating everyone" in better
    mixed = evaluation.decision_sentence(_curve(np.where(t < 0.15, 0.05, -0.05)), "m")
    assert "lies above treat-all at 10 and below it at 16 of the 26 thresholds" in mixed
    flat = evaluation.decision_sentence(_curve(np.zeros(len(t))), "m")
    assert "runs from 0.000 to 0.000 (at best 0.0 true positives" in flat and "+0.0" not in flat
    with pytest.raises(ValueError, match="no threshold between"):
        evaluation.decision_summary(_curve(gains), 0.6, 0.7)


def test_the_sentence_reads_a_decision_curve_of_real_predictions():
    rng = np.random.default_rng(0)
    p = special.expit(rng.normal(1.7, 1.2, 400))
    y = (rng.random(400) < p).astype(int)
    curve = evaluation.decision_curve(y, p, n_boot=100, seed=0)
    summary = evaluation.decision_summary(curve)
    gain = (curve["net_benefit"] - curve["treat_all"])[curve["threshold"].between(0.05, 0.30)]
    assert summary["gain_min"] == pytest.approx(gain.min()) and summary["gain_max"] == pytest.approx(gain.max())
    text = evaluation.decision_sentence(curve, "a model")
    assert text.startswith("a model: over threshold probabilities of 5% to 30%")


def _oof(n: int = 600, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Predictions calibrated for women and over-estimating men's risk by 1 on the logit scale; everyone aged
    50 and over has low BMD (as in the cohort)."""
    rng = np.random.default_rng(seed)
    sex = rng.choice(["female", "male"], n)
    age = rng.uniform(20, 55, n)
    lp = rng.normal(1.0, 1.5, n)
    truth = special.expit(lp - 1.0 * (sex == "male"))
    y = np.where(age >= 50, 1, (rng.random(n) < truth).astype(int))
    p = special.expit(lp)
    ids = [f"P{i}" for i in range(n)]
    oof = pd.DataFrame({"patient_id": ids, "fold": 0, "seed": 0, "y_true": y, "prob_normal": 1 - p,
                        "prob_low_bmd": p})
    cohort = pd.DataFrame({"patient_id": ids, "sex": sex, "age_years": age})
    return oof, cohort


def test_calibration_by_sex_and_age_band():
    oof, cohort = _oof()
    groups = pd.Series(cohort["patient_id"].to_numpy(), index=cohort["patient_id"])
    readable = report.calibration_by_subgroup({"clinical": oof}, cohort, ["clinical"], 200, 0, groups)
    table = readable.attrs["table"].set_index("subgroup")
    assert list(table.index) == ["female", "male", "age < 40", "age 40-49", "age >= 50"]
    assert table.loc["female", "n_patients"] == (cohort["sex"] == "female").sum()
    for sex in ("female", "male"):
        part = oof[cohort["sex"].eq(sex).to_numpy()]
        assert table.loc[sex, "calibration_intercept"] == pytest.approx(
            evaluation.calibration_intercept(part["y_true"], part["prob_low_bmd"]))
        assert table.loc[sex, "calibration_slope"] == pytest.approx(
            evaluation.calibration_slope(part["y_true"], part["prob_low_bmd"]))
    assert table.loc["male", "calibration_intercept_ci_high"] < 0 < table.loc["female", "calibration_intercept_ci_high"]
    assert np.isnan(table.loc["age >= 50", "calibration_intercept"]) and table.loc["age >= 50", "observed"] == 1.0
    row = readable.set_index("subgroup").loc["age >= 50"]
    assert row["calibration intercept [95% CI]"] == "one class only (low BMD): no intercept or slope"
    assert "nan" not in readable.to_string()
