"""What notebook 7 asks of the image biomarkers: do they track age, the acquisition batch, or bone?

Screens here are in-sample and univariable (reported as such); the cross-validated test is the
biomarker arms against age and the clinical model on the shared folds (`ablation`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import clone

from . import evaluation
from .arms.classical import BiomarkerArm
from .splits import iter_folds
from .wording import ci

#: biomarkers chosen before looking at results: cortical index of the tibial shaft, fractal
#: dimension, lacunarity, GLCM contrast and LBP entropy of the tibial ROI, joint-space width
MAIN_BIOMARKERS = ("tibia_cort_index", "tibia_fd_binary", "tibia_lac_slope", "tibia_glcm_contrast_d2",
                   "tibia_lbp_r1_entropy", "jsw_mean")


#: patients with a value (in both classes) a biomarker needs before its relation to age is screened
AGE_SCREEN_MIN = 10


def biomarker_age_table(patients: pd.DataFrame, cohort: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Per biomarker: Pearson r with age (and p), its AUROC for low BMD, and whether it adds to age.

    ``adds_to_age_p`` is the likelihood-ratio test of the standardised feature added to age in a
    logistic model of ``label_binary`` (1 df, in-sample, nominal: no correction for the number of
    features). A feature that only tracks age has a large |r|, an AUROC away from 0.5 and a large
    p here: it is not a bone-density biomarker. Missing values are dropped per feature.
    """
    table = cohort[["patient_id", "age_years", "label_binary"]].merge(patients, on="patient_id")
    out = []
    for f in features:
        part = table[["age_years", "label_binary", f]].dropna()
        if len(part) < AGE_SCREEN_MIN or part[f].std() == 0 or part["label_binary"].nunique() < 2:
            continue
        r, p_r = stats.pearsonr(part["age_years"], part[f])
        y = part["label_binary"].to_numpy()
        z = stats.zscore(part[["age_years", f]].to_numpy(float), axis=0)
        test = evaluation.likelihood_ratio_test(y, z[:, :1], z[:, 1:])
        out.append({"feature": f, "n": len(part), "r_age": float(r), "p_r_age": float(p_r),
                    "auroc_low_bmd": evaluation.binary_point_metrics(y, part[f].to_numpy())["auroc"],
                    "adds_to_age_p": test["p_value"]})
    return pd.DataFrame(out, columns=["feature", "n", "r_age", "p_r_age", "auroc_low_bmd", "adds_to_age_p"])


def age_screen_text(age_table: pd.DataFrame) -> str:
    n = len(age_table)
    if n == 0:
        return ("**The biomarkers' relation to age is not estimable on this cohort:** no biomarker has values for "
                f"{AGE_SCREEN_MIN} or more patients with a localised knee in both classes.")
    n_age = int((age_table["p_r_age"] < 0.05 / max(n, 1)).sum())
    n_add = int((age_table["adds_to_age_p"] < 0.05).sum())
    n_bonf = int((age_table["adds_to_age_p"] < 0.05 / max(n, 1)).sum())
    return (f"Of {n} biomarkers, {n_age} correlate with age (Bonferroni-corrected p < 0.05). Added to age in a "
            f"logistic model of low BMD, {n_add} reach nominal p < 0.05 and {n_bonf} survive a Bonferroni correction "
            f"for {n} features; by chance alone about {0.05 * n:.0f} would reach nominal p < 0.05. These are "
            "in-sample, univariable screens, not the cross-validated test, which follows below.")


