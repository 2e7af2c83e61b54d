"""What the cohort can and cannot say: sentences generated from a run's tables.

Every sentence applies a rule to numbers (the declared test's verdict, counts of folds, where
an observed value lies in its permutation null) and handles the edges: none, one or all folds,
intervals of zero width or with negative bounds, a table that lacks a row. Each thing is said
once. The notebooks, the results summary and the end-of-run summary call these; none of them
types a number.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import evaluation
from .ablation import PRIMARY, arm_label
from .config import Profile
from .control import gate
from .fileio import read_csv
from .wording import ci, number

ALPHA = 0.05


def of_folds(k: float, n: float, what: str = "folds") -> str:
    """'none of the 10 folds', '1 of 10 folds', 'all 10 folds', 'the only fold', '3 of 10 folds'."""
    if n is None or not np.isfinite(n) or int(n) == 0:
        return f"no {what}"
    k, n = int(k), int(n)
    if n == 1:
        return f"the only {what.rstrip('s')}" if k == 1 else f"not the only {what.rstrip('s')}"
    if k == 0:
        return f"none of the {n} {what}"
    if k == n:
        return f"all {n} {what}"
    return f"{k} of {n} {what}"


def kept_epochs_text(history: pd.DataFrame, arm: str = "fusion") -> str:
    """Which epoch each fold's early stopping kept, epoch 0 being the untrained (clinical) state."""
    if history.empty or "best" not in history:
        return f"No training history of the {arm_label(arm)} is stored, so the kept epochs are not known."
    kept = history[history["best"].astype(bool)].groupby(["seed", "fold"])["epoch"].first()
    n, untrained = len(kept), int((kept == 0).sum())
    text = f"The {arm_label(arm)} kept its untrained state (the clinical model) in **{of_folds(untrained, n)}**"
    trained = sorted(int(e) for e in kept[kept > 0])
    if not trained:
        return text + "; no fold found an epoch on which the image term lowered the inner validation loss."
    epochs = ", ".join(map(str, trained))
    word = "epoch" if len(trained) == 1 else "epochs"
    rest = "the other fold" if len(trained) == 1 else f"the other {len(trained)} folds"
    if untrained == 0:
        rest = "every fold" if n > 1 else "the fold"
    return text + f"; {rest} kept {word} {epochs}."


# ----------------------------------------------------------------------------- comparisons


def direction(row: pd.Series) -> int:
    """+1 when A is better than B by the row's own test, -1 worse, 0 no detectable difference or a tie:
    `evaluation.direction`, the rule of the table's ``conclusion`` (a secondary row by its Holm-adjusted
    p-value, any other by its 95% CI, ties below `evaluation.TIE_TOLERANCE`)."""
    secondary = row.get("role") == "secondary" and np.isfinite(row.get("p_holm", np.nan))
    return evaluation.direction(row["diff"], row["ci_low"], row["ci_high"], row["p_holm"] if secondary else None,
                                ALPHA, lower_is_better=row.get("metric") == "mae")


def difference_words(row: pd.Series) -> str:
    if not estimable(row):
        return "cannot be compared (it kept its untrained state in every fold) with"
    return {1: "is better than", -1: "is worse than", 0: "shows no detectable difference from"}[direction(row)]


def row_of(comparisons: pd.DataFrame, task: str, a: str, b: str) -> pd.Series | None:
    hit = comparisons[(comparisons["task"] == task) & (comparisons["model_a"] == a) & (comparisons["model_b"] == b)]
    return None if hit.empty else hit.iloc[0]


def holm_words(p: float) -> str:
    """'Holm-adjusted p = 0.114' (a bootstrap p is never 0: (1 + b) / (1 + B))."""
    return f"Holm-adjusted p = {evaluation.format_p(p)}"


