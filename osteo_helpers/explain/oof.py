"""Explanations of the cross-validated fold models, each patient explained by the model that did not train on it.

The notebook's front end: `fold_models` loads the fitted folds, `oof_cams`, `oof_shap` and
`oof_permutation_importance` run the explanations out of fold, `gallery_picks` chooses patients
for CAM galleries and `reliance_text` writes the summary sentence.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from ..arms.features import ImageArm
from ..arms.persons import person_key, pooled_probabilities, several_rows_per_person
from ..evaluation import binary_point_metrics, prob_columns
from ..features import frozen_encoder
from ..models import FrozenFeatures, LinearHead
from ..models.inputs import normalisation
from ..tabular import to_model_frame
from ..training import pick_device
from .cam import compute_cams
from .tabular import (
    group_shap,
    permutation_importance_grouped,
    rank_spearman,
    shap_importance,
    shap_values_tabular,
    tabular_predict_fn,
)

if TYPE_CHECKING:
    import shap


@dataclass
class FoldModel:
    """A fitted fold of an arm as the explanations need it: its network, its clinical transform, the patients
    it was tested on (the only ones it may explain), and what its image branch reads: the fold's transform
    of the frozen encoder's feature vectors (``features``), or pixels normalised by ``normalisation``."""

    seed: int
    fold: int
    model: nn.Module
    preprocessor: Any
    test_ids: list[str]
    features: Any = None
    normalisation: tuple[float, float] = (0.5, 0.25)


def model_inputs(fm: FoldModel, images: np.ndarray) -> torch.Tensor:
    """What the fold model's image branch reads at test time: the fold's transform of feature vectors (N, D),
    or uint8 pixels (N, S, S) normalised as (N, 1, S, S)."""
    if fm.features is not None:
        return torch.from_numpy(fm.features.transform(images).astype(np.float32))
    mean, std = fm.normalisation
    return (torch.from_numpy(np.ascontiguousarray(images)).float().unsqueeze(1) / 255 - mean) / std


def _end_to_end(arm: Any) -> nn.Module:
    """A feature arm as one network that reads pixels: the frozen encoder, the fold's transform, then its head
    (the ``image`` arm's logistic regression, or a network's head), so Grad-CAM reaches the encoder."""
    network_arm = getattr(arm, "features_", None) is not None
    transform = arm.features_ if network_arm else arm.model_[0]
    p = arm.profile  # a copy of the process's frozen encoder: the explanation may move it to another device
    encoder = FrozenFeatures(copy.deepcopy(frozen_encoder(p.feature_encoder, p.feature_size)), transform,
                             p.feature_pooling, tuple(p.feature_views))
    if not network_arm:
        return LinearHead(encoder, arm.model_[-1])
    network = copy.deepcopy(arm.model_)  # a small head: copied, so the fitted arm keeps reading features
    network.image_encoder = encoder
    return network


def fold_models(fitted_arms: Sequence[Any], device: str | torch.device | None = None,
                pixels: bool = False) -> list[FoldModel]:
    """FoldModels from the fitted arms of `arms.load_fold_arms`, their networks on ``device`` (default: the
    accelerator when there is one), where every explanation then runs. ``pixels``: an arm on the frozen
    encoder's features becomes one network from pixels to its output (what Grad-CAM explains); otherwise
    it reads the features as it was trained."""
    where = pick_device(device)
    out = []
    for a in fitted_arms:
        if isinstance(a, ImageArm) and not pixels:
            raise ValueError("the image arm is a linear head on features: explain it end to end (pixels=True)")
        if pixels and (isinstance(a, ImageArm) or getattr(a, "features_", None) is not None):
            model, features = _end_to_end(a), None
            norm = normalisation("imagenet", a.profile.feature_encoder)
        else:
            model, features = a.model_, getattr(a, "features_", None)
            norm = getattr(a, "normalisation_", normalisation(None))
        out.append(FoldModel(a.seed_, a.fold_, model.to(where).eval(), getattr(a, "preprocessor_", None),
                             list(a.test_ids_), features, norm))
    return out


def _device(fm: FoldModel) -> torch.device:
    return next(fm.model.parameters()).device


def _fold_rows(cohort: pd.DataFrame, fm: FoldModel) -> np.ndarray:
    return np.flatnonzero(cohort["patient_id"].isin(fm.test_ids).to_numpy())


