"""Numbers in sentences: a value with its CI, a p-value, a plural, written the same way on every page.

It sits below everything that writes prose (the report, the answer, the control, the external pages), so
that none of them has to import another to format a number.
"""

from __future__ import annotations

import numpy as np

from . import evaluation


def number(value: float, digits: int = 3, signed: bool = False) -> str:
    """A number to ``digits`` decimals; one that rounds to zero is written 0.000, never -0.000 or +0.000;
    a missing one 'n/a'."""
    if value is None or not np.isfinite(value):
        return "n/a"
    text = f"{value:{'+' if signed else ''}.{digits}f}"
    return text.lstrip("+-") if float(text) == 0 else text


def plural(word: str) -> str:
    """The English plural of a unit's name (batch -> batches, site -> sites)."""
    return word + ("es" if word.endswith(("s", "sh", "ch", "x")) else "s")


def counted(n: int, word: str) -> str:
    """``n`` and the word in its number: 1 row, 2 rows, 0 rows."""
    return f"{n} {word if n == 1 else plural(word)}"


def ci(value: float, low: float, high: float, digits: int = 3, signed: bool = False,
       reference: float | None = None) -> str:
    """``0.951 [0.915, 0.976]``, ``-0.183 [-0.272, -0.100]``: a value and its CI on one line (non-breaking).

    An interval whose bounds print alike (every resample gave the same value) is said in words. With a
    ``reference`` (0.5 for an AUROC), more digits are printed until no bound that differs from it reads as
    it: an upper bound of 0.4998 is not printed 0.500."""
    if value is None or not np.isfinite(value):
        return "not computed"
    if reference is not None:
        while digits < 6 and any(b is not None and np.isfinite(b) and b != reference
                                 and float(number(b, digits)) == reference for b in (low, high)):
            digits += 1
    shown = number(value, digits, signed)
    if low is None or high is None or not (np.isfinite(low) and np.isfinite(high)):
        return shown
    lo, hi = number(low, digits, signed), number(high, digits, signed)
    if lo == hi:
        return f"{shown}, identical in every resample"
    return f"{shown}\u00a0[{lo},\u00a0{hi}]"


def p_text(p: float, n_boot: int | None = None) -> str:
    """A p-value as a reader needs it: three decimals, below 0.001 as a bound, and a bootstrap p of 0 as the
    bound its ``n_boot`` resamples allow (`evaluation.format_p`)."""
    if p is None or not np.isfinite(p):
        return "n/a"
    if p == 0 and n_boot:
        return evaluation.format_p(0.0, max(1, n_boot))
    return "< 0.001" if p < 0.001 else f"{p:.3f}"
