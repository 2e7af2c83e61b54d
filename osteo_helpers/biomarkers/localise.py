"""Knee localisation: one :class:`KneeDetection` per knee of an AP knee radiograph, or the reasons why not.

Every placement is a fixed fraction of the tibial plateau width W (the anatomical scale), so the
ROIs and shaft rows cover the same anatomy in every knee whatever the pixel spacing (which is not
stored in these JPEGs). The bands, joint line and plateau width come from :mod:`.coarse`; here
they are mapped to native pixels, the joint line is refined, the shafts are found and a knee is
rejected when the condylar / plateau widths disagree (ratio outside 0.75-1.35), the scale is
implausible, or a ROI leaves the image / the leg.

Geometry conventions: images are indexed ``image[y, x]`` (row, column); boxes are
``(y0, x0, y1, x1)`` in native pixels, half-open; ``side`` is the side *in image coordinates*
("left" = the knee on the left of the picture), not the anatomical side.

Known limitations (study data, 239 images): in close-up images with thick, bright soft tissue
the plateau width includes some soft tissue (W up to ~10-20 % too large); the cortical rows lie
at 1.0 W above (distal femoral metaphysis, where the endosteal edge is ill-defined -- treat the
femoral cortical index with caution) and 1.25 W below the joint (proximal tibial diaphysis, the
more reliable one); the side is not anatomical (markers are not read), so ROIs are centred
rather than medial.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import threshold_multiotsu, threshold_otsu

from ..images import as_grayscale
from .coarse import downsample, is_inverted, knee_bands, localise_band, stretch
from .radiogrammetry import SHAFT_D_RANGE, measure_shaft, refine_joint_native, shaft_profile

#: side of the square trabecular ROIs, as a fraction of W
ROI_SIDE_FRAC = 0.30
#: tibial ROI: top edge this far below the joint line (clears the
#: subchondral plate and the intercondylar eminence)
TIBIA_ROI_TOP_FRAC = 0.12
#: femoral ROI: bottom edge this far above the joint line (clears the
#: intercondylar notch and most of the condylar subchondral plate)
FEMUR_ROI_BOTTOM_FRAC = 0.30
#: rows across the shafts where the cortices are measured
FEMUR_SHAFT_FRAC = 1.00
TIBIA_SHAFT_FRAC = 1.25
#: plausible plateau width as a fraction of the image width taken by one knee
#: band / of the image height (guards against silly crops)
MIN_PLATEAU_FRAC_OF_HEIGHT = 0.06
MAX_PLATEAU_FRAC_OF_BAND = 1.0


class KneeLocalisationError(RuntimeError):
    """No knee could be localised; ``reason`` says why."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


Box = tuple[int, int, int, int]


@dataclass
class KneeDetection:
    """One localised knee, in native pixel coordinates of the (polarity
    corrected) image.

    ``plateau_width`` is the anatomical scale W; the ROIs and shaft rows are
    fixed fractions of it.  ``femur_shaft_row`` / ``tibia_shaft_row`` are
    ``None`` when that row lies outside the field of view or no shaft was
    found there.  ``score`` in [0, 1] is a heuristic confidence (joint-line
    contrast, agreement of plateau and condylar widths, ROI bone coverage).
    """

    side: str
    x0: int
    x1: int
    joint_line_y: int
    plateau_width: float
    plateau_x0: int
    plateau_x1: int
    femur_roi: Box
    tibia_roi: Box
    femur_shaft_row: int | None
    tibia_shaft_row: int | None
    femur_shaft_x: tuple[int, int] | None = None
    tibia_shaft_x: tuple[int, int] | None = None
    condyle_width: float = float("nan")
    joint_rows: tuple[float, float] = (float("nan"), float("nan"))
    score: float = 0.0
    inverted: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def centre_x(self) -> float:
        return 0.5 * (self.plateau_x0 + self.plateau_x1)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class LocalisationResult:
    """Detections plus the reasons for every knee candidate that was
    rejected (or for the whole image when nothing was found)."""

    detections: list[KneeDetection]
    failures: list[str]
    inverted: bool = False
    n_candidates: int = 0


def bone_bright(image: np.ndarray, detection: KneeDetection) -> np.ndarray:
    """The image as float grey with bone bright: a negative was detected on ``1 - image``."""
    img = as_grayscale(image)
    return 1.0 - img if detection.inverted else img


