"""The ablation: networks, clinical baselines and sanity probes on identical folds, one results table.

Every arm produces an out-of-fold table in the same format (patient_id, fold, seed, y_true,
prob_<class>), so every arm is scored by the same code and compared pairwise on the same patients.

Image-biomarker arms (given a `biomarkers.BiomarkerData`):

* ``biomarker``: L2 logistic regression (C = 0.1, fixed a priori; class-balanced) on the
  patient-level biomarker features (mean over the patient's knees; ``qa_*`` acquisition columns
  excluded), median imputation and scaling fitted inside each training fold;
* ``biomarker+clinical``: the same plus the clinical allow-list through `tabular.make_preprocessor()`;
* ``roi_cnn``: the image network (``training.cross_validate`` mode "image", ``profile.roi_epochs``
  epochs at ``profile.roi_size``) trained on per-knee ROI tiles (femur | tibia); every knee carries
  its patient's label, both knees of a patient always fall in the same outer and inner fold, and
  the per-knee probabilities are averaged to one prediction per patient (`patient_oof`). Class
  weights and the inner-validation screening threshold are computed over knees, so a patient
  with two knees counts twice in training; tiles hold the femoral ROI above the tibial one, so the
  training flip mirrors medial and lateral as between a left and a right knee;
* ``roi_cnn+clinical``: mode "fusion" on the same knee rows with the patient's clinical inputs.

Failed localisation: a patient whose image has no localised knee gets **no** prediction from
these four arms (they are excluded, never imputed: a constant prevalence guess would be scored
as if it were a measurement). Their out-of-fold tables therefore hold fewer patients
(``n_patients`` in the results says how many); paired comparisons are always made on the
patients both arms predicted (`paired_comparisons` intersects them), and `run_ablation` also
scores every arm on the common ``localised`` subset, so image and clinical arms are compared on
identical patients. Training folds, seeds and (permuted) labels are those of the other arms.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import ClassifierMixin, clone
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from tqdm.auto import tqdm

from . import evaluation, training
from .biomarkers import BIOMARKER_CACHE_VERSION, BiomarkerData, feature_columns
from .config import Profile, show_progress
from .evaluation import PROB_PREFIX
from .splits import iter_folds
from .tabular import INPUT_FEATURES, make_preprocessor, ost_index, to_model_frame

NETWORK_ARMS = ("image", "tabular", "fusion")
CLINICAL_ARMS = ("age", "ost", "logreg", "gbm")
PROBE_ARMS = ("batch_only",)
COMPARISONS = (("fusion", "tabular"), ("fusion", "image"), ("fusion", "age"), ("tabular", "age"))
BIOMARKER_ARMS = ("biomarker", "biomarker+clinical")
ROI_ARMS = {"roi_cnn": "image", "roi_cnn+clinical": "fusion"}
IMAGE_BIOMARKER_ARMS = BIOMARKER_ARMS + tuple(ROI_ARMS)
BIOMARKER_COMPARISONS = tuple((a, b) for a in IMAGE_BIOMARKER_ARMS for b in ("age", "logreg"))
#: inverse regularisation strength of the biomarker logistic regressions (~75 correlated texture
#: features for ~240 patients): fixed before looking at any result, never tuned on test folds
BIOMARKER_C = 0.1


@dataclass(frozen=True)
class SklearnArm:
    """A classical model: how to build its inputs from the cohort, and the estimator to fit per fold."""

    name: str
    features: Callable[[pd.DataFrame], Any]
    estimator: ClassifierMixin


def _age(c: pd.DataFrame) -> np.ndarray:
    return c[["age_years"]].to_numpy(float)


def _ost(c: pd.DataFrame) -> np.ndarray:
    return ost_index(c["weight_kg"], c["age_years"]).reshape(-1, 1)


def _acquisition(c: pd.DataFrame) -> pd.DataFrame:
    return c[["batch", "mode"]].astype(str).assign(aspect=(c["width"] / c["height"]).round(2).astype(str))


def sklearn_arms(profile: Profile) -> dict[str, SklearnArm]:
    """Clinical baselines and the acquisition-shortcut probe. No hyper-parameter is tuned on test folds."""
    lr = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000)
    return {
        "age": SklearnArm("age", _age, make_pipeline(StandardScaler(), clone(lr))),
        "ost": SklearnArm("ost", _ost, make_pipeline(StandardScaler(), clone(lr))),
        "logreg": SklearnArm("logreg", to_model_frame, make_pipeline(make_preprocessor(), clone(lr))),
        "gbm": SklearnArm("gbm", to_model_frame, make_pipeline(
            make_preprocessor(), HistGradientBoostingClassifier(max_iter=profile.gbm_estimators, learning_rate=0.05,
                                                                max_depth=3, class_weight="balanced",
                                                                random_state=profile.seed))),
        "batch_only": SklearnArm("batch_only", _acquisition, make_pipeline(
            OneHotEncoder(handle_unknown="ignore"), clone(lr))),
    }


def cross_validate_sklearn(arm: SklearnArm, cohort: pd.DataFrame, folds: pd.DataFrame, task: training.Task,
                           y: np.ndarray) -> pd.DataFrame:
    """Fit a clone of the estimator on each training fold; predict the held-out fold."""
    X = arm.features(cohort.reset_index(drop=True))
    take = (lambda idx: X.iloc[idx]) if isinstance(X, pd.DataFrame) else (lambda idx: X[idx])
    parts = []
    ids = cohort["patient_id"].to_numpy()
    for seed, fold, test_ids in iter_folds(folds):
        test = np.isin(ids, list(test_ids))
        if not test.any():  # a subset arm (e.g. biomarkers) may have no patient in a fold
            continue
        model = clone(arm.estimator).fit(take(np.flatnonzero(~test)), y[~test])
        proba = np.zeros((test.sum(), task.n_outputs))
        proba[:, model.classes_.astype(int)] = model.predict_proba(take(np.flatnonzero(test)))
        out = pd.DataFrame({"patient_id": ids[test], "fold": fold, "seed": seed, "y_true": y[test]})
        for j, c in enumerate(task.classes):
            out[f"{PROB_PREFIX}{c}"] = proba[:, j]
        parts.append(out)
    return pd.concat(parts, ignore_index=True)


def pixel_knn_oof(thumbnails: np.ndarray, cohort: pd.DataFrame, folds: pd.DataFrame, task: training.Task,
                  y: np.ndarray) -> pd.DataFrame:
    """1-nearest-neighbour on raw thumbnails: it memorises, so it exposes duplicate-image leakage."""
    arm = SklearnArm("pixel_1nn", lambda c: thumbnails.reshape(len(thumbnails), -1).astype(np.float32) / 255,
                     KNeighborsClassifier(n_neighbors=1))
    return cross_validate_sklearn(arm, cohort, folds, task, y)


def permuted_labels(y: np.ndarray, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(y)


def age_band(cohort: pd.DataFrame, low_q: float = 0.05, high_q: float = 0.95) -> tuple[float, float]:
    """The age range where normal and low-BMD patients overlap: 5th centile of low-BMD ages to 95th of normal."""
    ages = cohort["age_years"]
    low = float(ages[cohort["label_binary"] == 1].quantile(low_q))
    high = float(ages[cohort["label_binary"] == 0].quantile(high_q))
    return low, high


def score_arms(oofs: dict[str, pd.DataFrame], task: str, n_boot: int, seed: int,
               subset: set[str] | None = None, subset_name: str = "all") -> pd.DataFrame:
    """One long results table (model, task, metric, value, ci_low, ci_high, subset) over all arms."""
    rows = []
    for name, oof in oofs.items():
        part = oof if subset is None else oof[oof["patient_id"].isin(subset)]
        table = evaluation.oof_metrics(part, n_boot, seed)
        rows.append(table.assign(model=name, task=task, subset=subset_name, n_patients=part["patient_id"].nunique()))
    out = pd.concat(rows, ignore_index=True)
    if "macro_auroc" in set(out["metric"]):
        out = pd.concat([out, out[out["metric"] == "macro_auroc"].assign(metric="auroc")], ignore_index=True)
    return out[["model", "task", "metric", "value", "ci_low", "ci_high", "subset", "n_patients"]]


def _aligned(oofs: dict[str, pd.DataFrame], a: str, b: str,
             subset: set[str] | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and both arms' per-patient probabilities on the patients both arms predicted
    (in ``subset``, if given), in the order of arm ``a``."""
    pa = evaluation.average_over_repeats(oofs[a]).set_index("patient_id")
    pb = evaluation.average_over_repeats(oofs[b]).set_index("patient_id")
    common = pa.index[pa.index.isin(pb.index)]
    if subset is not None:
        common = common[common.isin(list(subset))]
    pa, pb = pa.loc[common], pb.loc[common]
    if not np.array_equal(pa["y_true"].to_numpy(), pb["y_true"].to_numpy()):
        raise ValueError(f"arms {a!r} and {b!r} disagree on y_true for the same patients")
    cols = evaluation.prob_columns(oofs[a])
    return pa["y_true"].to_numpy(), pa[cols].to_numpy(), pb[cols].to_numpy()


