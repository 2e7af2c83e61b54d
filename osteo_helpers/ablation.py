"""The ablation: every arm on the shared folds, the declared comparisons and the checks around them.

The arms, their order and the comparisons are declared here, before any result is seen, and
the methods chapter repeats them: tables list arms in ``DECLARED_ORDER``, never by score. The
primary comparison is the residual ``fusion`` against the pre-specified ``clinical`` model
(binary AUROC, paired); every other comparison belongs to the secondary family, whose
bootstrap p-values are Holm-adjusted together (``p_holm``).

Image-biomarker arms (``biomarker``, ``biomarker+clinical``, ``roi_cnn``, ``roi_cnn+clinical``)
score only the patients with a localised knee; they are compared with the clinical arms on
the patients both predicted.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from . import evaluation, progress
from .arms import cross_validate, run_arm, run_arms_together, split_arm_name
from .arms.persons import split_groups
from .config import Profile
from .fileio import atomic_to_csv
from .tasks import get_task

MAIN_ARMS = ("age", "ost", "clinical", "clinical_full", "tabular", "image", "fusion_concat", "fusion")
TSCORE_ARMS = ("age_tscore", "clinical_tscore", "fusion_tscore")
PROBE_ARMS = ("gbm", "batch_only", "pixel_1nn")
DECLARED_ORDER = MAIN_ARMS + TSCORE_ARMS + PROBE_ARMS
NETWORK_ARMS = ("tabular", "image", "fusion_concat", "fusion", "fusion_tscore", "roi_cnn", "roi_cnn+clinical")
BIOMARKER_ARMS = ("biomarker", "biomarker+clinical", "roi_cnn", "roi_cnn+clinical")
#: classical arms re-run under every label permutation (cheap enough for hundreds)
PERMUTATION_ARMS = ("age", "ost", "clinical", "clinical_full")

PRIMARY = ("fusion", "clinical")
SECONDARY = (
    ("fusion", "age"),                         # beyond age alone
    ("fusion_tscore", "clinical_tscore"),      # the primary question in the T-score model
    ("fusion_concat", "clinical"),             # the original concatenation design
    ("tabular", "clinical"),                   # does the rest of the allow-list add (network)?
    ("clinical_full", "clinical"),             # ... (regularised logistic regression)?
    ("clinical", "age"),                       # does sex add to age?
    ("clinical", "ost"),                       # the pre-specified model against the tool in use
)
BIOMARKER_COMPARISONS = tuple((a, b) for a in BIOMARKER_ARMS for b in ("age", "clinical"))

#: how arms are named in figures and tables a person reads
ARM_LABELS = {
    "age": "age", "ost": "OST index", "clinical": "clinical (age, sex)", "clinical_full": "clinical (all inputs, LR)",
    "tabular": "clinical network (all inputs)", "image": "image only", "fusion_concat": "fusion (concatenation)",
    "fusion": "fusion (residual)", "age_tscore": "age (T-score model)", "clinical_tscore": "clinical (T-score model)",
    "fusion_tscore": "fusion (T-score model)", "gbm": "gradient boosting (all inputs)",
    "batch_only": "acquisition only (probe)", "pixel_1nn": "pixel 1-NN (probe)", "biomarker": "image biomarkers",
    "biomarker+clinical": "image biomarkers + clinical", "roi_cnn": "ROI network",
    "roi_cnn+clinical": "ROI network + clinical",
}


def arm_label(name: str) -> str:
    return ARM_LABELS.get(name, name)


def groups_of(rows: pd.DataFrame) -> pd.Series:
    """patient_id -> split group (one person, one group): what every bootstrap resamples."""
    return split_groups(rows)


def singleton_patients(rows: pd.DataFrame) -> set[str]:
    """Patients alone in their split group (the sensitivity analysis drops the others, whose
    image-to-patient link is doubtful)."""
    groups = split_groups(rows)  # keyed as the out-of-fold tables are (by person where a person has several rows)
    sizes = groups.map(groups.value_counts())
    return set(groups.index[sizes.to_numpy() == 1])


def age_band(rows: pd.DataFrame, low_q: float = 0.05, high_q: float = 0.95) -> tuple[float, float]:
    """The ages where normal and low-BMD patients overlap: 5th centile of low-BMD ages to 95th of normal."""
    ages = rows["age_years"]
    return (float(ages[rows["label_binary"] == 1].quantile(low_q)),
            float(ages[rows["label_binary"] == 0].quantile(high_q)))


def run_arms(rows: pd.DataFrame, folds: pd.DataFrame, task: str, names: tuple[str, ...], profile: Profile,
             cache: Path | None, progress_bar: bool = True) -> dict[str, pd.DataFrame]:
    """OOF tables of the named arms for ``task`` (binary / 3class), on the same folds, in the order given.

    Only the declared arms choose a screening threshold (a cross-fit inside every fold): theirs are
    the operating points the report shows; the biomarker arms are read by their probabilities.
    The fits of all the arms run together, by the executor of the run (`executor.current`).
    """
    return run_arms_together(names, rows, folds, task, screening=DECLARED_ORDER, profile=profile, cache=cache,
                             progress_bar=progress_bar)


def tscore_predictions(rows: pd.DataFrame, folds: pd.DataFrame, names: tuple[str, ...], profile: Profile,
                       cache: Path | None, progress_bar: bool = True) -> dict[str, pd.DataFrame]:
    """The T-score arms' own tables (``y_true`` is the T-score; ``pred_mean``, ``pred_sd``): the same
    fitted folds as their binary and three-class views."""
    return {name: cross_validate(name, rows, folds, "tscore", profile=profile, cache=cache,
                                 progress_bar=progress_bar) for name in names if split_arm_name(name)[1]}


def declared_comparisons(oofs_by_task: dict[str, dict[str, pd.DataFrame]], n_boot: int, seed: int,
                         groups: pd.Series | None = None, subset: set[str] | None = None,
                         subset_name: str = "all") -> pd.DataFrame:
    """The primary and the secondary comparisons of every task, with ``role`` and ``p_holm``.

    The primary comparison (binary) is tested alone at 5%; the secondary family (the other
    binary pairs and every three-class pair) is Holm-adjusted as one family.
    """
    parts = []
    for task, oofs in oofs_by_task.items():
        pairs = (PRIMARY, *SECONDARY)
        table = evaluation.paired_comparisons(oofs, pairs, n_boot, seed, groups, subset, subset_name)
        if table.empty:
            continue
        primary = (table["model_a"] == PRIMARY[0]) & (table["model_b"] == PRIMARY[1]) & (task == "binary")
        parts.append(table.assign(task=task, role=np.where(primary, "primary", "secondary")))
    table = pd.concat(parts, ignore_index=True)
    return evaluation.with_holm(table, table["role"] == "secondary")


def _permuted_auroc(k: int, rows: pd.DataFrame, folds: pd.DataFrame, task: str, names: tuple[str, ...],
                    profile: Profile, cache: Path | None) -> list[dict[str, Any]]:
    y = get_task(task).labels(rows)
    y_perm = np.random.default_rng([profile.seed, k]).permutation(y)
    out = []
    for name in names:
        oof = cross_validate(name, rows, folds, task, profile=profile, y=y_perm, tag=f"_perm{k}", screening=False,
                             cache=cache if name in NETWORK_ARMS else None, progress_bar=False)
        avg = evaluation.average_over_repeats(oof)
        proba = avg[evaluation.prob_columns(avg)].to_numpy()
        metric = "auroc" if proba.shape[1] == 2 else "macro_auroc"
        value = (evaluation.binary_point_metrics(avg["y_true"], proba[:, 1])["auroc"] if proba.shape[1] == 2 else
                 evaluation.multiclass_point_metrics(avg["y_true"], proba, get_task(task).classes)["macro_auroc"])
        out.append({"permutation": k, "model": name, "metric": metric, "value": value})
    return out


def permutation_null(rows: pd.DataFrame, folds: pd.DataFrame, task: str, profile: Profile, n: int,
                     classical: tuple[str, ...] = PERMUTATION_ARMS, networks: tuple[str, ...] = (),
                     n_networks: int = 0, cache: Path | None = None, n_jobs: int = 2) -> pd.DataFrame:
    """AUROC of each arm under ``n`` label permutations (same folds): ``permutation, model, metric, value``.

    Classical arms run every permutation, two at a time (joblib); the network arms named in
    ``networks`` run the first ``n_networks`` permutations only (their folds are cached).
    """
    progress.note(f"label permutations: {n} for {', '.join(classical)}"
                  + (f"; {n_networks} for {', '.join(networks)}" if n_networks and networks else ""))
    tabular_rows = rows.drop(columns=["image", "roi_tiles"], errors="ignore")  # what the workers need, no pixels
    jobs = Parallel(n_jobs=n_jobs)(delayed(_permuted_auroc)(k, tabular_rows, folds, task, classical, profile, None)
                                   for k in range(1, n + 1))
    records = [r for job in jobs for r in job]
    for k in range(1, min(n_networks, n) + 1):
        records += _permuted_auroc(k, rows, folds, task, networks, profile, cache)
    return pd.DataFrame(records, columns=["permutation", "model", "metric", "value"])


def permutation_pvalues(null: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Permutation p-values of the observed AUROCs and, where both arms were permuted, of the
    primary difference (fusion - clinical)."""
    observed = results[(results["subset"] == "all") & results["metric"].isin(["auroc", "macro_auroc"])]
    observed = observed.drop_duplicates(["model", "metric"])[["model", "metric", "value"]]
    table = evaluation.permutation_summary(null, observed)
    a, b = PRIMARY
    wide = null.pivot_table(index="permutation", columns="model", values="value")
    if a in wide and b in wide:
        obs = observed.set_index("model")["value"]
        diffs = (wide[a] - wide[b]).dropna().to_numpy()
        table = pd.concat([table, pd.DataFrame([{
            "model": f"{a} - {b}", "metric": "auroc_difference", "observed": float(obs[a] - obs[b]),
            "null_mean": float(diffs.mean()), "null_q95": float(np.quantile(diffs, 0.95)),
            "n_permutations": len(diffs), "p_value": evaluation.permutation_p_value(obs[a] - obs[b], diffs)}])],
            ignore_index=True)
    return table


