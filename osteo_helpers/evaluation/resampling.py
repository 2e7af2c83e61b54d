"""Bootstrap resampling of patients or of whole split groups, and percentile intervals.

Patients that share a ``split_group`` (byte-identical images, identical clinical records)
are one person or one picture: resampling them independently would count the same
information twice and make every interval too narrow. With ``groups`` the bootstrap draws
whole groups with replacement; without, every patient is its own group, which is the plain
patient bootstrap (same random stream, so the same numbers as before groups existed).

Resampling is stratified: the groups of each class are resampled within that class, so
every resample keeps each class's number of groups (and, for singleton groups, of
patients) and AUROC or per-class sensitivity stay defined. A group whose members have
different classes goes into its own ``mixed`` stratum.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike

__all__ = ["bootstrap_indices", "percentile_ci"]

_BATCH_CELLS = 2_000_000
"""Upper bound on resamples x patients x classes held in memory at once."""

GroupsLike = ArrayLike | Mapping | pd.Series
"""One group label per patient (aligned array), or patient_id -> group."""


@dataclass(frozen=True)
class _Layout:
    """Groups in stratum order; group g owns patients ``members[starts[g]:starts[g] + sizes[g]]``
    and lies in stratum ``stratum_of[g]``."""

    members: np.ndarray
    starts: np.ndarray
    sizes: np.ndarray
    stratum_of: np.ndarray


def group_codes(groups: ArrayLike | None, n: int) -> np.ndarray | None:
    """Integer group code per patient (order of first appearance), or None."""
    if groups is None:
        return None
    labels = np.asarray(groups, dtype=object)
    if labels.ndim != 1 or len(labels) != n:
        raise ValueError(f"groups must be 1-D with one label per patient ({n}), got shape {labels.shape}")
    codes, _ = pd.factorize(labels)
    if (codes < 0).any():
        raise ValueError("groups contains missing labels")
    return codes


def group_lookup(groups: GroupsLike, row_ids: ArrayLike) -> pd.Series:
    """patient_id -> group, from a mapping/Series or from labels aligned with ``row_ids``.

    Aligned labels come from a table with several rows per patient (an OOF table with
    repeats); each patient must carry one group on all its rows.
    """
    if isinstance(groups, Mapping):
        return pd.Series(groups, dtype=object)
    if isinstance(groups, pd.Series):
        return groups
    ids = np.asarray(row_ids, dtype=object)
    labels = np.asarray(groups, dtype=object)
    if labels.shape != ids.shape:
        raise ValueError(f"groups has {len(labels)} entries for {len(ids)} table rows")
    aligned = pd.Series(labels, index=pd.Index(ids))
    n_groups = aligned.groupby(level=0).nunique(dropna=False)
    if (n_groups > 1).any():
        raise ValueError(f"patients with more than one group: {n_groups.index[n_groups > 1].tolist()[:10]}")
    return aligned[~aligned.index.duplicated()]


def groups_for_patients(patient_ids: ArrayLike, lookup: pd.Series) -> np.ndarray:
    """Group label of each patient, in the order of ``patient_ids``."""
    if not lookup.index.is_unique:
        raise ValueError("groups maps some patient_id more than once")
    ids = pd.Index(np.asarray(patient_ids, dtype=object))
    missing = ids.difference(lookup.index)
    if len(missing):
        raise ValueError(f"no group for patients {missing.tolist()[:10]} (index groups by patient_id)")
    return lookup.reindex(ids).to_numpy()


def _layout(strata: np.ndarray, codes: np.ndarray) -> _Layout:
    """Groups ordered by stratum (classes ascending, then ``mixed``), then by first appearance."""
    per_group = pd.Series(strata).groupby(codes, sort=True).agg(["min", "max"])
    mixed = per_group["min"] != per_group["max"]
    group_stratum = np.where(mixed, strata.max() + 1, per_group["min"]).astype(int)
    group_order = np.argsort(group_stratum, kind="stable")
    rank = np.empty_like(group_order)
    rank[group_order] = np.arange(len(group_order))
    members = np.argsort(rank[codes], kind="stable")
    sizes = np.bincount(codes)[group_order]
    return _Layout(members, np.cumsum(sizes) - sizes, sizes, group_stratum[group_order])


def _expand(layout: _Layout, drawn: np.ndarray) -> Iterator[np.ndarray]:
    """Patient index arrays for drawn groups (b, n_groups), one array per resample size."""
    sizes = layout.sizes[drawn]
    totals = sizes.sum(axis=1)
    for total in np.unique(totals):
        rows = drawn[totals == total]
        lengths = layout.sizes[rows].ravel()
        first = layout.starts[rows].ravel()
        offsets = np.cumsum(lengths) - lengths
        positions = np.repeat(first - offsets, lengths) + np.arange(lengths.sum())
        yield layout.members[positions].reshape(len(rows), int(total))


def bootstrap_indices(
    y: ArrayLike,
    n_boot: int,
    seed: int = 0,
    groups: ArrayLike | None = None,
    stratify: bool = True,
    cells_per_row: int | None = None,
) -> Iterator[np.ndarray]:
    """Patient index arrays of shape (b, m), b resamples at a time, n_boot in all.

    Each resample draws, within each stratum (class of ``y``, or one stratum when
    ``stratify`` is False), as many groups as the stratum holds, with replacement, and
    takes all members of every drawn group. With unequal group sizes the number of
    patients m varies between resamples, so resamples come in batches of equal m.
    ``cells_per_row`` (patients x classes per resample) only sets the batch size, which
    bounds the memory of the metric kernels; the resamples themselves depend on ``y``,
    ``groups``, ``n_boot`` and ``seed`` alone, so every metric drawn with the same seed
    sees the same resamples.
    """
    if n_boot < 1:
        raise ValueError("n_boot must be >= 1")
    labels = np.asarray(y)
    n = len(labels)
    strata = pd.factorize(labels, sort=True)[0] if stratify else np.zeros(n, dtype=int)
    codes = group_codes(groups, n)
    layout = _layout(strata, np.arange(n) if codes is None else codes)
    counts = np.bincount(layout.stratum_of)
    firsts = np.cumsum(counts) - counts
    rng = np.random.default_rng(seed)
    draws = [first + rng.integers(0, count, size=(n_boot, count)) for first, count in zip(firsts, counts, strict=True)
             if count]
    drawn = np.concatenate(draws, axis=1)
    rows_per_batch = max(1, _BATCH_CELLS // max(1, cells_per_row or n))
    for start in range(0, n_boot, rows_per_batch):
        yield from _expand(layout, drawn[start : start + rows_per_batch])


def percentile_ci(values: np.ndarray, ci: float) -> tuple[float, float]:
    """Percentile interval over the resamples where the metric is defined."""
    if not 0 < ci < 1:
        raise ValueError("ci must lie strictly between 0 and 1")
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.nan, np.nan
    tail = 100 * (1 - ci) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def collect(batches: Iterator[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Concatenate batched metric tables key by key."""
    parts: dict[str, list[np.ndarray]] = {}
    for table in batches:
        for key, val in table.items():
            parts.setdefault(key, []).append(val)
    return {key: np.concatenate(vals) for key, vals in parts.items()}


def ci_frame(point: dict[str, float], boot: dict[str, np.ndarray], ci: float) -> pd.DataFrame:
    """Long table metric, value, ci_low, ci_high."""
    rows = [(key, value, *percentile_ci(boot[key], ci)) for key, value in point.items()]
    return pd.DataFrame(rows, columns=["metric", "value", "ci_low", "ci_high"])