def fold_words(row: pd.Series) -> str:
    """The fold-level reading of a paired comparison: mean difference and which arm each fold favours."""
    n = row.get("n_folds", np.nan)
    if n is None or not np.isfinite(n) or int(n) == 0:
        return ""
    a, b = arm_label(row["model_a"]), arm_label(row["model_b"])
    if row.get("folds_tied", 0) == n:
        return f"fold by fold the two AUROCs are equal in {of_folds(n, n)}"
    sd = row.get("fold_diff_sd", np.nan)
    spread = f" (SD {number(sd)})" if np.isfinite(sd) else ""
    parts = [f"{a} better in {of_folds(row['folds_a_better'], n)}", f"{b} in {of_folds(row['folds_b_better'], n)}"]
    if row.get("folds_tied", 0):
        parts.append(f"tied in {of_folds(row['folds_tied'], n)}")
    return (f"fold by fold the difference averages {number(row['fold_diff_mean'], signed=True)}{spread}, "
            + ", ".join(parts))


def untrained_words(row: pd.Series) -> str:
    k, n = row.get("a_untrained_folds", np.nan), row.get("a_fitted_folds", np.nan)
    if k is None or not np.isfinite(k):
        return ""
    return f"{arm_label(row['model_a'])} kept its untrained state, the clinical model itself, in {of_folds(k, n)}"


def comparison_text(comparisons: pd.DataFrame, task: str) -> str:
    """The primary comparison for one task and, after it, the fusion against age alone."""
    metric = "AUROC" if task == "binary" else "macro AUROC"
    row, age = row_of(comparisons, task, *PRIMARY), row_of(comparisons, task, PRIMARY[0], "age")
    if row is None:
        return "The fusion and clinical arms were not both run, so the question is not answered here."
    pooled = ci(row["diff"], row["ci_low"], row["ci_high"], signed=True)
    text = (f"The residual fusion ({metric} {row['value_a']:.3f}) {difference_words(row)} the clinical model of age "
            f"and sex ({row['value_b']:.3f}): pooled difference {pooled}")
    text += "".join(f"; {words}" for words in (fold_words(row), untrained_words(row)) if words) + "."
    if age is not None:
        text += (f" Against age alone the fusion {difference_words(age)} it "
                 f"({ci(age['diff'], age['ci_low'], age['ci_high'], signed=True)}"
                 + (f", {holm_words(age['p_holm'])}" if age.get("role") == "secondary" else "") + ").")
    return text


# ----------------------------------------------------------------------------- nulls and discrimination


def _row(table: pd.DataFrame, model: str, metric: str, subset: str = "all") -> pd.Series | None:
    hit = table[(table["model"] == model) & (table["metric"] == metric)]
    if "subset" in hit:
        hit = hit[hit["subset"] == subset]
    return None if hit.empty else hit.iloc[0]


def discrimination_facts(results: pd.DataFrame, model: str, pvalues: pd.DataFrame | None = None,
                         metric: str = "auroc") -> tuple[bool, str] | None:
    """Whether an arm discriminates, and the numbers that say so (None: the arm was not run).

    With a permutation null the observed value is read against it (p of the greater tail); without
    one, against the CI. A value below 0.5 is read as no discrimination: the bootstrap holds each
    fitted model fixed, so an interval below 0.5 reflects unstable fits, not a reversed signal."""
    row = _row(results, model, metric)
    if row is None:
        return None
    fold_mean, fold_sd = _row(results, model, f"{metric}_fold_mean"), _row(results, model, f"{metric}_fold_sd")
    facts = f"pooled AUROC {ci(row['value'], row['ci_low'], row['ci_high'], reference=0.5)}"
    if fold_mean is not None and np.isfinite(fold_mean["value"]):
        sd = f", SD {number(fold_sd['value'])}" if fold_sd is not None and np.isfinite(fold_sd["value"]) else ""
        facts += f"; fold-averaged {number(fold_mean['value'])}{sd}"
    null = None if pvalues is None else pvalues[(pvalues["model"] == model) & (pvalues["metric"] == metric)]
    if null is not None and len(null):
        n = null.iloc[0]
        facts += (f"; the permutation null of its pooled AUROC ({int(n['n_permutations'])} permutations, each with "
                  f"its folds made afresh) centres at {number(n['null_mean'])}, "
                  f"p = {evaluation.format_p(n['p_value'])}")
        below = n.get("p_less", np.nan)
        if np.isfinite(below) and below < ALPHA:
            facts += (f"; it lies below its own null too (p = {evaluation.format_p(below)} for as low): "
                      "unexplained by chance, for a reason the data do not tell (unstable fits, the acquisition "
                      "batches, the image-to-record link are candidates)")
        return bool(n["p_value"] < ALPHA), facts
    return bool(row["ci_low"] > 0.5), facts


