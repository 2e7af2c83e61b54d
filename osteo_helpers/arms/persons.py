"""Several images of one person (both knees, several views): one score per person.

Rows are images; the spec's person ID joins one person's rows into one split group, so they share
a fold. When the out-of-fold table is assembled, a person's probabilities are the softmax of the
mean of their images' log-probabilities: for two classes, the logistic of the mean image logit.
A cohort with one image per person is left exactly as it is.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..evaluation import PROB_PREFIX


def several_rows_per_person(rows: pd.DataFrame) -> bool:
    return "person_id" in rows.columns and bool(rows["person_id"].duplicated().any())


def person_key(rows: pd.DataFrame) -> pd.Series:
    """Each row's key in the out-of-fold tables (indexed by the row's ``patient_id``): its person where a
    person has several rows, else the row's own ID."""
    key = rows["person_id"] if several_rows_per_person(rows) else rows["patient_id"]
    return pd.Series(key.to_numpy(), index=rows["patient_id"].to_numpy(), name="patient_id")


def person_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per person, keyed (``patient_id``) as the out-of-fold tables are: each person's first row with
    the person's ID as ``patient_id``, so that subsets (a sex, an age band) and per-patient lookups made from it
    meet the tables' rows; ``rows`` themselves when every person has one row."""
    if not several_rows_per_person(rows):
        return rows
    return rows.drop_duplicates("person_id").assign(patient_id=lambda t: t["person_id"]).reset_index(drop=True)


def permutation_by_person(rows: pd.DataFrame, rng: np.random.Generator) -> np.ndarray:
    """A shuffled order of ``rows`` that moves people, not rows: ``labels[order]`` gives every row of a person the
    labels of one other person's first row, so a person's images keep one outcome (a permutation of the rows would
    split them). With one row per person this is ``rng.permutation(len(rows))``, draw for draw."""
    codes, _ = pd.factorize(person_key(rows).to_numpy())
    first = pd.Series(np.arange(len(codes))).groupby(codes).first().to_numpy()
    return first[rng.permutation(len(first))][codes]


def person_labels(rows: pd.DataFrame, column: str) -> pd.Series:
    """``column`` per person (keyed as the out-of-fold tables are: by person where a person has several
    rows, else by patient_id). A person whose rows disagree is an error: their score has one truth."""
    if not several_rows_per_person(rows):
        return rows.set_index("patient_id")[column]
    values = rows.groupby("person_id", sort=False)[column]
    bad = values.nunique(dropna=False)
    if (bad > 1).any():
        raise ValueError(f"person {bad[bad > 1].index[0]!r} has rows with different {column}; "
                         "one person's images share one outcome")
    return values.first().rename_axis("patient_id")


def pooled_probabilities(probs: pd.DataFrame, by) -> pd.DataFrame:
    """Class probabilities of one person's images pooled, per group ``by`` (groupby keys, first-seen order):
    the softmax of the mean log-probabilities; for two classes, the logistic of the mean logit."""
    logp = np.log(np.clip(probs.to_numpy(float), 1e-15, 1.0))
    mean = pd.DataFrame(logp, columns=probs.columns).groupby(by, sort=False).mean()
    p = np.exp(mean.to_numpy() - mean.to_numpy().max(axis=1, keepdims=True))
    return pd.DataFrame(p / p.sum(axis=1, keepdims=True), index=mean.index, columns=probs.columns)


def per_person(oof: pd.DataFrame, rows: pd.DataFrame) -> pd.DataFrame:
    """An out-of-fold table of image rows as one row per person (``patient_id`` the person ID); unchanged
    when every person has one row."""
    if not several_rows_per_person(rows):
        return oof
    person = rows.set_index("patient_id")["person_id"]
    table = oof.assign(patient_id=person.loc[oof["patient_id"]].to_numpy())
    keys = ["patient_id", "fold", "seed"]
    grouped = table.groupby(keys, sort=False)
    if (grouped["y_true"].nunique(dropna=False) > 1).any():
        raise ValueError("a person's rows have different labels; one person's images share one outcome")
    out = grouped[[c for c in ("y_true", "threshold") if c in table.columns]].first()
    probs = [c for c in table.columns if c.startswith(PROB_PREFIX)]
    if probs:
        out[probs] = pooled_probabilities(table[probs], [table[k].to_numpy() for k in keys]).to_numpy()
    if "pred_mean" in table.columns:
        out["pred_mean"] = grouped["pred_mean"].mean()
        out["pred_sd"] = np.sqrt(grouped["pred_sd"].apply(lambda s: float(np.mean(np.square(s)))))
    return out.reset_index()[list(oof.columns)]


def split_groups(rows: pd.DataFrame) -> pd.Series:
    """patient_id (the person, where a person has several rows) -> split group: what a bootstrap resamples."""
    if several_rows_per_person(rows):
        return rows.drop_duplicates("person_id").set_index("person_id")["split_group"].rename_axis("patient_id")
    return rows.set_index("patient_id")["split_group"]
