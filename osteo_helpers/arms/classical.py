"""Classical arms: clinical baselines, the acquisition probe, 1-NN on pixels, image biomarkers.

None is tuned on a test fold: hyper-parameters are fixed a priori, except ``clinical_full``,
whose regularisation strength is chosen by grouped cross-validation inside each training fold.
Logistic regressions are not class-weighted, so their probabilities stay calibrated (the
calibration of every arm is reported); those of the declared models (age, OST, clinical)
are unpenalised (`clinical_logistic`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import pandas as pd
from scipy import optimize
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, Ridge
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from threadpoolctl import threadpool_limits

from ..config import Profile
from ..splines import RestrictedCubicSpline
from ..splits import StratifiedGroupKFold, group_keys
from ..tabular import (
    CATEGORICAL_FEATURES,
    CLINICAL_FEATURES,
    available_inputs,
    ost_index,
    preprocessor_for,
    spline_inputs,
    to_model_frame,
)
from .base import Arm, inner_strata, register

#: inverse regularisation strengths searched by ``clinical_full`` (inside each training fold)
CLINICAL_FULL_CS = tuple(np.logspace(-3, 1, 5))
#: ridge strengths searched by ``clinical_full`` for a continuous target
CLINICAL_FULL_ALPHAS = tuple(np.logspace(-2, 3, 9))
#: inverse regularisation of the biomarker regressions (~75 correlated texture features for
#: ~240 patients), fixed before looking at any result
BIOMARKER_C = 0.1
BIOMARKER_PREFIX = "bio_"
INNER_FOLDS = 5


class LinearGaussian(RegressorMixin, BaseEstimator):
    """Ridge regression with a Gaussian predictive distribution whose spread depends on the inputs:
    y ~ N(X b + a, s(X)^2), log s(X) = X g + c.

    The mean is the ridge fit; the log standard deviation is then fitted by maximum likelihood on
    the ridge's training residuals, with the same ridge penalty on ``g``. A T-score model thus
    gives probabilities for the WHO classes, with a wider distribution where the T-score varies
    more (older patients, where osteoporosis lies), instead of one spread for everyone.
    """

    def __init__(self, alpha: float = 1e-3) -> None:
        self.alpha = alpha

    def fit(self, X: np.ndarray, y: np.ndarray) -> LinearGaussian:
        X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
        self.ridge_ = Ridge(alpha=self.alpha).fit(X, y)
        self.coef_, self.intercept_ = self.ridge_.coef_, float(self.ridge_.intercept_)
        squared = (y - self.ridge_.predict(X)) ** 2 + 1e-12
        n = len(y)

        def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
            eta = X @ theta[1:] + theta[0]
            scaled = squared * np.exp(-2 * eta)
            grad_eta = 1 - scaled
            value = np.sum(eta + scaled / 2) + self.alpha / 2 * np.sum(theta[1:] ** 2)
            return value / n, np.r_[grad_eta.sum(), X.T @ grad_eta + self.alpha * theta[1:]] / n

        start = np.r_[0.5 * np.log(squared.mean()), np.zeros(X.shape[1])]
        theta = optimize.minimize(objective, start, jac=True, method="L-BFGS-B").x
        self.log_sd_intercept_, self.log_sd_coef_ = float(theta[0]), theta[1:]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.ridge_.predict(X)

    def predict_sd(self, X: np.ndarray) -> np.ndarray:
        """Standard deviation of the predictive distribution of every row."""
        return np.exp(np.clip(np.asarray(X, dtype=float) @ self.log_sd_coef_ + self.log_sd_intercept_, -7, 7))

    def predict_distribution(self, X: np.ndarray) -> np.ndarray:
        return np.column_stack([self.predict(X), self.predict_sd(X)])


def clinical_logistic() -> LogisticRegression:
    """The logistic regression of the declared models (``age``, ``ost``, ``clinical``): unpenalised.

    Two or three parameters (declared in protocol amendment 1, 2026-11-27), fitted on about 190 patients, need no
    shrinkage, and scikit-learn's default ridge penalty (C = 1) pulls the predictions towards the
    average risk (a calibration slope above 1). A tight tolerance makes the fit the maximum-likelihood
    one (`logistic_equation` gives the same probabilities). The residual arms start from this same model.
    """
    return LogisticRegression(C=np.inf, tol=1e-10, max_iter=5000)


def logistic_equation(rows: pd.DataFrame, y: np.ndarray, features: tuple[str, ...] = CLINICAL_FEATURES
                      ) -> pd.DataFrame:
    """The unpenalised logistic model of ``y`` on ``features`` in readable units, with Wald 95% CIs:
    one row per term (``intercept``, each numeric input per unit, each category against the first),
    columns ``term, coefficient, se, ci_low, ci_high, odds_ratio``.

    The same model as the ``clinical`` arm fitted on these rows (its standardised, one-hot inputs span
    the same space, so both give the same probabilities), written as an equation a reader can apply.
    Fitted by Newton's method (iteratively reweighted least squares). Where the inputs separate the classes
    (every normal patient younger than every low-BMD one) no maximum-likelihood fit exists: Newton's steps
    grow without end, and every number is NaN (`answer.equation_text` says why).
    """
    frame = to_model_frame(rows, features)
    categorical = [f for f in features if f in CATEGORICAL_FEATURES]
    design = pd.get_dummies(frame, columns=categorical, drop_first=True, dtype=float)
    X = np.column_stack([np.ones(len(design)), design.to_numpy(float)])
    y = np.asarray(y, dtype=float)
    beta, converged = np.zeros(X.shape[1]), False
    with np.errstate(over="ignore"):
        for _ in range(100):
            p = 1 / (1 + np.exp(-(X @ beta)))
            hessian = X.T @ (X * (p * (1 - p))[:, None])
            try:
                step = np.linalg.solve(hessian, X.T @ (y - p))
            except np.linalg.LinAlgError:
                break
            beta = beta + step
            if np.abs(step).max() < 1e-10:
                converged = bool(np.all(np.isfinite(beta)))
                break
    if not converged:
        beta = se = np.full(X.shape[1], np.nan)
    else:
        p = 1 / (1 + np.exp(-(X @ beta)))
        se = np.sqrt(np.diag(np.linalg.inv(X.T @ (X * (p * (1 - p))[:, None]))))
    return pd.DataFrame({"term": ["intercept", *design.columns], "coefficient": beta, "se": se,
                         "ci_low": beta - 1.959963984540054 * se, "ci_high": beta + 1.959963984540054 * se,
                         "odds_ratio": np.exp(beta)})


def overlap_range(values: np.ndarray | pd.Series, y: np.ndarray | pd.Series) -> tuple[float, float]:
    """Where both classes of ``y`` were seen along ``values`` (an input such as age): from the larger of the
    classes' minima to the smaller of their maxima. A model fitted on these rows interpolates there; outside,
    only one class was ever observed and the model extrapolates from it. (NaN, NaN) without an overlap."""
    x, labels = np.asarray(values, dtype=float), np.asarray(y)
    classes = np.unique(labels)
    low = max(float(np.nanmin(x[labels == c])) for c in classes)
    high = min(float(np.nanmax(x[labels == c])) for c in classes)
    return (low, high) if len(classes) > 1 and low <= high else (float("nan"), float("nan"))


def aligned_proba(model, X, n_classes: int) -> np.ndarray:
    """predict_proba with one column per task class, also when a class was absent from training."""
    proba = np.zeros((len(X), n_classes))
    proba[:, np.asarray(model.classes_, dtype=int)] = model.predict_proba(X)
    return proba


def _neg_log_loss(estimator, X, y) -> float:
    """Mean log likelihood of the true classes (scikit-learn's log-loss scorer without its input checks,
    which cost more than the fits in the inner folds and the permutation null)."""
    proba = np.clip(estimator.predict_proba(X), 1e-15, 1.0)
    return float(np.mean(np.log(proba[np.arange(len(y)), np.searchsorted(estimator.classes_, y)])))


def _grouped_cv(rows: pd.DataFrame, seed: int, strata: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Inner folds of a training fold: grouped by person, stratified by ``strata`` (`base.inner_strata`)."""
    return list(_inner_folds(tuple(strata), tuple(group_keys(rows)), seed))


