"""The explanations drawn: Grad-CAM overlays and galleries, and SHAP's beeswarm, bar and waterfall plots.

They live with the explanations they draw (`cam_audit`, `tabular`) and use the figure helpers of
`osteo_helpers.plots`, which knows nothing of explanations.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from ..figures import PAGE_INCHES
from ..plots import capture, detached_figure
from .cam_audit import image_2d, image_stack
from .tabular import select_output

if TYPE_CHECKING:
    import shap


def overlay(ax: Axes, image: np.ndarray | torch.Tensor, cam: np.ndarray, title: str | None = None,
            alpha: float = 0.45, cmap: str = "jet", mask: np.ndarray | None = None) -> AxesImage:
    """Grayscale radiograph with the CAM on top (and the bone-mask outline if given); returns the CAM layer.

    The image is windowed to its 1st-99th percentiles so normalised and uint8 inputs look alike.
    """
    img = image_2d(image)
    lo, hi = np.percentile(img, [1, 99])
    ax.imshow(img, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1)
    layer = ax.imshow(np.asarray(cam), cmap=cmap, alpha=alpha, vmin=0.0, vmax=1.0, interpolation="bilinear")
    if mask is not None and np.any(mask) and not np.all(mask):
        ax.contour(np.asarray(mask, dtype=float), levels=[0.5], colors="white", linewidths=0.8)
    if title:
        ax.set_title(title, fontsize=8)
    ax.set_axis_off()
    return layer


def cam_gallery(images: np.ndarray | torch.Tensor, cams: np.ndarray, titles: Sequence[str] | None = None,
                ncols: int = 4, masks: np.ndarray | None = None, alpha: float = 0.45, cmap: str = "jet",
                panel_inches: float = 2.4) -> Figure:
    """A grid of `overlay` panels with one shared colour bar (a figure pyplot does not keep, see `detached_figure`):
    at most 4 panels a row, the row no wider than the page, so the panels' titles read at 8 pt or more."""
    imgs = image_stack(images)
    n = len(cams)
    ncols = max(1, min(ncols, n, 4))
    nrows = max(1, -(-n // ncols))
    panel_inches = min(panel_inches, (PAGE_INCHES - 0.7) / ncols)
    fig = detached_figure(figsize=(panel_inches * ncols + 0.7, panel_inches * nrows + 0.3), layout="constrained")
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    layer = None
    for i, ax in enumerate(axes):
        if i >= n:
            ax.set_axis_off()
            continue
        layer = overlay(ax, imgs[i], cams[i], None if titles is None else titles[i], alpha, cmap,
                        None if masks is None else masks[i])
    if layer is not None:
        fig.colorbar(layer, ax=list(axes), shrink=0.8, label="CAM")
    return fig


def shap_summary_figure(grouped: shap.Explanation, max_display: int = 20, class_index: int | None = None) -> Figure:
    """Beeswarm of per-patient SHAP values (colour = feature value; grey for one-hot features)."""
    import shap  # deferred: 1.5 s, only where an explanation is made or drawn

    expl = select_output(grouped, class_index)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "All-NaN slice", RuntimeWarning)  # one-hot groups have no colour
        return capture(lambda: shap.plots.beeswarm(expl, max_display=max_display, show=False))


def shap_bar_figure(grouped: shap.Explanation, max_display: int = 20, class_index: int | None = None) -> Figure:
    """Mean |SHAP| per feature: the global ranking."""
    import shap  # deferred: 1.5 s, only where an explanation is made or drawn

    expl = select_output(grouped, class_index)
    return capture(lambda: shap.plots.bar(expl, max_display=max_display, show=False))


def shap_waterfall_figure(grouped: shap.Explanation, i: int, max_display: int = 12,
                          class_index: int | None = None) -> Figure:
    """How patient `i`'s clinical inputs move the prediction away from the background average."""
    import shap  # deferred: 1.5 s, only where an explanation is made or drawn

    expl = select_output(grouped, class_index)[i]
    return capture(lambda: shap.plots.waterfall(expl, max_display=max_display, show=False))