def paired_comparisons(oofs: dict[str, pd.DataFrame], pairs: tuple[tuple[str, str], ...], n_boot: int,
                       seed: int, subset: set[str] | None = None, subset_name: str = "all") -> pd.DataFrame:
    """AUROC difference per pair with a paired bootstrap CI, plus DeLong's test when binary.

    Each pair is compared on the patients both arms predicted (arms that exclude patients, such as
    the image-biomarker arms, are compared on their patients only), restricted to ``subset`` if
    given; ``n_patients`` and ``subset`` say which patients.
    """
    rows = []
    for a, b in pairs:
        if a not in oofs or b not in oofs:
            continue
        y, pa, pb = _aligned(oofs, a, b, subset)
        binary = pa.shape[1] == 2
        metric = "auroc" if binary else "macro_auroc"
        boot = evaluation.paired_bootstrap_difference(y, pa[:, 1] if binary else pa, pb[:, 1] if binary else pb,
                                                      metric=metric, n_boot=n_boot, seed=seed)
        row = {"model_a": a, "model_b": b, "metric": metric, "value_a": boot["value_a"], "value_b": boot["value_b"],
               "diff": boot["diff"], "ci_low": boot["ci_low"], "ci_high": boot["ci_high"],
               "p_bootstrap": boot["p_value"], "p_delong": np.nan}
        if binary:
            row["p_delong"] = evaluation.delong_test(y, pa[:, 1], pb[:, 1])["p_value"]
        row["conclusion"] = verdict(row["diff"], row["ci_low"], row["ci_high"], a, b)
        row["n_patients"] = len(y)
        row["subset"] = subset_name
        rows.append(row)
    return pd.DataFrame(rows)


