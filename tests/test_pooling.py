"""The meta-analysis across sites (osteo_helpers.evaluation.pooling) against a hand computation, the
variances it pools, and the leave-one-site-out page that reads it (sites, or acquisition batches)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import special, stats

from osteo_helpers import evaluation
from osteo_helpers.external import site_results, site_table, site_text, site_unit
from osteo_helpers.external.sites import POOLED_RE


def test_random_effects_against_a_hand_computation() -> None:
    """Three studies, estimates 0, 1, 3 with variances 0.1, 0.2, 0.4, worked by hand:
    fixed weights 10, 5, 2.5 (sum 17.5), fixed mean 12.5 / 17.5 = 5/7;
    Q = 10 (5/7)^2 + 5 (2/7)^2 + 2.5 (16/7)^2 = 910/49 = 130/7, p = P(chi2_2 > 130/7) = exp(-65/7);
    C = 17.5 - 131.25 / 17.5 = 10, tau2 = (130/7 - 2) / 10 = 58/35; I2 = (130/7 - 2) / (130/7) = 58/65;
    random weights 1 / (v + 58/35); prediction interval mean +/- t(0.975, 1) sqrt(tau2 + 1 / sum w*)."""
    fit = evaluation.random_effects([0.0, 1.0, 3.0], [0.1, 0.2, 0.4])
    tau2 = 58 / 35
    w = [1 / (0.1 + tau2), 1 / (0.2 + tau2), 1 / (0.4 + tau2)]
    mean = (w[1] * 1 + w[2] * 3) / sum(w)
    se_dl = math.sqrt(1 / sum(w))
    hk = sum(wi * (t - mean) ** 2 for wi, t in zip(w, [0.0, 1.0, 3.0], strict=True)) / 2  # 1.2058 > 1: it widens
    assert fit["q"] == pytest.approx(130 / 7) and fit["q_p"] == pytest.approx(math.exp(-65 / 7))
    assert fit["tau2"] == pytest.approx(tau2) and fit["i2"] == pytest.approx(58 / 65)
    assert fit["estimate"] == pytest.approx(mean) and mean == pytest.approx(1.252947, abs=1e-6)
    assert fit["se_dl"] == pytest.approx(se_dl)
    assert fit["se"] == pytest.approx(math.sqrt(hk / sum(w)))
    assert fit["ci_high"] - fit["estimate"] == pytest.approx(4.302653 * math.sqrt(hk / sum(w)), rel=1e-6)
    assert fit["pi_df"] == 1
    assert fit["pi_high"] - fit["estimate"] == pytest.approx(12.706205 * math.sqrt(tau2 + se_dl**2), rel=1e-6)
    assert fit["pi_high"] - fit["estimate"] == pytest.approx(19.2054, abs=1e-3)


def test_two_studies_have_no_prediction_interval_and_no_spread_gives_no_tau2() -> None:
    two = evaluation.random_effects([0.2, 0.4], [0.01, 0.02])
    assert np.isnan(two["pi_low"]) and np.isnan(two["pi_high"])
    same = evaluation.random_effects([0.5, 0.5, 0.5], [0.04, 0.01, 0.02])
    assert same["tau2"] == 0.0 and same["q"] == 0.0 and same["q_p"] == 1.0
    assert same["pi_low"] < same["ci_low"] < 0.5 < same["ci_high"] < same["pi_high"]


def test_calibration_variances_match_the_spread_of_their_estimates() -> None:
    """The Wald variances pooled across sites describe how much the intercept and slope vary between
    samples of one calibrated population (300 patients, 300 samples)."""
    rng = np.random.default_rng(0)
    intercepts, slopes, variances = [], [], []
    for _ in range(300):
        p = special.expit(rng.normal(1.0, 1.5, 300))
        y = (rng.random(300) < p).astype(int)
        fit = evaluation.calibration_estimates(y, p)
        intercepts.append(fit["calibration_intercept"])
        slopes.append(fit["calibration_slope"])
        variances.append((fit["calibration_intercept_var"], fit["calibration_slope_var"]))
    variances = np.array(variances)
    assert abs(np.mean(intercepts)) < 0.03 and abs(np.mean(slopes) - 1) < 0.05
    assert np.std(intercepts) == pytest.approx(np.sqrt(variances[:, 0].mean()), rel=0.12)
    assert np.std(slopes) == pytest.approx(np.sqrt(variances[:, 1].mean()), rel=0.12)
    one_class = evaluation.calibration_estimates(np.ones(20, int), np.linspace(0.5, 0.9, 20))
    assert np.isnan(one_class["calibration_intercept_var"])


def _site_oof(shifts: dict[str, float], n: int = 240, seed: int = 0) -> pd.DataFrame:
    """Out-of-site predictions whose calibration-in-the-large is ``shift`` in each site (risk under-estimated
    by that much on the logit scale); the discrimination is the same everywhere."""
    rng = np.random.default_rng(seed)
    parts = []
    for k, (site, shift) in enumerate(shifts.items()):
        lp = rng.normal(1.5, 1.5, n)
        y = (rng.random(n) < special.expit(lp + shift)).astype(int)
        p = special.expit(lp)
        parts.append(pd.DataFrame({"patient_id": [f"{site}{i}" for i in range(n)], "fold": k, "seed": 0,
                                   "y_true": y, "prob_normal": 1 - p, "prob_low_bmd": p, "site": site}))
    return pd.concat(parts, ignore_index=True)


def test_calibration_is_meta_analysed_across_batches_with_a_prediction_interval() -> None:
    """Batches whose calibration differs (+1, 0, -1 on the logit scale) are found heterogeneous (Q, I2,
    tau2) with a prediction interval wider than the mean's interval; batches that agree are not."""
    unit = "acquisition batch"
    differ = site_results({"clinical": _site_oof({"a": 1.0, "b": 0.0, "c": -1.0})}, n_boot=50, seed=0, unit=unit)
    pooled = differ[differ["site"] == POOLED_RE].set_index("metric")
    assert set(pooled.index) == {"auroc", "calibration_intercept", "calibration_slope"}
    cal = pooled.loc["calibration_intercept"]
    assert cal["q_p"] < 0.001 and cal["i2"] > 0.8 and cal["tau2"] > 0.3 and cal["k"] == 3
    assert cal["pi_low"] < cal["ci_low"] < cal["value"] < cal["ci_high"] < cal["pi_high"]
    per_batch = differ[(differ["metric"] == "calibration_intercept") & ~differ["site"].str.startswith("pooled")]
    assert set(per_batch["estimate"]) == {"left-out acquisition batch"}
    counts = pd.DataFrame({"site": ["a", "b", "c"], "n_patients": 240, "n_low_bmd": 200, "n_normal": 40})
    text = site_text(differ, counts, unit=unit)
    assert "Calibration-in-the-large of the left-out acquisition batches" in text
    assert "differ in calibration beyond chance" in text
    assert "95% prediction interval for a new acquisition batch" in text
    assert "k - 2 = 1 degree of freedom (t = 12.7), so 3 acquisition batches say almost nothing" in text
    assert "site" not in text.replace("left-out", "")
    agree = site_results({"clinical": _site_oof({"a": 0.0, "b": 0.0, "c": 0.0}, seed=1)}, n_boot=50, seed=0, unit=unit)
    assert agree[(agree["site"] == POOLED_RE) & (agree["metric"] == "calibration_intercept")]["q_p"].iloc[0] > 0.05
    assert "No heterogeneity of calibration across acquisition batches" in site_text(agree, counts, unit=unit)
    readable = site_table(differ, metric="calibration_intercept", unit=unit)
    assert readable.columns[0] == unit and "95% PI [" in readable.set_index(unit).loc[POOLED_RE, "clinical"]


def test_what_a_site_is_comes_from_the_data() -> None:
    """A cohort with a site column is analysed by site; the published cohort by acquisition batch."""
    assert site_unit(pd.DataFrame({"site": ["x", "y"], "batch": ["b", "b"]})) == ("site", "site")
    batches = site_unit(pd.DataFrame({"batch": ["rgb-1k", "gray-2k+"]}))
    assert batches == ("batch", "acquisition batch") and batches.plural == "acquisition batches"
    assert site_unit(pd.DataFrame({"site": [None, None], "batch": ["b", "c"]})).column == "batch"


def test_the_prediction_interval_uses_t_with_k_minus_2_degrees_of_freedom() -> None:
    fit = evaluation.random_effects([0.1, 0.3, 0.6, 0.2], [0.01, 0.02, 0.01, 0.03])
    half = (fit["pi_high"] - fit["pi_low"]) / 2
    assert half == pytest.approx(stats.t.ppf(0.975, 2) * math.sqrt(fit["tau2"] + fit["se_dl"] ** 2))
