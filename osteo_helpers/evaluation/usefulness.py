"""Is a model useful, and for whom? The decision curve read over a declared range of thresholds, and
calibration within subgroups (sex, age band).

A decision curve is a figure; a reader needs its result in one sentence over the thresholds that
matter. Here the decision is a referral for a DXA scan, cheap and safe, so a missed low BMD weighs
far more than a needless scan: threshold probabilities of 5% to 30% (one true positive worth 19 to
2.3 false positives; ``DECISION_RANGE``, declared on 7 December 2026 after the curves had been seen,
in the protocol's T-score amendment). Net benefit is counted in true positives per patient at no
extra false positives: a gain of 0.007 over treating everyone is 0.7 more per 100 patients.

Calibration-in-the-large and slope are repeated in each subgroup, with the same group bootstrap as
the whole cohort. A subgroup with one class has neither (the intercept runs off to infinity) and
says so; its observed rate and mean predicted risk are still shown.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from .calibration import calibration_metrics
from .metrics import average_over_repeats, prob_columns
from .resampling import GroupsLike, group_lookup, groups_for_patients

__all__ = ["DECISION_RANGE", "decision_sentence", "decision_summary", "subgroup_calibration"]

#: threshold probabilities over which the decision curve is summarised (referral for DXA)
DECISION_RANGE = (0.05, 0.30)


def decision_summary(curve: pd.DataFrame, low: float = DECISION_RANGE[0], high: float = DECISION_RANGE[1]
                     ) -> dict[str, float]:
    """A decision curve (`calibration.decision_curve`) over thresholds ``low`` to ``high``: the smallest and
    largest gain of net benefit over treating everyone, and at how many thresholds the model's 95% CI lies
    above treat-all, below it, or holds it, and lies above treat-none."""
    part = curve[(curve["threshold"] >= low - 1e-9) & (curve["threshold"] <= high + 1e-9)]
    if part.empty:
        raise ValueError(f"the decision curve has no threshold between {low} and {high}")
    gain = part["net_benefit"] - part["treat_all"]
    return {"low": float(part["threshold"].min()), "high": float(part["threshold"].max()),
            "n_thresholds": len(part), "gain_min": float(gain.min()), "gain_max": float(gain.max()),
            "above_all": int((part["ci_low"] > part["treat_all"]).sum()),
            "below_all": int((part["ci_high"] < part["treat_all"]).sum()),
            "above_none": int((part["ci_low"] > 0).sum()),
            "prevalence_net_benefit": float(part["treat_all"].iloc[0])}


def _signed(value: float, digits: int = 3) -> str:
    """+0.007, -0.003; a value that rounds to zero as 0.000, never +0.000 or -0.000."""
    text = f"{value:+.{digits}f}"
    return text[1:] if float(text) == 0 else text


def decision_sentence(curve: pd.DataFrame, model: str, low: float = DECISION_RANGE[0],
                      high: float = DECISION_RANGE[1]) -> str:
    """The decision curve's result in one sentence: the gain over treat-all across the range, in true
    positives per 100 patients, and what the 95% CI allows."""
    s = decision_summary(curve, low, high)
    text = (f"{model}: over threshold probabilities of {s['low']:.0%} to {s['high']:.0%}, the net benefit of acting "
            f"on its predictions minus that of treating everyone runs from {_signed(s['gain_min'])} to "
            f"{_signed(s['gain_max'])} (at best {_signed(100 * s['gain_max'], 1)} true positives per 100 patients at "
            "no more false positives)")
    n = s["n_thresholds"]
    if s["above_all"] == n:
        verdict = "its 95% CI lies above treat-all at every threshold: it is more useful than treating everyone"
    elif s["below_all"] == n:
        verdict = "its 95% CI lies below treat-all at every threshold: treating everyone is more useful"
    elif s["above_all"] == 0 and s["below_all"] == 0:
        verdict = ("its 95% CI holds treat-all at every threshold: acting on it is not detectably more useful "
                   "than treating every patient of this cohort")
    else:
        verdict = (f"its 95% CI lies above treat-all at {s['above_all']} and below it at {s['below_all']} of the "
                   f"{n} thresholds")
    return f"{text}; {verdict}."


def subgroup_calibration(oofs: Mapping[str, pd.DataFrame], subgroups: Mapping[str, set[str]], n_boot: int,
                         seed: int, groups: GroupsLike | None = None) -> pd.DataFrame:
    """Calibration of P(low BMD) within each subgroup (patient IDs), per arm: ``model, subgroup, n_patients,
    n_low_bmd, n_normal, observed, mean_predicted`` and the calibration intercept and slope with
    group-bootstrap 95% CIs (``..._ci_low``, ``..._ci_high``; NaN, with a ``note``, where the subgroup
    holds one class). Each patient's prediction is averaged over the repeats, as in the results table."""
    rows = []
    for name, oof in oofs.items():
        avg = average_over_repeats(oof)
        proba = avg[prob_columns(oof)].to_numpy()
        p_low = 1 - proba[:, 0]
        y_low = (avg["y_true"].to_numpy() != 0).astype(int)
        ids = avg["patient_id"].astype(str).to_numpy()
        for label, members in subgroups.items():
            mask = np.isin(ids, list(members))
            if not mask.any():
                continue
            y, p = y_low[mask], p_low[mask]
            row = {"model": name, "subgroup": label, "n_patients": int(mask.sum()), "n_low_bmd": int(y.sum()),
                   "n_normal": int(len(y) - y.sum()), "observed": float(y.mean()), "mean_predicted": float(p.mean()),
                   "note": ""}
            metrics = ("calibration_intercept", "calibration_slope")
            if y.min() == y.max():
                row.update({f"{m}{s}": np.nan for m in metrics for s in ("", "_ci_low", "_ci_high")},
                           note=f"one class only ({'low BMD' if y[0] else 'normal'}): no intercept or slope")
            else:
                patient_groups = None if groups is None else groups_for_patients(ids[mask], group_lookup(groups,
                                                                                                         ids[mask]))
                table = calibration_metrics(y, p, n_boot=n_boot, seed=seed, groups=patient_groups).set_index("metric")
                for m in metrics:
                    row.update({m: table.at[m, "value"], f"{m}_ci_low": table.at[m, "ci_low"],
                                f"{m}_ci_high": table.at[m, "ci_high"]})
            rows.append(row)
    return pd.DataFrame(rows)