def verdict(diff: float, low: float, high: float, a: str, b: str) -> str:
    """A sentence that follows from the CI: no claim of a difference when the CI includes zero."""
    if low > 0:
        return f"{a} is better than {b} (CI of the difference excludes 0)"
    if high < 0:
        return f"{a} is worse than {b} (CI of the difference excludes 0)"
    return f"no detectable difference between {a} and {b} (CI includes 0)"


def age_adjusted(oofs: dict[str, pd.DataFrame], cohort: pd.DataFrame, models: tuple[str, ...]) -> pd.DataFrame:
    """Does a model's out-of-fold score add to age? Likelihood-ratio test of logit(score) added to age."""
    ages = cohort.set_index("patient_id")["age_years"]
    rows = []
    for name in models:
        if name not in oofs:
            continue
        avg = evaluation.average_over_repeats(oofs[name])
        p = np.clip(avg[evaluation.prob_columns(oofs[name])[1]].to_numpy(), 1e-6, 1 - 1e-6)
        y = avg["y_true"].to_numpy()
        age = ages.loc[avg["patient_id"]].to_numpy()
        base = np.c_[(age - age.mean()) / age.std()]
        full = np.c_[base, np.log(p / (1 - p))]
        ll = []
        for X in (base, full):
            m = LogisticRegression(C=1e6, max_iter=5000).fit(X, y)
            q = np.clip(m.predict_proba(X)[:, 1], 1e-12, 1 - 1e-12)
            ll.append(float(np.sum(y * np.log(q) + (1 - y) * np.log(1 - q))))
        lr_stat = 2 * (ll[1] - ll[0])
        rows.append({"model": name, "lr_statistic": lr_stat, "p_value": float(stats.chi2.sf(max(lr_stat, 0), 1)),
                     "adds_to_age": bool(stats.chi2.sf(max(lr_stat, 0), 1) < 0.05)})
    return pd.DataFrame(rows)


