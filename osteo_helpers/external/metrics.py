"""The numbers of an external validation: per model, recalibration and site, with group-bootstrap CIs.

A *version* is one model's probability of low BMD as scored: the bundle's fusion (``p_low_bmd``)
and its clinical model (``p_low_bmd_clinical``), each as saved (``recalibration = none``) and,
on request, after refitting its intercept (``intercept``) or intercept and slope (``logistic``) on
the new cohort. Recalibrated probabilities are cross-fitted (five folds grouped by person:
each patient's recalibration is fitted on the others), so their metrics are not in-sample; the
coefficients reported are the fit on every patient, the ones a user of the model would apply.

Metrics come from `evaluation` (`bootstrap_metrics` at the version's saved threshold,
`calibration_metrics`, whose ``brier_scaled`` is the scaled Brier); a site with one class gets only the metrics
that class defines (never an AUROC).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from scipy import special

from .. import evaluation
from ..arms.persons import pooled_probabilities
from ..splits import StratifiedGroupKFold

#: the bundle's models: name -> the prediction column that holds its P(low BMD)
MODELS = {"fusion": "p_low_bmd", "clinical": "p_low_bmd_clinical"}
RECALIBRATIONS = ("intercept", "logistic")
DISCRIMINATION = ("auroc", "auprc", "sensitivity", "specificity", "ppv", "npv")
#: metrics a site holding one class still defines (sensitivity with positives only, specificity with negatives only)
ONE_CLASS = ("brier", "sensitivity", "specificity", "mean_predicted")
ALL_SITES = "all"
METRIC_COLUMNS = ["model", "recalibration", "site", "subset", "metric", "value", "ci_low", "ci_high", "n_patients",
                  "n_low_bmd", "n_normal", "threshold"]
RECAL_FOLDS = 5
#: the subset of patients none of whose images the bundle was trained on (when some were)
NOT_IN_TRAINING = "not_in_training_set"
DIFFERENCE_COLUMNS = ["comparison", "metric", "subset", "value_a", "value_b", "diff", "ci_low", "ci_high", "p_value",
                      "n_patients", "n_boot"]


def per_patient(scored: pd.DataFrame) -> pd.DataFrame:
    """One row per patient, the columns of ``scored`` and ``n_images``, whatever the number of images per
    patient. A patient with several images (both knees, several views) scores the mean of the images'
    logits of each model, the three classes' pooled probabilities (`persons.pooled_probabilities`) and the
    mean of the T-score outputs; flags hold when any image holds them (``screen_positive`` is decided
    again on the pooled score by the caller)."""
    if not scored["patient_id"].duplicated().any():
        return scored.assign(n_images=1)

    probs = list(MODELS.values())
    classes = [c for c in ("p_normal", "p_osteopenia", "p_osteoporosis") if c in scored]
    logits = scored.assign(**{c: special.logit(np.clip(scored[c], 1e-12, 1 - 1e-12)) for c in probs})
    agg = {c: "first" for c in scored.columns if c != "patient_id"}
    agg |= {c: "mean" for c in (*probs, "t_score_mean", "t_score_low", "t_score_high") if c in scored}
    agg |= {c: "any" for c in ("outside_training", "in_training_set", "screen_positive") if c in scored}
    agg["warnings"] = lambda w: "; ".join(dict.fromkeys(x for x in w if x))
    grouped = logits.groupby("patient_id", sort=False)
    out = grouped.agg(agg)
    out["n_images"] = grouped.size()
    out[probs] = special.expit(out[probs])
    if classes:
        out[classes] = pooled_probabilities(scored[classes], scored["patient_id"].to_numpy()).to_numpy()
    return out.reset_index()[[*scored.columns, "n_images"]]


def crossfit_recalibration(y: np.ndarray, p: np.ndarray, groups: np.ndarray, method: str, seed: int) -> np.ndarray:
    """Each patient's probability recalibrated by a fit on the other folds (grouped, stratified)."""
    minority = int(min(y.sum(), len(y) - y.sum()))
    if minority < 2:
        raise ValueError(f"recalibration needs two patients of each class; the cohort has {minority} in one")
    out = np.empty_like(p)
    splitter = StratifiedGroupKFold(n_splits=min(RECAL_FOLDS, minority), shuffle=True, random_state=seed)
    for train, test in splitter.split(p, y, groups):
        out[test] = evaluation.recalibrate(p[test], *evaluation.recalibration(y[train], p[train], method))
    return out


def versions(patients: pd.DataFrame, recalibrate: bool, seed: int) -> tuple[dict[tuple[str, str], np.ndarray],
                                                                            pd.DataFrame]:
    """{(model, recalibration): P(low BMD) per patient} and the recalibration coefficients (fit on everyone)."""
    y = patients["y_true"].to_numpy()
    groups = patients["group"].to_numpy()
    out, coefficients = {}, []
    for model, column in MODELS.items():
        p = patients[column].to_numpy(float)
        out[(model, "none")] = p
        if not recalibrate:
            continue
        for method in RECALIBRATIONS:
            a, b = evaluation.recalibration(y, p, method)
            coefficients.append({"model": model, "recalibration": method, "intercept": a, "slope": b,
                                 "n_patients": len(y), "evaluated": f"cross-fitted, {RECAL_FOLDS} folds by person"})
            out[(model, method)] = crossfit_recalibration(y, p, groups, method, seed)
    return out, pd.DataFrame(coefficients)


