"""External validation of a saved bundle: score every patient of a cohort, measure, write one folder.

The core (`evaluate`, `validate`) takes cohort rows and a loaded `Bundle` and knows nothing of
where the rows came from: one row per image with ``patient_id``, the clinical inputs by their tidy
names (``tabular.INPUT_FEATURES``), ``label_binary`` (the truth), optionally ``t_score``, a site
column and a person column (named by the caller), ``image`` (letterboxed at the bundle's size; None
with ``image_problem`` where there is none) and ``pixel_sha256`` (the decoded pixels' checksum, which
tells the images the bundle was trained on). `images.cohort_rows` gives those rows for any cohort, the
published dataset included.

The folder is built beside its target and renamed into place, so it is never half-written:
``metrics.csv`` (every number; the contract: ``auroc``, ``brier``, ``calibration_intercept``,
``calibration_slope``, per site where there are sites), ``comparison.csv`` (fusion minus clinical),
``predictions.csv``, ``refused.csv``, ``input_flags.csv``, ``unseen_inputs.csv``, ``reliability.csv``,
``decision_curve.csv``, ``recalibration.csv``, ``figures/*.png``, ``report.html`` and ``validation.json``.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..bundle import Bundle
from ..errors import UsageError
from ..fileio import atomic_to_csv, atomic_write_text
from ..folders import check_output_folder, exclusive, swap_in
from ..patients import BadInputError
from ..wording import counted
from .inputs import OUTCOME, Overlap, check_rows, flag_counts, training_overlap
from .metrics import MODELS, curves, fusion_minus_clinical, per_patient, validation_metrics, versions
from .report import figures, html_page
from .result import Validation
from .sites import site_counts, site_notes

FACTS_NAME = "validation.json"


def _scored_rows(bundle: Bundle, checked: Any, site: str | None, person: str | None,
                 overlap: Overlap) -> pd.DataFrame:
    """The bundle's outputs per scored row with the truth, site, person, the flag on used inputs and whether
    the image was a training image."""
    table = bundle.score(checked.patients)
    rows = checked.rows
    table.insert(1, "y_true", rows[OUTCOME].astype(int).to_numpy())
    if "t_score" in rows:
        table.insert(2, "t_score", rows["t_score"].to_numpy())
    table["site"] = rows[site].astype(str).to_numpy() if site else "all"
    groups = rows[person] if person else pd.Series(np.nan, index=rows.index)
    table["group"] = groups.where(groups.notna(), rows["patient_id"]).astype(str).to_numpy()
    flagged = set(checked.flags.loc[checked.flags["used_by_model"].astype(bool), "patient_id"])
    table["outside_training"] = table["patient_id"].isin(flagged)
    table["in_training_set"] = overlap.in_training[checked.kept] if overlap.recorded else pd.NA
    return table


def evaluate(rows: pd.DataFrame, bundle: Bundle, *, site: str | None = None, person: str | None = None,
             recalibrate: bool = False, n_boot: int | None = None, seed: int | None = None,
             cohort: str = "cohort rows", cohort_source: str | None = None) -> Validation:
    """Score the rows with the bundle and measure both of its models (see `metrics`); nothing is written.

    ``site``, ``person``: the columns holding each row's site and person (bootstrap groups), or None.
    ``cohort``: the cohort's name (its spec's), ``cohort_source``: where it lies (both for the report).
    ``n_boot``, ``seed``: default to the bundle's profile. BadInputError when no row can be scored,
    UsageError when the scored patients hold one class only.
    """
    profile = bundle.facts["profile"]
    n_boot = int(profile["n_boot"] if n_boot is None else n_boot)
    seed = int(profile["seed"] if seed is None else seed)
    for name, column in (("site", site), ("person", person)):
        if column is not None and column not in rows:
            raise UsageError(f"{name} column {column!r} is not in the cohort rows")
    if rows.empty:
        raise BadInputError([f"{cohort}: the table holds no rows"])
    checked = check_rows(rows, bundle, site)
    if not checked.patients:
        raise BadInputError([f"{cohort}: none of its {len(rows)} rows can be scored:",
                             *checked.refused["problem"].tolist()])
    overlap = training_overlap(rows, bundle)
    scored = _scored_rows(bundle, checked, site, person, overlap)
    patients = per_patient(scored)
    thresholds = {"fusion": bundle.threshold, "clinical": float(bundle.facts["arms"]["clinical"]["threshold"])}
    patients["screen_positive"] = patients[MODELS["fusion"]] >= thresholds["fusion"]
    patients["clinical_positive"] = patients[MODELS["clinical"]] >= thresholds["clinical"]
    n_low = int(patients["y_true"].sum())
    if n_low in (0, len(patients)):
        raise UsageError(f"{cohort}: every scored patient is {'low BMD' if n_low else 'normal'}; validation needs "
                         "patients of both classes")
    try:
        scores, coefficients = versions(patients, recalibrate, seed)
    except ValueError as exc:
        raise UsageError(f"--recalibrate: {exc}") from exc
    for (model, recal), p in scores.items():
        if recal != "none":
            patients[f"{MODELS[model]}_recalibrated_{recal}"] = p
    metrics = validation_metrics(patients, scores, thresholds, site, n_boot, seed)
    reliability, decision = curves(patients, scores, n_boot, seed)
    notes = site_notes(site_counts(patients["y_true"], patients["site"])) if site else []
    refused_rows = len(rows) - len(checked.rows)
    refused_patients = len(set(checked.refused["patient_id"]) - set(patients["patient_id"]))
    if refused_rows:
        notes.insert(0, f"{refused_rows} of the {counted(len(rows), 'row')} refused and not scored "
                        f"({counted(refused_patients, 'patient')} left without a score); refused.csv lists every "
                        "problem of every refused row.")
    facts = bundle.facts
    summary = {
        "bundle": str(bundle.path), "profile": profile["name"], "created": facts.get("created", "?"),
        "commit": facts.get("git", {}).get("commit", "?"), "threshold": thresholds["fusion"],
        "thresholds": thresholds, "cohort": cohort, "cohort_source": cohort_source or cohort, "rows": len(rows),
        "patients": len(patients),
        "n_low_bmd": n_low, "n_normal": len(patients) - n_low, "refused_rows": int(refused_rows),
        "refused_patients": int(refused_patients), "training_overlap": overlap.facts(),
        "flagged_patients": int(patients["outside_training"].sum()), "site_column": site, "person_column": person,
        "resampled": f"persons ({person})" if person else "patients", "n_boot": n_boot, "seed": seed,
        "recalibrate": recalibrate, "osteo_helpers": __version__,
        "validated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    return Validation(patients, metrics, coefficients, reliability, decision, checked.flags, checked.refused, scores,
                      summary, notes, fusion_minus_clinical(patients, n_boot, seed))


def write(result: Validation, folder: Path) -> None:
    """Every table, figure and the HTML page of a validation, into an empty folder."""
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    counts = flag_counts(result.flags, result.summary["patients"])
    tables = {"metrics": result.metrics, "comparison": result.comparison, "predictions": result.predictions,
              "refused": result.refused, "input_flags": result.flags, "unseen_inputs": counts,
              "reliability": result.reliability, "decision_curve": result.decision,
              "recalibration": result.coefficients}
    for name, table in tables.items():
        atomic_to_csv(table, folder / f"{name}.csv")
    summary = result.summary
    stamp = f"validation of {Path(summary['bundle']).name} on {summary['cohort']} · profile {summary['profile']}"
    paths = figures(folder / "figures", result, stamp)
    atomic_write_text(folder / "report.html", html_page(result, counts, paths))
    atomic_write_text(folder / FACTS_NAME, json.dumps(summary, indent=2, default=str))


def check_target(out: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Path:
    """The output folder, refused before any work: inside the data, a file, or a folder of other things."""
    target = check_output_folder(out, "--out", data_dir)
    if target.is_dir() and any(target.iterdir()) and not (target / FACTS_NAME).is_file():
        raise UsageError(f"--out {target}: holds files but no validation; choose an empty or new folder")
    return target


def validate(rows: pd.DataFrame, bundle: Bundle, out: str | os.PathLike, **options: Any) -> Validation:
    """`evaluate` the rows and write the folder ``out`` (replacing an earlier validation there) atomically,
    holding the folder's writer lock. ``options``: those of `evaluate`."""
    target = check_target(out)
    result = evaluate(rows, bundle, **options)
    with exclusive(target.parent, lock_name=f".{target.name}.osteo-writer.lock"):
        built = target.with_name(f".{target.name}.building-{os.getpid()}")
        shutil.rmtree(built, ignore_errors=True)
        try:
            write(result, built)
            swap_in(built, target)
        finally:
            shutil.rmtree(built, ignore_errors=True)
    return result
