"""Is a predictive distribution calibrated? Coverage conditional on the predictors, and the PIT.

A T-score model gives each patient a Gaussian N(mean, sd). Its 95% intervals are judged against 95%
only where the patients are chosen by their predictors: in bins of the predicted mean. Coverage per
*measured* WHO class is not expected to be 95% even for a perfectly specified model: the class is a
function of the outcome, so a patient measured at the edge of a class (osteoporosis, T <= -2.5) is
more often one whose T-score fell far from its mean (selection on the outcome); simulated from a
correct model the classes of this cohort give about 0.88 / 0.98 / 0.88. Per class, the benchmark is
what the model itself expects: sum_i P_i(covered and in class c) / sum_i P_i(in class c), computed
from each patient's own predictive distribution.

The probability integral transform PIT = Phi((y - mean) / sd) is uniform on [0, 1] for a calibrated
predictive distribution (Dawid 1984; Gneiting, Balabdaoui & Raftery 2007): a U shape says the spread
is too narrow, a hump too wide, a slope a biased mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import stats

from ..figures import panels
from ..tasks import CLASSES_3, WHO_NORMAL_MIN, WHO_OSTEOPOROSIS_MAX, who_class_index
from .resampling import bootstrap_indices, group_lookup, groups_for_patients, percentile_ci

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["WHO_BOUNDS", "conditional_coverage", "pit_figure", "pit_values"]

#: the WHO classes as intervals of the T-score (lower, upper)
WHO_BOUNDS: dict[str, tuple[float, float]] = {
    CLASSES_3[0]: (WHO_NORMAL_MIN, np.inf), CLASSES_3[1]: (WHO_OSTEOPOROSIS_MAX, WHO_NORMAL_MIN),
    CLASSES_3[2]: (-np.inf, WHO_OSTEOPOROSIS_MAX)}
Z95 = float(stats.norm.ppf(0.975))


def _check(pred: pd.DataFrame) -> None:
    missing = {"patient_id", "y_true", "pred_mean", "pred_sd"} - set(pred.columns)
    if missing:
        raise ValueError(f"a predictive table needs columns {sorted(missing)}")


def pit_values(pred: pd.DataFrame) -> np.ndarray:
    """PIT of every row (each patient in each repeat): Phi((y - mean) / sd)."""
    _check(pred)
    return stats.norm.cdf(((pred["y_true"] - pred["pred_mean"]) / pred["pred_sd"]).to_numpy(float))


def _per_patient(pred: pd.DataFrame, classes: Mapping[str, tuple[float, float]]) -> pd.DataFrame:
    """Per patient (averaged over repeats): measured value, predicted mean and sd, whether the 95% interval
    held the value, and for each class the model's P(in class) and P(in class and covered)."""
    half = Z95 * pred["pred_sd"]
    table = pred.assign(covered=((pred["y_true"] - pred["pred_mean"]).abs() <= half).astype(float),
                        sd2=pred["pred_sd"] ** 2)
    low, high = pred["pred_mean"] - half, pred["pred_mean"] + half
    columns = {"y_true": ("y_true", "first"), "pred": ("pred_mean", "mean"), "sd2": ("sd2", "mean"),
               "covered": ("covered", "mean")}
    for name, (a, b) in classes.items():
        cdf = lambda x: stats.norm.cdf((x - pred["pred_mean"]) / pred["pred_sd"])  # noqa: E731
        table[f"p_{name}"] = cdf(np.full(len(pred), b)) - cdf(np.full(len(pred), a))
        table[f"pc_{name}"] = np.clip(cdf(np.minimum(b, high)) - cdf(np.maximum(a, low)), 0, None)
        columns[f"p_{name}"] = (f"p_{name}", "mean")
        columns[f"pc_{name}"] = (f"pc_{name}", "mean")
    return table.groupby("patient_id").agg(**columns)


