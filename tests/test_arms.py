"""The arm protocol and the one cross-validation driver, on a small synthetic cohort.

The cohort is the synthetic dataset (30 patients, 40x32 px JPEGs) passed through the real
data path: load_clinical -> build_manifest -> modelling_table -> ImageCache at 32 px.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from osteo_helpers import arms, config, splits, tabular, training
from osteo_helpers.arms import foldcache
from osteo_helpers.arms.classical import ClassicalArm, LinearGaussian
from osteo_helpers.arms.networks import NetworkArm
from osteo_helpers.tasks import CLASSES_3, TASKS, who_probabilities

COUNTS = {"normal": 10, "osteopenia": 10, "osteoporosis": 10}
CLASSICAL = ("age", "ost", "clinical", "clinical_full", "image", "gbm", "batch_only", "pixel_1nn")
NETWORKS = ("tabular", "image_cnn", "fusion_concat", "fusion")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory, synth):
    root = tmp_path_factory.mktemp("arms") / "knee-osteoporosis"
    ds = synth.make_dataset(root, counts=COUNTS, seed=3, identical_images=(("N7", "OP7"),))
    rows = synth.model_rows(ds, tmp_path_factory.mktemp("cache"))
    folds = splits.make_folds(rows, "label_3class", 3, 2, seed=5)
    return rows, folds


@pytest.fixture
def profile():
    return config.get_profile("smoke", image_size=32, epochs=2, patience=1, batch_size=8, n_folds=3,
                              n_repeats=2, num_threads=1, seed=5)


def _cv(name, cohort, profile, cache, task="binary", **kw):
    rows, folds = cohort
    return arms.run_arm(name, rows, folds, task, profile=profile, cache=cache, progress_bar=False, **kw)


def test_unknown_arm_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown arm 'fusionn'.*known arms: age, age_tscore"):
        arms.make_arm("fusionn", "binary")
    with pytest.raises(ValueError, match="unknown arm 'gbm_tscore'"):
        arms.make_arm("gbm_tscore", "binary")


@pytest.mark.parametrize("name", CLASSICAL + NETWORKS + ("clinical_tscore", "fusion_tscore"))
def test_every_arm_gives_one_row_per_patient_and_seed_on_the_shared_folds(name, cohort, profile, tmp_path):
    rows, folds = cohort
    task = "3class" if name == "fusion_tscore" else "binary"
    oof = _cv(name, cohort, profile, tmp_path, task=task)
    classes = TASKS[task].classes
    probs = [f"prob_{c}" for c in classes]
    assert list(oof.columns[:4]) == ["patient_id", "fold", "seed", "y_true"]
    assert [c for c in oof.columns if c.startswith("prob_")] == probs
    np.testing.assert_allclose(oof[probs].sum(axis=1), 1.0, atol=1e-6)
    for _, part in oof.groupby("seed"):
        assert part["patient_id"].is_unique and set(part["patient_id"]) == set(rows["patient_id"])
    # tested in exactly the fold the shared folds assign, with the patient's own label
    merged = oof.merge(folds, on=["patient_id", "seed"], suffixes=("", "_shared"))
    assert len(merged) == len(oof) and (merged["fold"] == merged["fold_shared"]).all()
    truth = rows.set_index("patient_id")[TASKS[task].target]
    assert (oof["y_true"].to_numpy() == truth.loc[oof["patient_id"]].to_numpy()).all()
    if task == "binary":
        assert oof["threshold"].between(0, 1).all()


@pytest.fixture
def untrained(monkeypatch):
    """Network arms whose training returns the initialised network untouched."""
    monkeypatch.setattr(training.FoldTrainer, "fit", lambda self, model, fit, val, seed: (model, pd.DataFrame(
        {"epoch": [0], "train_loss": [np.nan], "val_loss": [np.nan], "best": [True]})))


def test_residual_fusion_at_initialisation_is_its_clinical_model(cohort, profile, untrained):
    rows, _ = cohort
    for task in ("binary", "3class"):
        y = TASKS[task].labels(rows)
        clinical = arms.make_arm("clinical", task).fit(rows, y)
        for name in ("fusion", "tabular"):
            net = arms.make_arm(name, task, profile=profile).fit(rows, y)
            np.testing.assert_allclose(net.predict_proba(rows), clinical.predict_proba(rows), atol=1e-6)
    t = TASKS["tscore"].labels(rows)
    clinical_t = arms.make_arm("clinical", "tscore").fit(rows, t)
    fusion_t = arms.make_arm("fusion", "tscore", profile=profile).fit(rows, t)
    for a, b in zip(fusion_t.predict_distribution(rows), clinical_t.predict_distribution(rows), strict=False):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(fusion_t.predict_proba(rows), clinical_t.predict_proba(rows), atol=1e-5)


def test_residual_correction_starts_at_zero_and_moves_with_training(cohort, profile, untrained):
    rows, _ = cohort
    y = TASKS["binary"].labels(rows)
    arm = arms.make_arm("fusion", "binary", profile=profile).fit(rows, y)
    last = arm.model_.correction[-1]
    assert torch.count_nonzero(last.weight) == 0 and torch.count_nonzero(last.bias) == 0
    net = arm.model_.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    inputs = arm._inputs(rows.iloc[:8])  # the image term reads the fold's transformed pretrained features
    loss = torch.nn.functional.cross_entropy(net(inputs.images, inputs.tabular), torch.tensor(y[:8]))
    loss.backward()
    opt.step()
    assert torch.count_nonzero(last.weight) > 0


def test_tscore_probabilities_follow_the_who_thresholds():
    mean = np.array([0.5, -1.0, -1.75, -2.5, -4.0])
    proba = who_probabilities(mean, np.full(5, 0.4))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    assert (proba >= 0).all()
    # the lower the mean T-score, the more mass moves from normal to osteoporosis
    assert np.all(np.diff(proba[:, 0]) < 0) and np.all(np.diff(proba[:, 2]) > 0)
    assert proba[0].argmax() == 0 and proba[2].argmax() == 1 and proba[4].argmax() == 2
    np.testing.assert_allclose(proba[1, 0], 0.5)  # T = -1 exactly: half normal
    with pytest.raises(ValueError):
        who_probabilities(mean, np.zeros(5))


def test_one_tscore_fit_serves_both_tasks(cohort, profile, tmp_path, monkeypatch):
    calls = []
    original = arms.Arm.fit
    monkeypatch.setattr(arms.Arm, "fit", lambda self, rows, y: calls.append((self.task, self.fixed_epochs))
                        or original(self, rows, y))
    binary = _cv("fusion_tscore", cohort, profile, tmp_path, task="binary")
    three = _cv("fusion_tscore", cohort, profile, tmp_path, task="3class")
    assert calls and {task for task, _ in calls} == {"tscore"}
    outer = [c for c in calls if c[1] is None]
    assert len(outer) == 6  # 3 folds x 2 repeats, fitted once for both tasks
    # and the threshold's inner fits: network_threshold_folds per fold, at the fold's chosen epochs
    assert len(calls) - len(outer) == 6 * profile.network_threshold_folds
    np.testing.assert_allclose(binary["prob_normal"], three["prob_normal"])
    np.testing.assert_allclose(binary["prob_low_bmd"], three[["prob_osteopenia", "prob_osteoporosis"]].sum(axis=1))


def test_no_matrix_reaching_an_arm_carries_the_t_or_z_score(cohort, profile, tmp_path, monkeypatch):
    seen: list[tuple[str, pd.DataFrame, object]] = []
    classes = {c for c in (ClassicalArm, NetworkArm, *arms.ARM_REGISTRY.values()) for c in c.__mro__
               if "_inputs" in c.__dict__}
    for cls in classes:
        original = cls.__dict__["_inputs"]

        def spy(self, r, *args, _original=original, **kwargs):
            out = _original(self, r, *args, **kwargs)
            seen.append((type(self).__name__, r[["t_score", "z_score"]].astype(float), out))
            return out

        monkeypatch.setattr(cls, "_inputs", spy)
    rows, folds = cohort
    one_repeat = folds[folds["seed"] == folds["seed"].min()]
    for name in CLASSICAL + NETWORKS + ("clinical_tscore", "fusion_tscore"):
        # without a screening threshold: its inner fits build their matrices with the same `_inputs`
        arms.run_arm(name, rows, one_repeat, "binary", profile=profile, cache=tmp_path / name, progress_bar=False,
                     screening=False)
    assert {n for n, _, _ in seen} >= {"AgeArm", "ClinicalArm", "ClinicalFullArm", "FusionArm", "TabularArm"}
    for name, targets, out in seen:
        if len(targets) < 15:  # predictions for a handful of inner-fold rows correlate with anything by chance
            continue
        if isinstance(out, pd.DataFrame):
            assert not [c for c in out.columns if tabular.is_forbidden(str(c))], name
            matrix = out.select_dtypes("number").to_numpy(float)
        elif hasattr(out, "tabular"):
            matrix = np.zeros((len(targets), 0)) if out.tabular is None else out.tabular.numpy()
        else:
            matrix = np.asarray(out, dtype=float)
        for col in matrix.reshape(len(targets), -1).T:
            known = np.isfinite(col)
            if known.sum() < len(col) // 2 or np.std(col[known]) == 0:  # sparse columns correlate by chance
                continue
            for target in targets:
                r = np.corrcoef(col[known], targets[target].to_numpy()[known])[0, 1]
                assert abs(r) < 0.999, f"{name} received a copy of {target}"


def _fit_count(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The folds trained (outer fits only: the threshold's inner fits run inside them)."""
    calls: list[str] = []
    original = arms.Arm.fit
    depth = [0]

    def fit(self: arms.Arm, rows: pd.DataFrame, y: np.ndarray) -> arms.Arm:
        if depth[0] == 0:
            calls.append(f"s{self.random_state // 1000} f{self.random_state % 1000}")
        depth[0] += 1
        try:
            return original(self, rows, y)
        finally:
            depth[0] -= 1

    monkeypatch.setattr(arms.Arm, "fit", fit)
    return calls


