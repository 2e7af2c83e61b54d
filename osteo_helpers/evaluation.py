"""Evaluation of out-of-fold predictions: metrics, bootstrap CIs, paired tests.

Everything here works on plain arrays or on the out-of-fold (OOF) prediction
table, so it can be reused by training code, notebooks and the report without
importing the rest of the package.

The metric kernels are written for a batch of bootstrap resamples at once
(arrays of shape ``(n_resamples, n_patients[, n_classes])``); point estimates
are the same kernels applied to a batch of one, so a point value and its
confidence interval can never disagree on a definition.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats

PROB_PREFIX = "prob_"

_BATCH_CELLS = 2_000_000
"""Upper bound on resamples x patients x classes held in memory at once."""

_ZERO_VARIANCE = 1e-15

__all__ = [
    "PROB_PREFIX",
    "apply_threshold",
    "average_over_repeats",
    "binary_point_metrics",
    "bootstrap_confusion",
    "bootstrap_metrics",
    "class_names_from",
    "confusion",
    "delong_test",
    "multiclass_point_metrics",
    "oof_metrics",
    "operating_point",
    "paired_bootstrap_difference",
    "prob_columns",
    "regression_metrics",
    "threshold_for_sensitivity",
    "who_class_from_tscore",
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


def _as_labels(y_true: ArrayLike, n_classes: int | None = None) -> np.ndarray:
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


def _as_scores(scores: ArrayLike, n: int, name: str = "scores") -> np.ndarray:
    s = np.asarray(scores, dtype=float)
    if s.shape[0] != n:
        raise ValueError(f"{name} has {s.shape[0]} rows but y_true has {n}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} contains non-finite values")
    return s


def _as_binary(y_true: ArrayLike, p_pos: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    y = _as_labels(y_true, n_classes=2)
    s = _as_scores(p_pos, len(y), "p_pos")
    if s.ndim != 1:
        raise ValueError("p_pos must be 1-D (probability of the positive class)")
    return y, s


def _as_proba(
    y_true: ArrayLike, proba: ArrayLike, names: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(proba, dtype=float)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError("proba must have shape (n, k) with k >= 2")
    if names is not None and len(names) != p.shape[1]:
        raise ValueError(f"{len(names)} class names for {p.shape[1]} probability columns")
    y = _as_labels(y_true, n_classes=p.shape[1])
    return y, _as_scores(p, len(y), "proba")


# --------------------------------------------------------------------------
# Batched metric kernels: y (B, n), scores (B, n) or (B, n, k)
# --------------------------------------------------------------------------


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """Ratio that is nan (silently) where the denominator is zero."""
    num = np.asarray(num, dtype=float)
    den = np.asarray(den, dtype=float)
    out = np.full(np.broadcast(num, den).shape, np.nan)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _rank_auc(y: np.ndarray, s: np.ndarray) -> np.ndarray:
    """AUROC per row via the Mann-Whitney U statistic (ties count one half)."""
    pos = y.astype(bool)
    n1 = pos.sum(axis=1).astype(float)
    n0 = pos.shape[1] - n1
    ranks = stats.rankdata(s, axis=1)
    u = np.where(pos, ranks, 0.0).sum(axis=1) - n1 * (n1 + 1) / 2
    return _safe_div(u, n1 * n0)


def _average_precision(y: np.ndarray, s: np.ndarray) -> np.ndarray:
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
    return _safe_div((y_sorted * prec_at_block).sum(axis=1), y_sorted.sum(axis=1))


def _batched_confusion(y: np.ndarray, pred: np.ndarray, k: int) -> np.ndarray:
    """Confusion matrices of shape (B, k, k), rows = true class."""
    b = y.shape[0]
    flat = (np.arange(b)[:, None] * k * k + y * k + pred).ravel()
    return np.bincount(flat, minlength=b * k * k).reshape(b, k, k)


def _balanced_accuracy(recall: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Mean recall over the classes present, as sklearn defines it."""
    present = support > 0
    return _safe_div(np.where(present, recall, 0.0).sum(axis=1), present.sum(axis=1))


