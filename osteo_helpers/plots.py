"""Every figure the notebooks show; each returns a Figure and can save itself under the run."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from sklearn.metrics import precision_recall_curve, roc_curve

CLASS_COLOURS = {"normal": "#4C72B0", "osteopenia": "#DD8452", "osteoporosis": "#C44E52", "low_bmd": "#C44E52"}


def save(fig: plt.Figure, folder: Path, name: str) -> plt.Figure:
    """Save a figure as PNG into the run's figures folder (atomically) and return it for display.

    The figure is closed in pyplot, so a notebook shows it once (as the returned value), not twice.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{name}.tmp.png"
    fig.savefig(tmp, dpi=120, bbox_inches="tight")
    tmp.replace(folder / f"{name}.png")
    plt.close(fig)
    return fig


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
    """Numeric clinical variables by class: confounders such as age become visible."""
    n = len(columns)
    fig, axes = plt.subplots(1, n, figsize=(3.2 * n, 3.2), squeeze=False)
    order = ["normal", "osteopenia", "osteoporosis"]
    for ax, col in zip(axes[0], columns):
        sns.boxplot(data=table, x="diagnosis", y=col, order=order, hue="diagnosis", palette=CLASS_COLOURS,
                    ax=ax, legend=False, fliersize=0)
        sns.stripplot(data=table, x="diagnosis", y=col, order=order, color="k", size=2, alpha=0.5, ax=ax)
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
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, im, title in zip(axes.ravel(), images, titles):
        ax.imshow(im, cmap="gray")
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def crosstab_heatmap(table: pd.DataFrame, row: str, col: str, title: str) -> plt.Figure:
    ct = pd.crosstab(table[row], table[col])
    fig, ax = plt.subplots(figsize=(1.2 * ct.shape[1] + 2, 0.6 * ct.shape[0] + 1.5))
    sns.heatmap(ct, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax)
    ax.set_title(title)
    return fig


def roc_pr_curves(curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str = "") -> plt.Figure:
    """ROC and precision-recall curves of several models: name -> (y_true, p_positive)."""
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4.2))
    for name, (y, p) in curves.items():
        fpr, tpr, _ = roc_curve(y, p)
        prec, rec, _ = precision_recall_curve(y, p)
        a1.plot(fpr, tpr, label=name)
        a2.plot(rec, prec, label=name)
    a1.plot([0, 1], [0, 1], "k:", lw=1)
    a1.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC")
    prevalence = np.mean(next(iter(curves.values()))[0]) if curves else 0.5
    a2.axhline(prevalence, color="k", ls=":", lw=1)
    a2.set(xlabel="recall (sensitivity)", ylabel="precision (PPV)", title="Precision-recall")
    a1.legend(fontsize=8, loc="lower right")
    a2.legend(fontsize=8, loc="lower left")
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
    """Train and validation loss per epoch for every fold (thin lines) and their mean (thick)."""
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for (_, _), h in history.groupby(["seed", "fold"]):
        ax.plot(h["epoch"], h["train_loss"], color="C0", alpha=0.25, lw=0.8)
        ax.plot(h["epoch"], h["val_loss"], color="C1", alpha=0.25, lw=0.8)
    mean = history.groupby("epoch")[["train_loss", "val_loss"]].mean()
    ax.plot(mean.index, mean["train_loss"], color="C0", lw=2, label="train (fit split)")
    ax.plot(mean.index, mean["val_loss"], color="C1", lw=2, label="inner validation")
    ax.set(xlabel="epoch", ylabel="loss", title=title)
    ax.legend()
    return fig


def forest(results: pd.DataFrame, metric: str = "auroc", title: str = "", reference: float | None = 0.5) -> plt.Figure:
    """Point estimates with 95% CIs, one row per model (a forest plot)."""
    part = results[results["metric"] == metric].sort_values("value")
    fig, ax = plt.subplots(figsize=(6, 0.38 * len(part) + 1.2))
    y = np.arange(len(part))
    ax.errorbar(part["value"], y, xerr=[part["value"] - part["ci_low"], part["ci_high"] - part["value"]],
                fmt="o", color="k", ecolor="grey", capsize=3)
    ax.set_yticks(y, part["model"])
    if reference is not None:
        ax.axvline(reference, color="r", ls=":", lw=1)
    ax.set(xlabel=f"{metric} (95% CI)", title=title)
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


def importance_bars(table: pd.DataFrame, value: str, error: str | None, xlabel: str, title: str) -> plt.Figure:
    """Horizontal bars (largest on top) with optional error bars, e.g. permutation importance."""
    fig, ax = plt.subplots(figsize=(6, 0.35 * len(table) + 1.2))
    ax.barh(table["feature"][::-1], table[value][::-1], xerr=None if error is None else table[error][::-1], color="grey")
    ax.set(xlabel=xlabel, title=title)
    fig.tight_layout()
    return fig
