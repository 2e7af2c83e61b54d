"""Pooling per-site estimates: a random-effects meta-analysis of discrimination and of calibration.

Leave-one-site-out validation gives one estimate per left-out site. Each metric is pooled on the
scale where it is roughly normal: the AUROC as logit(AUROC) with its DeLong variance (delta
method; Debray et al. 2017, BMJ 356:i6460), the calibration intercept and slope as they are, with
the Wald variances of their logistic fits. The pooling is DerSimonian-Laird: the between-site
variance tau^2 from Cochran's Q, each site weighted by 1 / (its variance + tau^2). Beside it:

- the mean's interval by the modified Hartung-Knapp-Sidik-Jonkman method (t with k - 1 degrees of
  freedom, variance at least the DerSimonian-Laird one; Roever et al. 2015, BMC Med Res Methodol
  15:99): with three to ten sites the normal-theory interval is far too narrow;
- the 95% **prediction interval** of Higgins, Thompson & Spiegelhalter (2009, JRSS A 172:137):
  mean +/- t(k - 2) sqrt(tau^2 + SE^2), SE the DerSimonian-Laird standard error of the mean. It says
  where the metric of a new site would lie, which is what transport is about; it needs k >= 3, and
  with k = 3 its t has ONE degree of freedom (t = 12.7): three sites say almost nothing about a
  fourth, and the interval shows it;
- Cochran's Q with its chi-square p-value (k - 1 df) and I^2, the share of the variation beyond chance.

A variance treats patients as independent; a site whose estimate is not finite or has no variance
(one class, an AUROC of 0 or 1, a fit that does not converge) is left out and named in ``excluded``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
from numpy.typing import ArrayLike
from scipy import special, stats

from .calibration import calibration_estimates
from .comparisons import _delong_covariance
from .metrics import as_binary

__all__ = ["POOLED_METRICS", "logit_auroc", "pooled_auroc", "pooled_sites", "random_effects"]


def logit_auroc(y_true: ArrayLike, score: ArrayLike) -> tuple[float, float]:
    """logit(AUROC) and its variance (DeLong, delta method); ValueError when it has none."""
    y, s = as_binary(y_true, score)
    auc, cov = _delong_covariance(y, s[None])
    auc, var = float(auc[0]), float(cov[0, 0])
    if not 0 < auc < 1 or not var > 0:
        raise ValueError(f"AUROC {auc:.3f} has no finite logit or no variance")
    return float(special.logit(auc)), var / (auc * (1 - auc)) ** 2


def _calibration(metric: str) -> Callable[[ArrayLike, ArrayLike], tuple[float, float]]:
    def estimate(y_true: ArrayLike, proba: ArrayLike) -> tuple[float, float]:
        fit = calibration_estimates(y_true, proba)
        value, var = fit[metric], fit[f"{metric}_var"]
        if not (np.isfinite(value) and np.isfinite(var) and var > 0):
            raise ValueError(f"{metric} has no finite estimate or variance (one class, or the fit does not converge)")
        return value, var
    return estimate


#: metric -> (estimate and variance on the pooling scale from (y, score), back-transform to the metric's scale)
POOLED_METRICS: dict[str, tuple[Callable[[ArrayLike, ArrayLike], tuple[float, float]], Callable]] = {
    "auroc": (logit_auroc, special.expit),
    "calibration_intercept": (_calibration("calibration_intercept"), lambda x: x),
    "calibration_slope": (_calibration("calibration_slope"), lambda x: x),
}


def random_effects(estimates: ArrayLike, variances: ArrayLike, ci: float = 0.95) -> dict[str, float]:
    """DerSimonian-Laird random-effects mean with the modified Hartung-Knapp interval and the
    Higgins-Thompson-Spiegelhalter prediction interval.

    Returns estimate, ci_low, ci_high, se (Hartung-Knapp), se_dl (DerSimonian-Laird), pi_low, pi_high
    (NaN with fewer than three studies), pi_df (k - 2), tau2 (between-study variance), i2 (share of
    the variation beyond chance), q (Cochran's Q), q_p (its chi-square p-value, k - 1 df) and k.
    Needs at least two studies.
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
    se_dl = float(np.sqrt(1 / w_star.sum()))
    hartung_knapp = (w_star * (theta - mean) ** 2).sum() / (k - 1)
    se = float(np.sqrt(max(1.0, hartung_knapp) / w_star.sum()))
    half = stats.t.ppf(0.5 + ci / 2, k - 1) * se
    pi_half = stats.t.ppf(0.5 + ci / 2, k - 2) * np.sqrt(tau2 + se_dl**2) if k >= 3 else np.nan
    return {"estimate": mean, "ci_low": mean - half, "ci_high": mean + half, "se": se, "se_dl": se_dl,
            "pi_low": mean - pi_half, "pi_high": mean + pi_half, "pi_df": k - 2, "tau2": tau2,
            "i2": max(0.0, (q - (k - 1)) / q) if q > 0 else 0.0, "q": q, "q_p": float(stats.chi2.sf(q, k - 1)),
            "k": k}


def pooled_sites(sites: Mapping[str, tuple[ArrayLike, ArrayLike]], metric: str = "auroc", ci: float = 0.95
                 ) -> dict[str, object]:
    """Random-effects pooled ``metric`` (one of `POOLED_METRICS`) over sites given as {site: (y_true, score)},
    back on the metric's scale.

    ``value``, ``ci_low``, ``ci_high``, ``pi_low``, ``pi_high`` (the metric's scale); ``tau2``, ``i2``,
    ``q``, ``q_p`` (pooling scale: logit for the AUROC); ``k`` (sites pooled), ``sites`` (their names)
    and ``excluded`` ({site: reason}). With fewer than two poolable sites the value is NaN and
    ``excluded`` says why; with two, there is no prediction interval.
    """
    if metric not in POOLED_METRICS:
        raise ValueError(f"metric must be one of {sorted(POOLED_METRICS)}, got {metric!r}")
    estimator, back = POOLED_METRICS[metric]
    names, estimates, variances, excluded = [], [], [], {}
    for name, (y, s) in sites.items():
        try:
            value, var = estimator(y, s)
        except ValueError as exc:
            excluded[name] = str(exc)
            continue
        names.append(name)
        estimates.append(value)
        variances.append(var)
    keys = ("value", "ci_low", "ci_high", "pi_low", "pi_high", "tau2", "i2", "q", "q_p")
    out: dict[str, object] = {**dict.fromkeys(keys, np.nan), "metric": metric, "k": len(names), "sites": names,
                              "excluded": excluded}
    if len(names) >= 2:
        fit = random_effects(estimates, variances, ci)
        out.update({key: float(back(fit[key])) for key in ("ci_low", "ci_high", "pi_low", "pi_high")},
                   value=float(back(fit["estimate"])), tau2=fit["tau2"], i2=fit["i2"], q=fit["q"], q_p=fit["q_p"])
    return out


def pooled_auroc(sites: Mapping[str, tuple[ArrayLike, ArrayLike]], ci: float = 0.95) -> dict[str, object]:
    """`pooled_sites` of the AUROC (logit scale)."""
    return pooled_sites(sites, "auroc", ci)
