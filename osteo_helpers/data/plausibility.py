"""What a value or an image can be: the plausibility limits, declared once, with their units.

Two levels, used by ``data check``, training (`Study.cohort`) and ``predict`` alike:

* **hard limits** (`HARD_LIMITS`, `IMAGE_LIMITS`): values that cannot be true of a living adult
  patient or a knee radiograph (an age of 300 years, a 1 x 1 pixel image). The rule: in the data,
  such a row is a finding of ``data check`` and is **excluded from training**, listed in one line
  (`excluded_rows`); in ``predict``, such an input is refused (exit 2, one line).
* **plausible ranges** (`PLAUSIBLE_RANGES`): the usual span for an adult clinical cohort. A value
  outside is reported as unusual (``data check``'s ``implausible_values``) and kept: it may be
  true. ``predict`` warns when an input lies outside the training range, as before.

Image limits are read from the file header, before any pixel is decoded, so a decompression
bomb (a header claiming 65500 x 65500 pixels) is refused without being decoded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..vocabulary import UNITS


@dataclass(frozen=True)
class Limit:
    """A closed interval in a unit."""

    low: float
    high: float
    unit: str

    def contains(self, value: float) -> bool:
        return self.low <= value <= self.high

    def describe(self) -> str:
        return f"{self.low:g}-{self.high:g} {self.unit}".strip()


#: values outside cannot be true: the row is not used for training, the input is refused by predict
HARD_LIMITS: dict[str, Limit] = {
    "age_years": Limit(0, 120, "years"),
    "height_m": Limit(0.5, 2.5, "m"),
    "weight_kg": Limit(10, 400, "kg"),
    "bmi": Limit(5, 150, "kg/m^2"),
    "menopause_age_years": Limit(10, 75, "years"),
    "pregnancies": Limit(0, 30, "count"),
    "max_walking_km": Limit(0, 200, "km"),
    "t_score": Limit(-10, 10, "SD"),
    "z_score": Limit(-10, 10, "SD"),
}

#: values outside are unusual for an adult clinical cohort: reported by data check, kept
PLAUSIBLE_RANGES: dict[str, tuple[float, float]] = {
    "age_years": (18, 100), "height_m": (1.2, 2.1), "weight_kg": (30, 200), "bmi": (15, 50),
    "menopause_age_years": (35, 60), "pregnancies": (0, 15), "max_walking_km": (0, 30),
    "t_score": (-6, 4), "z_score": (-6, 4),
}


@dataclass(frozen=True)
class ImageLimits:
    """What a knee radiograph file can be, checked on its header (and, for predict, its pixels)."""

    #: shorter side, pixels: below the smallest network input (a profile's image_size >= 32) there is no radiograph
    min_side_px: int = 32
    #: pixels in all (width x height): far above any radiograph (the study's largest is 7.1 million);
    #: larger headers are refused before decoding (decompression bombs)
    max_pixels: int = 100_000_000
    #: longer side / shorter side: the study's images lie within 1.0-1.3; a knee view is never a strip
    max_aspect: float = 3.0
    #: colour modes of a grayscale radiograph (one channel, or three equal ones)
    modes: tuple[str, ...] = ("1", "L", "P", "RGB", "YCbCr", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
    #: predict's pixel checks: a pixel is coloured when |R-G| + |G-B| + |R-B| exceeds this (of 255) ...
    colour_step: int = 24
    #: ... and the image is a colour picture when more than this fraction of pixels is coloured
    #: (every study image: 0; a chart with coloured lines or a photograph: far more)
    max_colour_fraction: float = 0.001
    #: 1st to 99th percentile of the gray levels (0-1): below this the image is blank
    #: (the study's images span at least 0.68)
    min_contrast: float = 0.05
    #: correlation of each pixel with its right and lower neighbours (the smaller of the two), at the
    #: check's 1024 px: a radiograph is smooth at that scale (the study's images: at least 0.988), random
    #: noise is not (about 0, whatever its distribution, size or JPEG compression)
    min_neighbour_correlation: float = 0.5


IMAGE_LIMITS = ImageLimits()


def value_problem(name: str, value: float | None, unit: str | None = None) -> str | None:
    """Why a clinical value cannot be true (outside its hard limit), or None. ``value`` is in ``unit``, one of
    the input's `tabular.UNITS` (default: its own unit, that of the limit)."""
    limit = HARD_LIMITS.get(name)
    if limit is None or value is None or pd.isna(value):
        return None
    factor = UNITS.get(name, {}).get(unit, 1.0) if unit else 1.0
    own = float(value) * factor
    if limit.contains(own):
        return None
    shown = f"{float(value):g}" if factor == 1.0 else f"{float(value):g} {unit} ({own:g} {limit.unit})"
    return f"{shown} is outside the possible range {limit.describe()}"


