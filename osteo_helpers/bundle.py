"""The saved model: the primary arms refitted on every patient, written as one folder; load it and score.

`train_final` fits ``fusion`` and ``clinical`` (binary) and ``fusion_tscore`` on ALL patients of
the cohort: cross-validation has already estimated how this procedure performs (the run's report),
and a model for new patients should learn from every patient there is. Each arm chooses its
screening threshold (``threshold_``) at the profile's target sensitivity while fitting.

A bundle folder::

    bundle.json      the facts: profile, classes, threshold, calibration, inputs and their training
                     ranges, data checksums, package versions, commit, a self-check, the SHA-256
                     of every arm file, and its own seal (the SHA-256 of the rest of the facts)
    arms/<arm>.json, .safetensors, .skops
                     the fitted arms (`arms.state`: configuration as JSON, tensors as safetensors,
                     scikit-learn parts as skops; never a pickle)
    MODEL_CARD.md    generated from bundle.json (model_card.py)
    signature.json   only in a signed bundle: an HMAC-SHA256 over every other file (`signing`)

Loading needs no training data and runs no code from the folder. `Bundle.load` checks, before
using anything: the format (a format-1 bundle of pickled arms is refused with how to rebuild it),
the seal and every key it reads, the package versions, every arm file's SHA-256, and then
re-scores the saved self-check input, so a bundle that would not give the predictions it gave
when saved is never used. Every refusal is one line naming the file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.metadata
import json
import math
import os
import platform
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from . import __version__
from .config import Profile, get_profile
from .data import Cohort, read_registry
from .errors import UsageError
from .features import COLUMN as FEATURES
from .features import FeatureRecipe, encoder_identity, recipe_record, vectors
from .fileio import ChecksumError, atomic_write_text, sha256_file
from .folders import check_output_folder, exclusive
from .model_card import calibration_facts, model_card, run_evidence
from .patients import Patient, as_rows
from .provenance import git_state
from .signing import sign, verify
from .tabular import BOOLEAN_FEATURES, CATEGORICAL_FEATURES, CLINICAL_FEATURES, INPUT_FEATURES, available_inputs
from .tasks import CLASSES_3, CLASSES_BINARY, TASKS

#: 2: arms as JSON + safetensors + skops with checksums (1: pickled arms, refused)
BUNDLE_FORMAT = 2
#: the facts `Bundle.load` reads, as key paths: a bundle lacking one is refused in one line
REQUIRED_FACTS: tuple[tuple[str, ...], ...] = (
    ("seal",), ("files",), ("versions",), ("git",), ("training_ranges", "numeric"),
    ("training_ranges", "categories"), ("screening", "threshold"), ("inputs", "used"), ("profile", "image_size"),
    ("self_check", "input"), ("self_check", "output"), ("inputs", "image_size"), ("encoder",))
FACTS_NAME = "bundle.json"
CARD_NAME = "MODEL_CARD.md"
#: the saved arms and the task each is fitted for (``fusion_tscore`` fits the T-score)
BUNDLE_ARMS: dict[str, str] = {"fusion": "binary", "clinical": "binary", "fusion_tscore": "tscore"}
#: the arm whose P(low BMD) and threshold make the screening decision
SCREENING_ARM = "fusion"
#: packages whose versions must match for the saved arms to predict as they did when saved
CHECKED_PACKAGES = ("torch", "scikit-learn", "numpy")
PREDICTION_COLUMNS = ("p_low_bmd", "p_low_bmd_clinical", "p_normal", "p_osteopenia", "p_osteoporosis",
                      "t_score_mean", "t_score_low", "t_score_high", "screen_positive")
INTERVAL = 0.95
#: largest difference allowed between the self-check's saved and recomputed outputs
SELF_CHECK_TOLERANCE = 1e-6
#: relative margin around a numeric input's training range inside which a value is not flagged: a unit
#: round trip with rounding (kg through lb, m through cm, to two decimals) moves a value by less than 1e-4
RANGE_TOLERANCE = 1e-3


def versions() -> dict[str, str]:
    """The versions a bundle records and `Bundle.load` checks."""
    out = {"osteo_helpers": __version__, "python": platform.python_version()}
    for name in CHECKED_PACKAGES:
        out[name] = importlib.metadata.version(name)
    return out


def _compatible(saved: dict[str, str], here: dict[str, str]) -> list[str]:
    """The packages whose versions differ where the saved state's meaning may change: osteo_helpers and
    scikit-learn exactly, torch to the minor version, numpy to the major."""
    depth = {"osteo_helpers": None, "scikit-learn": None, "torch": 2, "numpy": 1}
    bad = []
    for name, parts in depth.items():
        a, b = str(saved.get(name, "?")).split("+")[0], here[name].split("+")[0]
        if (a.split(".")[:parts] if parts else a) != (b.split(".")[:parts] if parts else b):
            bad.append(f"{name} {saved.get(name, '?')} (here {here[name]})")
    return bad


def used_inputs(arm: Any) -> list[str]:
    """The clinical columns an arm's fitted transform reads (the arm ignores every other input)."""
    transformer = getattr(arm, "preprocessor_", None)
    if transformer is None and hasattr(arm, "model_") and hasattr(arm.model_, "steps"):
        transformer = arm.model_[0]
    columns: list[str] = []
    for _, step, cols in getattr(transformer, "transformers_", []):
        if step != "drop" and isinstance(cols, (list, tuple)):
            columns += [c for c in cols if c in INPUT_FEATURES and c not in columns]
    return [c for c in INPUT_FEATURES if c in columns]


