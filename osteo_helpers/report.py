"""What the notebooks show, built from the run's tables: readable tables and the sentences that state numbers.

Every sentence here is a rule applied to a table (a CI that excludes zero or does not), so the
words in the report always follow the numbers; the notebooks only call these.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from . import evaluation
from .ablation import DECLARED_ORDER, PRIMARY, arm_label
from .config import Profile

DASH = "–"


def ci(value: float, low: float, high: float, digits: int = 3, signed: bool = False) -> str:
    """``0.951 [0.915–0.976]``: a value and its CI on one line (non-breaking)."""
    if value is None or not np.isfinite(value):
        return "not computed"
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return fmt.format(value)
    return f"{fmt.format(value)}\u00a0[{fmt.format(low)}{DASH}{fmt.format(high)}]"


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


def comparison_table(comparisons: pd.DataFrame, n_boot: int) -> pd.DataFrame:
    """The declared comparisons as a person reads them: labels, difference [CI], raw and Holm p."""
    out = pd.DataFrame({
        "task": comparisons["task"],
        "role": comparisons["role"],
        "A": comparisons["model_a"].map(arm_label),
        "B": comparisons["model_b"].map(arm_label),
        "A - B [95% CI]": [ci(d, lo, hi, signed=True) for d, lo, hi in
                           comparisons[["diff", "ci_low", "ci_high"]].itertuples(index=False)],
        "p (bootstrap)": [evaluation.format_p(p, n_boot // 2) for p in comparisons["p_bootstrap"]],
        "p (Holm)": [evaluation.format_p(p, n_boot // 2) if r == "secondary" else "primary: not adjusted"
                     for p, r in zip(comparisons["p_holm"], comparisons["role"], strict=False)],
        "patients": comparisons["n_patients"],
    })
    if "p_delong" in comparisons:
        out.insert(6, "p (DeLong)", [evaluation.format_p(p) if np.isfinite(p) else "3 classes: n/a"
                                     for p in comparisons["p_delong"]])
    return out.reset_index(drop=True)


def _row(comparisons: pd.DataFrame, task: str, a: str, b: str) -> pd.Series | None:
    hit = comparisons[(comparisons["task"] == task) & (comparisons["model_a"] == a) & (comparisons["model_b"] == b)]
    return None if hit.empty else hit.iloc[0]


def difference_words(row: pd.Series) -> str:
    """'adds to' / 'is worse than' / 'shows no detectable difference from', from the CI alone."""
    if row["ci_low"] > 0:
        return "is better than"
    if row["ci_high"] < 0:
        return "is worse than"
    return "shows no detectable difference from"


def _gain(value: float, room: float) -> str:
    """A detectable gain, or what it means that none is: not even a perfect model would be found."""
    if np.isfinite(value):
        return f"{value:.3f}"
    return f"none up to the maximum possible ({room:.3f}, to AUROC 1)"


def power_words(power: pd.DataFrame) -> str:
    """The smallest detectable gain, at the observed correlation of the two scores and at lower ones."""
    observed = power[power["correlation_source"] == "observed"].iloc[0]
    assumed = power[power["correlation_source"] == "assumed"].sort_values("correlation", ascending=False)
    room = 1 - float(observed["auroc_ref"]) if "auroc_ref" in observed else np.nan
    gains = ", ".join(f"{_gain(g, room)} at correlation {r:.1f}"
                      for g, r in zip(assumed["detectable_gain"], assumed["correlation"], strict=True))
    return (f"with {int(observed['n_pos'] + observed['n_neg'])} patients ({int(observed['n_neg'])} normal) the "
            f"smallest AUROC gain over the clinical model that the cohort detects with {observed['power']:.0%} power "
            f"at alpha {observed['alpha']:.2f} is {_gain(observed['detectable_gain'], room)} at the observed "
            f"correlation of the two scores ({observed['correlation']:.3f}), and {gains}; smaller gains cannot be "
            "ruled out")


def image_adds(comparisons: pd.DataFrame, task: str, power: pd.DataFrame | None = None) -> str:
    """The study's answer for one task: what the image adds beyond the clinical model and beyond age."""
    metric = "AUROC" if task == "binary" else "macro AUROC"
    clinical, age = _row(comparisons, task, *PRIMARY), _row(comparisons, task, PRIMARY[0], "age")
    if clinical is None:
        return "The fusion and clinical arms were not both run, so the question is not answered here."
    text = (f"The residual fusion ({metric} {clinical['value_a']:.3f}) {difference_words(clinical)} the clinical "
            f"model of age and sex ({clinical['value_b']:.3f}): difference "
            f"{ci(clinical['diff'], clinical['ci_low'], clinical['ci_high'], signed=True)}")
    text += "." if power is None else f"; {power_words(power)}."
    if age is not None:
        text += (f" Against age alone the fusion {difference_words(age)} it "
                 f"({ci(age['diff'], age['ci_low'], age['ci_high'], signed=True)}).")
    return text


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


