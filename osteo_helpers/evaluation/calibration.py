"""Calibration and clinical usefulness: Brier score (and scaled), calibration intercept and slope,
logistic recalibration, reliability curves and decision curves, with bootstrap CIs.

Binary scores are the probability of the positive class. With three classes the
screening question is "low BMD or not", so the Brier score (``brier``), intercept, slope,
reliability and net benefit use P(low BMD) = 1 - P(class 0) against y != 0 (class 0 is
``normal``): ``brier`` means the same in both tasks. The three-class Brier score, the mean
over patients of the sum over classes of squared error (0 = perfect, 2 = worst), is its own
metric, ``brier_multiclass``.

``brier_scaled`` is 1 - Brier / Brier of the prevalence model (the model that gives every
patient the observed event rate, whose Brier score is prevalence x (1 - prevalence)): 0 for
that model, 1 for a perfect one, negative for a model worse than knowing the prevalence
(Steyerberg et al. 2010). ``brier_multiclass_scaled`` is the same against the class
frequencies.

Intercept and slope follow Van Calster et al. (2016, J Clin Epidemiol 74:167): the slope
is the coefficient of a logistic regression of y on logit(p); the intercept
(calibration-in-the-large) is that of a logistic model with logit(p) as offset, slope
fixed at 1. Perfect calibration is intercept 0, slope 1; slope < 1 means predictions are
too extreme (overfitting), slope > 1 too moderate (too close to the average risk); an
intercept below 0 means risks are over-estimated on average, above 0 under-estimated. Both
are fitted by Newton's method on every bootstrap resample at once; a resample where the fit
does not converge (separation) is left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike
from scipy import special, stats

from ..figures import LEGEND_BELOW, TWIN_STYLE, identical_to, legend_label, series_style
from .metrics import as_floats, as_labels, as_scores, safe_div
from .resampling import bootstrap_indices, ci_frame, collect, group_codes, percentile_ci

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "DCA_THRESHOLDS",
    "brier_score",
    "calibration_intercept",
    "calibration_metrics",
    "calibration_estimates",
    "calibration_slope",
    "decision_curve",
    "decision_curve_figure",
    "net_benefit",
    "recalibrate",
    "recalibration",
    "reliability_curve",
    "reliability_figure",
]

P_CLIP = 1e-6
"""Probabilities are clipped to [P_CLIP, 1 - P_CLIP] before taking logits."""

DCA_THRESHOLDS = np.round(np.arange(0.05, 0.501, 0.01), 2)
"""Threshold probabilities of the decision curve: 5% .. 50%."""

_NEWTON_TOL = 1e-9
_NEWTON_MAX_ITER = 100
_MAX_HALVINGS = 30


# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------


def _as_calibration_input(y_true: ArrayLike, proba: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Labels and probabilities: 1-D p of the positive class, or an (n, k) matrix."""
    p = np.asarray(proba, dtype=float)
    if p.ndim not in (1, 2) or (p.ndim == 2 and p.shape[1] < 2):
        raise ValueError("proba must be 1-D (positive class) or (n, k) with k >= 2")
    y = as_labels(y_true, n_classes=2 if p.ndim == 1 else p.shape[1])
    p = as_scores(p, len(y), "proba")
    if p.min() < 0 or p.max() > 1:
        raise ValueError("probabilities must lie in [0, 1]")
    return y, p