def discrimination_words(results: pd.DataFrame, model: str, pvalues: pd.DataFrame | None = None,
                         metric: str = "auroc") -> str:
    """'showed no discrimination (...)' or 'discriminated (...)' (`discrimination_facts`): never 'worse than
    chance'."""
    found = discrimination_facts(results, model, pvalues, metric)
    if found is None:
        return f"was not run ({arm_label(model)})"
    learned, facts = found
    return f"{'discriminated' if learned else 'showed no discrimination'} ({facts})"


def permutation_text(pvalues: pd.DataFrame, profile: Profile) -> str:
    """Which arms were re-run on permuted labels, how often, where their nulls centre and what the
    primary difference got."""
    arms = pvalues[~pvalues["model"].str.contains(" - ") & pvalues["metric"].isin(["auroc", "macro_auroc"])]
    if arms.empty:
        return "No arm was re-run on permuted labels."
    n = int(arms["n_permutations"].max())
    words = "; ".join(f"{arm_label(r.model)}: observed {r.observed:.3f}, null mean {r.null_mean:.3f} (central 95% "
                      f"{r.null_q025:.3f} to {r.null_q975:.3f}), p = {evaluation.format_p(r.p_value)}"
                      for r in arms.itertuples())
    text = (f"Re-run on {n} label permutations, the folds re-stratified on each permuted label vector (same "
            f"grouping): {words}.")
    primary = pvalues[pvalues["model"] == f"{PRIMARY[0]} - {PRIMARY[1]}"]
    if len(primary):
        row = primary.iloc[0]
        text += (f" The primary difference (fusion - clinical) was re-run on {int(row['n_permutations'])} "
                 f"permutations: permutation p = {evaluation.format_p(row['p_value'])}.")
    else:
        text += (" The fusion was not re-run on permuted labels in this profile "
                 f"(`network_permutations` = {profile.network_permutations}), so the primary difference has no "
                 "permutation p-value here; its inference is the paired bootstrap.")
    return text


# ----------------------------------------------------------------------------- calibration


def calibration_words(results: pd.DataFrame, model: str) -> str:
    """Calibration intercept and slope of one arm, read in words (only where the CI excludes the ideal)."""
    slope, intercept = _row(results, model, "calibration_slope"), _row(results, model, "calibration_intercept")
    scaled = _row(results, model, "brier_scaled")
    label = arm_label(model)
    if slope is None or intercept is None:
        return f"The calibration of the {label} was not measured."
    parts = []
    if not np.isfinite(slope["value"]):  # separated or constant predictions: the recalibration has no maximum
        return (f"{label[0].upper()}{label[1:]}: calibration slope not estimable on this cohort (its predictions "
                "separate the classes, or do not vary, so the recalibration fit has no maximum); intercept "
                f"{ci(intercept['value'], intercept['ci_low'], intercept['ci_high'], 2)}.")
    if slope["ci_high"] < 0:
        parts.append("its predictions carry no usable ranking (slope below 0: unstable fits, not a reversed signal)")
    elif slope["ci_high"] < 1:
        parts.append("its predictions are too extreme (slope below 1: overfitted)")
    elif slope["ci_low"] > 1:
        parts.append("its predictions are too moderate (slope above 1: too close to the average risk)")
    if intercept["ci_low"] > 0:
        parts.append("it under-estimates the risk on average (intercept above 0)")
    elif intercept["ci_high"] < 0:
        parts.append("it over-estimates the risk on average (intercept below 0)")
    text = (f"{label[0].upper()}{label[1:]}: slope {ci(slope['value'], slope['ci_low'], slope['ci_high'], 2)}, "
            f"intercept {ci(intercept['value'], intercept['ci_low'], intercept['ci_high'], 2)}; "
            + ("; ".join(parts) if parts else "no miscalibration detectable (both CIs hold the ideal)"))
    if scaled is not None and np.isfinite(scaled["value"]):
        better = "better" if scaled["ci_low"] > 0 else "worse" if scaled["ci_high"] < 0 else "no better"
        text += (f"; scaled Brier {ci(scaled['value'], scaled['ci_low'], scaled['ci_high'], 2)}, {better} than "
                 "giving everyone the prevalence")
    return text + "."


