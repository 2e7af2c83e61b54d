"""Tables as a reader sees them on a page (issue 32): what the HTML holds; the browser tests check the width."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from osteo_helpers import htmltable, pipeline, report, wording

CHECKSUM = "434cd6eba4de43a3671394ce32bfe86747a3f0a1f5e0f6c0d2b17a1e6c1f2a3b"


def test_a_table_wraps_between_an_estimate_and_its_ci_and_links_its_csv():
    table = pd.DataFrame({"calibration_slope": [wording.ci(0.951, 0.915, 0.976)], "image_sha256": [CHECKSUM]})
    page = htmltable.table_html(table, "Clinical model — run smoke-1, profile smoke", "../tables/x.csv", "All of it")
    assert "0.951 [0.915,\u00a00.976]" in page  # breaks before the interval, never inside it
    assert "calibration_<wbr>slope" in page and "image_<wbr>sha256" in page
    assert CHECKSUM not in page and f"{CHECKSUM[:htmltable.SHORT_ID]}…" in page
    assert "<caption>Clinical model — run smoke-1, profile smoke</caption>" in page and "`" not in page
    link = '<p class="osteo-source">All of it: <a class="osteo-source" href="../tables/x.csv">x.csv</a></p>'
    assert page.endswith(link)


def test_a_caption_is_escaped_not_markup():
    page = htmltable.table_html(pd.DataFrame({"a": [1]}), "AUROC <b>& run</b>")
    assert "<caption>AUROC &lt;b&gt;&amp; run&lt;/b&gt;</caption>" in page


def _comparisons() -> pd.DataFrame:
    row = {"model_a": "fusion", "model_b": "clinical", "metric": "auroc", "diff": 0.0, "ci_low": 0.0, "ci_high": 0.0,
           "p_bootstrap": 1.0, "p_delong": 1.0, "p_holm": np.nan, "task": "binary", "role": "primary",
           "fold_diff_mean": 0.0, "fold_diff_sd": 0.0, "folds_a_better": 0, "folds_b_better": 0, "folds_tied": 10,
           "n_folds": 10, "a_untrained_folds": 10, "a_fitted_folds": 10, "estimable": False,
           "conclusion": "not estimable on this cohort: fusion kept its untrained state in every fold"}
    second = {**row, "model_b": "age", "diff": -0.0424, "ci_low": -0.0517, "ci_high": -0.0341, "p_bootstrap": 0.0,
              "p_delong": 4.37e-13, "p_holm": 0.0392, "role": "secondary", "a_untrained_folds": 3, "estimable": True,
              "folds_a_better": 0, "folds_b_better": 10, "folds_tied": 0, "fold_diff_mean": -0.043,
              "fold_diff_sd": 0.01}
    return pd.DataFrame([row, second])


def test_the_comparisons_table_holds_what_a_reader_needs_in_few_columns():
    """Issue 32: 13 columns, 3,276 px wide at 1,280 px; the verdict repeated the identifiers in a sentence."""
    table = report.comparison_table(_comparisons(), n_boot=1000)
    assert list(table.columns) == ["task, metric", "A vs B", "A - B [95% CI]", "p", "p (Holm)", "p (DeLong)",
                                   "fold-level A - B (SD); folds A / B / tied", "verdict"]
    first, second = table.iloc[0], table.iloc[1]
    assert first["A vs B"] == "fusion (residual) vs clinical (age, sex)"
    assert first["task, metric"] == "binary AUROC, primary"
    assert first["verdict"] == "not estimable: A is B in every fold" and first["p (Holm)"] == "tested alone"
    assert second["p"] == "< 0.002" and second["p (Holm)"] == "0.039" and second["p (DeLong)"] == "< 0.001"
    assert second["verdict"] == "B better; A untrained in 3 of 10 folds"
    assert second["fold-level A - B (SD); folds A / B / tied"] == "-0.043 (SD 0.010); 0\u00a0/\u00a010\u00a0/\u00a00"


def test_the_book_copies_every_run_file_a_page_links(tmp_path):
    """A notebook's tables link their CSV files and its figures name their PNGs (relative to the executed
    notebooks' folder); the book serves the same paths once copied. Nothing outside the run folder."""
    html = [htmltable.table_html(pd.DataFrame({"a": [1]}), "t", "../tables/results_binary.csv"),
            '<img class="osteo-figure" src="../figures/roc_pr_binary.png" alt="ROC">',
            '<a class="osteo-source" href="../../etc/passwd">x</a>']
    nb = {"cells": [{"cell_type": "code", "outputs": [{"output_type": "display_data", "data": {"text/html": h}}
                                                      for h in html]}]}
    path = tmp_path / "05.ipynb"
    path.write_text(json.dumps(nb))
    assert pipeline.linked_run_files(path) == {"tables/results_binary.csv", "figures/roc_pr_binary.png"}
