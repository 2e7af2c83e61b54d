"""The fold cache: a fitted fold on disk, its fingerprint, and reading it back only when verified.

A fold folder (``<cache>/<arm>/<target><tag>/seed<s>_fold<k>/``) holds the fitted arm (`state`:
JSON, safetensors, skops; never a pickle), its predictions, its training history and
``done.json``: a fingerprint of everything that determined the fold (the arm's definition, the
profile fields that change numbers, the labels, the train and test patients, the data they hold
and the code that trains) and the SHA-256 of every file written. A cached fold is reused only when
the fingerprint matches, every file has the bytes recorded, and they load and are complete;
otherwise `arms.driver` retrains it and a one-line note says which file and why.
"""

from __future__ import annotations

import hashlib
import io
import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..config import Profile
from ..evaluation import PROB_PREFIX
from ..fileio import (
    ChecksumError,
    atomic_write_bytes,
    atomic_write_text,
    csv_bytes,
    read_csv,
    read_verified,
    sha256_bytes,
)
from ..vocabulary import INPUT_FEATURES
from .base import Arm
from .state import ArmStateError, arm_files, load_arm, save_arm

#: profile fields that cannot change a fold's numbers (reporting, explanation, task lists)
NON_TRAINING_FIELDS = ("name", "n_boot", "explain_patients", "shap_background", "shap_samples", "tasks",
                       "n_permutations", "network_permutations")
#: package modules whose source decides how a fold is trained and its threshold chosen (the code
#: version in fingerprints)
TRAINING_MODULES = ("arms", "models", "features.py", "training.py", "images.py", "data/image_readers.py",
                    "tabular.py", "splines.py", "tasks.py", "splits.py", "biomarkers", "evaluation/metrics.py")


class FoldCacheError(ValueError):
    """A cached fold that cannot be reused (the message names the file and why)."""


@lru_cache(maxsize=4)
def code_version(modules: tuple[str, ...] = TRAINING_MODULES) -> str:
    """SHA-256 over the source of ``modules`` (default: those that train; ``(".",)``: the whole
    package), so a code change never reuses old folds or tables."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for name in modules:
        path = root / name
        if not path.exists():  # a module renamed or moved: the fingerprint would silently stop covering it
            raise FileNotFoundError(f"code_version: {path} does not exist; update TRAINING_MODULES")
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            digest.update(f.relative_to(root).as_posix().encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def frame_digest(table: pd.DataFrame) -> str:
    """A short SHA-256 of a table's values, row order included (not its index)."""
    return hashlib.sha256(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes()).hexdigest()[:16]


class DataFingerprint:
    """What a table's rows hold, hashed per row once, so that each fold's subset costs a lookup (a plan hashes
    every fold of every arm from one table): image checksums, clinical inputs and targets, and the frozen
    encoder's feature vectors where the rows carry them (they change with the encoder, its weights, torch or
    the pooling, while the image checksums do not)."""

    def __init__(self, rows: pd.DataFrame):
        cols = [c for c in ("patient_id", "image_sha256", *INPUT_FEATURES, "label_3class", "t_score", "split_group")
                if c in rows.columns]
        self.ids_ = rows["patient_id"].to_numpy()
        self.row_hashes_ = pd.util.hash_pandas_object(rows[cols].astype(str), index=False).to_numpy()
        self.vectors_ = (np.ascontiguousarray(np.stack(rows["features"].to_numpy()), dtype=np.float32)
                         if "features" in rows else None)

    def of(self, positions: np.ndarray) -> str:
        """The digest of the rows at ``positions``, in patient-ID order (`frame_digest` of those rows)."""
        order = positions[np.argsort(self.ids_[positions], kind="stable")]
        digest = hashlib.sha256(self.row_hashes_[order].tobytes()).hexdigest()[:16]
        if self.vectors_ is not None:
            digest += hashlib.sha256(self.vectors_[order].tobytes()).hexdigest()[:16]
        return digest


def _arm_definition(arm: Arm) -> dict:
    params = {k: v for k, v in arm.get_params(deep=False).items() if k not in ("progress", "random_state")}
    profile = params.pop("profile", None)
    if isinstance(profile, Profile):
        params["profile"] = {k: v for k, v in profile.to_dict().items() if k not in NON_TRAINING_FIELDS}
    return {"class": type(arm).__name__, **params}


