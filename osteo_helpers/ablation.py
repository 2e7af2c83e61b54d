"""The ablation: every arm on the shared folds, the declared comparisons and the checks around them.

The arms, their order and the comparisons are declared here, and the methods chapter repeats
them: tables list arms in ``DECLARED_ORDER``, never by score. The primary comparison is the
residual ``fusion`` against the declared ``clinical`` model (binary AUROC, paired); every
other comparison belongs to the secondary family, whose bootstrap p-values are Holm-adjusted
together (``p_holm``) and whose verdicts follow the adjusted p-values. When each of these was
declared, and what had been seen before, is the protocol page of the book (``book/protocol.md``).

Image-biomarker arms (``biomarker``, ``biomarker+clinical``, ``roi_cnn``, ``roi_cnn+clinical``)
score only the patients with a localised knee; they are compared with the clinical arms on
the patients both predicted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from joblib import Parallel, delayed

from . import evaluation, progress, splits
from .config import Profile
from .tabular import CLINICAL_FEATURES, transform_columns
from .tasks import CLASSES_3, get_task

MAIN_ARMS = ("age", "ost", "clinical", "clinical_full", "tabular", "image", "image_cnn", "fusion_concat", "fusion")
TSCORE_ARMS = ("age_tscore", "clinical_tscore", "fusion_tscore")
PROBE_ARMS = ("gbm", "batch_only", "pixel_1nn")
DECLARED_ORDER = MAIN_ARMS + TSCORE_ARMS + PROBE_ARMS
NETWORK_ARMS = ("tabular", "image_cnn", "fusion_concat", "fusion", "fusion_tscore", "roi_cnn", "roi_cnn+clinical")
#: arms that choose a screening threshold (a cross-fit inside every fold): the declared arms but the
#: from-scratch baseline, which is read by its AUROC only (its threshold's inner fits would double its cost)
SCREENING_ARMS = tuple(a for a in DECLARED_ORDER if a != "image_cnn")
BIOMARKER_ARMS = ("biomarker", "biomarker+clinical", "roi_cnn", "roi_cnn+clinical")
#: arms re-run under every label permutation (cheap enough for hundreds: the image arm's head is fitted on
#: cached features), so the image arm has a null of its own
PERMUTATION_ARMS = ("age", "ost", "clinical", "clinical_full", "image")
#: network arms re-run under the first ``network_permutations`` permutations (the primary's
#: fusion): the profile decides how many their cost allows
NETWORK_PERMUTATION_ARMS = ("fusion",)
#: residual arms: their untrained state is the clinical model, so the folds that kept it are counted
RESIDUAL_ARMS = ("tabular", "fusion", "fusion_tscore")
#: each residual arm and the arm its untrained state is: comparing the two is not estimable when the residual
#: arm kept that state in every fold
RESIDUAL_BASES = {"tabular": "clinical", "fusion": "clinical", "fusion_tscore": "clinical_tscore"}
#: arms compared with the clinical model in the declared comparisons (power is stated for those whose
#: scores differ from the clinical model's)
CLINICAL_CHALLENGERS = ("fusion", "fusion_concat", "tabular", "clinical_full")
#: within-class correlations at which the detectable gain is stated (declared 2026-12-04 in protocol amendment 2,
#: after results had been seen)
DECLARED_CORRELATIONS = (0.9, 0.7, 0.5)
#: an arm whose scores correlate with the clinical model's at least this much (within class) has
#: scores that are the clinical model's: a power statement at that correlation describes the
#: design, not the image
SAME_SCORES = 0.95
#: the regression comparison of the T-score models (paired MAE, reported beside the family, not in it)
TSCORE_MAE_PAIR = ("fusion_tscore", "clinical_tscore")

PRIMARY = ("fusion", "clinical")
SECONDARY = (
    ("fusion", "age"),                         # beyond age alone
    ("fusion_tscore", "clinical_tscore"),      # the primary question in the T-score model
    ("fusion_concat", "clinical"),             # the original concatenation design
    ("tabular", "clinical"),                   # does the rest of the allow-list add (network)?
    ("clinical_full", "clinical"),             # ... (regularised logistic regression)?
    ("clinical", "age"),                       # does sex add to age?
    ("clinical", "ost"),                       # the declared clinical model against the tool in use
)
#: the tasks whose secondary comparisons are Holm-adjusted as one family (methods: declared comparisons)
FAMILY_TASKS = ("binary", "3class")
BIOMARKER_COMPARISONS = tuple((a, b) for a in BIOMARKER_ARMS for b in ("age", "clinical"))

#: how arms are named in figures and tables a person reads
ARM_LABELS = {
    "age": "age", "ost": "OST index", "clinical": "clinical (age, sex)", "clinical_full": "clinical (all inputs, LR)",
    "tabular": "clinical network (all inputs)", "image": "image only (pretrained features)",
    "image_cnn": "image only (CNN from scratch)", "fusion_concat": "fusion (concatenation)",
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
    from .arms.persons import split_groups  # deferred: imports torch

    return split_groups(rows)


def who_classes(rows: pd.DataFrame) -> pd.Series:
    """patient_id -> WHO class name of the measured T-score (the strata of interval coverage)."""
    return rows.set_index("patient_id")["label_3class"].map(dict(enumerate(CLASSES_3)))


def singleton_patients(rows: pd.DataFrame) -> set[str]:
    """Patients alone in their split group (the sensitivity analysis drops the others, whose
    image-to-patient link is doubtful)."""
    from .arms.persons import split_groups  # deferred: imports torch

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
    from .arms import run_arms_together  # deferred: imports torch

    return run_arms_together(names, rows, folds, task, screening=SCREENING_ARMS, profile=profile, cache=cache,
                             progress_bar=progress_bar)


def tscore_predictions(rows: pd.DataFrame, folds: pd.DataFrame, names: tuple[str, ...], profile: Profile,
                       cache: Path | None, progress_bar: bool = True) -> dict[str, pd.DataFrame]:
    """The T-score arms' own tables (``y_true`` is the T-score; ``pred_mean``, ``pred_sd``): the same
    fitted folds as their binary and three-class views."""
    from .arms import cross_validate, fittable, split_arm_name  # deferred: imports torch

    return {name: cross_validate(name, rows, folds, "tscore", profile=profile, cache=cache,
                                 progress_bar=progress_bar) for name in fittable(names, rows)[0]
            if split_arm_name(name)[1]}


def declared_comparisons(oofs_by_task: dict[str, dict[str, pd.DataFrame]], n_boot: int, seed: int,
                         groups: pd.Series | None = None, subset: set[str] | None = None,
                         subset_name: str = "all", states: pd.DataFrame | None = None) -> pd.DataFrame:
    """The primary and the secondary comparisons of every task, with ``role`` and ``p_holm``.

    The primary comparison (binary) is tested alone at 5%; the secondary family (the other
    binary pairs and every three-class pair) is Holm-adjusted as one family, and its verdicts
    follow ``p_holm``. With ``states`` (`training_states`), ``a_untrained_folds`` and
    ``a_fitted_folds`` say in how many folds a residual arm A kept its untrained state.
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
    return with_training_states(evaluation.with_holm(table, table["role"] == "secondary"), states)


