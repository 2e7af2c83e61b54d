"""Permutation p-values: how often a model trained on shuffled labels scores as well as the real one.

The null comes from re-running the whole pipeline on permuted labels (one row per
permutation, model and metric); the p-value counts the observed run as one of the
permutations, (1 + #{null >= observed}) / (1 + N), so it is never 0 and is exact
(valid at every level) under exchangeability (Phipson & Smyth 2010).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

__all__ = ["permutation_p_value", "permutation_summary"]

_ALTERNATIVES = ("greater", "less", "two-sided")
SUMMARY_COLUMNS = ["model", "metric", "observed", "null_mean", "null_q025", "null_q95", "null_q975", "n_permutations",
                   "p_value", "p_less"]


def permutation_p_value(observed: float, null: ArrayLike, alternative: str = "greater") -> float:
    """(1 + #{null >= observed}) / (1 + N) for ``greater`` (``<=`` for ``less``).

    ``two-sided`` doubles the smaller one-sided p (capped at 1). Non-finite null values
    (a metric undefined in some permutation) are dropped from N.
    """
    if alternative not in _ALTERNATIVES:
        raise ValueError(f"alternative must be one of {_ALTERNATIVES}, got {alternative!r}")
    if not np.isfinite(observed):
        raise ValueError("observed value must be finite")
    values = np.asarray(null, dtype=float).ravel()
    values = values[np.isfinite(values)]
    if values.size == 0:
        raise ValueError("null distribution has no finite values")
    n = values.size
    greater = (1 + np.sum(values >= observed)) / (1 + n)
    less = (1 + np.sum(values <= observed)) / (1 + n)
    if alternative == "greater":
        return float(greater)
    if alternative == "less":
        return float(less)
    return float(min(1.0, 2 * min(greater, less)))


def permutation_summary(
    null: pd.DataFrame, observed: pd.DataFrame, alternative: str = "greater"
) -> pd.DataFrame:
    """Per model and metric: observed value, null mean, null 2.5th, 95th and 97.5th centiles, N, the
    p-value of ``alternative`` and ``p_less`` (how often the null is at least as low: a small
    ``p_less`` flags an observed value below its null, which with a fixed bootstrap is not a
    reversed signal but instability of the fits).

    ``null`` has columns permutation, model, metric, value; ``observed`` has model,
    metric, value (e.g. an ``oof_metrics`` table with a ``model`` column). Pairs present
    in only one of the two tables are left out.
    """
    for name, table, cols in (("null", null, ("permutation", "model", "metric", "value")),
                              ("observed", observed, ("model", "metric", "value"))):
        missing = set(cols) - set(table.columns)
        if missing:
            raise ValueError(f"{name} table lacks columns: {sorted(missing)}")
    if observed.duplicated(["model", "metric"]).any():
        raise ValueError("observed table holds a (model, metric) pair more than once")
    obs = observed.set_index(["model", "metric"])["value"]
    rows = []
    for (model, metric), part in null.groupby(["model", "metric"], sort=False):
        if (model, metric) not in obs.index or not np.isfinite(obs[(model, metric)]):
            continue
        values = part["value"].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        if finite.size == 0:
            continue
        rows.append({"model": model, "metric": metric, "observed": float(obs[(model, metric)]),
                     "null_mean": float(finite.mean()), "null_q025": float(np.quantile(finite, 0.025)),
                     "null_q95": float(np.quantile(finite, 0.95)), "null_q975": float(np.quantile(finite, 0.975)),
                     "n_permutations": int(finite.size),
                     "p_value": permutation_p_value(obs[(model, metric)], finite, alternative),
                     "p_less": permutation_p_value(obs[(model, metric)], finite, "less")})
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
