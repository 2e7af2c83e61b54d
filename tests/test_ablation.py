"""Tests of osteo_helpers.ablation: the declared comparisons, the permutation null, the sensitivity
subsets, and the `ablation` command end to end.

Most tests use synthetic tables (no images); the command runs on the small synthetic dataset.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from osteo_helpers import ablation, arms, config, evaluation, splits
from osteo_helpers.tabular import BOOLEAN_FEATURES, ost_index

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def make_cohort(n: int, seed: int = 0, age_effect: float = 0.0) -> pd.DataFrame:
    """A modelling table with every clinical input; age predicts the label with strength age_effect."""
    rng = np.random.default_rng(seed)
    age = rng.uniform(40, 85, n)
    logit = age_effect * (age - 62) / 10 + rng.normal(0, 1, n)
    label = (logit > np.quantile(logit, 0.4)).astype(int)
    three = np.where(label == 0, 0, np.where(rng.random(n) < 0.5, 1, 2))
    c = pd.DataFrame({
        "patient_id": [f"P{i:04d}" for i in range(n)], "label_binary": label, "label_3class": three,
        "split_group": [f"G{i:04d}" for i in range(n)], "age_years": age,
        "height_m": rng.uniform(1.45, 1.85, n), "weight_kg": rng.uniform(45, 100, n),
        "max_walking_km": rng.uniform(0, 5, n), "menopause_age_years": np.where(rng.random(n) < 0.3, np.nan, 48.0),
        "years_since_menopause": np.where(rng.random(n) < 0.3, np.nan, 10.0),
        "pregnancies": rng.integers(0, 5, n).astype(float),
        "sex": rng.choice(["female", "male"], n), "occupation_group": rng.choice(["a", "b", "c"], n),
        "fracture_site": rng.choice(["none", "arm"], n),
        "batch": rng.choice(["rgb-1k", "gray-2k+"], n), "mode": "L", "width": 1024.0, "height": 1024.0,
    })
    c["bmi"] = c["weight_kg"] / c["height_m"] ** 2
    for f in BOOLEAN_FEATURES:
        c[f] = rng.integers(0, 2, n).astype(float)
    return c


@pytest.fixture
def profile():
    return config.get_profile("smoke", n_folds=3, n_repeats=1, n_boot=100, seed=7, num_threads=1, batch_size=16,
                              patience=1, epochs=1, image_size=32)


def _auroc(oof: pd.DataFrame) -> float:
    avg = evaluation.average_over_repeats(oof)
    return roc_auc_score(avg["y_true"], avg[evaluation.prob_columns(oof)[1]])


def _fake_oofs(n: int = 120, seed: int = 0) -> dict[str, pd.DataFrame]:
    """OOF tables of the declared arms with known strengths: fusion = clinical + a little, age weaker."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    signal = y + rng.normal(0, 1.0, n)
    scores = {"clinical": signal, "fusion": signal + rng.normal(0, 0.05, n), "age": y + rng.normal(0, 2.0, n),
              "ost": rng.normal(0, 1, n), "fusion_tscore": signal, "clinical_tscore": signal,
              "fusion_concat": rng.normal(0, 1, n), "tabular": signal, "clinical_full": signal}
    out = {}
    for name, s in scores.items():
        p = 1 / (1 + np.exp(-s))
        out[name] = pd.DataFrame({"patient_id": [f"P{i}" for i in range(n)], "fold": 0, "seed": 0, "y_true": y,
                                  "prob_normal": 1 - p, "prob_low_bmd": p})
    return out


def test_ost_arm_reads_weight_and_age():
    c = make_cohort(40)
    np.testing.assert_allclose(arms.make_arm("ost", "binary")._inputs(c)[:, 0],
                               0.2 * (c["weight_kg"] - c["age_years"]))
    np.testing.assert_allclose(ost_index(c["weight_kg"], c["age_years"]), 0.2 * (c["weight_kg"] - c["age_years"]))


def test_age_arm_ranks_patients_by_age_within_each_fold(profile):
    c = make_cohort(90, age_effect=2.0)
    folds = splits.make_folds(c, "label_3class", 3, 1, seed=1)
    oof = arms.run_arm("age", c, folds, "binary", profile=profile)
    for _, part in oof.groupby("fold"):
        ages = c.set_index("patient_id").loc[part["patient_id"], "age_years"].to_numpy()
        order = np.argsort(ages)
        probs = part["prob_low_bmd"].to_numpy()[order]
        assert np.all(np.diff(probs) >= 0) or np.all(np.diff(probs) <= 0)
    assert _auroc(oof) > 0.8


