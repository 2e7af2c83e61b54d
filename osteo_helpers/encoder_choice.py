"""The frozen encoder's recipe, chosen on the positive control only (sex and age) and inside training folds.

Which EfficientNet-Lite variant, input size, pooling and number of PCA components the image arm uses
is decided before any low-BMD result of the arm is looked at, on targets a knee radiograph is known
to carry (the patient's sex and age), and never on a test fold. A candidate is scored by grouped
cross-validation (folds stratified by sex, grouped by person) of the ``image`` arm on the rows it is
given: ``criterion`` = AUROC for sex + Pearson r for age, both out of fold. `choose` picks the best
candidate on the rows given (the whole cohort: the recipe declared in the protocol); `nested_choice`
estimates what that procedure achieves, each outer fold choosing on its own training rows and being
scored on its test rows. The candidates are declared here, once, before the choice is run.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from . import progress, splits
from .arms import cross_validate, run_arm
from .config import Profile
from .evaluation import average_over_repeats, binary_point_metrics
from .features import FeatureRecipe, with_features


@dataclass(frozen=True)
class Candidate:
    """One recipe of the frozen encoder and the head's PCA components."""

    encoder: str
    size: int
    pooling: str
    components: int

    @property
    def recipe(self) -> FeatureRecipe:
        return FeatureRecipe(self.encoder, self.size, ("image", "mirror"), self.pooling)

    def name(self) -> str:
        return f"{self.encoder} {self.size}px {self.pooling} pca{self.components}"


#: the candidates, declared before the choice is run (2026-12-07): each variant at its native input size,
#: lite0 also at two larger sizes; the head's pooled features or several stages; 64 or 128 components.
#: The views (the image and its mirror image, averaged) and the head (ridge logistic / Gaussian linear
#: model, strength by inner CV) are fixed.
CANDIDATES: tuple[Candidate, ...] = tuple(
    Candidate(encoder, size, pooling, components)
    for encoder, size in (("efficientnet_lite0", 224), ("efficientnet_lite0", 288), ("efficientnet_lite0", 352),
                          ("efficientnet_lite1", 240), ("efficientnet_lite2", 260))
    for pooling in ("mean", "multiscale") for components in (64, 128))
#: folds of the candidates' cross-validation
CHOICE_FOLDS = 5


def _sex_folds(rows: pd.DataFrame, n_folds: int, seed: int) -> pd.DataFrame:
    """Folds stratified by sex (never by the low-BMD label), grouped by person."""
    return splits.make_folds(rows.assign(_sex=(rows["sex"] == "female").astype(int)), "_sex", n_folds, 1, seed)


def control_scores(rows: pd.DataFrame, folds: pd.DataFrame, profile: Profile) -> dict[str, float]:
    """Out-of-fold sex AUROC and age Pearson r of the ``image`` arm on ``rows`` (which hold ``features``)."""
    sex = average_over_repeats(run_arm("image", rows, folds, "sex", profile=profile, screening=False))
    age = cross_validate("image", rows, folds, "age", profile=profile).groupby("patient_id")[
        ["y_true", "pred_mean"]].mean()
    auroc = float(binary_point_metrics(sex["y_true"], sex["prob_female"])["auroc"])
    r = float(stats.pearsonr(age["y_true"], age["pred_mean"])[0])
    return {"sex_auroc": auroc, "age_r": r, "criterion": auroc + r}


def candidate_rows(rows: pd.DataFrame, candidate: Candidate, data_dir: str | os.PathLike) -> pd.DataFrame:
    return with_features(rows, candidate.recipe, data_dir)


def _profile(profile: Profile, candidate: Candidate) -> Profile:
    return profile.with_overrides(feature_encoder=candidate.encoder, feature_size=candidate.size,
                                  feature_pooling=candidate.pooling, feature_components=candidate.components)


def choose(rows_of: dict[Candidate, pd.DataFrame], ids: set[str], profile: Profile, seed: int) -> pd.DataFrame:
    """Every candidate's scores by grouped CV on the rows ``ids`` only, best first (the first row is chosen)."""
    out = []
    for candidate, rows in rows_of.items():
        part = rows[rows["patient_id"].isin(ids)].reset_index(drop=True)
        folds = _sex_folds(part, CHOICE_FOLDS, seed)
        with progress.silenced():
            out.append({"candidate": candidate.name(), **vars(candidate),
                        **control_scores(part, folds, _profile(profile, candidate))})
    return pd.DataFrame(out).sort_values("criterion", ascending=False, kind="stable").reset_index(drop=True)


def nested_choice(rows_of: dict[Candidate, pd.DataFrame], profile: Profile, seed: int
                  ) -> tuple[pd.DataFrame, dict[str, float]]:
    """Each outer fold chooses a candidate on its training rows (`choose`) and scores it on its test rows: the
    choices, and the out-of-fold sex AUROC and age r of the procedure as a whole."""
    first = next(iter(rows_of.values()))
    outer = _sex_folds(first, CHOICE_FOLDS, seed)
    chosen, sex_parts, age_parts = [], [], []
    for fold in progress.track(sorted(outer["fold"].unique()), "recipe choice: outer folds"):
        test = set(outer.loc[outer["fold"] == fold, "patient_id"])
        train = set(first["patient_id"]) - test
        table = choose(rows_of, train, profile, seed + 1)
        best = next(c for c in rows_of if c.name() == table.at[0, "candidate"])
        chosen.append({"fold": int(fold), "chosen": best.name(), "inner_criterion": float(table.at[0, "criterion"])})
        rows, prof = rows_of[best], _profile(profile, best)
        one = outer.assign(fold=np.where(outer["fold"] == fold, 0, 1))  # the test fold against the rest
        sex = run_arm("image", rows, one, "sex", profile=prof, screening=False)
        age = cross_validate("image", rows, one, "age", profile=prof)
        sex_parts.append(sex[sex["patient_id"].isin(test)])
        age_parts.append(age[age["patient_id"].isin(test)])
    sex, age = pd.concat(sex_parts), pd.concat(age_parts)
    summary = {"sex_auroc": float(binary_point_metrics(sex["y_true"], sex["prob_female"])["auroc"]),
               "age_r": float(stats.pearsonr(age["y_true"], age["pred_mean"])[0])}
    return pd.DataFrame(chosen), summary