@lru_cache(maxsize=256)
def _inner_folds(strata: tuple, groups: tuple, seed: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """Memoised: the folds depend on the training fold only, not on the (possibly permuted) target,
    and StratifiedGroupKFold's search costs more than the permutation null's fits. A small cohort
    whose smallest class has fewer than ``INNER_FOLDS`` people gets as many folds as it has (at least 2)."""
    people = pd.Series(groups).groupby(np.asarray(strata)).nunique()
    splitter = StratifiedGroupKFold(n_splits=max(2, min(INNER_FOLDS, int(people.min()))), shuffle=True,
                                    random_state=seed)
    return tuple(splitter.split(np.zeros(len(strata)), np.asarray(strata), np.asarray(groups)))


class ClassicalArm(Arm):
    """A scikit-learn pipeline on inputs built from the rows; a Gaussian linear model for regression."""

    supports_regression = True

    def __init__(self, task: str = "binary", *, profile: Profile | None = None,
                 target_sensitivity: float | None = None, random_state: int = 0) -> None:
        self.task = task
        self.profile = profile
        self.target_sensitivity = target_sensitivity
        self.random_state = random_state

    def _inputs(self, rows: pd.DataFrame):
        raise NotImplementedError

    def _preprocessor(self):
        return StandardScaler()

    def _classifier(self):
        return clinical_logistic()

    def _regressor(self):
        return LinearGaussian()

    def _regression_preprocessor(self):
        """The inputs' transform for a continuous target: as for the classes, unless the arm declares a spline."""
        return self._preprocessor()

    def _estimator(self, rows: pd.DataFrame):
        if self.task_.is_regression:
            return make_pipeline(self._regression_preprocessor(), self._regressor())
        return make_pipeline(self._preprocessor(), self._classifier())

    def _fit(self, rows: pd.DataFrame, y: np.ndarray) -> None:
        self.inputs_ = available_inputs(rows)  # the allow-listed inputs this cohort has
        self.model_ = self._estimator(rows).fit(self._inputs(rows), y)

    def _predict_raw(self, rows: pd.DataFrame) -> np.ndarray:
        X = self._inputs(rows)
        if self.task_.is_regression:
            final = self.model_[-1]
            final = getattr(final, "best_estimator_", final)
            return final.predict_distribution(self.model_[:-1].transform(X))
        return aligned_proba(self.model_, X, len(self.classes_))


@register("age")
class AgeArm(ClassicalArm):
    """Age alone: the confounder every other arm must beat."""

    def _inputs(self, rows: pd.DataFrame) -> np.ndarray:
        return rows[["age_years"]].to_numpy(float)

    def _regression_preprocessor(self):
        """The T-score model of age: a restricted cubic spline of age (`tabular.TSCORE_SPLINE`)."""
        if "age_years" in spline_inputs(self.task):
            return make_pipeline(RestrictedCubicSpline(), StandardScaler())
        return self._preprocessor()


@register("ost")
class OstArm(ClassicalArm):
    """The Osteoporosis Self-assessment Tool, 0.2 x (weight - age), as the single input."""

    requires = ("weight_kg",)

    def _inputs(self, rows: pd.DataFrame) -> np.ndarray:
        return ost_index(rows["weight_kg"], rows["age_years"]).reshape(-1, 1)


@register("clinical")
class ClinicalArm(ClassicalArm):
    """The declared parsimonious clinical model (``tabular.CLINICAL_FEATURES``: age and sex)."""

    def _inputs(self, rows: pd.DataFrame) -> pd.DataFrame:
        return to_model_frame(rows, CLINICAL_FEATURES)

    def _preprocessor(self):
        return preprocessor_for(CLINICAL_FEATURES)

    def _regression_preprocessor(self):
        """The T-score model: age through a restricted cubic spline (`tabular.TSCORE_SPLINE`), sex as is."""
        return preprocessor_for(CLINICAL_FEATURES, spline=spline_inputs(self.task))


class PenalisedArm(ClassicalArm):
    """A ridge-penalised linear model whose strength is chosen by grouped CV inside the training fold
    (``strengths``: inverse strengths C of the logistic regression; ``alphas``: ridge strengths of the
    Gaussian model of a continuous target). ``strength`` fixes it: the screening threshold's inner fits
    reuse the fold's choice."""

    strengths: tuple[float, ...] = CLINICAL_FULL_CS
    alphas: tuple[float, ...] = CLINICAL_FULL_ALPHAS

    def __init__(self, task: str = "binary", *, profile: Profile | None = None,
                 target_sensitivity: float | None = None, random_state: int = 0,
                 strength: float | None = None) -> None:
        super().__init__(task, profile=profile, target_sensitivity=target_sensitivity, random_state=random_state)
        self.strength = strength

    def _fit(self, rows: pd.DataFrame, y: np.ndarray) -> None:
        self.inputs_ = available_inputs(rows)
        if self.strength is not None:  # fixed (the threshold's inner folds reuse the fold's choice)
            final = LinearGaussian(alpha=self.strength) if self.task_.is_regression else LogisticRegression(
                C=self.strength, max_iter=5000)
        elif self.task_.is_regression:
            final = GridSearchCV(LinearGaussian(), {"alpha": list(self.alphas)}, scoring="neg_mean_squared_error",
                                 cv=_grouped_cv(rows, self.random_state, inner_strata(rows, y, self.task_)))
        else:  # the regularisation path with warm starts: the same choice as a grid search, faster
            folds = _grouped_cv(rows, self.random_state, inner_strata(rows, y, self.task_))
            final = LogisticRegressionCV(Cs=list(self.strengths), cv=folds,
                                         scoring=_neg_log_loss, solver="newton-cholesky", max_iter=5000,
                                         l1_ratios=(0.0,), use_legacy_attributes=False)
        self.model_ = make_pipeline(self._preprocessor(), final).fit(self._inputs(rows), y)
        if self.strength is not None:
            self.strength_ = float(self.strength)
        elif self.task_.is_regression:
            self.strength_ = float(final.best_params_["alpha"])
        else:
            self.strength_ = float(final.C_)

    def _inner_fit_params(self) -> dict:
        """The strength this fold chose: a search inside every inner fold would cost 45 fits per
        inner fold for the same threshold."""
        return {"strength": self.strength_}


@register("clinical_full")
class ClinicalFullArm(PenalisedArm):
    """The whole clinical allow-list, L2 strength chosen by grouped CV inside the training fold."""

    def _inputs(self, rows: pd.DataFrame) -> pd.DataFrame:
        return to_model_frame(rows, self.inputs_)

    def _preprocessor(self):
        return preprocessor_for(self.inputs_)


@register("gbm")
class GbmArm(ClassicalArm):
    """Gradient boosting on the allow-list: a non-linear clinical reference (fixed settings)."""

    supports_regression = False

    def _inputs(self, rows: pd.DataFrame) -> pd.DataFrame:
        return to_model_frame(rows, self.inputs_)

    def _preprocessor(self):
        return preprocessor_for(self.inputs_)

    def _classifier(self):
        n_iter = self.profile.gbm_estimators if self.profile is not None else 200
        return HistGradientBoostingClassifier(max_iter=n_iter, learning_rate=0.05, max_depth=3,
                                              random_state=self.random_state)

    # One OpenMP thread: on a few hundred rows the threads' start and synchronisation cost twenty times
    # the work (a fit took 2 s with two threads, 0.1 s with one, the same predictions; benchmarks/README.md).
    def _fit(self, rows: pd.DataFrame, y: np.ndarray) -> None:
        with threadpool_limits(limits=1, user_api="openmp"):
            super()._fit(rows, y)

    def _predict_raw(self, rows: pd.DataFrame) -> np.ndarray:
        with threadpool_limits(limits=1, user_api="openmp"):
            return super()._predict_raw(rows)


@register("batch_only")
class BatchOnlyArm(ClassicalArm):
    """Sees only the acquisition attributes (batch, colour mode, aspect ratio): a shortcut probe."""

    supports_regression = False

    def _inputs(self, rows: pd.DataFrame) -> pd.DataFrame:
        aspect = (rows["width"] / rows["height"]).round(2).astype(str)
        return rows[["batch", "mode"]].astype(str).assign(aspect=aspect)

    def _preprocessor(self):
        return OneHotEncoder(handle_unknown="ignore")


@register("pixel_1nn")
class PixelNearestNeighbourArm(ClassicalArm):
    """1-nearest-neighbour on 32 px thumbnails: it memorises, so it exposes duplicate-image leakage."""

    supports_regression = False
    thumbnail = 32

    def _inputs(self, rows: pd.DataFrame) -> np.ndarray:
        images = np.stack(rows["image"].to_numpy()).astype(np.float32) / 255
        f = max(1, images.shape[1] // self.thumbnail)
        n, h, w = images.shape
        small = images[:, : h // f * f, : w // f * f].reshape(n, h // f, f, w // f, f).mean(axis=(2, 4))
        return small.reshape(n, -1)

    def _preprocessor(self):
        return "passthrough"

    def _classifier(self):
        return KNeighborsClassifier(n_neighbors=1)


def biomarker_columns(rows: pd.DataFrame) -> list[str]:
    """The patient-level biomarker features merged into the rows (never the ``qa_`` acquisition columns)."""
    return [c for c in rows.columns if c.startswith(BIOMARKER_PREFIX)]


class _BiomarkerArm(ClassicalArm):
    supports_regression = False
    with_clinical = False

    def supports(self, rows: pd.DataFrame) -> np.ndarray:
        return rows["biomarker_localised"].fillna(False).to_numpy(dtype=bool)

    def _inputs(self, rows: pd.DataFrame) -> pd.DataFrame:
        bio = rows[biomarker_columns(rows)].astype(float)
        return pd.concat([bio, to_model_frame(rows, self.inputs_)], axis=1) if self.with_clinical else bio

    def _estimator(self, rows: pd.DataFrame):
        numeric = Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                            ("scale", StandardScaler())])
        columns = biomarker_columns(rows)
        if self.with_clinical:
            pre = ColumnTransformer([("biomarker", numeric, columns),
                                     ("clinical", preprocessor_for(self.inputs_), list(self.inputs_))],
                                    remainder="drop")
        else:
            pre = numeric
        return make_pipeline(pre, LogisticRegression(C=BIOMARKER_C, max_iter=5000))


@register("biomarker")
class BiomarkerArm(_BiomarkerArm):
    """L2 logistic regression on the patient-level texture and radiogrammetry biomarkers."""


@register("biomarker+clinical")
class BiomarkerClinicalArm(_BiomarkerArm):
    """The biomarkers plus the clinical allow-list."""

    with_clinical = True
