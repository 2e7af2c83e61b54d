"""End to end: the smoke profile on the real data, its book, provenance and reproducibility.

The smoke run happens once per session (fixture `smoke_run`) into test-artifacts/, which
CI keeps as an artefact together with the browser screenshots.
"""

from __future__ import annotations

import functools
import http.server
import json
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from bs4 import BeautifulSoup
from playwright.sync_api import Browser, ConsoleMessage, Page
from playwright.sync_api import Error as PlaywrightError
from sphinx_external_toc.parsing import parse_toc_yaml

from osteo_helpers.config import PROJECT_ROOT

ARTIFACTS = PROJECT_ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"
TOC_PAGES = list(parse_toc_yaml(PROJECT_ROOT / "_toc.yml"))  # docnames, in the order of the book

# Lazy images are made eager so that images below the fold are checked too; decode() rejects for an
# image that cannot be fetched or decoded. Returns the sources of the images left without pixels.
UNDECODED_IMAGES_JS = """async () => {
  const images = Array.from(document.images);
  images.forEach(img => { img.loading = "eager"; });
  await Promise.all(images.map(img => img.decode().catch(() => null)));
  return images.filter(img => !img.complete || img.naturalWidth === 0).map(img => img.currentSrc || img.src);
}"""
# Sphinx 7.4 writes sphinx-thebe 0.3.1's inline `const THEBE_JS_URL = ...` script twice into every page (it
# registers the script after the builder started, and the builder then adds it again); the second copy throws.
# Nothing in the book's sources can remove it, and thebe (off here) keeps working.
UPSTREAM_EXCEPTIONS = {"Identifier 'THEBE_JS_URL' has already been declared"}


#: one torch thread per fit: `make test` runs two pytest workers on two cores, and more threads than cores
#: make every one of them several times slower
SMOKE_SETTINGS = ("--set", "num_threads=1")


@pytest.fixture(scope="session")
def smoke_run(real_data_dir: Path) -> Path:
    run_dir = ARTIFACTS / "smoke-run"
    proc = subprocess.run([sys.executable, "-m", "osteo_helpers", "run", "--profile", "smoke", "--out", str(run_dir),
                           "--data-dir", str(real_data_dir), *SMOKE_SETTINGS], capture_output=True, text=True,
                          cwd=PROJECT_ROOT)
    assert proc.returncode == 0, f"smoke pipeline failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return run_dir


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


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="session")
def book_url(smoke_run: Path) -> Iterator[str]:
    """The smoke run's book served over HTTP from 127.0.0.1, on a free port."""
    handler = functools.partial(_QuietHandler, directory=str(smoke_run / "_build" / "html"))
    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{server.server_address[1]}"
        server.shutdown()
        thread.join()