def calibration_text(results: pd.DataFrame, names: Sequence[str]) -> str:
    return " ".join(calibration_words(results, m) for m in names if _row(results, m, "calibration_slope") is not None)


def coverage_words(coverage: pd.DataFrame) -> str:
    """Where a T-score model's 95% intervals hold too few or too many measured values, judged where 95% is
    the benchmark: in bins of the predicted T-score (`evaluation.conditional_coverage`). Per measured WHO
    class the coverage is set beside what the model itself expects there, never against 95%: the class is
    chosen by the T-score, so even a correct model covers less at the edges (selection on the outcome)."""
    bins = coverage[coverage["conditioned_on"] == "predicted mean"]
    if bins.empty:
        return ""
    word = {3: "third", 4: "quarter", 5: "fifth"}.get(len(bins), f"one of {len(bins)} bins")
    text = (f"; by {word} of the predicted T-score: "
            + ", ".join(f"{r.coverage:.0%} ({r.group})" for r in bins.itertuples()))
    low = [r.group for r in bins.itertuples() if r.coverage_ci_high < 0.95]
    high = [r.group for r in bins.itertuples() if r.coverage_ci_low > 0.95]
    flags = ([f"below 95% where the predicted T-score is {' or '.join(low)} (the spread is too narrow or the mean "
              "biased there)"] if low else []) + (
             [f"above 95% where it is {' or '.join(high)} (the spread is too wide there)"] if high else [])
    text += "; " + ("; ".join(flags) if flags else "every bin's CI holds 95%")
    classes = coverage[coverage["conditioned_on"] == "measured class"]
    if len(classes):
        text += ("; per measured WHO class " + ", ".join(f"{r.group} {r.coverage:.0%} (the model expects "
                                                         f"{r.expected_coverage:.0%})" for r in classes.itertuples())
                 + ", not a shortfall against 95%: the class is chosen by the T-score (selection on the outcome)")
    return text


def tscore_text(regression: pd.DataFrame, mae: pd.DataFrame | None = None,
                coverage: pd.DataFrame | None = None) -> str:
    """The T-score models in words: error against the no-information MAE, R², the coverage of their 95%
    predictive intervals, judged given the predictors (``coverage``: `evaluation.conditional_coverage` with
    a ``model`` column; `coverage_words`); then the paired MAE."""
    sentences = []
    for model in dict.fromkeys(regression["model"]):
        get = lambda metric, m=model: _row(regression, m, metric)  # noqa: E731
        mae_row, base, r2 = get("mae"), get("mae_no_information"), get("r2")
        if mae_row is None:
            continue
        text = f"The {arm_label(model)}: MAE {ci(mae_row['value'], mae_row['ci_low'], mae_row['ci_high'])}"
        if base is not None:
            text += f" against {number(base['value'])} from the training folds' mean"
        if r2 is not None:
            text += f", R² {ci(r2['value'], r2['ci_low'], r2['ci_high'], 2)}"
        overall = get("coverage_95")
        if overall is not None:
            text += f"; its 95% intervals hold {overall['value']:.0%} of the measured T-scores"
            if coverage is not None and "model" in coverage:
                text += coverage_words(coverage[coverage["model"] == model])
        sentences.append(text + ".")
    if mae is not None and len(mae):
        row = mae.iloc[0]
        sentences.append(f"Paired, the {arm_label(row['model_a'])} minus the {arm_label(row['model_b'])} MAE is "
                         f"{ci(row['diff'], row['ci_low'], row['ci_high'], signed=True)}: {row['conclusion']}.")
    return " ".join(sentences)


