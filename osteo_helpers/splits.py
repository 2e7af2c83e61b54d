"""Fold assignment: stratified, grouped by person, repeated over seeds.

Rows that are one person (byte-identical images, or an identical clinical record; see
`data.person_groups`) share a `split_group`, so they always land in the same fold; otherwise
a model could be tested on an image, or a patient, it was trained on.

Which fold a group lands in follows the group's content, not its name (`group_keys`): scikit-learn
orders groups by their labels before shuffling, so labels made of patient IDs gave a pseudonymised
copy of a cohort (every ID hashed) other folds, other inner folds and other numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from sklearn import model_selection
from sklearn.model_selection import StratifiedKFold

from .errors import UsageError
from .vocabulary import INPUT_FEATURES

#: each row's decoded-pixel checksum (`images.PixelHashes`; absent in tables made without images)
CONTENT_COLUMN = "pixel_sha256"
#: significant digits of a record's numbers in its key: a unit round trip (39 kg as 85.98 lb) keeps the key
RECORD_DIGITS = 4


def _record_keys(rows: pd.DataFrame) -> pd.Series:
    """A row's outcome and clinical inputs as text, numbers to `RECORD_DIGITS` significant digits: the
    content of a row without an image."""
    columns = [c for c in ("label_3class", "t_score", *INPUT_FEATURES) if c in rows.columns]

    def cell(value: object) -> str:
        if value is None or (not isinstance(value, str) and pd.isna(value)):
            return ""
        return f"{value:.{RECORD_DIGITS}g}" if isinstance(value, (float, np.floating)) else str(value)

    return pd.Series(["|".join(map(cell, record)) for record in rows[columns].itertuples(index=False)],
                     index=rows.index, dtype=object)


def group_keys(rows: pd.DataFrame, group: str = "split_group") -> np.ndarray:
    """Each row's group, labelled by its content: the smallest pixel checksum among its rows' images (a
    row without an image: its record, `_record_keys`). Splitters order groups by label, so folds then do
    not depend on how IDs are spelled or rows ordered. Groups linked by one picture under different bytes
    (which `data.person_groups`, reading bytes, cannot see), directly or through a chain, get one label
    and share a fold. Without a `CONTENT_COLUMN` the names are kept."""
    names = rows[group].to_numpy()
    if CONTENT_COLUMN not in rows.columns:
        return names
    keys = _row_keys(rows)
    groups, _ = pd.factorize(names)
    contents, _ = pd.factorize(keys)
    n = groups.max(initial=-1) + 1
    size = n + contents.max(initial=-1) + 1
    graph = coo_matrix((np.ones(len(rows)), (groups, n + contents)), shape=(size, size))
    _, component = connected_components(graph, directed=False)
    return keys.groupby(component[groups]).transform("min").to_numpy()


def _row_keys(rows: pd.DataFrame) -> pd.Series:
    """Each row's own content: its image's pixel checksum, else its record."""
    if CONTENT_COLUMN not in rows.columns:
        return _record_keys(rows)
    content = rows[CONTENT_COLUMN]
    return content.where(content.notna(), _record_keys(rows)) if content.isna().any() else content


def content_order(rows: pd.DataFrame, group: str = "split_group") -> np.ndarray:
    """Positions that sort rows by their group's content, then their own (image, then record): a table in
    this order is the same whatever order its rows came in, and so are the mini-batches and optimiser
    sums of every fit on it. Ties (the same picture twice) keep the given order."""
    keys = _row_keys(rows)
    return np.lexsort((_record_keys(rows).to_numpy(), keys.to_numpy(), group_keys(rows, group)))


class StratifiedGroupKFold(model_selection.StratifiedGroupKFold):
    """scikit-learn's StratifiedGroupKFold, the same folds for the same input, with its search for each
    group's fold done for all folds at once: the permutation null makes thousands of these splits, and
    the per-fold loop cost more than the models fitted on them (tests/test_splits.py compares both)."""

    def _find_best_fold(self, y_counts_per_fold: np.ndarray, y_cnt: np.ndarray,
                        group_y_counts: np.ndarray) -> int:
        k = self.n_splits
        proposed = np.repeat(y_counts_per_fold[None], k, axis=0)  # proposal i: the group added to fold i
        proposed[np.arange(k), np.arange(k)] += group_y_counts
        fold_eval = np.mean(np.std(proposed / y_cnt.reshape(1, 1, -1), axis=1), axis=1).tolist()
        samples = y_counts_per_fold.sum(axis=1).tolist()
        best, min_eval, min_samples = 0, np.inf, np.inf
        for i in range(k):  # scikit-learn's order and tie-breaking (np.isclose): the least populated of equal folds
            close = min_eval != np.inf and abs(fold_eval[i] - min_eval) <= 1e-8 + 1e-5 * abs(min_eval)
            if fold_eval[i] < min_eval or (close and samples[i] < min_samples):
                best, min_eval, min_samples = i, fold_eval[i], samples[i]
        return best


def check_fold_count(cohort: pd.DataFrame, label: str, n_folds: int, group: str = "split_group",
                     class_names: tuple[str, ...] | None = None) -> None:
    """UsageError unless every class has at least ``n_folds`` person groups: otherwise some test fold
    would hold no one of that class (checked before any work)."""
    counts = cohort.groupby(label)[group].nunique()
    if counts.empty or int(counts.min()) < n_folds:
        smallest = counts.idxmin() if not counts.empty else None
        name = class_names[int(smallest)] if class_names and smallest is not None else smallest
        have = int(counts.min()) if not counts.empty else 0
        raise UsageError(f"profile field 'n_folds': {n_folds} is not allowed for this dataset (must be at most "
                         f"{have}: the class {name} has {have} people)")


def make_folds(cohort: pd.DataFrame, label: str, n_folds: int, n_repeats: int, seed: int,
               group: str | None = "split_group") -> pd.DataFrame:
    """Outer folds for repeated CV: one row per (patient, repeat) with `seed` and `fold`.

    `group=None` gives naive stratified folds, used only to show how much leakage inflates.
    """
    y = cohort[label].to_numpy()
    rows = []
    for r in range(n_repeats):
        rep_seed = seed + r
        if group is None:
            splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=rep_seed)
            splits = splitter.split(np.zeros(len(y)), y)
        else:
            splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=rep_seed)
            splits = splitter.split(np.zeros(len(y)), y, groups=group_keys(cohort, group))
        for k, (_, test_idx) in enumerate(splits):
            rows.append(pd.DataFrame({"patient_id": cohort["patient_id"].to_numpy()[test_idx],
                                      "seed": rep_seed, "fold": k}))
    folds = pd.concat(rows, ignore_index=True)
    return folds.sort_values(["seed", "fold", "patient_id"]).reset_index(drop=True)


def restratify(folds: pd.DataFrame, cohort: pd.DataFrame, labels: np.ndarray,
               group: str | None = "split_group") -> pd.DataFrame:
    """The same fold layout as ``folds`` (number of folds, repeats and their seeds, grouping), made
    afresh stratified on ``labels`` (one per cohort row), e.g. a permutation of the labels.

    Folds stratified on the real labels while the labels are shuffled give training folds whose
    shuffled class balance varies against their test folds', which pushes a model without signal
    below AUROC 0.5; folds re-stratified on every permuted label vector keep the null at chance.
    """
    seeds = sorted(int(s) for s in folds["seed"].unique())
    if seeds != list(range(seeds[0], seeds[0] + len(seeds))):
        raise ValueError(f"folds' seeds {seeds} are not consecutive: not a layout make_folds made")
    return make_folds(cohort.assign(_stratum=np.asarray(labels)), "_stratum", int(folds["fold"].nunique()),
                      len(seeds), seeds[0], group=group)


def inner_split(cohort: pd.DataFrame, label: str, val_fraction: float, seed: int,
                group: str = "split_group") -> tuple[np.ndarray, np.ndarray]:
    """Split training patients into fit / validation (for early stopping), grouped and stratified, in
    ``1 / val_fraction`` folds; where every class has fewer rows, or the rows fewer groups, than that (a few
    localised knees of a small cohort), in as many folds as the largest class has rows and the rows have
    groups (at least 2)."""
    largest = int(pd.Series(cohort[label].to_numpy()).value_counts().max())
    groups = len(set(group_keys(cohort, group)))
    n_splits = max(2, min(round(1 / val_fraction), largest, groups))
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    fit_idx, val_idx = next(splitter.split(np.zeros(len(cohort)), cohort[label].to_numpy(),
                                           groups=group_keys(cohort, group)))
    return fit_idx, val_idx


def iter_folds(folds: pd.DataFrame):
    """Yield (seed, fold, test patient IDs) in a stable order."""
    for (seed, fold), part in folds.groupby(["seed", "fold"], sort=True):
        yield int(seed), int(fold), set(part["patient_id"])


def check_group_integrity(folds: pd.DataFrame, cohort: pd.DataFrame, group: str = "split_group") -> list[str]:
    """Groups split across folds within one repeat (should be empty for grouped folds)."""
    merged = folds.merge(cohort[["patient_id", group]], on="patient_id")
    spread = merged.groupby(["seed", group])["fold"].nunique()
    return sorted({g for (_, g), n in spread.items() if n > 1})