def test_declared_comparisons_mark_the_primary_and_adjust_only_the_secondary_family():
    oofs = _fake_oofs()
    table = ablation.declared_comparisons({"binary": oofs}, n_boot=500, seed=0)  # resolution 2 x 7 / 501 < 0.05
    primary = table[table["role"] == "primary"]
    assert len(primary) == 1 and tuple(primary[["model_a", "model_b"]].iloc[0]) == ablation.PRIMARY
    assert (primary["p_holm"] == primary["p_bootstrap"]).all()
    secondary = table[table["role"] == "secondary"]
    assert len(secondary) == len(ablation.SECONDARY)
    np.testing.assert_allclose(secondary["p_holm"], evaluation.holm(secondary["p_bootstrap"].to_numpy()))
    assert (secondary["p_holm"] >= secondary["p_bootstrap"] - 1e-12).all()
    strong = table[(table.model_a == "clinical") & (table.model_b == "ost")].iloc[0]
    assert strong["ci_low"] > 0 and "better" in strong["conclusion"]
    assert {"fold_diff_mean", "folds_a_better", "folds_b_better", "folds_tied", "n_folds"} <= set(table.columns)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_verdict_never_contradicts_p_holm(seed):
    oofs = _fake_oofs(200, seed)
    oofs["clinical_full"] = oofs["clinical"].assign(prob_low_bmd=oofs["age"]["prob_low_bmd"] ** 0.9,
                                                    prob_normal=1 - oofs["age"]["prob_low_bmd"] ** 0.9)
    table = ablation.declared_comparisons({"binary": oofs}, n_boot=300, seed=0)
    for row in table.itertuples():
        claims = " is better than " in row.conclusion or " is worse than " in row.conclusion
        if row.role == "secondary":
            assert claims == (row.p_holm < 0.05), row
            assert "Holm-adjusted p" in row.conclusion
        else:
            assert claims == (row.ci_low > 0 or row.ci_high < 0), row
    assert (table["p_holm"] < 0.05).any() and (table["p_holm"] >= 0.05).any()  # both kinds of row were met


def test_group_bootstrap_widens_the_interval_of_duplicated_patients():
    oofs = _fake_oofs(60)
    tripled = {k: pd.concat([v.assign(patient_id=v["patient_id"] + f"_{r}") for r in range(3)])
               for k, v in oofs.items()}
    groups = pd.Series({f"P{i}_{r}": f"G{i}" for i in range(60) for r in range(3)})
    naive = evaluation.paired_comparisons(tripled, [("clinical", "age")], 500, 0)
    grouped = evaluation.paired_comparisons(tripled, [("clinical", "age")], 500, 0, groups)
    width = lambda t: float(t["ci_high"].iloc[0] - t["ci_low"].iloc[0])  # noqa: E731
    assert width(grouped) > 1.3 * width(naive)


def test_singletons_leave_out_every_member_of_a_shared_group():
    c = make_cohort(10)
    c.loc[[0, 1, 2], "split_group"] = "Gshared"
    assert ablation.singleton_patients(c) == set(c["patient_id"][3:])


def test_restratified_permutation_null_centres_at_chance(profile):
    """50 permutations of an arm fitted on the labels (about 5 s on a quiet core: the issue asks for 50,
    and the mean of fewer is too noisy to hold to 0.03). Folds stratified on the real labels while the
    labels are shuffled centred this null near 0.42 on the real data; re-stratified it is chance."""
    c = make_cohort(150, age_effect=3.0)
    folds = splits.make_folds(c, "label_3class", 3, 1, seed=1)
    null = ablation.permutation_null(c, folds, "binary", profile, 50, classical=("age",), n_jobs=1)
    means = null.groupby("metric")["value"].mean()
    assert set(means.index) == {"auroc", "auroc_fold_mean"} and (null.groupby("metric").size() == 50).all()
    assert abs(means["auroc_fold_mean"] - 0.5) < 0.03 and abs(means["auroc"] - 0.5) < 0.03


def test_restratified_folds_keep_the_layout_and_the_groups():
    c = make_cohort(60)
    c.loc[[0, 1, 2], "split_group"] = "Gshared"
    folds = splits.make_folds(c, "label_3class", 3, 2, seed=5)
    y = np.random.default_rng(0).permutation(c["label_binary"].to_numpy())
    again = splits.restratify(folds, c, y)
    assert sorted(again["seed"].unique()) == [5, 6] and again["fold"].nunique() == 3
    assert again.groupby("seed")["patient_id"].nunique().eq(60).all()
    assert splits.check_group_integrity(again, c) == []
    counts = again.assign(y=pd.Series(y, index=c["patient_id"]).loc[again["patient_id"]].to_numpy()).groupby(
        ["seed", "fold"])["y"].sum()
    assert counts.max() - counts.min() <= 2  # stratified on the permuted labels


