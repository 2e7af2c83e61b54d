"""How a drawn figure reaches a reader: saved with the run, legible at the page's width, described in words.

Every figure is saved as a PNG at `DPI` and shown at most `COLUMN_PX` wide (the book's text column at a
1,280 px window), so a figure wider than the column is shrunk, and its text with it: `text_sizes` says how
large the smallest text appears (in CSS points), and the saved PNG records it (`SMALLEST_TEXT_KEY`), so a
test can hold every figure of a run to `MIN_TEXT_PT`. The run's stamp sits below everything else, never on
an axis label. The alt text says what the figure shows (its titles, axes and legend), not a file hash.
Series that coincide (the residual fusion that reverted to the clinical model) are drawn in distinct line
styles and markers, and their legend says "identical to", so a later curve never silently hides an earlier.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .fileio import atomic_write_bytes

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: resolution of every saved figure; one PNG pixel is one CSS pixel on the page
DPI = 120
#: the widest a figure is shown: the book's text column at a 1,280 px window
COLUMN_PX = 690
#: no text smaller than this, in CSS points as displayed
MIN_TEXT_PT = 8.0
#: the PNG text chunks that carry the alt text and the smallest displayed text size
ALT_KEY, SMALLEST_TEXT_KEY = "Description", "osteo:smallest-text-pt"
#: line styles and markers that tell series apart where their colours would hide one under another
LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P")
PAD_INCHES = 0.1
#: the widest a figure can be drawn (inches) and still be shown at its own size
PAGE_INCHES = COLUMN_PX / DPI - 2 * PAD_INCHES


def panels(n: int, ncols: int = 2, height: float = 2.6, **kwargs: Any) -> tuple[Figure, list[Any]]:
    """A figure of ``n`` panels, at most ``ncols`` a row, as wide as the page (`PAGE_INCHES`), so its text
    reads at the size it is set in; the panels left over in the last row are removed."""
    import matplotlib.pyplot as plt  # deferred: imports matplotlib

    ncols = max(1, min(ncols, n))
    nrows = max(1, -(-n // ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(PAGE_INCHES, height * nrows), squeeze=False, **kwargs)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.remove()
    return fig, flat[:n]


def series_style(k: int) -> dict[str, Any]:
    """The ``k``-th series' line style and marker (matplotlib keywords): no two of the first 12 alike."""
    return {"linestyle": LINE_STYLES[k % len(LINE_STYLES)], "marker": MARKERS[k % len(MARKERS)]}


def identical_to(series: Mapping[str, Any], tolerance: float = 1e-6) -> dict[str, str]:
    """For each series equal to an earlier one (same shape, every value within ``tolerance``), the label of
    the first such earlier series: label -> the label it repeats."""
    seen: list[tuple[str, np.ndarray]] = []
    twins = {}
    for label, values in series.items():
        array = np.asarray(values, dtype=float).ravel()
        for earlier, other in seen:
            if other.shape == array.shape and np.allclose(array, other, rtol=0, atol=tolerance, equal_nan=True):
                twins[label] = earlier
                break
        seen.append((label, array))
    return twins


def legend_label(label: str, twins: Mapping[str, str]) -> str:
    return f"{label} (identical to {twins[label]})" if label in twins else label


#: how a series identical to an earlier one is drawn over it: open markers and long gaps, through which the
#: earlier series shows
TWIN_STYLE = {"linestyle": (0, (5, 4)), "markerfacecolor": "none", "markersize": 9, "markeredgewidth": 1.5}
#: a legend under its panel, where it covers no point
LEGEND_BELOW = {"loc": "upper center", "bbox_to_anchor": (0.5, -0.14), "frameon": False}


