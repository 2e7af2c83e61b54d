"""Files are used only when their content is verified: fold caches, the image cache, bundles (issue 21.1).

The silent-result faults of the audit: each damaged file is named, and the result is the one the
undamaged files give (a fold or image rebuilt), or the bundle is refused.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from osteo_helpers import arms
from osteo_helpers.arms import foldcache
from osteo_helpers.bundle import Bundle, seal
from osteo_helpers.errors import UsageError
from osteo_helpers.images import ImageCache


def _cv(name, cohort, profile, cache, task="binary"):
    """One repeat of three folds, without the screening threshold's inner fits (quick)."""
    rows, folds, _ = cohort
    return arms.cross_validate(name, rows, folds[folds["seed"] == 5], task, profile=profile, cache=cache,
                               progress_bar=False, screening=False)


def test_an_edited_cached_prediction_is_named_and_the_fold_rebuilt(cohort, profile, tmp_path, capsys):
    first = _cv("clinical", cohort, profile, tmp_path)
    pred = tmp_path / "clinical" / "binary" / "seed5_fold0" / "predictions.csv"
    table = pd.read_csv(pred, dtype={"patient_id": str})
    table.loc[0, "prob_low_bmd"], table.loc[0, "prob_normal"] = 0.05, 0.95  # valid, plausible, wrong
    table.to_csv(pred, index=False)
    capsys.readouterr()
    again = _cv("clinical", cohort, profile, tmp_path)
    notes = [line for line in capsys.readouterr().out.splitlines() if "retraining" in line]
    assert len(notes) == 1 and str(pred) in notes[0] and "SHA-256 mismatch" in notes[0]
    pd.testing.assert_frame_equal(again, first, check_exact=True)


