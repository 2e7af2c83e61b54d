"""ROI network arms: the image network on per-knee trabecular ROI tiles, averaged per patient.

Every knee carries its patient's label and split group, so both knees of a patient fall on the
same side of every split; the knees' probabilities are averaged to one prediction per patient
(one patient, one prediction). A patient whose image has no localised knee gets no prediction
(`supports`): never an imputed score. ``roi_cnn+clinical`` is the concatenation fusion on the
same knee rows with the patient's clinical inputs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..config import Profile
from .base import Arm, register
from .networks import FusionConcatArm, ImageCnnArm


def expand_knees(rows: pd.DataFrame, y: np.ndarray | None = None) -> tuple[pd.DataFrame, np.ndarray | None]:
    """One row per knee (its ROI tile as ``image``), with the patient's columns and target."""
    counts = rows["roi_tiles"].map(lambda t: 0 if t is None else len(t)).to_numpy()
    patient = np.repeat(np.arange(len(rows)), counts)
    knees = rows.iloc[patient].drop(columns=["roi_tiles", "image"], errors="ignore").reset_index(drop=True)
    knees["image"] = [tile for t in rows["roi_tiles"] if t is not None for tile in t]
    return knees, None if y is None else np.asarray(y)[patient]


class _RoiArm(Arm):
    inner = ImageCnnArm
    heavy = True

    def __init__(self, task: str = "binary", *, profile: Profile | None = None,
                 target_sensitivity: float | None = None, random_state: int = 0, progress: bool = True,
                 fixed_epochs: int | None = None) -> None:
        self.task = task
        self.profile = profile
        self.target_sensitivity = target_sensitivity
        self.random_state = random_state
        self.progress = progress
        self.fixed_epochs = fixed_epochs

    def supports(self, rows: pd.DataFrame) -> np.ndarray:
        if "roi_tiles" not in rows:
            raise KeyError("the ROI arms need the cohort's 'roi_tiles' column (Study.rows(biomarkers=True))")
        return rows["roi_tiles"].map(lambda t: t is not None and len(t) > 0).to_numpy(dtype=bool)

    def _fit(self, rows: pd.DataFrame, y: np.ndarray) -> None:
        knees, y_knees = expand_knees(rows, y)
        profile = self.profile.with_overrides(epochs=self.profile.roi_epochs)
        self.network_ = self.inner(self.task, profile=profile, random_state=self.random_state, progress=self.progress,
                                   fixed_epochs=self.fixed_epochs, from_scratch=True).fit(knees, y_knees)
        self.history_ = self.network_.history_
        self.best_epoch_ = self.network_.best_epoch_

    def _predict_raw(self, rows: pd.DataFrame) -> np.ndarray:
        knees, _ = expand_knees(rows)
        proba = self.network_.predict_proba(knees)
        patient = np.repeat(np.arange(len(rows)), rows["roi_tiles"].map(len).to_numpy())
        return pd.DataFrame(proba).groupby(patient).mean().to_numpy()

    def _threshold_folds(self) -> int:
        return self.profile.network_threshold_folds

    def _inner_fit_params(self) -> dict:
        """The epochs this fold's early stopping chose (knees of a patient stay together: the inner
        folds split patients)."""
        return {"fixed_epochs": self.best_epoch_, "progress": False}


@register("roi_cnn")
class RoiCnnArm(_RoiArm):
    """The image network on the knees' ROI tiles."""


@register("roi_cnn+clinical")
class RoiCnnClinicalArm(_RoiArm):
    """The concatenation fusion on the knees' ROI tiles and the patient's clinical inputs."""

    inner = FusionConcatArm
