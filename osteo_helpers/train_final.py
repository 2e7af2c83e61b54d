"""`osteo train-final` as a function: the bundle's arms fitted on every patient of a cohort, with the facts
the bundle records (data checksums, the training cohort, the clinical equation, a self-check), written
atomically. What a saved bundle is, and how it is loaded and scored, is `bundle`'s.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .arms import logistic_equation, make_arm, overlap_range
from .arms.driver import Fit, execute_fits
from .bundle import (
    BUNDLE_ARMS,
    BUNDLE_FORMAT,
    FACTS_NAME,
    SCREENING_ARM,
    Bundle,
    person_digest,
    training_ranges,
    used_inputs,
    versions,
)
from .config import Profile, get_profile
from .data import Cohort, read_registry
from .errors import UsageError
from .features import recipe_record
from .fileio import sha256_file
from .folders import check_output_folder, exclusive, swap_in
from .model_card import calibration_facts, run_evidence
from .provenance import git_state
from .signing import sign
from .study import Study
from .tabular import BOOLEAN_FEATURES, CATEGORICAL_FEATURES, CLINICAL_FEATURES, INPUT_FEATURES
from .tasks import CLASSES_3, CLASSES_BINARY, TASKS


def fit_arms(rows: pd.DataFrame, profile: Profile, progress: bool = True) -> dict[str, Any]:
    """The bundle's arms fitted on every row, each with its screening threshold: independent fits,
    run side by side by the executor (`executor.current`) when it has workers."""
    rows = rows.reset_index(drop=True)
    fits = []
    for name, task in BUNDLE_ARMS.items():
        arm = make_arm(name, "binary", profile=profile, target_sensitivity=profile.target_sensitivity,
                       random_state=profile.seed)
        if "progress" in arm.get_params():
            arm.set_params(progress=progress)
        fits.append(Fit(arm, np.arange(len(rows)), TASKS[task].labels(rows), np.arange(0),
                        {"arm": name, "task": task}, keep_arm=True))
    return {name: result.arm for name, result in zip(BUNDLE_ARMS, execute_fits(fits, rows), strict=True)}


def data_facts(study: Study) -> dict[str, Any]:
    """Checksums of what the bundle learned from (spreadsheet, every image), whether they are the
    published files (the registry shipped with the package), and the training set as `validate` compares a
    cohort with it: the checksums of the images' decoded pixels (a re-encoded copy of a training image
    matches) and the person IDs' salted digests (`bundle.person_digest`); never the images, and no ID in clear."""
    cohort = study.cohort
    spreadsheet = sha256_file(study.dataset.table_path)
    images = sorted(set(cohort["image_sha256"]))
    registry = read_registry()
    published = set(registry["sha256"])
    return {"spreadsheet_sha256": spreadsheet, "images_sha256": images,
            "matches_published_dataset": spreadsheet in published and set(images) <= published,
            "pixel_sha256": sorted(set(cohort["pixel_sha256"].dropna())),
            "person_id_sha256": sorted({person_digest(pid, spreadsheet) for pid in cohort["person_id"].astype(str)})}


def cohort_facts(study: Study) -> dict[str, Any]:
    """The training cohort as the model card describes it (size, prevalence, the known flaws)."""
    cohort, findings = study.cohort, study.findings
    normal = cohort.loc[cohort["label_binary"] == 0, "age_years"]
    low = cohort.loc[cohort["label_binary"] == 1, "age_years"]
    by_sex = cohort.groupby("sex")["label_binary"].agg(["size", "mean"])
    return {
        "patients": int(len(cohort)), "low_bmd": int(cohort["label_binary"].sum()),
        "prevalence_low_bmd": float(cohort["label_binary"].mean()),
        "classes": {c: int((cohort["label_3class"] == i).sum()) for i, c in enumerate(CLASSES_3)},
        "age_normal": [float(normal.min()), float(normal.max())], "age_low_bmd": [float(low.min()), float(low.max())],
        "by_sex": {str(s): {"patients": int(r["size"]), "prevalence_low_bmd": float(r["mean"])}
                   for s, r in by_sex.iterrows()},
        "duplicate_image_groups": len(findings["duplicate_groups"]),
        "cross_class_duplicate_groups": len(findings["cross_class_duplicate_groups"]),
        "duplicate_clinical_records": len(findings["duplicate_clinical_records"]),
        "excluded_impossible": sorted(study.excluded.values()),  # why, without the IDs (the bundle leaves the site)
    }


