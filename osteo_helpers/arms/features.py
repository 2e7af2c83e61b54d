"""The image arm on frozen pretrained features: a penalised linear head, fitted per fold.

Every image's vector comes from the frozen ImageNet encoder once (`osteo_helpers.features`, the
``features`` column of the rows). Inside a training fold the vectors are log-transformed (`signed_log1p`),
standardised and reduced by PCA to the profile's
``feature_components``, all fitted on the training rows only; a logistic regression (a Gaussian
linear model for a continuous target) follows, its ridge strength chosen by grouped CV inside the
training fold. The network arms that read the image (`networks`) use the same transform.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from ..features import COLUMN
from .base import register
from .classical import PenalisedArm

#: inverse ridge strengths the image head searches (64 components for ~190 patients: strong shrinkage
#: must be reachable)
FEATURE_CS = tuple(np.logspace(-4, 1, 11))
#: ridge strengths of its Gaussian model of a continuous target (age, T-score)
FEATURE_ALPHAS = tuple(np.logspace(-1, 4, 11))


def feature_stack(rows: pd.DataFrame) -> np.ndarray:
    """The rows' feature vectors as one (N, D) float32 matrix."""
    if COLUMN not in rows:
        raise ValueError("the rows hold no pretrained features (Study.rows adds them; features.with_features)")
    return np.stack(rows[COLUMN].to_numpy()).astype(np.float32)


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """sign(x) log(1 + |x|): the pooled activations are skewed, and the multiscale pooling's stage outputs
    (linear bottlenecks) can be negative."""
    return np.sign(x) * np.log1p(np.abs(x))


def feature_transform(components: int) -> Pipeline:
    """Signed log1p, standardise, PCA to ``components``: fitted on a training fold, applied to its test rows."""
    return make_pipeline(FunctionTransformer(signed_log1p), StandardScaler(),
                         PCA(components, svd_solver="full"))  # exact: "auto" picks a randomized approximation here


def n_components(profile, n_rows: int) -> int:
    """The profile's component count, at most one fewer than the training rows (a small cohort's fold)."""
    return max(1, min(profile.feature_components, n_rows - 1))


@register("image")
class ImageArm(PenalisedArm):
    """The image alone: frozen ImageNet features and a penalised linear head (see the module docstring)."""

    strengths = FEATURE_CS
    alphas = FEATURE_ALPHAS

    def _fit(self, rows: pd.DataFrame, y: np.ndarray) -> None:
        self.components_ = n_components(self.profile, len(rows))
        super()._fit(rows, y)

    def _inputs(self, rows: pd.DataFrame) -> np.ndarray:
        return feature_stack(rows)

    def _preprocessor(self) -> Pipeline:
        return feature_transform(self.components_)
