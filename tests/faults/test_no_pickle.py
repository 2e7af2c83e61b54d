"""No pickle on the load path: arms are JSON, safetensors and skops; a planted pickle never runs (issue 21.2)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from osteo_helpers import arms
from osteo_helpers.arms import state
from osteo_helpers.bundle import Bundle
from osteo_helpers.errors import UsageError
from osteo_helpers.tasks import TASKS


def _cv(name, cohort, profile, cache):
    rows, folds, _ = cohort
    return arms.cross_validate(name, rows, folds[folds["seed"] == 5], "binary", profile=profile, cache=cache,
                               progress_bar=False, screening=False)


@pytest.mark.parametrize("name", ["clinical_full_tscore", "gbm", "batch_only", "pixel_1nn", "fusion", "roi_cnn"])
def test_a_saved_arm_predicts_what_it_did(name, cohort, profile, tmp_path):
    """Every kind of learned state: scikit-learn searches and trees, networks, a nested knee network."""
    rows = cohort[0]
    if name == "roi_cnn":  # two knee tiles per patient
        rows = rows.assign(roi_tiles=[np.stack([img, img[:, ::-1]]) for img in rows["image"]])
        profile = profile.with_overrides(roi_epochs=1)
    arm = arms.make_arm(name, "binary", profile=profile, target_sensitivity=0.9)
    if "progress" in arm.get_params():
        arm.set_params(progress=False)
    arm.fit(rows, TASKS[arm.task].labels(rows))
    sums = state.save_arm(arm, tmp_path)
    back = state.load_arm(tmp_path, sums)
    assert type(back) is type(arm) and back.get_params()["task"] == arm.task
    assert back.threshold_ == arm.threshold_
    np.testing.assert_array_equal(back.predict_proba(rows), arm.predict_proba(rows))


def test_a_planted_pickle_in_the_fold_cache_never_runs(cohort, profile, tmp_path, make, capsys):
    first = _cv("tabular", cohort, profile, tmp_path)
    marker = tmp_path / "marker"
    fold = tmp_path / "tabular" / "binary" / "seed5_fold0"
    make.planted_pickle(fold / "arm.pt", marker)  # where the older cache kept its pickled arm: never read
    pd.testing.assert_frame_equal(_cv("tabular", cohort, profile, tmp_path), first, check_exact=True)
    make.planted_pickle(fold / "arm.skops", marker)  # in place of a file the cache does read
    capsys.readouterr()
    again = _cv("tabular", cohort, profile, tmp_path)
    out = capsys.readouterr().out
    assert f"{fold / 'arm.skops'}: content changed" in out
    pd.testing.assert_frame_equal(again, first, check_exact=True)
    assert not marker.exists()


def test_an_old_pickled_fold_is_retrained_not_loaded(cohort, profile, tmp_path, make, capsys):
    first = _cv("clinical", cohort, profile, tmp_path)
    marker = tmp_path / "marker"
    fold = tmp_path / "clinical" / "binary" / "seed5_fold1"
    done = json.loads((fold / "done.json").read_text())
    for name in ("arm.json", "arm.skops"):
        (fold / name).unlink()
    make.planted_pickle(fold / "arm.pt", marker)
    (fold / "done.json").write_text(json.dumps({"fingerprint": done["fingerprint"], "arm": "clinical"}))  # format 1
    capsys.readouterr()
    again = _cv("clinical", cohort, profile, tmp_path)
    assert "an older cache format (pickled arm.pt), never loaded" in capsys.readouterr().out
    pd.testing.assert_frame_equal(again, first, check_exact=True)
    assert not marker.exists() and not (fold / "arm.pt").exists()  # the pickle is gone with the old fold


def test_a_planted_pickle_in_a_bundle_never_runs(saved_bundle, tmp_path, make):
    fitted, folder = saved_bundle
    marker = tmp_path / "marker"
    copy = shutil.copytree(folder, tmp_path / "model")
    make.planted_pickle(copy / "arms" / "clinical.pt", marker)  # the old file name: not read at all
    assert Bundle.load(copy).threshold == fitted.threshold
    make.planted_pickle(copy / "arms" / "clinical.skops", marker)
    with pytest.raises(UsageError, match="arms/clinical.skops: content changed"):
        Bundle.load(copy)
    assert not marker.exists()


def test_an_old_bundle_is_refused_with_how_to_rebuild_it(saved_bundle, tmp_path, make):
    _, folder = saved_bundle
    marker = tmp_path / "marker"
    old = tmp_path / "old"
    (old / "arms").mkdir(parents=True)
    facts = json.loads((folder / "bundle.json").read_text())
    (old / "bundle.json").write_text(json.dumps({**facts, "format": 1}))
    for name in ("fusion", "clinical", "fusion_tscore"):
        make.planted_pickle(old / "arms" / f"{name}.pt", marker)
    with pytest.raises(UsageError) as err:
        Bundle.load(old)
    assert "format-1 bundle (pickled arms)" in str(err.value) and "osteo train-final" in str(err.value)
    assert "\n" not in str(err.value) and not marker.exists()


def test_a_skops_file_naming_an_untrusted_type_is_refused_unread(saved_bundle, tmp_path, monkeypatch):
    _, folder = saved_bundle
    copy = shutil.copytree(folder, tmp_path / "model")
    monkeypatch.setattr(state, "TRUSTED_TYPES", frozenset())  # as if the file named types outside the list
    with pytest.raises(UsageError, match=r"arms/fusion.skops: names type\(s\) outside the trusted list"):
        Bundle.load(copy)
