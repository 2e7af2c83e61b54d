"""The sentences and tables the notebooks show: every rule that turns numbers into words."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from osteo_helpers import ablation, config, progress, report


def _results(models: list[str], metric: str = "auroc") -> pd.DataFrame:
    return pd.DataFrame({"model": models, "task": "binary", "metric": metric,
                         "value": np.linspace(0.6, 0.9, len(models)), "ci_low": 0.5, "ci_high": 0.95,
                         "subset": "all", "n_patients": 239})


def _comparison(diff: float, low: float, high: float, a: str = "fusion", b: str = "clinical",
                task: str = "binary") -> dict:
    return {"task": task, "model_a": a, "model_b": b, "value_a": 0.95 + diff, "value_b": 0.95, "diff": diff,
            "ci_low": low, "ci_high": high, "n_patients": 239, "role": "primary", "p_bootstrap": 0.5,
            "p_holm": 0.5, "p_delong": 0.4}


def test_ci_keeps_a_value_and_its_interval_on_one_line():
    assert report.ci(0.9512, 0.9151, 0.9763) == "0.951\u00a0[0.915–0.976]"
    assert report.ci(0.01, -0.02, 0.04, signed=True) == "+0.010\u00a0[-0.020–+0.040]"
    assert report.ci(np.nan, 0, 1) == "not computed"


def test_wide_table_lists_arms_in_the_declared_order_and_has_no_nan():
    shuffled = ["fusion", "age", "image", "clinical"]
    results = pd.concat([_results(shuffled), _results(["age"], "brier")])
    table = report.wide_table(results, ["auroc", "brier"])
    assert list(table.index) == [ablation.arm_label(m) for m in ("age", "clinical", "image", "fusion")]
    assert not table.isna().any().any()
    assert table.loc["fusion (residual)", "brier"] == "not computed"


@pytest.mark.parametrize("diff,low,high,words", [(0.03, 0.01, 0.05, "is better than"),
                                                 (-0.03, -0.05, -0.01, "is worse than"),
                                                 (0.001, -0.01, 0.012, "shows no detectable difference from")])
def test_the_answer_follows_the_interval(diff, low, high, words):
    comparisons = pd.DataFrame([_comparison(diff, low, high), _comparison(0.0, -0.02, 0.02, b="age")])
    text = report.image_adds(comparisons, "binary")
    assert f"residual fusion (AUROC {0.95 + diff:.3f}) {words} the clinical model" in text
    assert "Against age alone the fusion shows no detectable difference" in text


def test_the_answer_states_the_smallest_detectable_gain():
    power = pd.DataFrame({"n_pos": 203, "n_neg": 36, "power": 0.8, "alpha": 0.05, "auroc_ref": 0.95,
                          "correlation": [0.999, 0.9, 0.7, 0.5], "detectable_gain": [0.002, 0.03, 0.045, np.nan],
                          "correlation_source": ["observed", "assumed", "assumed", "assumed"]})
    text = report.image_adds(pd.DataFrame([_comparison(0.0, -0.01, 0.01)]), "binary", power)
    assert "239 patients (36 normal)" in text and "is 0.002 at the observed correlation" in text
    assert "0.030 at correlation 0.9" in text
    assert "none up to the maximum possible (0.050, to AUROC 1) at correlation 0.5" in text
    assert "smaller gains cannot be ruled out" in text


def test_permutation_text_says_which_arms_were_rerun():
    pvalues = pd.DataFrame({"model": ["age", "clinical"], "metric": "auroc", "observed": [0.94, 0.95],
                            "null_mean": 0.5, "null_q95": 0.56, "n_permutations": 200, "p_value": 1 / 201})
    profile = config.get_profile("fast")
    text = report.permutation_text(pvalues, profile)
    assert "200 label permutations" in text and "age p = " in text and "no permutation p-value" in text
    primary = pd.concat([pvalues, pd.DataFrame([{"model": "fusion - clinical", "metric": "auroc_difference",
                                                 "observed": 0.0, "null_mean": 0.0, "null_q95": 0.02,
                                                 "n_permutations": 10, "p_value": 0.6}])])
    assert "re-run on 10 permutations: permutation p = 0.6" in report.permutation_text(primary, profile)


def test_positive_control_text_reads_a_null_control_as_a_pipeline_limit():
    control = pd.DataFrame({"target": ["sex", "age", "age"], "model": "image",
                            "metric": ["auroc", "pearson_r", "mae"], "value": [0.52, 0.03, 9.8],
                            "ci_low": [0.45, -0.1, 8.7], "ci_high": [0.6, 0.15, 10.7]})
    assert "reflects this pipeline" in report.positive_control_text(control, pd.DataFrame())
    control.loc[0, ["value", "ci_low"]] = [0.7, 0.62]
    assert "learns sex (its CI excludes chance) but not age" in report.positive_control_text(control, pd.DataFrame())
    control.loc[1, ["value", "ci_low"]] = [0.4, 0.2]
    assert "Both are learned" in report.positive_control_text(control, pd.DataFrame())


def test_paths_of_the_machine_never_reach_the_page():
    text = report.shorten_paths(f"run --out {config.PROJECT_ROOT}/outputs/fast --data-dir /srv/data/knee-osteo")
    assert text == "run --out outputs/fast --data-dir …/knee-osteo"


def test_progress_lines_count_finished_fits_and_time_left(tmp_path, monkeypatch):
    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(progress.PROGRESS_ENV, str(path))
    progress.report("arm", arm="fusion", task="binary", tag="", folds=10, reused=0)
    progress.report("fit_done", arm="fusion", task="binary", seed=1, fold=0, done=1, total=10, elapsed=0.5)
    progress.report("fit_done", arm="fusion", task="binary", seed=1, fold=4, done=2, total=10, elapsed=40.0)
    with open(path, "a") as fh:
        fh.write('{"event": "note", "mess')  # a line still being written is left for the next read
    events, offset = progress.read_events(path)
    assert [e["event"] for e in events] == ["arm", "fit_done", "fit_done"] and offset < path.stat().st_size
    lines = []
    printer = progress.Printer(write=lambda text, **_: lines.append(text))
    for event in events:
        printer(event)
    assert len(lines) == 1  # the first fit says nothing: half a second per fit is not worth a line
    assert "2/10 fits done (last: fusion (binary), seed 1 fold 4), about 2m40s left" in lines[0]  # 20 s a fit
    printer({"event": "fit_done", "arm": "age", "task": "binary", "seed": 1, "fold": 2, "done": 2, "total": 10,
             "elapsed": 0.1})
    printer({"event": "fits_done", "total": 10, "seconds": 0.4, "executor": "in-process"})
    printer({"event": "fits_done", "total": 10, "seconds": 95.0, "executor": "2 local workers"})
    assert lines[1:] == ["  10 fits done in 1m35s (2 local workers)"]
    assert json.loads(path.read_text().splitlines()[0])["arm"] == "fusion"
