"""Which clinical inputs drive the predictions: SHAP attributions and grouped permutation importance.

`shap_values_tabular` gives local attributions on the transformed (one-hot, missing-indicator)
columns and `group_shap` sums them back to the clinical column the clinician knows;
`permutation_importance_grouped` is a model-agnostic global check on out-of-fold data, and
`rank_comparison` puts both rankings side by side.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import torch
from scipy import stats

from ..models import FusionNet
from ..tabular import original_feature

if TYPE_CHECKING:
    import shap

# --------------------------------------------------------------------------- SHAP


def tabular_predict_fn(model: FusionNet, image: torch.Tensor | None = None, class_index: int | None = 1,
                       batch_size: int = 8192) -> Callable[[np.ndarray], np.ndarray]:
    """`X -> model output` over clinical rows, with one patient's image (or its features) held fixed (mode 'fusion').

    The image embedding is computed once, so SHAP's thousands of evaluations only run the small
    tabular MLP and head. Returns softmax probability of `class_index` (all classes if None), or
    the raw output for a single-output regression model.
    """
    if model.mode == "image":
        raise ValueError("mode 'image' has no clinical inputs to explain")
    device = next(model.parameters()).device
    embedding: torch.Tensor | None = None
    if model.mode == "fusion":
        if image is None:
            raise ValueError("mode 'fusion' needs the patient's image")
        # a feature vector of the frozen encoder (D,), or a grey image (S, S) or (1, S, S): a batch of one
        img = (image[None] if image.ndim == 1 else image.reshape(1, 1, *image.shape[-2:])).to(device, torch.float32)
        was = model.training
        model.eval()
        with torch.no_grad():
            embedding = model.image_encoder(img)
        model.train(was)

    def predict(X: np.ndarray) -> np.ndarray:
        was_training = model.training
        model.eval()
        outs = []
        try:
            with torch.no_grad():
                for start in range(0, len(X), batch_size):
                    x = torch.as_tensor(np.asarray(X[start:start + batch_size]), dtype=torch.float32, device=device)
                    parts = [model.tabular_encoder(x)]
                    if embedding is not None:
                        parts.insert(0, embedding.expand(x.shape[0], -1))
                    outs.append(model.head(torch.cat(parts, dim=1)))
        finally:
            model.train(was_training)
        logits = torch.cat(outs) if outs else torch.empty(0, model.head[-1].out_features)
        if logits.shape[1] == 1:
            return logits[:, 0].cpu().numpy()
        probs = torch.softmax(logits, dim=1).cpu().numpy()
        return probs if class_index is None else probs[:, class_index]

    return predict


def shap_values_tabular(predict_fn: Callable[[np.ndarray], np.ndarray] | Sequence[Callable[[np.ndarray], np.ndarray]],
                        X_background: np.ndarray, X_explain: np.ndarray, feature_names: Sequence[str],
                        n_samples: int | None = None, seed: int = 0, max_background: int = 50,
                        class_index: int | None = None) -> shap.Explanation:
    """SHAP values of the transformed clinical columns, by shap's KernelExplainer.

    KernelSHAP is model-agnostic, exactly additive (values + base = prediction, enforced by its
    constrained regression) and needs no JIT compilation (shap's PermutationExplainer spends
    10-20 s compiling numba code in each new process). `n_samples` is the number of feature
    coalitions per patient (default shap's 2p + 2048); each is averaged over the background,
    subsampled to `max_background` rows with `seed`, so a patient costs n_samples x background
    model rows: 2168 x 50 = 108 k rows for p = 60. No L1 feature selection is applied (shap's
    default keeps only 10 features). Sampling uses NumPy's global generator, seeded from `seed`
    for each call and restored afterwards, so results are reproducible and the caller's random
    state is untouched.

    `predict_fn` returns one probability per row (or class probabilities, of which `class_index`
    picks one). Pass one function per row of `X_explain` to explain a fusion model with each
    patient's own image (see `tabular_predict_fn`).
    """
    import shap  # deferred: 1.5 s, only where an explanation is made or drawn

    X_background = np.asarray(X_background, dtype=np.float64)
    X_explain = np.atleast_2d(np.asarray(X_explain, dtype=np.float64))
    names = list(feature_names)
    p = X_explain.shape[1]
    if len(names) != p or X_background.shape[1] != p:
        raise ValueError(f"{len(names)} names, background {X_background.shape[1]} and explain {p} columns differ")
    n_samples = 2 * p + 2048 if n_samples is None else int(n_samples)
    if n_samples < p + 2:
        raise ValueError(f"n_samples={n_samples} too low for {p} features (need at least p + 2)")
    rng = np.random.default_rng(seed)
    if len(X_background) > max_background:
        X_background = X_background[np.sort(rng.choice(len(X_background), max_background, replace=False))]
    per_row = isinstance(predict_fn, Sequence)
    if per_row and len(predict_fn) != len(X_explain):
        raise ValueError(f"{len(predict_fn)} predict functions for {len(X_explain)} rows")

    def select(fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
        def f(X: np.ndarray) -> np.ndarray:
            out = np.asarray(fn(X), dtype=np.float64)
            return out[:, class_index] if (class_index is not None and out.ndim == 2) else out
        return f

    def explain(fn: Callable[[np.ndarray], np.ndarray], X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        explainer = shap.KernelExplainer(select(fn), X_background)
        np.random.seed(seed)
        values = np.asarray(explainer.shap_values(X, nsamples=n_samples, l1_reg=False, silent=True))
        base = np.broadcast_to(np.asarray(explainer.expected_value, dtype=np.float64),
                               (len(X), *np.shape(explainer.expected_value)))
        return values, base

    state = np.random.get_state()
    try:
        if per_row:
            parts = [explain(fn, X_explain[i:i + 1]) for i, fn in enumerate(predict_fn)]
        else:
            parts = [explain(predict_fn, X_explain)]  # type: ignore[arg-type]
    finally:
        np.random.set_state(state)
    return shap.Explanation(values=np.concatenate([v for v, _ in parts]),
                            base_values=np.concatenate([b for _, b in parts]),
                            data=X_explain, feature_names=names)


def feature_groups(feature_names: Sequence[str],
                   mapper: Callable[[str], str] | Mapping[str, str] = original_feature) -> dict[str, list[int]]:
    """Column indices per original clinical feature, in order of first appearance."""
    lookup = mapper.get if isinstance(mapper, Mapping) else mapper
    groups: dict[str, list[int]] = {}
    for j, name in enumerate(feature_names):
        key = lookup(name)
        groups.setdefault(name if key is None else key, []).append(j)
    return groups


def _level(column: str, group: str) -> str:
    short = column.split("__", 1)[-1]
    return short[len(group) + 1:] if short.startswith(group + "_") else short


def group_shap(shap_values: shap.Explanation | tuple[np.ndarray, np.ndarray],
               feature_names: Sequence[str] | None = None,
               mapper: Callable[[str], str] | Mapping[str, str] = original_feature) -> shap.Explanation:
    """SHAP values summed per original clinical feature (one-hot levels, missing indicators).

    Shapley values are additive over players, so the sum over a feature's columns is that
    feature's contribution and row totals (hence base + sum = prediction) are unchanged.
    Grouped `data`: the column's value for single-column features; the value column for a
    numeric feature with a missing indicator (the scaled, median-imputed value); NaN for one-hot
    features, whose active level (or 'none' if all zero) goes to `display_data` for waterfalls.
    Values may be (n, p) or (n, p, k) for multi-output explanations.
    """
    import shap  # deferred: 1.5 s, only where an explanation is made or drawn

    if isinstance(shap_values, shap.Explanation):
        values = np.asarray(shap_values.values, dtype=np.float64)
        data = None if shap_values.data is None else np.asarray(shap_values.data, dtype=np.float64)
        base = shap_values.base_values
        names = list(feature_names if feature_names is not None else shap_values.feature_names)
    else:
        values, data = (np.asarray(a, dtype=np.float64) for a in shap_values)
        base = None
        if feature_names is None:
            raise ValueError("feature_names are needed with a (values, data) pair")
        names = list(feature_names)
    if values.ndim not in (2, 3) or values.shape[1] != len(names):
        raise ValueError(f"values {values.shape} do not match {len(names)} feature names")
    groups = feature_groups(names, mapper)
    grouped_values = np.stack([values[:, idx].sum(axis=1) for idx in groups.values()], axis=1)
    n = values.shape[0]
    grouped_data = np.full((n, len(groups)), np.nan)
    display = np.empty((n, len(groups)), dtype=object)
    has_levels = False
    for g, (group, idx) in enumerate(groups.items()):
        value_cols = [j for j in idx if "missingindicator_" not in names[j]]
        if data is None:
            continue
        if len(value_cols) == 1:
            grouped_data[:, g] = data[:, value_cols[0]]
            display[:, g] = data[:, value_cols[0]]
        else:
            has_levels = True
            block = data[:, idx]
            active = np.argmax(block, axis=1)
            levels = np.array([_level(names[j], group) for j in idx], dtype=object)
            display[:, g] = np.where(block.max(axis=1) > 0, levels[active], "none")
    return shap.Explanation(values=grouped_values, base_values=base,
                            data=None if data is None else grouped_data,
                            display_data=display if has_levels else None, feature_names=list(groups))


def select_output(explanation: shap.Explanation, class_index: int | None) -> shap.Explanation:
    """The explanation of one output: multi-output (n, p, k) values need `class_index` to pick it."""
    if np.ndim(explanation.values) == 3:
        if class_index is None:
            raise ValueError("multi-output explanation: pass class_index")
        return explanation[..., class_index]
    return explanation


def shap_importance(grouped: shap.Explanation, class_index: int | None = None) -> pd.DataFrame:
    """Mean |SHAP| per feature, sorted: the table behind the bar plot, for `rank_comparison`."""
    expl = select_output(grouped, class_index)
    table = pd.DataFrame({"feature": list(expl.feature_names),
                          "mean_abs_shap": np.abs(np.asarray(expl.values)).mean(axis=0)})
    return table.sort_values("mean_abs_shap", ascending=False, ignore_index=True)


# --------------------------------------------------------------------------- permutation importance


#: matrices a batched score function gets per call (`permutation_importance_grouped`)
SCORE_BATCH = 32


def permutation_importance_grouped(score_fn: Callable, X: np.ndarray, feature_names: Sequence[str],
                                   groups: Callable[[str], str] | Mapping[str, str] = original_feature,
                                   n_repeats: int = 10, seed: int = 0, batched: bool = False,
                                   units: np.ndarray | None = None) -> pd.DataFrame:
    """Drop in score when one original feature's columns are shuffled together across patients.

    All transformed columns of a feature (one-hot levels, value + missing indicator) are permuted
    with the same row order, so every shuffled row is still a valid encoding. `score_fn(X)` must
    score predictions of a model not fitted on these rows (out-of-fold), higher = better (e.g.
    AUROC); with ``batched`` it takes a list of up to `SCORE_BATCH` matrices (the unpermuted one
    first) and returns their scores, so that a costly per-call step runs once per list. Returns feature,
    n_columns, mean_drop, std_drop (population std over repeats, as in scikit-learn) and the
    unpermuted baseline, sorted by mean_drop. ``units``: each row's unit (a person's images are one unit):
    the units are shuffled, so the rows of one unit keep one value of the feature (without it, the rows).
    """
    X = np.asarray(X)
    names = list(feature_names)
    if X.ndim != 2 or X.shape[1] != len(names):
        raise ValueError(f"X {X.shape} does not match {len(names)} feature names")
    rng = np.random.default_rng(seed)
    features = feature_groups(names, groups)
    codes = np.arange(len(X)) if units is None else pd.factorize(np.asarray(units))[0]
    first = pd.Series(np.arange(len(X))).groupby(codes).first().to_numpy()  # each unit's first row

    def permuted() -> Iterator[np.ndarray]:
        for idx in features.values():
            for _ in range(n_repeats):
                Xp = X.copy()
                Xp[:, idx] = X[first[rng.permutation(len(first))][codes]][:, idx]
                yield Xp

    if batched:  # SCORE_BATCH matrices per call: the speed of one call for all, in bounded memory
        matrices = itertools.chain([X], permuted())
        scores = np.concatenate([np.asarray(score_fn(chunk), dtype=float)
                                 for chunk in iter(lambda: list(itertools.islice(matrices, SCORE_BATCH)), [])])
    else:
        scores = np.fromiter((score_fn(m) for m in itertools.chain([X], permuted())), dtype=float)
    baseline = float(scores[0])
    drops = (baseline - scores[1:]).reshape(len(features), n_repeats)
    rows = [{"feature": feature, "n_columns": len(idx), "mean_drop": d.mean(), "std_drop": d.std(),
             "baseline": baseline} for (feature, idx), d in zip(features.items(), drops, strict=True)]
    return pd.DataFrame(rows).sort_values("mean_drop", ascending=False, ignore_index=True)


def _scores(table: pd.DataFrame | pd.Series, column: str) -> pd.Series:
    if isinstance(table, pd.Series):
        return table.astype(float).rename(column)
    frame = table.set_index("feature") if "feature" in table.columns else table
    return frame[column].astype(float)


def rank_comparison(shap_df: pd.DataFrame | pd.Series, perm_df: pd.DataFrame | pd.Series,
                    shap_col: str = "mean_abs_shap", perm_col: str = "mean_drop") -> pd.DataFrame:
    """SHAP and permutation rankings side by side (rank 1 = most important; outer join on feature).

    Features the two methods disagree on (large |rank_diff|) deserve a look: correlated inputs
    share SHAP credit but each loses little when permuted alone.
    """
    s, p = _scores(shap_df, shap_col), _scores(perm_df, perm_col)
    table = pd.concat([s.rename(shap_col), p.rename(perm_col)], axis=1)
    table.index.name = "feature"
    table["shap_rank"] = table[shap_col].rank(ascending=False, method="min")
    table["perm_rank"] = table[perm_col].rank(ascending=False, method="min")
    table["rank_diff"] = table["shap_rank"] - table["perm_rank"]
    return table.reset_index().sort_values(["shap_rank", "perm_rank"], ignore_index=True)


def rank_spearman(comparison: pd.DataFrame, shap_col: str = "mean_abs_shap",
                  perm_col: str = "mean_drop") -> tuple[float, int]:
    """Spearman correlation between the two importance scores over features present in both, and n."""
    both = comparison[[shap_col, perm_col]].dropna()
    if len(both) < 3:
        return float("nan"), len(both)
    rho = stats.spearmanr(both[shap_col], both[perm_col]).statistic
    return float(rho), len(both)