def _to_native(v: float, f: int) -> float:
    """Small-image coordinate (pixel centre) -> native coordinate."""
    return v * f + (f - 1) / 2.0


def _find_shaft(
    img: np.ndarray, row: int, cx: float, W: float, kind: str, x_lo: int, x_hi: int
) -> tuple[tuple[int, int] | None, str]:
    """Locate the femoral / tibial shaft crossing native row ``row``.

    On the smoothed profile (rows row +- 0.01 W, columns cx +- 0.7 W within
    the knee band [x_lo, x_hi)) every pair of a strong rising edge L and a
    strong falling edge R is a candidate bone, kept when its width is within
    ``SHAFT_D_RANGE[kind]``, its centre within 0.3 W of the knee centre, and
    the profile between the cortices never falls back to the soft-tissue
    level outside the pair (the medullary canal is still covered by the
    anterior and posterior cortices; the interosseous gap between tibia and
    fibula is not).  The strongest pair wins.  Returns (window (x0, x1) of
    the pair +- 10 % of its width, "") or (None, reason)."""
    H = img.shape[0]
    if row < 0 or row >= H:
        return None, "row outside the image"
    a = int(max(x_lo, round(cx - 0.7 * W)))
    b = int(min(x_hi, round(cx + 0.7 * W)))
    if b - a < 0.3 * W:
        return None, "knee band too narrow"
    prof = shaft_profile(img, row, a, b, half_rows=max(2, int(round(0.01 * W))))
    if prof.size < 10 or np.ptp(prof) < 0.02:
        return None, "no contrast at this row (outside the field of view?)"
    for dy in (-0.05 * W, 0.05 * W):  # not at the edge of the field (collimation, padding)
        r2 = int(round(row + dy))
        if r2 < 0 or r2 >= H:
            return None, "too close to the edge of the image"
        if np.ptp(shaft_profile(img, r2, a, b, half_rows=1)) < 0.5 * np.ptp(prof):
            return None, "too close to the edge of the field of view"
    sm = ndi.gaussian_filter1d(prof, max(1.0, 0.006 * W))
    g = np.gradient(sm)
    gmax = max(float(g.max()), 1e-12)
    gmin = min(float(g.min()), -1e-12)
    rises = [i for i in range(1, len(g) - 1) if g[i] >= g[i - 1] and g[i] > g[i + 1] and g[i] > 0.25 * gmax]
    falls = [i for i in range(1, len(g) - 1) if g[i] <= g[i - 1] and g[i] < g[i + 1] and g[i] < 0.25 * gmin]
    dlo, dhi = SHAFT_D_RANGE[kind]
    ring = max(2, int(round(0.06 * W)))
    best = None
    for L in rises:
        for R in falls:
            D = R - L
            if not (dlo * W <= D <= dhi * W):
                continue
            if abs(a + 0.5 * (L + R) - cx) > 0.3 * W:
                continue
            left_out = sm[max(0, L - ring) : L]
            right_out = sm[R + 1 : R + 1 + ring]
            if left_out.size == 0 or right_out.size == 0:
                continue
            soft = 0.5 * (float(np.median(left_out)) + float(np.median(right_out)))
            inner = sm[L + int(0.15 * D) : R - int(0.15 * D) + 1]
            peak = float(sm[L : R + 1].max())
            if inner.size == 0 or peak <= soft:
                continue
            if float(inner.min()) - soft < 0.1 * (peak - soft):
                continue
            score = float(g[L] - g[R])
            if best is None or score > best[0]:
                best = (score, L, R)
    if best is None:
        return None, "no bone of plausible width with a medullary canal"
    _, L, R = best
    m = 0.1 * (R - L)
    return (int(round(a + L - m)), int(round(a + R + m + 1))), ""


def _box(cy0: float, cx0: float, cy1: float, cx1: float) -> Box:
    return int(round(cy0)), int(round(cx0)), int(round(cy1)), int(round(cx1))


def box_inside(box: Box, shape: tuple[int, int]) -> bool:
    """Whether a box lies wholly inside an image of ``shape``: a ROI is never cropped at the border."""
    y0, x0, y1, x1 = box
    return y0 >= 0 and x0 >= 0 and y1 <= shape[0] and x1 <= shape[1] and y1 > y0 and x1 > x0