def _binary_table(y: np.ndarray, s: np.ndarray, threshold: float) -> dict[str, np.ndarray]:
    pred = (s >= threshold).astype(int)
    cm = _batched_confusion(y, pred, 2)
    tn, fp, fn, tp = (cm[:, i, j].astype(float) for i, j in [(0, 0), (0, 1), (1, 0), (1, 1)])
    sens = _safe_div(tp, tp + fn)
    spec = _safe_div(tn, tn + fp)
    recall = np.stack([spec, sens], axis=1)
    return {
        "auroc": _rank_auc(y, s),
        "auprc": _average_precision(y, s),
        "sensitivity": sens,
        "specificity": spec,
        "accuracy": (tp + tn) / y.shape[1],
        "balanced_accuracy": _balanced_accuracy(recall, cm.sum(axis=2)),
        "ppv": _safe_div(tp, tp + fp),
        "npv": _safe_div(tn, tn + fn),
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
    }


def _per_class(y: np.ndarray, p: np.ndarray, kernel: Callable) -> np.ndarray:
    """One-vs-rest kernel per class, shape (B, k)."""
    return np.stack([kernel(y == c, p[:, :, c]) for c in range(p.shape[2])], axis=1)


def _multiclass_table(y: np.ndarray, p: np.ndarray, names: Sequence[str]) -> dict[str, np.ndarray]:
    k = p.shape[2]
    n = y.shape[1]
    cm = _batched_confusion(y, p.argmax(axis=2), k)
    support = cm.sum(axis=2)
    hits = np.diagonal(cm, axis1=1, axis2=2)
    false_pos = cm.sum(axis=1) - hits
    true_neg = n - support - false_pos
    sens = _safe_div(hits, support)
    spec = _safe_div(true_neg, true_neg + false_pos)
    aurocs = _per_class(y, p, _rank_auc)
    table = {
        "accuracy": hits.sum(axis=1) / n,
        "balanced_accuracy": _balanced_accuracy(sens, support),
        "macro_auroc": aurocs.mean(axis=1),
        "macro_auprc": _per_class(y, p, _average_precision).mean(axis=1),
    }
    for c, name in enumerate(names):
        table[f"auroc_{name}"] = aurocs[:, c]
        table[f"sensitivity_{name}"] = sens[:, c]
        table[f"specificity_{name}"] = spec[:, c]
    return table


def _as_floats(table: dict[str, np.ndarray]) -> dict[str, float]:
    return {key: float(val[0]) for key, val in table.items()}


# --------------------------------------------------------------------------
# Point metrics
# --------------------------------------------------------------------------


def binary_point_metrics(
    y_true: ArrayLike, p_pos: ArrayLike, threshold: float = 0.5
) -> dict[str, float]:
    """Discrimination and thresholded metrics; nan where a metric is undefined."""
    y, s = _as_binary(y_true, p_pos)
    return _as_floats(_binary_table(y[None], s[None], threshold))


def multiclass_point_metrics(
    y_true: ArrayLike, proba: ArrayLike, class_names: Sequence[str]
) -> dict[str, float]:
    """Argmax accuracy plus one-vs-rest AUROC/AUPRC, macro and per class."""
    y, p = _as_proba(y_true, proba, class_names)
    return _as_floats(_multiclass_table(y[None], p[None], class_names))


def confusion(y_true: ArrayLike, y_pred: ArrayLike, n_classes: int) -> np.ndarray:
    """Confusion matrix, rows = true class, columns = predicted class."""
    y = _as_labels(y_true, n_classes)
    pred = _as_labels(y_pred, n_classes)
    if len(pred) != len(y):
        raise ValueError("y_true and y_pred differ in length")
    return _batched_confusion(y[None], pred[None], n_classes)[0]


# --------------------------------------------------------------------------
# Bootstrap machinery
# --------------------------------------------------------------------------


