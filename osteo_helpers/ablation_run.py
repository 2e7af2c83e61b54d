"""`osteo ablation` as a function: every declared arm of `ablation` on a study's shared folds, written as tables.

It sits above the study (it opens one) and the ablation (it runs its arms): the study imports the ablation, never
the other way round.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import evaluation
from .ablation import (
    BIOMARKER_ARMS,
    BIOMARKER_COMPARISONS,
    DECLARED_ORDER,
    NETWORK_PERMUTATION_ARMS,
    TSCORE_ARMS,
    declared_comparisons,
    groups_of,
    permutation_null,
    permutation_pvalues,
    primary_power,
    run_arms,
    singleton_patients,
    training_states,
    tscore_comparison,
    tscore_predictions,
    who_classes,
)
from .arms import run_arms_together, split_arm_name
from .arms.persons import permutation_by_person
from .data import Cohort
from .fileio import atomic_to_csv
from .study import Study
from .tasks import get_task


def run_ablation(profile_name: str, task: str, out: Path, permute_labels: int = 0,
                 overrides: dict[str, Any] | None = None, biomarkers: bool = False,
                 cohort: Cohort | str | os.PathLike | None = None) -> Path:
    """The command-line ablation: every declared arm on the shared folds; writes ``out/results.csv``,
    ``comparisons.csv``, ``oof/<arm>.csv`` and, with ``permute_labels`` > 1, ``permutation_null.csv``.

    ``permute_labels`` = 1 reruns every arm once on permuted labels (results then describe the
    permuted run); N > 1 keeps the observed results and adds the permutation distribution.
    """
    out = Path(out)
    study = Study.open(profile_name, out, cohort=cohort, **(overrides or {}))
    p = study.profile
    rows = study.rows(biomarkers=biomarkers)
    folds = study.folds()
    names = DECLARED_ORDER + (BIOMARKER_ARMS if biomarkers else ())
    groups = groups_of(rows)
    if permute_labels == 1:
        y = get_task(task).labels(rows)[permutation_by_person(rows, np.random.default_rng([p.seed, 1]))]
        classifiers = [n for n in names if not split_arm_name(n)[1]]
        oofs = run_arms_together(classifiers, rows, folds, task, profile=p, y=y, tag="_perm1", cache=study.paths.models)
    else:
        oofs = run_arms(rows, folds, task, names, p, study.paths.models)
    (out / "oof").mkdir(parents=True, exist_ok=True)
    for name, oof in oofs.items():
        atomic_to_csv(oof, out / "oof" / f"{name}.csv")
    states = training_states(study.paths.models if permute_labels != 1 else None, names, task, folds)
    results = [evaluation.score_arms(oofs, task, p.n_boot, p.seed, groups),
               evaluation.score_arms(oofs, task, p.n_boot, p.seed, groups, singleton_patients(rows), "singletons"),
               states]
    comparisons = declared_comparisons({task: oofs}, p.n_boot, p.seed, groups, states=states)
    if permute_labels != 1 and task == "binary":
        preds = tscore_predictions(rows, folds, TSCORE_ARMS, p, study.paths.models)
        results.append(evaluation.tscore_regression(preds, p.n_boot, p.seed, groups, who_classes(rows)))
        comparisons = pd.concat([comparisons, tscore_comparison(preds, p.n_boot, p.seed, groups)], ignore_index=True)
        atomic_to_csv(primary_power(oofs), out / "power.csv")
    results = pd.concat(results, ignore_index=True).assign(permuted_labels=permute_labels == 1)
    if biomarkers:
        bio = evaluation.paired_comparisons(oofs, BIOMARKER_COMPARISONS, p.n_boot, p.seed, groups)
        comparisons = pd.concat([comparisons, bio.assign(task=task, role="biomarker", p_holm=np.nan)],
                                ignore_index=True)
    atomic_to_csv(comparisons.assign(permuted_labels=permute_labels == 1), out / "comparisons.csv")
    if permute_labels > 1:
        null = permutation_null(rows, folds, task, p, permute_labels, n_networks=p.network_permutations,
                                networks=NETWORK_PERMUTATION_ARMS if p.network_permutations else (),
                                cache=study.paths.models)
        atomic_to_csv(null, out / "permutation_null.csv")
        atomic_to_csv(permutation_pvalues(null, results), out / "permutation_pvalues.csv")
    return atomic_to_csv(results, out / "results.csv")