def tscore_comparison(predictions: dict[str, pd.DataFrame], n_boot: int, seed: int,
                      groups: pd.Series | None = None) -> pd.DataFrame:
    """The paired MAE of the T-score models (``TSCORE_MAE_PAIR``), role ``supplementary``: reported
    beside the declared family (added with the protocol's amendment of issue 19), not in it."""
    table = evaluation.paired_mae(predictions, [TSCORE_MAE_PAIR], n_boot, seed, groups)
    return table.assign(task="tscore", role="supplementary", p_holm=np.nan) if len(table) else table


def training_states(cache: Path | None, names: tuple[str, ...], task: str, folds: pd.DataFrame) -> pd.DataFrame:
    """For each residual arm among ``names``: in how many of its fitted folds early stopping kept the
    untrained state (epoch 0, the clinical model), from the fold histories; rows in the results
    table's columns, metrics ``untrained_folds`` and ``fitted_folds``."""
    from .arms import load_histories, split_arm_name  # deferred: imports torch

    rows: list[dict[str, Any]] = []
    if cache is None:
        return pd.DataFrame(rows, columns=evaluation.RESULT_COLUMNS)
    layout = set(zip(folds["seed"].astype(int), folds["fold"].astype(int), strict=True))
    for name in names:
        if name not in RESIDUAL_ARMS:
            continue
        history = load_histories(cache, name, split_arm_name(name)[1] or task)
        if history.empty or "best" not in history:
            continue
        history = history[[(int(s), int(f)) in layout for s, f in zip(history["seed"], history["fold"], strict=True)]]
        kept = history[history["best"].astype(bool)].groupby(["seed", "fold"])["epoch"].first()
        for metric, value in (("untrained_folds", int((kept == 0).sum())), ("fitted_folds", len(kept))):
            rows.append({"model": name, "task": task, "metric": metric, "value": value, "ci_low": np.nan,
                         "ci_high": np.nan, "subset": "all", "n_patients": folds["patient_id"].nunique()})
    return pd.DataFrame(rows, columns=evaluation.RESULT_COLUMNS)