def _fold_tabular(fm: FoldModel, X_raw: pd.DataFrame | None, rows: np.ndarray) -> np.ndarray | None:
    if fm.preprocessor is None or X_raw is None:
        return None
    return fm.preprocessor.transform(X_raw.iloc[rows]).astype(np.float32)


def oof_cams(fold_models: Sequence[FoldModel], cohort: pd.DataFrame, images: np.ndarray,
             target_class: int = 1, method: str = "gradcam", rows: np.ndarray | None = None) -> np.ndarray:
    """CAMs for patients from the fold model that did not train on them; NaN for rows not asked for."""
    X_raw = to_model_frame(cohort) if fold_models[0].preprocessor is not None else None
    wanted = np.arange(len(cohort)) if rows is None else np.asarray(rows)
    cams = np.full((len(cohort), *images.shape[1:]), np.nan, dtype=np.float32)
    for fm in fold_models:
        idx = np.intersect1d(_fold_rows(cohort, fm), wanted)
        if len(idx) == 0:
            continue
        tab = _fold_tabular(fm, X_raw, idx)
        cams[idx] = compute_cams(fm.model, model_inputs(fm, images[idx]),
                                 None if tab is None else torch.from_numpy(tab), target_class, method)
    return cams


def oof_shap(fold_models: Sequence[FoldModel], cohort: pd.DataFrame, images: np.ndarray | None,
             n_explain: int, n_samples: int, n_background: int, seed: int) -> tuple[shap.Explanation, list[str]]:
    """Grouped SHAP values of the clinical inputs for out-of-fold patients (a random sample of them).

    Each patient (one image of each person) is explained by the fold model that did not train on it, against
    a background of that fold's training patients; values are grouped back to the clinical features before folds are
    pooled, so folds whose one-hot columns differ still line up.
    """
    import shap  # deferred: 1.5 s, only where an explanation is made or drawn

    X_raw = to_model_frame(cohort)
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(~person_key(cohort).duplicated().to_numpy())  # one image per person
    picks = candidates[rng.permutation(len(candidates))][:n_explain]
    values, data, base, ids, names = [], [], [], [], None
    for fm in fold_models:
        rows = np.intersect1d(_fold_rows(cohort, fm), picks)
        if len(rows) == 0:
            continue
        train = np.setdiff1d(np.arange(len(cohort)), _fold_rows(cohort, fm))
        background = _fold_tabular(fm, X_raw, train)
        X = _fold_tabular(fm, X_raw, rows)
        feature_names = list(fm.preprocessor.get_feature_names_out())
        if fm.model.mode == "fusion":
            inputs = model_inputs(fm, images[rows])
            fn: Any = [tabular_predict_fn(fm.model, inputs[i]) for i in range(len(rows))]
        else:
            fn = tabular_predict_fn(fm.model)
        raw = shap_values_tabular(fn, background, X, feature_names, n_samples=n_samples, seed=seed,
                                  max_background=n_background)
        grouped = group_shap(raw)
        order = list(grouped.feature_names)
        names = names or order
        reorder = [order.index(n) for n in names]
        values.append(np.asarray(grouped.values)[:, reorder])
        data.append(np.asarray(grouped.data, dtype=object)[:, reorder])
        base.append(np.atleast_1d(grouped.base_values).reshape(-1)[: len(rows)] if np.size(grouped.base_values) > 1
                    else np.repeat(grouped.base_values, len(rows)))
        ids += cohort["patient_id"].to_numpy()[rows].tolist()
    explanation = shap.Explanation(values=np.vstack(values), base_values=np.concatenate(base),
                                   data=np.vstack(data), feature_names=names)
    return explanation, ids


