"""The one cross-validation driver: any arm, the shared folds, one out-of-fold format.

Out-of-fold (OOF) tables have one row per patient and repeat: ``patient_id, fold, seed,
y_true, prob_<class>...`` (plus ``threshold`` where the arm screens, and ``pred_mean,
pred_sd`` for a continuous target). A T-score arm is fitted once per fold; `task_view` turns
its table into the binary or three-class table by the WHO thresholds.

Fitted folds are kept on disk (``<cache>/<arm>/<target><tag>/seed<s>_fold<k>/``): the fitted
arm (`state`: JSON, safetensors, skops; never a pickle), its predictions, its training history
and ``done.json`` with a fingerprint of everything that determined the fold (the arm's
definition, the profile fields that change numbers, the labels, the train and test patients,
the data they hold and the code that trains) and the SHA-256 of every file written. A cached
fold is reused only when the fingerprint matches, every file has the bytes recorded, and they
load and are complete; otherwise it is retrained and a one-line note says which file and why.

A run is planned, executed, assembled: `plan_arm` loads the folds the cache holds and makes a
`Fit` (the unit of work) of every other one; `execute` hands the fits of one or more plans to an
executor (in-process, local workers, Ray: `osteo_helpers.executor`) and saves each fold as its
fit returns; `assemble` puts the table together in the plan's order. Seeds belong to the fit
(``random_state = seed * 1000 + fold``), so the table is the same whichever executor ran it,
and an interrupted run resumes from the folds it saved.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from .. import progress
from ..config import Profile
from ..evaluation import PROB_PREFIX
from ..executor import Executor, current
from ..fileio import ChecksumError, atomic_write_bytes, atomic_write_text, read_verified, sha256_bytes
from ..splits import iter_folds
from ..tabular import INPUT_FEATURES
from ..tasks import WHO_TASKS, collapse_to_binary, get_task
from .base import Arm, make_arm, split_arm_name
from .persons import per_person, person_labels, several_rows_per_person
from .state import ArmStateError, arm_files, load_arm, save_arm

#: profile fields that cannot change a fold's numbers (reporting, explanation, task lists)
NON_TRAINING_FIELDS = ("name", "n_boot", "explain_patients", "shap_background", "shap_samples", "tasks",
                       "n_permutations", "network_permutations")
#: package modules whose source decides how a fold is trained and its threshold chosen (the code
#: version in fingerprints)
TRAINING_MODULES = ("arms", "models.py", "training.py", "images.py", "data/image_readers.py", "tabular.py",
                    "tasks.py", "splits.py", "biomarkers", "evaluation/metrics.py")


class FoldCacheError(ValueError):
    """A cached fold that cannot be reused (the message names the file and why)."""


@lru_cache(maxsize=1)
def code_version() -> str:
    """SHA-256 over the source of the modules that train, so a code change never reuses old folds."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for name in TRAINING_MODULES:
        path = root / name
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else []
        for f in files:
            digest.update(f.relative_to(root).as_posix().encode())
            digest.update(f.read_bytes())
    return digest.hexdigest()[:16]


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_fingerprint(rows: pd.DataFrame) -> str:
    """What the rows hold: image checksums, clinical inputs and targets (changes with the data)."""
    cols = [c for c in ("patient_id", "image_sha256", *INPUT_FEATURES, "label_3class", "t_score", "split_group")
            if c in rows.columns]
    table = rows[cols].sort_values("patient_id").astype(str)
    return hashlib.sha256(pd.util.hash_pandas_object(table, index=False).to_numpy().tobytes()).hexdigest()[:16]


def _arm_definition(arm: Arm) -> dict:
    params = {k: v for k, v in arm.get_params(deep=False).items() if k not in ("progress", "random_state")}
    profile = params.pop("profile", None)
    if isinstance(profile, Profile):
        params["profile"] = {k: v for k, v in profile.to_dict().items() if k not in NON_TRAINING_FIELDS}
    return {"class": type(arm).__name__, **params}


