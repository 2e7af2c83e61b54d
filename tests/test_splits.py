"""Tests for osteo_helpers.splits: grouped, stratified, repeated folds."""

from __future__ import annotations

import pandas as pd
import pytest

from osteo_helpers import splits


def _cohort(n_per_class: int = 12, groups: dict[str, list[str]] | None = None) -> pd.DataFrame:
    """Patients N/OP/OS 1..n; `groups` gives patients that share one split_group (identical images)."""
    rows = []
    for label, prefix in enumerate(("N", "OP", "OS")):
        for k in range(1, n_per_class + 1):
            rows.append({"patient_id": f"{prefix}{k}", "label_3class": label, "label_binary": int(label > 0)})
    cohort = pd.DataFrame(rows)
    cohort["split_group"] = cohort["patient_id"]
    for name, members in (groups or {}).items():
        cohort.loc[cohort["patient_id"].isin(members), "split_group"] = name
    return cohort


GROUPS = {"dup00": ["N1", "OP1"], "dup01": ["OP2", "OS2", "OS3"], "dup02": ["N5", "N6"],
          "dup03": ["OP7", "OP8", "OP9", "OS9"], "dup04": ["N10", "OS12"]}


@pytest.mark.parametrize("n_folds,n_repeats", [(3, 2), (5, 1)])
def test_grouped_folds_keep_groups_together(n_folds, n_repeats):
    cohort = _cohort(groups=GROUPS)
    folds = splits.make_folds(cohort, "label_3class", n_folds, n_repeats, seed=7)
    assert set(folds.columns) >= {"patient_id", "seed", "fold"}
    assert sorted(folds["seed"].unique()) == list(range(7, 7 + n_repeats))
    merged = folds.merge(cohort, on="patient_id")
    for (seed, group), part in merged.groupby(["seed", "split_group"]):
        assert part["fold"].nunique() == 1, (seed, group, part[["patient_id", "fold"]].to_dict("records"))
    assert splits.check_group_integrity(folds, cohort) == []
    # identical images are never split across training and test
    for _seed, _fold, test_ids in splits.iter_folds(folds):
        train_ids = set(cohort["patient_id"]) - test_ids
        test_groups = set(cohort.loc[cohort["patient_id"].isin(test_ids), "split_group"])
        train_groups = set(cohort.loc[cohort["patient_id"].isin(train_ids), "split_group"])
        assert not test_groups & train_groups


def test_folds_and_inner_splits_do_not_depend_on_how_ids_are_spelled_or_rows_ordered():
    """Folds follow the split groups' content (their images' pixel checksums; the record where a row has no
    image), not their names: a pseudonymised copy (every ID hashed) with its rows shuffled gets the same folds,
    the same early-stopping split and the same inner folds of clinical_full."""
    import hashlib

    import numpy as np

    from osteo_helpers.arms.classical import _grouped_cv

    cohort = _cohort(groups=GROUPS)
    cohort["pixel_sha256"] = [hashlib.sha256(f"pixels of {pid}".encode()).hexdigest() for pid in cohort["patient_id"]]
    cohort.loc[cohort["patient_id"] == "OS11", "pixel_sha256"] = None  # no image: its record orders it
    cohort["age_years"] = np.arange(len(cohort)) * 0.7 + 40
    hashed = {pid: hashlib.sha256(pid.encode()).hexdigest()[:10] for pid in cohort["patient_id"]}
    renamed = cohort.assign(patient_id=cohort["patient_id"].map(hashed),
                            split_group=cohort["split_group"].map(lambda g: f"G{hashlib.md5(g.encode()).hexdigest()}"))
    renamed = renamed.sample(frac=1.0, random_state=3).reset_index(drop=True)
    back = {v: k for k, v in hashed.items()}
    for n_folds, n_repeats in ((3, 2), (5, 1)):
        a = splits.make_folds(cohort, "label_3class", n_folds, n_repeats, seed=7)
        b = splits.make_folds(renamed, "label_3class", n_folds, n_repeats, seed=7)
        b = b.assign(patient_id=b["patient_id"].map(back)).sort_values(["seed", "fold", "patient_id"])
        pd.testing.assert_frame_equal(a, b.reset_index(drop=True))
    for table in (cohort, renamed):  # positions -> the patients they hold, compared by original ID
        ids = table["patient_id"].map(lambda x: back.get(x, x)).to_numpy()
        fit, val = splits.inner_split(table, "label_3class", 0.2, seed=5)
        strata = table["label_3class"].to_numpy()
        inner = [(sorted(ids[tr]), sorted(ids[te])) for tr, te in _grouped_cv(table, 5, strata)]
        if table is cohort:
            expected = (sorted(ids[fit]), sorted(ids[val]), inner)
        else:
            assert (sorted(ids[fit]), sorted(ids[val]), inner) == expected


