"""The sentences and tables the notebooks show: every rule that turns numbers into words."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from osteo_helpers import ablation, config, estimability, folders, progress, report, wording


def _results(models: list[str], metric: str = "auroc") -> pd.DataFrame:
    return pd.DataFrame({"model": models, "task": "binary", "metric": metric,
                         "value": np.linspace(0.6, 0.9, len(models)), "ci_low": 0.5, "ci_high": 0.95,
                         "subset": "all", "n_patients": 239})


def test_ci_keeps_a_value_and_its_interval_on_one_line():
    assert wording.ci(0.9512, 0.9151, 0.9763) == "0.951\u00a0[0.915,\u00a00.976]"
    assert wording.ci(0.01, -0.02, 0.04, signed=True) == "+0.010\u00a0[-0.020,\u00a0+0.040]"
    assert wording.ci(np.nan, 0, 1) == "not computed"


def test_ci_reads_well_at_the_edges():
    assert wording.ci(-0.183, -0.272, -0.1, signed=True) == "-0.183\u00a0[-0.272,\u00a0-0.100]"
    assert "–-" not in wording.ci(-0.183, -0.272, -0.1) and "–+" not in wording.ci(0.1, -0.2, 0.3, signed=True)
    assert wording.ci(0.0, 0.0, 0.0, signed=True) == "0.000, identical in every resample"
    assert wording.ci(-0.00001, -0.0002, 0.0001, signed=True) == "0.000, identical in every resample"
    assert wording.number(-0.0001, signed=True) == "0.000" and wording.number(np.nan) == "n/a"
    assert wording.ci(0.5, np.nan, np.nan) == "0.500"


def test_fold_table_shows_pooled_fold_and_repeat_values_and_the_untrained_folds():
    rows = [("fusion", "auroc", 0.95, 0.9, 0.98), ("fusion", "auroc_fold_mean", 0.93, np.nan, np.nan),
            ("fusion", "auroc_fold_sd", 0.04, np.nan, np.nan), ("fusion", "auroc_seed42", 0.94, np.nan, np.nan),
            ("fusion", "auroc_seed43", 0.945, np.nan, np.nan), ("fusion", "untrained_folds", 8, np.nan, np.nan),
            ("fusion", "fitted_folds", 10, np.nan, np.nan), ("image", "auroc", 0.39, 0.3, 0.49),
            ("image", "auroc_fold_mean", 0.377, np.nan, np.nan), ("image", "auroc_fold_sd", 0.125, np.nan, np.nan)]
    results = pd.DataFrame(rows, columns=["model", "metric", "value", "ci_low", "ci_high"]).assign(
        task="binary", subset="all", n_patients=239)
    table = report.fold_table(results)
    assert list(table.index) == ["image only (pretrained features)", "fusion (residual)"]
    assert table.loc["image only (pretrained features)", "fold mean (SD)"] == "0.377 (0.125)"
    assert table.loc["fusion (residual)", "repeat 43"] == "0.945"
    assert table.loc["image only (pretrained features)", "repeat 42"] == "n/a"
    assert table.loc["fusion (residual)", "kept the untrained state"] == "8 of 10 folds"
    assert table.loc["image only (pretrained features)", "kept the untrained state"] == ""


def test_wide_table_lists_arms_in_the_declared_order_and_has_no_nan():
    shuffled = ["fusion", "age", "image", "clinical"]
    results = pd.concat([_results(shuffled), _results(["age"], "brier")])
    table = report.wide_table(results, ["auroc", "brier"])
    assert list(table.index) == [ablation.arm_label(m) for m in ("age", "clinical", "image", "fusion")]
    assert not table.isna().any().any()
    assert table.loc["fusion (residual)", "brier"] == "not computed"


def test_paths_of_the_machine_never_reach_the_page():
    text = folders.shorten_paths(f"run --out {config.PROJECT_ROOT}/outputs/fast --data-dir /srv/data/knee-osteo")
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


def test_silenced_work_reports_notes_but_no_fits(tmp_path, monkeypatch):
    """Label permutations run thousands of quick fits: their own line per 30 s, not a line per permutation."""
    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(progress.PROGRESS_ENV, str(path))
    with progress.silenced():
        progress.report("fits_done", total=10, seconds=1.5, executor="in-process")
        progress.note("label permutations: 3 of 200, about 2m left")
    progress.report("fits_done", total=10, seconds=2.0, executor="in-process")
    events, _ = progress.read_events(path)
    assert [(e["event"], e.get("seconds")) for e in events] == [("note", None), ("fits_done", 2.0)]


def test_a_followed_note_reaches_the_log_and_not_the_page(tmp_path, monkeypatch, capsys):
    """Issue 32: "reusing 10 of 10 folds" and other progress notes were printed into the notebooks, so onto the
    book's pages. Under `osteo run` (a progress file is followed) a note goes to the log only; a notebook on its
    own still prints it for the person running it."""
    from osteo_helpers import pipeline, provenance

    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(progress.PROGRESS_ENV, str(path))
    progress.note("label permutations: 3 of 200, about 2m left")
    progress.report("arm", arm="fusion", task="binary", tag="", folds=10, reused=10)
    progress.report("arm", arm="age", task="binary", tag="", folds=10, reused=0)
    assert capsys.readouterr().out == ""
    lines = []
    printer = progress.Printer(write=lambda text, **_: lines.append(text))
    follower = pipeline.Follower(tmp_path / "followed.jsonl", printer)
    follower.path.write_bytes(path.read_bytes())
    follower._drain()
    assert lines == ["  label permutations: 3 of 200, about 2m left", "  fusion (binary): reusing 10 of 10 folds"]
    folds = follower.take_folds()
    assert folds == {"folds_fitted": 10, "folds_reused": 10} and follower.take_folds()["folds_reused"] == 0
    sentence = provenance.folds_text({"steps": [{"name": "notebooks/03.ipynb", **folds},
                                                {"name": "notebooks/05.ipynb", "folds_fitted": 2, "folds_reused": 8}]})
    assert sentence.startswith("**Folds.** The arms' cross-validations fitted 12 folds in this run and reused 18 ")
    monkeypatch.delenv(progress.PROGRESS_ENV)
    progress.note("a note for a notebook session")
    progress.report("arm", arm="fusion", task="binary", tag="", folds=10, reused=4)
    assert capsys.readouterr().out == "a note for a notebook session\n  fusion (binary): reusing 4 of 10 folds\n"


def test_the_forest_legend_covers_no_point():
    from osteo_helpers import plots

    rows = []
    for i, m in enumerate(ablation.MAIN_ARMS):
        v = 0.4 + 0.07 * i
        rows += [(m, "auroc", v, v - 0.08, min(v + 0.08, 1)), (m, "auroc_fold_mean", v - 0.02, np.nan, np.nan),
                 (m, "auroc_fold_sd", 0.1, np.nan, np.nan), (m, "auroc_seed1", v - 0.01, np.nan, np.nan),
                 (m, "auroc_seed2", v + 0.01, np.nan, np.nan)]
    results = pd.DataFrame(rows, columns=["model", "metric", "value", "ci_low", "ci_high"])
    fig = plots.forest(results, "auroc", order=ablation.DECLARED_ORDER, labels=ablation.ARM_LABELS, highlight=0.9)
    fig.canvas.draw()
    ax = fig.axes[0]
    legend = ax.get_legend().get_window_extent()
    points = np.vstack([np.asarray(c.get_offsets(), dtype=float) for c in ax.collections if len(c.get_offsets())]
                       + [np.column_stack(line.get_data()).astype(float) for line in ax.get_lines()
                          if line.get_marker() not in ("None", "", None)])
    shown = ax.transData.transform(points[np.isfinite(points).all(axis=1)])
    inside = ((shown[:, 0] >= legend.x0) & (shown[:, 0] <= legend.x1) & (shown[:, 1] >= legend.y0)
              & (shown[:, 1] <= legend.y1))
    assert len(shown) >= 3 * len(ablation.MAIN_ARMS) and not inside.any()
    assert {t.get_text() for t in ax.get_legend().get_texts()} >= {"pooled, 95% CI", "fold mean ± fold SD",
                                                                   "each repeat, pooled"}


def test_a_patient_without_an_id_or_image_is_named_once():
    from osteo_helpers import patients

    problems = patients.single_patient({}, None, None, ("age_years",), 32)[0].problems
    assert problems == ["patient without an ID: age_years: missing (required by the model)",
                        "patient without an ID: image: missing (give --image)"]
    assert not any("patient patient" in line for line in problems)


def test_a_lost_ctrl_c_is_raised_again_at_the_next_progress_event():
    """Python drops a KeyboardInterrupt raised while a finaliser runs; the command must still stop."""
    import os
    import signal
    import time

    class Finaliser:
        def __del__(self):
            time.sleep(0.3)  # Ctrl-C lands here and is lost ("Exception ignored in ...")

    before = signal.getsignal(signal.SIGINT)  # whatever an earlier test or the test runner left
    previous = signal.signal(signal.SIGALRM, lambda *_: os.kill(os.getpid(), signal.SIGINT))
    try:
        with progress.interruptible():
            obj = Finaliser()
            signal.setitimer(signal.ITIMER_REAL, 0.05)
            del obj
            with pytest.raises(KeyboardInterrupt):
                progress.report("fit_done", arm="age", task="binary", done=1, total=2, elapsed=0.1)
    finally:
        signal.signal(signal.SIGALRM, previous)
    assert signal.getsignal(signal.SIGINT) is before
    progress.report("note", message="after the command: no stale interrupt")


def test_the_wrong_image_links_are_a_finding_with_consequences_for_every_image_result():
    """20 of 21 identical-image groups joining disagreeing records: how many patients carry another person's
    knee, and that every image result (and the positive control) is bounded by the link."""
    conflicts = [{"patients": ["N23", "OP107"], "sex": ["male", "female"], "age_years": [35.0, 50.0],
                  "diagnosis": ["normal", "osteopenia"], "disagree": ["sex", "age"]},
                 {"patients": ["OP53", "OS8", "OS9"], "sex": ["male"] * 3, "age_years": [66.0, 55.0, 55.0],
                  "diagnosis": ["osteopenia", "osteoporosis", "osteoporosis"], "disagree": ["age"]}]
    text = report.linkage_implications({"image_record_conflicts": conflicts, "images": 239,
                                        "duplicate_groups": [[1], [2], [3]]})
    assert "The 2 groups hold 5 patients" in text and "at least 3 patients (1% of the 239 images)" in text
    assert "another person's knee" in text and "a null image result is expected" in text
    assert "positive control of notebook 2" in text
    assert "nothing here shows a wrong" in report.linkage_implications({"image_record_conflicts": []})


def test_batches_that_follow_blocks_of_patient_ids_are_said_to():
    manifest = pd.DataFrame({"patient_id": [f"N{i}" for i in range(1, 7)] + [f"OP{i}" for i in range(1, 7)],
                             "diagnosis": ["normal"] * 6 + ["osteopenia"] * 6,
                             "batch": ["a", "a", "a", "b", "b", "b", "a", "b", "a", "b", "a", "b"]})
    text = report.batch_blocks_text(manifest)
    assert text.startswith("Ordered by patient ID within each class, the 2 acquisition batches form 2, 6 runs "
                           "(normal, osteopenia; 2 per class would be perfect blocks)")
    assert report.batch_blocks_text(manifest.assign(patient_id=list("abcdefghijkl"))) == ""


def test_a_ci_that_excludes_chance_never_prints_as_touching_it():
    """Issue 30: an upper bound of 0.4998 printed as 0.500 read as an interval touching chance."""
    assert wording.ci(0.388, 0.27, 0.4998, reference=0.5) == "0.3880\u00a0[0.2700,\u00a00.4998]"
    assert wording.ci(0.388, 0.27, 0.4998) == "0.388\u00a0[0.270,\u00a00.500]"  # without a reference: 3 digits
    assert wording.ci(0.51, 0.5, 0.6, reference=0.5) == "0.510\u00a0[0.500,\u00a00.600]"  # a bound at 0.5 stays so


def test_an_arm_below_its_own_null_is_said_to_be_so():
    from osteo_helpers import answer

    results = pd.DataFrame({"model": "image", "metric": ["auroc"], "value": [0.388], "ci_low": [0.28],
                            "ci_high": [0.4998], "subset": "all"})
    null = pd.DataFrame([{"model": "image", "metric": "auroc", "observed": 0.388, "null_mean": 0.47,
                          "n_permutations": 200, "p_value": 0.99, "p_less": 0.02}])
    words = answer.discrimination_words(results, "image", null)
    assert "showed no discrimination (pooled AUROC 0.3880" in words and "0.4998]" in words
    assert "the permutation null of its pooled AUROC (200 permutations" in words and "below its own null" in words


def _ages(classes: dict[str, list[float]]) -> pd.DataFrame:
    people = pd.DataFrame([{"diagnosis": c, "age_years": a} for c, ages in classes.items() for a in ages])
    return people.assign(label_binary=(people["diagnosis"] != "normal").astype(int),
                         patient_id=[f"P{i}" for i in range(len(people))])


def test_age_sentences_of_a_cohort_whose_classes_do_not_overlap_in_age():
    """Issue 28: a cohort of normal and osteoporotic patients only, the normal all younger than the others: notebook
    1 names the absent class and says the ages do not overlap, and the age band of notebooks 5 and 7 is said to be
    not estimable instead of an empty table (notebook 5 used to stop with "No objects to concatenate")."""
    people = _ages({"normal": [30, 35, 40, 44], "osteoporosis": [55, 60, 70, 80]})
    age = people.groupby("diagnosis")["age_years"].describe()
    text = report.age_text(age)
    assert "No patient of this cohort is in the class osteopenia." in text and "nan" not in text
    assert "The ages of the classes do not overlap (every normal patient is at most 44, every low-BMD patient " \
           "at least 55 years old)" in text
    band, name, text = estimability.age_band_subset(people)
    assert band == set() and name == "age 56-43" and text.startswith(
        "**The AUROC within an age band is not estimable on this cohort:** the ages of normal and low-BMD patients "
        "do not overlap")
    overlapping = _ages({"normal": [30, 40, 50, 52, 60], "osteopenia": [45, 51, 55, 65], "osteoporosis": [50, 70]})
    band, name, text = estimability.age_band_subset(overlapping)
    assert text == "" and name == "age 46-58" and band == set(overlapping.query("46 <= age_years <= 58.4").patient_id)
    one_low = _ages({"normal": [30, 40, 50, 60, 62], "osteoporosis": [45, 61, 70, 80, 90]})
    assert "the band holds 2 normal and 1 low-BMD patients (at least 2 of each class are needed)" in \
        estimability.age_band_subset(one_low)[2]
    assert "osteopenia" in report.age_text(overlapping.groupby("diagnosis")["age_years"].describe())


def test_arms_a_cohort_cannot_fit_are_named_with_the_reason():
    reasons = {"ost": "the cohort has no weight", "fusion_tscore": "the cohort has no T-score"}
    assert estimability.unfitted_text(reasons) == (
        "**The arm OST index is not estimable on this cohort:** the cohort has no weight. **The arm fusion (T-score "
        "model) is not estimable on this cohort:** the cohort has no T-score.")
    pairs = [ablation.PRIMARY, *ablation.SECONDARY]
    assert estimability.unfitted_text(reasons, pairs) == (
        "**The comparison of fusion (T-score model) with clinical (T-score model) is not estimable on this cohort:** "
        "the cohort has no T-score. **The comparison of clinical (age, sex) with OST index is not estimable on this "
        "cohort:** the cohort has no weight.")
    assert estimability.unfitted_text({}) == "" and report.osteopenia_text(_results([]), _ages({"normal": [30]})) == ""


def test_clinical_variables_by_class_show_the_columns_the_cohort_has():
    from osteo_helpers import plots

    people = _ages({"normal": [30, 40], "osteoporosis": [60, 70]})
    fig = plots.clinical_by_class(people.assign(bmi=np.nan), ["age_years", "bmi", "weight_kg"])
    assert [ax.get_ylabel() for ax in fig.axes] == ["age_years"]


def test_a_paragraph_only_some_cohorts_need_shows_nothing_when_empty(monkeypatch):
    """`Markdown("")` appears in the book as "<IPython.core.display.Markdown object>" (the published cohort has no
    arm it cannot fit, so every book carried it); a `Paragraph` of no text displays nothing."""
    import IPython.display

    shown: list = []
    monkeypatch.setattr(IPython.display, "display", lambda *objs: shown.extend(objs))
    estimability.Paragraph("")._ipython_display_()
    estimability.Paragraph("  \n")._ipython_display_()
    assert shown == []
    estimability.Paragraph("**The arm OST index is not estimable on this cohort:** no weight.")._ipython_display_()
    assert [type(o).__name__ for o in shown] == ["Markdown"] and shown[0].data.startswith("**The arm OST index")
