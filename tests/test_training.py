"""Tests for osteo_helpers.training: OOF tables, resume by fingerprint, determinism, permutation.

The cohort is the synthetic dataset (30 patients, 40x32 px JPEGs) passed through the real
data path: load_clinical -> build_manifest -> modelling_table -> ImageCache at 32 px.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from osteo_helpers import config, data, splits, training
from osteo_helpers.images import ImageCache

COUNTS = {"normal": 10, "osteopenia": 10, "osteoporosis": 10}


@pytest.fixture(scope="module")
def study(tmp_path_factory, synth):
    root = tmp_path_factory.mktemp("training") / "knee-osteoporosis"
    ds = synth.make_dataset(root, counts=COUNTS, seed=3, identical_images=(("N7", "OP7"),))
    clin = data.load_clinical(ds.spreadsheet)
    manifest = data.build_manifest(ds.root, clin)
    cohort = data.modelling_table(manifest, clin).reset_index(drop=True)
    images = ImageCache(tmp_path_factory.mktemp("cache"), 32).load_all(cohort, ds.root, progress=False)
    folds = splits.make_folds(cohort, "label_3class", 3, 1, seed=5)
    folds2 = splits.make_folds(cohort, "label_3class", 3, 2, seed=5)
    return {"cohort": cohort, "images": images, "folds": folds, "folds2": folds2}


@pytest.fixture
def profile():
    return config.get_profile("smoke", image_size=32, epochs=1, patience=1, batch_size=8, n_folds=3,
                              n_repeats=1, num_threads=1, seed=5)


def _cv(study, profile, out_dir, task="3class", mode="fusion", folds="folds", **kw):
    return training.cross_validate(study["cohort"], study[folds], task, mode, profile, out_dir,
                                   images=study["images"], progress=False, **kw)


def test_cohort_images_aligned(study):
    cohort, images = study["cohort"], study["images"]
    assert len(cohort) == 30 and images.shape == (30, 32, 32) and images.dtype == np.uint8
    # the identical images of N7 and OP7 share a split group, so one fold
    f = study["folds"].set_index("patient_id")["fold"]
    assert f["N7"] == f["OP7"]


@pytest.mark.parametrize("task,folds", [("binary", "folds2"), ("3class", "folds")])
def test_oof_table(study, profile, tmp_path, task, folds):
    oof = _cv(study, profile, tmp_path, task=task, folds=folds)
    seeds = sorted(study[folds]["seed"].unique())
    classes = training.TASKS[task].classes
    prob_cols = [f"prob_{c}" for c in classes]
    assert {"patient_id", "fold", "seed", "y_true", *prob_cols} <= set(oof.columns)
    assert not [c for c in oof.columns if c.startswith("prob_") and c not in prob_cols]
    np.testing.assert_allclose(oof[prob_cols].sum(axis=1), 1.0, atol=1e-5)
    assert ((oof[prob_cols] >= 0) & (oof[prob_cols] <= 1)).all().all()
    assert sorted(oof["seed"].unique()) == seeds
    cohort = study["cohort"]
    for seed, part in oof.groupby("seed"):
        assert part["patient_id"].is_unique
        assert set(part["patient_id"]) == set(cohort["patient_id"])
    # y_true is the patient's label; fold is the outer fold it was tested in
    target = training.TASKS[task].target
    truth = cohort.set_index("patient_id")[target]
    assert (oof["y_true"].to_numpy() == truth.loc[oof["patient_id"]].to_numpy()).all()
    merged = oof.merge(study[folds], on=["patient_id", "seed"], suffixes=("", "_expected"))
    assert len(merged) == len(oof) and (merged["fold"] == merged["fold_expected"]).all()
    if task == "binary":
        assert "threshold" in oof.columns and oof["threshold"].between(0, 1).all()
    # saved with the fold artefacts
    arm = tmp_path / f"fusion_{task}"
    saved = pd.read_csv(arm / "oof.csv", dtype={"patient_id": str})
    assert len(saved) == len(oof)
    assert len(list(arm.glob("seed*_fold*/done.json"))) == 3 * len(seeds)
    for fold_dir in arm.glob("seed*_fold*"):
        assert {"done.json", "predictions.csv", "history.csv", "model.pt"} <= {p.name for p in fold_dir.iterdir()}
        assert not list(fold_dir.glob("*.tmp"))


def test_image_only_mode(study, profile, tmp_path):
    oof = _cv(study, profile, tmp_path, task="binary", mode="image")
    assert len(oof) == 30 and (tmp_path / "image_binary" / "oof.csv").is_file()
    np.testing.assert_allclose(oof[["prob_normal", "prob_low_bmd"]].sum(axis=1), 1.0, atol=1e-5)


class _FitSpy:
    """Counts FoldTrainer.fit calls (and which folds they were for) while calling the real method."""

    def __init__(self, monkeypatch):
        self.calls: list[str] = []
        original = training.FoldTrainer.fit

        def fit(trainer, *args, **kwargs):
            self.calls.append(kwargs.get("desc", ""))
            return original(trainer, *args, **kwargs)

        monkeypatch.setattr(training.FoldTrainer, "fit", fit)


def test_resume_retrains_only_the_unfinished_fold(study, profile, tmp_path, monkeypatch):
    spy = _FitSpy(monkeypatch)
    first = _cv(study, profile, tmp_path)
    assert len(spy.calls) == 3
    arm = tmp_path / "fusion_3class"
    reused = {d.name: (d / "predictions.csv").read_bytes() for d in arm.glob("seed*_fold*") if d.name != "seed5_fold1"}
    reused_mtime = {name: (arm / name / "model.pt").stat().st_mtime_ns for name in reused}
    (arm / "seed5_fold1" / "done.json").unlink()  # interrupted before fold 1 finished

    spy.calls.clear()
    second = _cv(study, profile, tmp_path)
    assert len(spy.calls) == 1 and "f1" in spy.calls[0]
    assert (arm / "seed5_fold1" / "done.json").is_file()
    for name, payload in reused.items():
        assert (arm / name / "predictions.csv").read_bytes() == payload
        assert (arm / name / "model.pt").stat().st_mtime_ns == reused_mtime[name]
    # reused folds give the predictions of the first run
    key = ["seed", "fold", "patient_id"]
    a = first.sort_values(key).reset_index(drop=True)
    b = second.sort_values(key).reset_index(drop=True)
    assert (a[key] == b[key]).all().all()
    prob = [c for c in a.columns if c.startswith("prob_")]
    kept = a["fold"] != 1
    np.testing.assert_allclose(b.loc[kept, prob].to_numpy(), a.loc[kept, prob].to_numpy(), atol=1e-6)
    assert (a["y_true"] == b["y_true"]).all()

    # nothing left to do: a third run trains nothing
    spy.calls.clear()
    _cv(study, profile, tmp_path)
    assert spy.calls == []

    # a fold whose done.json carries another fingerprint is stale: retrained, the others kept
    done = arm / "seed5_fold2" / "done.json"
    done.write_text(json.dumps({**json.loads(done.read_text()), "fingerprint": "0" * 16}))
    spy.calls.clear()
    _cv(study, profile, tmp_path)
    assert len(spy.calls) == 1 and "f2" in spy.calls[0]


def test_changed_profile_or_task_retrains_every_fold(study, profile, tmp_path, monkeypatch):
    _cv(study, profile, tmp_path, arm="arm")
    spy = _FitSpy(monkeypatch)
    changed = profile.with_overrides(lr=0.01)
    _cv(study, changed, tmp_path, arm="arm")
    assert len(spy.calls) == 3
    spy.calls.clear()
    _cv(study, changed, tmp_path, arm="arm")  # now up to date again
    assert spy.calls == []
    _cv(study, changed, tmp_path, arm="arm", task="binary")  # same folder, another task
    assert len(spy.calls) == 3


def test_custom_feature_subset(study, profile, tmp_path):
    """`features=` restricts the clinical inputs; the preprocessor must use that list too."""
    features = ("age_years", "bmi", "sex")
    oof = _cv(study, profile, tmp_path, task="binary", mode="tabular", features=features)
    assert len(oof) == 30
    with pytest.raises(Exception, match="t_score|label"):
        _cv(study, profile, tmp_path / "leak", task="binary", mode="tabular", features=("age_years", "t_score"))


def test_same_seed_gives_identical_oof(study, profile, tmp_path):
    a = _cv(study, profile, tmp_path / "run1")
    b = _cv(study, profile, tmp_path / "run2")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    saved_a = (tmp_path / "run1" / "fusion_3class" / "oof.csv").read_bytes()
    assert saved_a == (tmp_path / "run2" / "fusion_3class" / "oof.csv").read_bytes()


def test_permute_labels(study, profile, tmp_path, monkeypatch):
    perm = _cv(study, profile, tmp_path, task="binary", mode="image", permute_labels=True)
    truth = study["cohort"].set_index("patient_id")["label_binary"]
    shuffled = perm["y_true"].to_numpy() != truth.loc[perm["patient_id"]].to_numpy()
    assert shuffled.any()
    # the same labels, in another order, for the same patients
    assert sorted(perm["y_true"]) == sorted(truth)
    assert set(perm["patient_id"]) == set(truth.index)
    # a permuted run is a different experiment: it never reuses the unpermuted folds
    spy = _FitSpy(monkeypatch)
    _cv(study, profile, tmp_path, task="binary", mode="image")
    assert len(spy.calls) == 3
