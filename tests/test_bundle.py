"""The saved model bundle: train-final, load, predict, the model card and every bad input.

Most tests share one bundle fitted on a small synthetic cohort (30 patients, 32 px); one test
fits the smoke profile on the real data and checks that `predict` on two real patients gives
what the in-memory model gives.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from osteo_helpers import bundle as bundle_mod
from osteo_helpers import config
from osteo_helpers import train_final as train_final_mod
from osteo_helpers.bundle import Bundle
from osteo_helpers.cli import main
from osteo_helpers.errors import UsageError
from osteo_helpers.model_card import calibration_facts, model_card, run_evidence
from osteo_helpers.patients import batch_patients
from osteo_helpers.study import Study
from osteo_helpers.tabular import INPUT_FEATURES
from osteo_helpers.train_final import train_final
from tests.conftest import BUNDLE_SETTINGS as SETTINGS  # the shared bundle's settings
from tests.conftest import TOY_SETTINGS

OUTPUT_COLUMNS = ["patient_id", "p_low_bmd", "p_low_bmd_clinical", "p_normal", "p_osteopenia", "p_osteoporosis",
                  "t_score_mean", "t_score_low", "t_score_high", "screen_positive", "warnings"]


@pytest.fixture(scope="module")
def env(bundle_env):
    """The shared bundle's image cache and no progress bars for the module."""
    return bundle_env


@pytest.fixture(scope="module")
def dataset(synthetic_bundle):
    return synthetic_bundle.dataset


@pytest.fixture(scope="module")
def fitted(synthetic_bundle, env):
    """(the bundle as fitted in memory, its folder): the session's shared bundle (conftest)."""
    return synthetic_bundle.bundle, synthetic_bundle.folder


def _sets() -> list[str]:
    return [arg for k, v in SETTINGS.items() for arg in ("--set", f"{k}={v}")]