def _batch_rows(n_boot: int, cells_per_row: int) -> Iterator[int]:
    rows = max(1, _BATCH_CELLS // max(1, cells_per_row))
    for start in range(0, n_boot, rows):
        yield min(rows, n_boot - start)


def _stratified_batches(
    y: np.ndarray, n_boot: int, seed: int, cells_per_row: int
) -> Iterator[np.ndarray]:
    """Index arrays (b, n): every resample keeps each class's patient count.

    Resampling within class keeps every class present, so AUROC and per-class
    sensitivity are defined in every resample.
    """
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    rng = np.random.default_rng(seed)
    members = [np.flatnonzero(y == c) for c in np.unique(y)]
    for b in _batch_rows(n_boot, cells_per_row):
        yield np.concatenate(
            [idx[rng.integers(0, len(idx), size=(b, len(idx)))] for idx in members], axis=1
        )


def _plain_batches(n: int, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    rng = np.random.default_rng(seed)
    for b in _batch_rows(n_boot, n):
        yield rng.integers(0, n, size=(b, n))


def _percentile_ci(values: np.ndarray, ci: float) -> tuple[float, float]:
    """Percentile interval over the resamples where the metric is defined."""
    if not 0 < ci < 1:
        raise ValueError("ci must lie strictly between 0 and 1")
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.nan, np.nan
    tail = 100 * (1 - ci) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def _collect(batches: Iterator[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    for table in batches:
        for key, val in table.items():
            parts.setdefault(key, []).append(val)
    return {key: np.concatenate(vals) for key, vals in parts.items()}


def _ci_frame(point: dict[str, float], boot: dict[str, np.ndarray], ci: float) -> pd.DataFrame:
    rows = [(key, value, *_percentile_ci(boot[key], ci)) for key, value in point.items()]
    return pd.DataFrame(rows, columns=["metric", "value", "ci_low", "ci_high"])


def bootstrap_metrics(
    y_true: ArrayLike,
    proba: ArrayLike,
    class_names: Sequence[str],
    n_boot: int = 1000,
    seed: int = 0,
    threshold: float = 0.5,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Point metrics with percentile CIs from a class-stratified patient bootstrap.

    Binary when ``proba`` has two columns (positive class = column 1, cut at
    ``threshold``); otherwise multiclass with argmax predictions.
    """
    y, p = _as_proba(y_true, proba, class_names)
    if p.shape[1] == 2:

        def table(yy: np.ndarray, pp: np.ndarray) -> dict[str, np.ndarray]:
            return _binary_table(yy, pp[:, :, 1], threshold)

    else:

        def table(yy: np.ndarray, pp: np.ndarray) -> dict[str, np.ndarray]:
            return _multiclass_table(yy, pp, class_names)

    point = _as_floats(table(y[None], p[None]))
    batches = _stratified_batches(y, n_boot, seed, p.size)
    boot = _collect(table(y[idx], p[idx]) for idx in batches)
    return _ci_frame(point, boot, ci)


def bootstrap_confusion(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    n_classes: int,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """Confusion counts with CIs, long format (true, pred, count, ci_low, ci_high).

    Resampling is stratified by true class, so row totals are fixed and the
    CIs describe how patients of a class split across predictions.
    """
    y = _as_labels(y_true, n_classes)
    pred = _as_labels(y_pred, n_classes)
    if len(pred) != len(y):
        raise ValueError("y_true and y_pred differ in length")
    point = confusion(y, pred, n_classes)
    batches = _stratified_batches(y, n_boot, seed, len(y))
    boot = np.concatenate([_batched_confusion(y[i], pred[i], n_classes) for i in batches])
    rows = [
        (t, q, int(point[t, q]), *_percentile_ci(boot[:, t, q].astype(float), ci))
        for t in range(n_classes)
        for q in range(n_classes)
    ]
    return pd.DataFrame(rows, columns=["true", "pred", "count", "ci_low", "ci_high"])


# --------------------------------------------------------------------------
# Paired comparisons
# --------------------------------------------------------------------------


def _macro(kernel: Callable) -> Callable:
    def macro(y: np.ndarray, p: np.ndarray) -> np.ndarray:
        return _per_class(y, p, kernel).mean(axis=1)

    return macro


_PAIRED_METRICS: dict[str, tuple[Callable, bool]] = {
    "auroc": (_rank_auc, False),
    "auprc": (_average_precision, False),
    "macro_auroc": (_macro(_rank_auc), True),
    "macro_auprc": (_macro(_average_precision), True),
}
"""name -> (batched kernel, whether it takes (n, k) probabilities)."""


def _paired_inputs(
    y_true: ArrayLike, score_a: ArrayLike, score_b: ArrayLike, metric: str
) -> tuple[Callable, np.ndarray, np.ndarray, np.ndarray]:
    if metric not in _PAIRED_METRICS:
        raise ValueError(f"metric must be one of {sorted(_PAIRED_METRICS)}, got {metric!r}")
    kernel, wants_matrix = _PAIRED_METRICS[metric]
    a = np.asarray(score_a, dtype=float)
    b = np.asarray(score_b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"score_a {a.shape} and score_b {b.shape} differ in shape")
    if wants_matrix:
        y, a = _as_proba(y_true, a)
        _, b = _as_proba(y, b)
        return kernel, y, a, b
    if a.ndim == 2 and a.shape[1] == 2:
        a, b = a[:, 1], b[:, 1]
    y, a = _as_binary(y_true, a)
    _, b = _as_binary(y, b)
    return kernel, y, a, b


def paired_bootstrap_difference(
    y_true: ArrayLike,
    score_a: ArrayLike,
    score_b: ArrayLike,
    metric: str = "auroc",
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
) -> dict[str, float | str]:
    """Difference a - b on the same resampled patients, with CI and p-value.

    Resampling both models on identical patients keeps their correlation, which
    is what makes the difference far tighter than two separate CIs suggest.
    ``metric`` is ``auroc``/``auprc`` (1-D scores, or (n, 2) probabilities) or
    ``macro_auroc``/``macro_auprc`` ((n, k) probabilities). The p-value cannot
    resolve below about ``2 / n_boot``; a reported 0 means "smaller than that".
    """
    kernel, y, a, b = _paired_inputs(y_true, score_a, score_b, metric)
    value_a = float(kernel(y[None], a[None])[0])
    value_b = float(kernel(y[None], b[None])[0])
    batches = _stratified_batches(y, n_boot, seed, a.size)
    diffs = np.concatenate([kernel(y[i], a[i]) - kernel(y[i], b[i]) for i in batches])
    diffs = diffs[np.isfinite(diffs)]
    low, high = _percentile_ci(diffs, ci)
    if diffs.size:
        p_value = min(1.0, 2 * min(np.mean(diffs <= 0), np.mean(diffs >= 0)))
    else:
        p_value = np.nan
    return {
        "metric": metric,
        "value_a": value_a,
        "value_b": value_b,
        "diff": value_a - value_b,
        "ci_low": low,
        "ci_high": high,
        "p_value": float(p_value),
    }


def _delong_covariance(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their covariance for scores (m, n) by fast DeLong (Sun & Xu 2014).

    Midranks within positives, within negatives and overall give the
    structural components V10 (per positive) and V01 (per negative) in
    O(n log n) instead of the O(n_pos * n_neg) pairwise comparison.
    """
    pos = scores[:, y == 1]
    neg = scores[:, y == 0]
    m, n = pos.shape[1], neg.shape[1]
    if m < 2 or n < 2:
        raise ValueError("DeLong needs at least two positives and two negatives")
    tx = stats.rankdata(pos, axis=1)
    ty = stats.rankdata(neg, axis=1)
    tz = stats.rankdata(np.concatenate([pos, neg], axis=1), axis=1)
    aucs = tz[:, :m].sum(axis=1) / (m * n) - (m + 1) / (2 * n)
    v10 = (tz[:, :m] - tx) / n
    v01 = 1 - (tz[:, m:] - ty) / m
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def delong_test(y_true: ArrayLike, score_a: ArrayLike, score_b: ArrayLike) -> dict[str, float]:
    """DeLong test for two correlated AUCs measured on the same patients.

    With zero variance of the difference, z is 0 (p = 1) when the AUCs agree
    and +/-inf (p = 0) when they differ.
    """
    y, a = _as_binary(y_true, score_a)
    _, b = _as_binary(y, score_b)
    aucs, cov = _delong_covariance(y, np.vstack([a, b]))
    diff = float(aucs[0] - aucs[1])
    var = max(0.0, float(cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]))
    se = float(np.sqrt(var))
    if var < _ZERO_VARIANCE:
        z = 0.0 if abs(diff) < 1e-12 else float(np.sign(diff) * np.inf)
    else:
        z = diff / se
    return {
        "auc_a": float(aucs[0]),
        "auc_b": float(aucs[1]),
        "diff": diff,
        "se": se,
        "z": z,
        "p_value": float(2 * stats.norm.sf(abs(z))),
    }


# --------------------------------------------------------------------------
# Screening thresholds
# --------------------------------------------------------------------------


def threshold_for_sensitivity(
    y_true: ArrayLike, p_pos: ArrayLike, target: float = 0.90
) -> float:
    """Highest threshold (positive if p >= t) whose sensitivity reaches target.

    Fit on training predictions only, then applied to held-out patients with
    :func:`apply_threshold`, so the reported sensitivity is honest.
    """
    if not 0 < target <= 1:
        raise ValueError("target must lie in (0, 1]")
    y, s = _as_binary(y_true, p_pos)
    positives = np.sort(s[y == 1])[::-1]
    if positives.size == 0:
        raise ValueError("no positive cases to set a sensitivity threshold on")
    needed = int(np.ceil(target * positives.size - 1e-9))
    return float(positives[max(needed, 1) - 1])


def apply_threshold(y_true: ArrayLike, p_pos: ArrayLike, threshold: float) -> dict[str, float]:
    """Screening metrics at a fixed threshold (positive if p >= threshold)."""
    metrics = binary_point_metrics(y_true, p_pos, threshold)
    return {key: metrics[key] for key in ("sensitivity", "specificity", "ppv", "npv")}


# --------------------------------------------------------------------------
# Regression and WHO classes
# --------------------------------------------------------------------------


def _regression_table(y: np.ndarray, pred: np.ndarray) -> dict[str, np.ndarray]:
    dy = y - y.mean(axis=1, keepdims=True)
    dp = pred - pred.mean(axis=1, keepdims=True)
    denom = np.sqrt((dy**2).sum(axis=1) * (dp**2).sum(axis=1))
    return {
        "mae": np.abs(y - pred).mean(axis=1),
        "pearson_r": _safe_div((dy * dp).sum(axis=1), denom),
    }


def regression_metrics(
    y_true: ArrayLike,
    y_pred: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> pd.DataFrame:
    """MAE and Pearson r (e.g. of predicted T-score) with patient-bootstrap CIs."""
    y = np.asarray(y_true, dtype=float)
    if y.ndim != 1 or y.size < 2:
        raise ValueError("y_true must be 1-D with at least two values")
    y = _as_scores(y, len(y), "y_true")
    pred = _as_scores(y_pred, len(y), "y_pred")
    if pred.ndim != 1:
        raise ValueError("y_pred must be 1-D")
    point = _as_floats(_regression_table(y[None], pred[None]))
    boot = _collect(_regression_table(y[i], pred[i]) for i in _plain_batches(len(y), n_boot, seed))
    return _ci_frame(point, boot, ci)


def who_class_from_tscore(t: ArrayLike) -> np.ndarray:
    """WHO category: 0 normal (T >= -1), 1 osteopenia, 2 osteoporosis (T <= -2.5)."""
    t = np.asarray(t, dtype=float)
    if np.isnan(t).any():
        raise ValueError("T-scores contain NaN")
    return np.where(t <= -2.5, 2, np.where(t < -1.0, 1, 0)).astype(int)


# --------------------------------------------------------------------------
# Out-of-fold summaries
# --------------------------------------------------------------------------


def oof_metrics(oof: pd.DataFrame, n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> pd.DataFrame:
    """Metrics with CIs from an OOF table, on each patient's mean prediction over repeats."""
    avg = average_over_repeats(oof)
    return bootstrap_metrics(avg["y_true"].to_numpy(), avg[prob_columns(oof)].to_numpy(), class_names_from(oof),
                             n_boot=n_boot, seed=seed, ci=ci)


def operating_point(oof: pd.DataFrame, n_boot: int = 1000, seed: int = 0, ci: float = 0.95) -> pd.DataFrame:
    """Held-out sensitivity, specificity, PPV and NPV at thresholds chosen on training data.

    Each fold's threshold (column `threshold`) was chosen on that fold's inner validation
    split; a patient is called positive when its mean margin p - threshold over repeats is >= 0.
    """
    if "threshold" not in oof.columns:
        raise ValueError("OOF table has no 'threshold' column (binary task only)")
    pos = prob_columns(oof)[1]
    margin = oof.assign(_margin=oof[pos] - oof["threshold"]).groupby("patient_id").agg(
        y_true=("y_true", "first"), margin=("_margin", "mean"), threshold=("threshold", "mean"))
    m = margin["margin"].to_numpy()
    table = bootstrap_metrics(margin["y_true"].to_numpy(), np.c_[-m, m], class_names_from(oof), n_boot=n_boot,
                              seed=seed, threshold=0.0, ci=ci)
    table = table[table["metric"].isin(["sensitivity", "specificity", "ppv", "npv", "balanced_accuracy"])]
    return table.assign(mean_threshold=float(margin["threshold"].mean())).reset_index(drop=True)