def _draw(fig: Figure) -> tuple[Any, list[float], Any]:
    """Lay the figure out once at `DPI` (text extents change with the resolution) without rasterising it:
    its tight bounding box (inches), the size in points of every text it draws, and the renderer (to measure
    text added after). Only `save`'s own `savefig` paints pixels, so each figure is rendered once."""
    fig.set_dpi(DPI)
    if not hasattr(fig.canvas, "get_renderer"):  # a figure taken out of pyplot (`plots.detached_figure`)
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # deferred: imports matplotlib

        FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    sizes: list[float] = []
    # matplotlib's own layout-only pass (`Figure.draw_without_rendering`, `savefig(bbox_inches="tight")`):
    # every draw_* of the renderer a no-op; the text calls still arrive, with their sizes. A layout engine
    # (constrained layout) moves the axes again on its second pass, as savefig's own measuring pass did
    with renderer._draw_disabled():
        def spy(gc, x, y, s, prop, angle, ismath=False, mtext=None):
            if str(s).strip():
                sizes.append(prop.get_size_in_points())

        renderer.draw_text = spy  # removed with the other no-ops when the block ends
        for _ in range(2 if _lays_out(fig) else 1):
            sizes.clear()
            fig.draw(renderer)
    return fig.get_tightbbox(renderer), sizes, renderer


def _lays_out(fig: Figure) -> bool:
    """Whether the figure's layout engine moves its axes at every draw (constrained layout, ``layout="tight"``);
    a figure that called ``tight_layout()`` once keeps a placeholder that does nothing."""
    from matplotlib.layout_engine import PlaceHolderLayoutEngine  # deferred: imports matplotlib

    engine = fig.get_layout_engine()
    return engine is not None and not isinstance(engine, PlaceHolderLayoutEngine)


def display_scale(width_inches: float) -> float:
    """How much the page shrinks a figure saved ``width_inches`` wide (1: shown at its own size)."""
    return min(1.0, COLUMN_PX / ((width_inches + 2 * PAD_INCHES) * DPI))


def text_sizes(fig: Figure) -> list[float]:
    """Every text of the figure as the page shows it, in CSS points (1 pt at `DPI` is DPI / 96 of them)."""
    box, sizes, _ = _draw(fig)
    scale = display_scale(box.width)
    return [s * DPI / 96 * scale for s in sizes]


def describe(fig: Figure) -> str:
    """What the figure shows, in words, for its alt text: the title, then each panel's title, what is
    plotted against what, and its legend (the series and their numbers); panels of images by their titles."""
    parts = []
    title = fig._suptitle.get_text().strip() if fig._suptitle is not None else ""
    if title:
        parts.append(title)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    pictures = [ax for ax in shown if ax.images and not ax.axison]
    if pictures:
        titles = [t for t in (ax.get_title().strip().replace("\n", " ") for ax in pictures) if t]
        parts.append(f"{len(pictures)} images with their titles" + (f": {'; '.join(titles)}" if titles else ""))
    for ax in shown:
        if ax in pictures:
            continue
        what = ax.get_title().strip()
        x, y = ax.get_xlabel().strip(), ax.get_ylabel().strip()
        plotted = (f"{y} against {x}" if x and y else f"{y} for {_names(ax.get_xticklabels())}" if y else
                   f"{x} for {_names(ax.get_yticklabels())}" if x else "") if ax.axison else ""
        if plotted:
            what = f"{what}: {plotted}" if what else plotted
        legend = ax.get_legend()
        if legend is not None:
            entries = [t.get_text() for t in legend.get_texts() if t.get_text().strip()]
            if entries:
                what += f" ({'; '.join(entries)})"
        if what and what not in parts:
            parts.append(what)
    return ". ".join(parts) or "a figure without titles or labels"


def _names(ticks: Sequence[Any], most: int = 12) -> str:
    """The categories an axis names (a bar or box per class, a row per feature), at most ``most`` of them."""
    names = [t.get_text().strip() for t in ticks if t.get_text().strip()]
    return ", ".join(names[:most]) + (", …" if len(names) > most else "") if names else "category"