def predict_batch(rows: pd.DataFrame, folds: pd.DataFrame, n_boot: int, seed: int) -> tuple[pd.DataFrame,
                                                                                                  pd.DataFrame]:
    """Can the acquisition batch be predicted from the patient-level biomarkers?

    The biomarker arm's pipeline (imputation, scaling, L2 logistic regression, multinomial) on the
    shared folds, for the patients with a localised knee; returns metrics with CIs and each
    metric's chance level, and the out-of-fold table. A fold whose training patients come from one batch is
    not fitted; both tables are empty when no fold is (the localised images of a small cohort, or of one
    batch): there is no batch to tell apart (`batch_text` says so).
    """
    empty = (pd.DataFrame(columns=["metric", "value", "ci_low", "ci_high", "chance"]),
             pd.DataFrame(columns=["patient_id", "fold", "seed", "y_true"]))
    table = rows[rows["biomarker_localised"].fillna(False).astype(bool)].reset_index(drop=True)
    classes = tuple(sorted(table["batch"].dropna().astype(str).unique()))
    y = table["batch"].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy()
    template = BiomarkerArm("3class")
    ids = table["patient_id"].to_numpy()
    parts = []
    for s, k, test_ids in iter_folds(folds):
        test = np.isin(ids, list(test_ids))
        if not test.any() or len(np.unique(y[~test])) < 2:
            continue
        model = clone(template._estimator(table)).fit(template._inputs(table[~test]), y[~test])
        proba = np.zeros((test.sum(), len(classes)))
        proba[:, model.classes_] = model.predict_proba(template._inputs(table[test]))
        part = pd.DataFrame({"patient_id": ids[test], "fold": k, "seed": s, "y_true": y[test]})
        parts.append(part.join(pd.DataFrame(proba, columns=[f"prob_{c}" for c in classes])))
    if not parts:
        return empty
    oof = pd.concat(parts, ignore_index=True)
    metrics = evaluation.oof_metrics(oof, n_boot, seed)
    metrics = metrics[~metrics["metric"].str.startswith(("brier", "calibration_"))]  # about low BMD, not batches
    chance = {"accuracy": float(np.max(np.bincount(y)) / len(y)), "balanced_accuracy": 1 / len(classes)}
    metrics = metrics.assign(chance=[chance.get(m, 0.5 if "auroc" in m else np.nan) for m in metrics["metric"]])
    return metrics.reset_index(drop=True), oof


def batch_screen(patients: pd.DataFrame, batches: pd.Series, features: list[str]) -> pd.DataFrame:
    """Kruskal-Wallis test of each biomarker across acquisition batches (in-sample)."""
    table = patients.assign(batch=patients["patient_id"].map(batches)).dropna(subset=["batch"])
    out = []
    for f in features:
        groups = [g[f].dropna().to_numpy() for _, g in table.groupby("batch")]
        if len(groups) > 1 and all(len(g) > 1 for g in groups) and np.ptp(np.concatenate(groups)) > 0:
            out.append({"feature": f, "p_kruskal": float(stats.kruskal(*groups).pvalue)})
    return pd.DataFrame(out, columns=["feature", "p_kruskal"])


def batch_text(metrics: pd.DataFrame, screen: pd.DataFrame, n_patients: int, batch_class_p: float) -> str:
    """Whether the biomarkers identify the batch, and whether that could be a shortcut to the label."""
    if metrics.empty:
        return ("Batch predicted from the biomarkers: not estimable on this cohort, since in every training fold "
                "the images with a localised knee come from one acquisition batch: there is no batch to tell apart "
                "(and no batch shortcut to the label).")
    m = metrics.set_index("metric")
    two = "macro_auroc" not in m.index  # two batches: one AUROC, no macro average
    bal, auc = m.loc["balanced_accuracy"], m.loc["auroc" if two else "macro_auroc"]
    name = "AUROC" if two else "macro AUROC"
    n_kw = int((screen["p_kruskal"] < 0.05 / max(len(screen), 1)).sum())
    link = (f"batch is associated with class (chi-square p = {batch_class_p:.3g}), so a biomarker model could "
            "score by recognising the batch" if batch_class_p < 0.05 else
            f"batch is not detectably associated with class (chi-square p = {batch_class_p:.3g}), so the batch "
            "signature adds noise rather than a shortcut")
    says = (f"**the biomarkers do identify the acquisition batch** (the CI of the {name} excludes 0.5): "
            f"within-image normalisation does not remove the batch signature, and {link}." if auc.ci_low > 0.5 else
            "the biomarkers do not identify the acquisition batch better than chance (the CI includes 0.5).")
    return (f"Batch predicted from the biomarkers: balanced accuracy **{ci(bal.value, bal.ci_low, bal.ci_high, 2)}** "
            f"(chance {bal.chance:.2f}), {'' if two else 'macro one-vs-rest '}AUROC "
            f"**{ci(auc.value, auc.ci_low, auc.ci_high, 2)}** "
            f"(chance 0.50), on {n_patients} patients. {n_kw} of {len(screen)} features differ between batches "
            f"(Kruskal-Wallis, Bonferroni-corrected p < 0.05). In short, {says}")


