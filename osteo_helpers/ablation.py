"""The ablation: networks, clinical baselines and sanity probes on identical folds, one results table.

Every arm produces an out-of-fold table in the same format (patient_id, fold, seed, y_true,
prob_<class>), so every arm is scored by the same code and compared pairwise on the same patients.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd
from scipy import stats
from sklearn.base import ClassifierMixin, clone
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from tqdm.auto import tqdm

from . import evaluation, training
from .config import Profile
from .evaluation import PROB_PREFIX
from .splits import iter_folds
from .tabular import make_preprocessor, ost_index, to_model_frame

NETWORK_ARMS = ("image", "tabular", "fusion")
CLINICAL_ARMS = ("age", "ost", "logreg", "gbm")
PROBE_ARMS = ("batch_only",)
COMPARISONS = (("fusion", "tabular"), ("fusion", "image"), ("fusion", "age"), ("tabular", "age"))


@dataclass(frozen=True)
class SklearnArm:
    """A classical model: how to build its inputs from the cohort, and the estimator to fit per fold."""

    name: str
    features: Callable[[pd.DataFrame], Any]
    estimator: ClassifierMixin
    fit_features_per_fold: bool = False


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


def _aligned(oofs: dict[str, pd.DataFrame], a: str, b: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    pa = evaluation.average_over_repeats(oofs[a]).set_index("patient_id")
    pb = evaluation.average_over_repeats(oofs[b]).set_index("patient_id").loc[pa.index]
    cols = evaluation.prob_columns(oofs[a])
    return pa["y_true"].to_numpy(), pa[cols].to_numpy(), pb[cols].to_numpy()


def paired_comparisons(oofs: dict[str, pd.DataFrame], pairs: tuple[tuple[str, str], ...], n_boot: int,
                       seed: int) -> pd.DataFrame:
    """AUROC difference per pair with a paired bootstrap CI, plus DeLong's test when binary."""
    rows = []
    for a, b in pairs:
        if a not in oofs or b not in oofs:
            continue
        y, pa, pb = _aligned(oofs, a, b)
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


def run_arms(cohort: pd.DataFrame, folds: pd.DataFrame, task_name: str, profile: Profile, models_dir: Path,
             images: np.ndarray | None, thumbnails: np.ndarray | None = None, permute: bool = False,
             networks: tuple[str, ...] = NETWORK_ARMS, progress: bool = True) -> dict[str, pd.DataFrame]:
    """Out-of-fold predictions of every arm on the same folds (and the same permuted labels, if asked)."""
    task = training.TASKS[task_name]
    cohort = cohort.reset_index(drop=True)
    y = cohort[task.target].to_numpy()
    if permute:
        y = permuted_labels(y, profile.seed)
    oofs: dict[str, pd.DataFrame] = {}
    for mode in tqdm(networks, desc=f"networks ({task_name})", disable=not progress):
        arm = f"{mode}_{task_name}" + ("_permuted" if permute else "")
        oofs[mode] = training.cross_validate(cohort, folds, task, mode, profile, models_dir, images=images, arm=arm,
                                             progress=progress, permute_labels=permute)
    for name, arm in sklearn_arms(profile).items():
        oofs[name] = cross_validate_sklearn(arm, cohort, folds, task, y)
    if thumbnails is not None:
        oofs["pixel_1nn"] = pixel_knn_oof(thumbnails, cohort, folds, task, y)
    return oofs


def run_ablation(profile_name: str, task: str, out: Path, data_dir: str | None = None, permute_labels: bool = False,
                 overrides: dict[str, Any] | None = None) -> Path:
    """The command-line ablation: all arms on shared folds; writes out/results.csv (+ OOFs, comparisons)."""
    from .study import Study

    out = Path(out)
    study = Study.open(profile_name, out, data_dir, **(overrides or {}))
    folds = study.folds()
    oofs = run_arms(study.cohort, folds, task, study.profile, study.paths.models, study.images(),
                    permute=permute_labels)
    (out / "oof").mkdir(parents=True, exist_ok=True)
    for name, oof in oofs.items():
        oof.to_csv(out / "oof" / f"{name}_{task}.csv", index=False)
    results = score_arms(oofs, task, study.profile.n_boot, study.profile.seed)
    results["permuted_labels"] = permute_labels
    comparisons = paired_comparisons(oofs, COMPARISONS, study.profile.n_boot, study.profile.seed)
    comparisons.to_csv(out / "comparisons.csv", index=False)
    path = out / "results.csv"
    tmp = path.with_name("results.csv.tmp")
    results.to_csv(tmp, index=False)
    tmp.replace(path)
    return path