def training_ranges(rows: pd.DataFrame) -> dict[str, Any]:
    """Min and max of every numeric clinical input and the categories seen, over the training rows."""
    numeric, categories = {}, {}
    for name in available_inputs(rows):
        column = rows[name]
        if name in CATEGORICAL_FEATURES:
            categories[name] = sorted(map(str, column.dropna().unique()))
        elif str(column.dtype) == "boolean" or pd.api.types.is_bool_dtype(column):
            categories[name] = sorted(bool(v) for v in column.dropna().unique())
        else:
            values = column.astype(float).dropna()
            numeric[name] = [float(values.min()), float(values.max())] if len(values) else None
    return {"numeric": numeric, "categories": categories}


def range_warnings(row: pd.Series, ranges: dict[str, Any]) -> list[str]:
    """An input outside its training range, or a category never seen in training. A number within
    `RANGE_TOLERANCE` of a bound is inside: a unit round trip (39 kg as 85.98 lb, 38.9999 kg) is no new value."""
    out = []
    for name, bounds in ranges["numeric"].items():
        value = row.get(name)
        if value is None or pd.isna(value):
            continue
        if bounds is None:
            out.append(f"{name} {value:g}: never recorded in training")
        elif not bounds[0] - RANGE_TOLERANCE * abs(bounds[0]) <= value <= bounds[1] + RANGE_TOLERANCE * abs(bounds[1]):
            out.append(f"{name} {value:g} outside the training range {bounds[0]:g}-{bounds[1]:g}")
    for name, seen in ranges["categories"].items():
        value = row.get(name)
        if value is None or pd.isna(value):
            continue
        if (bool(value) if isinstance(seen[0] if seen else None, bool) else str(value)) not in seen:
            out.append(f"{name} {value!r} not seen in training")
    return out


