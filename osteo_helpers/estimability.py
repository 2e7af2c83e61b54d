"""What a cohort can and cannot estimate, in words: its size against Riley et al.'s minimum for each declared
model, the smallest AUROC gain the primary comparison can detect, and, where the page would show it, a sentence
for what it cannot estimate (the arms it cannot fit, the comparisons that need them, the age band where normal
and low-BMD patients overlap) in a paragraph that shows nothing on the cohorts that need no such sentence.

The reasons come from where the knowledge lives (`arms.why_not_fittable`, `tasks.why_not_estimable`,
`evaluation.too_few`); this module only words them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from . import evaluation
from .ablation import age_band, arm_label


class Paragraph:
    """Markdown a notebook shows, and nothing at all when the text is empty: the sentences only some cohorts need
    (an arm the cohort cannot fit, an age band it cannot estimate). IPython shows ``Markdown("")`` as the name of
    its object ("<IPython.core.display.Markdown object>") in the book."""

    def __init__(self, text: str) -> None:
        self.text = text

    def _ipython_display_(self) -> None:
        if self.text.strip():
            from IPython.display import Markdown, display  # deferred: imports IPython

            display(Markdown(self.text))


def not_estimable_text(what: str, why: str) -> str:
    """The sentence a page shows where ``what`` (a task, a model, a subgroup) cannot be estimated on this cohort,
    ``why`` completing it (`Study.not_estimable`, `arms.why_not_fittable`)."""
    return f"**{what} is not estimable on this cohort:** {why}."


def unfitted_text(reasons: dict[str, str], pairs: Sequence[tuple[str, str]] | None = None) -> str:
    """A sentence per arm this cohort cannot fit (``reasons``: `Study.unfitted`, the arm and why) or, given
    ``pairs``, per comparison that needs such an arm; '' when every arm could be fitted."""
    if pairs is None:
        lines = [not_estimable_text(f"The arm {arm_label(a)}", why) for a, why in reasons.items()]
    else:
        lines = [not_estimable_text(f"The comparison of {arm_label(a)} with {arm_label(b)}",
                                    reasons.get(a) or reasons[b]) for a, b in pairs if a in reasons or b in reasons]
    return " ".join(lines)


def age_band_subset(people: pd.DataFrame) -> tuple[set[str], str, str]:
    """The patients of the age band where normal and low-BMD patients overlap (`ablation.age_band`), its name
    (``age L-H``) and, where an AUROC within it cannot be estimated, the sentence that says why ('' where it can):
    the classes' ages do not overlap (no age band holds both), or the band holds fewer than two patients of a
    class. ``people``: `Study.people` (one row per person, with ``age_years`` and ``label_binary``)."""
    low, high = age_band(people)
    inside = people["age_years"].between(low, high)
    name = f"age {low:.0f}-{high:.0f}"
    if low > high:
        return set(), name, not_estimable_text(
            "The AUROC within an age band", "the ages of normal and low-BMD patients do not overlap (the 5th "
            f"centile of the low-BMD patients' ages, {low:.0f}, lies above the 95th centile of the normal patients', "
            f"{high:.0f}), so no age band holds both classes")
    why = evaluation.too_few(people.loc[inside, "label_binary"].to_numpy(), ("normal", "low_bmd"))
    text = "" if why is None else not_estimable_text(f"The AUROC within the age band {low:.0f}-{high:.0f} years",
                                                     f"the band holds {why}")
    return set(people.loc[inside, "patient_id"]), name, text


def _gain(value: float, room: float) -> str:
    return f"{value:.3f}" if np.isfinite(value) else f"none up to AUROC 1 (a gain of {room:.3f})"


def power_words(power: pd.DataFrame) -> str:
    """The detectable gain at the declared correlations, then for each arm whose scores differ from the
    clinical model's; arms whose scores are the clinical model's are named, without a power figure."""
    declared = power[power["correlation_source"] == "declared"].sort_values("correlation", ascending=False)
    if declared.empty:
        return "No power analysis was made."
    first = declared.iloc[0]
    room = 1 - float(first["auroc_ref"])
    gains = ", ".join(f"{_gain(g, room)} at correlation {r:.1f}"
                      for g, r in zip(declared["detectable_gain"], declared["correlation"], strict=True))
    text = (f"With {int(first['n_pos'] + first['n_neg'])} patients ({int(first['n_neg'])} normal), the smallest "
            f"AUROC gain over the clinical model's {first['auroc_ref']:.3f} that a paired DeLong test detects with "
            f"{first['power']:.0%} power at alpha {first['alpha']:.2f} is {gains} (the within-class correlation of "
            "the two scores, declared in protocol amendment 2)")
    observed = power[power["correlation_source"] == "observed"]
    if len(observed):
        text += "; for the arms whose scores differ from the clinical model's, at their observed correlation: " + \
            ", ".join(f"{arm_label(m)} {_gain(g, room)} (correlation {r:.2f})" for m, g, r in
                      zip(observed["model"], observed["detectable_gain"], observed["correlation"], strict=True))
    text += ". Smaller gains cannot be ruled out."
    same = power[power["correlation_source"] == "same scores"]
    if len(same):
        names = " and of the ".join(f"{arm_label(m)} (within-class correlation {r:.3f})"
                                    for m, r in zip(same["model"], same["correlation"], strict=True))
        text += (f" The scores of the {names} are the clinical model's, so no power is stated at that "
                 "correlation: it would describe the design, not the image.")
    return text


def power_table(power: pd.DataFrame) -> pd.DataFrame:
    """The power analysis as a person reads it (never NaN: where no gain reaches the power, it says so)."""
    room = 1 - power["auroc_ref"]
    gains = ["not stated: its scores are the clinical model's" if source == "same scores" else _gain(g, m)
             for g, m, source in zip(power["detectable_gain"], room, power["correlation_source"], strict=True)]
    return pd.DataFrame({
        "scores compared with the clinical model": [
            "any (declared correlation)" if m == "any" else f"{arm_label(m)} (observed correlation)"
            for m in power["model"]],
        "within-class correlation": power["correlation"].map(lambda r: f"{r:.3f}"),
        "clinical AUROC": power["auroc_ref"].round(3),
        "smallest detectable gain": gains,
        "patients (normal)": [f"{int(p + n)} ({int(n)})" for p, n in zip(power["n_pos"], power["n_neg"], strict=True)],
    })


def sample_size_text(sizes: pd.DataFrame) -> str:
    """Events per candidate parameter of each declared model against Riley et al. (2020)'s minimum."""
    first = sizes.iloc[0]
    enough = sizes[sizes["enough"]]
    short = sizes[~sizes["enough"]]
    text = (f"**Sample size.** The cohort has {int(first['patients'])} patients and {int(first['events'])} events "
            "(the smaller outcome class, normal BMD). By the criteria of Riley et al. (2020; conservative anticipated "
            "R², shrinkage 0.9, overall risk within 0.05), ")
    if len(enough):
        text += "it is large enough for " + ", ".join(
            f"{arm_label(r.model)} ({r.candidate_parameters} parameter{'s' if r.candidate_parameters > 1 else ''}, "
            f"{r.events_per_parameter:.0f} events each; {r.patients_required:.0f} needed)"
            for r in enough.itertuples())
    if len(short):
        text += ("; " if len(enough) else "") + "it is too small for " + ", ".join(
            f"{arm_label(r.model)} ({r.candidate_parameters:,} parameters, {r.events_per_parameter:.2g} events each; "
            f"{r.patients_required:,.0f} needed)" for r in short.itertuples())
        text += (". Those models are fitted to fewer events than parameters (a network's weights are held back by "
                 "early stopping, so their count overstates its effective parameters, though not by the thousands-fold "
                 "that separates it from the need): their results are exploratory, as the wide intervals and the "
                 "fold SDs show")
    return text + "." + selection_words(sizes)


def selection_words(sizes: pd.DataFrame) -> str:
    """The clinical model's parameters counted as the selection they were: it was chosen (protocol, amendment 1)
    after the whole allow-list had been explored, so its candidates are the allow-list's columns."""
    by = sizes.set_index("model")
    if "clinical" not in by.index or "clinical_full" not in by.index:
        return ""
    explored = by.loc["clinical_full"]
    return (f" Counted as what it is, a choice among the {explored['candidate_parameters']:,} candidate parameters of "
            "the allow-list that were explored before it was declared (protocol, amendment 1), the clinical model's "
            f"selection asks for {explored['patients_required']:,.0f} patients by the same criteria: this cohort is "
            "too small to select among the candidates, and the two-parameter figure above describes the model as "
            "declared, not the selection that produced it.")