def test_permutation_null_is_reproducible_and_its_p_values_count_the_observed_run(profile, monkeypatch):
    c = make_cohort(90, age_effect=3.0)
    folds = splits.make_folds(c, "label_3class", 3, 1, seed=1)
    monkeypatch.setattr(ablation, "PARALLEL_FROM", 6)  # 6 permutations in two worker processes
    null = ablation.permutation_null(c, folds, "binary", profile, 6, classical=("age", "clinical"), n_jobs=2)
    assert list(null.columns) == ["permutation", "model", "metric", "value"]
    assert len(null) == 24 and set(null["model"]) == {"age", "clinical"}
    again = ablation.permutation_null(c, folds, "binary", profile, 6, classical=("age", "clinical"), n_jobs=1)
    pd.testing.assert_frame_equal(null, again)
    monkeypatch.setattr(ablation, "PARALLEL_FROM", 7)  # fewer permutations than that: in this process
    pd.testing.assert_frame_equal(null, ablation.permutation_null(c, folds, "binary", profile, 6,
                                                                  classical=("age", "clinical"), n_jobs=2))
    observed = evaluation.score_arms(ablation.run_arms(c, folds, "binary", ("age", "clinical"), profile, None),
                                     "binary", 50, 0)
    pvalues = ablation.permutation_pvalues(null, observed)
    assert set(pvalues["model"]) == {"age", "clinical"}  # no primary difference: fusion was not permuted
    assert set(pvalues["metric"]) == {"auroc", "auroc_fold_mean"}
    assert (pvalues["p_value"] == 1 / 7).all()  # the real age signal beats every permutation
    assert (pvalues["p_less"] == 1).all()


def test_age_adjusted_finds_a_score_that_adds_to_age():
    c = make_cohort(200, age_effect=0.5)
    oofs = _fake_oofs(200)
    oofs = {k: v.assign(patient_id=c["patient_id"].to_numpy(), y_true=c["label_binary"].to_numpy()) for k, v in
            oofs.items()}
    signal = c["label_binary"].to_numpy() * 2 + np.random.default_rng(1).normal(0, 1, 200)
    oofs["fusion"] = oofs["fusion"].assign(prob_low_bmd=1 / (1 + np.exp(-signal)), prob_normal=1 / (1 + np.exp(signal)))
    table = ablation.age_adjusted(oofs, c, ("fusion", "ost")).set_index("model")
    assert table.loc["fusion", "adds_to_age"] and table.loc["fusion", "p_value"] < 1e-6


@pytest.mark.slow
def test_ablation_command_writes_the_contract(synthetic_dataset_factory, tmp_path):
    from osteo_helpers.cli import main

    ds = synthetic_dataset_factory("abl", counts={"normal": 8, "osteopenia": 10, "osteoporosis": 8})
    out = tmp_path / "ablation"
    sets = ["--set", "image_size=32", "--set", "epochs=1", "--set", "n_boot=50", "--set", "n_folds=2",
            "--set", "num_threads=1"]  # the other worker has the other core: two threads would fight over one
    status = main(["ablation", "--profile", "smoke", "--task", "binary", "--out", str(out), "--data-dir",
                   str(ds.root), "--permute-labels", "3", *sets])
    assert status == 0
    results = pd.read_csv(out / "results.csv")
    assert {"model", "task", "metric", "value", "ci_low", "ci_high", "subset", "n_patients"} <= set(results.columns)
    assert set(ablation.MAIN_ARMS) | {"fusion_tscore"} <= set(results["model"])
    assert {"auroc", "brier", "calibration_intercept", "calibration_slope"} <= set(results["metric"])
    for name in ablation.DECLARED_ORDER:
        oof = pd.read_csv(out / "oof" / f"{name}.csv", dtype={"patient_id": str})
        assert list(oof.columns[:4]) == ["patient_id", "fold", "seed", "y_true"]
        row = results[(results.model == name) & (results.metric == "auroc") & (results.subset == "all")].iloc[0]
        assert abs(_auroc(oof) - row["value"]) < 0.002
        fold_mean = results[(results.model == name) & (results.metric == "auroc_fold_mean") & (results.subset == "all")]
        positive = evaluation.prob_columns(oof)[1]
        per_fold = [roc_auc_score(g["y_true"], g[positive]) for _, g in oof.groupby(["seed", "fold"])
                    if g["y_true"].nunique() == 2]
        assert abs(fold_mean["value"].iloc[0] - np.mean(per_fold)) < 1e-9
    assert {"untrained_folds", "fitted_folds"} <= set(results.loc[results.model == "fusion", "metric"])
    comparisons = pd.read_csv(out / "comparisons.csv")
    assert "p_holm" in comparisons and (comparisons["role"] == "primary").sum() == 1
    assert (comparisons["role"] == "supplementary").sum() == 1  # the T-score models' paired MAE
    assert comparisons.loc[comparisons.model_a == "fusion", "a_untrained_folds"].notna().all()
    null = pd.read_csv(out / "permutation_null.csv")
    assert list(null.columns) == ["permutation", "model", "metric", "value"] and null["permutation"].nunique() == 3


