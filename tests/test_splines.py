"""The T-score models take age through a restricted cubic spline (the protocol's T-score amendment): the
basis against a hand computation, its knots chosen on the training rows only, and what it does to a
non-linear mean."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from osteo_helpers import arms
from osteo_helpers.splines import HARRELL_QUANTILES_4, RestrictedCubicSpline, rcs_basis
from osteo_helpers.tabular import TSCORE_SPLINE, spline_inputs


def test_the_restricted_cubic_spline_against_a_hand_computation():
    """Knots 0, 1, 2, 3 (norm (3 - 0)^2 = 9). At x = 2.5: s1 = (2.5^3 - 0.5^3 x 3) / 9 = 15.25 / 9,
    s2 = (1.5^3 - 0.5^3 x 2) / 9 = 3.125 / 9. At x = 4, beyond the last knot:
    s1 = (4^3 - 2^3 x 3 + 1^3 x 2) / 9 = 42 / 9, s2 = (3^3 - 2^3 x 2 + 1^3 x 1) / 9 = 12 / 9."""
    basis = rcs_basis(np.array([2.5, 4.0, -1.0]), np.array([0.0, 1.0, 2.0, 3.0]))
    np.testing.assert_allclose(basis, [[2.5, 15.25 / 9, 3.125 / 9], [4.0, 42 / 9, 12 / 9], [-1.0, 0.0, 0.0]])


def test_the_spline_is_linear_beyond_its_outer_knots():
    knots = np.array([20.0, 40.0, 50.0, 70.0])
    for x in (np.linspace(71, 120, 50), np.linspace(-10, 19, 50)):
        second = np.diff(rcs_basis(x, knots), n=2, axis=0)
        np.testing.assert_allclose(second, 0, atol=1e-9)


def test_the_knots_are_the_training_rows_quantiles():
    ages = np.arange(20.0, 81.0)
    spline = RestrictedCubicSpline().fit(ages[:, None])
    np.testing.assert_allclose(spline.knots_, np.quantile(ages, HARRELL_QUANTILES_4))
    assert spline.transform(np.array([[30.0], [90.0]])).shape == (2, 3)
    assert list(RestrictedCubicSpline().fit(pd.DataFrame({"age_years": ages})).get_feature_names_out()) == [
        "age_years", "age_years_rcs1", "age_years_rcs2"]
    tied = RestrictedCubicSpline().fit(np.r_[np.full(50, 40.0), 41.0, 42.0][:, None])
    assert tied.transform(np.array([[40.0]])).shape == (1, 1)  # too few distinct knots: a linear term
    with pytest.raises(ValueError, match="finite"):
        spline.transform(np.array([[np.nan]]))


def _tscore_rows(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """T-scores that fall with age fastest in middle age (a logistic drop between 40 and 55), as in the cohort."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(20, 85, n)
    sex = rng.choice(["female", "male"], n)
    t = -0.6 - 1.6 / (1 + np.exp(-(age - 47) / 6)) + 0.3 * (sex == "male") + rng.normal(0, 0.3, n)
    return pd.DataFrame({"patient_id": [f"P{i}" for i in range(n)], "age_years": age, "sex": sex, "t_score": t,
                         "label_3class": np.where(t <= -2.5, 2, np.where(t < -1, 1, 0)),
                         "split_group": [f"G{i}" for i in range(n)]})


@pytest.mark.parametrize("name", ["age", "clinical"])
def test_the_tscore_models_follow_a_non_linear_mean_the_classes_stay_linear(name):
    """The T-score model of age (and of age and sex) fitted on training rows leaves no bias by quarter of its
    prediction on new rows, where a mean linear in age leaves +, -, -, + (the cohort's pattern); the binary
    model of the same arm keeps its declared linear form."""
    train, test = _tscore_rows(seed=0), _tscore_rows(seed=1)
    arm = arms.make_arm(name, "tscore").fit(train, train["t_score"].to_numpy())
    spline = next(step for step in _steps(arm.model_) if isinstance(step, RestrictedCubicSpline))
    np.testing.assert_allclose(spline.knots_, np.quantile(train["age_years"], HARRELL_QUANTILES_4))
    mean, _ = arm.predict_distribution(test)
    bias = pd.Series(test["t_score"].to_numpy() - mean).groupby(pd.qcut(mean, 4, labels=False)).mean()
    assert bias.abs().max() < 0.05, bias  # a mean linear in age leaves +0.09, -0.18, +0.06, +0.08 here
    binary = arms.make_arm(name, "binary").fit(train, (train["label_3class"] > 0).astype(int).to_numpy())
    assert not any(isinstance(step, RestrictedCubicSpline) for step in _steps(binary.model_))


def _steps(estimator) -> list:
    """Every estimator inside a pipeline or column transformer, depth first."""
    out = [estimator]
    for child in getattr(estimator, "steps", []):
        out += _steps(child[1])
    for child in getattr(estimator, "transformers_", []):
        out += _steps(child[1])
    return out


def test_only_the_tscore_task_takes_the_spline():
    assert spline_inputs("tscore") == TSCORE_SPLINE == ("age_years",)
    assert spline_inputs("binary") == spline_inputs("3class") == spline_inputs("age") == ()