def _predict(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(["predict", *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ----------------------------------------------------------------------------- the bundle


def test_bundle_holds_arms_facts_and_card(fitted, dataset):
    bundle, folder = fitted
    assert sorted(p.name for p in folder.iterdir()) == ["MODEL_CARD.md", "arms", "bundle.json"]
    assert sorted(p.name for p in (folder / "arms").iterdir()) == [
        "clinical.json", "clinical.skops", "fusion.json", "fusion.safetensors", "fusion.skops", "fusion_tscore.json",
        "fusion_tscore.safetensors", "fusion_tscore.skops"]
    facts = json.loads((folder / "bundle.json").read_text())
    assert facts["profile"]["name"] == "smoke" and facts["profile"]["image_size"] == 32
    assert facts["classes"] == {"binary": ["normal", "low_bmd"], "3class": ["normal", "osteopenia", "osteoporosis"]}
    assert 0 < facts["screening"]["threshold"] < 1
    assert facts["screening"]["threshold"] == bundle.arms["fusion"].threshold_
    assert facts["screening"]["target_sensitivity"] == 0.9
    assert {a: f["task"] for a, f in facts["arms"].items()} == {"fusion": "binary", "clinical": "binary",
                                                               "fusion_tscore": "tscore"}
    assert facts["inputs"]["used"] == ["age_years", "sex"]
    ages = [r["Age"] for r in dataset.rows]
    assert facts["training_ranges"]["numeric"]["age_years"] == [min(ages), max(ages)]
    assert facts["training_ranges"]["categories"]["sex"] == ["female", "male"]
    assert set(facts["training_ranges"]["numeric"]) | set(facts["training_ranges"]["categories"]) == set(INPUT_FEATURES)
    from osteo_helpers.fileio import sha256_file

    assert facts["data"]["spreadsheet_sha256"] == sha256_file(dataset.spreadsheet)
    assert facts["data"]["images_sha256"] == sorted({sha256_file(p) for p in dataset.images.values()})
    named = {pid for pid in dataset.patient_ids if f'"{pid}"' in (folder / "bundle.json").read_text()}
    assert not named  # a shared bundle lists no patient ID in clear (their salted digests only)
    assert len(facts["data"]["person_id_sha256"]) == len(dataset.patient_ids)
    assert facts["data"]["matches_published_dataset"] is False  # synthetic files
    assert {"osteo_helpers", "torch", "scikit-learn", "numpy"} <= set(facts["versions"])
    assert facts["git"]["commit"]
    assert facts["calibration"]["calibration_intercept"] is None and "not measured" in facts["calibration"]["source"]
    assert "all patients" in facts["training"]
    low, high = facts["clinical_equation_ages"]  # where both classes were seen: the equation's range
    card = (folder / "MODEL_CARD.md").read_text()
    assert f"It holds for ages {low:g} to {high:g} only" in card
    assert card == model_card(facts)
    for words in ("not a medical device", "smoke profile: the numbers mean nothing", "Calibration intercept not "
                  "measured", "QUS", "No external validation", "Duplicates", "Spectrum bias", "Prevalence",
                  f"p_low_bmd >= {facts['screening']['threshold']:.4f}", "age band, sex"):
        assert words in card, words


def test_loaded_bundle_predicts_what_the_fitted_one_did(fitted, dataset, env):
    bundle, folder = fitted
    loaded = Bundle.load(folder)
    rows = Study.open("smoke", folder.parent / "study", dataset.root, **SETTINGS).rows()
    np.testing.assert_allclose(loaded.predict(rows).drop(columns="screen_positive").to_numpy(float),
                               bundle.predict(rows).drop(columns="screen_positive").to_numpy(float), atol=1e-6)
    out = loaded.predict(rows)
    np.testing.assert_allclose(out[["p_normal", "p_osteopenia", "p_osteoporosis"]].sum(axis=1), 1.0, atol=1e-9)
    assert (out["t_score_low"] < out["t_score_mean"]).all() and (out["t_score_mean"] < out["t_score_high"]).all()
    assert (out["screen_positive"] == (out["p_low_bmd"] >= loaded.threshold)).all()
    assert not {"image", "split_group", "label_3class", "t_score"} & set(json.loads(
        (folder / "bundle.json").read_text())["self_check"]["input"])


def test_train_final_replaces_a_bundle_atomically(fitted, dataset, tmp_path, env, monkeypatch):
    _, folder = fitted
    target = tmp_path / "model"
    shutil.copytree(folder, target)
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}

    def crash(self, where):
        (where / "arms").mkdir(parents=True)
        (where / "arms" / "fusion.pt").write_bytes(b"half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(Bundle, "save", crash)
    with pytest.raises(RuntimeError, match="disk full"):
        train_final("smoke", target, dataset.root, SETTINGS, progress=False)
    assert {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]  # no building folder, no lock left behind


@pytest.mark.parametrize("where", ["inside", "occupied"])
def test_train_final_refuses_a_bad_folder_before_any_work(where, dataset, tmp_path, synth, capsys, monkeypatch):
    monkeypatch.setattr(train_final_mod, "fit_arms", lambda *a, **k: pytest.fail("trained before checking"))
    before = synth.snapshot(dataset.root)
    out = dataset.root / "model" if where == "inside" else tmp_path / "notes"
    if where == "occupied":
        out.mkdir()
        (out / "thesis.docx").write_text("mine")
    assert main(["train-final", "--profile", "smoke", "--out", str(out), "--data-dir", str(dataset.root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and str(out) in err[0]
    assert ("inside the dataset folder" if where == "inside" else "holds files but no model bundle") in err[0]
    assert synth.snapshot(dataset.root) == before


def test_a_second_writer_of_the_same_bundle_is_refused(dataset, tmp_path, capsys, monkeypatch):
    from osteo_helpers.folders import exclusive

    monkeypatch.setattr(train_final_mod, "fit_arms", lambda *a, **k: pytest.fail("trained under another writer"))
    with exclusive(tmp_path, command="osteo train-final (the first)", lock_name=".model.osteo-writer.lock"):
        assert main(["train-final", "--profile", "smoke", "--out", str(tmp_path / "model"),
                     "--data-dir", str(dataset.root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "being written by another run" in err[0] and "(the first)" in err[0]
    assert not (tmp_path / "model").exists()


def test_train_final_refuses_a_bad_set_value_and_a_run_of_other_settings(dataset, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(train_final_mod, "fit_arms", lambda *a, **k: pytest.fail("trained before checking"))
    base = ["train-final", "--profile", "smoke", "--out", str(tmp_path / "m"), "--data-dir", str(dataset.root)]
    assert main([*base, "--set", "epochs=zero"]) == 2
    assert "epochs" in capsys.readouterr().err
    run = tmp_path / "run"
    (run / "tables").mkdir(parents=True)
    (run / "tables" / "results_binary.csv").write_text("model,task,metric,value,ci_low,ci_high,subset,n_patients\n")
    (run / "provenance.json").write_text(json.dumps({"profile": config.get_profile("fast").to_dict(),
                                                     "status": "finished"}))
    assert main([*base, "--run", str(run)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "made with other training settings" in err[0] and str(run) in err[0]
    assert not (tmp_path / "m").exists()


def test_loading_checks_versions_and_the_self_check(fitted, tmp_path):
    _, folder = fitted
    for edit, message in [(lambda f: f["versions"].update({"scikit-learn": "0.1"}), "scikit-learn 0.1"),
                          (lambda f: f.update({"format": 99}), "bundle format 99"),
                          (lambda f: f.update({"format": 2}), "IDs in clear.*rebuild it with `osteo train-final"),
                          (lambda f: f["self_check"]["output"].update({"p_low_bmd": 0.5}), "self-check")]:
        copy = tmp_path / f"copy{len(list(tmp_path.iterdir()))}"
        shutil.copytree(folder, copy)
        facts = json.loads((copy / "bundle.json").read_text())
        edit(facts)
        facts["seal"] = bundle_mod.seal(facts)  # as a bundle saved by such a version would be
        (copy / "bundle.json").write_text(json.dumps(facts))
        with pytest.raises(UsageError, match=message) as err:
            Bundle.load(copy)
        assert "\n" not in str(err.value)
    damaged = tmp_path / "damaged"
    shutil.copytree(folder, damaged)
    (damaged / "arms" / "clinical.skops").write_bytes(b"not a skops file")
    with pytest.raises(UsageError, match=r"arms/clinical.skops: content changed"):
        Bundle.load(damaged)


# ----------------------------------------------------------------------------- predict


def test_predict_one_patient_prints_and_writes_the_table(fitted, dataset, tmp_path, capsys):
    _, folder = fitted
    out = tmp_path / "pred" / "one.csv"
    code, stdout, err = _predict(capsys, "--model", str(folder), "--image", str(dataset.images["OP3"]),
                                 "--age", "63", "--sex", "F", "--weight-kg", "250", "--smoker", "yes",
                                 "--occupation-group", "health", "--out", str(out))
    assert code == 0, err
    table = pd.read_csv(out, dtype={"patient_id": str}, keep_default_na=False)
    assert list(table.columns) == OUTPUT_COLUMNS
    assert table["patient_id"].tolist() == ["OP3"] and "OP3" in stdout and "p_low_bmd" in stdout
    warnings = table.loc[0, "warnings"]
    assert "weight_kg 250 outside the training range" in warnings
    assert ("occupation_group 'health' not seen in training" in warnings) == (
        "health" not in json.loads((folder / "bundle.json").read_text())["training_ranges"]["categories"][
            "occupation_group"])


def test_predict_batch_matches_images_by_id_and_equals_the_single_form(fitted, dataset, tmp_path, capsys):
    _, folder = fitted
    rows = pd.DataFrame({"patient_id": ["N2", "OS5"], "age_years": [48, 70], "sex": ["male", "female"],
                         "bmi": ["", "27.5"]})
    rows.to_csv(tmp_path / "rows.csv", index=False)
    code, _, err = _predict(capsys, "--model", str(folder), "--clinical", str(tmp_path / "rows.csv"),
                            "--images", str(dataset.root), "--out", str(tmp_path / "batch.csv"))
    assert code == 0, err
    batch = pd.read_csv(tmp_path / "batch.csv", dtype={"patient_id": str}).set_index("patient_id")
    code, _, err = _predict(capsys, "--model", str(folder), "--image", str(dataset.images["OS5"]), "--age", "70",
                            "--sex", "female", "--out", str(tmp_path / "single.csv"))
    single = pd.read_csv(tmp_path / "single.csv", dtype={"patient_id": str}).set_index("patient_id")
    numeric = OUTPUT_COLUMNS[1:-2]
    np.testing.assert_allclose(batch.loc[["OS5"], numeric].to_numpy(), single.loc[["OS5"], numeric].to_numpy())


def _bad_image(tmp_path: Path) -> Path:
    path = tmp_path / "broken.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    return path


@pytest.mark.parametrize("case", ["unreadable image", "missing age", "missing sex", "unknown sex", "non-numeric age",
                                  "ID without image", "not a bundle"])
def test_bad_input_is_one_line_naming_patient_and_field_exit_2(case, fitted, dataset, tmp_path, capsys):
    _, folder = fitted
    image = str(dataset.images["N1"])
    args = {"--model": str(folder), "--image": image, "--age": "60", "--sex": "female"}
    expect = ("N1", "")
    if case == "unreadable image":
        args["--image"] = str(_bad_image(tmp_path))
        expect = ("broken", "image")
    elif case == "missing age":
        del args["--age"]
        expect = ("N1", "age_years")
    elif case == "missing sex":
        del args["--sex"]
        expect = ("N1", "sex")
    elif case == "unknown sex":
        args["--sex"] = "x"
        expect = ("N1", "sex")
    elif case == "non-numeric age":
        args["--age"] = "sixty"
        expect = ("N1", "age_years")
    elif case == "ID without image":
        pd.DataFrame({"patient_id": ["N1", "NOBODY"], "age_years": [60, 61], "sex": ["female", "male"]}).to_csv(
            tmp_path / "rows.csv", index=False)
        del args["--image"], args["--age"], args["--sex"]
        args.update({"--clinical": str(tmp_path / "rows.csv"), "--images": str(dataset.root)})
        expect = ("NOBODY", "image")
    else:
        args["--model"] = str(tmp_path)
        expect = (str(tmp_path), "bundle")
    out = tmp_path / "out.csv"
    code, stdout, err = _predict(capsys, *[x for kv in args.items() for x in kv], "--out", str(out))
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith("error: ") and all(word in lines[0] for word in expect), lines[0]
    if case != "not a bundle":
        assert f"patient {expect[0]}: {expect[1]}" in lines[0]
    assert not out.exists() and stdout == ""


def test_a_batch_lists_every_bad_row_and_scores_none_unless_skip_bad(fitted, dataset, tmp_path, capsys):
    _, folder = fitted
    pd.DataFrame({"patient_id": ["N1", "N2", "N3", "GHOST", "N4"],
                  "age_years": ["60", "old", "", "50", "55"],
                  "sex": ["female", "female", "male", "male", "q"]}).to_csv(tmp_path / "rows.csv", index=False)
    argv = ["--model", str(folder), "--clinical", str(tmp_path / "rows.csv"), "--images", str(dataset.root),
            "--out", str(tmp_path / "out.csv")]
    code, stdout, err = _predict(capsys, *argv)
    lines = err.strip().splitlines()
    assert code == 2 and stdout == "" and not (tmp_path / "out.csv").exists()
    assert [line.split(":")[1].strip() for line in lines] == ["patient N2", "patient N3", "patient GHOST",
                                                              "patient N4"]
    code, stdout, err = _predict(capsys, *argv, "--skip-bad")
    skipped = err.strip().splitlines()
    assert code == 0 and len(skipped) == 4 and all(line.startswith("skipped: ") for line in skipped)
    assert pd.read_csv(tmp_path / "out.csv", dtype={"patient_id": str})["patient_id"].tolist() == ["N1"]


def test_a_clinical_file_with_an_unknown_column_is_refused(fitted, dataset, tmp_path, capsys):
    _, folder = fitted
    pd.DataFrame({"patient_id": ["N1"], "age_years": [60], "sex": ["f"], "t_score": [-2.0]}).to_csv(
        tmp_path / "rows.csv", index=False)
    code, _, err = _predict(capsys, "--model", str(folder), "--clinical", str(tmp_path / "rows.csv"),
                            "--images", str(dataset.root))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "t_score" in err and "rows.csv" in err


# ----------------------------------------------------------------------------- the model card with a run


def test_card_copies_the_run_metrics_calibration_and_subgroups(fitted, tmp_path):
    bundle, _ = fitted
    profile = config.get_profile("smoke", **SETTINGS)
    run = tmp_path / "run"
    (run / "tables").mkdir(parents=True)
    rows = []
    for model in ("fusion", "clinical", "fusion_tscore", "age"):
        for metric, value in [("auroc", 0.71), ("calibration_intercept", 0.12), ("calibration_slope", 0.93)]:
            rows.append([model, "binary", metric, value, value - 0.1, value + 0.1, "all", 30])
    columns = ["model", "task", "metric", "value", "ci_low", "ci_high", "subset", "n_patients"]
    pd.DataFrame(rows, columns=columns).to_csv(run / "tables" / "results_binary.csv", index=False)
    pd.DataFrame([["fusion", "binary", "auroc", 0.61, 0.5, 0.7, "age 35-45", 12]], columns=columns).to_csv(
        run / "tables" / "age_band_binary.csv", index=False)
    pd.DataFrame({"arm": ["fusion (residual)", "age"], "target sensitivity": ["0.90", "0.90"],
                  "sensitivity": ["0.880 [0.8–0.9]", "0.5"], "specificity": ["0.310 [0.2–0.4]", "0.5"]}).to_csv(
        run / "tables" / "operating_points_binary.csv", index=False)
    (run / "provenance.json").write_text(json.dumps({"run_id": "smoke-1", "profile": profile.to_dict(),
                                                     "git": {"commit": "abc"}, "status": "finished"}))
    evidence = run_evidence(run, profile)
    assert {r["model"] for r in evidence["results"]} == {"fusion", "clinical", "fusion_tscore"}
    card = model_card({**bundle.facts, "run": evidence, "calibration": calibration_facts(evidence, "fusion")})
    assert "Calibration intercept 0.120\u00a0[0.020,\u00a00.220], slope 0.930\u00a0[0.830,\u00a01.030]" in card
    assert "intercept above 0: risks under-estimated on average" in card
    assert "From run `smoke-1`" in card and "| age 35-45 | 12 | 0.610" in card
    assert "Not checked in the run: sex (sex_binary.csv absent)" in card
    assert "| fusion (residual) | 0.90 | 0.880 [0.8–0.9] | 0.310 [0.2–0.4] |" in card
    assert "| age |" not in card


# ----------------------------------------------------------------------------- the real data


@pytest.mark.realdata
def test_real_data_bundle_predicts_two_patients_as_the_in_memory_model(real_data_dir, tmp_path, capsys, env):
    """train-final on the real data (smoke at its smallest), then `predict` on two real patients from their files."""
    fitted = train_final("smoke", tmp_path / "model", real_data_dir, TOY_SETTINGS, progress=False)
    study = Study.open("smoke", tmp_path / "study", real_data_dir, **TOY_SETTINGS)  # the rows' features as fitted
    rows = study.rows()
    chosen = pd.concat([rows[rows["label_binary"] == 0].head(1), rows[rows["label_3class"] == 2].head(1)])
    pd.DataFrame({"patient_id": chosen["patient_id"], "age_years": chosen["age_years"], "sex": chosen["sex"]}).to_csv(
        tmp_path / "rows.csv", index=False)
    code, _, err = _predict(capsys, "--model", str(tmp_path / "model"), "--clinical", str(tmp_path / "rows.csv"),
                            "--images", str(real_data_dir), "--out", str(tmp_path / "p.csv"))
    assert code == 0, err
    got = pd.read_csv(tmp_path / "p.csv", dtype={"patient_id": str}).set_index("patient_id").loc[chosen["patient_id"]]
    expected = fitted.predict(chosen)
    for column in ("p_low_bmd", "p_low_bmd_clinical", "p_normal", "p_osteopenia", "p_osteoporosis", "t_score_mean"):
        np.testing.assert_allclose(got[column].to_numpy(), expected[column].to_numpy(), atol=1e-6, err_msg=column)
    assert (got["screen_positive"].to_numpy() == expected["screen_positive"].to_numpy()).all()
    facts = json.loads((tmp_path / "model" / "bundle.json").read_text())
    assert facts["cohort"]["patients"] == len(rows) and facts["data"]["matches_published_dataset"]
    # the image term of a smoke fit is close to zero, so compare the pixels `predict` feeds the encoder directly
    size = facts["inputs"]["image_size"]
    seen = batch_patients(tmp_path / "rows.csv", real_data_dir, ("age_years", "sex"), size)
    pixels = dict(zip(study.cohort["patient_id"], study.images(size, progress=False), strict=True))
    for patient, image in zip(seen, [pixels[pid] for pid in chosen["patient_id"]], strict=True):
        np.testing.assert_array_equal(patient.image, image)