def test_every_cached_file_of_a_fold_is_checked(cohort, profile, tmp_path, capsys):
    first = _cv("tabular", cohort, profile, tmp_path)
    folder = tmp_path / "tabular" / "binary"
    for damaged in (["seed5_fold0/arm.json", "seed5_fold1/arm.safetensors", "seed5_fold2/arm.skops"],
                    ["seed5_fold1/history.csv"]):
        for rel in damaged:
            data = bytearray((folder / rel).read_bytes())
            data[len(data) // 2] ^= 0xFF
            (folder / rel).write_bytes(bytes(data))
        capsys.readouterr()
        again = _cv("tabular", cohort, profile, tmp_path)
        notes = [line for line in capsys.readouterr().out.splitlines() if "retraining" in line]
        assert len(notes) == len(damaged) and all(str(folder / rel) in line for rel, line in zip(damaged, notes,
                                                                                                  strict=True)), notes
        pd.testing.assert_frame_equal(again, first, check_exact=True)


def test_zeroed_image_cache_entries_are_named_and_decoded_again(cohort, tmp_path, capsys):
    rows, _, ds = cohort
    cache = ImageCache(tmp_path, 32)
    original = cache.load_all(rows, ds.root, progress=False)
    zeroed = [cache.path_for(sha) for sha in rows["image_sha256"][:6]]
    for path in zeroed:  # still valid .npy files of the right shape: only the checksum tells
        np.save(path, np.zeros((32, 32), np.uint8))
    capsys.readouterr()
    again = ImageCache(tmp_path, 32).load_all(rows, ds.root, progress=False)
    notes = capsys.readouterr().out.splitlines()
    assert len(notes) == 6 and all(str(p) in line and "SHA-256" in line for p, line in zip(zeroed, notes, strict=True))
    np.testing.assert_array_equal(again, original)
    capsys.readouterr()
    ImageCache(tmp_path, 32).load_all(rows, ds.root, progress=False)
    assert capsys.readouterr().out == ""  # rebuilt entries are recorded anew


def test_flipped_bytes_in_a_bundle_tensor_stop_loading_naming_the_file(saved_bundle, tmp_path):
    _, folder = saved_bundle
    copy = shutil.copytree(folder, tmp_path / "model")
    tensors = copy / "arms" / "fusion.safetensors"
    data = bytearray(tensors.read_bytes())
    for i in range(len(data) - 400, len(data)):  # weights, not the header: the file still parses
        data[i] ^= 0x7F
    tensors.write_bytes(bytes(data))
    with pytest.raises(UsageError) as err:
        Bundle.load(copy)
    assert "arms/fusion.safetensors: content changed" in str(err.value) and "\n" not in str(err.value)


def test_an_edited_bundle_json_is_refused(saved_bundle, tmp_path):
    _, folder = saved_bundle
    copy = shutil.copytree(folder, tmp_path / "model")
    facts = json.loads((copy / "bundle.json").read_text())
    facts["screening"]["threshold"] = 0.01  # everyone screen-positive, and no file is damaged
    (copy / "bundle.json").write_text(json.dumps(facts))
    with pytest.raises(UsageError, match="bundle.json: content changed since it was written"):
        Bundle.load(copy)
    facts["seal"] = seal(facts)  # a consistent edit is a bundle of another threshold: it loads
    (copy / "bundle.json").write_text(json.dumps(facts))
    assert Bundle.load(copy).threshold == 0.01


def test_explanations_and_histories_read_only_verified_files(cohort, profile, tmp_path):
    _cv("fusion", cohort, profile, tmp_path)
    fitted = arms.load_fold_arms(tmp_path, "fusion", "binary", seed=5)
    assert len(fitted) == 3 and all(a.fold_ == k and a.test_ids_ for k, a in enumerate(fitted))
    assert len(arms.load_histories(tmp_path, "fusion", "binary")) > 0
    history = tmp_path / "fusion" / "binary" / "seed5_fold2" / "history.csv"
    history.write_text(history.read_text().replace("0.", "9.", 1))
    with pytest.raises(foldcache.FoldCacheError, match="history.csv: content changed"):
        arms.load_histories(tmp_path, "fusion", "binary")
    model = tmp_path / "fusion" / "binary" / "seed5_fold0" / "arm.safetensors"
    model.write_bytes(model.read_bytes()[:-8])
    with pytest.raises(foldcache.FoldCacheError, match="arm.safetensors: content changed"):
        arms.load_fold_arms(tmp_path, "fusion", "binary", seed=5)


def test_a_results_table_is_reused_only_when_its_inputs_and_bytes_are_the_recorded_ones(cohort, tmp_path,
                                                                                          monkeypatch):
    """Notebooks 3, 4 and 5 read the same bootstrap tables: the later ones reuse the saved file only
    when it is provably current, and recompute it (to the same numbers) when it was edited."""
    from osteo_helpers import evaluation
    from osteo_helpers.study import RUN_ID_ENV, Study

    monkeypatch.setenv(RUN_ID_ENV, "test")
    settings = dict(image_size=32, n_folds=3, n_repeats=1, n_boot=20, num_threads=1, seed=5)
    names = ("age", "clinical")
    first = Study.open("smoke", tmp_path / "run", cohort[2].root, **settings).results("binary", names)
    score_arms = evaluation.score_arms

    def refused(*args, **kwargs):
        raise AssertionError("recomputed a table that was current")

    monkeypatch.setattr(evaluation, "score_arms", refused)
    pd.testing.assert_frame_equal(Study.open("smoke", tmp_path / "run", cohort[2].root, **settings)
                                  .results("binary", names), first, check_exact=True, check_dtype=False)
    table = tmp_path / "run" / "tables" / "results_binary.csv"
    table.write_text(table.read_text().replace("0.", "0.9", 1))  # a plausible, wrong number
    with pytest.raises(AssertionError, match="recomputed"):
        Study.open("smoke", tmp_path / "run", cohort[2].root, **settings).results("binary", names)
    monkeypatch.setattr(evaluation, "score_arms", score_arms)
    pd.testing.assert_frame_equal(Study.open("smoke", tmp_path / "run", cohort[2].root, **settings)
                                  .results("binary", names), first, check_exact=True, check_dtype=False)
    with pytest.raises(AssertionError, match="recomputed"):  # other settings: other inputs
        monkeypatch.setattr(evaluation, "score_arms", refused)
        Study.open("smoke", tmp_path / "run", cohort[2].root, **{**settings, "n_boot": 30}).results("binary", names)