def _screening(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(B, n[, k]) labels/probabilities -> binary labels and P(positive): y != 0, 1 - P(class 0)."""
    if p.ndim == y.ndim:
        return y, p
    if p.shape[-1] == 2:
        return y, p[..., 1]
    return (y != 0).astype(int), 1.0 - p[..., 0]


def _logit(p: np.ndarray) -> np.ndarray:
    return special.logit(np.clip(p, P_CLIP, 1 - P_CLIP))


# --------------------------------------------------------------------------
# Batched kernels: y (B, n), p (B, n) or (B, n, k)
# --------------------------------------------------------------------------


def _brier(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Binary Brier for (B, n) or two-column p; multiclass sum-of-squares Brier for k > 2."""
    if p.ndim == y.ndim or p.shape[-1] == 2:
        _, pos = _screening(y, p)
        return ((y - pos) ** 2).mean(axis=1)
    onehot = y[..., None] == np.arange(p.shape[-1])
    return ((onehot - p) ** 2).sum(axis=2).mean(axis=1)


def _log_likelihood(y: np.ndarray, eta: np.ndarray) -> np.ndarray:
    return (y * eta - np.logaddexp(0, eta)).sum(axis=1)


def _logistic_fit(y: np.ndarray, X: np.ndarray, offset: np.ndarray, start: np.ndarray) -> np.ndarray:
    """Per row b, coefficients of the logistic model y[b] ~ expit(X[b] @ beta + offset[b]).

    Newton's method with step halving, run on all rows at once; the log-likelihood is
    concave, so this converges whenever the maximum exists. A row stops as soon as its
    Newton step is below the tolerance, so the few rows that do not converge within the
    iteration limit (separation: coefficients run off to infinity; they are nan) do not
    keep the others iterating. X is (B, n, d), offset (B, n), start (d,).
    """
    beta = np.tile(start, (y.shape[0], 1)).astype(float)
    done = np.zeros(y.shape[0], dtype=bool)
    rows = np.arange(y.shape[0])  # the rows still iterating
    ya, Xa, oa, ba = y, X, offset, beta.copy()
    eta = np.einsum("bnd,bd->bn", Xa, ba) + oa
    ll = _log_likelihood(ya, eta)
    for _ in range(_NEWTON_MAX_ITER):
        q = special.expit(eta)
        grad = np.einsum("bnd,bn->bd", Xa, ya - q)
        hess = np.einsum("bnd,bne->bde", Xa * (q * (1 - q))[:, :, None], Xa)
        step = np.einsum("bde,be->bd", np.linalg.pinv(hess), grad)
        converged = np.abs(step).max(axis=1) < _NEWTON_TOL
        beta[rows[converged]], done[rows[converged]] = ba[converged] + step[converged], True
        if converged.all():
            break
        keep = ~converged
        rows, ya, Xa, oa, ba, step, ll = rows[keep], ya[keep], Xa[keep], oa[keep], ba[keep], step[keep], ll[keep]
        scale = np.ones(len(ba))
        for _ in range(_MAX_HALVINGS):
            trial = ba + scale[:, None] * step
            eta_trial = np.einsum("bnd,bd->bn", Xa, trial) + oa
            ll_trial = _log_likelihood(ya, eta_trial)
            worse = ll_trial < ll - 1e-12 * np.abs(ll)
            if not worse.any():
                break
            scale[worse] /= 2
        ba, eta, ll = trial, eta_trial, ll_trial
    return np.where(done[:, None], beta, np.nan)


def _fit_intercept(y: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Per row, a of the logistic model y ~ expit(a + offset) (calibration-in-the-large)."""
    return _logistic_fit(y, np.ones((*y.shape, 1)), offset, np.zeros(1))[:, 0]


def _fit_slope(y: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Per row, b of the logistic model y ~ expit(a + b x) (calibration slope)."""
    design = np.stack([np.ones_like(x), x], axis=2)
    return _logistic_fit(y, design, np.zeros_like(x), np.array([0.0, 1.0]))[:, 1]


def _prevalence_brier(y: np.ndarray, k: int) -> np.ndarray:
    """Brier score (sum over classes for k > 2) of the model that predicts the observed class frequencies."""
    if k == 2:
        rate = y.mean(axis=1)
        return rate * (1 - rate)
    freq = np.stack([(y == c).mean(axis=1) for c in range(k)], axis=1)
    return (freq * (1 - freq)).sum(axis=1)


def _calibration_table(y: np.ndarray, p: np.ndarray) -> dict[str, np.ndarray]:
    y_pos, p_pos = _screening(y, p)
    lp = _logit(p_pos)
    brier = _brier(y_pos, p_pos)
    table = {"brier": brier, "brier_scaled": 1 - safe_div(brier, _prevalence_brier(y_pos, 2))}
    if p.ndim == y.ndim + 1 and p.shape[-1] > 2:
        multiclass = _brier(y, p)
        table["brier_multiclass"] = multiclass
        table["brier_multiclass_scaled"] = 1 - safe_div(multiclass, _prevalence_brier(y, p.shape[-1]))
    table["calibration_intercept"] = _fit_intercept(y_pos, lp)
    table["calibration_slope"] = _fit_slope(y_pos, lp)
    return table


# --------------------------------------------------------------------------
# Point estimates and bootstrap table
# --------------------------------------------------------------------------


def brier_score(y_true: ArrayLike, proba: ArrayLike) -> float:
    """Mean squared error of the probabilities; multiclass sum over classes for k > 2."""
    y, p = _as_calibration_input(y_true, proba)
    return float(_brier(y[None], p[None])[0])


def calibration_intercept(y_true: ArrayLike, proba: ArrayLike) -> float:
    """Calibration-in-the-large: 0 when the mean prediction matches the event rate."""
    y, p = _as_calibration_input(y_true, proba)
    return as_floats(_calibration_table(y[None], p[None]))["calibration_intercept"]


def calibration_slope(y_true: ArrayLike, proba: ArrayLike) -> float:
    """Slope of y on logit(p): 1 when the spread of predictions is right, < 1 when too extreme."""
    y, p = _as_calibration_input(y_true, proba)
    return as_floats(_calibration_table(y[None], p[None]))["calibration_slope"]


def calibration_estimates(y_true: ArrayLike, proba: ArrayLike) -> dict[str, float]:
    """Calibration intercept and slope with their model-based (Wald) variances: what a meta-analysis
    across sites pools (`pooling.pooled_sites`). The variances are the inverse Fisher information of
    each logistic fit (patients independent): 1 / sum q(1 - q) for the intercept with logit(p) as
    offset; the slope's diagonal entry of the inverse information of y ~ a + b logit(p). NaN where a
    fit has no maximum: one class (the intercept runs off to infinity), separation."""
    y, p = _as_calibration_input(y_true, proba)
    y_pos, p_pos = _screening(y, p)
    out = dict.fromkeys(("calibration_intercept", "calibration_intercept_var", "calibration_slope",
                         "calibration_slope_var"), np.nan)
    if len(np.unique(y_pos)) < 2:
        return out
    lp = _logit(p_pos)
    intercept = float(_fit_intercept(y_pos[None], lp[None])[0])
    design = np.column_stack([np.ones_like(lp), lp])
    a, b = _logistic_fit(y_pos[None], design[None], np.zeros((1, len(lp))), np.array([0.0, 1.0]))[0]
    out.update(calibration_intercept=intercept, calibration_slope=float(b))
    if np.isfinite(intercept):
        q = special.expit(intercept + lp)
        out["calibration_intercept_var"] = float(1 / np.sum(q * (1 - q)))
    if np.isfinite(b):
        q = special.expit(a + b * lp)
        information = design.T @ (design * (q * (1 - q))[:, None])
        out["calibration_slope_var"] = float(np.linalg.pinv(information)[1, 1])
    return out


def calibration_metrics(
    y_true: ArrayLike,
    proba: ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    groups: ArrayLike | None = None,
) -> pd.DataFrame:
    """Brier score (scaled too; three classes: also the multiclass one), calibration intercept and
    slope with class-stratified (group) bootstrap CIs.

    Same columns as :func:`.bootstrap.bootstrap_metrics` (metric, value, ci_low, ci_high).
    """
    y, p = _as_calibration_input(y_true, proba)
    point = as_floats(_calibration_table(y[None], p[None]))
    batches = bootstrap_indices(y, n_boot, seed, groups, cells_per_row=p.size)
    boot = collect(_calibration_table(y[idx], p[idx]) for idx in batches)
    return ci_frame(point, boot, ci)


# --------------------------------------------------------------------------
# Recalibration
# --------------------------------------------------------------------------


def recalibration(y_true: ArrayLike, p_pos: ArrayLike, method: str = "logistic") -> tuple[float, float]:
    """Intercept a and slope b of the logistic recalibration logit(p') = a + b logit(p), by maximum likelihood.

    ``intercept`` refits a alone (b = 1: the event rate of a new population); ``logistic`` refits both
    (also the spread of the predictions). The model itself is untouched. Perfectly calibrated
    scores give a = 0, b = 1. ValueError when the fit does not converge (separation).
    """
    if method not in ("intercept", "logistic"):
        raise ValueError(f"method must be 'intercept' or 'logistic', got {method!r}")
    y, p = _as_calibration_input(y_true, p_pos)
    if p.ndim != 1:
        raise ValueError("recalibration takes the probability of the positive class (1-D)")
    lp = _logit(p)[None]
    if method == "intercept":
        a, b = float(_fit_intercept(y[None], lp)[0]), 1.0
    else:
        design = np.stack([np.ones_like(lp), lp], axis=2)
        a, b = (float(v) for v in _logistic_fit(y[None], design, np.zeros_like(lp), np.array([0.0, 1.0]))[0])
    if not (np.isfinite(a) and np.isfinite(b)):
        raise ValueError("the recalibration model does not converge (the classes are separated)")
    return a, b


def recalibrate(p_pos: ArrayLike, intercept: float, slope: float) -> np.ndarray:
    """The probabilities after logistic recalibration: expit(intercept + slope * logit(p))."""
    return special.expit(intercept + slope * _logit(np.asarray(p_pos, dtype=float)))


# --------------------------------------------------------------------------
# Reliability curve
# --------------------------------------------------------------------------


def _wilson(k: np.ndarray, n: np.ndarray, ci: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval; k and n may be non-integer (effective counts)."""
    z = stats.norm.ppf(0.5 + ci / 2)
    phat = k / n
    centre = (phat + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z / (1 + z**2 / n) * np.sqrt(phat * (1 - phat) / n + z**2 / (4 * n**2))
    return np.clip(centre - half, 0, 1), np.clip(centre + half, 0, 1)


def reliability_curve(
    y_true: ArrayLike,
    proba: ArrayLike,
    n_bins: int = 10,
    ci: float = 0.95,
    groups: ArrayLike | None = None,
) -> pd.DataFrame:
    """Observed event rate per quantile bin of the predicted probability, with Wilson CIs.

    Bins hold (nearly) equal numbers of patients (fewer bins when ties force it). The
    interval of each bin is the Wilson score interval for its observed fraction; with
    ``groups`` its sample size is the number of distinct groups in the bin, since
    duplicates of one person carry one person's information.
    """
    y, p = _as_calibration_input(y_true, proba)
    y_pos, p_pos = _screening(y, p)
    if ci <= 0 or ci >= 1:
        raise ValueError("ci must lie strictly between 0 and 1")
    bins = pd.qcut(p_pos, n_bins, labels=False, duplicates="drop")
    codes = group_codes(groups, len(y))
    frame = pd.DataFrame({"bin": bins, "y": y_pos, "p": p_pos,
                          "group": np.arange(len(y)) if codes is None else codes})
    per_bin = frame.groupby("bin").agg(n=("y", "size"), n_groups=("group", "nunique"), p_low=("p", "min"),
                                       p_high=("p", "max"), mean_predicted=("p", "mean"), observed=("y", "mean"))
    n_eff = per_bin["n_groups"].to_numpy(dtype=float)
    low, high = _wilson(per_bin["observed"].to_numpy() * n_eff, n_eff, ci)
    return per_bin.assign(ci_low=low, ci_high=high).reset_index()


def reliability_figure(curves: Mapping[str, pd.DataFrame], ax: Axes | None = None) -> Figure:
    """Observed vs predicted risk per bin with CI bars, one series per model (each its own line style and
    marker; a series identical to an earlier one is drawn with open markers over it and says so in the
    legend), and the diagonal."""
    import matplotlib.pyplot as plt  # deferred: imports matplotlib

    fig, ax = (plt.subplots(figsize=(5, 5)) if ax is None else (ax.figure, ax))
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect calibration")
    twins = identical_to({name: curve[["mean_predicted", "observed"]].to_numpy() for name, curve in curves.items()})
    for k, (name, curve) in enumerate(curves.items()):
        err = np.clip(np.vstack([curve["observed"] - curve["ci_low"], curve["ci_high"] - curve["observed"]]), 0, None)
        style = {**series_style(k), "markersize": 5, **(TWIN_STYLE if name in twins else {})}
        ax.errorbar(curve["mean_predicted"], curve["observed"], yerr=err, capsize=2, linewidth=1.2,
                    label=legend_label(name, twins), **style)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean predicted probability (bin)")
    ax.set_ylabel("observed fraction (CI)")
    ax.legend(fontsize=8, **LEGEND_BELOW)
    return fig


# --------------------------------------------------------------------------
# Decision curve
# --------------------------------------------------------------------------


def _net_benefit(y: np.ndarray, p: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """(B, T) net benefit of treating when p >= t: TP/n - FP/n * t / (1 - t)."""
    treat = p[:, :, None] >= thresholds
    tp = (treat & (y[:, :, None] == 1)).sum(axis=1)
    fp = (treat & (y[:, :, None] == 0)).sum(axis=1)
    return (tp - fp * thresholds / (1 - thresholds)) / y.shape[1]


def _as_thresholds(thresholds: ArrayLike | None) -> np.ndarray:
    t = DCA_THRESHOLDS if thresholds is None else np.atleast_1d(np.asarray(thresholds, dtype=float))
    if t.ndim != 1 or np.any((t <= 0) | (t >= 1)):
        raise ValueError("thresholds must lie strictly between 0 and 1")
    return t


def net_benefit(y_true: ArrayLike, proba: ArrayLike, thresholds: ArrayLike | None = None) -> np.ndarray:
    """Net benefit of treating patients with p >= t, per threshold probability t.

    One true positive is worth t/(1-t) false positives at threshold t (Vickers & Elkin 2006).
    """
    y, p = _as_calibration_input(y_true, proba)
    y_pos, p_pos = _screening(y, p)
    return _net_benefit(y_pos[None], p_pos[None], _as_thresholds(thresholds))[0]


def decision_curve(
    y_true: ArrayLike,
    proba: ArrayLike,
    thresholds: ArrayLike | None = None,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    groups: ArrayLike | None = None,
) -> pd.DataFrame:
    """Net benefit of the model, treat-all and treat-none per threshold, model with bootstrap CI.

    Columns: threshold, net_benefit, ci_low, ci_high, treat_all, treat_none. The model
    is useful at thresholds where its net benefit exceeds both treat-all and treat-none.
    Resampling is class-stratified, so prevalence (and treat-all) is held at the cohort's.
    """
    y, p = _as_calibration_input(y_true, proba)
    y_pos, p_pos = _screening(y, p)
    t = _as_thresholds(thresholds)
    point = _net_benefit(y_pos[None], p_pos[None], t)[0]
    batches = bootstrap_indices(y, n_boot, seed, groups, cells_per_row=len(y) * len(t))
    boot = np.concatenate([_net_benefit(y_pos[i], p_pos[i], t) for i in batches])
    bounds = np.array([percentile_ci(boot[:, j], ci) for j in range(len(t))])
    treat_all = _net_benefit(y_pos[None], np.ones((1, len(y))), t)[0]
    return pd.DataFrame({"threshold": t, "net_benefit": point, "ci_low": bounds[:, 0], "ci_high": bounds[:, 1],
                         "treat_all": treat_all, "treat_none": 0.0})


def decision_curve_figure(curves: Mapping[str, pd.DataFrame], ax: Axes | None = None) -> Figure:
    """Net benefit against threshold probability: each model with its CI band (each its own line style and
    marker; a curve identical to an earlier one says so in the legend), treat-all, treat-none.

    Treat-all is drawn once per distinct cohort (curves on the same patients share it).
    """
    import matplotlib.pyplot as plt  # deferred: imports matplotlib

    fig, ax = (plt.subplots(figsize=(5.5, 4)) if ax is None else (ax.figure, ax))
    drawn: list[np.ndarray] = []
    top = 0.0
    twins = identical_to({name: curve["net_benefit"].to_numpy() for name, curve in curves.items()})
    for k, (name, curve) in enumerate(curves.items()):
        style = {**series_style(k), "markersize": 5, **(TWIN_STYLE if name in twins else {})}
        line = ax.plot(curve["threshold"], curve["net_benefit"], linewidth=1.5, label=legend_label(name, twins),
                       markevery=max(1, len(curve) // 8), **style)[0]
        ax.fill_between(curve["threshold"], curve["ci_low"], curve["ci_high"], color=line.get_color(), alpha=0.15)
        treat_all = curve["treat_all"].to_numpy()
        if not any(len(d) == len(treat_all) and np.allclose(d, treat_all) for d in drawn):
            label = "treat all" if not drawn else f"treat all ({name} cohort)"
            ax.plot(curve["threshold"], treat_all, color="grey", linestyle="--", linewidth=1, label=label)
            drawn.append(treat_all)
        top = max(top, float(np.nanmax(curve["ci_high"])), float(treat_all.max()))
    ax.axhline(0.0, color="black", linewidth=1, label="treat none")
    ax.set_ylim(-0.05, max(0.05, top) * 1.1)
    ax.set_xlabel("threshold probability")
    ax.set_ylabel("net benefit")
    ax.legend(fontsize=8, **LEGEND_BELOW)
    return fig
