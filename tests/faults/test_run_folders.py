"""A run folder holds one run (issue 21.3): results of other settings, data or code are moved aside and said;
nothing printed mixes two runs; `train-final --run` takes only a finished run of the same data and settings.

The notebooks and the ablation's arms are replaced by stand-ins that write the files they would:
what is tested is the folder, not the analysis.
"""

from __future__ import annotations

import datetime as dt
import json
import os

import pandas as pd
import pytest

from osteo_helpers import ablation_run, config, errors, headline, pipeline, provenance, runfolder, train_final
from osteo_helpers.cli import main
from osteo_helpers.data import Cohort
from osteo_helpers.data.export import SPEC_NAME

RESULTS = "model,task,metric,value,ci_low,ci_high,subset,n_patients\nfusion,binary,auroc,{v},0.5,0.9,all,30\n"


def _ablation_writes(monkeypatch):
    """run_ablation replaced by a stand-in that writes results.csv and, with N > 1, permutation_null.csv."""
    def fake(profile_name, task, out, data_dir=None, permute_labels=0, overrides=None, biomarkers=False, cohort=None):
        (out / "results.csv").write_text(RESULTS.format(v=0.7 if task == "binary" else 0.6))
        if permute_labels > 1:
            (out / "permutation_null.csv").write_text(f"permutation,model,metric,value\n1,age,auroc,0.5 ({task})\n")
        (out / "models").mkdir(exist_ok=True)
        (out / "models" / "fold.txt").write_text(task)
        return out / "results.csv"

    monkeypatch.setattr(ablation_run, "run_ablation", fake)


def test_ablation_into_a_folder_of_another_task_moves_the_old_results_aside(cohort, tmp_path, monkeypatch, capsys):
    _ablation_writes(monkeypatch)
    out = tmp_path / "abl"
    base = ["ablation", "--profile", "smoke", "--out", str(out), "--data-dir", str(cohort[2].root)]
    assert main([*base, "--task", "binary", "--permute-labels", "5"]) == 0
    capsys.readouterr()
    assert main([*base, "--task", "3class"]) == 0
    said = [line for line in capsys.readouterr().out.splitlines() if "moved them to" in line]
    assert len(said) == 1 and "task='binary' (now '3class')" in said[0] and str(out) in said[0]
    assert not (out / "permutation_null.csv").exists()  # no binary null beside three-class results
    aside = next((out / runfolder.PREVIOUS).iterdir())
    assert (aside / "permutation_null.csv").is_file() and "0.7" in (aside / "results.csv").read_text()
    assert (out / "models" / "fold.txt").is_file()  # the fold cache stays (checked fold by fold)
    capsys.readouterr()
    assert main([*base, "--task", "3class"]) == 0  # the same run again: resumed in place, nothing moved
    assert "moved" not in capsys.readouterr().out and len(list((out / runfolder.PREVIOUS).iterdir())) == 1


def _fake_notebook(tables: dict[str, str]):
    def execute(source, target, params, kernel=None):
        folder = os.path.join(params["run_dir"], "tables")
        for name, text in tables.items():
            with open(os.path.join(folder, name), "w") as fh:
                fh.write(text)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("{}")
        return 0.1

    return execute


def test_a_run_of_other_settings_never_shows_the_earlier_tables(cohort, tmp_path, monkeypatch, capsys):
    comparisons = ("model_a,model_b,task,diff,ci_low,ci_high,p_value,p_holm,role,conclusion\n"
                   "fusion,clinical,binary,0.05,0.01,0.09,0.01,,primary,epochs=3 says better\n")
    monkeypatch.setattr(pipeline, "execute_notebook", _fake_notebook({"comparisons.csv": comparisons,
                                                                        "results_binary.csv": RESULTS.format(v=0.7)}))
    out = tmp_path / "run"
    argv = ["run", "--profile", "smoke", "--out", str(out), "--data-dir", str(cohort[2].root), "--no-book",
            "--notebook", "notebooks/03_binary_fusion.ipynb"]
    assert main([*argv, "--set", "epochs=3"]) == 0
    assert "+0.050" in capsys.readouterr().out  # the epochs=3 run's primary comparison (fusion - clinical)
    monkeypatch.setattr(pipeline, "execute_notebook", _fake_notebook({}))  # the next run writes no tables
    assert main([*argv, "--set", "epochs=2"]) == 0
    out_text = capsys.readouterr().out
    assert "+0.050" not in out_text and "moved them to" in out_text and "epochs=3" in out_text
    assert not (out / "tables" / "comparisons.csv").exists()
    record = json.loads((out / "provenance.json").read_text())
    assert record["profile"]["epochs"] == 2 and "previous_runs" not in record


def test_the_summary_quotes_only_tables_this_run_wrote(tmp_path):
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "results_binary.csv").write_text(RESULTS.format(v=0.7))
    assert any("AUROC" in line for line in headline.run_summary(tmp_path, 1.0))
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
    assert headline.run_summary(tmp_path, 1.0, since=later) == ["finished in 0 min 1 s"]


