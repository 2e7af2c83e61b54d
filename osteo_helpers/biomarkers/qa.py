"""Localisation QA drawings: the detections on one image, and the gallery of a cohort.

Every localisation is meant to be looked at; the gallery shows each image's detections, or its
failure reason in red.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..folders import shorten_paths
from ..images import as_grayscale
from .cohort import STATUS_LOCALISED, STATUS_SKIPPED, BiomarkerData
from .localise import KneeDetection


def draw_detections(ax: Axes, image: np.ndarray, detections: Sequence[KneeDetection],
                    title: str | None = None) -> Axes:
    """Draw the image and, per knee, its horizontal extent (yellow), plateau
    width (cyan), joint line (red) with the per-compartment gap rows (red
    dots), trabecular ROIs (green = femur, blue = tibia) and the shaft rows
    where cortices are measured (magenta).  Returns the axis."""
    img = as_grayscale(image)
    ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="antialiased")
    for d in detections:
        W = d.plateau_width
        ax.plot([d.x0, d.x0], [d.joint_line_y - 0.6 * W, d.joint_line_y + 0.6 * W], "y-", lw=0.8)
        ax.plot([d.x1, d.x1], [d.joint_line_y - 0.6 * W, d.joint_line_y + 0.6 * W], "y-", lw=0.8)
        ax.plot([d.x0, d.x1], [d.joint_line_y] * 2, "r-", lw=0.8)
        yp = d.joint_line_y + 0.06 * W
        ax.plot([d.plateau_x0, d.plateau_x1], [yp, yp], "c-", lw=1.0)
        for sign, r in zip((-1, 1), d.joint_rows, strict=False):
            if np.isfinite(r):
                ax.plot([d.centre_x + sign * 0.25 * W], [r], "r.", ms=4)
        for box, col in ((d.femur_roi, "lime"), (d.tibia_roi, "deepskyblue")):
            y0, x0, y1, x1 = box
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=col, lw=1.0))
        for row, xs in ((d.femur_shaft_row, d.femur_shaft_x), (d.tibia_shaft_row, d.tibia_shaft_x)):
            if row is not None and xs is not None:
                ax.plot([xs[0], xs[1]], [row, row], "m-", lw=1.2)
        ax.text(d.x0, d.joint_line_y - 0.65 * W, f"{d.side} s={d.score:.2f}", color="y", fontsize=6.5)
    if title:
        ax.set_title(title, fontsize=7)
    ax.set_axis_off()
    return ax


def _scaled(det: KneeDetection, f: int) -> KneeDetection:
    """A copy of a detection in the coordinates of a thumbnail made by
    f x f block means (native pixel centre v -> (v + 0.5) / f - 0.5)."""
    t = lambda v: (v + 0.5) / f - 0.5  # noqa: E731
    box = lambda b: (t(b[0] - 0.5), t(b[1] - 0.5), t(b[2] - 0.5), t(b[3] - 0.5))  # noqa: E731 - edges
    d = det.as_dict()
    d.update(x0=t(det.x0), x1=t(det.x1), joint_line_y=t(det.joint_line_y), plateau_width=det.plateau_width / f,
             plateau_x0=t(det.plateau_x0), plateau_x1=t(det.plateau_x1), femur_roi=box(det.femur_roi),
             tibia_roi=box(det.tibia_roi), condyle_width=det.condyle_width / f,
             femur_shaft_row=None if det.femur_shaft_row is None else t(det.femur_shaft_row),
             tibia_shaft_row=None if det.tibia_shaft_row is None else t(det.tibia_shaft_row),
             femur_shaft_x=None if det.femur_shaft_x is None else tuple(t(v) for v in det.femur_shaft_x),
             tibia_shaft_x=None if det.tibia_shaft_x is None else tuple(t(v) for v in det.tibia_shaft_x),
             joint_rows=tuple(t(v) for v in det.joint_rows), notes=list(det.notes))
    return KneeDetection(**d)


def _wrapped(reason: str, width: int) -> str:
    """A failure reason for a small panel: folders cut to the file name, lines wrapped between words."""
    return textwrap.fill(shorten_paths(reason), width, break_long_words=False, break_on_hyphens=False)


def qa_sheets(data: BiomarkerData, per_page: int = 30, ncols: int = 3, panel: float = 1.85,
              titles: dict[str, str] | None = None) -> list[Figure]:
    """The localisation QA gallery: one Figure per ``per_page`` images, in
    cohort order.  Each panel is the image's thumbnail with its detected
    knees drawn by :func:`draw_detections` (extent, joint line, plateau
    width, femoral / tibial ROIs, shaft rows) scaled to the thumbnail, or --
    for an image without a localised knee -- its failure reason in red.
    Rejected knees of a localised image are noted in orange.  ``titles``
    maps patient_id to a panel title (default: patient id, batch, status).  Images left out by
    ``biomarker_limit`` have nothing to check and get no panel."""
    status = data.status.set_index("patient_id")
    shown = [q for q in data.qa if q.status != STATUS_SKIPPED]
    figs = []
    n_pages = max(1, int(math.ceil(len(shown) / per_page)))
    for page in range(n_pages):
        chunk = shown[page * per_page : (page + 1) * per_page]
        nrows = max(1, int(math.ceil(len(chunk) / ncols)))
        fig, axes = plt.subplots(nrows, ncols, figsize=(panel * ncols, panel * nrows * 1.1), squeeze=False)
        for ax in axes.ravel():
            ax.set_axis_off()
        for ax, q in zip(axes.ravel(), chunk, strict=False):
            title = (titles or {}).get(q.patient_id)
            if title is None:
                batch = status.at[q.patient_id, "batch"] if "batch" in status else None
                title = f"{q.patient_id}" + (f" [{batch}]" if batch is not None and batch == batch else "")
                title += f" {len(q.detections)} knee(s)" if q.status == STATUS_LOCALISED else f" {q.status.upper()}"
            if q.thumbnail is not None:
                draw_detections(ax, q.thumbnail, [_scaled(d, q.factor) for d in q.detections], title)
            else:
                ax.set_title(title, fontsize=7)
            if q.status != STATUS_LOCALISED:
                ax.text(0.5, 0.5, _wrapped("; ".join(q.reasons) or q.status, 30), transform=ax.transAxes,
                        ha="center", va="center", color="red", fontsize=6.5,
                        bbox=dict(facecolor="white", alpha=0.8, edgecolor="red"))
                ax.title.set_color("red")
            elif q.reasons:
                ax.text(0.02, 0.02, _wrapped("; ".join(q.reasons), 30), transform=ax.transAxes, ha="left",
                        va="bottom", color="orange", fontsize=6.5)
        fig.suptitle(textwrap.fill(f"Knee localisation QA, page {page + 1} of {n_pages} (red line: joint line; green: "
                                   "femoral ROI; blue: tibial ROI; cyan: plateau width; magenta: cortical rows)", 80),
                     fontsize=9)
        fig.tight_layout(rect=(0, 0, 1, 1 - 0.45 / fig.get_size_inches()[1]))
        figs.append(fig)
    return figs