def patient_oof(knee_oof: pd.DataFrame) -> pd.DataFrame:
    """Per-knee out-of-fold predictions -> one row per patient per seed: probabilities (and the
    fold's threshold, if any) averaged over the patient's knees. One patient, one prediction.

    Raises if a patient's knees disagree on the label or fall in different folds of one seed.
    """
    keys = ["patient_id", "seed"]
    grouped = knee_oof.groupby(keys, sort=False)
    for col in ("y_true", "fold"):
        spread = grouped[col].nunique()
        if (spread > 1).any():
            bad = spread.index[spread > 1].get_level_values(0).unique().tolist()
            raise ValueError(f"knees of the same patient differ in {col!r} within a seed: {bad}")
    value_cols = evaluation.prob_columns(knee_oof) + [c for c in ("threshold", "pred_t_score") if c in knee_oof]
    out = grouped.agg(fold=("fold", "first"), y_true=("y_true", "first"),
                      **{c: (c, "mean") for c in value_cols}, n_knees=("y_true", "size")).reset_index()
    return out[["patient_id", "fold", "seed", "y_true", *value_cols, "n_knees"]]


def _biomarker_frame(columns: list[str], clinical: bool) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def frame(c: pd.DataFrame) -> pd.DataFrame:
        bio = c[columns].astype(float)
        return pd.concat([bio, to_model_frame(c)], axis=1) if clinical else bio
    return frame


