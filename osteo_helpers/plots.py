"""Every figure the notebooks show; each returns a Figure, and `figures.save` writes it under the run."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from scipy import stats
from sklearn.metrics import precision_recall_curve, roc_curve

from .data.image_readers import open_grayscale
from .figures import PAGE_INCHES, TWIN_STYLE, identical_to, legend_label, panels, series_style

CLASS_COLOURS = {"normal": "#4C72B0", "osteopenia": "#DD8452", "osteoporosis": "#C44E52", "low_bmd": "#C44E52"}


def class_balance(manifest: pd.DataFrame) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(5, 3))
    counts = manifest["diagnosis"].value_counts().reindex(["normal", "osteopenia", "osteoporosis"])
    ax.bar(counts.index, counts.values, color=[CLASS_COLOURS[c] for c in counts.index])
    for i, v in enumerate(counts.values):
        ax.text(i, v, str(v), ha="center", va="bottom")
    ax.set_ylabel("patients")
    ax.set_title("Class balance")
    return fig


def clinical_by_class(table: pd.DataFrame, columns: Sequence[str]) -> plt.Figure:
    """Numeric clinical variables by class, two panels a row: confounders such as age become visible. A column
    the cohort does not have (or has no value in) is left out: a cohort may give only age and sex."""
    columns = [c for c in columns if c in table.columns and table[c].notna().any()]
    fig, axes = panels(len(columns), 2, 2.9)
    order = ["normal", "osteopenia", "osteoporosis"]
    for ax, col in zip(axes, columns, strict=True):
        sns.boxplot(data=table, x="diagnosis", y=col, order=order, hue="diagnosis", palette=CLASS_COLOURS,
                    ax=ax, legend=False, fliersize=0)
        jitter = np.random.default_rng(0)  # seaborn's stripplot jitters from numpy's global state: not reproducible
        for k, diagnosis in enumerate(order):  # the boxes stand at 0, 1, 2; a lone point is not moved (as seaborn)
            values = table.loc[table["diagnosis"] == diagnosis, col].dropna().to_numpy(float)
            shift = jitter.uniform(-0.1, 0.1, len(values)) if len(values) > 1 else np.zeros(len(values))
            ax.scatter(k + shift, values, s=4, color="k", alpha=0.5, linewidths=0)
        ax.set_xlim(-0.5, len(order) - 0.5)
        ax.set_xlabel("")
        ax.tick_params(axis="x", rotation=20)
    fig.tight_layout()
    return fig


def missingness(table: pd.DataFrame) -> plt.Figure:
    miss = table.isna().mean().sort_values(ascending=False)
    miss = miss[miss > 0]
    fig, ax = plt.subplots(figsize=(6, max(1.5, 0.3 * len(miss) + 0.5)))
    ax.barh(miss.index[::-1], miss.values[::-1] * 100, color="grey")
    ax.set_xlabel("% missing")
    ax.set_title("Missing values per column")
    return fig


def image_gallery(images: Sequence[np.ndarray], titles: Sequence[str], ncols: int = 6, size: float = 2.0) -> plt.Figure:
    """Images with their titles, at most 4 a row and the row no wider than the page (titles read at 8 pt)."""
    n = len(images)
    ncols = max(1, min(ncols, 4))
    size = min(size, PAGE_INCHES / ncols)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, im, title in zip(axes.ravel(), images, titles, strict=False):
        ax.imshow(im, cmap="gray")
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def image_pairs(images: np.ndarray, cohort: pd.DataFrame, pairs: pd.DataFrame) -> plt.Figure:
    """Pairs of images side by side (two pairs per row), each titled with its record and the pair's pHash
    distance: what a near-duplicate check found, and the closest pairs it did not flag."""
    index = {pid: i for i, pid in enumerate(cohort["patient_id"])}
    record = cohort.set_index("patient_id")
    shown, titles = [], []
    for r in pairs.itertuples():
        for k, pid in enumerate((r.a, r.b)):
            shown.append(images[index[pid]])
            rec = record.loc[pid]
            title = f"{pid}: {rec['sex']}, {rec['age_years']:g}, {rec['diagnosis']}"
            if k == 1:
                what = "identical bytes" if r.identical_bytes else ("near-duplicate" if r.hit else "not flagged")
                title += f"\n{r.bits} bits apart, {what}"
            titles.append(title)
    return image_gallery(shown, titles, ncols=2, size=2.7)


def crosstab_heatmap(table: pd.DataFrame, row: str, col: str, title: str) -> plt.Figure:
    ct = pd.crosstab(table[row], table[col])
    fig, ax = plt.subplots(figsize=(1.2 * ct.shape[1] + 2, 0.6 * ct.shape[0] + 1.5))
    sns.heatmap(ct, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax)
    ax.set_title(title)
    return fig


def roc_pr_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str = "",
                  legend: dict[str, tuple[str, str]] | None = None) -> plt.Figure:
    """ROC above precision-recall (one column, legible at the page's width): label -> (y_true, p_positive);
    ``legend`` adds each arm's AUROC and AUPRC with CI (label -> (auroc text, auprc text)). Each arm has its
    own line style and markers; an arm whose scores equal an earlier arm's says so in the legend."""
    fig, (a1, a2) = plt.subplots(2, 1, figsize=(5.4, 11))
    twins = identical_to({name: np.r_[y, p] for name, (y, p) in curves.items()})
    for k, (name, (y, p)) in enumerate(curves.items()):
        fpr, tpr, _ = roc_curve(y, p)
        prec, rec, _ = precision_recall_curve(y, p)
        roc_text, pr_text = (legend or {}).get(name, ("", ""))
        style = {**series_style(k), "markevery": 0.1, "linewidth": 1.4, "markersize": 5,
                 **(TWIN_STYLE if name in twins else {})}
        a1.plot(fpr, tpr, label=f"{legend_label(name, twins)} {roc_text}".strip(), **style)
        a2.plot(rec, prec, label=f"{legend_label(name, twins)} {pr_text}".strip(), **style)
    a1.plot([0, 1], [0, 1], "k:", lw=1)
    a1.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (legend: AUROC [95% CI])")
    prevalence = np.mean(next(iter(curves.values()))[0]) if curves else 0.5
    a2.axhline(prevalence, color="k", ls=":", lw=1)
    a2.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title="Precision-recall (legend: AUPRC [95% CI])")
    for ax in (a1, a2):  # below each panel: the legend covers no curve
        ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.13), frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_matrix(counts: np.ndarray, classes: Sequence[str], title: str = "") -> plt.Figure:
    fig, ax = plt.subplots(figsize=(1.3 * len(classes) + 1.5, 1.1 * len(classes) + 1))
    sns.heatmap(pd.DataFrame(counts, index=classes, columns=classes), annot=True, fmt="g", cmap="Blues",
                cbar=False, ax=ax)
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return fig