def with_training_states(comparisons: pd.DataFrame, states: pd.DataFrame | None) -> pd.DataFrame:
    """``a_untrained_folds`` / ``a_fitted_folds`` of each row's arm A (empty where A is not residual), and
    ``estimable``: False where a residual arm is compared with its own untrained state (`RESIDUAL_BASES`) and
    kept that state in every fold, so that the difference is 0 by construction, not a finding; such a row's
    ``conclusion`` says so."""
    out = comparisons.assign(a_untrained_folds=np.nan, a_fitted_folds=np.nan,
                             estimable=comparisons["estimable"].fillna(True).astype(bool)
                             if "estimable" in comparisons else True)
    if states is None or states.empty:
        return out
    wide = states.pivot_table(index=["model", "task"], columns="metric", values="value", aggfunc="first")
    for i, row in out.iterrows():
        key = (row["model_a"], row["task"])
        if key in wide.index:
            out.at[i, "a_untrained_folds"] = wide.at[key, "untrained_folds"]
            out.at[i, "a_fitted_folds"] = wide.at[key, "fitted_folds"]
    stuck = (out["a_fitted_folds"].gt(0) & out["a_untrained_folds"].eq(out["a_fitted_folds"])
             & (out["model_a"].map(RESIDUAL_BASES) == out["model_b"]))
    out.loc[stuck, "estimable"] = False
    out.loc[stuck, "conclusion"] = [
        f"not estimable on this cohort: {a} kept its untrained state, {b} itself, in every fold (the difference "
        "is 0 by construction, not a finding)" for a, b in zip(out.loc[stuck, "model_a"], out.loc[stuck, "model_b"],
                                                                strict=True)]
    return out


