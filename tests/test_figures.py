"""Figures as a reader sees them (issue 32): coinciding curves told apart and said so, no text under 8 pt at the
page's width, the run's stamp clear of the axes, alt text that says what a figure shows."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from osteo_helpers import evaluation, explain, figures, plots
from osteo_helpers.runfolder import RunPaths

STAMP = "run smoke-20261207T035437Z · profile smoke"


@pytest.fixture(scope="module")
def scores() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Three arms on 120 patients; the residual fusion's scores are the clinical model's, as when it reverted."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    clinical = 1 / (1 + np.exp(-(y + rng.normal(0, 1, 120))))
    return {"age": (y, rng.random(120)), "clinical (age, sex)": (y, clinical),
            "fusion (residual)": (y, clinical.copy())}


def _lines(ax) -> dict[str, tuple]:
    """legend label -> (dash pattern, marker, marker fill) of the axes' series (a line, or an error bar's data line)."""
    handles, labels = ax.get_legend_handles_labels()
    lines = [getattr(h, "lines", (h,))[0] for h in handles]
    return {label: (str(line._unscaled_dash_pattern), line.get_marker(), str(line.get_markerfacecolor()))
            for label, line in zip(labels, lines, strict=True)}


@pytest.mark.parametrize("kind", ["reliability", "decision", "roc"])
def test_identical_curves_are_told_apart_and_said_identical(scores, kind):
    """Issue 32: the fusion that reverted to the clinical model drew over it in the same style; its legend now
    says "identical to" and the two lines differ in line style and marker."""
    if kind == "roc":
        fig = plots.roc_pr_curves(scores)
    else:
        make = evaluation.reliability_curve if kind == "reliability" else (
            lambda y, p: evaluation.decision_curve(y, p, n_boot=20))
        curves = {name: make(y, p) for name, (y, p) in scores.items()}
        fig = (evaluation.reliability_figure if kind == "reliability" else evaluation.decision_curve_figure)(curves)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    plt.close(fig)
    twin = "fusion (residual) (identical to clinical (age, sex))"
    assert any(t.startswith(twin) for t in legend), legend
    assert not any("age (identical" in t for t in legend)
    styles = _lines(fig.axes[0])
    first = next(v for k, v in styles.items() if k.startswith("clinical (age, sex)"))
    second = next(v for k, v in styles.items() if k.startswith(twin))
    assert first[0] != second[0] and first[1] != second[1] and second[2] == "none", styles


def test_the_stamp_sits_below_the_x_label(tmp_path):
    """The run's stamp was drawn in the figure's corner, over the x-axis label (issue 32)."""
    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1])
    ax.set_xlabel("mean predicted probability (bin)")
    figures.save(fig, tmp_path, "one", stamp=STAMP)
    FigureCanvasAgg(fig)
    renderer = fig.canvas.get_renderer()
    stamp = next(t for t in fig.texts if t.get_text() == STAMP).get_window_extent(renderer)
    label = ax.xaxis.label.get_window_extent(renderer)
    assert stamp.y1 <= label.y0 + 0.5, (stamp, label)


def test_text_size_as_displayed_counts_the_shrinking_of_a_wide_figure():
    """A 12-inch figure is shown 690 px wide, about half its size: its 7-pt legend reads as about 5 pt."""
    fig, ax = plt.subplots(figsize=(12, 4))
    ax.plot([0, 1], [0, 1], label="clinical (age, sex) 0.74 [0.68, 0.80]")
    ax.legend(fontsize=7)
    sizes = figures.text_sizes(fig)
    plt.close(fig)
    assert min(sizes) < 5.5, sizes
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot([0, 1], [0, 1], label="clinical")
    ax.legend(fontsize=7)
    assert min(figures.text_sizes(fig)) == pytest.approx(7 * figures.DPI / 96)
    plt.close(fig)


def test_roc_legends_and_cam_titles_read_at_8_pt_or_more(scores, tmp_path):
    """Issue 32: ROC legends and Grad-CAM panel titles were too small to read at the page's width."""
    legend = {name: ("0.74 [0.68, 0.80]", "0.81 [0.75, 0.86]") for name in scores}
    roc = figures.save(plots.roc_pr_curves(scores, "Normal vs low BMD", legend), tmp_path, "roc", stamp=STAMP)
    rng = np.random.default_rng(1)
    cams = explain.cam_gallery(rng.integers(0, 255, (6, 64, 64)).astype(np.uint8), rng.random((6, 64, 64)),
                             [f"OP{k} p=0.{k}3" for k in range(6)], ncols=6)
    gallery = figures.save(cams, tmp_path, "cams", stamp=STAMP)
    assert roc.smallest_text_pt >= figures.MIN_TEXT_PT and gallery.smallest_text_pt >= figures.MIN_TEXT_PT
    assert figures.below_minimum([roc.path, gallery.path]) == {}


def test_alt_text_says_what_the_figure_shows(scores, tmp_path):
    """The alt text was the PNG's hash; now the title, what is plotted against what and the legend, in the
    saved file as in the page."""
    saved = figures.save(plots.roc_pr_curves(scores, "Normal vs low BMD"), tmp_path, "roc", stamp=STAMP)
    assert saved.alt.startswith("Normal vs low BMD. ROC (legend: AUROC [95% CI]): sensitivity against 1 - specificity")
    assert "fusion (residual) (identical to clinical (age, sex))" in saved.alt and STAMP not in saved.alt
    assert figures.saved_facts(saved.path)[figures.ALT_KEY] == saved.alt
    saved.href = "../figures/roc.png"
    assert saved._repr_html_() == f'<img class="osteo-figure" src="../figures/roc.png" alt="{saved.alt}">'
    assert saved._repr_png_() is None
    saved.href = None
    assert saved._repr_html_() is None and saved._repr_png_() == saved.path.read_bytes()


def test_a_jpeg_figure_is_saved_beside_its_png(tmp_path):
    fig, ax = plt.subplots(figsize=(3, 3))
    ax.imshow(np.zeros((8, 8)))
    ax.set_title("knee QA sheet")
    saved = figures.save(fig, tmp_path, "qa", jpeg=True)
    assert saved.path == tmp_path / "qa.jpg" and (tmp_path / "qa.png").is_file()
    assert saved._repr_jpeg_() == saved.path.read_bytes() and saved.alt == "knee QA sheet"


def test_a_run_folder_has_no_figures_folder_until_a_figure_is_saved(tmp_path):
    """`osteo ablation` left an empty figures/ folder (issue 32): the folder is made by the first figure."""
    paths = RunPaths(tmp_path / "run")
    assert not paths.figures.exists() and paths.tables.is_dir()
    fig, ax = plt.subplots()
    ax.set_title("a figure")
    figures.save(fig, paths.figures, "first")
    assert (paths.figures / "first.png").is_file()


@pytest.mark.realdata
@pytest.mark.slow
def test_every_figure_of_the_smoke_run_reads_at_8_pt_and_says_what_it_shows(smoke_run: Path):
    saved = sorted((smoke_run / "figures").glob("*.png"))
    assert len(saved) > 20, saved
    assert figures.below_minimum(saved) == {}
    facts = {path.name: figures.saved_facts(path) for path in saved}
    assert all(len(f.get(figures.ALT_KEY, "")) > 20 for f in facts.values()), facts


def test_identical_to_names_the_first_equal_series():
    series = {"a": [1, 2], "b": [1, 2.0 + 1e-12], "c": [1, 3], "d": pd.Series([1, 2])}
    assert figures.identical_to(series) == {"b": "a", "d": "a"}
