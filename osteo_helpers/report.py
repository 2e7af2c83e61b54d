"""What the notebooks show, built from the run's tables: readable tables and the sentences that state numbers.

Every sentence here is a rule applied to a table (a CI that excludes zero or does not), so the
words in the report always follow the numbers; the notebooks only call these.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import evaluation
from .ablation import DECLARED_ORDER, arm_label
from .answer import direction, estimable, of_folds
from .config import Profile
from .tasks import CLASSES_3
from .wording import ci, number, p_text, plural


def encoder_text(recipe, features: np.ndarray) -> str:
    """What the frozen encoder computed for this cohort, in one paragraph (`features.FeatureRecipe`)."""
    return (f"**Encoder:** {recipe.describe()}. Each of the {len(features)} images became a vector of "
            f"{features.shape[1]} numbers, computed once and cached by the image's content, the encoder's weights "
            "(by SHA-256) and the recipe; a fold's head sees them after a signed log transform, standardisation "
            "and PCA, all fitted on the fold's training patients.")


def control_table(control: pd.DataFrame, labels: dict[str, str]) -> pd.DataFrame:
    """The positive control of the image arms side by side: one row per encoder, each metric with its CI."""
    wanted = {("sex", "auroc"): "sex: AUROC", ("age", "pearson_r"): "age: Pearson r",
              ("age", "mae"): "age: MAE (years)", ("age", "mae_no_information"): "age: MAE of the mean (years)"}
    rows = []
    for model, part in control.groupby("model", sort=False):
        row = {"encoder": labels.get(model, model)}
        for _, r in part.iterrows():
            name = wanted.get((r["target"], r["metric"]))
            if name:
                row[name] = ci(r["value"], r["ci_low"], r["ci_high"], 1 if "years" in name else 3)
        rows.append(row)
    return pd.DataFrame(rows)


def declared(names: Sequence[str], order: Sequence[str] = DECLARED_ORDER) -> list[str]:
    """Arms in the declared order (unknown names after, in the order given): never ranked by score."""
    known = [n for n in order if n in names]
    return known + [n for n in names if n not in known]


def wide_table(results: pd.DataFrame, metrics: Sequence[str], subset: str = "all",
               labels: bool = True) -> pd.DataFrame:
    """One row per arm (declared order), one column per metric, cells ``value [CI]``; never NaN."""
    part = results[(results["subset"] == subset) & results["metric"].isin(metrics)]
    cells = part.assign(cell=[ci(v, lo, hi) for v, lo, hi in part[["value", "ci_low", "ci_high"]].itertuples(
        index=False)])
    table = cells.pivot_table(index="model", columns="metric", values="cell", aggfunc="first")
    table = table.reindex(index=declared(list(table.index)), columns=[m for m in metrics if m in table.columns])
    n = part.groupby("model")["n_patients"].first()
    table.insert(0, "patients", n.loc[table.index].astype(int))
    table = table.fillna("not computed")
    if labels:
        table.index = [arm_label(m) for m in table.index]
    table.index.name = None
    table.columns.name = None
    return table


#: the task and metric of a comparison in a few words
TASK_WORDS = {"binary": "binary", "3class": "3 classes", "tscore": "T-score"}
METRIC_WORDS = {"auroc": "AUROC", "macro_auroc": "macro AUROC", "mae": "MAE"}


def comparison_table(comparisons: pd.DataFrame, n_boot: int) -> pd.DataFrame:
    """The declared comparisons as a person reads them, in the width of a page: what is compared, the pooled
    difference [CI], the bootstrap, Holm-adjusted and DeLong p-values, the fold-level difference with the
    folds favouring A, B or neither, and the verdict of the row's own test in a few words (the primary by
    its CI, the secondary family by its Holm-adjusted p). Every column of the comparisons is in its CSV."""
    def folds(r: pd.Series) -> str:
        if not np.isfinite(r.get("n_folds", np.nan)):
            return "not computed"
        sd = f" (SD {number(r['fold_diff_sd'])})" if np.isfinite(r.get("fold_diff_sd", np.nan)) else ""
        return (f"{number(r['fold_diff_mean'], signed=True)}{sd}; "
                f"{r['folds_a_better']:.0f}\u00a0/\u00a0{r['folds_b_better']:.0f}\u00a0/\u00a0{r['folds_tied']:.0f}")

    def verdict(r: pd.Series) -> str:
        if not estimable(r):
            return "not estimable: A is B in every fold"
        if not np.isfinite(r["diff"]):
            return "not computed"
        words = ("tie" if abs(r["diff"]) < evaluation.TIE_TOLERANCE else
                 {1: "A better", -1: "B better", 0: "no difference shown"}[direction(r)])
        k = r.get("a_untrained_folds", np.nan)
        if k is not None and np.isfinite(k) and k > 0:
            words += f"; A untrained in {of_folds(k, r['a_fitted_folds'])}"
        return words

    rows = [r for _, r in comparisons.iterrows()]
    out = pd.DataFrame({
        "task, metric": [f"{TASK_WORDS.get(r['task'], r['task'])} {METRIC_WORDS.get(r['metric'], r['metric'])}"
                         + (f", {r['role']}" if isinstance(r.get("role"), str) else "") for r in rows],
        "A vs B": [f"{arm_label(r['model_a'])} vs {arm_label(r['model_b'])}" for r in rows],
        "A - B [95% CI]": [ci(r["diff"], r["ci_low"], r["ci_high"], signed=True) for r in rows],
        "p": [p_text(r["p_bootstrap"], n_boot // 2) for r in rows],
        "p (Holm)": [p_text(r["p_holm"], n_boot // 2) if r.get("role") == "secondary" else "tested alone"
                     for r in rows],
        "p (DeLong)": [p_text(r.get("p_delong", np.nan)) for r in rows],
        "fold-level A - B (SD); folds A / B / tied": [folds(r) for r in rows],
        "verdict": [verdict(r) for r in rows],
    })
    if "p_delong" not in comparisons:
        out = out.drop(columns="p (DeLong)")
    if "p_holm" not in comparisons:
        out = out.drop(columns="p (Holm)")
    return out.reset_index(drop=True)


def permutation_table(pvalues: pd.DataFrame) -> pd.DataFrame:
    """The label-permutation test as a person reads it: per arm and metric, the observed value beside the
    null's mean and its central 95%, the permutations and the p-value (`ablation.permutation_pvalues`)."""
    return pd.DataFrame({
        "arm": pvalues["model"].map(arm_label),
        "metric": pvalues["metric"].map({"auroc": "pooled AUROC", "auroc_fold_mean": "fold-mean AUROC"}).fillna(
            pvalues["metric"]),
        "observed": pvalues["observed"].map(number),
        "null: mean [2.5%, 97.5%]": [f"{number(m)} [{number(lo)}, {number(hi)}]" for m, lo, hi in pvalues[
            ["null_mean", "null_q025", "null_q975"]].itertuples(index=False)],
        "permutations": pvalues["n_permutations"].astype(int),
        "p": pvalues["p_value"].map(p_text)})