def _permuted_auroc(k: int, rows: pd.DataFrame, folds: pd.DataFrame, task: str, names: tuple[str, ...],
                    profile: Profile, cache: Path | None) -> list[dict[str, Any]]:
    """Permutation ``k``: the patients' labels shuffled among people (the WHO class with them, which stratifies
    the inner folds of an arm's own search; a person's images keep one outcome), the folds made afresh stratified
    on them (same layout and grouping), and each arm's pooled and fold-averaged AUROC."""
    from .arms import cross_validate  # deferred: imports torch
    from .arms.persons import permutation_by_person  # deferred: imports torch

    order = permutation_by_person(rows, np.random.default_rng([profile.seed, k]))
    y_perm = get_task(task).labels(rows)[order]
    rows = rows.assign(label_3class=rows["label_3class"].to_numpy()[order])
    perm_folds = splits.restratify(folds, rows, y_perm)
    out = []
    for name in names:
        with progress.silenced():
            oof = cross_validate(name, rows, perm_folds, task, profile=profile, y=y_perm, tag=f"_perm{k}",
                                 screening=False, cache=cache if name in NETWORK_ARMS else None, progress_bar=False)
        metric = evaluation.discrimination_metric(oof)
        avg = evaluation.average_over_repeats(oof)
        proba = avg[evaluation.prob_columns(avg)].to_numpy()
        value = (evaluation.binary_point_metrics(avg["y_true"], proba[:, 1])["auroc"] if proba.shape[1] == 2 else
                 evaluation.multiclass_point_metrics(avg["y_true"], proba, get_task(task).classes)["macro_auroc"])
        fold_mean = evaluation.fold_summary(oof).set_index("metric").at[f"{metric}_fold_mean", "value"]
        out += [{"permutation": k, "model": name, "metric": metric, "value": value},
                {"permutation": k, "model": name, "metric": f"{metric}_fold_mean", "value": float(fold_mean)}]
    return out


#: label permutations from which the classical arms' null runs in worker processes: each worker's start
#: (importing the package) costs about 3 s, more than 10 smoke permutations in this process (3.8 s against
#: 5.1 s in two workers, measured 2026-12-05)
PARALLEL_FROM = 20


def permutation_null(rows: pd.DataFrame, folds: pd.DataFrame, task: str, profile: Profile, n: int,
                     classical: tuple[str, ...] = PERMUTATION_ARMS, networks: tuple[str, ...] = (),
                     n_networks: int = 0, cache: Path | None = None, n_jobs: int = 2) -> pd.DataFrame:
    """AUROC of each arm under ``n`` label permutations: ``permutation, model, metric, value``, with
    two metrics per arm and permutation, the pooled AUROC (as the results table's ``auroc``, macro
    for three classes) and the fold-averaged one (``..._fold_mean``).

    Each permutation shuffles the labels and re-stratifies the folds on them (same folds, repeats,
    seeds and grouping by ``split_group``; `splits.restratify`), so an arm without signal centres
    at 0.5. Classical arms run every permutation (``n_jobs`` at a time, joblib, from `PARALLEL_FROM`
    permutations on); the network arms named in ``networks`` run the first ``n_networks``
    permutations only (their folds are cached), on the same permuted labels and folds as the
    classical arms' permutations of the same number.
    """
    from .arms import fittable  # deferred: imports torch

    classical, networks = fittable(classical, rows)[0], fittable(networks, rows)[0]
    progress.note(f"label permutations: {n} for {', '.join(classical)}"
                  + (f"; {n_networks} for {', '.join(networks)}" if n_networks and networks else ""))
    tabular_rows = rows.drop(columns=["image", "roi_tiles"], errors="ignore")  # what the workers need: no pixels
    jobs = Parallel(n_jobs=n_jobs if n >= PARALLEL_FROM else 1, return_as="generator")(
        delayed(_permuted_auroc)(k, tabular_rows, folds, task, classical, profile, None) for k in range(1, n + 1))
    records = [r for job in progress.track(jobs, "label permutations", total=n) for r in job]
    for k in progress.track(range(1, min(n_networks, n) + 1), "network label permutations"):
        records += _permuted_auroc(k, rows, folds, task, networks, profile, cache)
    return pd.DataFrame(records, columns=["permutation", "model", "metric", "value"])