def self_check_image(size: int) -> np.ndarray:
    """A fixed test image (a diagonal ramp) for the self-check: the same on every machine."""
    return (np.add.outer(np.arange(size), np.arange(size)) * 255 // max(2 * size - 2, 1)).astype(np.uint8)


@dataclass
class Bundle:
    """Fitted arms and their facts; `predict` scores checked patients."""

    facts: dict[str, Any]
    arms: dict[str, Any]
    path: Path | None = None

    @property
    def threshold(self) -> float:
        return float(self.facts["screening"]["threshold"])

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(self.facts["inputs"]["used"])

    @property
    def image_size(self) -> int:
        """The side of the letterboxed image the arms read (the frozen encoder's input size)."""
        return int(self.facts["inputs"]["image_size"])

    @property
    def recipe(self) -> FeatureRecipe:
        return FeatureRecipe.of(get_profile("fast", **{k: v for k, v in self.facts["profile"].items()
                                                       if k.startswith("feature_")}))

    def predict(self, rows: pd.DataFrame) -> pd.DataFrame:
        """The outputs of every arm for rows holding the allow-list columns and ``image`` (the encoder's
        ``features`` are computed from it unless the rows hold them)."""
        if FEATURES not in rows:  # computed as the training features were (the same torch threads)
            threads = self.facts["profile"].get("num_threads")
            rows = rows.assign(**{FEATURES: list(vectors(np.stack(rows["image"].to_numpy()), self.recipe, threads))})
        tscore = self.arms["fusion_tscore"]
        proba = tscore.predict_proba(rows)
        mean, sd = tscore.predict_distribution(rows)
        z = stats.norm.ppf(0.5 + INTERVAL / 2)
        p_low = self.arms[SCREENING_ARM].predict_low_bmd(rows)
        return pd.DataFrame({
            "p_low_bmd": p_low, "p_low_bmd_clinical": self.arms["clinical"].predict_low_bmd(rows),
            "p_normal": proba[:, 0], "p_osteopenia": proba[:, 1], "p_osteoporosis": proba[:, 2],
            "t_score_mean": mean, "t_score_low": mean - z * sd, "t_score_high": mean + z * sd,
            "screen_positive": p_low >= self.threshold,
        })

    def score(self, patients: list[Patient]) -> pd.DataFrame:
        """One row per patient: ``patient_id``, the predictions and ``warnings`` (inputs unlike the training data,
        an image not recognised as a knee radiograph)."""
        rows = as_rows(patients)
        out = self.predict(rows)
        out.insert(0, "patient_id", rows["patient_id"].to_numpy())
        ranges = self.facts["training_ranges"]
        out["warnings"] = ["; ".join(range_warnings(row, ranges) + patient.flags)
                           for (_, row), patient in zip(rows.iterrows(), patients, strict=True)]
        return out

    # -- the self-check ----------------------------------------------------------------------
    def _self_check_rows(self, values: dict[str, Any]) -> pd.DataFrame:
        patient = Patient("self-check", {n: values.get(n) for n in INPUT_FEATURES}, self_check_image(self.image_size))
        return as_rows([patient])

    def _self_check_output(self, values: dict[str, Any]) -> pd.Series:
        """The self-check's outputs, always computed on the CPU in float32: a GPU's reduced precision
        (bf16, TF32) would move them by more than the tolerance between the machine that saved the
        bundle and the one that loads it. Patients are scored on the accelerator."""
        from .training import use_device  # deferred: imports torch and sklearn

        with use_device("cpu"):
            return self.predict(self._self_check_rows(values)).iloc[0]

    def make_self_check(self, values: dict[str, Any]) -> dict[str, Any]:
        out = self._self_check_output(values)
        return {"input": values, "image": "self_check_image(image_size)",
                "output": {k: float(out[k]) for k in PREDICTION_COLUMNS if k != "screen_positive"}}

    def verify(self) -> None:
        """Re-score the self-check input; UsageError if any output moved (other code or a damaged file)."""
        check = self.facts["self_check"]
        now = self._self_check_output(check["input"])
        moved = {k: (v, float(now[k])) for k, v in check["output"].items()
                 if not abs(float(now[k]) - v) <= SELF_CHECK_TOLERANCE}
        if moved:
            name, (saved, got) = next(iter(moved.items()))
            raise UsageError(f"--model {self.path}: does not reproduce its saved self-check ({name} {got:.6g}, "
                             f"saved {saved:.6g}) with this code; retrain with train-final or use commit "
                             f"{self.facts['git'].get('commit', '?')}")

    # -- files -------------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write the arms, bundle.json (with the arms' checksums, sealed) and MODEL_CARD.md into an empty folder."""
        from .arms.state import save_arm  # deferred: imports torch and sklearn

        (folder / "arms").mkdir(parents=True)
        files = {}
        for name, arm in self.arms.items():
            files.update({f"arms/{k}": v for k, v in save_arm(arm, folder / "arms", stem=name).items()})
        self.facts["files"] = files
        self.facts["seal"] = seal(self.facts)
        atomic_write_text(folder / FACTS_NAME, json.dumps(self.facts, indent=2, default=str))
        atomic_write_text(folder / CARD_NAME, model_card(self.facts))

    @classmethod
    def load(cls, folder: str | os.PathLike, key: bytes | None = None) -> Bundle:
        """A saved bundle, checked before use: format, seal, keys, with ``key`` its signature (`signing`),
        package versions, every arm file's SHA-256, the self-check. UsageError (one line naming the file)
        for anything else."""
        from .arms.state import ArmStateError, load_arm  # deferred: imports torch and sklearn

        folder = Path(folder)
        facts = read_facts(folder)
        if key is not None:
            verify(folder, key)
        mismatched = _compatible(facts["versions"], versions())
        if mismatched:
            raise UsageError(f"--model {folder}: saved with {', '.join(mismatched)}; install the versions in "
                             f"{FACTS_NAME} or retrain with train-final")
        check_encoder(folder, facts["encoder"])
        arms = {}
        for name, task in BUNDLE_ARMS.items():
            files = {k.removeprefix("arms/"): v for k, v in facts["files"].items() if k.startswith(f"arms/{name}.")}
            try:
                arm = load_arm(folder / "arms", files, stem=name)
            except (ChecksumError, ArmStateError) as exc:
                raise UsageError(f"--model {folder}: {exc}; the bundle is damaged or not this code's: rebuild it "
                                 "with `osteo train-final`") from exc
            if arm.task != task:
                raise UsageError(f"--model {folder}: arms/{name}.json is not a fitted {name} arm (task {arm.task})")
            arms[name] = arm
        bundle = cls(facts, arms, folder)
        bundle.verify()
        return bundle


def check_encoder(folder: Path, saved: dict[str, Any]) -> None:
    """UsageError unless the frozen encoder installed here is the one the bundle's heads were fitted on
    (same weights file, by SHA-256): the bundle stores the heads and the encoder's identity, not its weights."""
    try:
        here = encoder_identity(saved["encoder"])
    except Exception as exc:  # not installed, or a name this code does not know: one line either way
        raise UsageError(f"--model {folder}: its image encoder {saved.get('encoder')!r} cannot be loaded here "
                         f"({str(exc).splitlines()[0]})") from exc
    if here["weights_sha256"] != saved.get("weights_sha256"):
        raise UsageError(f"--model {folder}: fitted on {saved['encoder']} weights {saved.get('weights_file')} "
                         f"(SHA-256 {str(saved.get('weights_sha256'))[:12]}...), but the installed weights differ "
                         f"({here['weights_sha256'][:12]}...); install the versions of constraints.txt")


def seal(facts: dict[str, Any]) -> str:
    """SHA-256 of the facts without their seal (canonical JSON): bundle.json's own checksum."""
    rest = {k: v for k, v in facts.items() if k != "seal"}
    return hashlib.sha256(json.dumps(rest, sort_keys=True, default=str).encode()).hexdigest()


def read_facts(folder: Path) -> dict[str, Any]:
    """bundle.json, checked: a bundle of this format, unchanged since saved, with every key loading reads."""
    facts_path = folder / FACTS_NAME
    if not facts_path.is_file():
        raise UsageError(f"--model {folder}: not a model bundle (no {FACTS_NAME}); make one with "
                         "`osteo train-final --profile P --out DIR`")
    try:
        facts = json.loads(facts_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"--model {facts_path}: unreadable ({type(exc).__name__})") from exc
    found = facts.get("format") if isinstance(facts, dict) else "?"
    if found == 1:
        raise UsageError(f"--model {facts_path}: a format-1 bundle (pickled arms), which this osteo_helpers never "
                         f"loads; rebuild it with `osteo train-final --profile P --out {folder}`")
    if found != BUNDLE_FORMAT:
        raise UsageError(f"--model {facts_path}: bundle format {found}, this osteo_helpers reads format "
                         f"{BUNDLE_FORMAT}")
    for path in REQUIRED_FACTS:
        node: Any = facts
        for depth, key in enumerate(path):
            if not isinstance(node, dict) or key not in node:
                raise UsageError(f"--model {facts_path}: lacks {'.'.join(path[:depth + 1])}; rebuild the bundle with "
                                 "`osteo train-final`")
            node = node[key]
    if facts["seal"] != seal(facts):
        raise UsageError(f"--model {facts_path}: content changed since it was written (its seal does not match); "
                         "rebuild the bundle with `osteo train-final`")
    return facts


# ----------------------------------------------------------------------------- train-final


def fit_arms(rows: pd.DataFrame, profile: Profile, progress: bool = True) -> dict[str, Any]:
    """The bundle's arms fitted on every row, each with its screening threshold: independent fits,
    run side by side by the executor (`executor.current`) when it has workers."""
    from .arms import make_arm  # deferred: imports torch and sklearn
    from .arms.driver import Fit, execute_fits  # deferred: imports torch and sklearn

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


def data_facts(study: Any) -> dict[str, Any]:
    """Checksums of what the bundle learned from (spreadsheet, every image), whether they are the
    published files (the registry shipped with the package), and the training set as `validate` compares a
    cohort with it: the checksums of the images' decoded pixels (a re-encoded copy of a training image
    matches) and the person IDs; never the images."""
    cohort = study.cohort
    spreadsheet = sha256_file(study.dataset.table_path)
    images = dict(zip(cohort["patient_id"], cohort["image_sha256"], strict=True))
    registry = read_registry()
    published = set(registry["sha256"])
    return {"spreadsheet_sha256": spreadsheet, "images_sha256": images,
            "matches_published_dataset": spreadsheet in published and set(images.values()) <= published,
            "pixel_sha256": sorted(set(cohort["pixel_sha256"].dropna())),
            "person_ids": sorted(set(cohort["person_id"].astype(str)))}


def cohort_facts(study: Any) -> dict[str, Any]:
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
        "excluded_impossible": dict(study.excluded),
    }