@dataclass
class SavedFigure:
    """A saved figure as a notebook shows it: the file with its alt text. Where ``href`` is set (under
    `osteo run`: the file's URL relative to the executed notebook), an ``<img>`` that names it, so the book
    keeps the alt text (`pipeline.build_book` copies the file); elsewhere the image itself."""

    path: Path
    data: bytes
    alt: str
    smallest_text_pt: float
    href: str | None = None

    @property
    def mime(self) -> str:
        return "image/jpeg" if self.path.suffix == ".jpg" else "image/png"

    def img(self, src: str | None = None) -> str:
        """``<img>`` with the alt text; ``src`` defaults to the file inlined as a data URI."""
        src = src or f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"
        return f'<img class="osteo-figure" src="{html.escape(src)}" alt="{html.escape(self.alt)}">'

    def _repr_html_(self) -> str | None:
        return self.img(self.href) if self.href else None

    def _repr_png_(self) -> bytes | None:
        return self.data if self.href is None and self.mime == "image/png" else None

    def _repr_jpeg_(self) -> bytes | None:
        return self.data if self.href is None and self.mime == "image/jpeg" else None


def save(fig: Figure, folder: Path, name: str, stamp: str | None = None, jpeg: bool = False) -> SavedFigure:
    """Save a figure under the run (atomically) as ``name.png`` (and with ``jpeg``, a ``name.jpg`` to show:
    radiograph sheets make large PNGs), and return it for display.

    ``stamp`` (e.g. the run and profile) is printed under the figure's lowest text, at its right, so a
    figure copied out of the report still says what made it. The figure is drawn once, not again by the
    notebook's display, and closed in pyplot, so it is shown once.
    """
    import matplotlib.pyplot as plt  # deferred: imports matplotlib
    from matplotlib.transforms import Bbox  # deferred: imports matplotlib

    folder.mkdir(parents=True, exist_ok=True)
    box, sizes, renderer = _draw(fig)  # where the stamp goes, and every text's size (the stamp's is chosen)
    scale = display_scale(box.width)
    if stamp:
        width, height = fig.get_size_inches()
        text = fig.text(box.x1 / width, box.y0 / height, stamp, ha="right", va="top",
                        fontsize=MIN_TEXT_PT * 96 / DPI / scale, color="grey")
        box = Bbox.union([box, text.get_window_extent(renderer).transformed(fig.dpi_scale_trans.inverted())])
    alt = describe(fig)
    smallest = min((s * DPI / 96 * scale for s in sizes), default=float("inf"))
    metadata = {ALT_KEY: alt, SMALLEST_TEXT_KEY: f"{smallest:.2f}"}
    buffer = io.BytesIO()
    if _lays_out(fig):  # draw the layout that was measured, not one more pass of the engine
        fig.set_layout_engine("none")
    # the box measured above, as bbox_inches="tight" would measure it again in another layout pass
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches=box.padded(PAD_INCHES), metadata=metadata)
    plt.close(fig)
    png = buffer.getvalue()
    atomic_write_bytes(folder / f"{name}.png", png)
    if not jpeg:
        return SavedFigure(folder / f"{name}.png", png, alt, smallest)
    from PIL import Image  # deferred: imports PIL

    shown = io.BytesIO()
    with Image.open(io.BytesIO(png)) as im:
        im.convert("RGB").save(shown, format="JPEG", quality=80)
    atomic_write_bytes(folder / f"{name}.jpg", shown.getvalue())
    return SavedFigure(folder / f"{name}.jpg", shown.getvalue(), alt, smallest)


def saved_facts(path: Path) -> dict[str, str]:
    """The alt text and the smallest displayed text size a saved PNG records (`save`)."""
    from PIL import Image  # deferred: imports PIL

    with Image.open(path) as im:
        return {k: v for k, v in im.text.items() if k in (ALT_KEY, SMALLEST_TEXT_KEY)}


def below_minimum(paths: Sequence[Path]) -> dict[str, float]:
    """The saved figures whose smallest text is displayed under `MIN_TEXT_PT`, with that size."""
    out = {}
    for path in paths:
        size = float(saved_facts(path).get(SMALLEST_TEXT_KEY, "nan"))
        if not size >= MIN_TEXT_PT - 0.05:
            out[path.name] = size
    return out
