"""Comparing models on the same patients, and reporting the comparison honestly.

Paired bootstrap differences and DeLong's test compare two scores on identical patients;
``holm`` adjusts a family of p-values; ``format_p`` writes a p-value without claiming more
resolution than the bootstrap has; ``direction`` is the one rule that reads a comparison (its
CI, or its Holm-adjusted p in a family, with ties below ``TIE_TOLERANCE``) and ``verdict`` says it
in a sentence; ``likelihood_ratio_test`` asks whether a score adds information to a base model (age).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import stats
from sklearn.linear_model import LogisticRegression

from .metrics import as_binary, as_labels, as_proba, average_precision, macro, rank_auc
from .resampling import bootstrap_indices, percentile_ci

__all__ = [
    "TIE_TOLERANCE",
    "bootstrap_p_value",
    "delong_test",
    "direction",
    "format_p",
    "holm",
    "likelihood_ratio_test",
    "paired_bootstrap_difference",
    "paired_mae_difference",
    "verdict",
]

_ZERO_VARIANCE = 1e-15

TIE_TOLERANCE = 1e-6
"""Two models whose metrics differ by less than this (in absolute value) are tied, whatever the test says:
differences of AUROCs on the same patients move in steps of 1 / (positives x negatives), about 1e-4
here, and an MAE difference of 1e-8 T-score units is rounding, not a model being better."""

_PAIRED_METRICS: dict[str, tuple[Callable, bool]] = {
    "auroc": (rank_auc, False),
    "auprc": (average_precision, False),
    "macro_auroc": (macro(rank_auc), True),
    "macro_auprc": (macro(average_precision), True),
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
        y, a = as_proba(y_true, a)
        _, b = as_proba(y, b)
        return kernel, y, a, b
    if a.ndim == 2 and a.shape[1] == 2:
        a, b = a[:, 1], b[:, 1]
    y, a = as_binary(y_true, a)
    _, b = as_binary(y, b)
    return kernel, y, a, b


def paired_bootstrap_difference(
    y_true: ArrayLike,
    score_a: ArrayLike,
    score_b: ArrayLike,
    metric: str = "auroc",
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    groups: ArrayLike | None = None,
) -> dict[str, float | str]:
    """Difference a - b on the same resampled patients (or groups), with CI and p-value.

    Resampling both models on identical patients keeps their correlation, which
    is what makes the difference far tighter than two separate CIs suggest.
    ``metric`` is ``auroc``/``auprc`` (1-D scores, or (n, 2) probabilities) or
    ``macro_auroc``/``macro_auprc`` ((n, k) probabilities). The two-sided p-value is
    `bootstrap_p_value` of the resampled differences: never 0, at least 2 / (n_boot + 1).
    """
    kernel, y, a, b = _paired_inputs(y_true, score_a, score_b, metric)
    value_a = float(kernel(y[None], a[None])[0])
    value_b = float(kernel(y[None], b[None])[0])
    batches = bootstrap_indices(y, n_boot, seed, groups, cells_per_row=a.size)
    diffs = np.concatenate([kernel(y[i], a[i]) - kernel(y[i], b[i]) for i in batches])
    diffs = diffs[np.isfinite(diffs)]
    low, high = percentile_ci(diffs, ci)
    return {
        "metric": metric,
        "value_a": value_a,
        "value_b": value_b,
        "diff": value_a - value_b,
        "ci_low": low,
        "ci_high": high,
        "p_value": bootstrap_p_value(diffs),
    }


def bootstrap_p_value(diffs: ArrayLike) -> float:
    """Two-sided p-value of "no difference" from resampled differences: 2 (1 + b) / (1 + B), capped at 1,
    where b counts the resamples on the far side of 0 (the smaller of #(d <= 0) and #(d >= 0)) among B.

    The +1s count the observed sample as one of the resamples (Davison & Hinkley 1997, eq. 4.11;
    Phipson & Smyth 2010), so a p-value is never 0: with no resample crossing zero it is 2 / (B + 1),
    the resolution B resamples have. NaN without resamples."""
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    if not d.size:
        return float("nan")
    far = min(int(np.sum(d <= 0)), int(np.sum(d >= 0)))
    return float(min(1.0, 2 * (1 + far) / (1 + d.size)))


def paired_mae_difference(
    y_true: ArrayLike,
    pred_a: ArrayLike,
    pred_b: ArrayLike,
    n_boot: int = 2000,
    seed: int = 0,
    ci: float = 0.95,
    groups: ArrayLike | None = None,
) -> dict[str, float | str]:
    """MAE(a) - MAE(b) of two predictions of a continuous target on the same resampled patients
    (or groups; unstratified), with CI and two-sided p-value as in :func:`paired_bootstrap_difference`.
    Negative: a errs less."""
    y = np.asarray(y_true, dtype=float)
    a = np.asarray(pred_a, dtype=float)
    b = np.asarray(pred_b, dtype=float)
    if not (y.ndim == 1 and a.shape == y.shape and b.shape == y.shape) or y.size < 2:
        raise ValueError("y_true, pred_a and pred_b must be 1-D of one length (>= 2)")
    if not np.all(np.isfinite(np.c_[y, a, b])):
        raise ValueError("non-finite values in y_true or the predictions")
    err_a, err_b = np.abs(y - a), np.abs(y - b)
    diffs = np.concatenate([err_a[i].mean(axis=1) - err_b[i].mean(axis=1)
                            for i in bootstrap_indices(y, n_boot, seed, groups, stratify=False)])
    low, high = percentile_ci(diffs, ci)
    return {"metric": "mae", "value_a": float(err_a.mean()), "value_b": float(err_b.mean()),
            "diff": float(err_a.mean() - err_b.mean()), "ci_low": low, "ci_high": high,
            "p_value": bootstrap_p_value(diffs)}


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
    and +/-inf (p = 0) when they differ. It treats patients as independent; with
    duplicate groups prefer :func:`paired_bootstrap_difference` with ``groups``.
    """
    y, a = as_binary(y_true, score_a)
    _, b = as_binary(y, score_b)
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


def holm(p_values: ArrayLike) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error), in the input order.

    The i-th smallest of m p-values is multiplied by m - i + 1, then made monotone
    (never smaller than the adjusted value before it) and capped at 1. NaN entries stay
    NaN and do not count towards m.
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ValueError("p_values must be 1-D")
    if np.any((p < 0) | (p > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    out = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    scaled = p[order] * (m - np.arange(m))
    out[order] = np.minimum(1.0, np.maximum.accumulate(scaled))
    return out


def format_p(p: float | None, n_boot: int | None = None) -> str:
    """A p-value to 3 significant digits; a resampling p of 0 as "< 1/n_boot".

    A bootstrap or permutation p-value of 0 only says that no resample crossed the
    null, so it is written as a bound (``format_p(0, 1000) == "< 0.001"``), not as 0.
    For the two-sided :func:`paired_bootstrap_difference` p the bound is 2/n_boot: pass
    ``n_boot // 2`` there.
    """
    if p is None or np.isnan(p):
        return "n/a"
    if not 0 <= p <= 1:
        raise ValueError(f"p-value {p} outside [0, 1]")
    if p == 0 and n_boot is not None:
        if n_boot < 1:
            raise ValueError("n_boot must be >= 1")
        return f"< {1 / n_boot:.3g}"
    return f"{p:.3g}"


def direction(diff: float, low: float, high: float, p_adjusted: float | None = None, alpha: float = 0.05,
              lower_is_better: bool = False, tolerance: float = TIE_TOLERANCE) -> int:
    """+1 when A is better than B, -1 when worse, 0 when the test detects no difference or the two tie.

    The one rule every table and sentence reads: a member of a Holm-adjusted family by its adjusted
    p-value at ``alpha``; any other comparison (the primary, tested alone) by whether its 95% CI
    excludes 0; and a difference smaller than ``tolerance`` in absolute value is a tie, whatever the
    test says (a CI of [-3e-8, -1e-8] excludes 0 but states no difference between models).
    ``lower_is_better`` for errors (MAE)."""
    if not np.isfinite(diff) or abs(diff) < tolerance:
        return 0
    if p_adjusted is not None and np.isfinite(p_adjusted):
        differs = p_adjusted < alpha
    else:
        differs = low > 0 or high < 0
    if not differs:
        return 0
    sign = 1 if diff > 0 else -1
    return -sign if lower_is_better else sign


def verdict(diff: float, low: float, high: float, a: str, b: str, p_adjusted: float | None = None,
            alpha: float = 0.05, lower_is_better: bool = False) -> str:
    """A sentence that follows from the test (`direction`): no claim of a difference when the test finds
    none, and a tie said as one. Without ``p_adjusted`` the 95% CI decides (a primary comparison, tested
    alone); with it (a member of a Holm-adjusted family) the adjusted p-value at ``alpha`` decides, so the
    words never contradict the family's inference. ``lower_is_better`` for errors (MAE)."""
    if p_adjusted is not None and np.isfinite(p_adjusted):
        why = f"Holm-adjusted p = {format_p(p_adjusted)}"
    else:
        why = "CI of the difference " + ("excludes 0" if low > 0 or high < 0 else "includes 0")
    if np.isfinite(diff) and abs(diff) < TIE_TOLERANCE:
        return f"{a} and {b} tie (|difference| {abs(diff):.2g}, below the tie tolerance {TIE_TOLERANCE:g}; {why})"
    how = direction(diff, low, high, p_adjusted, alpha, lower_is_better)
    if how == 0:
        return f"no detectable difference between {a} and {b} ({why})"
    return f"{a} is {'better' if how > 0 else 'worse'} than {b} ({why})"


def _columns(x: ArrayLike, n: int, name: str) -> np.ndarray:
    arr = np.asarray(x, dtype=float)
    arr = arr.reshape(n, -1) if arr.ndim == 1 else arr
    if arr.ndim != 2 or arr.shape[0] != n:
        raise ValueError(f"{name} must have {n} rows")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains non-finite values")
    return arr


def _log_likelihood(X: np.ndarray, y: np.ndarray) -> float:
    """Maximised log-likelihood of a (practically unpenalised) logistic regression of y on X."""
    q = LogisticRegression(C=1e6, max_iter=5000).fit(X, y).predict_proba(X)[:, 1]
    q = np.clip(q, 1e-12, 1 - 1e-12)
    return float(np.sum(y * np.log(q) + (1 - y) * np.log(1 - q)))


def likelihood_ratio_test(y: ArrayLike, base_X: ArrayLike, extra_X: ArrayLike) -> dict[str, float]:
    """Does ``extra_X`` add to ``base_X`` in a logistic model of binary ``y``?

    Statistic 2 * (logL[base + extra] - logL[base]), floored at 0, against chi-squared
    with one degree of freedom per extra column. In-sample and nominal: no correction
    for multiple features. Standardise the columns first (the fit carries a negligible
    ridge penalty, C = 1e6, as in the ablation tables).
    """
    labels = as_labels(y, n_classes=2)
    base = _columns(base_X, len(labels), "base_X")
    extra = _columns(extra_X, len(labels), "extra_X")
    statistic = max(0.0, 2 * (_log_likelihood(np.hstack([base, extra]), labels) - _log_likelihood(base, labels)))
    df = extra.shape[1]
    return {"statistic": statistic, "df": float(df), "p_value": float(stats.chi2.sf(statistic, df))}


def chi_square_p(a: ArrayLike, b: ArrayLike) -> float:
    """p-value of the chi-square test of independence of two categorical variables."""
    return float(stats.chi2_contingency(pd.crosstab(np.asarray(a), np.asarray(b)))[1])
