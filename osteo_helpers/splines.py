"""A restricted (natural) cubic spline of one input, as a scikit-learn transformer.

The T-score falls with age faster in middle age than in youth or old age: a mean linear in age
leaves residuals of one sign at both ends and of the other in the middle, and the WHO thresholds
turn that bias into miscalibrated class probabilities. A restricted cubic spline (Harrell,
*Regression Modeling Strategies*, 2nd ed. 2015, section 2.4.5; Stone & Koo 1985) bends between its
knots and is linear beyond the outer two, so it does not swing at the ages few patients have, and
with k knots it costs k - 1 parameters. scikit-learn's `SplineTransformer` has no natural boundary
(its B-splines are free up to the outer knots and cost more parameters), so the truncated-power
basis is written here. The knots sit at fixed quantiles of the training data (Harrell's defaults
for four knots), learned in `fit`: inside a pipeline they are chosen on the training fold only.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

#: Harrell's knot quantiles for four knots (Regression Modeling Strategies, table 2.3)
HARRELL_QUANTILES_4 = (0.05, 0.35, 0.65, 0.95)


def rcs_basis(x: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """The k - 1 columns of the restricted cubic spline with ``knots`` t1 < ... < tk at ``x``: x itself,
    then for j = 1..k-2 the term (x - tj)+^3 - (x - t(k-1))+^3 (tk - tj) / (tk - t(k-1))
    + (x - tk)+^3 (t(k-1) - tj) / (tk - t(k-1)), divided by (tk - t1)^2 so that it is on the scale of x."""
    x = np.asarray(x, dtype=float)
    t = np.asarray(knots, dtype=float)
    k = len(t)
    cube = lambda u: np.clip(u, 0, None) ** 3  # noqa: E731
    columns = [x]
    for j in range(k - 2):
        term = (cube(x - t[j]) - cube(x - t[k - 2]) * (t[k - 1] - t[j]) / (t[k - 1] - t[k - 2])
                + cube(x - t[k - 1]) * (t[k - 2] - t[j]) / (t[k - 1] - t[k - 2]))
        columns.append(term / (t[k - 1] - t[0]) ** 2)
    return np.column_stack(columns)


class RestrictedCubicSpline(TransformerMixin, BaseEstimator):
    """One numeric column -> its restricted cubic spline basis (``len(knots_) - 1`` columns).

    ``quantiles``: where the knots sit in the training data. Repeated knots (many tied values) are
    merged; with fewer than three distinct knots the basis is the input alone (a linear term).
    """

    def __init__(self, quantiles: tuple[float, ...] = HARRELL_QUANTILES_4) -> None:
        self.quantiles = quantiles

    def _column(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        if X.ndim != 2 or X.shape[1] != 1:
            raise ValueError(f"RestrictedCubicSpline takes one column, got shape {X.shape}")
        if not np.isfinite(X).all():
            raise ValueError("RestrictedCubicSpline takes finite values only (impute first)")
        return X[:, 0]

    def fit(self, X, y=None) -> RestrictedCubicSpline:
        q = np.asarray(self.quantiles, dtype=float)
        if q.ndim != 1 or len(q) < 3 or np.any(np.diff(q) <= 0) or q[0] < 0 or q[-1] > 1:
            raise ValueError(f"quantiles must be 3 or more increasing values in [0, 1], got {self.quantiles}")
        x = self._column(X)
        knots = np.unique(np.quantile(x, q))
        self.knots_ = knots if len(knots) >= 3 else knots[:0]
        self.n_features_in_ = 1
        names = getattr(X, "columns", None)
        self.input_name_ = str(names[0]) if names is not None else "x0"
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "knots_")
        x = self._column(X)
        return rcs_basis(x, self.knots_) if len(self.knots_) else x[:, None]

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "knots_")
        name = self.input_name_ if input_features is None else str(input_features[0])
        extra = max(0, len(self.knots_) - 2)
        return np.array([name] + [f"{name}_rcs{j + 1}" for j in range(extra)], dtype=object)