def test_browser_is_the_system_chromium(browser: Browser, browser_type_launch_args: dict) -> None:
    """pytest-playwright launches the Chromium of scripts/ensure_chromium.sh, never a browser of its own."""
    chromium = browser_type_launch_args["executable_path"]
    version = subprocess.run([chromium, "--version"], capture_output=True, text=True, check=True).stdout
    assert browser.version in version, f"Playwright launched {browser.version}, not {chromium} ({version.strip()})"


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("docname", TOC_PAGES)
def test_toc_page_loads_in_chromium(book_url: str, page: Page, docname: str) -> None:
    """HTTP 200, no console error or uncaught exception, every image decoded; a full-page screenshot."""
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        # The browser asks for /favicon.ico by itself; the book declares none.
        if msg.type == "error" and not msg.location["url"].endswith("/favicon.ico"):
            errors.append(f"console error: {msg.text} ({msg.location['url']})")

    def on_pageerror(exc: PlaywrightError) -> None:
        if exc.message not in UPSTREAM_EXCEPTIONS:
            errors.append(f"uncaught exception: {exc.message}")

    page.on("console", on_console)
    page.on("pageerror", on_pageerror)
    shot = SCREENSHOTS / f"{docname.replace('/', '__')}.png"
    shot.unlink(missing_ok=True)
    response = page.goto(f"{book_url}/{docname}.html", wait_until="load")  # the page, its scripts and styles
    undecoded = page.evaluate(UNDECODED_IMAGES_JS)
    page.screenshot(path=shot, full_page=True)
    assert response is not None and response.status == 200, f"{docname}.html answered {response and response.status}"
    assert not undecoded, f"images without pixels on {docname}.html: {undecoded}"
    assert not errors, f"{docname}.html:\n" + "\n".join(errors)


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
        metrics = [th.get_text(strip=True) for th in table.find("thead").find_all("th", class_="col_heading")]
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
def test_rerun_of_one_notebook_is_identical_and_does_not_clobber(smoke_run: Path, real_data_dir: Path) -> None:
    """Same seed on CPU, a fresh run folder and a kernel of its own (the full run executed notebook 4 in the
    kernel that had run notebooks 1-3): identical metrics; the first run's files untouched."""
    before = {p: p.stat().st_mtime_ns for p in (smoke_run / "tables").glob("*.csv")}
    other = ARTIFACTS / "rerun-04"
    proc = subprocess.run([sys.executable, "-m", "osteo_helpers", "run", "--profile", "smoke", "--out", str(other),
                           "--data-dir", str(real_data_dir), "--no-book", *SMOKE_SETTINGS,
                           "--notebook", "notebooks/04_three_class.ipynb"],
                          capture_output=True, text=True, cwd=PROJECT_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    first = pd.read_csv(smoke_run / "tables" / "results_3class.csv")
    second = pd.read_csv(other / "tables" / "results_3class.csv")
    pd.testing.assert_frame_equal(first, second)
    assert before == {p: p.stat().st_mtime_ns for p in (smoke_run / "tables").glob("*.csv")}


def test_failing_notebook_is_named_with_its_cell(tmp_path: Path) -> None:
    import nbformat

    from osteo_helpers.pipeline import PipelineError, execute_notebook

    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise ValueError('boom')")]
    src = tmp_path / "broken.ipynb"
    nbformat.write(nb, src)
    with pytest.raises(PipelineError, match=re.escape("broken.ipynb failed in cell 1")):
        execute_notebook(src, tmp_path / "out.ipynb", {})


@pytest.mark.realdata
@pytest.mark.slow
def test_every_figure_reaches_the_page_as_an_image(smoke_run: Path) -> None:
    """A cell that makes a figure (`study.figure(...)`) shows at least one image, no output is a figure's
    text representation, and no built page prints one (a figure without a canvas displays as text)."""
    problems = []
    for notebook in sorted((smoke_run / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
        for index, cell in enumerate(cells):
            if cell["cell_type"] != "code":
                continue
            outputs = cell.get("outputs", [])
            images = [any(kind.startswith("image/") for kind in o.get("data", {})) for o in outputs]
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


@pytest.mark.parametrize("fails", [False, True], ids=["finished", "failed"])
def test_a_notebook_run_by_papermill_records_its_provenance(tmp_path: Path, synthetic_dataset, fails: bool) -> None:
    """Without `osteo run`, `Study.open` records the session as the pipeline would: settings, code,
    data, steps and how it ended (a failure names the cell)."""
    import nbformat

    from osteo_helpers.pipeline import PipelineError, execute_notebook

    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    nb.cells = [nbformat.v4.new_code_cell(f"from osteo_helpers.study import Study\n"
                                          f"study = Study.open('smoke', {str(tmp_path / 'run')!r}, "
                                          f"{str(synthetic_dataset.root)!r}, epochs=1)"),
                nbformat.v4.new_code_cell("raise ValueError('boom')" if fails else "x = 1")]
    src = tmp_path / "session.ipynb"
    nbformat.write(nb, src)
    if fails:
        with pytest.raises(PipelineError):
            execute_notebook(src, tmp_path / "out.ipynb", {})
    else:
        execute_notebook(src, tmp_path / "out.ipynb", {})
    record = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert record["status"] == ("failed" if fails else "finished")
    assert record["profile"]["epochs"] == 1 and record["overrides"] == {"epochs": 1}
    assert record["git"]["commit"] and record["packages"]["torch"] and "duration_s" in record
    assert [s["name"] for s in record["steps"]] == ["notebook session"]
    if fails:
        assert record["failure"]["source"] == "raise ValueError('boom')"
        assert record["failure"]["error"] == "ValueError: boom"


def test_progress_is_plain_lines_outside_a_terminal(capsys: pytest.CaptureFixture[str], monkeypatch) -> None:
    """No redrawn bars in a notebook or a log: a line per fit with the time left, and a line every few seconds."""
    from osteo_helpers import progress
    from osteo_helpers.progress import show_progress

    monkeypatch.delenv(progress.PROGRESS_ENV, raising=False)
    assert not show_progress()  # pytest's stderr is not a terminal
    for done in (1, 2, 3):
        progress.report("fit_done", arm="image", task="binary", seed=42, fold=done - 1, done=done, total=3,
                        elapsed=10.0 * done)
    progress.report("fits_done", total=3, seconds=30.0, executor="in-process")
    assert list(progress.track(range(3), "images", every=0.0)) == [0, 1, 2]
    out = capsys.readouterr().out
    assert "2/3 fits done (last: image (binary), seed 42 fold 1), about 10s left" in out
    assert "3 fits done in 30s (in-process)" in out
    assert "images: 1 of 3, about" in out and "\r" not in out


# Tables wider than their cell: each must sit in a container that scrolls sideways (never cut off at the right).
CLIPPED_TABLES_JS = """() => Array.from(document.querySelectorAll('main table')).filter(table => {
  let box = table.parentElement;
  while (box && box.tagName !== 'MAIN') {
    const overflow = getComputedStyle(box).overflowX;
    if (overflow === 'auto' || overflow === 'scroll') return false;
    box = box.parentElement;
  }
  return table.getBoundingClientRect().right > document.querySelector('main').getBoundingClientRect().right + 1;
}).map(table => (table.querySelector('caption') || table).textContent.slice(0, 80))"""


@pytest.mark.realdata
@pytest.mark.slow
def test_first_page_provenance_and_wide_tables_read_well(book_url: str, page: Page, smoke_run: Path) -> None:
    """The first page states the run's answer; provenance shows the final status, the device and the
    parameters as tables and every full checksum; no download menu to unbuilt files; wide tables scroll."""
    record = json.loads((smoke_run / "provenance.json").read_text())
    page.set_viewport_size({"width": 1000, "height": 900})
    page.goto(f"{book_url}/book/index.html", wait_until="load")
    first = page.inner_text("main")
    page.screenshot(path=SCREENSHOTS / "narrow__index.png", full_page=True)
    assert "The answer of this run." in first and "residual fusion" in first, first[:600]
    assert "{{" not in first and "filled in by the pipeline" not in first
    assert page.locator(".dropdown-download-buttons").count() == 0, "download menu links to _sources/, not built"

    page.goto(f"{book_url}/book/provenance.html", wait_until="load")
    status = page.locator("main table").first.inner_text()
    assert "finished" in status and "running" not in status, status
    assert "CPU cores" in page.inner_text("main") and "changed for this run" in page.inner_text("main")
    page.locator("summary", has_text="SHA-256 of all").click()
    digest = record["data"]["spreadsheet_sha256"]
    assert page.get_by_text(digest).first.is_visible(), "full checksums are not shown"
    page.screenshot(path=SCREENSHOTS / "narrow__provenance.png", full_page=True)

    clipped = {}
    for docname in ("book/results_summary", "notebooks/03_binary_fusion", "notebooks/05_ablation"):
        page.goto(f"{book_url}/{docname}.html", wait_until="load")
        clipped[docname] = page.evaluate(CLIPPED_TABLES_JS)
    page.screenshot(path=SCREENSHOTS / "narrow__05_ablation.png", full_page=True)
    assert not any(clipped.values()), f"tables cut off at the right: {clipped}"
