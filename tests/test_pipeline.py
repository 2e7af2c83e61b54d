"""End to end: the smoke profile on the real data, its book, provenance and results tables, and a rerun of
one of its notebooks.

The smoke run (fixture `smoke_run`, tests/conftest.py) happens once per session into test-artifacts/,
with pytest-playwright's artefacts (test-artifacts/playwright); this file starts first, and the
other files that read the run (the browser's pages) come last. The rerun (18 s) is here, on the worker
that made the run, not last in the queue: xdist queues a worker's next file while its current one still
runs, so a long file handed out last left the other worker idle.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from bs4 import BeautifulSoup

from osteo_helpers.config import PROJECT_ROOT


def _soup(path: Path) -> BeautifulSoup:
    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


@pytest.mark.realdata
@pytest.mark.slow
def test_book_index_links_to_eda_page_with_figures(smoke_run: Path) -> None:
    html = smoke_run / "_build" / "html"
    refresh = _soup(html / "index.html").find("meta", attrs={"http-equiv": "Refresh"})
    root = html / refresh["content"].split("url=", 1)[1] if refresh else html / "index.html"
    index = _soup(root)
    targets = {(root.parent / a.get("href", "").split("#")[0]).resolve() for a in index.find_all("a") if a.get("href")}
    assert (html / "notebooks" / "01_eda_manifest.html").resolve() in targets, "index does not link to the EDA page"
    eda = _soup(html / "notebooks" / "01_eda_manifest.html")
    images = [img["src"] for img in eda.find_all("img")]
    assert len(images) >= 5, f"EDA page shows only {len(images)} figures"
    for src in images:
        assert (html / "notebooks" / src).resolve().is_file(), f"EDA page image {src} missing"
    assert "Validation findings" in eda.get_text()


@pytest.mark.realdata
@pytest.mark.slow
def test_results_summary_numbers_equal_output_csvs(smoke_run: Path) -> None:
    """Every cell 'value [low, high]' of the summary's headline tables is its row of results_<task>.csv."""
    from osteo_helpers.ablation import ARM_LABELS

    by_label = {label: model for model, label in ARM_LABELS.items()}
    page = _soup(smoke_run / "_build" / "html" / "book" / "results_summary.html")
    checked = 0
    for table in page.find_all("table"):
        caption = table.find("caption")
        if not caption or "Headline metrics, " not in caption.get_text():
            continue
        task = caption.get_text().split("Headline metrics, ")[1].split(" ")[0]
        results = pd.read_csv(smoke_run / "tables" / f"results_{task}.csv")
        results = results[results["subset"] == "all"].set_index(["model", "metric"])
        metrics = [th.get_text(strip=True) for th in table.find("thead").find_all("th")][1:]  # after the arm's
        for tr in table.find("tbody").find_all("tr"):
            model = by_label[tr.find("th").get_text(strip=True)]
            for metric, td in zip(metrics, tr.find_all("td"), strict=True):
                if metric == "patients":
                    continue
                text = td.get_text(strip=True)
                match = re.fullmatch(r"(-?[\d.]+)\s*\[(-?[\d.]+),\s*(-?[\d.]+)\]", text)
                flat = re.fullmatch(r"(-?[\d.]+), identical in every resample", text)
                assert match or flat, (model, metric, text)
                expected = results.loc[(model, metric)]
                value, low, high = (float(x) for x in (match.groups() if match else flat.groups() * 3))
                assert value == pytest.approx(expected.value, abs=5e-4), (task, model, metric)
                assert low == pytest.approx(expected.ci_low, abs=5e-4) and high == pytest.approx(expected.ci_high,
                                                                                                 abs=5e-4)
                checked += 1
    assert checked >= 20, f"only {checked} headline cells found"


@pytest.mark.realdata
@pytest.mark.slow
def test_provenance_page_names_commit_parameters_and_checksums(smoke_run: Path) -> None:
    record = json.loads((smoke_run / "provenance.json").read_text())
    text = _soup(smoke_run / "_build" / "html" / "book" / "provenance.html").get_text()
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                            cwd=PROJECT_ROOT).stdout.strip()
    assert record["git"]["commit"] == commit and commit in text
    assert record["data"]["matches_registry"] is True
    assert record["data"]["spreadsheet_sha256"] in text
    assert "image_size" in text and "n_folds" in text
    steps = [s["name"] for s in record["steps"]]
    assert "notebooks/01_eda_manifest.ipynb" in steps and all("seconds" in s for s in record["steps"])