def fold_fingerprint(arm: Arm, rows: pd.DataFrame, y: np.ndarray, train: np.ndarray, test: np.ndarray,
                     data: DataFingerprint | None = None) -> str:
    """The key of one fold's cached fit; ``data`` (`DataFingerprint` of ``rows``) when the caller hashes
    several folds of the same rows."""
    data = DataFingerprint(rows) if data is None else data
    ids = rows["patient_id"].to_numpy()
    order = np.argsort(ids[train])
    return _hash({
        "arm": _arm_definition(arm), "random_state": arm.random_state,
        "labels": hashlib.sha256(np.ascontiguousarray(np.asarray(y)[train][order]).tobytes()).hexdigest()[:16],
        "train": sorted(ids[train]), "test": sorted(ids[test]),
        "data": data.of(np.flatnonzero(train | test)), "code": code_version(),
    })


def check_predictions(table: pd.DataFrame, expected_ids: set[str], columns: list[str], source: Path) -> None:
    """Raise FoldCacheError unless the table holds every expected patient once, with valid values."""
    missing = [c for c in ("patient_id", *columns) if c not in table.columns]
    if missing:
        raise FoldCacheError(f"{source}: lacks column(s) {missing}")
    ids = table["patient_id"].astype(str)
    if ids.duplicated().any() or set(ids) != expected_ids:
        raise FoldCacheError(f"{source}: holds {ids.nunique()} of the {len(expected_ids)} expected patients")
    values = table[columns].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    if not np.isfinite(values).all():
        raise FoldCacheError(f"{source}: non-finite or non-numeric predictions")
    probs = [j for j, c in enumerate(columns) if c.startswith(PROB_PREFIX)]
    if probs and ((values[:, probs] < 0).any() or (values[:, probs] > 1).any()):
        raise FoldCacheError(f"{source}: probabilities outside [0, 1]")
    if "pred_sd" in columns and (values[:, columns.index("pred_sd")] <= 0).any():
        raise FoldCacheError(f"{source}: non-positive predictive standard deviation")