def conditional_coverage(pred: pd.DataFrame, n_bins: int = 4, n_boot: int = 1000, seed: int = 0,
                         groups: pd.Series | Mapping | None = None) -> pd.DataFrame:
    """Coverage of the 95% predictive intervals (and the mean's bias and the spread) in groups of patients:
    conditioned on the predictors (``n_bins`` quantile bins of the predicted mean), where 95% is the
    benchmark, and per measured WHO class (`tasks.who_class_index`), where the benchmark is the coverage
    the model itself expects there.

    One row per group: ``conditioned_on`` ("predicted mean" or "measured class"), ``group``, ``n_patients``,
    ``pred_low``, ``pred_high`` (range of the predicted mean), ``mean_residual`` (measured - predicted) with
    ``mean_residual_ci_low/high``, ``predicted_sd`` (root mean predicted variance), ``residual_sd``,
    ``coverage`` with ``coverage_ci_low/high`` (bootstrap of split groups, unstratified) and
    ``expected_coverage``. Per patient, values are averaged over the repeats.
    """
    _check(pred)
    per = _per_patient(pred, WHO_BOUNDS)
    y = per["y_true"].to_numpy(float)
    residual, covered = y - per["pred"].to_numpy(), per["covered"].to_numpy()
    bins = pd.qcut(per["pred"], n_bins, labels=False, duplicates="drop").to_numpy()
    measured = np.asarray(CLASSES_3, dtype=object)[who_class_index(y)]
    sets: list[tuple[str, str, np.ndarray, float]] = []
    for b in np.unique(bins):
        member = bins == b
        low, high = per["pred"][member].min(), per["pred"][member].max()
        sets.append(("predicted mean", f"{low:.2f} to {high:.2f}", member, 0.95))
    for name in CLASSES_3:
        member = measured == name
        if member.any():
            expected = float(per[f"pc_{name}"].sum() / per[f"p_{name}"].sum())
            sets.append(("measured class", name, member, expected))
    patient_groups = None if groups is None else groups_for_patients(per.index, group_lookup(groups, per.index))
    masks = np.array([m for *_, m, _ in sets], dtype=float)  # (G, n)
    n = masks.sum(axis=1)
    boot_cover, boot_bias = [], []
    for idx in bootstrap_indices(y, n_boot, seed, patient_groups, stratify=False):
        m = masks[:, idx]  # (G, B, n)
        size = m.sum(axis=2)
        with np.errstate(invalid="ignore", divide="ignore"):
            boot_cover.append((m * covered[idx]).sum(axis=2) / size)
            boot_bias.append((m * residual[idx]).sum(axis=2) / size)
    boot_cover, boot_bias = np.concatenate(boot_cover, axis=1), np.concatenate(boot_bias, axis=1)
    rows = []
    for g, (kind, label, member, expected) in enumerate(sets):
        cover_ci = percentile_ci(boot_cover[g][np.isfinite(boot_cover[g])], 0.95)
        bias_ci = percentile_ci(boot_bias[g][np.isfinite(boot_bias[g])], 0.95)
        rows.append({"conditioned_on": kind, "group": label, "n_patients": int(n[g]),
                     "pred_low": float(per["pred"][member].min()), "pred_high": float(per["pred"][member].max()),
                     "mean_residual": float(residual[member].mean()), "mean_residual_ci_low": bias_ci[0],
                     "mean_residual_ci_high": bias_ci[1], "predicted_sd": float(np.sqrt(per["sd2"][member].mean())),
                     "residual_sd": float(residual[member].std(ddof=1)) if member.sum() > 1 else np.nan,
                     "coverage": float(covered[member].mean()), "coverage_ci_low": cover_ci[0],
                     "coverage_ci_high": cover_ci[1], "expected_coverage": expected})
    return pd.DataFrame(rows)


def pit_figure(predictions: Mapping[str, pd.DataFrame], labels: Mapping[str, str] | None = None,
               n_bins: int = 10) -> Figure:
    """PIT histograms (`pit_values` of every row), one panel per model, as densities against the uniform (1),
    with the band that as many independent uniform draws as the model has patients keep 95% of the time
    per bin (binomial)."""
    names = list(predictions)
    fig, axes = panels(len(names), 2, 2.9, sharey=True)
    edges = np.linspace(0, 1, n_bins + 1)
    for ax, name in zip(axes, names, strict=True):
        pred = predictions[name]
        n = pred["patient_id"].nunique()
        low, high = (stats.binom.ppf(q, n, 1 / n_bins) * n_bins / n for q in (0.025, 0.975))
        ax.axhspan(low, high, color="grey", alpha=0.2, label="95% band, uniform")
        ax.hist(pit_values(pred), bins=edges, density=True, color="C0", alpha=0.8)
        ax.axhline(1.0, color="k", ls=":", lw=1)
        ax.set(title=(labels or {}).get(name, name), xlabel="PIT = Phi((T - mean) / sd)", xlim=(0, 1))
        ax.title.set_fontsize(9)
    for ax in axes[::2]:
        ax.set_ylabel("density (1 = calibrated)")
    axes[0].legend(fontsize=7, loc="upper center")
    fig.tight_layout()
    return fig
