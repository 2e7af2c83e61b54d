"""The arm protocol: every model of the study, classical or network, is one kind of object.

An arm is configured in ``__init__`` (scikit-learn's rule: no data there), learns in
``fit(rows, y)`` and keeps what it learned in trailing-underscore attributes, and answers with
``predict_proba(rows)``. ``rows`` is a slice of the cohort table (one row per patient: the
clinical inputs, ``split_group``, ``label_3class`` and, for image arms, an ``image`` column of
uint8 arrays); ``y`` holds the task's target for those rows.

The task is part of the configuration. A classification task (binary, 3class, sex) gives
class probabilities. A regression task (tscore, age) gives a Gaussian predictive distribution
(``predict_distribution``); for the T-score the WHO thresholds turn it into the probabilities
of the three classes, so one fit answers the binary task, the three classes and the regression.

With ``target_sensitivity`` set, ``fit`` also chooses the screening threshold on P(low BMD)
(``threshold_``) from out-of-sample predictions of the training rows only.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone

from ..evaluation import threshold_for_sensitivity
from ..splits import StratifiedGroupKFold, group_keys
from ..tasks import Task, collapse_to_binary, get_task, who_probabilities

#: the tasks whose target is the WHO class or the T-score it is cut from: their inner folds are stratified by it
WHO_STRATA_TASKS = ("binary", "3class", "tscore")


def inner_strata(rows: pd.DataFrame, y: np.ndarray, task: Task) -> np.ndarray:
    """What a training fold's inner folds (a strength's search, a network's validation split) are stratified by:
    the WHO class for the low-BMD targets; the target itself for another classification (sex), its quartiles
    for another continuous target (age). Never the low-BMD label there: the positive control and the choice of
    the encoder's recipe must not see it."""
    if task.name in WHO_STRATA_TASKS:
        return rows["label_3class"].to_numpy()
    if not task.is_regression:
        return np.asarray(y)
    return pd.qcut(np.asarray(y, dtype=float), 4, labels=False, duplicates="drop")