def clinical_equation(rows: pd.DataFrame) -> list[dict[str, Any]]:
    """The clinical arm's model as an equation with Wald CIs (the same probabilities, unpenalised)."""
    from .arms import logistic_equation  # deferred: imports torch and sklearn

    return json.loads(logistic_equation(rows, TASKS["binary"].labels(rows)).to_json(orient="records"))


def clinical_equation_ages(rows: pd.DataFrame) -> list[float] | None:
    """The ages the clinical equation holds for: where both classes were seen in training (`arms.overlap_range`)."""
    from .arms import overlap_range  # deferred: imports torch and sklearn

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


def make_bundle(study: Any, overrides: dict[str, Any], run: dict[str, Any] | None,
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


def _swap_in(built: Path, target: Path) -> None:
    """Replace `target` by the finished `built` folder: two renames, so `target` is never half-written."""
    old = target.with_name(f".{target.name}.old-{os.getpid()}")
    if target.exists():
        target.rename(old)
    built.rename(target)
    shutil.rmtree(old, ignore_errors=True)


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
                progress: bool = True, cohort: str | os.PathLike | None = None,
                sign_key: bytes | None = None) -> Bundle:
    """Fit the bundle's arms on all patients and write the bundle into `out` (replacing a bundle there),
    signed with ``sign_key`` when given (`signing`).

    Input, data and folders are checked first; the folder's writer lock is held throughout; the
    bundle is built in a hidden sibling folder and renamed into place, so a crash leaves nothing
    half-written. `run_dir`: a run of the same settings whose tables give the calibration and metrics.
    """
    from .study import Study  # deferred: imports sklearn and tqdm

    overrides = dict(overrides or {})
    prof = get_profile(profile, **overrides)
    dataset = Cohort.open(cohort, data_dir)  # spec, folder and layout checked before any work
    data_root = dataset.root
    target = check_bundle_target(out, data_root)
    dataset.require_usable()  # every table value and image, decoded: all problems at once, nothing written
    evidence = run_evidence(Path(run_dir), prof, data_root) if run_dir else None
    with exclusive(target.parent, lock_name=f".{target.name}.osteo-writer.lock"):
        for stale in leftovers(target):  # what a killed train-final left; the lock says none is alive
            shutil.rmtree(stale, ignore_errors=True)
        built = target.with_name(f".{target.name}.building-{os.getpid()}")
        try:
            study = Study.open(profile, built / "scratch-run", data_root, cohort=dataset.spec.source, **overrides)
            bundle = make_bundle(study, overrides, evidence, progress)
            shutil.rmtree(built / "scratch-run")
            bundle.save(built)
            if sign_key is not None:
                sign(built, sign_key)
            _swap_in(built, target)
        finally:
            shutil.rmtree(built, ignore_errors=True)
    bundle.path = target
    return bundle