@pytest.mark.parametrize("case", ["failed", "other data"])
def test_train_final_takes_only_a_finished_run_of_the_same_data(case, cohort, tmp_path, capsys, monkeypatch, synth):
    monkeypatch.setattr(train_final, "fit_arms", lambda *a, **k: pytest.fail("trained before checking the run"))
    data_root = cohort[2].root
    profile = config.get_profile("smoke")
    run = tmp_path / "run"
    (run / "tables").mkdir(parents=True)
    (run / "tables" / "results_binary.csv").write_text(RESULTS.format(v=0.7))
    record = {"profile": profile.to_dict(), "status": "finished",
              "data": provenance.data_checksums(Cohort.open(None, data_root))}
    if case == "failed":
        record["status"] = "failed"
    else:
        other = synth.make_dataset(tmp_path / "other", counts={"normal": 10, "osteopenia": 10, "osteoporosis": 10},
                                   seed=9)
        record["data"] = provenance.data_checksums(Cohort.open(None, other.root))
    (run / "provenance.json").write_text(json.dumps(record))
    rc = main(["train-final", "--profile", "smoke", "--out", str(tmp_path / "m"), "--data-dir", str(data_root),
               "--run", str(run)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and str(run) in err[0]
    assert ("the run is failed, not finished" if case == "failed" else "made on other data") in err[0]
    assert not (tmp_path / "m").exists()


def test_train_final_run_check_compares_every_image(cohort, tmp_path):
    from osteo_helpers.model_card import run_evidence

    data_root = cohort[2].root
    profile = config.get_profile("smoke")
    run = tmp_path / "run"
    (run / "tables").mkdir(parents=True)
    (run / "tables" / "results_binary.csv").write_text(RESULTS.format(v=0.7))
    manifest = pd.DataFrame({"image_path": [p.relative_to(data_root).as_posix() for p in cohort[2].images.values()],
                             "image_sha256": "0" * 64})
    manifest.to_csv(run / "tables" / "manifest.csv", index=False)
    (run / "provenance.json").write_text(json.dumps({"profile": profile.to_dict(), "status": "finished",
                                                     "data": provenance.data_checksums(Cohort.open(None, data_root))}))
    with pytest.raises(errors.UsageError, match="made on other data"):
        run_evidence(run, profile, Cohort.open(None, data_root))


def test_train_final_run_check_reads_the_cohorts_own_table(cohort, tmp_path):
    """A cohort whose table is not the published spreadsheet (a CSV of an export): the run is checked against
    that table (it used to look for 'patient details.xlsx' in the cohort's folder and stop with exit 1)."""
    from osteo_helpers.model_card import run_evidence

    assert main(["cohort", "export", "--to", str(tmp_path / "export"), "--format", "png",
                 "--data-dir", str(cohort[2].root)]) == 0
    exported = Cohort.open(tmp_path / "export" / SPEC_NAME)
    profile = config.get_profile("smoke")
    run = tmp_path / "run"
    (run / "tables").mkdir(parents=True)
    (run / "tables" / "results_binary.csv").write_text(RESULTS.format(v=0.7))
    (run / "provenance.json").write_text(json.dumps({"profile": profile.to_dict(), "status": "finished",
                                                     "data": provenance.data_checksums(exported)}))
    assert run_evidence(run, profile, exported)["status"] == "finished"
    (exported.table_path).write_text(exported.table_path.read_text() + "\n")
    with pytest.raises(errors.UsageError, match="made on other data"):
        run_evidence(run, profile, exported)


def test_explanations_read_only_the_folds_of_the_latest_cross_validation(cohort, profile, tmp_path):
    from osteo_helpers import arms

    rows, folds, _ = cohort
    for used in (folds, folds[folds["seed"] == 5]):  # two repeats, then one: the second repeat's folds stay
        arms.cross_validate("clinical", rows, used, "binary", profile=profile, cache=tmp_path, progress_bar=False,
                            screening=False)
    assert len(list((tmp_path / "clinical" / "binary").glob("seed6_fold*/done.json"))) == 3
    fitted = arms.load_fold_arms(tmp_path, "clinical", "binary")
    assert [(a.seed_, a.fold_) for a in fitted] == [(5, 0), (5, 1), (5, 2)]


def test_a_cache_inside_a_cohorts_own_folder_is_refused(cohort, tmp_path, monkeypatch):
    """A cohort of its own (a CSV export, no published spreadsheet to recognise it by) is protected from a cache
    placed inside it: the cache folder is checked against the cohort being read."""
    from osteo_helpers.folders import CACHE_ENV_VAR
    from osteo_helpers.images import cohort_rows

    assert main(["cohort", "export", "--to", str(tmp_path / "export"), "--format", "png",
                 "--data-dir", str(cohort[2].root)]) == 0
    exported = Cohort.open(tmp_path / "export" / SPEC_NAME)
    monkeypatch.setenv(CACHE_ENV_VAR, str(tmp_path / "export" / "cache"))
    with pytest.raises(errors.UsageError, match="lies inside the dataset folder"):
        cohort_rows(exported, 32)
    assert not (tmp_path / "export" / "cache").exists()