# ----------------------------------------------------------------------------- the clinical model

TERM_WORDS = {"intercept": "intercept", "age_years": "age (per year)", "sex_male": "male (against female)",
              "sex_female": "female (against male)"}


def equation_table(equation: pd.DataFrame) -> pd.DataFrame:
    """`arms.logistic_equation` as a person reads it: coefficient [95% CI] and odds ratio per term."""
    return pd.DataFrame({
        "term": [TERM_WORDS.get(t, t) for t in equation["term"]],
        "coefficient (log-odds) [95% CI]": [ci(v, lo, hi, 3, signed=True) for v, lo, hi in
                                            equation[["coefficient", "ci_low", "ci_high"]].itertuples(index=False)],
        "odds ratio [95% CI]": [ci(np.exp(v), np.exp(lo), np.exp(hi), 3) for v, lo, hi in
                                equation[["coefficient", "ci_low", "ci_high"]].itertuples(index=False)],
    })


def equation_text(equation: pd.DataFrame, n: int, ages: tuple[float, float] | None = None) -> str:
    """logit P(low BMD) = a + b x age + c x male, with the numbers of the fit on all ``n`` patients; with
    ``ages`` (`arms.overlap_range` of age and the outcome), the ages it holds for and what it says beyond them."""
    terms = equation.set_index("term")["coefficient"]
    if terms.isna().all():
        how = ("no age holds both normal and low-BMD patients" if ages is not None and not np.all(np.isfinite(ages))
               else "its inputs separate the two classes completely")
        return (f"The clinical model fitted on all {n} patients has no coefficients: **not estimable on this cohort**, "
                f"because {how}, so the likelihood has no maximum and the coefficients would be infinite.")
    parts = [number(terms["intercept"])]
    for term, value in terms.drop("intercept").items():
        name = {"age_years": "age in years", "sex_male": "[male]", "sex_female": "[female]"}.get(term, term)
        parts.append(f"{'-' if value < 0 else '+'} {abs(value):.4f} × {name}")
    text = (f"logit P(low BMD) = {' '.join(parts)}, fitted without penalty on all {n} patients ([male] is 1 for "
            "men, 0 for women); the table gives each coefficient's Wald 95% CI.")
    if ages is None or not np.all(np.isfinite(ages)) or "age_years" not in terms:
        return text
    low, high = ages
    beyond = int(np.floor(high)) + 1 if terms["age_years"] > 0 else int(np.ceil(low)) - 1
    sexes = {"women": 0.0, "men": 0.0}
    for term, value in terms.items():
        if term in ("sex_male", "sex_female"):
            sexes["men" if term == "sex_male" else "women"] += value
    risk = {who: 1 / (1 + np.exp(-(terms["intercept"] + terms["age_years"] * beyond + shift)))
            for who, shift in sexes.items()}
    where = f"from age {beyond}" if beyond > high else f"at age {beyond} and younger"
    return text + (f" **It holds for ages {low:g} to {high:g} only**, where both normal and low-BMD patients were "
                   f"seen; outside that range it extrapolates from one class: {where} it gives P(low BMD) of at least "
                   + " and ".join(f"{p:.2f} for {who}" for who, p in risk.items())
                   + ", because no patient of the other class was seen there, not because the risk was measured.")