def training_curves(history: pd.DataFrame, title: str = "") -> plt.Figure:
    """Train and validation loss per epoch for every fold (thin lines) and their mean (thick, with
    markers, so a run of one epoch still shows its points). Epoch 0 is the state before training."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for (_, _), h in history.groupby(["seed", "fold"]):
        ax.plot(h["epoch"], h["train_loss"], color="C0", alpha=0.25, lw=0.8)
        ax.plot(h["epoch"], h["val_loss"], color="C1", alpha=0.25, lw=0.8)
    mean = history.groupby("epoch")[["train_loss", "val_loss"]].mean()
    ax.plot(mean.index, mean["train_loss"], "o-", color="C0", lw=2, ms=3, label="train (fit split)")
    ax.plot(mean.index, mean["val_loss"], "o-", color="C1", lw=2, ms=3, label="inner validation")
    best = history[history["best"]] if "best" in history else history.iloc[:0]
    if len(best):
        ax.scatter(best["epoch"], best["val_loss"], color="k", s=12, zorder=3, label="kept state (per fold)")
    ax.set(xlabel="epoch (0 = before training)", ylabel="loss", title=title)
    ax.legend(fontsize=8)
    return fig


def forest(results: pd.DataFrame, metric: str = "auroc", title: str = "", reference: float | None = 0.5,
           order: Sequence[str] | None = None, labels: dict[str, str] | None = None,
           highlight: float | None = None) -> plt.Figure:
    """Point estimates with 95% CIs, one row per arm in the given (declared) order, top to bottom.

    Where the table has them, each arm also shows what its fitted folds did: the fold-averaged value
    with its fold SD (square, below the point) and each repeat's pooled value (open diamonds, above).
    The legend sits outside the axes, so it never covers a point.
    """
    rows = results.drop_duplicates(["model", "metric"]).set_index(["model", "metric"])["value"]
    part = results[results["metric"] == metric].drop_duplicates("model").set_index("model")
    names = [n for n in (order or part.index) if n in part.index]
    part = part.loc[names[::-1]]
    fig, ax = plt.subplots(figsize=(PAGE_INCHES, 0.45 * len(part) + 1.3))
    y = np.arange(len(part))
    ax.errorbar(part["value"], y, xerr=[part["value"] - part["ci_low"], part["ci_high"] - part["value"]],
                fmt="o", color="k", ecolor="grey", capsize=3, label="pooled, 95% CI")
    means = [rows.get((n, f"{metric}_fold_mean"), np.nan) for n in part.index]
    sds = [rows.get((n, f"{metric}_fold_sd"), np.nan) for n in part.index]
    if np.isfinite(means).any():
        ax.errorbar(means, y - 0.22, xerr=np.nan_to_num(sds), fmt="s", ms=4, color="C0", ecolor="C0", capsize=2,
                    lw=1, label="fold mean ± fold SD")
    seeds = sorted({m for (_, m) in rows.index if m.startswith(f"{metric}_seed")})
    for i, n in enumerate(part.index):
        values = [rows.get((n, m), np.nan) for m in seeds]
        ax.scatter(values, np.full(len(values), y[i] + 0.22), marker="D", s=14, facecolors="none", edgecolors="C1",
                   label="each repeat, pooled" if i == 0 and seeds else None)
    ax.set_yticks(y, [(labels or {}).get(n, n) for n in part.index])
    if reference is not None:
        ax.axvline(reference, color="r", ls=":", lw=1, label=f"chance ({reference})")
    if highlight is not None:
        ax.axvline(highlight, color="C0", ls="--", lw=1, label=f"clinical model ({highlight:.3f})")
    ax.set(xlabel=f"{metric} (95% CI)", title=title)
    fig.tight_layout()
    ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, 0), bbox_transform=fig.transFigure, ncols=2,
              frameon=False)  # below the figure, so it covers no point
    return fig


def grouped_forest(table: pd.DataFrame, row: str, hue: str, metric: str = "auroc", title: str = "",
                   reference: float | None = 0.5, labels: dict[str, str] | None = None) -> plt.Figure:
    """Estimates with CIs: one line per value of ``row`` (e.g. a site, then pooled estimates), one marker
    per value of ``hue`` (e.g. a model) on each line, in the order the table gives them."""
    part = table[table["metric"] == metric]
    rows, hues = list(dict.fromkeys(part[row])), list(dict.fromkeys(part[hue]))
    fig, ax = plt.subplots(figsize=(PAGE_INCHES, 0.45 * len(rows) * max(1, len(hues) / 2) + 1.4))
    offsets = (np.arange(len(hues)) - (len(hues) - 1) / 2) * min(0.25, 0.8 / max(1, len(hues)))
    for j, name in enumerate(hues):
        sub = part[part[hue] == name].drop_duplicates(row).set_index(row)
        y = np.array([len(rows) - 1 - rows.index(r) for r in sub.index]) + offsets[j]
        low = (sub["value"] - sub["ci_low"]).clip(lower=0).fillna(0)
        high = (sub["ci_high"] - sub["value"]).clip(lower=0).fillna(0)
        ax.errorbar(sub["value"], y, xerr=[low, high], fmt="o", color=f"C{j}", capsize=3, markersize=4,
                    label=(labels or {}).get(name, name))
    ax.set_yticks(np.arange(len(rows))[::-1], rows)
    if reference is not None:
        ax.axvline(reference, color="r", ls=":", lw=1)
    ax.set(xlabel=f"{metric} (95% CI)", title=title)
    ax.legend(fontsize=7.5, loc="lower left")
    fig.tight_layout()
    return fig


def permutation_null(null: pd.DataFrame, observed: dict[str, float], labels: dict[str, str] | None = None,
                     title: str = "", metric: str = "auroc") -> plt.Figure:
    """One histogram per arm of its ``metric`` under label permutations, with the null's mean and the
    observed value marked (legend below each panel, clear of the bars)."""
    part = null[null["metric"] == metric] if "metric" in null and (null["metric"] == metric).any() else null
    models = list(dict.fromkeys(part["model"]))
    fig, axes = panels(len(models), 2, 3.3, sharey=True)
    for ax, model in zip(axes, models, strict=True):
        values = part.loc[part["model"] == model, "value"]
        ax.hist(values, bins=20, color="grey", alpha=0.8)
        ax.axvline(values.mean(), color="k", ls=":", lw=1, label=f"null mean {values.mean():.3f}")
        if model in observed:
            ax.axvline(observed[model], color="C3", lw=2, label=f"observed {observed[model]:.3f}")
        ax.legend(fontsize=7.5, loc="upper center", bbox_to_anchor=(0.5, -0.22), frameon=False)
        ax.set(title=f"{(labels or {}).get(model, model)} (n = {len(values)})", xlabel="AUROC")
        ax.title.set_fontsize(9)
    for ax in axes[::2]:
        ax.set_ylabel("permutations")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def scatter_with_identity(x: np.ndarray, y: np.ndarray, hue: Sequence[str] | None, xlabel: str, ylabel: str,
                          title: str = "", lines: Sequence[float] = ()) -> plt.Figure:
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    sns.scatterplot(x=x, y=y, hue=hue, palette=CLASS_COLOURS if hue is not None else None, s=18, ax=ax)
    lo, hi = float(np.nanmin([x.min(), y.min()])), float(np.nanmax([x.max(), y.max()]))
    ax.plot([lo, hi], [lo, hi], "k:", lw=1)
    for v in lines:
        ax.axhline(v, color="grey", lw=0.6, ls="--")
        ax.axvline(v, color="grey", lw=0.6, ls="--")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    return fig


def positive_control(oofs: dict[tuple[str, str], pd.DataFrame], labels: dict[str, str]) -> plt.Figure:
    """Sex (ROC) and age (predicted against true, each patient averaged over repeats) from the image alone,
    one colour per encoder: the positive control of the image arms side by side."""
    fig, (roc, age) = plt.subplots(2, 1, figsize=(PAGE_INCHES, 9.4))
    arms = list(dict.fromkeys(arm for arm, _ in oofs))
    for k, arm in enumerate(arms):
        colour = f"C{k}"
        if (arm, "sex") in oofs:
            sex = oofs[(arm, "sex")].groupby("patient_id")[["y_true", "prob_female"]].mean()
            fpr, tpr, _ = roc_curve(sex["y_true"], sex["prob_female"])
            roc.plot(fpr, tpr, color=colour, label=labels.get(arm, arm))
        if (arm, "age") in oofs:
            pred = oofs[(arm, "age")].groupby("patient_id")[["y_true", "pred_mean"]].mean()
            age.scatter(pred["y_true"], pred["pred_mean"], s=12, alpha=0.6, color=colour, label=labels.get(arm, arm))
    roc.plot([0, 1], [0, 1], "k:", lw=1)
    roc.set(xlabel="1 - specificity", ylabel="sensitivity", title="Sex from the image (ROC; positive: female)")
    lims = age.get_xlim()
    age.plot(lims, lims, "k:", lw=1)
    age.set(xlabel="age (years)", ylabel="age predicted from the image (years)", title="Age from the image")
    for ax in (roc, age):
        ax.legend(fontsize=9, loc="lower right")
    fig.tight_layout()
    return fig


def importance_bars(table: pd.DataFrame, value: str, error: str | None, xlabel: str, title: str) -> plt.Figure:
    """Horizontal bars (largest on top) with optional error bars, e.g. permutation importance."""
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(table) + 1.2))
    ax.barh(table["feature"][::-1], table[value][::-1], xerr=None if error is None else table[error][::-1],
            color="grey")
    ax.set(xlabel=xlabel, title=title)
    fig.tight_layout()
    return fig


def roi_examples(rois: np.ndarray, knees: pd.DataFrame, cohort: pd.DataFrame, seed: int, per_class: int = 4
                 ) -> plt.Figure:
    """ROI tiles (femur above tibia) of a few random knees per class, their stored uint8 values unscaled."""
    rng = np.random.default_rng(seed)
    label = knees["patient_id"].map(cohort.set_index("patient_id")["diagnosis"]).to_numpy()
    picks = [(i, c) for c in ("normal", "osteopenia", "osteoporosis")
             for i in rng.choice(np.flatnonzero(label == c), size=min(per_class, int((label == c).sum())),
                                 replace=False)]
    fig, axes = panels(max(len(picks), 1), 6, 2.3)
    for ax in axes:
        ax.set_axis_off()
    for ax, (i, c) in zip(axes, picks, strict=False):
        ax.imshow(rois[i], cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{knees.patient_id.iloc[i]} {knees.side.iloc[i]}\n({c})", fontsize=7)
    fig.tight_layout()
    return fig


def against_age(table: pd.DataFrame, features: Sequence[str]) -> plt.Figure:
    """Each feature against age, coloured by class, with its least-squares line and Pearson r."""
    fig, axes = panels(len(features), 2, 3.0)
    for ax, f in zip(axes, features, strict=True):
        part = table[["age_years", f, "diagnosis"]].dropna()
        for label, g in part.groupby("diagnosis"):
            ax.scatter(g["age_years"], g[f], s=8, alpha=0.7, color=CLASS_COLOURS[label], label=label)
        r, p = stats.pearsonr(part["age_years"], part[f])
        slope, intercept = np.polyfit(part["age_years"], part[f], 1)
        xs = np.linspace(part["age_years"].min(), part["age_years"].max(), 2)
        ax.plot(xs, slope * xs + intercept, "k-", lw=1)
        ax.set(xlabel="age (years)", ylabel=f, title=f"r = {r:.2f} (p = {p:.2g}, n = {len(part)})")
        ax.title.set_fontsize(8)
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def class_gallery(images: np.ndarray, cohort: pd.DataFrame, seed: int, per_class: int = 6) -> plt.Figure:
    """A few random radiographs of each class."""
    rng = np.random.default_rng(seed)
    picks, titles = [], []
    for label in ("normal", "osteopenia", "osteoporosis"):
        idx = np.flatnonzero(cohort["diagnosis"].to_numpy() == label)
        for i in rng.choice(idx, size=min(per_class, len(idx)), replace=False):
            picks.append(images[i])
            titles.append(f"{cohort.patient_id.iloc[i]} ({label})")
    return image_gallery(picks, titles, ncols=3)


def before_after(cohort: pd.DataFrame, images: np.ndarray, data_dir: Path) -> plt.Figure:
    """One raw radiograph per acquisition batch beside what the networks see."""
    pics, titles = [], []
    for i, row in cohort.reset_index(drop=True).groupby("batch").head(1).iterrows():
        pics.append(np.asarray(open_grayscale(Path(data_dir) / row.image_path).reduce(8)))
        titles += [f"{row.patient_id}: raw {int(row.width)}x{int(row.height)} {row['mode']}",
                   f"letterboxed {images.shape[1]} px"]
        pics.append(images[i])
    return image_gallery(pics, titles, ncols=2, size=3)


def augmentation_samples(image: np.ndarray, seed: int, n: int = 8) -> plt.Figure:
    """What training augmentation (flip, rotation, shift, scale, brightness, contrast) does to one image."""
    import torch  # deferred: imports torch

    from .models.inputs import BatchAugment  # deferred: imports torch and tqdm

    torch.manual_seed(seed)
    x = torch.from_numpy(image).float().div(255).expand(n, 1, *image.shape).clone()
    flip = torch.rand(n) < 0.5
    x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    samples = BatchAugment()(x)[:, 0].numpy()
    return image_gallery(list(samples), [f"sample {k + 1}" for k in range(n)], ncols=4, size=2.2)


def detached_figure(**kwargs: Any) -> Figure:
    """A pyplot figure taken out of pyplot's registry: shown once, where it is displayed, and never leaked.

    A bare ``matplotlib.figure.Figure()`` has no backend canvas, so a notebook displays it as the text
    ``<Figure size ...>`` instead of an image; a pyplot figure keeps its canvas after ``plt.close``.
    """
    fig = plt.figure(**kwargs)
    plt.close(fig)
    return fig


def capture(draw: Callable[[], Any], figsize: tuple[float, float] | None = None) -> Figure:
    """Run a shap plot on a fresh pyplot figure, then detach it so it is shown once and not leaked."""
    interactive = plt.isinteractive()
    fig = plt.figure(figsize=figsize)
    try:
        draw()
        fig = plt.gcf()
    finally:
        plt.close(fig)
        if interactive:
            plt.ion()
    return fig