def fold_table(results: pd.DataFrame, subset: str = "all") -> pd.DataFrame:
    """Per arm (declared order): the pooled AUROC [CI] beside what the fitted folds did, the fold
    mean (SD), each repeat's pooled AUROC, and for residual arms the folds that kept the untrained state."""
    part = results[results["subset"] == subset].drop_duplicates(["model", "metric"]).set_index(["model", "metric"])
    models = declared(list(dict.fromkeys(part.index.get_level_values(0))))
    seeds = sorted({m for m in part.index.get_level_values(1) if m.startswith("auroc_seed")},
                   key=lambda m: int(m.removeprefix("auroc_seed")))
    def get(m: str, metric: str) -> float:
        return part.loc[(m, metric), "value"] if (m, metric) in part.index else np.nan

    rows = []
    for m in models:
        if (m, "auroc") not in part.index:
            continue
        mean, sd = get(m, "auroc_fold_mean"), get(m, "auroc_fold_sd")
        row = {"arm": arm_label(m),
               "pooled AUROC [95% CI]": ci(*part.loc[(m, "auroc"), ["value", "ci_low", "ci_high"]]),
               "fold mean (SD)": f"{number(mean)} ({number(sd)})" if np.isfinite(mean) else "not computed"}
        row.update({f"repeat {s.removeprefix('auroc_seed')}": number(get(m, s)) if np.isfinite(get(m, s)) else "n/a"
                    for s in seeds})
        k = get(m, "untrained_folds")
        row["kept the untrained state"] = of_folds(k, get(m, "fitted_folds")) if np.isfinite(k) else ""
        rows.append(row)
    table = pd.DataFrame(rows).set_index("arm")
    if not table["kept the untrained state"].str.len().any():
        table = table.drop(columns="kept the untrained state")
    table.index.name = None
    return table