class Arm(BaseEstimator):
    """Base class: subclasses implement ``_fit`` and ``_predict_raw``; this class handles the task."""

    #: whether fitted folds are kept on disk and reused by every notebook of a run
    cache_folds: bool = True
    #: whether the arm can model a continuous target (regression tasks)
    supports_regression: bool = False
    #: whether a fit takes seconds or more (networks): the executor runs those side by side, in workers or
    #: on a cluster; quick fits stay in the calling process, where shipping the rows would cost more
    heavy: bool = False
    #: columns of the cohort the arm cannot do without, beyond age and sex (which every cohort has)
    requires: tuple[str, ...] = ()

    task: str
    target_sensitivity: float | None

    # -- what subclasses provide -------------------------------------------------------------
    def _fit(self, rows: pd.DataFrame, y: np.ndarray) -> None:
        raise NotImplementedError

    def _predict_raw(self, rows: pd.DataFrame) -> np.ndarray:
        """Class probabilities (n, k), or Gaussian (mean, sd) (n, 2) for a regression task."""
        raise NotImplementedError

    def supports(self, rows: pd.DataFrame) -> np.ndarray:
        """Which rows this arm can score (e.g. only patients with a localised knee); all by default."""
        return np.ones(len(rows), dtype=bool)

    # -- the protocol ------------------------------------------------------------------------
    @property
    def task_(self) -> Task:
        return get_task(self.task)

    def fit(self, rows: pd.DataFrame, y: np.ndarray) -> Arm:
        task = self.task_
        if task.is_regression and not self.supports_regression:
            raise ValueError(f"{type(self).__name__} cannot model the continuous target of task {task.name!r}")
        y = np.asarray(y, dtype=float if task.is_regression else int)
        if len(y) != len(rows):
            raise ValueError(f"{len(rows)} rows but {len(y)} targets")
        self.classes_ = task.classes
        self._fit(rows.reset_index(drop=True), y)
        if self.target_sensitivity is not None and self.screens:
            self.threshold_ = self._choose_threshold(rows.reset_index(drop=True), y)
        return self

    @property
    def screens(self) -> bool:
        """Does this arm answer the screening question (normal vs low BMD)?"""
        return self.task in ("binary", "tscore")

    def predict_proba(self, rows: pd.DataFrame) -> np.ndarray:
        """Class probabilities; for the T-score task, those of the three WHO classes."""
        raw = self._predict_raw(rows.reset_index(drop=True))
        if self.task == "tscore":
            return who_probabilities(raw[:, 0], raw[:, 1])
        if self.task_.is_regression:
            raise ValueError(f"task {self.task!r} is a regression: use predict_distribution")
        return raw

    def predict_distribution(self, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Mean and standard deviation of the Gaussian predictive distribution (regression tasks)."""
        if not self.task_.is_regression:
            raise ValueError(f"task {self.task!r} is a classification: use predict_proba")
        raw = self._predict_raw(rows.reset_index(drop=True))
        return raw[:, 0], raw[:, 1]

    def predict_low_bmd(self, rows: pd.DataFrame) -> np.ndarray:
        """P(low BMD): the screening score of a binary or T-score arm."""
        proba = self.predict_proba(rows)
        return collapse_to_binary(proba)[:, 1] if proba.shape[1] == 3 else proba[:, 1]

    # -- screening threshold -----------------------------------------------------------------
    def _threshold_folds(self) -> int:
        """Inner folds of the threshold's cross-fitting."""
        return 5

    def _inner_fit_params(self) -> dict:
        """Parameters of the inner fits: by default the arm as configured; an arm that searched a
        setting on this fold (regularisation, epochs) fixes it to its choice."""
        return {}

    def _inner_scores(self, rows: pd.DataFrame, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Cross-validated P(low BMD) of the whole training fold (grouped, stratified inner folds):
        the threshold is chosen on predictions the model did not train on, never on a test fold."""
        low = (rows["label_3class"].to_numpy() > 0).astype(int)
        scores = np.full(len(rows), np.nan)
        minority = int(min(low.sum(), len(low) - low.sum()))
        if minority < 2:
            raise ValueError(f"arm {self.arm_name!r}: {minority} training patient(s) in the smaller class; "
                             "a screening threshold needs at least 2")
        splitter = StratifiedGroupKFold(n_splits=min(self._threshold_folds(), minority), shuffle=True,
                                        random_state=int(self.get_params().get("random_state", 0) or 0))
        for train, test in splitter.split(np.zeros(len(rows)), rows["label_3class"], group_keys(rows)):
            inner = clone(self).set_params(target_sensitivity=None, **self._inner_fit_params())
            inner.fit(rows.iloc[train], y[train])
            scores[test] = inner.predict_low_bmd(rows.iloc[test])
        return low, scores

    def _choose_threshold(self, rows: pd.DataFrame, y: np.ndarray) -> float:
        low, scores = self._inner_scores(rows, y)
        return threshold_for_sensitivity(low, scores, self.target_sensitivity)


ARM_REGISTRY: dict[str, type[Arm]] = {}


def register(name: str):
    """Class decorator: ``@register("age")`` makes the arm constructible by name."""

    def add(cls: type[Arm]) -> type[Arm]:
        if name in ARM_REGISTRY:
            raise ValueError(f"arm {name!r} registered twice")
        ARM_REGISTRY[name] = cls
        cls.arm_name = name
        return cls

    return add


def split_arm_name(name: str) -> tuple[str, str | None]:
    """'fusion_tscore' -> ('fusion', 'tscore'); 'fusion' -> ('fusion', None)."""
    if name.endswith("_tscore"):
        return name[: -len("_tscore")], "tscore"
    return name, None


def known_arms() -> list[str]:
    names = []
    for name, cls in ARM_REGISTRY.items():
        names.append(name)
        if cls.supports_regression:
            names.append(f"{name}_tscore")
    return names


#: how a column an arm requires is named in the sentence that says the cohort lacks it
REQUIRED_WORDS = {"t_score": "T-score", "weight_kg": "weight"}


def why_not_fittable(name: str, rows: pd.DataFrame) -> str | None:
    """Why arm ``name`` cannot be fitted on these rows (a column it requires, or the T-score a ``_tscore``
    arm fits, has no value in the cohort), as words that complete "cannot be estimated: ..."; None when it can."""
    base, forced = split_arm_name(name)
    needs = (*ARM_REGISTRY[base].requires, *(("t_score",) if forced else ())) if base in ARM_REGISTRY else ()
    missing = [c for c in needs if c not in rows.columns or not rows[c].notna().any()]
    if not missing:
        return None
    return "the cohort has no " + " and no ".join(REQUIRED_WORDS.get(c, c) for c in missing)


def make_arm(name: str, task: str, **params) -> Arm:
    """The arm called ``name`` for ``task``; a ``_tscore`` name fits the T-score whatever the task asked."""
    base, forced = split_arm_name(name)
    if base not in ARM_REGISTRY or (forced and not ARM_REGISTRY[base].supports_regression):
        raise ValueError(f"unknown arm {name!r}; known arms: {', '.join(known_arms())}")
    return ARM_REGISTRY[base](task=forced or task, **params)