def oof_permutation_importance(fold_models: Sequence[FoldModel], cohort: pd.DataFrame, images: np.ndarray | None,
                               y: np.ndarray, n_repeats: int, seed: int) -> pd.DataFrame:
    """Drop in pooled out-of-fold AUROC when one clinical feature is shuffled (each fold's own model). Where a
    person has several images, people are shuffled (their images keep one record) and scored as the
    out-of-fold tables score them (`arms.persons.pooled_probabilities`)."""
    X_raw = to_model_frame(cohort)
    units = person_key(cohort).to_numpy() if several_rows_per_person(cohort) else None
    codes = pd.factorize(units)[0] if units is not None else None
    y_units = np.asarray(y) if codes is None else pd.Series(np.asarray(y)).groupby(codes).first().to_numpy()
    fold_rows = [(fm, _fold_rows(cohort, fm)) for fm in fold_models]
    embeddings: dict[int, torch.Tensor] = {}  # image embeddings do not change when clinical inputs are shuffled
    with torch.no_grad():
        for k, (fm, rows) in enumerate(fold_rows):
            if fm.model.mode == "fusion":
                embeddings[k] = fm.model.image_encoder(model_inputs(fm, images[rows]).to(_device(fm)))

    def scores(matrices: list[np.ndarray]) -> list[float]:
        # every matrix through each fold's preprocessor in one call (its transformers work row by row, so
        # the rows come out as they would one matrix at a time; the calls' overhead was 80 % of the time)
        n, m = len(cohort), len(matrices)
        frame = pd.DataFrame(np.concatenate(matrices), columns=X_raw.columns).astype(X_raw.dtypes.to_dict())
        tables = [fm.preprocessor.transform(frame.iloc[(rows[None, :] + n * np.arange(m)[:, None]).ravel()])
                  .astype(np.float32).reshape(m, len(rows), -1) for fm, rows in fold_rows]
        out = []
        for b in range(m):
            prob = np.empty(n)
            for k, (fm, rows) in enumerate(fold_rows):
                tab = torch.from_numpy(tables[k][b]).to(_device(fm))
                with torch.no_grad():
                    parts = ([embeddings[k]] if k in embeddings else []) + [fm.model.tabular_encoder(tab)]
                    logits = fm.model.head(torch.cat(parts, dim=1))
                prob[rows] = torch.softmax(logits, 1)[:, 1].cpu().numpy()
            if codes is not None:
                prob = pooled_probabilities(pd.DataFrame({"n": 1 - prob, "p": prob}), codes)["p"].to_numpy()
            out.append(binary_point_metrics(y_units, prob)["auroc"])
        return out

    return permutation_importance_grouped(scores, X_raw.to_numpy(dtype=object), list(X_raw.columns),
                                          groups=lambda name: name, n_repeats=n_repeats, seed=seed, batched=True,
                                          units=units)


def row_scores(oof: pd.DataFrame, cohort: pd.DataFrame, seed: int) -> np.ndarray:
    """P(low BMD) out of fold in repeat ``seed`` of every ``cohort`` row (image), aligned with it: the score of
    the row's person where a person has several images (their out-of-fold table has one row per person)."""
    table = oof[oof["seed"] == seed].set_index("patient_id")
    return table.loc[person_key(cohort).to_numpy(), prob_columns(oof)[1]].to_numpy()


def gallery_picks(truth: np.ndarray, prob: np.ndarray, n: int, seed: int) -> dict[tuple[int, bool], list[int]]:
    """Up to ``n`` random patients per (true class, correctly classified at 0.5), for CAM galleries."""
    rng = np.random.default_rng(seed)
    pred = (np.asarray(prob) >= 0.5).astype(int)
    picks = {}
    for label in (0, 1):
        for correct in (True, False):
            idx = np.flatnonzero((truth == label) & ((pred == truth) == correct))
            if len(idx):
                picks[(label, correct)] = sorted(rng.choice(idx, size=min(n, len(idx)), replace=False).tolist())
    return picks


def reliance_text(shap_values: shap.Explanation, perm: pd.DataFrame, ranks: pd.DataFrame,
                  where: pd.DataFrame) -> str:
    """What the model relies on, by both importance measures, and where its image evidence lies."""
    rho, n = rank_spearman(ranks)
    top_shap = shap_importance(shap_values).iloc[0]["feature"]
    top_perm = perm.iloc[0]
    agree = (f"The two rankings agree with Spearman rho = {rho:.2f} over {n} features." if np.isfinite(rho) else
             f"The two rankings of {n} features cannot be correlated (one of them is constant).")
    image = ("On the image side, every Grad-CAM map is empty: where the model looks is not estimable."
             if where["bone_share"].isna().all() else
             f"On the image side, a median {where.bone_share.median():.0%} of the Grad-CAM evidence lies on the bone "
             f"mask and {where.border_share.median():.0%} in the border band.")
    return (f"**What the model relies on.** The clinical feature with the largest mean |SHAP| is `{top_shap}`; "
            f"the one whose shuffling costs the most out-of-fold AUROC is `{top_perm['feature']}` (drop "
            f"{top_perm['mean_drop']:.3f}). {agree} {image}")
