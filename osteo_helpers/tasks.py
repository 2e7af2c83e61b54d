"""Prediction targets and the WHO thresholds that turn a T-score into a class.

The labels of this dataset are the WHO categories of the measured T-score, so a model of
the T-score with a predictive distribution gives every class probability at once:
P(low BMD) = P(T < -1), P(osteoporosis) = P(T <= -2.5). This module is the one place
those thresholds and class names live.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the class names are read by the command line and the spec reader: no pandas, no scipy
    import pandas as pd

CLASSES_3: tuple[str, ...] = ("normal", "osteopenia", "osteoporosis")
CLASSES_BINARY: tuple[str, ...] = ("normal", "low_bmd")
#: WHO: normal if T >= -1.0, osteoporosis if T <= -2.5, osteopenia in between.
WHO_NORMAL_MIN = -1.0
WHO_OSTEOPOROSIS_MAX = -2.5


@dataclass(frozen=True)
class Task:
    """A prediction target: its column in the cohort table and its class names (empty = regression)."""

    name: str
    target: str
    classes: tuple[str, ...] = ()

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.classes else 1

    @property
    def is_regression(self) -> bool:
        return not self.classes

    def labels(self, table: pd.DataFrame) -> np.ndarray:
        """The target of every row: class indices, or float values for a regression."""
        if self.target not in table.columns:
            raise KeyError(f"task {self.name!r} needs column {self.target!r}")
        values = table[self.target]
        if self.is_regression:
            return values.to_numpy(dtype=float)
        if values.dtype == object:
            return values.map({c: i for i, c in enumerate(self.classes)}).to_numpy(dtype=int)
        return values.to_numpy(dtype=int)


TASKS: dict[str, Task] = {
    "binary": Task("binary", "label_binary", CLASSES_BINARY),
    "3class": Task("3class", "label_3class", CLASSES_3),
    "tscore": Task("tscore", "t_score"),
    # positive controls for the image pipeline: visible on a knee radiograph in larger studies
    "sex": Task("sex", "sex", ("male", "female")),
    "age": Task("age", "age_years"),
}
#: the classification tasks a T-score model answers through the WHO thresholds
WHO_TASKS = ("binary", "3class")


def get_task(name: str | Task) -> Task:
    if isinstance(name, Task):
        return name
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


#: how a task's target is named in the sentence that says a cohort lacks it
TARGET_WORDS = {"t_score": "T-score", "age_years": "age", "sex": "sex"}


def why_not_estimable(task: str | Task, rows: pd.DataFrame) -> str | None:
    """Why ``task`` cannot be estimated on these rows, as words that complete "not estimable on this cohort:
    ...": its target has no value (a cohort with a class column only has no T-score), or a class it predicts
    has no patient (a cohort of two classes has no three-class task); None when it can."""
    task = get_task(task)
    if task.target not in rows.columns or not rows[task.target].notna().any():
        return f"the cohort has no {TARGET_WORDS.get(task.target, task.target)}"
    if task.is_regression:
        return None
    present = set(task.labels(rows[rows[task.target].notna()]).tolist())
    absent = [c for i, c in enumerate(task.classes) if i not in present]
    if absent:
        return f"no patient of this cohort is in the class {' or '.join(a.replace('_bmd', ' BMD') for a in absent)}"
    return None


def who_class_index(t_score: np.ndarray | pd.Series | float) -> np.ndarray:
    """WHO class index of T-scores: 0 normal, 1 osteopenia, 2 osteoporosis."""
    t = np.asarray(t_score, dtype=float)
    if np.isnan(t).any():
        raise ValueError("T-scores contain NaN")
    return np.where(t <= WHO_OSTEOPOROSIS_MAX, 2, np.where(t < WHO_NORMAL_MIN, 1, 0)).astype(int)


def who_class_name(t_score: float) -> str:
    return CLASSES_3[int(who_class_index(t_score))]


def who_probabilities(mean: np.ndarray, sd: np.ndarray) -> np.ndarray:
    """P(normal), P(osteopenia), P(osteoporosis) of a Gaussian predictive T-score, shape (n, 3).

    The probabilities are ordered by the thresholds by construction and sum to 1.
    """
    mean = np.asarray(mean, dtype=float)
    sd = np.asarray(sd, dtype=float)
    if np.any(sd <= 0) or not np.all(np.isfinite(sd)):
        raise ValueError("predictive standard deviations must be positive and finite")
    from scipy.special import ndtr  # deferred: imports scipy (a second), only where the normal CDF is used

    below_normal = ndtr((WHO_NORMAL_MIN - mean) / sd)
    osteoporosis = ndtr((WHO_OSTEOPOROSIS_MAX - mean) / sd)
    return np.column_stack([1.0 - below_normal, below_normal - osteoporosis, osteoporosis])


def collapse_to_binary(proba_3: np.ndarray) -> np.ndarray:
    """(n, 3) WHO class probabilities -> (n, 2): normal, low BMD (osteopenia or osteoporosis)."""
    proba_3 = np.asarray(proba_3, dtype=float)
    return np.column_stack([proba_3[:, 0], proba_3[:, 1:].sum(axis=1)])