def test_every_patient_once_per_repeat():
    cohort = _cohort(groups=GROUPS)
    folds = splits.make_folds(cohort, "label_3class", 4, 3, seed=1)
    assert len(folds) == 3 * len(cohort)
    for _seed, part in folds.groupby("seed"):
        assert part["patient_id"].is_unique
        assert set(part["patient_id"]) == set(cohort["patient_id"])
        assert sorted(part["fold"].unique()) == [0, 1, 2, 3]
    # different repeats shuffle differently
    a = folds[folds["seed"] == 1].set_index("patient_id")["fold"]
    b = folds[folds["seed"] == 2].set_index("patient_id")["fold"].loc[a.index]
    assert (a != b).any()


def test_folds_are_reproducible():
    cohort = _cohort(groups=GROUPS)
    first = splits.make_folds(cohort, "label_3class", 3, 2, 5)
    pd.testing.assert_frame_equal(first, splits.make_folds(cohort.copy(), "label_3class", 3, 2, 5))
    other = splits.make_folds(cohort, "label_3class", 3, 2, 50)
    assert not first.drop(columns="seed").equals(other.drop(columns="seed"))


@pytest.mark.parametrize("label", ["label_3class", "label_binary"])
def test_stratification_keeps_every_class_in_every_fold(label):
    cohort = _cohort(groups=GROUPS)
    folds = splits.make_folds(cohort, label, 4, 2, seed=3)
    merged = folds.merge(cohort, on="patient_id")
    overall = cohort[label].value_counts(normalize=True)
    for (seed, fold), part in merged.groupby(["seed", "fold"]):
        assert set(part[label]) == set(cohort[label]), (seed, fold)
        share = part[label].value_counts(normalize=True)
        assert (abs(share - overall) < 0.25).all()


def test_naive_folds_can_split_a_group():
    # a group of 10 patients cannot fit in one naive fold of 4 patients: it must be split
    big = [f"N{k}" for k in range(1, 5)] + [f"OP{k}" for k in range(1, 4)] + [f"OS{k}" for k in range(1, 4)]
    cohort = _cohort(n_per_class=8, groups={"dup00": big})
    naive = splits.make_folds(cohort, "label_3class", 6, 1, seed=0, group=None)
    assert naive["patient_id"].is_unique and len(naive) == len(cohort)
    assert splits.check_group_integrity(naive, cohort) == ["dup00"]
    grouped = splits.make_folds(cohort, "label_3class", 6, 1, seed=0)
    assert splits.check_group_integrity(grouped, cohort) == []


def test_inner_split_is_grouped_and_disjoint():
    cohort = _cohort(groups=GROUPS)
    fit_idx, val_idx = splits.inner_split(cohort, "label_3class", 0.2, seed=11)
    assert len(set(fit_idx) & set(val_idx)) == 0
    assert len(fit_idx) + len(val_idx) == len(cohort)
    assert 0.1 < len(val_idx) / len(cohort) < 0.35
    fit_groups = set(cohort.iloc[fit_idx]["split_group"])
    val_groups = set(cohort.iloc[val_idx]["split_group"])
    assert not fit_groups & val_groups
    assert set(cohort.iloc[val_idx]["label_3class"]) == {0, 1, 2}


