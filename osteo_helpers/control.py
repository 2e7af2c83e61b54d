"""The positive control of the image arms, and the gate it sets for every image result.

Sex and age are visible on knee radiographs in larger studies. Each image arm (the pretrained
encoder's head and the CNN trained from scratch), on the folds every arm shares, is asked for them
from the image alone (`positive_control`). The gate (`GATE`, declared in the protocol's amendment 3
before the low-BMD results of the pretrained image arm were looked at) decides whether the image
results of a run are interpreted: the image arm and the fusion's gain over the clinical model are
read only when the image arm learns both targets on this cohort (`gate`). The sentences about the
control and the gate live here too, so the rule and its words cannot drift apart.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from . import evaluation
from .config import Profile
from .wording import ci

#: the image arms asked for sex and age: the pretrained encoder's head, and the CNN trained from scratch
IMAGE_ARMS = ("image", "image_cnn")
#: the arm whose positive control decides how the image results are read (the study's image arm)
CONTROL_ARM = "image"
#: how the encoders are named in sentences
ENCODER_WORDS = {"image": "the pretrained encoder (frozen ImageNet features, a linear head)",
                 "image_cnn": "the CNN trained from scratch"}


@dataclass(frozen=True)
class Gate:
    """When the image results of a run are interpreted (protocol, amendment 3, declared 2026-12-07): the image
    arm's sex AUROC is at least ``sex_auroc`` with its 95% CI above 0.5, and its age Pearson r has its 95% CI
    above 0. Both targets must be learned, clearly for sex (the easier, as larger studies report)."""

    sex_auroc: float = 0.75


GATE = Gate()


def positive_control(rows: pd.DataFrame, folds: pd.DataFrame, profile: Profile, cache: Path | None, n_boot: int,
                     seed: int, groups: pd.Series | None = None,
                     save_oof: Callable[[pd.DataFrame, str, str], Any] | None = None,
                     names: tuple[str, ...] = IMAGE_ARMS, oofs: dict[tuple[str, str], pd.DataFrame] | None = None
                     ) -> pd.DataFrame:
    """The image arms, same folds and profile, asked for the patient's sex (AUROC) and age (Pearson r, MAE in
    years) from the image alone. ``save_oof(oof, arm, task)`` keeps the out-of-fold tables (e.g.
    `Study.save_oof`); ``oofs``, when given, receives them by (arm, target) for the figure."""
    from .arms import cross_validate, run_arm  # deferred: imports torch

    parts = []
    for name in names:
        sex = run_arm(name, rows, folds, "sex", profile=profile, cache=cache, screening=False)
        age = cross_validate(name, rows, folds, "age", profile=profile, cache=cache)
        for target, oof in (("sex", sex), ("age", age)):
            if save_oof is not None:
                save_oof(oof, name, target)
            if oofs is not None:
                oofs[(name, target)] = oof
        sex_metrics = evaluation.oof_metrics(sex, n_boot, seed, groups=groups)
        parts.append(sex_metrics[sex_metrics["metric"] == "auroc"].assign(target="sex", model=name))
        age_metrics = evaluation.tscore_regression({name: age}, n_boot, seed, groups)
        parts.append(age_metrics.drop(columns=["task"]).assign(target="age"))
    return pd.concat(parts, ignore_index=True)[["target", "model", "metric", "value", "ci_low", "ci_high"]]


def _of(control: pd.DataFrame, model: str) -> pd.DataFrame:
    """The rows of one arm; a table without a model column is one arm's (older runs' tables)."""
    return control[control["model"] == model] if "model" in control else control


def _targets(control: pd.DataFrame, model: str) -> tuple[pd.Series, pd.Series] | None:
    c = _of(control, model).set_index(["target", "metric"])
    if ("sex", "auroc") not in c.index or ("age", "pearson_r") not in c.index:
        return None
    return c.loc[("sex", "auroc")], c.loc[("age", "pearson_r")]


def gate(control: pd.DataFrame | None, model: str = CONTROL_ARM, rule: Gate = GATE) -> tuple[bool | None, str]:
    """Whether the run's image results may be interpreted (`Gate`), and why, in one clause; None when the image
    arm's positive control was not run (another arm's never stands in for it)."""
    targets = None if control is None or not len(control) else _targets(control, model)
    if targets is None:
        return None, "the positive control was not run, so the image results are not interpreted"
    sex, r = targets
    sex_ok = sex["value"] >= rule.sex_auroc and sex["ci_low"] > 0.5
    age_ok = r["ci_low"] > 0
    facts = (f"sex AUROC {ci(sex['value'], sex['ci_low'], sex['ci_high'], reference=0.5)} (needed: at least "
             f"{rule.sex_auroc:.2f}, CI above 0.5), age r {ci(r['value'], r['ci_low'], r['ci_high'], reference=0.0)} "
             "(needed: CI above 0)")
    return bool(sex_ok and age_ok), facts


def gate_text(control: pd.DataFrame | None) -> str:
    """The gate's verdict as the book states it."""
    passed, facts = gate(control)
    if passed is None:
        return f"**Positive-control gate:** {facts}."
    if passed:
        return (f"**Positive-control gate: passed** ({facts}). The encoder sees something in these images that "
                "carries sex and age, so the image arm's result and the fusion's gain over the clinical model are "
                "interpreted. These figures are somewhat optimistic: the encoder's recipe was chosen on these "
                "patients' sex and age (the protocol, amendment 3, gives the nested estimate of that choice).")
    return (f"**Positive-control gate: failed** ({facts}). The image results (the image arm, the fusion's gain over "
            "the clinical model) are reported but not interpreted: on this cohort the pipeline does not show that "
            "it sees what larger studies find in knee radiographs.")


