"""The saved model: the primary arms refitted on every patient, written as one folder; load it and score.

`train_final` fits ``fusion`` and ``clinical`` (binary) and ``fusion_tscore`` on ALL patients of
the cohort: cross-validation has already estimated how this procedure performs (the run's report),
and a model for new patients should learn from every patient there is. Each arm chooses its
screening threshold (``threshold_``) at the profile's target sensitivity while fitting.

This module is the saved bundle, loaded and scored; the module `train_final` makes one. A bundle folder::

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

import hashlib
import importlib.metadata
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .config import get_profile
from .errors import UsageError
from .features import COLUMN as FEATURES
from .features import FeatureRecipe, encoder_identity, vectors
from .fileio import ChecksumError, atomic_write_text
from .model_card import model_card
from .patients import Patient, as_rows
from .signing import verify
from .tabular import CATEGORICAL_FEATURES, INPUT_FEATURES, available_inputs

#: 3: the training persons' IDs as salted digests, the images' checksums without their IDs (2: IDs in clear;
#: 1: pickled arms; both refused)
BUNDLE_FORMAT = 3
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


def person_digest(person_id: str, salt: str) -> str:
    """How a bundle records a training person: SHA-256 of ``salt:ID`` (the salt: the training table's checksum),
    so that a shared bundle lists no ID in clear while `validate` can still tell a cohort's persons that were
    in training. A digest only slows a search: an ID space as small as record numbers can be tried in full,
    so a bundle meant to leave the site is trained on a cohort whose IDs are pseudonyms already."""
    return hashlib.sha256(f"{salt}:{person_id}".encode()).hexdigest()


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
        z = NormalDist().inv_cdf(0.5 + INTERVAL / 2)  # the standard library's: scipy.stats takes 0.6 s to import
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
        from .training import use_device  # deferred: imports torch, sklearn and scipy

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
        from .arms.state import save_arm  # deferred: imports torch, sklearn and scipy

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
        from .arms.state import ArmStateError, load_arm  # deferred: imports torch, sklearn and scipy

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
    if found == 2:
        raise UsageError(f"--model {facts_path}: a format-2 bundle (its training patients' IDs in clear), which "
                         f"this osteo_helpers no longer loads; rebuild it with `osteo train-final --profile P --out "
                         f"{folder}`")
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