def fold_fingerprint(arm: Arm, rows: pd.DataFrame, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> str:
    ids = rows["patient_id"].to_numpy()
    order = np.argsort(ids[train])
    return _hash({
        "arm": _arm_definition(arm), "random_state": arm.random_state,
        "labels": hashlib.sha256(np.ascontiguousarray(np.asarray(y)[train][order]).tobytes()).hexdigest()[:16],
        "train": sorted(ids[train]), "test": sorted(ids[test]),
        "data": data_fingerprint(rows.iloc[np.flatnonzero(train | test)]), "code": code_version(),
    })


def output_columns(arm: Arm) -> list[str]:
    task = arm.task_
    if task.name == "tscore":
        return [f"{PROB_PREFIX}{c}" for c in get_task("3class").classes] + ["pred_mean", "pred_sd"]
    if task.is_regression:
        return ["pred_mean", "pred_sd"]
    return [f"{PROB_PREFIX}{c}" for c in task.classes]


def _predictions(arm: Arm, rows: pd.DataFrame) -> pd.DataFrame:
    out = {}
    if arm.task_.is_regression:
        mean, sd = arm.predict_distribution(rows)
        out.update(pred_mean=mean, pred_sd=sd)
    if not arm.task_.is_regression or arm.task == "tscore":
        proba = arm.predict_proba(rows)
        out.update({c: proba[:, j] for j, c in enumerate(output_columns(arm)) if c.startswith(PROB_PREFIX)})
    if getattr(arm, "threshold_", None) is not None:
        out["threshold"] = arm.threshold_
    table = pd.DataFrame({k: np.asarray(v, dtype=np.float64) for k, v in out.items()})
    return table[[c for c in output_columns(arm) + ["threshold"] if c in out]]


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
        beside them (kept for reuse), and must never be mixed into this run's figures."""
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
            return pd.read_csv(io.BytesIO(self.read("predictions.csv", info)), dtype={"patient_id": str})
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
            data = table.to_csv(index=False).encode()
            atomic_write_bytes(self.folder / name, data)
            files[name] = sha256_bytes(data)
        if "history.csv" not in files:
            (self.folder / "history.csv").unlink(missing_ok=True)
        atomic_write_text(self.folder / "done.json", json.dumps({"fingerprint": key, "format": self.FORMAT,
                                                                  "files": files, **info}))


@dataclass
class Fit:
    """The unit of work: one arm (configured, not fitted) trained on some rows and scoring others.

    ``train`` and ``test`` are positions in the rows every fit of a run shares; ``y`` holds the
    training rows' targets. With a ``store``, the finished fold is kept under ``key``; ``info``
    names the fit (arm, task, seed, fold) in ``done.json`` and in progress lines.
    """

    arm: Arm
    train: np.ndarray
    y: np.ndarray
    test: np.ndarray
    info: dict[str, Any]
    store: FoldCache | None = None
    key: str | None = None
    keep_arm: bool = False


@dataclass
class FitResult:
    """What a fit gives back: the test rows' predictions (``patient_id`` first) and the fitted arm."""

    pred: pd.DataFrame | None
    arm: Arm | None
    seconds: float


def run_fit(fit: Fit, rows: pd.DataFrame) -> FitResult:
    """Train one fit and score its test rows: the same wherever it runs (here, a worker, a Ray task).
    Saving is left to the caller, so no worker ever writes a fold and a cluster needs no shared disk."""
    started = time.perf_counter()
    fitted = fit.arm.fit(rows.iloc[fit.train], fit.y)
    pred = None
    if len(fit.test):
        pred = _predictions(fitted, rows.iloc[fit.test])
        pred.insert(0, "patient_id", rows["patient_id"].to_numpy()[fit.test])
    return FitResult(pred, fitted, time.perf_counter() - started)


def execute_fits(fits: list[Fit], rows: pd.DataFrame, executor: Executor | None = None) -> list[FitResult]:
    """Run every fit and return the results in the order given.

    The executor runs the fits of heavy arms (networks); the others take milliseconds and run here
    while it works. Each fold is saved as soon as its fit returns, and each finished fit is one
    progress event counting the fits finished so far, wherever they ran.
    """
    executor = executor or current()
    results: list[FitResult | None] = [None] * len(fits)
    remote = [i for i, f in enumerate(fits) if executor.parallel and f.arm.heavy]
    started, done = time.time(), 0
    if fits:
        progress.report("fits", total=len(fits), executor=executor.describe())

    def finish(i: int, result: FitResult) -> None:
        nonlocal done
        fit = fits[i]
        if fit.store is not None:
            fit.store.save(fit.key, result.arm, result.pred, fit.info)
        if not fit.keep_arm:
            result.arm = None
        results[i], done = result, done + 1
        progress.report("fit_done", **fit.info, done=done, total=len(fits), elapsed=time.time() - started)

    stream = executor.map(run_fit, [fits[i] for i in remote], rows) if remote else iter(())
    for i in sorted(set(range(len(fits))) - set(remote)):
        finish(i, run_fit(fits[i], rows))
    for j, result in stream:
        finish(remote[j], result)
    if fits:
        progress.report("fits_done", total=len(fits), seconds=time.time() - started, executor=executor.describe())
    return results


@dataclass
class ArmPlan:
    """The fits one arm needs on one set of folds, and the folds its cache already holds."""

    name: str
    task: str
    tag: str
    y: np.ndarray
    columns: list[str]
    #: (seed, fold, test mask) of every fold with test rows, in the order of the OOF table
    folds: list[tuple[int, int, np.ndarray]]
    cached: dict[int, tuple[Arm, pd.DataFrame]] = field(default_factory=dict)
    fits: dict[int, Fit] = field(default_factory=dict)
    keep_arms: bool = False
    #: ``patient_id, person_id`` of the rows where a person has several images (their scores are
    #: joined per person when the table is assembled), else None
    persons: pd.DataFrame | None = None
    #: the arm's fold-cache folder (None: not cached)
    folder: Path | None = None


def plan_arm(name: str, rows: pd.DataFrame, folds: pd.DataFrame, task: str, *, profile: Profile | None,
             cache: Path | None = None, y: np.ndarray | None = None, tag: str = "", screening: bool = True,
             progress_bar: bool = True, keep_arms: bool = False) -> ArmPlan:
    """The fits arm ``name`` needs for ``task`` on every fold of ``folds``: a fold whose cached fit
    matches its fingerprint is loaded, every other one becomes a `Fit` (see `cross_validate`)."""
    base, forced = split_arm_name(name)
    fit_task = get_task(forced or task)
    rows = rows.reset_index(drop=True)
    y = fit_task.labels(rows) if y is None else np.asarray(y)
    sens = profile.target_sensitivity if (profile is not None and screening) else None
    template = make_arm(name, fit_task.name, profile=profile, target_sensitivity=sens)
    if "progress" in template.get_params():
        template.set_params(progress=progress_bar)
    supported = template.supports(rows)
    ids = rows["patient_id"].to_numpy()
    folder = None if cache is None or not template.cache_folds else Path(cache) / name / f"{fit_task.name}{tag}"
    plan = ArmPlan(name, fit_task.name, tag, y, output_columns(template), [], keep_arms=keep_arms,
                   persons=rows[["patient_id", "person_id"]] if several_rows_per_person(rows) else None,
                   folder=folder)
    for seed, fold, test_ids in iter_folds(folds):
        test = np.isin(ids, list(test_ids)) & supported
        train = ~np.isin(ids, list(test_ids)) & supported
        if not test.any():
            continue
        k = len(plan.folds)
        plan.folds.append((seed, fold, test))
        arm = clone(template).set_params(random_state=seed * 1000 + fold)
        store, key = None, None
        if folder is not None:
            key = fold_fingerprint(arm, rows, y, train, test)
            store = FoldCache(folder / f"seed{seed}_fold{fold}")
            try:
                plan.cached[k] = store.load(key, set(ids[test]), plan.columns, with_arm=keep_arms)
                continue
            except FoldCacheError as exc:
                if store.folder.exists():
                    progress.note(f"retraining {name} seed {seed} fold {fold}: {exc}")
        plan.fits[k] = Fit(arm, np.flatnonzero(train), y[train], np.flatnonzero(test),
                           {"arm": name, "seed": seed, "fold": fold, "task": fit_task.name}, store, key, keep_arms)
    if folder is not None and plan.cached:
        progress.note(f"{name} ({fit_task.name}{tag}): reusing {len(plan.cached)} of {len(plan.folds)} folds")
    progress.report("arm", arm=name, task=fit_task.name, tag=tag, folds=len(plan.folds), reused=len(plan.cached))
    return plan


def execute(plans: list[ArmPlan], rows: pd.DataFrame, executor: Executor | None = None
            ) -> list[dict[int, FitResult]]:
    """Run the fits of every plan together (one executor, so no fit waits for another arm's last fold)."""
    order = [(p, k) for p, plan in enumerate(plans) for k in plan.fits]
    results = execute_fits([plans[p].fits[k] for p, k in order], rows.reset_index(drop=True), executor)
    out: list[dict[int, FitResult]] = [{} for _ in plans]
    for (p, k), result in zip(order, results, strict=True):
        out[p][k] = result
    return out


def assemble(plan: ArmPlan, results: dict[int, FitResult]) -> pd.DataFrame | tuple[pd.DataFrame, list[Arm]]:
    """The OOF table of a plan: its folds in the plan's order, each from the cache or from its fit."""
    parts, arms = [], []
    for k, (seed, fold, test) in enumerate(plan.folds):
        fitted, pred = plan.cached[k] if k in plan.cached else (results[k].arm, results[k].pred)
        pred = pred.drop(columns=["fold", "seed", "y_true"], errors="ignore")
        pred.insert(1, "fold", fold)
        pred.insert(2, "seed", seed)
        pred.insert(3, "y_true", plan.y[test])
        parts.append(pred)
        arms.append(fitted)
    if plan.folder is not None:  # the folds this cross-validation used (others may stay beside them)
        FoldCache.mark_current(plan.folder, [f"seed{seed}_fold{fold}" for seed, fold, _ in plan.folds])
    oof = pd.concat(parts, ignore_index=True)
    if plan.persons is not None:
        oof = per_person(oof, plan.persons)  # a person's images: one score
    return (oof, arms) if plan.keep_arms else oof


def cross_validate(name: str, rows: pd.DataFrame, folds: pd.DataFrame, task: str, *, profile: Profile | None,
                   cache: Path | None = None, y: np.ndarray | None = None, tag: str = "",
                   screening: bool = True, progress_bar: bool = True, keep_arms: bool = False,
                   executor: Executor | None = None) -> pd.DataFrame | tuple[pd.DataFrame, list[Arm]]:
    """Out-of-fold predictions of arm ``name`` fitted for ``task`` on every fold of ``folds``.

    ``y`` overrides the task's labels (a permutation: give a ``tag`` such as ``perm3`` too); the
    rows an arm cannot score (`Arm.supports`) are left out of its training and its table.
    A ``_tscore`` arm fits the T-score whatever ``task`` says; see `task_view`. Plan, execute
    (``executor``, default `executor.current`), assemble: the table is the same whichever
    executor ran the fits.
    """
    plan = plan_arm(name, rows, folds, task, profile=profile, cache=cache, y=y, tag=tag, screening=screening,
                    progress_bar=progress_bar, keep_arms=keep_arms)
    return assemble(plan, execute([plan], rows, executor)[0])


def task_view(oof: pd.DataFrame, task: str, rows: pd.DataFrame) -> pd.DataFrame:
    """A T-score arm's table as the binary or three-class table (labels from the cohort rows)."""
    task = get_task(task)
    if task.name not in WHO_TASKS:
        raise ValueError(f"a T-score table answers {WHO_TASKS}, not {task.name!r}")
    probs = [f"{PROB_PREFIX}{c}" for c in get_task("3class").classes]
    labels = person_labels(rows, task.target)
    out = oof[["patient_id", "fold", "seed"]].copy()
    out["y_true"] = labels.loc[oof["patient_id"]].to_numpy().astype(int)
    proba = oof[probs].to_numpy()
    if task.name == "binary":
        proba = collapse_to_binary(proba)
    for j, c in enumerate(task.classes):
        out[f"{PROB_PREFIX}{c}"] = proba[:, j]
    if task.name == "binary" and "threshold" in oof:
        out["threshold"] = oof["threshold"].to_numpy()
    return out


def _view(name: str, oof: pd.DataFrame, task: str, rows: pd.DataFrame, y: np.ndarray | None) -> pd.DataFrame:
    if split_arm_name(name)[1] != "tscore":
        return oof
    if y is not None:
        raise ValueError("permuted labels are given per task; permute the T-score for a T-score arm")
    return task_view(oof, task, rows)


def run_arm(name: str, rows: pd.DataFrame, folds: pd.DataFrame, task: str, **kwargs) -> pd.DataFrame:
    """The OOF table of arm ``name`` for ``task`` (binary / 3class), T-score arms included."""
    return _view(name, cross_validate(name, rows, folds, task, **kwargs), task, rows, kwargs.get("y"))


def run_arms_together(names: Sequence[str], rows: pd.DataFrame, folds: pd.DataFrame, task: str, *,
                      screening: bool | Collection[str] = True, executor: Executor | None = None,
                      **kwargs) -> dict[str, pd.DataFrame]:
    """`run_arm` for several arms, all their fits run by one executor; ``screening``: for all arms, or
    the names of those that choose a screening threshold."""
    plans = [plan_arm(n, rows, folds, task, screening=screening if isinstance(screening, bool) else n in screening,
                      **kwargs) for n in names]
    results = execute(plans, rows, executor)
    return {p.name: _view(p.name, assemble(p, r), task, rows, kwargs.get("y"))
            for p, r in zip(plans, results, strict=True)}


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
            history = pd.read_csv(io.BytesIO(store.read("history.csv", info)))
            frames.append(history.assign(seed=info["seed"], fold=info["fold"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
