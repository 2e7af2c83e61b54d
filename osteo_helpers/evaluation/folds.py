"""Fold-level discrimination: what each fitted model did on its own test fold.

The headline AUROC pools every patient's prediction averaged over the repeats, so it scores an
ensemble of the repeats' models, and pooling across folds mixes models whose scores sit on
different scales. Both can move an AUROC away from what any one fitted model achieved (a
model with no signal pools below 0.5 when its folds shift differently). The fold-level numbers
say what each fit did: the AUROC of every (seed, fold) on its own test patients, their mean and
standard deviation, and the pooled AUROC of each repeat on its own. For two arms on the same
folds, the fold-level difference and how many folds favour each arm.

The fold mean has no interval here: folds share most of their training patients, so their
spread understates the variance of a new fit, and a t-interval over folds would mislead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .comparisons import TIE_TOLERANCE as TIE
from .metrics import macro, prob_columns, rank_auc

__all__ = ["TIE", "discrimination_metric", "fold_aurocs", "fold_summary", "paired_fold_differences"]


def discrimination_metric(oof: pd.DataFrame) -> str:
    """``auroc`` for two classes, ``macro_auroc`` for more."""
    return "auroc" if len(prob_columns(oof)) == 2 else "macro_auroc"


def _auroc(part: pd.DataFrame, cols: list[str]) -> float:
    y = part["y_true"].to_numpy(dtype=int)
    if len(np.unique(y)) < 2:
        return float("nan")
    if len(cols) == 2:
        return float(rank_auc(y[None], part[cols[1]].to_numpy(float)[None])[0])
    if len(np.unique(y)) < len(cols):
        return float("nan")
    return float(macro(rank_auc)(y[None], part[cols].to_numpy(float)[None])[0])


def _check(oof: pd.DataFrame) -> None:
    missing = {"patient_id", "fold", "seed", "y_true"} - set(oof.columns)
    if missing:
        raise ValueError(f"OOF table lacks columns for fold-level metrics: {sorted(missing)}")


def fold_aurocs(oof: pd.DataFrame, subset: set[str] | None = None) -> pd.DataFrame:
    """AUROC (three classes: macro AUROC) of every (seed, fold) on its own test patients:
    ``seed, fold, n_patients, value`` (NaN where a fold lacks a class)."""
    _check(oof)
    part = oof if subset is None else oof[oof["patient_id"].isin(subset)]
    cols = prob_columns(oof)
    rows = [{"seed": int(seed), "fold": int(fold), "n_patients": len(g), "value": _auroc(g, cols)}
            for (seed, fold), g in part.groupby(["seed", "fold"], sort=True)]
    return pd.DataFrame(rows, columns=["seed", "fold", "n_patients", "value"])


def fold_summary(oof: pd.DataFrame, subset: set[str] | None = None) -> pd.DataFrame:
    """``<metric>_fold_mean``, ``<metric>_fold_sd`` (over the folds where it is defined) and
    ``<metric>_seed<s>`` (the pooled AUROC of repeat ``s`` alone) as rows ``metric, value``,
    with ``ci_low``/``ci_high`` left empty (see the module note)."""
    metric = discrimination_metric(oof)
    per_fold = fold_aurocs(oof, subset)["value"].to_numpy(float)
    defined = per_fold[np.isfinite(per_fold)]
    rows = [(f"{metric}_fold_mean", float(defined.mean()) if defined.size else np.nan),
            (f"{metric}_fold_sd", float(defined.std(ddof=1)) if defined.size > 1 else np.nan)]
    part = oof if subset is None else oof[oof["patient_id"].isin(subset)]
    cols = prob_columns(oof)
    rows += [(f"{metric}_seed{int(seed)}", _auroc(g, cols)) for seed, g in part.groupby("seed", sort=True)]
    return pd.DataFrame([(m, v, np.nan, np.nan) for m, v in rows], columns=["metric", "value", "ci_low", "ci_high"])


def paired_fold_differences(oof_a: pd.DataFrame, oof_b: pd.DataFrame, subset: set[str] | None = None
                            ) -> dict[str, float]:
    """Per (seed, fold), AUROC of A minus AUROC of B on the test patients both arms predicted there:
    the mean and SD of the differences, and how many folds favour A, favour B or tie (``TIE``:
    `comparisons.TIE_TOLERANCE`)."""
    _check(oof_a)
    _check(oof_b)
    keys = ["patient_id", "seed", "fold"]
    merged = oof_a.merge(oof_b, on=keys, suffixes=("_a", "_b"))
    if subset is not None:
        merged = merged[merged["patient_id"].isin(subset)]
    if not (merged["y_true_a"] == merged["y_true_b"]).all():
        raise ValueError("the two arms disagree on y_true for the same patients")
    cols_a, cols_b = prob_columns(oof_a), prob_columns(oof_b)
    diffs = []
    for _, g in merged.groupby(["seed", "fold"], sort=True):
        a = _auroc(g.assign(y_true=g["y_true_a"]), [f"{c}_a" for c in cols_a])
        b = _auroc(g.assign(y_true=g["y_true_a"]), [f"{c}_b" for c in cols_b])
        diffs.append(a - b)
    d = np.asarray(diffs, dtype=float)
    d = d[np.isfinite(d)]
    return {"fold_diff_mean": float(d.mean()) if d.size else np.nan,
            "fold_diff_sd": float(d.std(ddof=1)) if d.size > 1 else np.nan,
            "folds_a_better": int((d > TIE).sum()), "folds_b_better": int((d < -TIE).sum()),
            "folds_tied": int((np.abs(d) <= TIE).sum()), "n_folds": int(d.size)}
