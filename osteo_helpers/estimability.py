"""What a cohort cannot estimate, said in a sentence where the page would show it: the arms it cannot fit, the
comparisons that need them, the age band where normal and low-BMD patients overlap, and a paragraph that shows
nothing on the cohorts that need no such sentence.

The reasons come from where the knowledge lives (`arms.why_not_fittable`, `tasks.why_not_estimable`,
`evaluation.too_few`); this module only words them.
"""

from __future__ import annotations

from collections.abc import Sequence

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
            from IPython.display import Markdown, display

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
