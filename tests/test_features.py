"""The frozen pretrained encoder's features: computed once per image and view, verified in the cache, and the
feature arms seen end to end from pixels (what Grad-CAM explains) give the arms' own predictions (issue 29)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from osteo_helpers import arms, config, explain, features
from osteo_helpers.features import FeatureRecipe, feature_matrix
from osteo_helpers.images import ImageCache
from osteo_helpers.tasks import TASKS

COUNTS = {"normal": 8, "osteopenia": 8, "osteoporosis": 8}
SIZE = 64


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, synth):
    return synth.make_dataset(tmp_path_factory.mktemp("features") / "knee-osteoporosis", counts=COUNTS, seed=6)


@pytest.fixture(scope="module")
def rows(dataset, synth, tmp_path_factory):
    return synth.model_rows(dataset, tmp_path_factory.mktemp("cache"), image_size=SIZE)


def test_features_are_computed_once_per_image_and_view_then_read_from_the_cache(rows, dataset, tmp_path, monkeypatch):
    calls = []
    original = features.encode
    monkeypatch.setattr(features, "encode", lambda images, *a, **k: calls.append(len(images)) or original(images, *a,
                                                                                                           **k))
    recipe = FeatureRecipe(size=SIZE)
    first = feature_matrix(rows, recipe, dataset.root, tmp_path)
    assert sum(calls) == 2 * len(rows) and first.shape == (len(rows), 1280) and first.dtype == np.float32
    calls.clear()
    again = feature_matrix(rows, recipe, dataset.root, tmp_path)
    assert calls == []
    np.testing.assert_array_equal(again, first)
    mirror = feature_matrix(rows, FeatureRecipe(size=SIZE, views=("mirror",)), dataset.root, tmp_path)
    image = feature_matrix(rows, FeatureRecipe(size=SIZE, views=("image",)), dataset.root, tmp_path)
    assert calls == []  # each view is its own cache entry: the two-view recipe made both
    np.testing.assert_allclose((image + mirror) / 2, first, rtol=1e-6)
    assert not np.allclose(image, mirror)


def test_an_edited_feature_entry_is_named_and_computed_again(rows, dataset, tmp_path, capsys):
    recipe = FeatureRecipe(size=SIZE, views=("image",))
    first = feature_matrix(rows, recipe, dataset.root, tmp_path)
    entry = tmp_path / "features" / features.view_key(recipe, "image") / f"{rows['image_sha256'].iloc[0]}.npy"
    np.save(entry, np.zeros(1280, np.float32))  # a valid array of the right shape: only the checksum tells
    capsys.readouterr()
    again = feature_matrix(rows, recipe, dataset.root, tmp_path)
    assert str(entry) in capsys.readouterr().out
    np.testing.assert_array_equal(again, first)


def test_the_cache_key_follows_the_encoder_weights(monkeypatch):
    recipe = FeatureRecipe(size=SIZE)
    key = features.view_key(recipe, "image")
    identity = dict(features.encoder_identity(recipe.encoder), weights_sha256="0" * 64)
    monkeypatch.setattr(features, "encoder_identity", lambda name: identity)
    assert features.view_key(recipe, "image") != key


@pytest.mark.parametrize("name", ["image", "fusion_concat"])
def test_a_feature_arm_seen_end_to_end_from_pixels_gives_its_own_predictions(name, rows, dataset, tmp_path):
    """Grad-CAM explains the network from pixels; it must be the fitted arm: the frozen encoder over the recipe's
    two views, the fold's transform and its head, as torch operations, reproduce the arm's probabilities (a
    review found the mirror view left out)."""
    profile = config.get_profile("smoke", feature_size=SIZE, feature_components=8, epochs=2, num_threads=1)
    recipe_rows = rows.assign(features=list(feature_matrix(rows, FeatureRecipe.of(profile), dataset.root, tmp_path)))
    train, test = recipe_rows.iloc[:18], recipe_rows.iloc[18:]
    arm = arms.make_arm(name, "binary", profile=profile).fit(train, TASKS["binary"].labels(train))
    arm.seed_, arm.fold_, arm.test_ids_ = 0, 0, list(test["patient_id"])
    fm = explain.fold_models([arm], device="cpu", pixels=True)[0]
    pixels = np.stack(ImageCache(tmp_path, SIZE).load_all(test, dataset.root, progress=False))
    x = explain.model_inputs(fm, pixels)
    tab = None if fm.preprocessor is None else torch.from_numpy(arm._tabular(test))
    with torch.no_grad():
        end_to_end = torch.softmax(fm.model(x, tab), dim=1)[:, 1].numpy()
    np.testing.assert_allclose(end_to_end, arm.predict_proba(test)[:, 1], atol=1e-5)
    cams = explain.oof_cams([fm], test.reset_index(drop=True), pixels)
    assert cams.shape == (len(test), SIZE, SIZE) and np.isfinite(cams).all() and cams.max() > 0


def test_explanations_of_people_with_several_images_are_per_person(rows, dataset, tmp_path):
    """Issue 28: where a person has two images, SHAP explains one image of each person (not a person twice), and
    permutation importance shuffles people and scores them as the out-of-fold tables do: each person's
    probability is the logistic of the mean logit of their images (its baseline is that AUROC, not the images')."""
    from sklearn.metrics import roc_auc_score

    profile = config.get_profile("smoke", feature_size=SIZE, feature_views="image", feature_components=8,
                                 epochs=2, num_threads=1)
    single = rows.assign(features=list(feature_matrix(rows, FeatureRecipe.of(profile), dataset.root, tmp_path)))
    rank = single.groupby("label_3class").cumcount().to_numpy()
    people = single.assign(person_id=single["label_3class"].astype(str) + "-" + (rank // 2).astype(str))
    fold, y = (rank // 2) % 2, TASKS["binary"].labels(people)
    fitted, logit = [], np.empty(len(people))
    for k in (0, 1):
        train, test = people[fold != k], people[fold == k]
        arm = arms.make_arm("fusion_concat", "binary", profile=profile).fit(train, y[fold != k])
        arm.seed_, arm.fold_, arm.test_ids_ = 0, k, list(test["patient_id"])
        p = arm.predict_proba(test)[:, 1]
        logit[fold == k] = np.log(p / (1 - p))
        fitted.append(arm)
    models = explain.fold_models(fitted, device="cpu")
    matrix = np.stack(people["features"])
    _, ids = explain.oof_shap(models, people, matrix, len(people), n_samples=60, n_background=5, seed=0)
    person = people.set_index("patient_id")["person_id"]
    assert len(ids) == people["person_id"].nunique() and person.loc[ids].is_unique
    perm = explain.oof_permutation_importance(models, people, matrix, y, n_repeats=1, seed=0)
    by_person = pd.DataFrame({"person": people["person_id"], "logit": logit, "y": y}).groupby("person")
    expected = roc_auc_score(by_person["y"].first(), by_person["logit"].mean())
    assert perm["baseline"].iloc[0] == pytest.approx(expected)
