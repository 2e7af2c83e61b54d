"""Fold-level truth (evaluation.folds): every fold-averaged and per-repeat AUROC in the results table
is recomputable from the per-fold predictions, and paired fold differences count the folds right."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from osteo_helpers import evaluation


def _oof(seed: int = 0, n: int = 90, classes: int = 2, signal: float = 1.0) -> pd.DataFrame:
    """Two repeats (seeds 42, 43) of three folds, one prediction per patient and repeat."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    parts = []
    for s in (42, 43):
        logits = signal * np.eye(classes)[y] + rng.normal(0, 1, (n, classes))
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        parts.append(pd.DataFrame({"patient_id": [f"P{i}" for i in range(n)],
                                   "fold": rng.permutation(np.arange(n) % 3), "seed": s, "y_true": y,
                                   **{f"prob_c{k}": p[:, k] for k in range(classes)}}))
    return pd.concat(parts, ignore_index=True)


def test_fold_averaged_and_per_repeat_auroc_are_recomputable_from_the_folds():
    oof = _oof()
    table = evaluation.score_arms({"arm": oof}, "binary", 50, 0).set_index("metric")["value"]
    per_fold = [roc_auc_score(g["y_true"], g["prob_c1"]) for _, g in oof.groupby(["seed", "fold"])]
    assert abs(table["auroc_fold_mean"] - np.mean(per_fold)) < 1e-12
    assert abs(table["auroc_fold_sd"] - np.std(per_fold, ddof=1)) < 1e-12
    for s in (42, 43):
        part = oof[oof["seed"] == s]
        assert abs(table[f"auroc_seed{s}"] - roc_auc_score(part["y_true"], part["prob_c1"])) < 1e-12
    pooled = oof.groupby("patient_id").agg(y=("y_true", "first"), p=("prob_c1", "mean"))
    assert abs(table["auroc"] - roc_auc_score(pooled["y"], pooled["p"])) < 1e-12


def test_three_class_fold_rows_are_macro_and_read_as_auroc_too():
    oof = _oof(classes=3)
    table = evaluation.score_arms({"arm": oof}, "3class", 50, 0).set_index("metric")["value"]
    probs = ["prob_c0", "prob_c1", "prob_c2"]
    per_fold = [roc_auc_score(g["y_true"], g[probs], multi_class="ovr", average="macro")
                for _, g in oof.groupby(["seed", "fold"])]
    assert abs(table["macro_auroc_fold_mean"] - np.mean(per_fold)) < 1e-12
    assert table["auroc_fold_mean"] == table["macro_auroc_fold_mean"] and "auroc_seed43" in table
    assert "brier_multiclass" in table and "auroc_c0" in table


def test_a_fold_without_both_classes_is_left_out_not_zero():
    oof = _oof()
    oof.loc[(oof["seed"] == 42) & (oof["fold"] == 0), "y_true"] = 1
    folds = evaluation.fold_aurocs(oof)
    assert folds["value"].isna().sum() == 1 and len(folds) == 6
    assert np.isfinite(evaluation.fold_summary(oof).set_index("metric").at["auroc_fold_mean", "value"])


def test_paired_fold_differences_count_the_folds_each_arm_wins():
    a = _oof(signal=2.0)
    b = a.copy()
    b.loc[b["fold"] == 2, ["prob_c0", "prob_c1"]] = 0.5  # no signal in fold 2 of both repeats
    out = evaluation.paired_fold_differences(a, b)
    assert out == {**out, "n_folds": 6, "folds_tied": 4, "folds_a_better": 2, "folds_b_better": 0}
    assert out["fold_diff_mean"] > 0
    flipped = evaluation.paired_fold_differences(b, a)
    assert flipped["folds_b_better"] == 2 and abs(flipped["fold_diff_mean"] + out["fold_diff_mean"]) < 1e-12
    table = evaluation.paired_comparisons({"a": a, "b": b}, [("a", "b")], 100, 0)
    assert table.loc[0, "folds_a_better"] == 2 and table.loc[0, "folds_tied"] == 4