def osteopenia_text(results: pd.DataFrame, cohort: pd.DataFrame, arm: str = "fusion") -> str:
    """Why the middle class is hard, with the arm's per-class AUROCs."""
    main = results[(results["subset"] == "all") & (results["model"] == arm)].set_index("metric")
    ages = cohort.groupby("diagnosis")["age_years"].mean()
    n = int((cohort["diagnosis"] == "osteopenia").sum())
    auc = {c: ci(*main.loc[f"auroc_{c}", ["value", "ci_low", "ci_high"]])
           for c in ("normal", "osteopenia", "osteoporosis")}
    return (f"Osteopenia is the largest class ({n} of {len(cohort)} patients) and lies between the others in T-score "
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


def permutation_text(pvalues: pd.DataFrame, profile: Profile) -> str:
    """Which arms were re-run on permuted labels, how often, and what the primary difference got."""
    table = pvalues.set_index("model")
    arms = [m for m in table.index if " - " not in m]
    words = ", ".join(f"{arm_label(m)} p = {evaluation.format_p(table.at[m, 'p_value'])} "
                      f"(observed {table.at[m, 'observed']:.3f}, null mean {table.at[m, 'null_mean']:.3f})"
                      for m in arms)
    n = int(table["n_permutations"].max()) if len(table) else 0
    text = f"Re-run on {n} label permutations: {words}."
    primary = f"{PRIMARY[0]} - {PRIMARY[1]}"
    if primary in table.index:
        row = table.loc[primary]
        text += (f" The primary difference (fusion - clinical) was re-run on {int(row['n_permutations'])} "
                 f"permutations: permutation p = {evaluation.format_p(row['p_value'])}.")
    else:
        text += (" The networks were not re-run on permuted labels in this profile "
                 f"(`network_permutations` = {profile.network_permutations}), so the primary difference has no "
                 "permutation p-value here; its inference is the paired bootstrap above.")
    return text


def probe_text(results: pd.DataFrame) -> str:
    """Does the acquisition alone predict the label?"""
    row = results[(results["model"] == "batch_only") & (results["metric"] == "auroc") & (results["subset"] == "all")]
    if row.empty:
        return "The acquisition probe was not run."
    r = row.iloc[0]
    says = ("it predicts the label, so an image model could exploit the acquisition batch" if r.ci_low > 0.5 else
            "it does not predict the label better than chance (its CI includes 0.5)")
    return f"Acquisition attributes alone: AUROC {ci(r.value, r.ci_low, r.ci_high)}; {says}."


def positive_control_text(control: pd.DataFrame, results: pd.DataFrame) -> str:
    """What the positive control says about the image arm's result."""
    c = control.set_index(["target", "metric"])
    sex = c.loc[("sex", "auroc")]
    r, mae = c.loc[("age", "pearson_r")], c.loc[("age", "mae")]
    text = (f"From the image alone, the network predicts sex with AUROC {ci(sex.value, sex.ci_low, sex.ci_high)} and "
            f"age with Pearson r {ci(r.value, r.ci_low, r.ci_high)} (MAE {ci(mae.value, mae.ci_low, mae.ci_high, 1)} "
            "years). ")
    learned = [what for what, ok in (("sex", sex["ci_low"] > 0.5), ("age", r["ci_low"] > 0)) if ok]
    missed = [what for what in ("sex", "age") if what not in learned]
    if len(learned) == 2:
        return text + ("Both are learned (their CIs exclude chance), so the pipeline does see anatomy in these "
                       "images; the image arm's result is a fair, if weak, test of what the image adds.")
    if learned:
        return text + (f"The pipeline learns {learned[0]} (its CI excludes chance) but not {missed[0]}: it sees some "
                       "anatomy, far less than larger studies report, so the image arm's null result says little "
                       "about whether the bone holds information a stronger pipeline (pretrained weights, full "
                       "resolution) could use.")
    return text + ("Neither signal is detectably above chance, although both are visible on knee radiographs in "
                   "larger studies: **the image arm's null result reflects this pipeline (or the image-to-record "
                   "link), not the absence of bone information**.")


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


def group_table(manifest: pd.DataFrame) -> pd.DataFrame:
    """Every split group of more than one patient: its members with diagnosis, age and sex, and why linked."""
    sizes = manifest.groupby("split_group")["patient_id"].transform("size")
    members = manifest[sizes > 1].copy()
    members["identical image"] = members["duplicate_group"].notna()
    cols = ["split_group", "patient_id", "diagnosis", "age_years", "sex", "identical image"]
    return members[cols].sort_values(["split_group", "patient_id"]).reset_index(drop=True)


def age_text(age: pd.DataFrame) -> str:
    return (f"Age is a strong confounder: mean age {age.loc['normal', 'mean']:.0f} years in the normal group (every "
            f"normal patient is {age.loc['normal', 'min']:.0f}-{age.loc['normal', 'max']:.0f} years old), "
            f"{age.loc['osteopenia', 'mean']:.0f} in osteopenia and {age.loc['osteoporosis', 'mean']:.0f} in "
            "osteoporosis. Any model, image-based or not, can score well by recognising age; every model is compared "
            "with age alone, and within the age band where the classes overlap.")


def shorten_paths(text: str) -> str:
    """Absolute paths of the machine that ran the analysis, made relative (project) or cut to their last part."""
    import re

    from .config import PROJECT_ROOT

    text = str(text).replace(str(PROJECT_ROOT) + "/", "").replace(str(PROJECT_ROOT), ".")
    return re.sub(r"(?<![\w.])/(?:[^\s/`'\"]+/)+([^\s/`'\"]+)", r"…/\1", text)


def provenance_text(prov: dict) -> str:
    """The run record as a list: run, status, commit, command, data, device."""
    git = prov["git"]
    status = prov.get("status", "unknown")
    failure = prov.get("failure") or {}
    if status == "failed" and failure:
        status += f" in {failure.get('notebook', '?')} (cell {failure.get('cell', '?')})"
    tree = " (**working tree had uncommitted changes**)" if git["dirty"] else " (clean tree)"
    return shorten_paths(
        f"- **Run:** `{prov['run_id']}`, started {prov['started']}, status **{status}**\n"
        f"- **Commit:** `{git['commit']}` on `{git['branch']}`{tree}\n"
        f"- **Command:** `{prov['command']}`\n"
        f"- **Data:** `{prov['data']['data_dir']}`; all files match the shipped checksum registry: "
        f"**{prov['data']['matches_registry']}**\n"
        f"- **Spreadsheet SHA-256:** `{prov['data']['spreadsheet_sha256']}`\n"
        f"- **Pretrained weights:** {prov.get('weights', 'not recorded')}\n"
        f"- **Device:** {prov['device']}")


def earlier_runs(prov: dict) -> pd.DataFrame:
    """Earlier runs into the same folder (their files may still be there)."""
    return pd.DataFrame([{"run": r["run_id"], "status": r.get("status", "unknown"), "commit": r["git"]["commit"][:10],
                          "dirty": r["git"]["dirty"], "steps": ", ".join(s["name"] for s in r.get("steps", []))}
                         for r in prov.get("previous_runs", [])])


def run_summary(run_dir: Path, seconds: float, since: dt.datetime | None = None) -> list[str]:
    """What a finished run says in a few lines: the headline AUROCs with CIs, the answer, the time.
    With ``since``, only tables written by this run are quoted (never an earlier run's left in the folder)."""
    tables = Path(run_dir) / "tables"
    lines = [f"finished in {int(seconds // 60)} min {int(seconds % 60)} s"]

    def quoted(path: Path) -> bool:
        return path.is_file() and (since is None or path.stat().st_mtime >= since.timestamp())

    results = tables / "results_binary.csv"
    comparisons = tables / "comparisons.csv"
    if quoted(results):
        table = pd.read_csv(results)
        main = table[(table["subset"] == "all") & (table["metric"] == "auroc")].set_index("model")
        for name in [n for n in ("age", "clinical", "fusion", "fusion_tscore") if n in main.index]:
            row = main.loc[name]
            lines.append(f"binary AUROC, {arm_label(name)}: {ci(row.value, row.ci_low, row.ci_high)}")
    if quoted(comparisons):
        row = _row(pd.read_csv(comparisons), "binary", *PRIMARY)
        if row is not None:
            lines.append(f"fusion - clinical (primary): {ci(row['diff'], row['ci_low'], row['ci_high'], signed=True)}"
                         f", {row['conclusion']}")
    return lines


def power_table(power: pd.DataFrame) -> pd.DataFrame:
    """The power analysis as a person reads it: where no gain reaches the power, it says so (no NaN)."""
    room = 1 - power["auroc_ref"]
    return pd.DataFrame({
        "correlation of the two scores": [f"{r:.3f} ({source})" for r, source in
                                          zip(power["correlation"], power["correlation_source"], strict=True)],
        "clinical AUROC": power["auroc_ref"].round(3),
        "smallest detectable gain": [_gain(g, m) for g, m in zip(power["detectable_gain"], room, strict=True)],
        "patients (normal)": [f"{int(p + n)} ({int(n)})" for p, n in zip(power["n_pos"], power["n_neg"], strict=True)],
    })