def _fake_3class(binary: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Three-class tables of the same arms: the low-BMD probability split between the two low classes."""
    out = {}
    for name, oof in binary.items():
        y = np.where(oof["y_true"] == 0, 0, 1 + (np.arange(len(oof)) % 2))
        low = oof["prob_low_bmd"].to_numpy()
        out[name] = oof[["patient_id", "fold", "seed"]].assign(y_true=y, prob_normal=1 - low, prob_osteopenia=low / 2,
                                                                prob_osteoporosis=low / 2)
    return out


def test_every_notebook_reads_one_holm_family_of_both_tasks(tmp_path):
    """The declared secondary family (binary and three classes, 15 tests) is Holm-adjusted once per run:
    notebook 4's three-class rows carry the same p_holm as notebook 5's table, and a second session of
    the run reads the saved table instead of adjusting anew over another family."""
    from osteo_helpers.runfolder import RunPaths
    from osteo_helpers.study import Study

    binary = _fake_oofs(200, 1)
    oofs = {"binary": binary, "3class": _fake_3class(binary)}

    def session() -> Study:
        study = Study(config.get_profile("smoke", n_boot=200, seed=0), RunPaths(tmp_path / "run"), dataset=None)
        study.oofs = lambda task, names=None: oofs[task]
        study.training_states = lambda task, names=None: pd.DataFrame(columns=evaluation.RESULT_COLUMNS)
        study.__dict__["groups"] = pd.Series({pid: pid for pid in binary["age"]["patient_id"]})
        return study

    everything = session().comparisons()
    secondary = everything[everything["role"] == "secondary"]
    assert len(secondary) == len(ablation.SECONDARY) + len(ablation.SECONDARY) + 1 == 15
    assert (secondary["holm_tests"] == 15).all()
    np.testing.assert_allclose(secondary["p_holm"], evaluation.holm(secondary["p_bootstrap"].to_numpy()))
    three = session().comparisons(("3class",))
    assert set(three["task"]) == {"3class"}
    merged = three.merge(everything, on=["task", "model_a", "model_b"], suffixes=("", "_all"))
    assert len(merged) == len(three) and np.allclose(merged["p_holm"], merged["p_holm_all"])
    alone = ablation.declared_comparisons({"3class": oofs["3class"]}, 200, 0)  # what notebook 4 used to print
    assert not np.allclose(alone.loc[alone["role"] == "secondary", "p_holm"].to_numpy(),
                           merged.loc[merged["role"] == "secondary", "p_holm"].to_numpy())
    assert (tmp_path / "run" / "tables" / "comparisons.csv").is_file()


def test_checks_on_a_cohort_with_several_images_per_person_or_one_class_in_a_subset(profile):
    """Issue 28: the split-hygiene probe scores images under naive folds (which split a person's images, where no
    one score per person exists) and the age-adjusted test leaves out an arm whose patients hold one class."""
    c = make_cohort(24, seed=2)
    rng = np.random.default_rng(0)
    people = pd.concat([c, c.assign(patient_id=c["patient_id"] + "-R")], ignore_index=True)
    people = people.assign(person_id=people["patient_id"].str.removesuffix("-R"), split_group=lambda t: t["person_id"],
                           image=[rng.integers(0, 255, (32, 32), dtype=np.uint8) for _ in range(48)])
    grouped = splits.make_folds(people, "label_3class", 3, 1, seed=0)
    naive = splits.make_folds(people, "label_3class", 3, 1, seed=0, group=None)
    assert (naive.merge(people[["patient_id", "person_id"]]).groupby("person_id")["fold"].nunique() > 1).any()
    hygiene = ablation.split_hygiene(people, grouped, naive, profile, 20, 0)
    assert set(hygiene.loc[hygiene["metric"] == "auroc", "n_patients"]) == {48}
    oofs = _fake_oofs(24)
    oofs = {k: v.assign(patient_id=c["patient_id"].to_numpy(), y_true=1) for k, v in oofs.items()}
    table = ablation.age_adjusted(oofs, c, ("fusion", "ost"))
    assert table.empty and list(table.columns) == ["model", "lr_statistic", "p_value", "adds_to_age"]
