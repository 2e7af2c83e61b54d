"""The one cross-validation driver: any arm, the shared folds, one out-of-fold format.

Out-of-fold (OOF) tables have one row per patient and repeat: ``patient_id, fold, seed,
y_true, prob_<class>...`` (plus ``threshold`` where the arm screens, and ``pred_mean,
pred_sd`` for a continuous target). A T-score arm is fitted once per fold; `task_view` turns
its table into the binary or three-class table by the WHO thresholds.

Fitted folds are kept on disk and reused only when verified (`foldcache`).

A run is planned, executed, assembled: `plan_arm` loads the folds the cache holds and makes a
`Fit` (the unit of work) of every other one; `execute` hands the fits of one or more plans to an
executor (in-process, local workers, Ray: `osteo_helpers.executor`) and saves each fold as its
fit returns; `assemble` puts the table together in the plan's order. Seeds belong to the fit
(``random_state = seed * 1000 + fold``), so the table is the same whichever executor ran it,
and an interrupted run resumes from the folds it saved.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone

from .. import progress
from ..config import Profile
from ..evaluation import PROB_PREFIX
from ..executor import Executor, current
from ..splits import iter_folds
from ..tasks import WHO_TASKS, collapse_to_binary, get_task
from .base import Arm, make_arm, split_arm_name, why_not_fittable
from .foldcache import DataFingerprint, FoldCache, FoldCacheError, fold_fingerprint
from .persons import per_person, person_labels, several_rows_per_person


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
    data = DataFingerprint(rows) if folder is not None else None
    for seed, fold, test_ids in iter_folds(folds):
        test = np.isin(ids, list(test_ids)) & supported
        train = ~np.isin(ids, list(test_ids)) & supported
        if not test.any() or (not fit_task.is_regression and len(np.unique(y[train])) < 2):
            continue  # nothing to score, or training rows of one class (a few localised knees): no fit
        k = len(plan.folds)
        plan.folds.append((seed, fold, test))
        arm = clone(template).set_params(random_state=seed * 1000 + fold)
        store, key = None, None
        if folder is not None:
            key = fold_fingerprint(arm, rows, y, train, test, data)
            store = FoldCache(folder / f"seed{seed}_fold{fold}")
            try:
                plan.cached[k] = store.load(key, set(ids[test]), plan.columns, with_arm=keep_arms)
                continue
            except FoldCacheError as exc:
                if store.folder.exists():
                    progress.note(f"retraining {name} seed {seed} fold {fold}: {exc}")
        plan.fits[k] = Fit(arm, np.flatnonzero(train), y[train], np.flatnonzero(test),
                           {"arm": name, "seed": seed, "fold": fold, "task": fit_task.name}, store, key, keep_arms)
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
    if not parts:  # no fold could be fitted: an empty table, said where the arm's results would be
        oof = pd.DataFrame(columns=["patient_id", "fold", "seed", "y_true", *plan.columns])
        return (oof, arms) if plan.keep_arms else oof
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


def fittable(names: Sequence[str], rows: pd.DataFrame) -> tuple[list[str], dict[str, str]]:
    """The arms of ``names`` that can be fitted on these rows, and why each other one cannot
    (`why_not_fittable`: the cohort lacks a column it needs)."""
    reasons = {n: why for n in names if (why := why_not_fittable(n, rows)) is not None}
    return [n for n in names if n not in reasons], reasons


def run_arms_together(names: Sequence[str], rows: pd.DataFrame, folds: pd.DataFrame, task: str, *,
                      screening: bool | Collection[str] = True, executor: Executor | None = None,
                      **kwargs) -> dict[str, pd.DataFrame]:
    """`run_arm` for several arms, all their fits run by one executor; ``screening``: for all arms, or
    the names of those that choose a screening threshold. An arm the cohort cannot fit (`fittable`) has
    no table: the report says why where it lists the arms."""
    names = fittable(names, rows)[0]
    plans = [plan_arm(n, rows, folds, task, screening=screening if isinstance(screening, bool) else n in screening,
                      **kwargs) for n in names]
    results = execute(plans, rows, executor)
    return {p.name: _view(p.name, assemble(p, r), task, rows, kwargs.get("y"))
            for p, r in zip(plans, results, strict=True)}