def run_ablation(profile_name: str, task: str, out: Path, data_dir: str | None = None, permute_labels: int = 0,
                 overrides: dict[str, Any] | None = None, biomarkers: bool = False, cohort: str | None = None) -> Path:
    """The command-line ablation: every declared arm on the shared folds; writes ``out/results.csv``,
    ``comparisons.csv``, ``oof/<arm>.csv`` and, with ``permute_labels`` > 1, ``permutation_null.csv``.

    ``permute_labels`` = 1 reruns every arm once on permuted labels (results then describe the
    permuted run); N > 1 keeps the observed results and adds the permutation distribution.
    """
    from .study import Study

    out = Path(out)
    study = Study.open(profile_name, out, data_dir, cohort=cohort, **(overrides or {}))
    p = study.profile
    rows = study.rows(biomarkers=biomarkers)
    folds = study.folds()
    names = DECLARED_ORDER + (BIOMARKER_ARMS if biomarkers else ())
    groups = groups_of(rows)
    if permute_labels == 1:
        y = np.random.default_rng([p.seed, 1]).permutation(get_task(task).labels(rows))
        classifiers = [n for n in names if not split_arm_name(n)[1]]
        oofs = run_arms_together(classifiers, rows, folds, task, profile=p, y=y, tag="_perm1", cache=study.paths.models)
    else:
        oofs = run_arms(rows, folds, task, names, p, study.paths.models)
    (out / "oof").mkdir(parents=True, exist_ok=True)
    for name, oof in oofs.items():
        atomic_to_csv(oof, out / "oof" / f"{name}.csv")
    results = [evaluation.score_arms(oofs, task, p.n_boot, p.seed, groups),
               evaluation.score_arms(oofs, task, p.n_boot, p.seed, groups, singleton_patients(rows), "singletons")]
    if permute_labels != 1 and task == "binary":
        preds = tscore_predictions(rows, folds, TSCORE_ARMS, p, study.paths.models)
        results.append(evaluation.tscore_regression(preds, p.n_boot, p.seed, groups))
    results = pd.concat(results, ignore_index=True).assign(permuted_labels=permute_labels == 1)
    comparisons = declared_comparisons({task: oofs}, p.n_boot, p.seed, groups)
    if biomarkers:
        bio = evaluation.paired_comparisons(oofs, BIOMARKER_COMPARISONS, p.n_boot, p.seed, groups)
        comparisons = pd.concat([comparisons, bio.assign(task=task, role="biomarker", p_holm=np.nan)],
                                ignore_index=True)
    atomic_to_csv(comparisons.assign(permuted_labels=permute_labels == 1), out / "comparisons.csv")
    if permute_labels > 1:
        null = permutation_null(rows, folds, task, p, permute_labels, n_networks=p.network_permutations,
                                networks=("fusion", "clinical") if p.network_permutations else (),
                                cache=study.paths.models)
        atomic_to_csv(null, out / "permutation_null.csv")
        atomic_to_csv(permutation_pvalues(null, results), out / "permutation_pvalues.csv")
    return atomic_to_csv(results, out / "results.csv")