def test_inner_split_of_a_few_rows_makes_as_many_folds_as_they_allow():
    """Early stopping of an arm fitted on a few rows (the localised knees of a small cohort): 3 and 2 rows of two
    classes cannot fill 5 stratified groups (1 / 0.2); the split uses as many as the largest class and the groups
    allow, and both parts hold rows."""
    cohort = _cohort(n_per_class=3).query("label_3class < 2").iloc[:5].reset_index(drop=True)
    fit_idx, val_idx = splits.inner_split(cohort, "label_3class", 0.2, seed=11)
    assert len(fit_idx) and len(val_idx) and sorted([*fit_idx, *val_idx]) == list(range(5))


def test_iter_folds_order():
    cohort = _cohort()
    folds = splits.make_folds(cohort, "label_3class", 3, 2, seed=0)
    keys = [(s, f) for s, f, _ in splits.iter_folds(folds)]
    assert keys == sorted(keys) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    ids = [ids for _, _, ids in splits.iter_folds(folds)]
    assert set().union(*ids[:3]) == set(cohort["patient_id"])


def test_folds_keep_one_person_together_across_image_and_clinical_duplicates(synthetic_dataset_factory):
    """N2 = OP4 by image bytes and OP4 = OP5 by clinical record (OP5 re-entered): one fold in every repeat."""
    from osteo_helpers import data

    def re_enter(rows):
        by_id = {r["Patient Id"]: r for r in rows}
        rows[rows.index(by_id["OP5"])] = dict(by_id["OP4"], **{"S.No": by_id["OP5"]["S.No"], "Patient Id": "OP5"})

    ds = synthetic_dataset_factory("chain", edit_rows=re_enter, identical_images=(("N2", "OP4"),),
                                   counts={"normal": 10, "osteopenia": 10, "osteoporosis": 10})
    clin = data.load_clinical(ds.spreadsheet)
    cohort = data.modelling_table(data.build_manifest(ds.root, clin), clin)
    folds = splits.make_folds(cohort, "label_3class", 5, 3, seed=0)
    assert splits.check_group_integrity(folds, cohort) == []
    for seed, part in folds.groupby("seed"):
        assert part.set_index("patient_id").loc[["N2", "OP4", "OP5"], "fold"].nunique() == 1, seed


@pytest.mark.parametrize("seed", range(12))
def test_the_vectorised_splitter_makes_scikit_learns_folds(seed):
    """Same test folds as scikit-learn's StratifiedGroupKFold on cohorts like the study's: three or two
    unbalanced classes, many singletons and some groups, shuffled or not."""
    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold

    rng = np.random.default_rng(seed)
    n = int(rng.integers(40, 240))
    y = rng.choice(3 if seed % 2 else 2, size=n, p=[0.15, 0.45, 0.4] if seed % 2 else [0.2, 0.8])
    groups = np.where(rng.random(n) < 0.15, rng.integers(0, 12, size=n), np.arange(100, 100 + n))
    for k in (2, 3, 5):
        for shuffle in (True, False):
            kwargs = dict(n_splits=k, shuffle=shuffle, random_state=seed if shuffle else None)
            ours = [t.tolist() for _, t in splits.StratifiedGroupKFold(**kwargs).split(np.zeros(n), y, groups)]
            theirs = [t.tolist() for _, t in StratifiedGroupKFold(**kwargs).split(np.zeros(n), y, groups)]
            assert ours == theirs, (k, shuffle)


def test_groups_linked_by_one_picture_under_other_bytes_share_a_label():
    """Group A holds pictures w and x, group B a re-encoded x: both are one person, whichever picture is
    the smaller, so they get one label (and share a fold); group C stays apart."""
    rows = pd.DataFrame({"split_group": ["A", "A", "B", "C"], "pixel_sha256": ["w", "x", "x", "z"]})
    assert splits.group_keys(rows).tolist() == ["w", "w", "w", "z"]