def clinical_equation(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """The clinical arm's model as an equation with Wald CIs (the same probabilities, unpenalised)."""
    return json.loads(logistic_equation(rows, TASKS["binary"].labels(rows)).to_json(orient="records"))


def clinical_equation_ages(rows: pd.DataFrame) -> list[float] | None:
    """The ages the clinical equation holds for: where both classes were seen in training (`arms.overlap_range`)."""
    ages = overlap_range(rows["age_years"], TASKS["binary"].labels(rows))
    return [float(a) for a in ages] if all(map(math.isfinite, ages)) else None


def _self_check_values(rows: pd.DataFrame, used: list[str]) -> dict[str, Any]:
    """A typical patient for the self-check: the median of each numeric input used, the commonest category."""
    out: dict[str, Any] = {}
    for name in used:
        column = rows[name].dropna()
        if name in CATEGORICAL_FEATURES:
            out[name] = str(column.mode().iloc[0])
        elif name in BOOLEAN_FEATURES:
            out[name] = bool(column.mode().iloc[0])
        else:
            out[name] = float(column.median())
    return out


def make_bundle(study: Study, overrides: dict[str, Any], run: dict[str, Any] | None,
                progress: bool = True) -> Bundle:
    """Fit the arms on every patient of the study and gather the facts of the bundle."""
    profile = study.profile
    rows = study.rows()
    arms = fit_arms(rows, profile, progress)
    used = sorted({c for arm in arms.values() for c in used_inputs(arm)}, key=INPUT_FEATURES.index)
    screen = arms[SCREENING_ARM]
    facts: dict[str, Any] = {
        "format": BUNDLE_FORMAT,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "profile": profile.to_dict(), "overrides": overrides,
        "training": ("refit on all patients: no patient is held out; the performance of this procedure "
                     "is the cross-validated estimate of the run's report"),
        "arms": {name: {"file": f"arms/{name}.json", "class": type(arm).__name__, "task": arm.task,
                        "threshold": float(arm.threshold_), "inputs": used_inputs(arm),
                        "image": bool(getattr(arm, "uses_image", False))} for name, arm in arms.items()},
        "classes": {"binary": list(CLASSES_BINARY), "3class": list(CLASSES_3)},
        "screening": {"arm": SCREENING_ARM, "threshold": float(screen.threshold_),
                      "target_sensitivity": profile.target_sensitivity,
                      "rule": "screen positive when p_low_bmd >= threshold",
                      "chosen_on": "cross-fitted predictions of all training patients (inner folds)"},
        "inputs": {"used": used, "accepted": list(INPUT_FEATURES),
                   "image_size": profile.image_size if profile.finetune_blocks else profile.feature_size,
                   "clinical_model": list(CLINICAL_FEATURES)},
        "encoder": recipe_record(study.recipe),
        "calibration": calibration_facts(run, SCREENING_ARM),
        "clinical_equation": clinical_equation(rows),
        "clinical_equation_ages": clinical_equation_ages(rows),
        "training_ranges": training_ranges(rows),
        "cohort": cohort_facts(study),
        "data": data_facts(study),
        "run": run,
        "versions": versions(),
        "git": git_state(),
    }
    bundle = Bundle(facts, arms)
    facts["self_check"] = bundle.make_self_check(_self_check_values(rows, used))
    return bundle


def leftovers(target: Path) -> list[Path]:
    """The hidden build and swap folders of earlier train-final runs into ``target`` (killed ones leave them)."""
    return sorted(p for pattern in (f".{target.name}.building-*", f".{target.name}.old-*")
                  for p in target.parent.glob(pattern) if p.is_dir())


def check_bundle_target(out: str | os.PathLike, data_root: Path) -> Path:
    """The bundle folder, refused before any work: inside the data, a file, or a folder holding other things."""
    target = check_output_folder(out, "--out", data_root)
    if target.is_dir() and any(target.iterdir()) and not (target / FACTS_NAME).is_file():
        raise UsageError(f"--out {target}: holds files but no model bundle; choose an empty or new folder")
    return target


def train_final(profile: str, out: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                overrides: dict[str, Any] | None = None, run_dir: str | os.PathLike | None = None,
                progress: bool = True, cohort: Cohort | str | os.PathLike | None = None,
                sign_key: bytes | None = None) -> Bundle:
    """Fit the bundle's arms on all patients and write the bundle into `out` (replacing a bundle there),
    signed with ``sign_key`` when given (`signing`).

    Input, data and folders are checked first; the folder's writer lock is held throughout; the
    bundle is built in a hidden sibling folder and renamed into place, so a crash leaves nothing
    half-written. `run_dir`: a run of the same settings whose tables give the calibration and metrics.
    """
    overrides = dict(overrides or {})
    prof = get_profile(profile, **overrides)
    dataset = Cohort.open(cohort, data_dir)  # spec, folder and layout checked before any work
    data_root = dataset.root
    target = check_bundle_target(out, data_root)
    dataset.require_usable()  # every table value and image, decoded: all problems at once, nothing written
    evidence = run_evidence(Path(run_dir), prof, dataset) if run_dir else None
    with exclusive(target.parent, lock_name=f".{target.name}.osteo-writer.lock"):
        for stale in leftovers(target):  # what a killed train-final left; the lock says none is alive
            shutil.rmtree(stale, ignore_errors=True)
        built = target.with_name(f".{target.name}.building-{os.getpid()}")
        try:
            study = Study.open(profile, built / "scratch-run", cohort=dataset, **overrides)
            bundle = make_bundle(study, overrides, evidence, progress)
            shutil.rmtree(built / "scratch-run")
            bundle.save(built)
            if sign_key is not None:
                sign(built, sign_key)
            swap_in(built, target)
        finally:
            shutil.rmtree(built, ignore_errors=True)
    bundle.path = target
    return bundle
