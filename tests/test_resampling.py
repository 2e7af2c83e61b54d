"""Tests for the group bootstrap: groups are never split, strata are kept, singletons reduce
to the patient bootstrap, and group CIs of duplicated data equal patient CIs of the originals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from osteo_helpers import evaluation as ev

# Ten patients in six groups: g0 (3 x class 0), g1 (2 x class 1), g2 mixed (class 0 and 1),
# and three singletons. Group labels interleave, as split_group does in a cohort table.
Y_G = np.array([0, 1, 0, 1, 0, 0, 1, 1, 0, 1])
G_G = np.array(["g0", "g1", "g0", "g1", "g0", "s0", "s1", "g2", "g2", "s2"])


def _all_resamples(y: np.ndarray, groups: np.ndarray | None, n_boot: int, seed: int = 0) -> list[np.ndarray]:
    return [row for batch in ev.bootstrap_indices(y, n_boot, seed, groups, cells_per_row=1) for row in batch]


def _counts(resamples: list[np.ndarray], n: int) -> np.ndarray:
    """(n_resamples, n_patients) multiplicity of every patient in every resample."""
    return np.stack([np.bincount(r, minlength=n) for r in resamples])


def test_group_bootstrap_never_splits_a_group() -> None:
    resamples = _all_resamples(Y_G, G_G, n_boot=500, seed=3)
    assert len(resamples) == 500
    counts = _counts(resamples, len(Y_G))
    for label in np.unique(G_G):
        members = counts[:, G_G == label]
        # All members of a group appear equally often (0 = none of them).
        assert (members == members[:, :1]).all(), label
    # Groups of size 3 and 2 were drawn at least once somewhere (the check above is not vacuous).
    assert (counts[:, G_G == "g0"] > 0).any() and (counts[:, G_G == "g1"] > 0).any()


def test_group_bootstrap_keeps_group_count_per_stratum() -> None:
    counts = _counts(_all_resamples(Y_G, G_G, n_boot=400, seed=1), len(Y_G))
    first = {label: np.flatnonzero(G_G == label)[0] for label in np.unique(G_G)}
    draws = {label: counts[:, i] for label, i in first.items()}
    # Stratum 0: g0, s0 ; stratum 1: g1, s1, s2 ; mixed: g2 alone, so it is drawn exactly once.
    np.testing.assert_array_equal(draws["g0"] + draws["s0"], 2)
    np.testing.assert_array_equal(draws["g1"] + draws["s1"] + draws["s2"], 3)
    np.testing.assert_array_equal(draws["g2"], 1)


def test_group_bootstrap_resample_sizes_follow_drawn_groups() -> None:
    batches = list(ev.bootstrap_indices(Y_G, 300, 0, G_G))
    assert sum(len(b) for b in batches) == 300
    sizes = {b.shape[1] for b in batches}
    assert len(sizes) == len(batches) > 1  # one batch per distinct resample size
    # Stratum 0 draws 2 groups of size 3 or 1, stratum 1 draws 3 of size 2 or 1, the mixed group adds 2.
    assert min(sizes) >= 2 + 3 + 2 and max(sizes) <= 6 + 6 + 2


def test_singleton_groups_reduce_to_the_patient_bootstrap() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 60)
    plain = np.concatenate(list(ev.bootstrap_indices(y, 300, 5)))
    singletons = np.concatenate(list(ev.bootstrap_indices(y, 300, 5, groups=[f"id{i}" for i in range(60)])))
    np.testing.assert_array_equal(plain, singletons)


def test_patient_bootstrap_multiplicities_are_multinomial_within_class() -> None:
    y = np.array([0] * 8 + [1] * 4)
    counts = _counts(_all_resamples(y, np.arange(12), n_boot=4000, seed=2), len(y))
    np.testing.assert_array_equal(counts[:, :8].sum(axis=1), 8)
    np.testing.assert_array_equal(counts[:, 8:].sum(axis=1), 4)
    # Binomial(n_c, 1/n_c): mean 1, variance 1 - 1/n_c; 4000 resamples give SE ~ 0.016 / 0.03.
    np.testing.assert_allclose(counts.mean(axis=0), 1.0, atol=0.07)
    np.testing.assert_allclose(counts[:, :8].var(axis=0), 1 - 1 / 8, atol=0.15)
    np.testing.assert_allclose(counts[:, 8:].var(axis=0), 1 - 1 / 4, atol=0.15)


def test_unstratified_group_bootstrap_draws_all_groups_from_one_pool() -> None:
    counts = _counts(_all_resamples(Y_G, G_G, n_boot=300, seed=0), len(Y_G))
    free = [r for b in ev.bootstrap_indices(Y_G, 300, 0, G_G, stratify=False) for r in b]
    free_counts = _counts(free, len(Y_G))
    first = [np.flatnonzero(G_G == label)[0] for label in np.unique(G_G)]
    np.testing.assert_array_equal(free_counts[:, first].sum(axis=1), 6)  # six groups per resample
    assert not np.all(free_counts[:, 7] == 1)  # the mixed group is no longer pinned
    assert np.all(counts[:, 7] == 1)


def test_groups_must_be_aligned_and_complete() -> None:
    with pytest.raises(ValueError, match="one label per patient"):
        next(ev.bootstrap_indices(Y_G, 10, 0, G_G[:-1]))
    with pytest.raises(ValueError, match="missing"):
        next(ev.bootstrap_indices(Y_G, 10, 0, np.where(G_G == "s0", None, G_G)))


# --------------------------------------------------------------------------- CIs on duplicated data


def _triplicated(n: int = 90, seed: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels and scores, and the same cohort with every patient present three times."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1], n // 2)
    score = np.clip(0.3 * y + 0.7 * rng.random(n), 0.01, 0.99)
    return y, score, np.tile(y, 3), np.tile(score, 3)


def test_group_bootstrap_of_duplicates_equals_patient_bootstrap_of_originals() -> None:
    """Each duplicate set is one group, so the group bootstrap draws exactly what the patient
    bootstrap draws on the de-duplicated cohort; the naive patient bootstrap is far too narrow."""
    y, s, y3, s3 = _triplicated()
    groups = np.tile(np.arange(len(y)), 3)
    proba, proba3 = np.c_[1 - s, s], np.c_[1 - s3, s3]
    original = ev.bootstrap_metrics(y, proba, ["n", "l"], n_boot=400, seed=1).set_index("metric")
    grouped = ev.bootstrap_metrics(y3, proba3, ["n", "l"], n_boot=400, seed=1, groups=groups).set_index("metric")
    naive = ev.bootstrap_metrics(y3, proba3, ["n", "l"], n_boot=400, seed=1).set_index("metric")
    rates = ["auroc", "auprc", "sensitivity", "specificity", "ppv", "npv"]
    pd.testing.assert_frame_equal(grouped.loc[rates], original.loc[rates])
    width = (original["ci_high"] - original["ci_low"]).loc["auroc"]
    assert (naive["ci_high"] - naive["ci_low"]).loc["auroc"] < 0.75 * width


def test_group_paired_difference_regression_and_calibration_on_duplicates() -> None:
    y, s, y3, s3 = _triplicated()
    rng = np.random.default_rng(9)
    other = rng.random(len(y))
    other3 = np.tile(other, 3)
    groups = np.tile(np.arange(len(y)), 3)
    a = ev.paired_bootstrap_difference(y, s, other, n_boot=300, seed=2)
    b = ev.paired_bootstrap_difference(y3, s3, other3, n_boot=300, seed=2, groups=groups)
    assert a == pytest.approx(b)
    t = s + rng.normal(0, 0.2, len(y))
    ra = ev.regression_metrics(s, t, n_boot=300, seed=2)
    rb = ev.regression_metrics(s3, np.tile(t, 3), n_boot=300, seed=2, groups=groups)
    pd.testing.assert_frame_equal(ra, rb)
    ca = ev.calibration_metrics(y, s, n_boot=200, seed=2)
    cb = ev.calibration_metrics(y3, s3, n_boot=200, seed=2, groups=groups)
    pd.testing.assert_frame_equal(ca, cb, rtol=1e-6)
    da = ev.decision_curve(y, s, n_boot=200, seed=2)
    db = ev.decision_curve(y3, s3, n_boot=200, seed=2, groups=groups)
    pd.testing.assert_frame_equal(da, db)


def test_group_bootstrap_confusion_scales_with_duplicates() -> None:
    y, s, y3, s3 = _triplicated()
    groups = np.tile(np.arange(len(y)), 3)
    one = ev.bootstrap_confusion(y, (s >= 0.5).astype(int), 2, n_boot=300, seed=0)
    three = ev.bootstrap_confusion(y3, (s3 >= 0.5).astype(int), 2, n_boot=300, seed=0, groups=groups)
    np.testing.assert_allclose(three[["count", "ci_low", "ci_high"]], 3 * one[["count", "ci_low", "ci_high"]])


# --------------------------------------------------------------------------- OOF tables


def _oof_with_repeats(y: np.ndarray, s: np.ndarray, ids: list[str]) -> pd.DataFrame:
    return pd.DataFrame({"patient_id": ids * 2, "seed": np.repeat([0, 1], len(ids)), "y_true": np.tile(y, 2),
                         "prob_normal": np.tile(1 - s, 2), "prob_low_bmd": np.tile(s, 2), "threshold": 0.5})


def test_oof_metrics_accepts_mapping_series_or_row_aligned_groups() -> None:
    y, s, y3, s3 = _triplicated(n=60)
    ids = [f"p{i:03d}" for i in range(len(y3))]  # sorted order = row order
    oof = _oof_with_repeats(y3, s3, ids)
    group_of = {pid: f"g{i % len(y)}" for i, pid in enumerate(ids)}
    by_dict = ev.oof_metrics(oof, n_boot=200, seed=0, groups=group_of)
    by_series = ev.oof_metrics(oof, n_boot=200, seed=0, groups=pd.Series(group_of))
    by_rows = ev.oof_metrics(oof, n_boot=200, seed=0, groups=oof["patient_id"].map(group_of).to_numpy())
    pd.testing.assert_frame_equal(by_dict, by_series)
    pd.testing.assert_frame_equal(by_dict, by_rows)
    # And it is the patient bootstrap of the de-duplicated cohort.
    original = ev.oof_metrics(_oof_with_repeats(y, s, ids[: len(y)]), n_boot=200, seed=0)
    invariant = ~original["metric"].isin(["tp", "fp", "tn", "fn"])  # counts triple, rates do not
    assert {"auroc", "brier", "calibration_slope"} <= set(original.loc[invariant, "metric"])
    pd.testing.assert_frame_equal(by_dict[invariant], original[invariant], rtol=1e-6)
    op = ev.operating_point(oof, n_boot=200, seed=0, groups=group_of)
    op_original = ev.operating_point(_oof_with_repeats(y, s, ids[: len(y)]), n_boot=200, seed=0)
    pd.testing.assert_frame_equal(op, op_original)


def test_oof_metrics_rejects_incomplete_or_inconsistent_groups() -> None:
    y, s, *_ = _triplicated(n=20)
    ids = [f"p{i}" for i in range(len(y))]
    oof = _oof_with_repeats(y, s, ids)
    with pytest.raises(ValueError, match="p3"):
        ev.oof_metrics(oof, n_boot=50, groups={pid: "g" for pid in ids if pid != "p3"})
    rows = np.array([f"g{i}" for i in range(len(oof))])  # p0's two rows carry two groups
    with pytest.raises(ValueError, match="more than one group"):
        ev.oof_metrics(oof, n_boot=50, groups=rows)