def settings_text(profile: Profile) -> str:
    """The settings that produced the numbers, in one paragraph."""
    weights = profile.weights or "none (trained from scratch)"
    return (f"**Settings.** Encoder `{profile.encoder}` at {profile.image_size} px, pretrained weights: **{weights}**; "
            f"{profile.n_folds}-fold cross-validation x {profile.n_repeats} repeat(s), folds grouped by person; up to "
            f"{profile.epochs} epochs with early stopping (patience {profile.patience}) on an inner split of each "
            f"training fold; AdamW lr {profile.lr}, weight decay {profile.weight_decay}; batch {profile.batch_size}; "
            f"{profile.n_boot} bootstrap resamples of split groups for every CI.")


def operating_points(oofs: dict[str, pd.DataFrame], n_boot: int, seed: int, groups: pd.Series,
                     target: float) -> pd.DataFrame:
    """Held-out sensitivity and specificity [CI] of every screening arm at its own threshold."""
    rows = []
    for name in declared(list(oofs)):
        oof = oofs[name]
        if "threshold" not in oof:
            continue
        table = evaluation.operating_point(oof, n_boot, seed, groups=groups).set_index("metric")
        rows.append({"arm": arm_label(name), "target sensitivity": f"{target:.2f}",
                     "threshold on P(low BMD) (mean over folds)": f"{table['mean_threshold'].iloc[0]:.3f}",
                     **{m: ci(*table.loc[m, ["value", "ci_low", "ci_high"]]) for m in ("sensitivity", "specificity")}})
    return pd.DataFrame(rows).set_index("arm")


def roc_inputs(oofs: dict[str, pd.DataFrame], results: pd.DataFrame, names: Sequence[str]
               ) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, tuple[str, str]]]:
    """Per arm (label -> (y, P(low BMD))) and its legend text (AUROC and AUPRC with CI)."""
    curves, legend = {}, {}
    main = results[results["subset"] == "all"].set_index(["model", "metric"])
    for name in declared([n for n in names if n in oofs]):
        avg = evaluation.average_over_repeats(oofs[name])
        label = arm_label(name)
        curves[label] = (avg["y_true"].to_numpy(), avg[evaluation.prob_columns(avg)[1]].to_numpy())
        legend[label] = tuple(ci(*main.loc[(name, m), ["value", "ci_low", "ci_high"]], digits=2)
                              for m in ("auroc", "auprc"))
    return curves, legend