def age_adjusted(oofs: dict[str, pd.DataFrame], rows: pd.DataFrame, models: tuple[str, ...]) -> pd.DataFrame:
    """Does an arm's out-of-fold score add to age? Likelihood-ratio test of logit(score) added to age."""
    ages = rows.set_index("patient_id")["age_years"]
    out = []
    for name in models:
        if name not in oofs:
            continue
        avg = evaluation.average_over_repeats(oofs[name])
        p = np.clip(avg[evaluation.prob_columns(avg)[1]].to_numpy(), 1e-6, 1 - 1e-6)
        age = ages.loc[avg["patient_id"]].to_numpy()
        test = evaluation.likelihood_ratio_test(avg["y_true"], (age - age.mean()) / age.std(), np.log(p / (1 - p)))
        out.append({"model": name, "lr_statistic": test["statistic"], "p_value": test["p_value"],
                    "adds_to_age": test["p_value"] < 0.05})
    return pd.DataFrame(out)


def primary_power(oofs: dict[str, pd.DataFrame], alpha: float = 0.05, power: float = 0.8) -> pd.DataFrame:
    """The smallest AUROC gain of fusion over clinical this cohort detects (binary), with the
    observed correlation of the two scores and, for reading it, at lower correlations too."""
    ids, y, fusion, clinical = evaluation.aligned(oofs, *PRIMARY)
    observed = evaluation.detectable_gain_summary(y, fusion[:, 1], clinical[:, 1], alpha, power)
    first = observed.iloc[0]
    rows = [observed.assign(correlation_source="observed")]
    for r in (0.9, 0.7, 0.5):
        gain = evaluation.detectable_auroc_gain(int(first["n_pos"]), int(first["n_neg"]), float(first["auroc_ref"]),
                                                r, alpha, power)
        rows.append(observed.assign(correlation=r, detectable_gain=gain, correlation_source="assumed"))
    return pd.concat(rows, ignore_index=True)