@pytest.mark.realdata
@pytest.mark.slow
def test_every_figure_reaches_the_page_as_an_image(smoke_run: Path) -> None:
    """A cell that makes a figure (`study.figure(...)`) shows at least one image (under `osteo run`, an
    ``<img>`` of the saved file with its alt text), no output is a figure's text representation, and no built
    page prints one (a figure without a canvas displays as text)."""
    problems = []
    for notebook in sorted((smoke_run / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        for index, cell in enumerate(cells):
            if cell["cell_type"] != "code":
                continue
            outputs = cell.get("outputs", [])
            images = [any(kind.startswith("image/") for kind in o.get("data", {}))
                      or '<img class="osteo-figure"' in "".join(o.get("data", {}).get("text/html", ""))
                      for o in outputs]
            texts = ["".join(o.get("data", {}).get("text/plain", "")) + "".join(o.get("text", "")) for o in outputs]
            if any("<Figure size" in text and not image for text, image in zip(texts, images, strict=True)):
                problems.append(f"{notebook.name} cell {index}: prints a figure as text")
            if ".figure(" in "".join(cell["source"]) and not any(images):
                problems.append(f"{notebook.name} cell {index}: makes a figure but shows no image")
    for page in sorted((smoke_run / "_build" / "html").rglob("*.html")):
        if "&lt;Figure size" in page.read_text(encoding="utf-8"):
            problems.append(f"{page.relative_to(smoke_run)}: prints a figure as text")
    assert not problems, "\n".join(problems)


@pytest.mark.realdata
@pytest.mark.slow
def test_results_aurocs_recompute_from_the_run_folders_oof_tables(smoke_run: Path) -> None:
    """Every AUROC of results_<task>.csv (all patients) is recomputed from oof/<arm>_<task>.csv alone."""
    from sklearn.metrics import roc_auc_score

    from osteo_helpers.evaluation import average_over_repeats, prob_columns

    checked = 0
    for task, metric in (("binary", "auroc"), ("3class", "macro_auroc")):
        results = pd.read_csv(smoke_run / "tables" / f"results_{task}.csv")
        rows = results[(results["subset"] == "all") & (results["metric"] == metric)]
        for model, value in zip(rows["model"], rows["value"], strict=True):
            oof = pd.read_csv(smoke_run / "oof" / f"{model}_{task}.csv", dtype={"patient_id": str})
            assert {"patient_id", "fold", "seed", "y_true"} <= set(oof.columns), (model, task)
            mean = average_over_repeats(oof)
            proba = mean[prob_columns(mean)].to_numpy()
            recomputed = (roc_auc_score(mean["y_true"], proba[:, 1]) if task == "binary" else
                          roc_auc_score(mean["y_true"], proba, multi_class="ovr", average="macro"))
            assert recomputed == pytest.approx(value, abs=1e-9), (task, model)
            checked += 1
    assert checked >= 20, f"only {checked} AUROCs recomputed"


@pytest.mark.realdata
@pytest.mark.slow
def test_rerun_of_one_notebook_is_identical_and_does_not_clobber(smoke_run: Path, real_data_dir: Path) -> None:
    """Same seed and settings on CPU, a fresh run folder and a kernel of its own (the full run executed
    notebook 8 in the kernel that had run notebooks 1-7, and from their cached folds): identical metrics;
    the first run's files untouched."""
    before = {p: p.stat().st_mtime_ns for p in (smoke_run / "tables").glob("*.csv")}
    other = smoke_run.parent / "rerun-08"
    overrides = json.loads((smoke_run / "provenance.json").read_text())["overrides"]
    settings = [f"--set={name}={value}" for name, value in overrides.items()]
    proc = subprocess.run([sys.executable, "-m", "osteo_helpers", "run", "--profile", "smoke", "--out", str(other),
                           "--data-dir", str(real_data_dir), "--no-book", *settings,
                           "--notebook", "notebooks/08_site_validation.ipynb"],
                          capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = pd.read_csv(smoke_run / "tables" / "leave_one_batch_out.csv")
    second = pd.read_csv(other / "tables" / "leave_one_batch_out.csv")
    pd.testing.assert_frame_equal(first, second)
    assert before == {p: p.stat().st_mtime_ns for p in (smoke_run / "tables").glob("*.csv")}