def score_metrics(y: np.ndarray, p: np.ndarray, threshold: float, n_boot: int, seed: int,
                  groups: np.ndarray | None) -> pd.DataFrame:
    """metric, value, ci_low, ci_high of one version on one set of patients (see ``ONE_CLASS``)."""
    two_classes = 0 < y.sum() < len(y)
    parts = [evaluation.bootstrap_metrics(y, np.c_[1 - p, p], ("normal", "low_bmd"), n_boot, seed, threshold,
                                          groups=groups),
             evaluation.calibration_metrics(y, p, n_boot, seed, groups=groups),
             pd.DataFrame([{"metric": "mean_predicted", "value": float(p.mean()), "ci_low": np.nan,
                            "ci_high": np.nan}])]
    table = pd.concat(parts, ignore_index=True)
    keep = (*DISCRIMINATION, "brier", "brier_scaled", "calibration_intercept", "calibration_slope", "mean_predicted")
    table = table[table["metric"].isin(keep if two_classes else ONE_CLASS)]
    return table[table["value"].notna()].reset_index(drop=True)


def _subsets(patients: pd.DataFrame, site: str | None) -> Iterator[tuple[str, str, np.ndarray]]:
    """(site, subset, mask): every patient; the patients without a flag on a used input; those none of whose
    images the bundle was trained on; each site."""
    everyone = np.ones(len(patients), dtype=bool)
    yield ALL_SITES, "all", everyone
    inside = ~patients["outside_training"].to_numpy(bool)
    if 0 < inside.sum() < len(patients):
        yield ALL_SITES, "within_training_range", inside
    known = "in_training_set" in patients and patients["in_training_set"].notna().all()
    unseen = ~patients["in_training_set"].to_numpy(bool) if known else everyone
    if 0 < unseen.sum() < len(patients):
        yield ALL_SITES, NOT_IN_TRAINING, unseen
    if site is not None:
        for name in sorted(patients["site"].astype(str).unique()):
            yield name, "all", (patients["site"].astype(str) == name).to_numpy()


def validation_metrics(patients: pd.DataFrame, scores: dict[tuple[str, str], np.ndarray],
                       thresholds: dict[str, float], site: str | None, n_boot: int, seed: int) -> pd.DataFrame:
    """The long metric table (``METRIC_COLUMNS``): every version on every subset and site."""
    y_all = patients["y_true"].to_numpy(int)
    groups_all = patients["group"].to_numpy()
    out = []
    for site_name, subset, mask in _subsets(patients, site):
        y = y_all[mask]
        counts = {"n_patients": int(mask.sum()), "n_low_bmd": int(y.sum()), "n_normal": int(len(y) - y.sum())}
        for (model, recal), p in scores.items():
            table = score_metrics(y, p[mask], thresholds[model], n_boot, seed, groups_all[mask])
            out.append(table.assign(model=model, recalibration=recal, site=site_name, subset=subset,
                                    threshold=thresholds[model], **counts))
    return pd.concat(out, ignore_index=True)[METRIC_COLUMNS]


def curves(patients: pd.DataFrame, scores: dict[tuple[str, str], np.ndarray], n_boot: int, seed: int
           ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reliability curves (10 quantile bins) and decision curves of every version, on every patient."""
    y, groups = patients["y_true"].to_numpy(int), patients["group"].to_numpy()
    bins = min(10, max(2, len(y) // 10))
    reliability = [evaluation.reliability_curve(y, p, bins, groups=groups).assign(model=m, recalibration=r)
                   for (m, r), p in scores.items()]
    decision = [evaluation.decision_curve(y, p, n_boot=n_boot, seed=seed, groups=groups).assign(model=m,
                                                                                                 recalibration=r)
                for (m, r), p in scores.items()]
    return pd.concat(reliability, ignore_index=True), pd.concat(decision, ignore_index=True)


def fusion_minus_clinical(patients: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """The fusion's AUROC minus the clinical model's on the same patients, as saved (``DIFFERENCE_COLUMNS``):
    a paired bootstrap of persons, stratified by class, on every subset of all sites holding both classes.
    Whether the image adds to the clinical model on this cohort: the question the bundle was built for."""
    y_all, groups = patients["y_true"].to_numpy(int), patients["group"].to_numpy()
    fusion, clinical = (patients[MODELS[m]].to_numpy(float) for m in ("fusion", "clinical"))
    out = []
    for _, subset, mask in _subsets(patients, None):
        y = y_all[mask]
        if 0 < y.sum() < len(y):
            diff = evaluation.paired_bootstrap_difference(y, fusion[mask], clinical[mask], "auroc", n_boot, seed,
                                                          groups=groups[mask])
            out.append({**diff, "comparison": "fusion - clinical", "subset": subset, "n_patients": int(mask.sum()),
                        "n_boot": n_boot})
    return pd.DataFrame(out, columns=DIFFERENCE_COLUMNS)