class FoldCache:
    """One fitted fold on disk: the arm's files (`state.save_arm`: ``arm.json``, ``arm.safetensors``,
    ``arm.skops``), ``predictions.csv``, ``history.csv`` and ``done.json``, which records the
    fingerprint and the SHA-256 of every other file. A file is read only when its bytes are the
    recorded ones; nothing in the folder is ever unpickled (an ``arm.pt`` of an older cache is ignored
    and removed when the fold is saved again)."""

    #: the layout of done.json and the files beside it; a fold of another format is retrained
    FORMAT = 2
    LEGACY_FILES = ("arm.pt",)

    #: in an arm's folder: the folds of its latest cross-validation, the only ones explanations read
    CURRENT = "current.json"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @classmethod
    def mark_current(cls, arm_folder: Path, folds: list[str]) -> None:
        """Record which fold folders the latest cross-validation used: folds of other settings may stay
        beside them (kept for reuse), and must never be mixed into this run's figures. None, when no fold could
        be fitted (its folder may not exist yet)."""
        Path(arm_folder).mkdir(parents=True, exist_ok=True)
        atomic_write_text(Path(arm_folder) / cls.CURRENT, json.dumps({"folds": folds}))

    def record(self) -> dict:
        """done.json, checked to describe a finished fold of this format; FoldCacheError otherwise."""
        done = self.folder / "done.json"
        if not done.is_file():
            raise FoldCacheError(f"{done}: missing (fold never finished)")
        try:
            info = json.loads(done.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FoldCacheError(f"{done}: unreadable ({type(exc).__name__})") from exc
        if not isinstance(info, dict) or info.get("format") != self.FORMAT or not isinstance(info.get("files"), dict):
            raise FoldCacheError(f"{done}: an older cache format (pickled arm.pt), never loaded")
        return info

    def read(self, name: str, info: dict) -> bytes:
        """A file of the fold, verified against done.json (FoldCacheError naming it otherwise)."""
        try:
            return read_verified(self.folder / name, info["files"].get(name))
        except ChecksumError as exc:
            raise FoldCacheError(str(exc)) from exc

    def predictions(self, info: dict) -> pd.DataFrame:
        path = self.folder / "predictions.csv"
        try:
            return read_csv(io.BytesIO(self.read("predictions.csv", info)), dtype={"patient_id": str})
        except FoldCacheError:
            raise
        except Exception as exc:  # pandas raises many types for a damaged file
            raise FoldCacheError(f"{path}: unreadable ({type(exc).__name__})") from exc

    def arm(self, info: dict) -> Arm:
        try:
            return load_arm(self.folder, {k: v for k, v in info["files"].items() if k in arm_files()})
        except (ChecksumError, ArmStateError) as exc:
            raise FoldCacheError(str(exc)) from exc

    def load(self, key: str, expected_ids: set[str], columns: list[str],
             with_arm: bool = True) -> tuple[Arm | None, pd.DataFrame]:
        """The fold's arm (None unless ``with_arm``: rebuilding it costs more than the rest, and the
        out-of-fold table needs only the predictions) and predictions, every file verified first."""
        info = self.record()
        if info.get("fingerprint") != key:
            raise FoldCacheError(f"{self.folder / 'done.json'}: made with other settings, data, labels or code")
        for name in info["files"]:  # every file the fold wrote, also those only explanations read
            self.read(name, info)
        pred = self.predictions(info)
        check_predictions(pred, expected_ids, columns, self.folder / "predictions.csv")
        return (self.arm(info) if with_arm else None), pred

    def save(self, key: str, arm: Arm, pred: pd.DataFrame, info: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "done.json").unlink(missing_ok=True)  # a crash below leaves no stale 'done'
        for name in self.LEGACY_FILES:
            (self.folder / name).unlink(missing_ok=True)
        files = save_arm(arm, self.folder)
        tables = {"predictions.csv": pred}
        if hasattr(arm, "history_"):
            tables["history.csv"] = arm.history_
        for name, table in tables.items():
            data = csv_bytes(table)
            atomic_write_bytes(self.folder / name, data)
            files[name] = sha256_bytes(data)
        if "history.csv" not in files:
            (self.folder / "history.csv").unlink(missing_ok=True)
        atomic_write_text(self.folder / "done.json", json.dumps({"fingerprint": key, "format": self.FORMAT,
                                                                  "files": files, **info}))



def _finished_folds(cache: Path, name: str, fit_task: str, tag: str = "") -> list[tuple[FoldCache, dict]]:
    """The folds of an arm that finished, each with its verified done.json (FoldCacheError otherwise:
    cross_validate, which notebooks call first, has already rebuilt every fold it found damaged)."""
    folder = Path(cache) / name / f"{fit_task}{tag}"
    current = folder / FoldCache.CURRENT
    if current.is_file():  # the folds of the latest cross-validation, not those of other settings beside them
        names = json.loads(current.read_text())["folds"]
        folders = [folder / n for n in names if (folder / n / "done.json").is_file()]
    else:
        folders = [done.parent for done in sorted(folder.glob("seed*_fold*/done.json"))]
    out = []
    for path in folders:
        store = FoldCache(path)
        out.append((store, store.record()))
    return out


def load_fold_arms(cache: Path, name: str, fit_task: str, tag: str = "", seed: int | None = None) -> list[Arm]:
    """The fitted arms of a cached network arm (one repeat if ``seed`` is given), for explanation;
    every file is verified against its fold's done.json and no file is unpickled."""
    out = []
    for store, info in _finished_folds(cache, name, fit_task, tag):
        if seed is not None and info["seed"] != seed:
            continue
        arm = store.arm(info)
        arm.test_ids_ = store.predictions(info)["patient_id"].tolist()
        arm.seed_, arm.fold_ = info["seed"], info["fold"]
        out.append(arm)
    if not out:
        raise FileNotFoundError(f"{Path(cache) / name / (fit_task + tag)}: no finished folds; run the arm first")
    return out


def load_histories(cache: Path, name: str, fit_task: str, tag: str = "") -> pd.DataFrame:
    """All per-fold training histories of a network arm, with seed and fold columns (verified files)."""
    frames = []
    for store, info in _finished_folds(cache, name, fit_task, tag):
        if "history.csv" in info["files"]:
            history = read_csv(io.BytesIO(store.read("history.csv", info)))
            frames.append(history.assign(seed=info["seed"], fold=info["fold"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