def test_resume_reuses_finished_folds_and_retrains_stale_ones(cohort, profile, tmp_path, monkeypatch):
    first = _cv("fusion", cohort, profile, tmp_path)
    folder = tmp_path / "fusion" / "binary"
    assert len(list(folder.glob("seed*_fold*/done.json"))) == 6
    calls = _fit_count(monkeypatch)
    second = _cv("fusion", cohort, profile, tmp_path)
    assert calls == []
    pd.testing.assert_frame_equal(first, second)
    # an interrupted fold, a stale fingerprint, a truncated prediction file and a corrupt model
    (folder / "seed5_fold1" / "done.json").unlink()
    done = folder / "seed5_fold2" / "done.json"
    done.write_text(json.dumps({**json.loads(done.read_text()), "fingerprint": "0" * 16}))
    pred = folder / "seed6_fold0" / "predictions.csv"
    pred.write_bytes(pred.read_bytes()[: len(pred.read_bytes()) // 2])
    (folder / "seed6_fold1" / "arm.safetensors").write_bytes(b"not a model")
    third = _cv("fusion", cohort, profile, tmp_path)
    assert sorted(calls) == ["s5 f1", "s5 f2", "s6 f0", "s6 f1"]
    pd.testing.assert_frame_equal(first, third)


def test_changed_settings_labels_or_data_retrain(cohort, profile, tmp_path, monkeypatch):
    """Every fold retrains when what determined it changes (a setting of the arm, the labels, a patient's
    image) and none when nothing did; on a quick arm (the fingerprint is computed alike for every arm)."""
    rows, folds = cohort
    y = np.random.default_rng(0).permutation(TASKS["binary"].labels(rows))
    changed = rows.copy()
    changed.loc[0, "image_sha256"] = "0" * 64  # another image for the first patient: every fold trains or tests on it
    changes = {
        "target_sensitivity": lambda: _cv("age", cohort, profile.with_overrides(target_sensitivity=0.8), tmp_path),
        "labels": lambda: _cv("age", cohort, profile, tmp_path, y=y),
        "image": lambda: arms.run_arm("age", changed, folds, "binary", profile=profile, cache=tmp_path,
                                      progress_bar=False),
    }
    calls = _fit_count(monkeypatch)
    for what, run_changed in changes.items():
        _cv("age", cohort, profile, tmp_path)  # the unchanged run's folds, current again
        calls.clear()
        _cv("age", cohort, profile, tmp_path)
        assert calls == [], f"folds retrained with nothing changed (before the {what} change)"
        run_changed()
        assert len(calls) == 6, what


def test_a_networks_training_settings_are_in_its_fold_fingerprint(cohort, profile):
    """No training: the fingerprint a network fold is saved under changes with each training setting, not
    with a setting of the evaluation."""
    rows, folds = cohort
    first = folds[(folds["seed"] == folds["seed"].min()) & (folds["fold"] == 0)]
    test = rows["patient_id"].isin(first["patient_id"]).to_numpy()
    y = TASKS["binary"].labels(rows)

    def key(p: config.Profile) -> str:
        return foldcache.fold_fingerprint(arms.make_arm("tabular", "binary", profile=p), rows, y, ~test, test)

    for change in ({"lr": 0.01}, {"epochs": 3}, {"batch_size": 4}, {"weight_decay": 0.1}):
        assert key(profile.with_overrides(**change)) != key(profile), change
    assert key(profile.with_overrides(n_boot=7)) == key(profile)


def test_same_seed_gives_identical_tables(cohort, profile, tmp_path):
    a = _cv("fusion_concat", cohort, profile, tmp_path / "a", task="3class")
    b = _cv("fusion_concat", cohort, profile, tmp_path / "b", task="3class")
    pd.testing.assert_frame_equal(a, b, check_exact=True)


def test_supports_leaves_out_rows_an_arm_cannot_score(cohort, profile, tmp_path):
    rows, folds = cohort
    bio = rows.assign(bio_texture=np.linspace(0, 1, len(rows)), biomarker_localised=np.arange(len(rows)) % 5 != 0)
    oof = arms.run_arm("biomarker", bio, folds, "binary", profile=profile, cache=tmp_path, progress_bar=False)
    assert set(oof["patient_id"]) == set(bio.loc[bio["biomarker_localised"], "patient_id"])


def test_class_names_and_three_class_labels(cohort, profile, tmp_path):
    oof = _cv("clinical", cohort, profile, tmp_path, task="3class")
    assert [c for c in oof.columns if c.startswith("prob_")] == [f"prob_{c}" for c in CLASSES_3]
    assert "threshold" not in oof.columns


def test_cache_check_names_the_file(tmp_path):
    table = pd.DataFrame({"patient_id": ["a", "b"], "prob_normal": [0.2, 1.5], "prob_low_bmd": [0.8, -0.5]})
    with pytest.raises(foldcache.FoldCacheError, match=r"predictions.csv: probabilities outside"):
        foldcache.check_predictions(table, {"a", "b"}, ["prob_normal", "prob_low_bmd"], tmp_path / "predictions.csv")
    with pytest.raises(foldcache.FoldCacheError, match="holds 2 of the 3 expected"):
        foldcache.check_predictions(table, {"a", "b", "c"}, ["prob_normal"], tmp_path / "predictions.csv")


def test_the_gaussian_head_lets_its_spread_depend_on_the_inputs():
    """A T-score whose spread grows with age (as in the cohort: residual SD about 0.2 in normals, 0.5
    in osteoporosis): one variance for everyone would be too wide for the young and too narrow for
    the old; the fitted log SD is linear in the inputs and covers 95% in both groups."""
    rng = np.random.default_rng(0)
    age = rng.uniform(20, 90, 4000)
    sd = np.exp(-2.0 + 0.025 * age)
    t = 1.0 - 0.04 * age + rng.normal(0, 1, 4000) * sd
    X = ((age - age.mean()) / age.std()).reshape(-1, 1)
    model = LinearGaussian().fit(X, t)
    mean, spread = model.predict_distribution(X).T
    np.testing.assert_allclose(spread, sd, rtol=0.1)
    covered = np.abs(t - mean) <= 1.96 * spread
    for group in (age < 40, age > 70):
        assert abs(covered[group].mean() - 0.95) < 0.02
    assert model.log_sd_coef_[0] > 0


def test_an_arm_the_cohort_cannot_fit_has_no_table_and_says_why(cohort, profile, tmp_path):
    """Issue 28: a cohort of age and sex only has no OST index (it needs the weight), one with a class column only
    no T-score model; such an arm is left out of the run, with the reason the report prints."""
    rows, folds = cohort
    plain = rows.drop(columns=["weight_kg"]).assign(t_score=np.nan)
    assert arms.why_not_fittable("ost", plain) == "the cohort has no weight"
    assert arms.why_not_fittable("clinical_tscore", plain) == "the cohort has no T-score"
    assert arms.why_not_fittable("clinical_tscore", rows) is None
    assert arms.fittable(["age", "ost", "clinical_tscore"], plain) == (
        ["age"], {"ost": "the cohort has no weight", "clinical_tscore": "the cohort has no T-score"})
    oofs = arms.run_arms_together(["age", "ost", "clinical_tscore"], plain, folds, "binary", profile=profile,
                                  cache=tmp_path, progress_bar=False)
    assert list(oofs) == ["age"]


def test_a_fold_whose_training_rows_hold_one_class_is_not_fitted(cohort, profile, tmp_path):
    """An arm that scores a few rows (the knees localised on a small cohort) may find one class in a fold's training
    rows: that fold is not fitted and its rows get no prediction, and with no fold to fit the table is empty."""
    rows, folds = cohort
    normal = rows["label_binary"].to_numpy() == 0
    lone = int(np.flatnonzero(~normal)[0])  # the one low-BMD patient with a localised knee
    bio = rows.assign(bio_texture=np.linspace(0, 1, len(rows)),
                      biomarker_localised=normal | (np.arange(len(rows)) == lone))
    oof = arms.run_arm("biomarker", bio, folds, "binary", profile=profile, cache=tmp_path, progress_bar=False,
                       screening=False)
    held_out = folds[folds["patient_id"] == rows["patient_id"].iloc[lone]][["seed", "fold"]]
    assert rows["patient_id"].iloc[lone] not in set(oof["patient_id"])  # its test folds had one class to train on
    assert not oof.merge(held_out).size and set(oof["patient_id"]) <= set(rows.loc[normal, "patient_id"])
    empty = arms.run_arm("biomarker", bio.assign(biomarker_localised=normal), folds, "binary", profile=profile,
                         cache=tmp_path / "none", progress_bar=False, screening=False)
    assert empty.empty and list(empty.columns) == ["patient_id", "fold", "seed", "y_true", "prob_normal",
                                                   "prob_low_bmd"]


def test_labels_are_permuted_among_people_and_rows_keyed_as_the_tables_are():
    from osteo_helpers.arms.persons import permutation_by_person, person_key, person_rows

    rows = pd.DataFrame({"patient_id": ["a1", "a2", "b1", "c1", "c2", "c3", "d1"],
                         "person_id": ["A", "A", "B", "C", "C", "C", "D"], "age_years": [50, 50, 60, 70, 70, 70, 40]})
    y = np.array([1, 1, 0, 2, 2, 2, 0])
    for seed in range(5):
        perm = y[permutation_by_person(rows, np.random.default_rng(seed))]
        by_person = pd.Series(perm).groupby(rows["person_id"].to_numpy()).nunique()
        assert (by_person == 1).all() and sorted(pd.Series(perm).groupby(rows["person_id"]).first()) == [0, 0, 1, 2]
    single = rows.drop_duplicates("person_id").reset_index(drop=True)
    np.testing.assert_array_equal(permutation_by_person(single, np.random.default_rng(3)),
                                  np.random.default_rng(3).permutation(4))  # draw for draw as before
    assert list(person_key(rows)) == list(rows["person_id"]) and list(person_key(single)) == ["a1", "b1", "c1", "d1"]
    assert list(person_rows(rows)["patient_id"]) == ["A", "B", "C", "D"] and person_rows(single) is single


def test_a_profile_that_fine_tunes_trains_the_pretrained_encoder_on_the_pixels(cohort, profile):
    """The GPU profile's option (issue 29): with ``finetune_blocks`` the fusion reads the pixels through the
    pretrained encoder, only its last stages and the head train, and the features are not read at all."""
    rows, _ = cohort
    tuned = profile.with_overrides(finetune_blocks=1, epochs=1, network_threshold_folds=2)
    arm = arms.make_arm("fusion", "binary", profile=tuned)
    assert arm.image_input == "finetune"
    assert arms.make_arm("fusion", "binary", profile=profile).image_input == "features"
    y = TASKS["binary"].labels(rows)
    fitted = arm.fit(rows.drop(columns=["features"]), y)
    encoder = fitted.model_.image_encoder
    assert type(encoder).__name__ == "LiteEncoder" and encoder.out_dim == 1280
    frozen = {id(p) for m in encoder.frozen for p in m.parameters()}
    assert frozen and all(not p.requires_grad for p in encoder.parameters() if id(p) in frozen)
    assert fitted.predict_proba(rows.drop(columns=["features"])).shape == (len(rows), 2)


def test_the_fold_fingerprint_follows_the_features_and_covers_every_training_module(cohort, profile):
    """A fold fitted on the frozen encoder's features is reused only while they are the same vectors: a new
    pooling, encoder, torch or feature code changes them while the image checksums stay (a review found the
    fingerprint blind to them, and `models.py` listed after it had become a package)."""
    rows, folds = cohort
    test = rows["patient_id"].isin(folds[(folds["seed"] == folds["seed"].min()) & (folds["fold"] == 0)]["patient_id"])
    y = TASKS["binary"].labels(rows)
    arm = arms.make_arm("image", "binary", profile=profile)
    key = foldcache.fold_fingerprint(arm, rows, y, ~test.to_numpy(), test.to_numpy())
    ones = rows.assign(features=[np.ones_like(f) for f in rows["features"]])
    assert foldcache.fold_fingerprint(arm, ones, y, ~test.to_numpy(), test.to_numpy()) != key
    root = foldcache.Path(foldcache.__file__).resolve().parents[1]
    assert all((root / name).exists() for name in foldcache.TRAINING_MODULES)
    with pytest.raises(FileNotFoundError, match="update TRAINING_MODULES"):
        foldcache.code_version(("no_such_module.py",))


def test_a_folds_data_digest_depends_on_its_rows_alone_in_any_order(cohort):
    """`DataFingerprint` hashes the table once for every fold of a plan: a fold's digest is that of its own rows
    (the others, and the table's order, do not enter), and any change to one of those rows changes it."""
    rows, _ = cohort
    some = np.flatnonzero(np.arange(len(rows)) % 3 != 0)
    digest = foldcache.DataFingerprint(rows).of(some)
    alone = rows.iloc[some].sample(frac=1.0, random_state=0).reset_index(drop=True)
    assert foldcache.DataFingerprint(alone).of(np.arange(len(alone))) == digest
    others = rows.assign(age_years=np.where(np.arange(len(rows)) % 3 == 0, 99.0, rows["age_years"]))
    assert foldcache.DataFingerprint(others).of(some) == digest
    changed = rows.assign(age_years=np.where(np.arange(len(rows)) == some[0], 99.0, rows["age_years"]))
    assert foldcache.DataFingerprint(changed).of(some) != digest
    vectors = rows.assign(features=[f + (k == some[-1]) for k, f in enumerate(rows["features"])])
    assert foldcache.DataFingerprint(vectors).of(some) != digest