# ----------------------------------------------------------------------------- the conclusion


def estimable(row: pd.Series) -> bool:
    """False for a comparison a residual arm cannot make (`ablation.with_training_states`): it kept its
    untrained state in every fold."""
    value = row.get("estimable", True)
    return not (value is False or str(value).lower() == "false")


def primary_sentence(row: pd.Series, interpreted: bool = True) -> str:
    """The primary comparison's verdict in one sentence: not estimable, no detectable difference, better or worse.
    Not ``interpreted`` (the positive-control gate failed): a difference is stated, not read as what the image
    adds."""
    k, n = row.get("a_untrained_folds", np.nan), row.get("a_fitted_folds", row.get("n_folds", np.nan))
    pooled = ci(row["diff"], row["ci_low"], row["ci_high"], signed=True)
    if not estimable(row):
        return (f"The residual fusion kept its untrained state, the clinical model of age and sex itself, in "
                f"{of_folds(k, n)}: its image term never moved from zero, so the primary comparison is **not "
                f"estimable on this cohort** (its difference, {pooled}, holds by construction) and this cohort cannot "
                "tell whether the knee radiograph adds to age and sex.")
    how = direction(row)
    folds = fold_words(row)
    if how == 0:
        first = "The residual fusion"
        if k is not None and np.isfinite(k):
            first += f" reverted to the clinical model in {of_folds(k, n)} and"
        first += " showed no detectable difference from it"
        return first + (f" (pooled AUROC difference {pooled}{'; ' + folds if folds else ''}), so this cohort cannot "
                        "tell whether the knee radiograph adds to age and sex.")
    verb = "better" if how > 0 else "worse"
    first = (f"The residual fusion was {verb} than the clinical model of age and sex (pooled "
             f"AUROC difference {pooled}{'; ' + folds if folds else ''})")
    if not interpreted:
        return first + ", a difference the positive-control gate leaves uninterpreted."
    return first + (", so in this cohort the knee radiograph " +
                    ("added to age and sex." if how > 0 else "did not add to age and sex."))


def conclusion(comparisons: pd.DataFrame, results: pd.DataFrame, pvalues: pd.DataFrame | None = None,
               control: pd.DataFrame | None = None) -> str:
    """What this cohort supports, in two to four sentences (binary task): the primary comparison, the
    positive-control gate, and the image arm, interpreted only when the gate passed."""
    row = row_of(comparisons, "binary", *PRIMARY)
    if row is None:
        return "The residual fusion and the clinical model were not both run, so the study's question is open."
    passed, facts = gate(control)
    sentences = [primary_sentence(row, interpreted=bool(passed))]
    if passed is None:
        sentences.append(f"The image results are not interpreted: {facts}.")
    else:
        sentences.append(f"The positive-control gate {'passed' if passed else 'failed'} ({facts})"
                         + ("." if passed else ", so the image results are reported but not interpreted."))
    found = discrimination_facts(results, "image", pvalues)
    if found is not None:
        learned, numbers = found
        sentences.append(f"The image arm alone {'discriminated' if learned else 'showed no discrimination'} "
                         f"({numbers})." if passed else f"The image arm alone, not interpreted: {numbers}.")
    return " ".join(sentences)


def study_answer(tables: Path) -> str:
    """`conclusion` from a run's tables: what the book's first page, the results summary and the end of
    `osteo run` say (the README quotes it from the last measured run)."""
    tables = Path(tables)
    if not (tables / "comparisons.csv").is_file() or not (tables / "results_binary.csv").is_file():
        return "This run did not make the declared comparisons, so it does not answer the study's question."

    read = {name: read_csv(tables / f"{name}.csv") for name in ("permutation_pvalues", "positive_control")
            if (tables / f"{name}.csv").is_file()}
    return conclusion(read_csv(tables / "comparisons.csv"), read_csv(tables / "results_binary.csv"),
                      read.get("permutation_pvalues"), read.get("positive_control"))