def positive_control(rows: pd.DataFrame, folds: pd.DataFrame, profile: Profile, cache: Path | None, n_boot: int,
                     seed: int, groups: pd.Series | None = None,
                     save_oof: Callable[[pd.DataFrame, str, str], Any] | None = None) -> pd.DataFrame:
    """The image arm, same folds and profile, asked for what a knee radiograph shows in larger studies:
    the patient's sex (AUROC) and age (Pearson r, MAE in years). ``save_oof(oof, arm, task)`` keeps
    the two out-of-fold tables (e.g. `Study.save_oof`)."""
    sex = run_arm("image", rows, folds, "sex", profile=profile, cache=cache, screening=False)
    age = cross_validate("image", rows, folds, "age", profile=profile, cache=cache)
    if save_oof is not None:
        save_oof(sex, "image", "sex")
        save_oof(age, "image", "age")
    sex_metrics = evaluation.oof_metrics(sex, n_boot, seed, groups=groups)
    sex_metrics = sex_metrics[sex_metrics["metric"] == "auroc"].assign(target="sex")
    age_metrics = evaluation.tscore_regression({"image": age}, n_boot, seed, groups)
    age_metrics = age_metrics.drop(columns=["task"]).assign(target="age")
    table = pd.concat([sex_metrics.assign(model="image"), age_metrics], ignore_index=True)
    return table[["target", "model", "metric", "value", "ci_low", "ci_high"]]


def split_hygiene(rows: pd.DataFrame, grouped: pd.DataFrame, naive: pd.DataFrame, profile: Profile, n_boot: int,
                  seed: int) -> pd.DataFrame:
    """1-NN on pixels under person-grouped folds and under naive folds: what duplicates crossing a
    split would do to any image model."""
    oofs = {f"pixel_1nn ({kind} folds)": run_arm("pixel_1nn", rows, folds, "binary", profile=profile, screening=False)
            for kind, folds in (("grouped", grouped), ("naive", naive))}
    return evaluation.score_arms(oofs, "binary", n_boot, seed)