def control_reading(control: pd.DataFrame, model: str = CONTROL_ARM) -> tuple[str, str]:
    """How much of sex and of age an image arm learned: ('partly', 'not at all') and the like."""
    c = _of(control, model).set_index(["target", "metric"])
    sex = c.loc[("sex", "auroc")]
    sex_word = "not at all" if sex["ci_low"] <= 0.5 else "partly" if sex["value"] < 0.9 else "well"
    fit = ("age", "r2") if ("age", "r2") in c.index else ("age", "pearson_r")
    age = c.loc[fit]
    age_word = "not at all" if age["ci_low"] <= 0 else "partly" if age["value"] < 0.5 else "well"
    return sex_word, age_word


def _numbers(control: pd.DataFrame, model: str) -> str:
    c = _of(control, model).set_index(["target", "metric"])
    sex, r, mae = c.loc[("sex", "auroc")], c.loc[("age", "pearson_r")], c.loc[("age", "mae")]
    text = (f"sex with AUROC {ci(sex.value, sex.ci_low, sex.ci_high)} and age with Pearson r "
            f"{ci(r.value, r.ci_low, r.ci_high)} (MAE {ci(mae.value, mae.ci_low, mae.ci_high, 1)} years")
    if ("age", "mae_no_information") in c.index:
        text += f", against {c.loc[('age', 'mae_no_information')].value:.1f} years for the training folds' mean age"
    return text + ")"


def positive_control_text(control: pd.DataFrame) -> str:
    """What the positive control says about the image arm's result (and how the from-scratch CNN compares)."""
    models = list(dict.fromkeys(control["model"])) if "model" in control else [CONTROL_ARM]
    main = CONTROL_ARM if CONTROL_ARM in models else models[0]
    text = f"From the image alone, {ENCODER_WORDS.get(main, main)} predicts {_numbers(control, main)}"
    for other in (m for m in models if m != main):
        text += f"; {ENCODER_WORDS.get(other, other)} predicts {_numbers(control, other)}"
    text += ". "
    sex_word, age_word = control_reading(control, main)
    if sex_word != "not at all" and age_word != "not at all":
        return text + ("Both are learned (their CIs exclude chance): the pipeline sees something in these images "
                       "that carries sex and age; the image arm's result is a fair, if weak, test of what the image "
                       "adds.")
    if sex_word == age_word == "not at all":
        return text + ("Neither is learned, although both are visible on knee radiographs in larger studies: **the "
                       "image arm's null result reflects this pipeline (or the image-to-record link), not the absence "
                       "of bone information**.")
    learned, missed = ("sex", "age") if age_word == "not at all" else ("age", "sex")
    return text + (f"The pipeline learns {learned} (its CI excludes chance) but not {missed}: it sees something, "
                   "less than larger studies report, so the image arm's null result says little about whether "
                   "the bone holds information a stronger pipeline (fine-tuning, full resolution) could use.")