def permutation_pvalues(null: pd.DataFrame, results: pd.DataFrame) -> pd.DataFrame:
    """Permutation p-values of the observed AUROCs (pooled and fold-averaged) and, where both arms
    were permuted, of the primary difference (fusion - clinical)."""
    metrics = ["auroc", "macro_auroc", "auroc_fold_mean", "macro_auroc_fold_mean"]
    observed = results[(results["subset"] == "all") & results["metric"].isin(metrics)]
    observed = observed.drop_duplicates(["model", "metric"])[["model", "metric", "value"]]
    observed = observed[observed["model"].isin(set(null["model"]))]
    table = evaluation.permutation_summary(null, observed)
    a, b = PRIMARY
    wide = null[null["metric"] == "auroc"].pivot_table(index="permutation", columns="model", values="value")
    if a in wide and b in wide:
        obs = observed[observed["metric"] == "auroc"].set_index("model")["value"]
        diffs = (wide[a] - wide[b]).dropna().to_numpy()
        table = pd.concat([table, pd.DataFrame([{
            "model": f"{a} - {b}", "metric": "auroc_difference", "observed": float(obs[a] - obs[b]),
            "null_mean": float(diffs.mean()), "null_q025": float(np.quantile(diffs, 0.025)),
            "null_q95": float(np.quantile(diffs, 0.95)), "null_q975": float(np.quantile(diffs, 0.975)),
            "n_permutations": len(diffs), "p_value": evaluation.permutation_p_value(obs[a] - obs[b], diffs),
            "p_less": evaluation.permutation_p_value(obs[a] - obs[b], diffs, "less")}])], ignore_index=True)
    return table


def age_adjusted(oofs: dict[str, pd.DataFrame], rows: pd.DataFrame, models: tuple[str, ...]) -> pd.DataFrame:
    """Does an arm's out-of-fold score add to age? Likelihood-ratio test of logit(score) added to age. An arm
    whose scored patients hold fewer than two of a class (`evaluation.too_few`) has no test and no row."""
    ages = rows.set_index("patient_id")["age_years"]
    out = []
    for name in models:
        if name not in oofs:
            continue
        avg = evaluation.average_over_repeats(oofs[name])
        if evaluation.too_few(avg["y_true"], evaluation.class_names_from(avg)):
            continue
        p = np.clip(avg[evaluation.prob_columns(avg)[1]].to_numpy(), 1e-6, 1 - 1e-6)
        age = ages.loc[avg["patient_id"]].to_numpy()
        test = evaluation.likelihood_ratio_test(avg["y_true"], (age - age.mean()) / age.std(), np.log(p / (1 - p)))
        out.append({"model": name, "lr_statistic": test["statistic"], "p_value": test["p_value"],
                    "adds_to_age": test["p_value"] < 0.05})
    return pd.DataFrame(out, columns=["model", "lr_statistic", "p_value", "adds_to_age"])


def primary_power(oofs: dict[str, pd.DataFrame], alpha: float = 0.05, power: float = 0.8) -> pd.DataFrame:
    """The smallest AUROC gain over the clinical model this cohort detects (binary, two-sided DeLong
    at ``alpha`` with ``power``): at the declared correlations
    (``DECLARED_CORRELATIONS``; ``model`` "any"), and for each challenger of the clinical model
    (``CLINICAL_CHALLENGERS``) whose scores differ from the clinical model's (within-class
    correlation below ``SAME_SCORES``) at its observed correlation. An arm whose scores are the
    clinical model's gets a row without a gain (``correlation_source`` "same scores"): a power
    statement at a correlation its own design produced would describe the design, not the image."""
    ref = PRIMARY[1]
    first = next((a for a in CLINICAL_CHALLENGERS if a in oofs), None)
    if first is None or ref not in oofs:
        raise ValueError("power needs the clinical model and at least one of its challengers")
    _, y, _, clinical = evaluation.aligned(oofs, first, ref)
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    auroc_ref = float(evaluation.binary_point_metrics(y, clinical[:, 1])["auroc"])
    rows = [{"model": "any", "correlation_source": "declared", "correlation": r, "n_pos": n_pos, "n_neg": n_neg,
             "auroc_ref": auroc_ref, "auroc_new": np.nan, "observed_gain": np.nan, "alpha": alpha, "power": power,
             "detectable_gain": evaluation.detectable_auroc_gain(n_pos, n_neg, auroc_ref, r, alpha, power)}
            for r in DECLARED_CORRELATIONS]
    same = same_scores(oofs)
    for name in CLINICAL_CHALLENGERS:
        if name in same:
            rows.append({"model": name, "correlation_source": "same scores", "correlation": same[name], "n_pos": n_pos,
                         "n_neg": n_neg, "auroc_ref": auroc_ref, "alpha": alpha, "power": power,
                         "detectable_gain": np.nan})
        elif name in oofs:
            _, y, new, clinical = evaluation.aligned(oofs, name, ref)
            summary = evaluation.detectable_gain_summary(y, new[:, 1], clinical[:, 1], alpha, power).iloc[0]
            rows.append({"model": name, "correlation_source": "observed", **summary.to_dict()})
    return pd.DataFrame(rows)


