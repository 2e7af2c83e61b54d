"""`osteo answer RUN` (issue 32.5): a finished run's answer and headline numbers in the terminal, read from a
run folder of small synthetic tables; a folder that is not a finished run is one line and exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from osteo_helpers.answer import study_answer
from osteo_helpers.cli import main

RESULT_COLUMNS = ["model", "task", "metric", "value", "ci_low", "ci_high", "subset", "n_patients"]


def make_run(root: Path, status: str = "finished", control: bool = True) -> Path:
    """A run folder as `osteo run` leaves it: provenance.json and the tables the answer is read from."""
    tables = root / "tables"
    tables.mkdir(parents=True)
    pd.DataFrame([["clinical", "binary", "auroc", 0.781, 0.702, 0.853, "all", 239],
                  ["fusion", "binary", "auroc", 0.794, 0.716, 0.861, "all", 239],
                  ["fusion", "binary", "auroc", 0.5, 0.4, 0.6, "age 40-50", 50],
                  ["image", "binary", "auroc", 0.43, 0.33, 0.53, "all", 239]], columns=RESULT_COLUMNS).to_csv(
        tables / "results_binary.csv", index=False)
    pd.DataFrame([{"task": "binary", "model_a": "fusion", "model_b": "clinical", "metric": "auroc", "value_a": 0.794,
                   "value_b": 0.781, "diff": 0.013, "ci_low": -0.004, "ci_high": 0.031, "n_patients": 239,
                   "role": "primary", "p_bootstrap": 0.14, "p_holm": 0.14, "n_folds": 10, "folds_a_better": 6,
                   "folds_b_better": 3, "folds_tied": 1, "fold_diff_mean": 0.012, "fold_diff_sd": 0.02,
                   "a_untrained_folds": 2, "a_fitted_folds": 10}]).to_csv(tables / "comparisons.csv", index=False)
    if control:
        pd.DataFrame({"target": ["sex", "age", "age"], "model": "image", "metric": ["auroc", "pearson_r", "mae"],
                      "value": [0.71, 0.12, 9.1], "ci_low": [0.63, -0.02, 8.2], "ci_high": [0.79, 0.25, 10.0]}).to_csv(
            tables / "positive_control.csv", index=False)
    (root / "provenance.json").write_text(json.dumps({
        "run_id": "fast-20261207T101500Z", "status": status, "profile": {"name": "fast", "image_size": 224},
        "overrides": {"epochs": "3"}, "git": {"commit": "0123456789abcdef0123", "branch": "main", "dirty": False}}))
    return root


def _answer(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["answer", *argv])
    captured = capsys.readouterr()
    return code, captured.out.replace("\u00a0", " "), captured.err


def test_a_finished_run_prints_its_answer_and_headline_numbers(tmp_path, capsys):
    run = make_run(tmp_path / "run")
    code, out, err = _answer(capsys, str(run))
    assert code == 0 and err == ""
    lines = out.strip().splitlines()
    assert lines[0] == f"run {run}: profile fast (with epochs=3), finished, commit 0123456789ab (clean)"
    assert lines[1] == "answer: " + study_answer(run / "tables").replace("\u00a0", " ")
    assert lines[2:] == [
        "primary comparison, binary AUROC of fusion (residual) minus clinical (age, sex): +0.013 [-0.004, +0.031] "
        "(no detectable difference)",
        "binary AUROC, clinical (age, sex): 0.781 [0.702, 0.853]",
        "binary AUROC, fusion (residual): 0.794 [0.716, 0.861]",
        "positive control, from the image alone: sex AUROC 0.710 [0.630, 0.790], age Pearson r 0.120 [-0.020, 0.250]"]


def test_a_run_without_a_positive_control_says_so(tmp_path, capsys):
    code, out, _ = _answer(capsys, str(make_run(tmp_path / "run", control=False)))
    assert code == 0 and out.strip().splitlines()[-1] == "positive control: not in this run"


@pytest.mark.parametrize("case", ["no folder", "a file", "no provenance", "failed", "running", "no tables",
                                  "broken provenance"])
def test_a_folder_that_is_not_a_finished_run_is_one_line_exit_2(case, tmp_path, capsys):
    run = tmp_path / "run"
    expected = {"no folder": "no such folder", "a file": "is a file, not a run folder",
                "no provenance": "no provenance.json, so not a folder made by `osteo run`",
                "failed": "the run is failed, not finished", "running": "the run is running, not finished",
                "no tables": "no tables/results_binary.csv",
                "broken provenance": "provenance.json cannot be read"}[case]
    if case == "a file":
        run.write_text("x")
    elif case != "no folder":
        make_run(run, status={"failed": "failed", "running": "running"}.get(case, "finished"))
    if case == "no provenance":
        (run / "provenance.json").unlink()
    elif case == "no tables":
        (run / "tables" / "results_binary.csv").unlink()
    elif case == "broken provenance":
        (run / "provenance.json").write_text("{not json")
    code, out, err = _answer(capsys, str(run))
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and len(lines) == 1, err
    assert lines[0].startswith(f"error: answer {run}: ") and expected in lines[0], lines[0]


def test_the_positive_control_of_both_encoders_is_named_by_encoder(tmp_path, capsys):
    """The positive control holds the pretrained features' head and the CNN from scratch: `osteo answer` raised
    on the two rows per metric (issue 32, found while writing the README's numbers)."""
    run = make_run(tmp_path / "run")
    one = pd.read_csv(run / "tables" / "positive_control.csv")
    pd.concat([one, one.assign(model="image_cnn", value=one["value"] / 2)]).to_csv(
        run / "tables" / "positive_control.csv", index=False)
    code, out, _ = _answer(capsys, str(run))
    assert code == 0 and out.strip().splitlines()[-1] == (
        "positive control, from the image alone: image only (pretrained features): sex AUROC 0.710 [0.630, 0.790], "
        "age Pearson r 0.120 [-0.020, 0.250]; image only (CNN from scratch): sex AUROC 0.355 [0.630, 0.790], "
        "age Pearson r 0.060 [-0.020, 0.250]")
