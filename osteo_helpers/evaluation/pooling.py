"""Pooling per-site AUROCs: a random-effects meta-analysis on the logit scale.

Leave-one-site-out validation gives one AUROC per left-out site. They are pooled as a
DerSimonian-Laird random-effects mean of logit(AUROC), each site weighted by its DeLong variance
(delta method) plus the between-site variance tau^2, with the Hartung-Knapp-Sidik-Jonkman
interval (t with k - 1 degrees of freedom, variance at least the DerSimonian-Laird one). With
three to ten sites the normal-theory interval is far too narrow; this one keeps its coverage
(Debray et al. 2017, BMJ 356:i6460, for the meta-analysis of c-statistics; Roever et al. 2015,
BMC Med Res Methodol 15:99, for the modified Hartung-Knapp variance).

DeLong's variance treats patients as independent; a site with fewer than two patients of a
class has none, and a site with an AUROC of exactly 0 or 1 has no finite logit: both are left out
of the pooling and named in ``excluded``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from numpy.typing import ArrayLike
from scipy import special, stats

from .comparisons import _delong_covariance
from .metrics import as_binary

__all__ = ["logit_auroc", "pooled_auroc", "random_effects"]


def logit_auroc(y_true: ArrayLike, score: ArrayLike) -> tuple[float, float]:
    """logit(AUROC) and its variance (DeLong, delta method); ValueError when it has none."""
    y, s = as_binary(y_true, score)
    auc, cov = _delong_covariance(y, s[None])
    auc, var = float(auc[0]), float(cov[0, 0])
    if not 0 < auc < 1 or not var > 0:
        raise ValueError(f"AUROC {auc:.3f} has no finite logit or no variance")
    return float(special.logit(auc)), var / (auc * (1 - auc)) ** 2


def random_effects(estimates: ArrayLike, variances: ArrayLike, ci: float = 0.95) -> dict[str, float]:
    """DerSimonian-Laird random-effects mean with the modified Hartung-Knapp interval.

    Returns estimate, ci_low, ci_high, se, tau2 (between-study variance), i2 (share of the
    variation beyond chance), q (Cochran's Q) and k. Needs at least two studies.
    """
    theta = np.asarray(estimates, dtype=float)
    v = np.asarray(variances, dtype=float)
    if theta.ndim != 1 or theta.shape != v.shape or len(theta) < 2:
        raise ValueError("random_effects needs two or more estimates with one variance each")
    if not (np.isfinite(theta).all() and np.isfinite(v).all() and (v > 0).all()):
        raise ValueError("estimates must be finite and variances finite and positive")
    k = len(theta)
    w = 1 / v
    fixed = (w * theta).sum() / w.sum()
    q = float((w * (theta - fixed) ** 2).sum())
    tau2 = max(0.0, (q - (k - 1)) / (w.sum() - (w**2).sum() / w.sum()))
    w_star = 1 / (v + tau2)
    mean = float((w_star * theta).sum() / w_star.sum())
    hartung_knapp = (w_star * (theta - mean) ** 2).sum() / (k - 1)
    se = float(np.sqrt(max(1.0, hartung_knapp) / w_star.sum()))
    half = stats.t.ppf(0.5 + ci / 2, k - 1) * se
    return {"estimate": mean, "ci_low": mean - half, "ci_high": mean + half, "se": se, "tau2": tau2,
            "i2": max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0, "q": q, "k": k}


def pooled_auroc(sites: Mapping[str, tuple[ArrayLike, ArrayLike]], ci: float = 0.95) -> dict[str, object]:
    """Random-effects pooled AUROC over sites given as {site: (y_true, score)}, back on the AUROC scale.

    ``value``, ``ci_low``, ``ci_high`` (AUROC), ``tau2`` and ``i2`` (logit scale), ``k`` (sites
    pooled), ``sites`` (their names) and ``excluded`` ({site: reason}). With fewer than two
    poolable sites the value is NaN and ``excluded`` says why.
    """
    names, estimates, variances, excluded = [], [], [], {}
    for name, (y, s) in sites.items():
        try:
            logit, var = logit_auroc(y, s)
        except ValueError as exc:
            excluded[name] = str(exc)
            continue
        names.append(name)
        estimates.append(logit)
        variances.append(var)
    out: dict[str, object] = {"value": np.nan, "ci_low": np.nan, "ci_high": np.nan, "tau2": np.nan, "i2": np.nan,
                              "k": len(names), "sites": names, "excluded": excluded}
    if len(names) >= 2:
        fit = random_effects(estimates, variances, ci)
        out.update(value=float(special.expit(fit["estimate"])), ci_low=float(special.expit(fit["ci_low"])),
                   ci_high=float(special.expit(fit["ci_high"])), tau2=fit["tau2"], i2=fit["i2"])
    return out