def same_scores(oofs: dict[str, pd.DataFrame]) -> dict[str, float]:
    """The challengers of the clinical model whose scores are the clinical model's (within-class
    correlation at least ``SAME_SCORES``), with that correlation."""
    out = {}
    for name in CLINICAL_CHALLENGERS:
        if name in oofs and PRIMARY[1] in oofs:
            _, y, new, clinical = evaluation.aligned(oofs, name, PRIMARY[1])
            r = evaluation.within_class_correlation(y, new[:, 1], clinical[:, 1])
            if r >= SAME_SCORES:
                out[name] = r
    return out


def candidate_parameters(rows: pd.DataFrame, profile: Profile) -> dict[str, int]:
    """Parameters each declared binary model estimates (a network's trainable weights), for the
    events-per-parameter statement: age, OST and the clinical model count their inputs."""
    from .arms.features import n_components  # deferred: imports torch
    from .models import FeatureInput, FusionNet, ResidualNet, build_model  # deferred: imports torch

    columns = len(transform_columns(rows))
    base = len(transform_columns(rows).query("`clinical feature` in @CLINICAL_FEATURES"))
    count = lambda net: sum(p.numel() for p in net.parameters() if p.requires_grad)  # noqa: E731
    components = n_components(profile, len(rows))
    nets: dict[str, FusionNet | ResidualNet] = {
        "tabular": ResidualNet(base, 2, extra_dim=columns),
        "image_cnn": build_model("image", 2, profile.encoder, width=profile.cnn_width),
        "fusion_concat": FusionNet("fusion", 2, FeatureInput(components), columns),
        "fusion": ResidualNet(base, 2, encoder=FeatureInput(components)),
    }
    return {"age": 1, "ost": 1, "clinical": len(CLINICAL_FEATURES), "clinical_full": columns,
            "image": components, **{name: count(net) for name, net in nets.items()}}


def sample_size_table(rows: pd.DataFrame, parameters: dict[str, int]) -> pd.DataFrame:
    """Per declared model: candidate parameters, events (the smaller class: normal BMD) per parameter,
    and the patients Riley et al. (2020) ask for at this prevalence (their conservative R^2)."""
    events = int(min(rows["label_binary"].sum(), len(rows) - rows["label_binary"].sum()))
    prevalence = float(rows["label_binary"].mean())
    out = []
    for name, p in parameters.items():
        need = evaluation.riley_sample_size(p, prevalence)
        out.append({"model": name, "candidate_parameters": p, "events": events, "events_per_parameter": events / p,
                    "patients": len(rows), "patients_required": need["n_required"],
                    "enough": len(rows) >= need["n_required"]})
    return pd.DataFrame(out)


def split_hygiene(rows: pd.DataFrame, grouped: pd.DataFrame, naive: pd.DataFrame, profile: Profile, n_boot: int,
                  seed: int) -> pd.DataFrame:
    """1-NN on pixels under person-grouped folds and under naive folds: what duplicates crossing a
    split would do to any image model. Scored per image under both: naive folds split a person's images
    across folds, where no one score per person exists."""
    from .arms import run_arm  # deferred: imports torch

    images = rows.drop(columns="person_id", errors="ignore")
    oofs = {f"pixel_1nn ({kind} folds)": run_arm("pixel_1nn", images, folds, "binary", profile=profile,
                                                 screening=False)
            for kind, folds in (("grouped", grouped), ("naive", naive))}
    return evaluation.score_arms(oofs, "binary", n_boot, seed)
