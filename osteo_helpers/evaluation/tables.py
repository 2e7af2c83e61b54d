"""Tables over many arms: one results table, paired comparisons with Holm, T-score regression.

Every arm's out-of-fold table is scored by the same code, on each patient's mean prediction
over repeats, with CIs from the bootstrap of split groups; pairs are compared on the patients
both arms predicted. Beside each pooled AUROC stand the fold-level numbers (`folds`): the
AUROC of each fitted model on its own test fold, their mean and SD, and each repeat's pooled
AUROC; beside each paired difference, the fold-level difference and how many folds favour
each arm.

The bootstrap holds every fitted model fixed and resamples the test patients, so its CIs leave
out the variance of training (another training sample of this size would give other models).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .bootstrap import oof_metrics, regression_metrics
from .comparisons import delong_test, holm, paired_bootstrap_difference, paired_mae_difference, verdict
from .folds import fold_summary, paired_fold_differences
from .metrics import average_over_repeats, class_names_from, prob_columns
from .resampling import GroupsLike, group_lookup, groups_for_patients

RESULT_COLUMNS = ["model", "task", "metric", "value", "ci_low", "ci_high", "subset", "n_patients"]


def _restrict(oof: pd.DataFrame, subset: set[str] | None) -> pd.DataFrame:
    return oof if subset is None else oof[oof["patient_id"].isin(subset)]


def score_arms(oofs: Mapping[str, pd.DataFrame], task: str, n_boot: int, seed: int,
               groups: GroupsLike | None = None, subset: set[str] | None = None,
               subset_name: str = "all") -> pd.DataFrame:
    """One long table (``RESULT_COLUMNS``) of every arm's metrics with CIs, arms in the order given.

    On a ``subset``, an arm whose patients there hold fewer than two of a class (`too_few`) has no rows.
    Beside the pooled ``auroc`` (each patient's prediction averaged over repeats): ``auroc_fold_mean``
    and ``auroc_fold_sd`` over the fitted folds and ``auroc_seed<s>`` per repeat, without CIs
    (see `folds`). Three-class tables also carry their macro AUROC rows as ``auroc...``, so one
    column reads both tasks.
    """
    rows = []
    for name, oof in oofs.items():
        part = _restrict(oof, subset)
        if part.empty or (subset is not None and too_few(part.drop_duplicates("patient_id")["y_true"],
                                                         class_names_from(part))):
            continue  # a subset without two patients of each class has no AUROC: the page says so
        table = oof_metrics(part, n_boot, seed, groups=groups)
        if {"fold", "seed"} <= set(part.columns):
            table = pd.concat([table, fold_summary(part)], ignore_index=True)
        rows.append(table.assign(model=name, task=task, subset=subset_name, n_patients=part["patient_id"].nunique()))
    if not rows:  # no arm predicted any patient of the subset
        return pd.DataFrame(columns=RESULT_COLUMNS)
    out = pd.concat(rows, ignore_index=True)
    macro = out["metric"].str.startswith("macro_auroc") & ~out["metric"].str.startswith("macro_auroc_")
    macro |= out["metric"].str.match(r"macro_auroc_(fold_mean|fold_sd|seed\d+)$")
    if macro.any():
        out = pd.concat([out, out[macro].assign(metric=out.loc[macro, "metric"].str.removeprefix("macro_"))],
                        ignore_index=True)
    return out[RESULT_COLUMNS]


def aligned(oofs: Mapping[str, pd.DataFrame], a: str, b: str,
            subset: set[str] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Patient IDs, labels and both arms' mean probabilities on the patients both predicted."""
    pa = average_over_repeats(oofs[a]).set_index("patient_id")
    pb = average_over_repeats(oofs[b]).set_index("patient_id")
    common = pa.index[pa.index.isin(pb.index)]
    if subset is not None:
        common = common[common.isin(list(subset))]
    pa, pb = pa.loc[common], pb.loc[common]
    if not np.array_equal(pa["y_true"].to_numpy(), pb["y_true"].to_numpy()):
        raise ValueError(f"arms {a!r} and {b!r} disagree on y_true for the same patients")
    cols = prob_columns(oofs[a])
    return common.to_numpy(), pa["y_true"].to_numpy(), pa[cols].to_numpy(), pb[cols].to_numpy()


def paired_comparisons(oofs: Mapping[str, pd.DataFrame], pairs: Sequence[tuple[str, str]], n_boot: int, seed: int,
                       groups: GroupsLike | None = None, subset: set[str] | None = None,
                       subset_name: str = "all") -> pd.DataFrame:
    """AUROC difference (A - B) per pair: paired group-bootstrap CI and p-value, DeLong when binary,
    and the fold-level difference (``fold_diff_mean``, ``fold_diff_sd``) with the number of folds
    that favour each arm (``folds_a_better``, ``folds_b_better``, ``folds_tied``, ``n_folds``).

    DeLong treats patients as independent; the bootstrap p-value, which resamples split
    groups, is the one used for inference (and for Holm's adjustment).
    """
    rows = []
    for a, b in pairs:
        if a not in oofs or b not in oofs:
            continue
        ids, y, pa, pb = aligned(oofs, a, b, subset)
        binary = pa.shape[1] == 2
        metric = "auroc" if binary else "macro_auroc"
        why = too_few(y, class_names_from(oofs[a]))
        if why is not None:
            rows.append({"model_a": a, "model_b": b, "metric": metric, "value_a": np.nan, "value_b": np.nan,
                         "diff": np.nan, "ci_low": np.nan, "ci_high": np.nan, "p_bootstrap": np.nan,
                         "p_delong": np.nan, "conclusion": f"not estimable: the patients both arms predicted are {why}",
                         "n_patients": len(y), "subset": subset_name, "estimable": False})
            continue
        patient_groups = None if groups is None else groups_for_patients(ids, group_lookup(groups, ids))
        boot = paired_bootstrap_difference(y, pa[:, 1] if binary else pa, pb[:, 1] if binary else pb,
                                           metric=metric, n_boot=n_boot, seed=seed, groups=patient_groups)
        rows.append({"model_a": a, "model_b": b, "metric": metric, "value_a": boot["value_a"],
                     "value_b": boot["value_b"], "diff": boot["diff"], "ci_low": boot["ci_low"],
                     "ci_high": boot["ci_high"], "p_bootstrap": boot["p_value"],
                     "p_delong": delong_test(y, pa[:, 1], pb[:, 1])["p_value"] if binary else np.nan,
                     "conclusion": verdict(boot["diff"], boot["ci_low"], boot["ci_high"], a, b),
                     "n_patients": len(y), "subset": subset_name,
                     **paired_fold_differences(oofs[a], oofs[b], subset)})
    return pd.DataFrame(rows)


#: how a class is named in a sentence
CLASS_WORDS = {"low_bmd": "low-BMD"}


def too_few(y: np.ndarray, classes: Sequence[str]) -> str | None:
    """Why an AUROC (or a difference of two) cannot be estimated on patients with labels ``y`` (indices of
    ``classes``): fewer than two patients of a class, said with every class's count ("1 normal and 3 low-BMD
    patients (at least 2 of each class are needed)"); None when it can."""
    counts = np.bincount(np.asarray(y, dtype=int), minlength=len(classes))
    if counts.min() >= 2:
        return None
    words = [f"{n} {CLASS_WORDS.get(c, c)}" for c, n in zip(classes, counts, strict=True)]
    return f"{', '.join(words[:-1])} and {words[-1]} patients (at least 2 of each class are needed)"


def with_holm(comparisons: pd.DataFrame, family: pd.Series) -> pd.DataFrame:
    """Add ``p_holm``: Holm's adjustment of ``p_bootstrap`` over the rows where ``family`` is true
    (the declared secondary family), whose ``conclusion`` then follows the adjusted p-value, and
    ``holm_tests``, the number of tests adjusted together (so a reader sees which family a p belongs
    to); other rows keep their raw p-value and their own test's words."""
    out = comparisons.copy()
    out["p_holm"] = out["p_bootstrap"]
    mask = family.to_numpy(dtype=bool) & out["p_bootstrap"].notna().to_numpy()  # a row not estimable is no test
    out["holm_tests"] = np.where(mask, int(mask.sum()), 0)
    if mask.any():
        out.loc[mask, "p_holm"] = holm(out.loc[mask, "p_bootstrap"].to_numpy())
        out.loc[mask, "conclusion"] = [verdict(r.diff, r.ci_low, r.ci_high, r.model_a, r.model_b, r.p_holm)
                                       for r in out.loc[mask].itertuples()]
    return out


def _per_patient(pred: pd.DataFrame) -> pd.DataFrame:
    """One row per patient of a continuous-target OOF table: the measured value, the mean prediction
    over repeats, the no-information prediction (the training fold's mean of the target, from the
    other patients of the same repeat) and the share of 95% predictive intervals holding the value."""
    n_seed = pred.groupby("seed")["y_true"].transform("size")
    sum_seed = pred.groupby("seed")["y_true"].transform("sum")
    n_fold = pred.groupby(["seed", "fold"])["y_true"].transform("size")
    sum_fold = pred.groupby(["seed", "fold"])["y_true"].transform("sum")
    half = 1.959963984540054 * pred["pred_sd"] if "pred_sd" in pred else np.nan
    table = pred.assign(baseline=(sum_seed - sum_fold) / (n_seed - n_fold),
                        covered=((pred["y_true"] - pred["pred_mean"]).abs() <= half).astype(float))
    return table.groupby("patient_id").agg(y_true=("y_true", "first"), pred=("pred_mean", "mean"),
                                           baseline=("baseline", "mean"), covered=("covered", "mean"))


def tscore_regression(predictions: Mapping[str, pd.DataFrame], n_boot: int, seed: int,
                      groups: GroupsLike | None = None, strata: pd.Series | None = None) -> pd.DataFrame:
    """Each continuous-target arm's predicted mean (per patient, averaged over repeats) against the
    measured value: MAE, Pearson r, R^2, calibration, the no-information MAE and, where the table
    has ``pred_sd``, the coverage of the 95% predictive intervals (per class with ``strata``,
    patient_id -> class)."""
    rows = []
    for name, pred in predictions.items():
        per_patient = _per_patient(pred)
        patient_groups = None if groups is None else groups_for_patients(
            per_patient.index, group_lookup(groups, per_patient.index))
        table = regression_metrics(
            per_patient["y_true"], per_patient["pred"], n_boot, seed, groups=patient_groups,
            baseline=per_patient["baseline"], covered=per_patient["covered"] if "pred_sd" in pred else None,
            strata=None if strata is None else strata.reindex(per_patient.index).to_numpy())
        rows.append(table.assign(model=name, task="tscore", subset="all", n_patients=len(per_patient)))
    return pd.concat(rows, ignore_index=True)[RESULT_COLUMNS] if rows else pd.DataFrame(columns=RESULT_COLUMNS)


def paired_mae(predictions: Mapping[str, pd.DataFrame], pairs: Sequence[tuple[str, str]], n_boot: int, seed: int,
               groups: GroupsLike | None = None) -> pd.DataFrame:
    """MAE(A) - MAE(B) of continuous-target arms on the patients both predicted (paired bootstrap of
    split groups), in the columns of :func:`paired_comparisons` (negative: A errs less)."""
    rows = []
    for a, b in pairs:
        if a not in predictions or b not in predictions:
            continue
        pa, pb = _per_patient(predictions[a]), _per_patient(predictions[b])
        common = pa.index[pa.index.isin(pb.index)]
        y = pa.loc[common, "y_true"].to_numpy()
        patient_groups = None if groups is None else groups_for_patients(common, group_lookup(groups, common))
        boot = paired_mae_difference(y, pa.loc[common, "pred"], pb.loc[common, "pred"], n_boot, seed,
                                     groups=patient_groups)
        rows.append({"model_a": a, "model_b": b, "metric": "mae", "value_a": boot["value_a"],
                     "value_b": boot["value_b"], "diff": boot["diff"], "ci_low": boot["ci_low"],
                     "ci_high": boot["ci_high"], "p_bootstrap": boot["p_value"], "p_delong": np.nan,
                     "conclusion": verdict(boot["diff"], boot["ci_low"], boot["ci_high"], a, b, lower_is_better=True),
                     "n_patients": len(y), "subset": "all"})
    return pd.DataFrame(rows)