def calibration_curves(oofs: dict[str, pd.DataFrame], names: Sequence[str], groups: pd.Series, n_boot: int,
                       seed: int) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Reliability curves (with CI bands) and decision curves (net benefit, 5-50%) of the named arms."""
    reliability, decision = {}, {}
    for name in declared([n for n in names if n in oofs]):
        avg = evaluation.average_over_repeats(oofs[name])
        y, p = avg["y_true"].to_numpy(), avg[evaluation.prob_columns(avg)[1]].to_numpy()
        g = groups.loc[avg["patient_id"]].to_numpy()
        reliability[arm_label(name)] = evaluation.reliability_curve(y, p, groups=g)
        decision[arm_label(name)] = evaluation.decision_curve(y, p, n_boot=n_boot, seed=seed, groups=g)
    return reliability, decision


#: age bands (years) of the calibration table: under 40, 40-49, 50 and over (50: about menopause, and the
#: age from which the cohort holds no normal patient)
AGE_BAND_EDGES = (40, 50)


def subgroups_by_sex_and_age(cohort: pd.DataFrame, edges: Sequence[float] = AGE_BAND_EDGES) -> dict[str, set[str]]:
    """Patient IDs per sex and per age band (``edges``: the bands' lower bounds after the first)."""
    out = {f"{sex}": set(part["patient_id"]) for sex, part in cohort.groupby("sex", sort=True)}
    bounds = [-np.inf, *edges, np.inf]
    for low, high in zip(bounds[:-1], bounds[1:], strict=True):
        name = (f"age < {high:g}" if not np.isfinite(low) else f"age >= {low:g}" if not np.isfinite(high)
                else f"age {low:g}-{high - 1:g}")
        members = set(cohort.loc[(cohort["age_years"] >= low) & (cohort["age_years"] < high), "patient_id"])
        if members:
            out[name] = members
    return out


def calibration_by_subgroup(oofs: dict[str, pd.DataFrame], cohort: pd.DataFrame, names: Sequence[str], n_boot: int,
                            seed: int, groups: pd.Series) -> pd.DataFrame:
    """Calibration intercept and slope of P(low BMD) [CI] of the named arms by sex and by age band, as a
    person reads them (`evaluation.subgroup_calibration`); the long table is ``.attrs["table"]``."""
    table = evaluation.subgroup_calibration({n: oofs[n] for n in declared([n for n in names if n in oofs])},
                                            subgroups_by_sex_and_age(cohort), n_boot, seed, groups)

    def cell(r: pd.Series, metric: str) -> str:
        return r["note"] or ci(r[metric], r[f"{metric}_ci_low"], r[f"{metric}_ci_high"], 2,
                               signed=metric == "calibration_intercept")

    out = pd.DataFrame({
        "arm": table["model"].map(arm_label), "subgroup": table["subgroup"],
        "patients (normal)": [f"{n} ({k})" for n, k in zip(table["n_patients"], table["n_normal"], strict=True)],
        "observed low BMD": table["observed"].map(lambda v: f"{v:.0%}"),
        "mean predicted": table["mean_predicted"].map(lambda v: f"{v:.0%}"),
        "calibration intercept [95% CI]": [cell(r, "calibration_intercept") for _, r in table.iterrows()],
        "calibration slope [95% CI]": [cell(r, "calibration_slope") for _, r in table.iterrows()]})
    out.attrs["table"] = table
    return out


def coverage_table(coverage: pd.DataFrame) -> pd.DataFrame:
    """`Study.tscore_coverage` as a person reads it: per arm and group, the bias of the mean, the predicted
    and the residual spread, and the coverage [CI] beside its benchmark (95% given the predictors; per
    measured class, what the model itself expects there)."""
    return pd.DataFrame({
        "arm": coverage["model"].map(arm_label),
        "group": [f"{given}: {group}" for given, group in zip(coverage["conditioned_on"], coverage["group"],
                                                               strict=True)],
        "patients": coverage["n_patients"],
        "measured - predicted [95% CI]": [ci(v, lo, hi, 2, signed=True) for v, lo, hi in coverage[
            ["mean_residual", "mean_residual_ci_low", "mean_residual_ci_high"]].itertuples(index=False)],
        "SD: predicted / residual": [f"{p:.2f} / {number(r, 2)}" for p, r in zip(
            coverage["predicted_sd"], coverage["residual_sd"], strict=True)],
        "coverage [95% CI]": [ci(v, lo, hi, 2) for v, lo, hi in coverage[
            ["coverage", "coverage_ci_low", "coverage_ci_high"]].itertuples(index=False)],
        "benchmark": coverage["expected_coverage"].map(lambda v: f"{v:.2f}")})


def osteopenia_text(results: pd.DataFrame, cohort: pd.DataFrame, arm: str = "fusion") -> str:
    """Why the middle class is hard, with the arm's per-class AUROCs."""
    main = results[(results["subset"] == "all") & (results["model"] == arm)].set_index("metric")
    if main.empty:  # the three-class task was not estimated on this cohort (notebook 4 says why)
        return ""
    ages = cohort.groupby("diagnosis")["age_years"].mean()
    n = int((cohort["diagnosis"] == "osteopenia").sum())
    size = "the largest" if cohort["diagnosis"].value_counts().idxmax() == "osteopenia" else "a"
    auc = {c: ci(*main.loc[f"auroc_{c}", ["value", "ci_low", "ci_high"]])
           for c in ("normal", "osteopenia", "osteoporosis")}
    return (f"Osteopenia is {size} class ({n} of {len(cohort)} patients) and lies between the others in T-score "
            f"and in age (mean {ages['osteopenia']:.0f} years, against {ages['normal']:.0f} for normal and "
            f"{ages['osteoporosis']:.0f} for osteoporosis). For {arm_label(arm)}, its one-vs-rest AUROC is "
            f"{auc['osteopenia']}, against {auc['normal']} for normal and {auc['osteoporosis']} for osteoporosis. "
            "A T-score between -1.0 and -2.5 is a narrow band of a noisy ultrasound measurement, so many osteopenic "
            "patients sit near a class boundary: errors between neighbouring classes are expected, errors between "
            "normal and osteoporosis are not.")


def side_by_side(results: pd.DataFrame, metric: str, subsets: Sequence[str]) -> pd.DataFrame:
    """One column per subset (``value [CI]`` and patients), arms in the declared order."""
    parts = []
    for subset in subsets:
        table = wide_table(results, [metric], subset=subset)
        parts.append(table.rename(columns={metric: f"{metric} ({subset})", "patients": f"patients ({subset})"}))
    return pd.concat(parts, axis=1).fillna("not computed")


def probe_text(results: pd.DataFrame) -> str:
    """Does the acquisition alone predict the label?"""
    row = results[(results["model"] == "batch_only") & (results["metric"] == "auroc") & (results["subset"] == "all")]
    if row.empty:
        return "The acquisition probe was not run."
    r = row.iloc[0]
    says = ("it predicts the label, so an image model could exploit the acquisition batch" if r.ci_low > 0.5 else
            "it does not predict the label better than chance (its CI includes 0.5)")
    return f"Acquisition attributes alone: AUROC {ci(r.value, r.ci_low, r.ci_high)}; {says}."


def findings_text(findings: dict) -> str:
    """The data-check findings in a paragraph (what is wrong with the raw data and how it is handled)."""
    n_dup = sum(len(g) for g in findings["duplicate_groups"])
    missing = ", ".join(findings["rows_without_image"]) or "none"
    clinical = findings.get("duplicate_clinical_records", [])
    return (f"**{findings['patients']} patients, {findings['images']} images.** "
            f"{len(findings['rows_without_image'])} patient(s) have no image ({missing}) and are kept in the clinical "
            f"description but excluded from every model. {len(findings['duplicate_groups'])} groups of byte-identical "
            f"images cover {n_dup} patients; {len(findings['cross_class_duplicate_groups'])} of these groups span "
            f"different diagnoses, so the same picture carries different labels. {len(clinical)} group(s) of "
            f"identical clinical records ({'; '.join(' = '.join(g) for g in clinical) or 'none'}) are the same person "
            "entered twice with different images. Patients linked either way always share a fold. "
            f"{len(findings['label_tscore_mismatches'])} diagnoses disagree with the WHO T-score thresholds. "
            f"{len(findings.get('unreadable_images', []))} image(s) cannot be decoded. "
            f"{len(findings['implausible_values'])} clinical values are implausible and are reported, not edited.")


def linkage_text(findings: dict) -> str:
    """The image-to-record mislinkage in words: identical pictures whose records disagree."""
    conflicts, groups = findings.get("image_record_conflicts", []), findings["duplicate_groups"]
    if not conflicts:
        return (f"None of the {len(groups)} groups of byte-identical images links the picture to records that "
                "disagree in sex or age.")
    by_sex = sum("sex" in c["disagree"] for c in conflicts)
    gap = max(max(c["age_years"]) - min(c["age_years"]) for c in conflicts)
    first = next((c for c in conflicts if "sex" in c["disagree"]), conflicts[0])
    example = " and ".join(f"{p} ({s}, {a:g}, {d})" for p, s, a, d in
                           zip(first["patients"], first["sex"], first["age_years"], first["diagnosis"], strict=True))
    return (f"**The image-to-record link is wrong for part of the cohort.** In {len(conflicts)} of the {len(groups)} "
            f"groups of byte-identical images the records attached to the one radiograph disagree: {by_sex} in sex, "
            f"and ages differ by up to {gap:g} years. One radiograph cannot be two people: {example} share one "
            "image, so at least one of them is shown with another person's knee. These patients share a split "
            "group (never on both sides of a split) and notebook 5 re-scores every arm without them.")


def linkage_implications(findings: dict) -> str:
    """What the wrong image-to-record links imply for every result that uses the image (a finding of the data,
    stated before any model): how many patients carry a picture that cannot be theirs, and why an image
    model's null result, or a failed positive control, is then expected whatever the bone holds."""
    conflicts = findings.get("image_record_conflicts", [])
    if not conflicts:
        return ("**For the image results.** No identical radiograph joins disagreeing records, so nothing here "
                "shows a wrong image-to-record link; that does not prove every link right.")
    involved = sum(len(c["patients"]) for c in conflicts)
    wrong = involved - len(conflicts)
    patients = int(findings.get("images") or findings.get("patients") or 0)
    share = f" ({wrong / patients:.0%} of the {patients} images)" if patients else ""
    return (f"**What this implies for every image result.** The {len(conflicts)} groups hold {involved} patients; "
            f"each radiograph belongs to at most one of its records, so at least {wrong} patients{share} are "
            "modelled with another person's knee. The error is visible only where a picture happens to be "
            "duplicated: nothing shows that the other links are right. An image that is not the patient's can "
            "predict neither their BMD nor their age or sex, so every result that uses the image (the image arm, "
            "the fusions, the image biomarkers, the Grad-CAM maps) is bounded by this link: a null image result is "
            "expected here whatever the bone holds, and the positive control of notebook 2 (sex and age from the "
            "image) tests the link as much as the network.")


def batch_blocks_text(manifest: pd.DataFrame, column: str = "batch", word: str = "acquisition batch") -> str:
    """Whether the acquisition batches follow blocks of consecutive patient IDs within each class (a batch
    is then a period of collection as much as an acquisition setting): runs of one batch per class, the
    patients ordered by the number in their ID. Empty where the IDs hold no number."""
    table = manifest.dropna(subset=[column])
    number = pd.to_numeric(table["patient_id"].astype(str).str.extract(r"(\d+)", expand=False), errors="coerce")
    if table.empty or number.isna().any():
        return ""
    table = table.assign(_n=number).sort_values(["diagnosis", "_n"], kind="stable")
    runs = {d: int((g[column] != g[column].shift()).sum()) for d, g in table.groupby("diagnosis", sort=False)}
    k = table[column].nunique()
    counts = ", ".join(map(str, runs.values()))
    return (f"Ordered by patient ID within each class, the {k} {plural(word)} form {counts} "
            f"runs ({', '.join(runs)}; {k} per class would be perfect blocks): the {plural(word)} follow blocks of "
            f"consecutive IDs, so each {word} is a period of collection as much as an acquisition setting, and its "
            "patients are not a random sample of the cohort.")


def linkage_table(findings: dict) -> pd.DataFrame:
    """Every group of identical images whose records disagree, one row per patient."""
    rows = [{"group": i + 1, "patient_id": p, "sex": s, "age_years": a, "diagnosis": d,
             "disagree": ", ".join(c["disagree"])} for i, c in enumerate(findings.get("image_record_conflicts", []))
            for p, s, a, d in zip(c["patients"], c["sex"], c["age_years"], c["diagnosis"], strict=True)]
    return pd.DataFrame(rows, columns=["group", "patient_id", "sex", "age_years", "diagnosis", "disagree"])


def image_pairs(findings: dict, hits: int = 4) -> pd.DataFrame:
    """The pairs to show side by side: near-duplicate hits (copies that are not byte-identical first) and
    the closest pairs above the threshold, which show its margin (``a, b, bits, identical_bytes, hit``)."""
    within = pd.DataFrame([{"a": p["patients"][0], "b": p["patients"][1], "bits": p["bits"],
                            "identical_bytes": p["identical_bytes"], "hit": True}
                           for p in findings["near_duplicate_images"]], columns=["a", "b", "bits", "identical_bytes",
                                                                                  "hit"])
    beyond = pd.DataFrame([{"a": p["patients"][0], "b": p["patients"][1], "bits": p["bits"], "identical_bytes": False,
                            "hit": False} for p in findings["closest_distinct_image_pairs"]])
    within = within.sort_values(["identical_bytes", "bits"], kind="stable").head(hits)
    return pd.concat([within, beyond], ignore_index=True)


def group_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Every split group of more than one patient: its members with diagnosis, age and sex, and why linked."""
    sizes = manifest.groupby("split_group")["patient_id"].transform("size")
    members = manifest[sizes > 1].copy()
    members["identical image"] = members["duplicate_group"].notna()
    cols = ["split_group", "patient_id", "diagnosis", "age_years", "sex", "identical image"]
    return members[cols].sort_values(["split_group", "patient_id"]).reset_index(drop=True)


def age_text(age: pd.DataFrame) -> str:
    """Age by class (``age``: `describe()` of ``age_years`` by diagnosis), said for the classes the cohort has;
    an absent class is named, and ages of normal and low-BMD patients that do not overlap are said to."""
    present = [c for c in CLASSES_3 if c in age.index and age.loc[c, "count"] > 0]
    means = [f"{age.loc[c, 'mean']:.0f} in {c}" for c in present if c != "normal"]
    parts = []
    if "normal" in present:
        parts.append(f"mean age {age.loc['normal', 'mean']:.0f} years in the normal group (every normal patient is "
                     f"{age.loc['normal', 'min']:.0f}-{age.loc['normal', 'max']:.0f} years old)")
    text = "Age is a strong confounder: " + ", ".join(parts + means[:-1])
    text = (text + (" and " if len(parts + means) > 1 else "") + means[-1] if means else text) + "."
    absent = [c for c in CLASSES_3 if c not in present]
    if absent:
        text += f" No patient of this cohort is in the class {' or '.join(absent)}."
    low = [c for c in present if c != "normal"]
    if "normal" in present and low:
        top, bottom = age.loc["normal", "max"], min(age.loc[c, "min"] for c in low)
        if top < bottom:
            return (text + f" The ages of the classes do not overlap (every normal patient is at most {top:.0f}, "
                    f"every low-BMD patient at least {bottom:.0f} years old): age alone separates them, and no age "
                    "band holds both, so nothing here can be said about the image within an age band.")
    return (text + " Any model, image-based or not, can score well by recognising age; every model is compared "
            "with age alone, and within the age band where the classes overlap.")