def _box_coverage(mask_small: np.ndarray, box: Box, f: int) -> float:
    y0, x0, y1, x1 = (int(v // f) for v in box)
    sub = mask_small[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)]
    return float(sub.mean()) if sub.size else 0.0


def _coarse(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, list, int, bool] | LocalisationResult:
    """The detection image (stretched, bone bright), its body mask, the knee bands, the downsampling
    factor and the polarity; or the result saying why there is no knee band."""
    H, Wn = img.shape
    if min(H, Wn) < 64:
        return LocalisationResult([], [f"image too small ({H}x{Wn})"])
    small, f = downsample(img)
    if float(np.ptp(small)) < 0.02:
        return LocalisationResult([], ["no bone found (image has no contrast)"])
    inverted = is_inverted(small)
    if inverted:
        small = 1.0 - small
    s = ndi.gaussian_filter(stretch(small), 1.0)
    try:
        t_body = float(threshold_multiotsu(s, classes=3)[0])
    except ValueError:
        t_body = float(threshold_otsu(s))
    body = s > t_body
    bands, why = knee_bands(s)
    if not bands:
        return LocalisationResult([], [why or "no bone found"], inverted)
    return s, body, bands, f, inverted


#: plateau width as a fraction of the image's long side where `find_joint` accepts a joint (the study's
#: 382 knee bands: 0.117-0.332; a gray gradient spans the whole image, noise finds a sliver)
JOINT_PLATEAU_FRAC = (0.08, 0.45)


def find_joint(image: np.ndarray) -> str | None:
    """None when some knee band holds a joint line with bone above and below it (a femur over a tibia:
    the coarse stage of `detect_knees`) and a tibial plateau of a knee's share of the picture
    (`JOINT_PLATEAU_FRAC`); else why not. All 239 study images pass.

    Cheaper and more tolerant than a full detection (no ROI or shaft checks): the knee check of
    ``predict`` (`radiograph_check`), which must not reject a real knee the ROI rules reject."""
    coarse = _coarse(as_grayscale(image))
    if isinstance(coarse, LocalisationResult):
        return "; ".join(coarse.failures)
    s, body, bands, _, _ = coarse
    reasons = []
    low, high = JOINT_PLATEAU_FRAC
    for band in bands:
        g, why = localise_band(s, body, band)
        if g is not None and low <= g["W"] / max(s.shape) <= high:
            return None
        reasons.append(why or f"a plateau {g['W'] / max(s.shape):.0%} of the image wide is no knee's")
    return "; ".join(r for r in reasons if r) or "no knee joint found"


def detect_knees(image: np.ndarray) -> LocalisationResult:
    """Localise the knee(s) of an AP knee radiograph (leg axis vertical).

    Returns a :class:`LocalisationResult` holding the accepted detections
    (native pixel coordinates) and one reason string per rejected candidate.
    The image may be a negative: polarity is checked (the border / air must
    be darker than the centre) and, if inverted, detection works on
    ``1 - image`` and every detection has ``inverted=True``; downstream
    functions then invert the pixels themselves.
    """
    img = as_grayscale(image)
    coarse = _coarse(img)
    if isinstance(coarse, LocalisationResult):
        return coarse
    s, body, bands, f, inverted = coarse
    sides = ["single"] if len(bands) == 1 else ["left", "right"]
    dets: list[KneeDetection] = []
    fails: list[str] = []
    for side, band in zip(sides, bands, strict=False):
        g, why = localise_band(s, body, band)
        if g is None:
            fails.append(f"{side} knee: {why}")
            continue
        det, why = _finish_detection(img if not inverted else 1.0 - img, s, body, g, f, side)
        if det is None:
            fails.append(f"{side} knee: {why}")
            continue
        det.inverted = inverted
        dets.append(det)
    return LocalisationResult(dets, fails, inverted, len(bands))


def _finish_detection(
    img: np.ndarray, s: np.ndarray, body: np.ndarray, g: dict, f: int, side: str
) -> tuple[KneeDetection | None, str | None]:
    H, Wn = img.shape
    bx0, _, bx1 = g["band"]
    W = g["W"] * f
    cx = 0.5 * (g["plateau"][0] + g["plateau"][1]) * f
    jy = _to_native(g["jy"], f)
    px0 = g["plateau"][0] * f
    px1 = g["plateau"][1] * f
    band_w = (bx1 - bx0) * f
    # plausibility of the anatomical scale
    if W < MIN_PLATEAU_FRAC_OF_HEIGHT * max(H, Wn):
        return None, f"implausible plateau width ({W:.0f} px; image {H}x{Wn})"
    if W > MAX_PLATEAU_FRAC_OF_BAND * band_w:
        return None, f"implausible plateau width ({W:.0f} px wider than its knee band {band_w} px)"
    cw = g["cw"] * f
    if not (0.75 <= cw / W <= 1.35):
        return None, (
            f"implausible knee shape (condylar width {cw:.0f} px vs plateau width {W:.0f} px)"
        )
    ref = refine_joint_native(img, cx, jy, W)
    rows = ref["rows"]
    good = [r for r in rows if np.isfinite(r)]
    notes = []
    if good:
        jy_ref = float(np.mean(good))
        if abs(jy_ref - jy) <= 0.08 * W:
            jy = jy_ref
        else:
            notes.append("native joint refinement disagreed; kept coarse joint line")
    else:
        notes.append("joint line not refined at native resolution")
    a = ROI_SIDE_FRAC * W
    tib = _box(jy + TIBIA_ROI_TOP_FRAC * W, cx - a / 2, jy + TIBIA_ROI_TOP_FRAC * W + a, cx + a / 2)
    fem = _box(jy - FEMUR_ROI_BOTTOM_FRAC * W - a, cx - a / 2, jy - FEMUR_ROI_BOTTOM_FRAC * W, cx + a / 2)
    for name, box in (("femoral", fem), ("tibial", tib)):
        if not box_inside(box, (H, Wn)):
            return None, f"{name} ROI outside the field of view (box {box}, image {H}x{Wn})"
    bone = s > g["t_bone"]
    bone_cov = []
    for name, box in (("femoral", fem), ("tibial", tib)):
        cov = _box_coverage(body, box, f)
        if cov < 0.95:
            return None, f"{name} ROI not inside the leg (body coverage {cov:.2f})"
        bone_cov.append(_box_coverage(bone, box, f))
    # shafts: located and validated on the native profile
    shafts = []
    for name, frac in (("femoral", -FEMUR_SHAFT_FRAC), ("tibial", TIBIA_SHAFT_FRAC)):
        row = int(round(jy + frac * W))
        xs, why = _find_shaft(img, row, cx, W, name, int(bx0 * f), int(min(Wn, bx1 * f)))
        if xs is None:
            notes.append(f"{name} shaft not found at {abs(frac):.2f} W: {why}")
            shafts.append((None, None))
            continue
        res = measure_shaft(img, row, xs, W, name)
        if not res["ok"]:
            notes.append(f"{name} shaft rejected: {res['reason']}")
            shafts.append((None, None))
            continue
        shafts.append((row, xs))

    contrast_term = min(1.0, g["contrast"] / 0.08)
    shape_term = max(0.0, 1.0 - abs(cw / W - 1.0) / 0.45)
    cov_term = float(np.clip(np.mean(bone_cov), 0, 1))
    score = float((contrast_term * shape_term * (0.5 + 0.5 * cov_term)) ** (1 / 3))
    det = KneeDetection(
        side=side,
        x0=int(round(min(px0, g["condyles"][0] * f))),
        x1=int(round(max(px1, g["condyles"][1] * f))),
        joint_line_y=int(round(jy)),
        plateau_width=float(W),
        plateau_x0=int(round(px0)),
        plateau_x1=int(round(px1)),
        femur_roi=fem,
        tibia_roi=tib,
        femur_shaft_row=shafts[0][0],
        tibia_shaft_row=shafts[1][0],
        femur_shaft_x=shafts[0][1],
        tibia_shaft_x=shafts[1][1],
        condyle_width=float(cw),
        joint_rows=(float(rows[0]), float(rows[1])),
        score=score,
        notes=notes,
    )
    return det, None


def localise_knees(image: np.ndarray) -> list[KneeDetection]:
    """Localise the knee(s); raises :class:`KneeLocalisationError` (with the
    reasons) when no knee could be localised.  Use :func:`detect_knees` to
    also get the reasons for knees that were rejected next to accepted ones."""
    res = detect_knees(image)
    if not res.detections:
        raise KneeLocalisationError("; ".join(res.failures) or "no knee found")
    return res.detections