def localisation_text(status: pd.DataFrame, n_knees: int) -> str:
    """How many images were localised, how many knees, and which failed."""
    loc = status[status["status"] == "localised"]
    failed = status[status["status"] != "localised"]
    partial = loc[loc["reason"] != ""]
    text = (f"Of **{len(status)}** cohort images, **{len(loc)}** ({len(loc) / max(len(status), 1):.1%}) have at "
            f"least one localised knee, giving **{n_knees}** knees ({(loc['n_knees'] == 2).sum()} images with both "
            f"knees, {(loc['n_knees'] == 1).sum()} with one); **{len(failed)}** image(s) could not be localised")
    if len(failed):
        text += " (" + ", ".join(f"{k}: {v}" for k, v in failed["diagnosis"].value_counts().items()) + ")"
    return (text + f". In {len(partial)} localised image(s) a second knee candidate was rejected. The "
            f"{len(failed)} patient(s) without a localised knee are excluded from the four image-biomarker arms.")


def conclusion_text(comparisons: pd.DataFrame, arms: tuple[str, ...], band_name: str, n_excluded: int) -> str:
    """The verdict on the image-biomarker arms, from the CIs of their differences with age and the clinical model.
    Without comparisons in the age band ``band_name`` (no age holds both classes) only the overall ones are read."""
    def better(a: str, b: str, subset: str = "all") -> bool:
        hit = comparisons[(comparisons.model_a == a) & (comparisons.model_b == b) & (comparisons.subset == subset)]
        return bool(len(hit)) and bool(hit["ci_low"].iloc[0] > 0)

    has_band = bool((comparisons.subset == band_name).any())
    with_clinical = [a for a in arms if "clinical" in a]
    beyond_clinical = [a for a in with_clinical if better(a, "clinical")]
    beyond_age = [a for a in arms if better(a, "age")]
    beyond_age_band = [a for a in arms if better(a, "age", band_name)]
    overall = comparisons[comparisons.subset == "all"]
    if not np.isfinite(overall["diff"].to_numpy(dtype=float)).any():
        return ("**The image-biomarker arms are not estimable against age or the clinical model on this cohort:** "
                "no comparison has two patients of each class among the patients both arms predicted (listed "
                f"below). Patients without a localised knee ({n_excluded}) are not in these comparisons.\n\n"
                + "\n".join(_comparison_lines(comparisons, arms, band_name)))
    if beyond_clinical:
        text = (f"**{' and '.join(f'`{a}`' for a in beyond_clinical)} add(s) information beyond the clinical model**: "
                "the CI of the AUROC difference against it excludes 0.")
    else:
        text = ("**No image biomarker adds detectable information beyond the clinical model**: for both "
                "image-plus-clinical arms the 95% CI of the AUROC difference against it includes 0 or lies below it.")
    if beyond_age:
        text += (f" Against age alone, {', '.join(f'`{a}`' for a in beyond_age)} score(s) higher overall"
                 + (f", and {', '.join(f'`{a}`' for a in beyond_age_band)} also within the age band {band_name}."
                    if beyond_age_band else f", but none does so within the age band {band_name}, where age cannot "
                    "separate the classes; the gain over age may come from the clinical inputs or from features that "
                    "track age or batch." if has_band else ", and no age band holds both classes, so whether the gain "
                    "over age comes from the image or from features that track age cannot be told here."))
    else:
        text += (" No image-biomarker arm is better than age alone (every CI of the difference includes 0 or lies "
                 "below).")
    return (text + f" Patients without a localised knee ({n_excluded}) are not in these comparisons; for such an "
            "image the image arms would give no answer.\n\n"
            + "\n".join(_comparison_lines(comparisons, arms, band_name)))


def _comparison_lines(comparisons: pd.DataFrame, arms: tuple[str, ...], band_name: str) -> list[str]:
    """One bullet per comparison of `conclusion_text`: the difference with its CI, or why it is not estimable."""
    lines = []
    for a in arms:
        for b in ("age", "clinical"):
            for subset in ("all", band_name):
                hit = comparisons[(comparisons.model_a == a) & (comparisons.model_b == b) &
                                  (comparisons.subset == subset)]
                if len(hit):
                    r = hit.iloc[0]
                    what = (f"difference {ci(r['diff'], r.ci_low, r.ci_high, signed=True)}" if np.isfinite(r["diff"])
                            else r.conclusion)  # not estimable, and why
                    lines.append(f"- `{a}` vs {b} ({subset}): {what}, {r.n_patients} patients")
    return lines
