"""Metric definitions: input checks, batched kernels, point metrics and OOF table helpers.

The kernels take a batch of resamples at once (``y`` of shape ``(B, n)``, scores ``(B, n)``
or ``(B, n, k)``); point estimates are the same kernels applied to a batch of one, so a point
value and its bootstrap interval can never disagree on a definition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

PROB_PREFIX = "prob_"

__all__ = [
    "PROB_PREFIX",
    "apply_threshold",
    "average_over_repeats",
    "binary_point_metrics",
    "class_names_from",
    "confusion",
    "multiclass_point_metrics",
    "prob_columns",
    "threshold_for_sensitivity",
]


# --------------------------------------------------------------------------
# Out-of-fold table helpers
# --------------------------------------------------------------------------


def prob_columns(oof: pd.DataFrame) -> list[str]:
    """Probability columns in table order, so column i is class index i."""
    cols = [c for c in oof.columns if str(c).startswith(PROB_PREFIX)]
    if not cols:
        raise ValueError(f"no columns starting with {PROB_PREFIX!r} in OOF table")
    return cols


def class_names_from(oof: pd.DataFrame) -> list[str]:
    """Class names recovered from the probability column names."""
    return [c[len(PROB_PREFIX) :] for c in prob_columns(oof)]


def average_over_repeats(oof: pd.DataFrame) -> pd.DataFrame:
    """One row per patient, probabilities averaged over CV repeats.

    Repeated CV gives one prediction per patient per seed; metrics must be
    computed per patient, otherwise the bootstrap treats repeats of the same
    patient as independent observations and the CIs come out too narrow.
    """
    missing = {"patient_id", "y_true"} - set(oof.columns)
    if missing:
        raise ValueError(f"OOF table lacks columns: {sorted(missing)}")
    probs = prob_columns(oof)
    if "seed" in oof.columns:
        dup = oof.duplicated(["patient_id", "seed"], keep=False)
        if dup.any():
            bad = oof.loc[dup, "patient_id"].unique().tolist()
            raise ValueError(f"patients predicted more than once within a seed: {bad}")
    grouped = oof.groupby("patient_id", sort=False)
    n_labels = grouped["y_true"].nunique(dropna=False)
    inconsistent = n_labels.index[n_labels > 1].tolist()
    if inconsistent:
        raise ValueError(f"inconsistent y_true across repeats for patients: {inconsistent}")
    out = grouped[probs].mean()
    out.insert(0, "y_true", grouped["y_true"].first().astype(int))
    out["n_repeats"] = grouped.size()
    return out.reset_index()


# --------------------------------------------------------------------------
# Input validation
# --------------------------------------------------------------------------


def as_labels(y_true: ArrayLike, n_classes: int | None = None) -> np.ndarray:
    """Integer class indices in [0, n_classes), or ValueError."""
    y = np.asarray(y_true)
    if y.ndim != 1 or y.size == 0:
        raise ValueError("y_true must be a non-empty 1-D array")
    if not np.all(np.equal(np.mod(y, 1), 0)):
        raise ValueError("y_true must hold integer class indices")
    y = y.astype(int)
    upper = n_classes if n_classes is not None else y.max() + 1
    if y.min() < 0 or y.max() >= upper:
        raise ValueError(f"y_true must lie in [0, {upper})")
    return y


def as_scores(scores: ArrayLike, n: int, name: str = "scores") -> np.ndarray:
    """Finite float scores with one row per patient, or ValueError."""
    s = np.asarray(scores, dtype=float)
    if s.shape[0] != n:
        raise ValueError(f"{name} has {s.shape[0]} rows but y_true has {n}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} contains non-finite values")
    return s


def as_binary(y_true: ArrayLike, p_pos: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """0/1 labels and a 1-D score for the positive class."""
    y = as_labels(y_true, n_classes=2)
    s = as_scores(p_pos, len(y), "p_pos")
    if s.ndim != 1:
        raise ValueError("p_pos must be 1-D (probability of the positive class)")
    return y, s


def as_proba(
    y_true: ArrayLike, proba: ArrayLike, names: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Labels and an (n, k) probability matrix, k >= 2."""
    p = np.asarray(proba, dtype=float)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError("proba must have shape (n, k) with k >= 2")
    if names is not None and len(names) != p.shape[1]:
        raise ValueError(f"{len(names)} class names for {p.shape[1]} probability columns")
    y = as_labels(y_true, n_classes=p.shape[1])
    return y, as_scores(p, len(y), "proba")


