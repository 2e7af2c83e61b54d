"""Clinical inputs: the allow-list, the preprocessing pipeline, and clinical scores.

Only columns named in the allow-list can reach a model. Labels are defined by the
T-score, so the T-score, Z-score, diagnosis and anything derived from them are refused.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from .vocabulary import (  # noqa: F401  (the allow-list and its vocabulary, re-exported where models read them)
    BOOLEAN_FEATURES,
    CATEGORICAL_FEATURES,
    CATEGORY_VALUES,
    INPUT_FEATURES,
    NUMERIC_FEATURES,
    NUMERIC_WITH_INDICATOR,
    UNIT_NAMES,
    UNITS,
)

if TYPE_CHECKING:
    from sklearn.compose import ColumnTransformer

def available_inputs(table: pd.DataFrame) -> tuple[str, ...]:
    """The allow-listed inputs a cohort table holds, in allow-list order: what an arm fitted on it uses."""
    return tuple(f for f in INPUT_FEATURES if f in table.columns)


#: The declared parsimonious clinical model (protocol amendment 1, 2026-11-27, after the original design's results):
#: age and sex, the two inputs every clinical risk tool shares (FRAX, OST, ORAI, SCORE) and that are
#: recorded for every patient; two parameters suit the ~30 normal patients of a training fold.
CLINICAL_FEATURES: tuple[str, ...] = ("age_years", "sex")
#: Inputs the T-score models (``age_tscore``, ``clinical_tscore`` and the base of ``fusion_tscore``) take
#: through a restricted cubic spline (`splines.RestrictedCubicSpline`, four knots at Harrell's quantiles of the
#: training fold), in the mean and the log standard deviation: the T-score falls with age non-linearly, and a
#: linear mean left miscalibrated class probabilities (the protocol's T-score amendment, 7 December 2026).
#: The binary and three-class models keep their declared linear form.
TSCORE_SPLINE: tuple[str, ...] = ("age_years",)


def spline_inputs(task: str) -> tuple[str, ...]:
    """The inputs an arm fitted for ``task`` takes through a spline: `TSCORE_SPLINE` for the T-score, else none."""
    return TSCORE_SPLINE if task == "tscore" else ()

# Anything matching these names carries the label (or is the label) and must never be an input.
FORBIDDEN_PATTERNS: tuple[str, ...] = (r"t[\s_-]?score", r"z[\s_-]?score", r"diagnos", r"^label", r"who_",
                                       r"mentions_bone_diagnosis", r"mentions_outcome", r"^y_true$")


class LeakageError(ValueError):
    """A label-derived column was about to become a model input."""


def is_forbidden(name: str) -> bool:
    return any(re.search(p, name.lower()) for p in FORBIDDEN_PATTERNS)


def check_features(features: tuple[str, ...] | list[str]) -> None:
    """Refuse any feature list that contains a label-derived column."""
    bad = [f for f in features if is_forbidden(f)]
    if bad:
        raise LeakageError(f"label-derived column(s) cannot be model inputs: {bad}")


def make_preprocessor(numeric: tuple[str, ...] = NUMERIC_FEATURES,
                      numeric_with_indicator: tuple[str, ...] = NUMERIC_WITH_INDICATOR,
                      boolean: tuple[str, ...] = BOOLEAN_FEATURES,
                      categorical: tuple[str, ...] = CATEGORICAL_FEATURES,
                      spline: tuple[str, ...] = ()) -> ColumnTransformer:
    """The clinical ColumnTransformer; fit it on training folds only. Numeric inputs named in ``spline``
    are expanded into a restricted cubic spline (knots from the training fold) instead of one column."""
    from sklearn.compose import ColumnTransformer  # deferred: imports sklearn (the CLI reads this module's lists)
    from sklearn.impute import SimpleImputer  # deferred: imports sklearn
    from sklearn.pipeline import Pipeline  # deferred: imports sklearn
    from sklearn.preprocessing import OneHotEncoder, StandardScaler  # deferred: imports sklearn

    from .splines import RestrictedCubicSpline  # deferred: imports sklearn and scipy

    check_features(tuple(numeric) + tuple(numeric_with_indicator) + tuple(boolean) + tuple(categorical))
    if set(spline) - set(numeric):
        raise KeyError(f"spline input(s) {sorted(set(spline) - set(numeric))} are not numeric inputs of this transform")
    num = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
    num_ind = Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True)),
                        ("scale", StandardScaler())])
    boo = SimpleImputer(strategy="most_frequent")
    cat = Pipeline([("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                    ("onehot", OneHotEncoder(handle_unknown="ignore", sparse_output=False))])
    splines = [(f"spline_{name}", Pipeline([("impute", SimpleImputer(strategy="median")),
                                            ("spline", RestrictedCubicSpline()), ("scale", StandardScaler())]),
                [name]) for name in spline]
    transformer = ColumnTransformer(
        [("numeric", num, [f for f in numeric if f not in spline]), *splines,
         ("numeric_missing", num_ind, list(numeric_with_indicator)),
         ("boolean", boo, list(boolean)), ("categorical", cat, list(categorical))],
        remainder="drop", verbose_feature_names_out=True,
    )
    return transformer


def preprocessor_for(features: tuple[str, ...] | list[str], spline: tuple[str, ...] = ()) -> ColumnTransformer:
    """The ColumnTransformer for a subset of the allow-list (each feature keeps its own treatment; those
    in ``spline`` that the subset holds through a restricted cubic spline)."""
    unknown = [f for f in features if f not in INPUT_FEATURES]
    if unknown:
        check_features(unknown)
        raise KeyError(f"feature(s) {unknown} are not in the clinical allow-list")
    pick = lambda group: tuple(f for f in group if f in features)  # noqa: E731
    return make_preprocessor(pick(NUMERIC_FEATURES), pick(NUMERIC_WITH_INDICATOR), pick(BOOLEAN_FEATURES),
                             pick(CATEGORICAL_FEATURES), pick(spline))


def to_model_frame(table: pd.DataFrame, features: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Select allow-listed columns with plain numpy-friendly dtypes (nullable -> float/object).

    ``features`` None: every allow-listed input the table holds (`available_inputs`).
    """
    features = available_inputs(table) if features is None else features
    check_features(features)
    missing = [f for f in features if f not in table.columns]
    if missing:
        raise KeyError(f"clinical table lacks input column(s) {missing}")
    def plain(f: str) -> pd.Series:
        col = table[f]
        if f in BOOLEAN_FEATURES:
            return col.astype("Float64").astype(float)
        if f in CATEGORICAL_FEATURES:
            return col.astype(object).where(col.notna(), np.nan)
        return col.astype(float)

    return pd.DataFrame({f: plain(f) for f in features}, index=table.index)


def original_feature(transformed_name: str) -> str:
    """Map a transformed column name (e.g. 'categorical__sex_female') back to its clinical column."""
    name = transformed_name.rsplit("__", 1)[-1]  # nested transformers prefix several blocks
    if name.startswith("missingindicator_"):
        return name[len("missingindicator_"):]
    for f in sorted(INPUT_FEATURES, key=len, reverse=True):
        if name == f or name.startswith(f + "_"):
            return f
    return name


def ost_index(weight_kg: np.ndarray, age_years: np.ndarray) -> np.ndarray:
    """Osteoporosis Self-assessment Tool: 0.2 x (weight in kg - age in years). Low means high risk."""
    return 0.2 * (np.asarray(weight_kg, float) - np.asarray(age_years, float))


def transform_columns(table: pd.DataFrame) -> pd.DataFrame:
    """The model columns the clinical transform makes, each with the clinical feature it comes from."""
    names = list(preprocessor_for(available_inputs(table)).fit(to_model_frame(table)).get_feature_names_out())
    return pd.DataFrame({"model column": names, "clinical feature": [original_feature(n) for n in names]})