def biomarker_sklearn_arms(columns: list[str], C: float = BIOMARKER_C) -> dict[str, SklearnArm]:
    """The two biomarker logistic regressions. ``columns`` must not contain ``qa_*`` columns."""
    bad = [col for col in columns if str(col).startswith("qa_")]
    if bad:
        raise ValueError(f"acquisition-tracking columns cannot be predictors: {bad}")
    lr = LogisticRegression(C=C, class_weight="balanced", max_iter=5000)
    numeric = Pipeline([("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                        ("scale", StandardScaler())])
    both = ColumnTransformer([("biomarker", clone(numeric), list(columns)),
                              ("clinical", make_preprocessor(), list(INPUT_FEATURES))], remainder="drop")
    return {
        "biomarker": SklearnArm("biomarker", _biomarker_frame(columns, False),
                                make_pipeline(clone(numeric), clone(lr))),
        "biomarker+clinical": SklearnArm("biomarker+clinical", _biomarker_frame(columns, True),
                                         make_pipeline(both, clone(lr))),
    }


def roi_arm_dir(name: str, task_name: str, permute: bool = False) -> str:
    """Folder (under the models folder) of a ROI network arm; names the cache version, so ROIs cut
    by another version of the biomarker code are never resumed."""
    return f"{name.replace('+', '_')}_{task_name}_v{BIOMARKER_CACHE_VERSION}" + ("_permuted" if permute else "")


def roi_profile(profile: Profile) -> Profile:
    """The profile of the ROI networks: ``roi_epochs`` epochs on ``roi_size`` tiles."""
    return profile.with_overrides(epochs=profile.roi_epochs, image_size=profile.roi_size)


def run_biomarker_arms(cohort: pd.DataFrame, folds: pd.DataFrame, task_name: str, profile: Profile,
                       models_dir: Path, biomarkers: BiomarkerData, y: np.ndarray, permute: bool = False,
                       roi_networks: tuple[str, ...] = tuple(ROI_ARMS),
                       progress: bool = True) -> dict[str, pd.DataFrame]:
    """The image-biomarker arms on the cohort's folds, for the patients with a localised knee.

    ``y`` holds the cohort's labels in row order, already permuted when ``permute`` (so every arm
    sees the same permuted labels); failed patients are excluded (see the module docstring).
    """
    task = training.TASKS[task_name]
    cohort = cohort.reset_index(drop=True)
    keep = cohort["patient_id"].isin(biomarkers.localised_ids).to_numpy()
    sub, y_sub = cohort[keep].reset_index(drop=True), np.asarray(y)[keep]
    sub_folds = folds[folds["patient_id"].isin(set(sub["patient_id"]))]
    oofs: dict[str, pd.DataFrame] = {}
    if not len(sub):
        return oofs
    patients = biomarkers.patients()
    columns = feature_columns(patients)
    table = sub.merge(patients[["patient_id", *columns]], on="patient_id", how="left", validate="one_to_one")
    for name, arm in biomarker_sklearn_arms(columns).items():
        oofs[name] = cross_validate_sklearn(arm, table, sub_folds, task, y_sub)
    if roi_networks:
        labels = pd.Series(y_sub, index=sub["patient_id"].to_numpy())
        in_cohort = biomarkers.knees["patient_id"].isin(labels.index).to_numpy()
        knees = biomarkers.knees.loc[in_cohort, ["patient_id", "side"]].reset_index(drop=True)
        knees = knees.merge(sub.drop(columns=[task.target]), on="patient_id", how="left", validate="many_to_one")
        knees[task.target] = labels.loc[knees["patient_id"]].to_numpy()
        rois = biomarkers.rois[in_cohort]
        prof = roi_profile(profile)
        for name in tqdm(roi_networks, desc=f"ROI networks ({task_name})", disable=not show_progress(progress)):
            knee_oof = training.cross_validate(knees, sub_folds, task, ROI_ARMS[name], prof, models_dir, images=rois,
                                               arm=roi_arm_dir(name, task_name, permute), progress=progress,
                                               permute_labels=False)  # labels already permuted per patient
            oofs[name] = patient_oof(knee_oof)
    return oofs


def predict_batch(biomarkers: BiomarkerData, cohort: pd.DataFrame, folds: pd.DataFrame, n_boot: int, seed: int,
                  C: float = BIOMARKER_C) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Can the acquisition batch be predicted from the patient-level biomarker features?

    The biomarker pipeline (imputation, scaling, L2 logistic regression, multinomial) is
    cross-validated on the shared folds to predict ``batch``; returns (metrics with bootstrap CIs
    and the chance level of each metric, the out-of-fold predictions). Balanced accuracy at
    chance is 1 / number of batches; macro one-vs-rest AUROC at chance is 0.5.
    """
    patients = biomarkers.patients()
    columns = feature_columns(patients)
    table = cohort[cohort["patient_id"].isin(biomarkers.localised_ids)].reset_index(drop=True)
    table = table.merge(patients[["patient_id", *columns]], on="patient_id", how="left", validate="one_to_one")
    classes = tuple(sorted(table["batch"].astype(str).unique()))
    y = table["batch"].astype(str).map({c: i for i, c in enumerate(classes)}).to_numpy()
    task = training.Task("batch", "batch", classes)
    arm = biomarker_sklearn_arms(columns, C)["biomarker"]
    oof = cross_validate_sklearn(arm, table, folds[folds["patient_id"].isin(set(table["patient_id"]))], task, y)
    metrics = evaluation.oof_metrics(oof, n_boot, seed)
    chance = {"accuracy": float(np.max(np.bincount(y)) / len(y)), "balanced_accuracy": 1 / len(classes)}
    metrics["chance"] = [chance.get(m, 0.5 if "auroc" in m else np.nan) for m in metrics["metric"]]
    return metrics, oof


def biomarker_age_table(patients: pd.DataFrame, cohort: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """Per biomarker: Pearson r with age (and p), its AUROC for low BMD, and whether it adds to age.

    ``adds_to_age_p`` is the likelihood-ratio test of the standardised feature added to age in a
    logistic model of ``label_binary`` (1 df, in-sample, nominal: no correction for the number of
    features). A feature that only tracks age has a large |r|, an AUROC away from 0.5 and a large
    p here: it is not a bone-density biomarker. Missing values are dropped per feature.
    """
    table = cohort[["patient_id", "age_years", "label_binary"]].merge(patients, on="patient_id")
    rows = []
    for f in features:
        part = table[["age_years", "label_binary", f]].dropna()
        if len(part) < 10 or part[f].std() == 0 or part["label_binary"].nunique() < 2:
            continue
        r, p_r = stats.pearsonr(part["age_years"], part[f])
        y = part["label_binary"].to_numpy()
        z = lambda v: ((v - v.mean()) / v.std()).to_numpy()  # noqa: E731
        ll = []
        for X in (np.c_[z(part["age_years"])], np.c_[z(part["age_years"]), z(part[f])]):
            m = LogisticRegression(C=1e6, max_iter=5000).fit(X, y)
            q = np.clip(m.predict_proba(X)[:, 1], 1e-12, 1 - 1e-12)
            ll.append(float(np.sum(y * np.log(q) + (1 - y) * np.log(1 - q))))
        lr_stat = max(0.0, 2 * (ll[1] - ll[0]))
        auc = evaluation.binary_point_metrics(y, part[f].to_numpy())["auroc"]
        rows.append({"feature": f, "n": len(part), "r_age": float(r), "p_r_age": float(p_r), "auroc_low_bmd": auc,
                     "adds_to_age_p": float(stats.chi2.sf(lr_stat, 1))})
    return pd.DataFrame(rows)


def run_arms(cohort: pd.DataFrame, folds: pd.DataFrame, task_name: str, profile: Profile, models_dir: Path,
             images: np.ndarray | None, thumbnails: np.ndarray | None = None, permute: bool = False,
             networks: tuple[str, ...] = NETWORK_ARMS, progress: bool = True,
             biomarkers: BiomarkerData | None = None, roi_networks: tuple[str, ...] = tuple(ROI_ARMS),
             classical: tuple[str, ...] | None = None) -> dict[str, pd.DataFrame]:
    """Out-of-fold predictions of every arm on the same folds (and the same permuted labels, if asked).

    ``classical`` picks the clinical baselines / probes of `sklearn_arms` (None: all of them).
    With ``biomarkers``, adds the image-biomarker arms (``biomarker``, ``biomarker+clinical`` and the
    ROI networks named in ``roi_networks``) for the patients with a localised knee.
    """
    task = training.TASKS[task_name]
    cohort = cohort.reset_index(drop=True)
    y = cohort[task.target].to_numpy()
    if permute:
        y = permuted_labels(y, profile.seed)
    oofs: dict[str, pd.DataFrame] = {}
    for mode in tqdm(networks, desc=f"networks ({task_name})", disable=not show_progress(progress)):
        arm = f"{mode}_{task_name}" + ("_permuted" if permute else "")
        oofs[mode] = training.cross_validate(cohort, folds, task, mode, profile, models_dir, images=images, arm=arm,
                                             progress=progress, permute_labels=permute)
    for name, arm in sklearn_arms(profile).items():
        if classical is None or name in classical:
            oofs[name] = cross_validate_sklearn(arm, cohort, folds, task, y)
    if thumbnails is not None:
        oofs["pixel_1nn"] = pixel_knn_oof(thumbnails, cohort, folds, task, y)
    if biomarkers is not None:
        oofs.update(run_biomarker_arms(cohort, folds, task_name, profile, models_dir, biomarkers, y, permute,
                                       roi_networks, progress))
    return oofs


def run_ablation(profile_name: str, task: str, out: Path, data_dir: str | None = None, permute_labels: bool = False,
                 overrides: dict[str, Any] | None = None, biomarkers: bool = True) -> Path:
    """The command-line ablation: all arms on shared folds; writes out/results.csv (+ OOFs, comparisons).

    results.csv holds every arm on its own patients (subset ``all``; the image-biomarker arms lack
    patients whose knees could not be localised, see ``n_patients``) and, when biomarkers are on,
    every arm on the patients with a localised knee (subset ``localised``), so that all arms can
    be read on identical patients. comparisons.csv adds the image-biomarker arms against ``age``
    and ``logreg``, overall and within the age band where the classes overlap.
    """
    from .biomarkers import cohort_biomarkers
    from .study import Study

    out = Path(out)
    study = Study.open(profile_name, out, data_dir, **(overrides or {}))
    folds = study.folds()
    p = study.profile
    bio = None
    if biomarkers:
        bio = cohort_biomarkers(study.cohort, study.data_dir, p.roi_size, limit=p.biomarker_limit)
        bio.status.to_csv(out / "biomarker_status.csv", index=False)
    oofs = run_arms(study.cohort, folds, task, p, study.paths.models, study.images(), permute=permute_labels,
                    biomarkers=bio)
    (out / "oof").mkdir(parents=True, exist_ok=True)
    for name, oof in oofs.items():
        oof.to_csv(out / "oof" / f"{name}_{task}.csv", index=False)
    results = score_arms(oofs, task, p.n_boot, p.seed)
    comparisons = [paired_comparisons(oofs, COMPARISONS, p.n_boot, p.seed)]
    if bio is not None:
        common = bio.localised_ids & set(study.cohort["patient_id"])
        results = pd.concat([results, score_arms(oofs, task, p.n_boot, p.seed, subset=common,
                                                 subset_name="localised")], ignore_index=True)
        low, high = age_band(study.cohort)
        band = set(study.cohort.loc[study.cohort["age_years"].between(low, high), "patient_id"])
        comparisons += [paired_comparisons(oofs, BIOMARKER_COMPARISONS, p.n_boot, p.seed),
                        paired_comparisons(oofs, BIOMARKER_COMPARISONS, p.n_boot, p.seed, subset=band,
                                           subset_name=f"age {low:.0f}-{high:.0f}")]
    results["permuted_labels"] = permute_labels
    comparisons = pd.concat(comparisons, ignore_index=True).assign(task=task, permuted_labels=permute_labels)
    comparisons.to_csv(out / "comparisons.csv", index=False)
    path = out / "results.csv"
    tmp = path.with_name("results.csv.tmp")
    results.to_csv(tmp, index=False)
    tmp.replace(path)
    return path