# --------------------------------------------------------------------------
# Batched metric kernels: y (B, n), scores (B, n) or (B, n, k)
# --------------------------------------------------------------------------


def safe_div(num: ArrayLike, den: ArrayLike) -> np.ndarray:
    """Ratio that is nan (silently) where the denominator is zero."""
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def rank_auc(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """AUROC per row via the Mann-Whitney U statistic (ties count one half)."""
    pos = y.astype(bool)
    n1 = pos.sum(axis=1).astype(float)
    n0 = pos.shape[1] - n1
    ranks = stats.rankdata(s, axis=1)
    u = np.where(pos, ranks, 0.0).sum(axis=1) - n1 * (n1 + 1) / 2
    return safe_div(u, n1 * n0)


def average_precision(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Average precision per row, identical to sklearn's step-wise definition.

    Each positive contributes the precision reached at the end of its block of
    tied scores, which is what sklearn's sum over distinct thresholds reduces to.
    """
    n = s.shape[1]
    order = np.argsort(-s, axis=1, kind="stable")
    s_sorted = np.take_along_axis(s, order, axis=1)
    y_sorted = np.take_along_axis(y, order, axis=1).astype(float)
    precision = np.cumsum(y_sorted, axis=1) / np.arange(1, n + 1)
    block_end = np.ones_like(s_sorted, dtype=bool)
    block_end[:, :-1] = s_sorted[:, :-1] != s_sorted[:, 1:]
    end_pos = np.where(block_end, np.arange(n), n)
    next_end = np.minimum.accumulate(end_pos[:, ::-1], axis=1)[:, ::-1]
    prec_at_block = np.take_along_axis(precision, next_end, axis=1)
    return safe_div((y_sorted * prec_at_block).sum(axis=1), y_sorted.sum(axis=1))


def batched_confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """Confusion matrices of shape (B, k, k), rows = true class."""
    b = y.shape[0]
    flat = (np.arange(b)[:, None] * k * k + y * k + pred).ravel()
    return np.bincount(flat, minlength=b * k * k).reshape(b, k, k)


def _balanced_accuracy(recall: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Mean recall over the classes present, as sklearn defines it."""
    present = support > 0
    return safe_div(np.where(present, recall, 0.0).sum(axis=1), present.sum(axis=1))


def binary_table(y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    """Discrimination and thresholded metrics (positive if s >= threshold) per row."""
    pred = (s >= threshold).astype(int)
    cm = batched_confusion(y, pred, 2)
    tn, fp, fn, tp = (cm[:, i, j].astype(float) for i, j in [(0, 0), (0, 1), (1, 0), (1, 1)])
    sens = safe_div(tp, tp + fn)
    spec = safe_div(tn, tn + fp)
    recall = np.stack([spec, sens], axis=1)
    return {
        "auroc": rank_auc(y, s),
        "auprc": average_precision(y, s),
        "sensitivity": sens,
        "specificity": spec,
        "accuracy": (tp + tn) / y.shape[1],
        "balanced_accuracy": _balanced_accuracy(recall, cm.sum(axis=2)),
        "ppv": safe_div(tp, tp + fp),
        "npv": safe_div(tn, tn + fn),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def per_class(y: np.ndarray, p: np.ndarray, kernel: Callable) -> np.ndarray:
    """One-vs-rest kernel per class, shape (B, k)."""
    return np.stack([kernel(y == c, p[:, :, c]) for c in range(p.shape[2])], axis=1)


def macro(kernel: Callable) -> Callable:
    """Batched kernel averaging a one-vs-rest ``kernel`` over classes."""

    def macro_kernel(y: np.ndarray, p: np.ndarray) -> np.ndarray:
        return per_class(y, p, kernel).mean(axis=1)

    return macro_kernel


def multiclass_table(y: np.ndarray, p: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    """Argmax accuracy, balanced accuracy and one-vs-rest AUROC/AUPRC per row."""
    k = p.shape[2]
    n = y.shape[1]
    cm = batched_confusion(y, p.argmax(axis=2), k)
    support = cm.sum(axis=2)
    hits = np.diagonal(cm, axis1=1, axis2=2)
    false_pos = cm.sum(axis=1) - hits
    true_neg = n - support - false_pos
    sens = safe_div(hits, support)
    spec = safe_div(true_neg, true_neg + false_pos)
    aurocs = per_class(y, p, rank_auc)
    table = {
        "accuracy": hits.sum(axis=1) / n,
        "balanced_accuracy": _balanced_accuracy(sens, support),
        "macro_auroc": aurocs.mean(axis=1),
        "macro_auprc": per_class(y, p, average_precision).mean(axis=1),
    }
    for c, name in enumerate(names):
        table[f"auroc_{name}"] = aurocs[:, c]
        table[f"sensitivity_{name}"] = sens[:, c]
        table[f"specificity_{name}"] = spec[:, c]
    return table


def regression_table(y: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    """Per row: MAE, Pearson r, out-of-sample R^2 (1 - SSE / SS about the row's mean: 0 for a model
    no better than the mean, negative for a worse one), and calibration of the predicted value:
    ``calibration_intercept`` (calibration-in-the-large, mean of measured - predicted, ideal 0) and
    ``calibration_slope`` (least-squares slope of measured on predicted, ideal 1; below 1 the
    predictions spread too far, above 1 too little)."""
    dy = y - y.mean(axis=1, keepdims=True)
    dp = pred - pred.mean(axis=1, keepdims=True)
    ss_y, ss_p = (dy**2).sum(axis=1), (dp**2).sum(axis=1)
    return {
        "mae": np.abs(y - pred).mean(axis=1),
        "pearson_r": safe_div((dy * dp).sum(axis=1), np.sqrt(ss_y * ss_p)),
        "r2": 1 - safe_div(((y - pred) ** 2).sum(axis=1), ss_y),
        "calibration_intercept": (y - pred).mean(axis=1),
        "calibration_slope": safe_div((dy * dp).sum(axis=1), ss_p),
    }


def as_floats(table: dict[str, np.ndarray]) -> dict[str, float]:
    """First (only) row of a batched table as plain floats."""
    return {key: float(val[0]) for key, val in table.items()}


# --------------------------------------------------------------------------
# Point metrics
# --------------------------------------------------------------------------


def binary_point_metrics(
    y_true: ArrayLike, p_pos: ArrayLike, threshold: float = 0.5
) -> dict[str, float]:
    """Discrimination and thresholded metrics; nan where a metric is undefined."""
    y, s = as_binary(y_true, p_pos)
    return as_floats(binary_table(y[None], s[None], threshold))


def multiclass_point_metrics(
    y_true: ArrayLike, proba: ArrayLike, class_names: Sequence[str]
) -> dict[str, float]:
    """Argmax accuracy plus one-vs-rest AUROC/AUPRC, macro and per class."""
    y, p = as_proba(y_true, proba, class_names)
    return as_floats(multiclass_table(y[None], p[None], class_names))


def confusion(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int) -> np.ndarray:
    """Confusion matrix, rows = true class, columns = predicted class."""
    y = as_labels(y_true, n_classes)
    pred = as_labels(y_pred, n_classes)
    if len(pred) != len(y):
        raise ValueError("y_true and y_pred differ in length")
    return batched_confusion(y[None], pred[None], n_classes)[0]


def threshold_for_sensitivity(
    y_true: ArrayLike, p_pos: ArrayLike, target: float = 0.90
) -> float:
    """Highest threshold (positive if p >= t) whose sensitivity reaches target.

    Fit on training predictions only, then applied to held-out patients with
    :func:`apply_threshold`, so the reported sensitivity is honest.
    """
    if not 0 < target <= 1:
        raise ValueError("target must lie in (0, 1]")
    y, s = as_binary(y_true, p_pos)
    positives = np.sort(s[y == 1])[::-1]
    if positives.size == 0:
        raise ValueError("no positive cases to set a sensitivity threshold on")
    needed = int(np.ceil(target * positives.size - 1e-9))
    return float(positives[max(needed, 1) - 1])


def apply_threshold(y_true: ArrayLike, p_pos: ArrayLike, threshold: float) -> dict[str, float]:
    """Screening metrics at a fixed threshold (positive if p >= threshold)."""
    metrics = binary_point_metrics(y_true, p_pos, threshold)
    return {key: metrics[key] for key in ("sensitivity", "specificity", "ppv", "npv")}