def plausible_in(name: str, values: Any, unit: str) -> dict[str, Any]:
    """Each other unit of input ``name`` (`tabular.UNITS`, the units a cohort spec accepts) -> whether
    ``values`` (a number or a Series), given in ``unit``, are plausible read in that unit: a height of 162
    typed as metres is plausible in centimetres. A value impossible or unusual in its own unit and plausible
    in another most likely carries the wrong unit."""
    low, high = PLAUSIBLE_RANGES[name]
    return {other: (values * factor >= low) & (values * factor <= high)
            for other, factor in UNITS.get(name, {}).items() if other != unit}


def likely_unit(name: str, value: float, unit: str | None = None) -> str | None:
    """The first other unit in which ``value`` (given in ``unit``; default the input's own) is a plausible
    ``name``, or None: what someone who typed an impossible value most likely meant."""
    if name not in PLAUSIBLE_RANGES or name not in UNITS:
        return None
    unit = unit or next(iter(UNITS[name]))
    return next((other for other, plausible in plausible_in(name, float(value), unit).items() if plausible), None)


def too_many_pixels(width: int, height: int) -> str | None:
    """Why a header must not be decoded at all (above the pixel limit: a decompression bomb), or None."""
    if width * height > IMAGE_LIMITS.max_pixels:
        return f"{width} x {height} pixels is above the limit of {IMAGE_LIMITS.max_pixels:,} pixels; not decoded"
    return None


def image_header_problem(width: int, height: int, mode: str | None = None) -> str | None:
    """Why an image of this header cannot be a knee radiograph (size, aspect, channels), or None."""
    lim = IMAGE_LIMITS
    too_many = too_many_pixels(width, height)
    if too_many:
        return too_many
    if min(width, height) < lim.min_side_px:
        return f"{width} x {height} pixels is below the minimum of {lim.min_side_px} pixels a side"
    aspect = max(width, height) / min(width, height)
    if aspect > lim.max_aspect:
        return f"{width} x {height} pixels: aspect {aspect:.1f} is above {lim.max_aspect:g}"
    if mode is not None and mode not in lim.modes:
        return f"colour mode {mode} is not that of a grayscale radiograph (one channel, or three equal ones)"
    return None


def pixel_problem(gray: np.ndarray, rgb: np.ndarray | None = None) -> str | None:
    """Why decoded pixels (H x W uint8 gray levels, and H x W x 3 uint8 colours unless the file has one
    channel) are not a radiograph: colour content, or blank; or None."""
    lim = IMAGE_LIMITS
    if rgb is not None:
        a = rgb[::2, ::2].astype(np.int16)  # every other row and column: the same fractions, a quarter of the work
        chroma = np.abs(a[..., 0] - a[..., 1]) + np.abs(a[..., 1] - a[..., 2]) + np.abs(a[..., 0] - a[..., 2])
        coloured = float((chroma > lim.colour_step).mean())
        if coloured > lim.max_colour_fraction:
            return f"a colour picture ({coloured:.1%} of pixels coloured), not a grayscale radiograph"
    lo, hi = np.percentile(gray[::2, ::2], [1, 99]) / 255
    if hi - lo < lim.min_contrast:
        return f"blank (gray levels span {hi - lo:.3f} of the range from the 1st to the 99th percentile)"
    return None


def impossible_values(table: pd.DataFrame) -> list[dict[str, object]]:
    """Every value outside its hard limit: one finding each. Relations between values (a menopause after
    the examination, a BMI unlike weight / height^2) are unusual, not impossible: either value may be the
    typo, so `validation.implausible_values` reports them and the row is kept."""
    out: list[dict[str, object]] = []
    for col, limit in HARD_LIMITS.items():
        if col not in table:
            continue
        values = pd.to_numeric(table[col], errors="coerce")
        outside = values.notna() & ~values.between(limit.low, limit.high)
        for pid, value in zip(table.loc[outside, "patient_id"], values[outside], strict=True):
            out.append({"patient_id": pid, "column": col, "value": float(value), "possible": limit.describe()})
    return out


def impossible_images(manifest: pd.DataFrame) -> list[dict[str, object]]:
    """Every image whose header is outside the image limits (size, aspect, colour mode)."""
    out: list[dict[str, object]] = []
    known = manifest[manifest["width"].notna()] if "width" in manifest else manifest.iloc[:0]
    for rec in known.itertuples(index=False):
        problem = image_header_problem(int(rec.width), int(rec.height), getattr(rec, "mode", None))
        if problem is not None:
            out.append({"patient_id": rec.patient_id, "path": rec.image_path, "problem": problem})
    return out


def excluded_rows(cohort: pd.DataFrame) -> dict[str, str]:
    """patient_id -> why the row cannot be used for training (a value or image outside the hard limits)."""
    reasons: dict[str, list[str]] = {}
    for f in impossible_values(cohort):
        reasons.setdefault(f["patient_id"], []).append(f"{f['column']} {f['value']:g} (possible {f['possible']})")
    for f in impossible_images(cohort):
        reasons.setdefault(f["patient_id"], []).append(f"image {f['problem']}")
    return {pid: "; ".join(why) for pid, why in reasons.items()}
