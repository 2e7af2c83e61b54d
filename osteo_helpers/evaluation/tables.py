"""Tables over many arms: one results table, paired comparisons with Holm, T-score regression.

Every arm's out-of-fold table is scored by the same code, on each patient's mean prediction
over repeats, with CIs from the bootstrap of split groups; pairs are compared on the patients
both arms predicted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from .bootstrap import oof_metrics, regression_metrics
from .comparisons import delong_test, holm, paired_bootstrap_difference, verdict
from .metrics import average_over_repeats, prob_columns
from .resampling import GroupsLike, group_lookup, groups_for_patients

RESULT_COLUMNS = ["model", "task", "metric", "value", "ci_low", "ci_high", "subset", "n_patients"]


def _restrict(oof: pd.DataFrame, subset: set[str] | None) -> pd.DataFrame:
    return oof if subset is None else oof[oof["patient_id"].isin(subset)]


def score_arms(oofs: Mapping[str, pd.DataFrame], task: str, n_boot: int, seed: int,
               groups: GroupsLike | None = None, subset: set[str] | None = None,
               subset_name: str = "all") -> pd.DataFrame:
    """One long table (``RESULT_COLUMNS``) of every arm's metrics with CIs, arms in the order given.

    Three-class tables also carry their macro AUROC as ``auroc``, so one column reads both tasks.
    """
    rows = []
    for name, oof in oofs.items():
        part = _restrict(oof, subset)
        if part.empty:
            continue
        table = oof_metrics(part, n_boot, seed, groups=groups)
        rows.append(table.assign(model=name, task=task, subset=subset_name, n_patients=part["patient_id"].nunique()))
    out = pd.concat(rows, ignore_index=True)
    if "macro_auroc" in set(out["metric"]):
        out = pd.concat([out, out[out["metric"] == "macro_auroc"].assign(metric="auroc")], ignore_index=True)
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
    """AUROC difference (A - B) per pair: paired group-bootstrap CI and p-value, DeLong when binary.

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
        patient_groups = None if groups is None else groups_for_patients(ids, group_lookup(groups, ids))
        boot = paired_bootstrap_difference(y, pa[:, 1] if binary else pa, pb[:, 1] if binary else pb,
                                           metric=metric, n_boot=n_boot, seed=seed, groups=patient_groups)
        rows.append({"model_a": a, "model_b": b, "metric": metric, "value_a": boot["value_a"],
                     "value_b": boot["value_b"], "diff": boot["diff"], "ci_low": boot["ci_low"],
                     "ci_high": boot["ci_high"], "p_bootstrap": boot["p_value"],
                     "p_delong": delong_test(y, pa[:, 1], pb[:, 1])["p_value"] if binary else np.nan,
                     "conclusion": verdict(boot["diff"], boot["ci_low"], boot["ci_high"], a, b),
                     "n_patients": len(y), "subset": subset_name})
    return pd.DataFrame(rows)


def with_holm(comparisons: pd.DataFrame, family: pd.Series) -> pd.DataFrame:
    """Add ``p_holm``: Holm's adjustment of ``p_bootstrap`` over the rows where ``family`` is true
    (the declared secondary family); other rows keep their raw p-value."""
    out = comparisons.copy()
    out["p_holm"] = out["p_bootstrap"]
    mask = family.to_numpy(dtype=bool)
    if mask.any():
        out.loc[mask, "p_holm"] = holm(out.loc[mask, "p_bootstrap"].to_numpy())
    return out


def tscore_regression(predictions: Mapping[str, pd.DataFrame], n_boot: int, seed: int,
                      groups: GroupsLike | None = None) -> pd.DataFrame:
    """MAE and Pearson r of each T-score arm's predicted mean (per patient, averaged over repeats)."""
    rows = []
    for name, pred in predictions.items():
        per_patient = pred.groupby("patient_id").agg(y_true=("y_true", "first"), pred=("pred_mean", "mean"))
        patient_groups = None if groups is None else groups_for_patients(
            per_patient.index, group_lookup(groups, per_patient.index))
        table = regression_metrics(per_patient["y_true"], per_patient["pred"], n_boot, seed, groups=patient_groups)
        rows.append(table.assign(model=name, task="tscore", subset="all", n_patients=len(per_patient)))
    return pd.concat(rows, ignore_index=True)[RESULT_COLUMNS] if rows else pd.DataFrame(columns=RESULT_COLUMNS)
