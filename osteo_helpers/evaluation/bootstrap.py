"""Point metrics with bootstrap percentile CIs, for arrays and for out-of-fold tables.

Every function resamples patients within class (see :mod:`.resampling`), or whole split
groups when ``groups`` is given, so duplicates of one person never sit on both sides of
a resample's weighting.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

from .calibration import calibration_metrics
from .metrics import (
    as_floats,
    as_labels,
    as_proba,
    as_scores,
    average_over_repeats,
    batched_confusion,
    binary_table,
    class_names_from,
    confusion,
    multiclass_table,
    prob_columns,
    regression_table,
    safe_div,
)
from .resampling import (
    GroupsLike,
    bootstrap_indices,
    ci_frame,
    collect,
    group_lookup,
    groups_for_patients,
    percentile_ci,
)

__all__ = [
    "bootstrap_confusion",
    "bootstrap_metrics",
    "oof_metrics",
    "operating_point",
    "regression_metrics",
]


def bootstrap_metrics(
    y_true: ArrayLike,
    proba: ArrayLike,
    class_names: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    threshold: float = 0.5,
    ci: float = 0.95,
    groups: ArrayLike | None = None,
) -> pd.DataFrame:
    """Point metrics with percentile CIs from a class-stratified patient (or group) bootstrap.

    Binary when ``proba`` has two columns (positive class = column 1, cut at
    ``threshold``); otherwise multiclass with argmax predictions. ``groups`` (one label
    per patient) makes every resample draw whole groups.
    """
    y, p = as_proba(y_true, proba, class_names)
    if p.shape[1] == 2:

        def table(yy: np.ndarray, pp: np.ndarray) -> dict[str, np.ndarray]:
            return binary_table(yy, pp[:, :, 1], threshold)

    else:

        def table(yy: np.ndarray, pp: np.ndarray) -> dict[str, np.ndarray]:
            return multiclass_table(yy, pp, class_names)

    point = as_floats(table(y[None], p[None]))
    batches = bootstrap_indices(y, n_boot, seed, groups, cells_per_row=p.size)
    boot = collect(table(y[idx], p[idx]) for idx in batches)
    return ci_frame(point, boot, ci)


def bootstrap_confusion(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    n_classes: int,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    groups: ArrayLike | None = None,
) -> pd.DataFrame:
    """Confusion counts with CIs, long format (true, pred, count, ci_low, ci_high).

    Resampling is stratified by true class, so row totals are fixed (without groups)
    and the CIs describe how patients of a class split across predictions.
    """
    y = as_labels(y_true, n_classes)
    pred = as_labels(y_pred, n_classes)
    if len(pred) != len(y):
        raise ValueError("y_true and y_pred differ in length")
    point = confusion(y, pred, n_classes)
    batches = bootstrap_indices(y, n_boot, seed, groups, cells_per_row=len(y))
    boot = np.concatenate([batched_confusion(y[i], pred[i], n_classes) for i in batches])
    rows = [
        (t, q, int(point[t, q]), *percentile_ci(boot[:, t, q].astype(float), ci))
        for t in range(n_classes)
        for q in range(n_classes)
    ]
    return pd.DataFrame(rows, columns=["true", "pred", "count", "ci_low", "ci_high"])


def regression_metrics(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    groups: ArrayLike | None = None,
    baseline: ArrayLike | None = None,
    covered: ArrayLike | None = None,
    strata: ArrayLike | None = None,
) -> pd.DataFrame:
    """Metrics of a continuous prediction (e.g. of the T-score) with unstratified patient (or group)
    bootstrap CIs: those of :func:`.metrics.regression_table`, and

    - with ``baseline`` (each patient's no-information prediction, the training fold's mean):
      ``mae_no_information``, the MAE a model without inputs reaches;
    - with ``covered`` (each patient's share of predictive intervals that hold the measured value):
      ``coverage_95``, and with ``strata`` (a class per patient) ``coverage_95_<class>`` too.
    """
    y = np.asarray(y_true, dtype=float)
    if y.ndim != 1 or y.size < 2:
        raise ValueError("y_true must be 1-D with at least two values")
    y = as_scores(y, len(y), "y_true")
    pred = as_scores(y_pred, len(y), "y_pred")
    if pred.ndim != 1:
        raise ValueError("y_pred must be 1-D")
    base = None if baseline is None else as_scores(baseline, len(y), "baseline")
    cover = None if covered is None else as_scores(covered, len(y), "covered")
    labels = None if strata is None else np.asarray(strata, dtype=object)
    names = [] if labels is None or cover is None else list(dict.fromkeys(labels))

    def table(idx: np.ndarray) -> dict[str, np.ndarray]:
        out = regression_table(y[idx], pred[idx])
        if base is not None:
            out["mae_no_information"] = np.abs(y[idx] - base[idx]).mean(axis=1)
        if cover is not None:
            out["coverage_95"] = cover[idx].mean(axis=1)
            for name in names:
                member = labels[idx] == name
                out[f"coverage_95_{name}"] = safe_div((cover[idx] * member).sum(axis=1), member.sum(axis=1))
        return out

    point = as_floats(table(np.arange(len(y))[None]))
    boot = collect(table(i) for i in bootstrap_indices(y, n_boot, seed, groups, stratify=False))
    return ci_frame(point, boot, ci)


def _patient_groups(oof: pd.DataFrame, patient_ids: ArrayLike, groups: GroupsLike | None) -> np.ndarray | None:
    """Group per patient (in ``patient_ids`` order) from a mapping or labels aligned with OOF rows."""
    if groups is None:
        return None
    return groups_for_patients(patient_ids, group_lookup(groups, oof["patient_id"]))


def oof_metrics(
    oof: pd.DataFrame, n_boot: int = 1000, seed: int = 0, ci: float = 0.95, groups: GroupsLike | None = None
) -> pd.DataFrame:
    """Metrics with CIs from an OOF table, on each patient's mean prediction over repeats.

    Adds ``brier``, ``brier_scaled``, ``calibration_intercept`` and ``calibration_slope`` (three classes:
    ``brier_multiclass`` too; see
    :func:`.calibration.calibration_metrics`; with three classes they describe
    P(low BMD) = 1 - P(class 0)). ``groups``: mapping/Series patient_id -> split group,
    or labels aligned with the OOF rows.
    """
    avg = average_over_repeats(oof)
    y = avg["y_true"].to_numpy()
    proba = avg[prob_columns(oof)].to_numpy()
    patient_groups = _patient_groups(oof, avg["patient_id"], groups)
    discrimination = bootstrap_metrics(y, proba, class_names_from(oof), n_boot=n_boot, seed=seed, ci=ci,
                                       groups=patient_groups)
    calibration = calibration_metrics(y, proba, n_boot=n_boot, seed=seed, ci=ci, groups=patient_groups)
    return pd.concat([discrimination, calibration], ignore_index=True)


def operating_point(
    oof: pd.DataFrame, n_boot: int = 1000, seed: int = 0, ci: float = 0.95, groups: GroupsLike | None = None
) -> pd.DataFrame:
    """Held-out sensitivity, specificity, PPV and NPV at thresholds chosen on training data.

    Each fold's threshold (column `threshold`) was chosen on cross-fitted predictions of that
    fold's training patients; a patient is called positive when its mean margin p - threshold
    over repeats is >= 0.
    """
    if "threshold" not in oof.columns:
        raise ValueError("OOF table has no 'threshold' column (binary task only)")
    pos = prob_columns(oof)[1]
    margin = oof.assign(_margin=oof[pos] - oof["threshold"]).groupby("patient_id").agg(
        y_true=("y_true", "first"), margin=("_margin", "mean"), threshold=("threshold", "mean"))
    m = margin["margin"].to_numpy()
    table = bootstrap_metrics(margin["y_true"].to_numpy(), np.c_[-m, m], class_names_from(oof), n_boot=n_boot,
                              seed=seed, threshold=0.0, ci=ci, groups=_patient_groups(oof, margin.index, groups))
    table = table[table["metric"].isin(["sensitivity", "specificity", "ppv", "npv", "balanced_accuracy"])]
    return table.assign(mean_threshold=float(margin["threshold"].mean())).reset_index(drop=True)
