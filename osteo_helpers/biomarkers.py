"""Classical image biomarkers of bone quality from knee radiographs.

Everything here is plain image processing (numpy / scipy / scikit-image); there
are no learned parameters and no labels are used.  The pipeline is

1. :func:`load_grayscale` -- native-resolution float32 image in [0, 1].
2. :func:`localise_knees` -- one :class:`KneeDetection` per knee (one or two
   knees per radiograph, AP view, leg axis vertical), or
   :class:`KneeLocalisationError` with a reason.  :func:`detect_knees` returns
   the detections *and* the reasons for knees that were rejected.
3. :func:`extract_rois` -- distal femoral / proximal tibial metaphyseal
   trabecular regions, placed and sized as fixed fractions of the tibial
   plateau width (the anatomical scale), resampled to a fixed pixel grid.
4. Biomarkers: :func:`texture_features` (GLCM, LBP, fractal dimension,
   lacunarity), :func:`cortical_thickness` (digital X-ray radiogrammetry on a
   1-D profile across a shaft), :func:`joint_space_width` (osteoarthritis
   covariate), combined by :func:`knee_features` / :func:`image_features`.
5. QA: :func:`draw_detections`.
6. Cohort level: :func:`cohort_biomarkers` runs 1-4 on every image of the
   study cohort with an on-disk cache and returns a :class:`BiomarkerData`
   (per-knee features, per-image status with failure reasons, per-knee ROI
   tiles for the ROI networks, QA thumbnails); :func:`qa_sheets` draws the
   localisation QA gallery.

Geometry conventions: images are indexed ``image[y, x]`` (row, column); boxes
are ``(y0, x0, y1, x1)`` in native pixels, half-open; ``side`` is the side *in
image coordinates* ("left" = the knee on the left of the picture), not the
anatomical side.  All lengths reported by :func:`knee_features` are divided by
the plateau width, so they are comparable between acquisition batches whose
pixel spacing differs (the spacing is not stored in these JPEGs).

Detection works on a block-averaged copy whose long side is about 512 px
(``DETECT_LONG_SIDE``) and maps its results back to native pixels; the joint
line is then refined, and everything downstream is measured, at native
resolution.

Detection outline (per image): polarity check (border darker than centre,
else the image is treated as a negative); percentile stretch; the column
intensity profile gives one or two knee bands (two peaks with a valley below
60 % of the lower peak); per band the joint line is the row with the
strongest dark horizontal band flanked by brighter rows above and below
(:func:`_valley_score`) across the central 60 % of the knee; the plateau
(condylar) width is the extent of the knee at 50 % between air and bone in
the rows 0.03-0.10 W below (above) the joint line, the notch being bridged;
rejection when the condylar / plateau widths disagree (ratio outside
0.75-1.35), the scale is implausible, or a ROI leaves the image / the leg.

Known limitations (study data, 239 images): in close-up images with thick,
bright soft tissue the plateau width includes some soft tissue (W up to
~10-20 % too large); the cortical rows lie at 1.0 W above (distal femoral
metaphysis, where the endosteal edge is ill-defined -- treat the femoral
cortical index with caution) and 1.25 W below the joint (proximal tibial
diaphysis, the more reliable one); the side is not anatomical (markers are
not read), so ROIs are centred rather than medial.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
from scipy import ndimage as ndi
from scipy.signal import find_peaks

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

__all__ = [
    "ImageLoadError",
    "KneeLocalisationError",
    "KneeDetection",
    "LocalisationResult",
    "load_grayscale",
    "detect_knees",
    "localise_knees",
    "extract_rois",
    "texture_features",
    "box_counting_dimension",
    "lacunarity",
    "cortical_thickness",
    "shaft_profile",
    "joint_space_width",
    "joint_space_widths",
    "knee_features",
    "image_features",
    "draw_detections",
    "BIOMARKER_CACHE_VERSION",
    "ImageQA",
    "BiomarkerData",
    "process_image",
    "cohort_biomarkers",
    "feature_columns",
    "patient_features",
    "qa_sheets",
]

# --------------------------------------------------------------------------
# Anatomical constants: every placement is a fraction of the plateau width W.
# --------------------------------------------------------------------------
DETECT_LONG_SIDE = 512
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
#: Gaussian smoothing of shaft profiles, as a fraction of W (~0.3 mm)
SHAFT_SMOOTH_FRAC = 0.004
#: plausible plateau width as a fraction of the image width taken by one knee
#: band / of the image height (guards against silly crops)
MIN_PLATEAU_FRAC_OF_HEIGHT = 0.06
#: minimum dark-band contrast of the joint line (stretched intensity units;
#: the 382 knee bands of the study data range 0.029-0.25, a leg without bone
#: gives ~0.005)
MIN_JOINT_CONTRAST = 0.02
#: level (fraction of the way from air/soft tissue to bone) that delimits the
#: knee in the rows just above / below the joint line
WIDTH_LEVEL = 0.5
MAX_PLATEAU_FRAC_OF_BAND = 1.0


class ImageLoadError(OSError):
    """The file could not be read as an image."""


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


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


def load_grayscale(path: str | os.PathLike) -> np.ndarray:
    """Read an image at native resolution as float32 in [0, 1].

    RGB(A) is converted to luminance (ITU-R BT.601 weights, computed in float,
    no 8-bit rounding); 8- and 16-bit grey levels are scaled by their full
    range.  EXIF orientation is honoured.  Raises :class:`ImageLoadError`
    naming the file when it cannot be read.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    p = os.fspath(path)
    try:
        with Image.open(p) as im:
            im = ImageOps.exif_transpose(im)
            im.load()
            mode = im.mode
            if mode in ("RGB", "RGBA", "CMYK", "YCbCr", "P", "LA", "PA"):
                arr = np.asarray(im.convert("RGB"), dtype=np.float64) @ _LUMA / 255.0
            elif mode in ("L", "1"):
                arr = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
            elif mode.startswith("I;16"):
                arr = np.asarray(im, dtype=np.float64) / 65535.0
            elif mode in ("I", "F"):
                arr = np.asarray(im, dtype=np.float64)
                lo, hi = float(arr.min()), float(arr.max())
                arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
            else:
                arr = np.asarray(im.convert("L"), dtype=np.float64) / 255.0
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise ImageLoadError(f"cannot read image {p!r}: {exc}") from exc
    if arr.ndim != 2 or arr.size == 0:
        raise ImageLoadError(f"cannot read image {p!r}: unexpected shape {arr.shape}")
    return np.clip(arr, 0.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------
# Detection helpers (all on the small detection image)
# --------------------------------------------------------------------------
def _downsample(img: np.ndarray, target: int = DETECT_LONG_SIDE) -> tuple[np.ndarray, int]:
    """Block-mean downsampling by an integer factor f (long side <= ~target).

    Small pixel (r, c) covers native rows r*f .. r*f+f-1; its centre maps to
    native ``r*f + (f-1)/2``.
    """
    f = max(1, int(math.ceil(max(img.shape) / float(target))))
    h, w = img.shape[0] // f * f, img.shape[1] // f * f
    small = img[:h, :w].astype(np.float64).reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    return small, f


def _is_inverted(small: np.ndarray) -> bool:
    """Polarity check: air / padding at the image border should be darker
    than the centre of the picture (where the knee is).  Returns True when the
    border is clearly brighter, i.e. the image is a negative."""
    h, w = small.shape
    b = max(2, int(0.04 * min(h, w)))
    border = np.concatenate(
        [small[:b].ravel(), small[-b:].ravel(), small[:, :b].ravel(), small[:, -b:].ravel()]
    )
    centre = small[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]
    return float(np.median(border)) > float(np.median(centre)) + 0.05


def _stretch(small: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(small, [1.0, 99.5])
    if hi - lo < 1e-6:
        return np.zeros_like(small)
    return np.clip((small - lo) / (hi - lo), 0.0, 1.0)


def _otsu(values: np.ndarray) -> float:
    from skimage.filters import threshold_otsu

    values = values[np.isfinite(values)]
    if values.size < 2 or np.ptp(values) < 1e-9:
        return float(values.mean()) if values.size else 0.5
    return float(threshold_otsu(values))


def _knee_bands(s: np.ndarray) -> tuple[list[tuple[int, int, int]], str | None]:
    """Split the picture into one or two vertical knee bands from the column
    intensity profile.  Returns ``[(band_x0, peak_x, band_x1), ...]`` (small
    px) and a failure reason (or None)."""
    w = s.shape[1]
    cp = ndi.gaussian_filter1d(s.mean(axis=0), max(1.0, 0.02 * w))
    peaks, _ = find_peaks(cp)
    if peaks.size == 0:
        peaks = np.array([int(np.argmax(cp))])
    top = float(cp[peaks].max())
    if top < 0.08:
        return [], "no bone found (image is nearly uniform / dark)"
    peaks = [int(p) for p in peaks if cp[p] >= 0.5 * top]
    best = None
    for a in range(len(peaks)):
        for b in range(a + 1, len(peaks)):
            p, q = peaks[a], peaks[b]
            if q - p < 0.2 * w:
                continue
            v = float(cp[p : q + 1].min()) / max(1e-9, min(cp[p], cp[q]))
            if best is None or v < best[0]:
                best = (v, p, q)
    if best is not None and best[0] < 0.6:
        _, p, q = best
        valley = p + int(np.argmin(cp[p : q + 1]))
        return [(0, p, valley), (valley, q, w)], None
    p = int(peaks[int(np.argmax(cp[peaks]))])
    return [(0, p, w)], None


def _runs(mask1d: np.ndarray) -> list[tuple[int, int]]:
    """Half-open runs of True values."""
    m = np.concatenate([[False], mask1d.astype(bool), [False]])
    d = np.diff(m.astype(np.int8))
    starts = np.flatnonzero(d == 1)
    ends = np.flatnonzero(d == -1)
    return list(zip(starts.tolist(), ends.tolist()))


def _run_containing(mask1d: np.ndarray, x: float, max_gap: int = 0) -> tuple[int, int] | None:
    """Run of True containing (or nearest to) column x, after closing gaps of
    up to ``max_gap`` px."""
    m = mask1d.astype(bool)
    if max_gap > 0 and m.any():
        m = ndi.binary_closing(m, structure=np.ones(2 * max_gap + 1, bool)) | m
    runs = _runs(m)
    if not runs:
        return None
    best = None
    for a, b in runs:
        d = 0.0 if a <= x < b else min(abs(a - x), abs(b - 1 - x))
        if best is None or d < best[0] or (d == best[0] and b - a > best[1][1] - best[1][0]):
            best = (d, (a, b))
    return best[1]


def _valley_score(s: np.ndarray, half: int) -> np.ndarray:
    """Dark-horizontal-band response: min(brightest of the ``half`` rows
    above, brightest of the ``half`` rows below) minus the value itself.
    Positive on a dark band with bright bone on both sides; ~0 on a step."""
    half = max(2, int(half))
    h = s.shape[0]
    pad = np.pad(s, ((half, half), (0, 0)), mode="edge")
    ups = pad[half - 1 : half - 1 + h].copy()
    dns = pad[half + 1 : half + 1 + h].copy()
    for k in range(2, half + 1):
        np.maximum(ups, pad[half - k : half - k + h], out=ups)
        np.maximum(dns, pad[half + k : half + k + h], out=dns)
    return np.minimum(ups, dns) - s


def _to_native(v: float, f: int) -> float:
    """Small-image coordinate (pixel centre) -> native coordinate."""
    return v * f + (f - 1) / 2.0


def _row_band_profile(s: np.ndarray, y0: float, y1: float, x0: int, x1: int) -> np.ndarray:
    h = s.shape[0]
    a = int(np.clip(round(y0), 0, h - 1))
    b = int(np.clip(round(y1), a + 1, h))
    return s[a:b, x0:x1].mean(axis=0)


def _width_at(
    s: np.ndarray, y0: float, y1: float, bx0: int, bx1: int, cx: float, lo: float, gap: int,
    frac: float = WIDTH_LEVEL,
) -> tuple[int, int] | None:
    """Width of the bright structure containing column cx in the row band
    [y0, y1): threshold at ``lo + frac * (p90 - lo)`` where p90 is taken over
    the leg (values above the midpoint).  Dark gaps of up to ``gap`` px are
    bridged only where they stay inside the leg (above ``lo + 0.3 (p90 -
    lo)``), so the intercondylar notch is bridged but air between the leg and
    a burned-in marker is not."""
    prof = _row_band_profile(s, y0, y1, bx0, bx1)
    leg = prof[prof > lo + 0.5 * (prof.max() - lo)]
    if leg.size == 0:
        return None
    hi = float(np.percentile(leg, 90))
    if hi - lo < 0.05:
        return None
    bone = prof > lo + frac * (hi - lo)
    if gap > 0:
        inside = prof > lo + 0.3 * (hi - lo)
        closed = ndi.binary_closing(bone, structure=np.ones(2 * gap + 1, bool), border_value=0)
        bone = bone | (closed & inside)
    run = _run_containing(bone, cx - bx0)
    if run is None:
        return None
    return run[0] + bx0, run[1] + bx0


#: plausible outer diameter of the shaft at the measurement row, in W
SHAFT_D_RANGE = {"femoral": (0.30, 0.90), "tibial": (0.25, 0.65)}


def _measure_shaft(img: np.ndarray, row: int, xs: tuple[int, int], W: float, kind: str = "tibial") -> dict:
    """DXR measurement across a shaft at native resolution, with anatomical
    plausibility checks: outer diameter within ``SHAFT_D_RANGE[kind]`` (in
    W), cortical index 0.15-0.9, the two cortices within a factor 3 of each
    other and the two periosteal edges of comparable strength (>= 25 %)."""
    prof = shaft_profile(img, row, xs[0], xs[1], half_rows=max(2, int(round(0.01 * W))))
    res = cortical_thickness(prof, smooth=max(1.0, SHAFT_SMOOTH_FRAC * W))
    if res["ok"]:
        dlo, dhi = SHAFT_D_RANGE.get(kind, (0.2, 0.9))
        tl, tr = res["thickness_left"], res["thickness_right"]
        if not (dlo <= res["D"] / W <= dhi):
            res["ok"] = False
            res["reason"] = f"implausible outer diameter ({res['D'] / W:.2f} W)"
        elif not (0.15 <= res["cortical_index"] <= 0.9):
            res["ok"] = False
            res["reason"] = f"implausible cortical index ({res['cortical_index']:.2f})"
        elif max(tl, tr) > 3 * min(tl, tr):
            res["ok"] = False
            res["reason"] = f"asymmetric cortices ({tl:.1f} vs {tr:.1f} px)"
        elif res.get("outer_balance", 1.0) < 0.25:
            res["ok"] = False
            res["reason"] = f"one periosteal edge missing (balance {res['outer_balance']:.2f})"
    for k in ("outer_left", "inner_left", "inner_right", "outer_right"):
        res[k] = res[k] + xs[0]
    return res


def _localise_one(
    s: np.ndarray, body: np.ndarray, band: tuple[int, int, int]
) -> tuple[dict | None, str | None]:
    """Localise one knee inside a vertical band of the small image.

    Returns (dict of small-image geometry, None) or (None, reason)."""
    h, w = s.shape
    bx0, px, bx1 = band
    cp = ndi.gaussian_filter1d(s[:, bx0:bx1].mean(axis=0), max(1.0, 0.02 * w))
    pk = px - bx0
    base = float(cp.min())
    hump = _run_containing(cp >= base + 0.5 * (cp[pk] - base), pk)
    if hump is None:
        return None, "no bone found in knee band"
    w0 = float(hump[1] - hump[0])
    if w0 < 0.05 * max(h, w):
        return None, f"no bone found (bright structure only {w0:.0f} px wide)"
    cx = bx0 + 0.5 * (hump[0] + hump[1])

    # ---- joint line: strongest dark horizontal band across the knee centre
    half = max(3, int(round(0.06 * w0)))
    xa = int(np.clip(round(cx - 0.3 * w0), bx0, bx1 - 1))
    xb = int(np.clip(round(cx + 0.3 * w0), xa + 1, bx1))
    v = _valley_score(s[:, xa:xb], half)
    r = ndi.gaussian_filter1d(np.clip(v, 0, None).mean(axis=1), 1.0)
    margin = half + 1
    r[:margin] = 0
    r[h - margin :] = 0
    jy = int(np.argmax(r))
    contrast = float(r[jy])
    if contrast < MIN_JOINT_CONTRAST:
        return None, f"joint line not found (no dark horizontal band, contrast {contrast:.3f})"

    # ---- bone threshold around the joint (Otsu on body pixels): only used
    # for the ROI bone-coverage part of the score
    ya = int(max(0, jy - 0.5 * w0))
    yb = int(min(h, jy + 0.5 * w0))
    region = s[ya:yb, bx0:bx1]
    breg = body[ya:yb, bx0:bx1]
    if breg.sum() < 50:
        return None, "no body pixels around the joint"
    t_bone = _otsu(region[breg])
    lo = float(np.percentile(region, 2))

    # ---- plateau (just below joint) and condyles (just above), 2 passes.
    # At the joint line the soft tissue is thin, so the knee is segmented by
    # a level 60 % of the way from the darkest (air / tissue) to the bone
    # level (90th percentile of the row band) -- an edge-like criterion that
    # does not depend on the trabecular interior being above a global
    # threshold.
    W = w0
    plateau = condyles = None
    for _ in range(2):
        gap = max(1, int(round(0.08 * W)))
        plateau = _width_at(s, jy + 0.03 * W, jy + 0.10 * W, bx0, bx1, cx, lo, gap)
        # the intercondylar notch is dark: bridge gaps up to ~0.3 W
        condyles = _width_at(
            s, jy - 0.10 * W, jy - 0.03 * W, bx0, bx1, cx, lo, max(gap, int(round(0.15 * W)))
        )
        if plateau is None:
            return None, "tibial plateau not found below the joint line"
        W = float(plateau[1] - plateau[0])
        cx = 0.5 * (plateau[0] + plateau[1])
        if W < 3:
            return None, f"implausible plateau width ({W:.0f} px at detection scale)"
    cw = float(condyles[1] - condyles[0]) if condyles is not None else float("nan")

    return (
        dict(
            cx=cx, jy=jy, W=W, plateau=plateau, condyles=condyles, cw=cw, t_bone=t_bone,
            contrast=contrast, w0=w0, band=band, half=half,
        ),
        None,
    )


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


def _refine_joint_native(img: np.ndarray, cx: float, jy: float, W: float) -> dict:
    """Refine the joint line and measure the joint-space width at native
    resolution in vertical strips over both compartments.

    Per strip (width 0.05 W, centred at cx +- {0.15..0.35} W) the column-mean
    intensity profile over jy +- 0.15 W is smoothed; the darkest row within
    +-0.08 W of jy is the gap, the femoral edge is the steepest descent above
    it and the tibial edge the steepest ascent below it.  Returns per side
    (image left / right of cx) the median gap centre row and median JSW."""
    H, Wimg = img.shape
    sig = max(1.0, 0.006 * W)
    y0 = int(max(0, round(jy - 0.15 * W)))
    y1 = int(min(H, round(jy + 0.15 * W)))
    out: dict[str, Any] = {}
    if y1 - y0 < 10:
        return {"rows": (np.nan, np.nan), "jsw": (np.nan, np.nan)}
    search = 0.08 * W
    rows, jsws = [], []
    for sign in (-1, +1):
        rr, jj = [], []
        for frac in (0.15, 0.20, 0.25, 0.30, 0.35):
            xc = cx + sign * frac * W
            xa = int(round(xc - 0.025 * W))
            xb = int(round(xc + 0.025 * W))
            if xa < 0 or xb > Wimg or xb - xa < 1:
                continue
            p = ndi.gaussian_filter1d(img[y0:y1, xa:xb].astype(np.float64).mean(axis=1), sig)
            g = np.gradient(p)
            lo = int(max(1, round(jy - search - y0)))
            hi = int(min(len(p) - 1, round(jy + search - y0)))
            if hi - lo < 3:
                continue
            m = lo + int(np.argmin(p[lo:hi]))
            fa = int(max(0, round(m - search)))
            tb = int(min(len(p), round(m + search)))
            if m - fa < 2 or tb - m < 2:
                continue
            fe = fa + int(np.argmin(g[fa : m + 1]))
            te = m + int(np.argmax(g[m:tb]))
            depth = min(p[fa : m + 1].max(), p[m:tb].max()) - p[m]
            if depth <= 0.01 * max(1e-6, np.ptp(p)) or te <= fe:
                continue
            rr.append(y0 + 0.5 * (fe + te))
            jj.append(float(te - fe))
        rows.append(float(np.median(rr)) if rr else np.nan)
        jsws.append(float(np.median(jj)) if jj else np.nan)
    out["rows"] = (rows[0], rows[1])
    out["jsw"] = (jsws[0], jsws[1])
    return out


def _box(cy0: float, cx0: float, cy1: float, cx1: float) -> Box:
    return int(round(cy0)), int(round(cx0)), int(round(cy1)), int(round(cx1))


def _box_inside(box: Box, shape: tuple[int, int]) -> bool:
    y0, x0, y1, x1 = box
    return y0 >= 0 and x0 >= 0 and y1 <= shape[0] and x1 <= shape[1] and y1 > y0 and x1 > x0


def _box_coverage(mask_small: np.ndarray, box: Box, f: int) -> float:
    y0, x0, y1, x1 = (int(v // f) for v in box)
    sub = mask_small[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)]
    return float(sub.mean()) if sub.size else 0.0


def _prepare(image: np.ndarray) -> np.ndarray:
    """Any 2-D grey / 3-channel image -> float64 2-D array in [0, 1]."""
    arr = np.asarray(image)
    if arr.ndim == 2 and arr.dtype.kind == "f":
        return arr  # no copy: callers never write into it
    scale = float(np.iinfo(arr.dtype).max) if arr.dtype.kind in "ui" else 1.0
    img = arr.astype(np.float64) / scale
    if img.ndim == 3 and img.shape[2] in (3, 4):
        img = img[..., :3] @ _LUMA
    if img.ndim != 2:
        raise ValueError(f"expected a 2-D grayscale image, got shape {arr.shape}")
    if not np.all(np.isfinite(img)):
        img = np.nan_to_num(img)
    return img


def detect_knees(image: np.ndarray) -> LocalisationResult:
    """Localise the knee(s) of an AP knee radiograph (leg axis vertical).

    Returns a :class:`LocalisationResult` holding the accepted detections
    (native pixel coordinates) and one reason string per rejected candidate.
    The image may be a negative: polarity is checked (the border / air must
    be darker than the centre) and, if inverted, detection works on
    ``1 - image`` and every detection has ``inverted=True``; downstream
    functions then invert the pixels themselves.
    """
    img = _prepare(image)
    H, Wn = img.shape
    if min(H, Wn) < 64:
        return LocalisationResult([], [f"image too small ({H}x{Wn})"])
    small, f = _downsample(img)
    if float(np.ptp(small)) < 0.02:
        return LocalisationResult([], ["no bone found (image has no contrast)"])
    inverted = _is_inverted(small)
    if inverted:
        small = 1.0 - small
    s = ndi.gaussian_filter(_stretch(small), 1.0)
    from skimage.filters import threshold_multiotsu

    try:
        t_body = float(threshold_multiotsu(s, classes=3)[0])
    except ValueError:
        t_body = _otsu(s)
    body = s > t_body
    bands, why = _knee_bands(s)
    if not bands:
        return LocalisationResult([], [why or "no bone found"], inverted)
    sides = ["single"] if len(bands) == 1 else ["left", "right"]
    dets: list[KneeDetection] = []
    fails: list[str] = []
    for side, band in zip(sides, bands):
        g, why = _localise_one(s, body, band)
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
    ref = _refine_joint_native(img, cx, jy, W)
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
        if not _box_inside(box, (H, Wn)):
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
        res = _measure_shaft(img, row, xs, W, name)
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


# --------------------------------------------------------------------------
# ROIs
# --------------------------------------------------------------------------
#: texture is computed on ROIs resampled to this many pixels per side (see
#: :func:`extract_rois` and :func:`knee_features`)
TEXTURE_ROI_SIZE = 128


def _polarity(image: np.ndarray, detection: KneeDetection) -> np.ndarray:
    img = _prepare(image)
    return 1.0 - img if detection.inverted else img


def extract_rois(image: np.ndarray, detection: KneeDetection, size: int | None = 256) -> dict[str, np.ndarray]:
    """Crop the distal-femoral and proximal-tibial metaphyseal trabecular
    ROIs (``femur_trabecular``, ``tibia_trabecular``) from the native image.

    The boxes are squares of side ``ROI_SIDE_FRAC * plateau_width`` (0.30 W:
    about 85 px in the 1024 px batch, 130-150 px in the 2 k batches), so they
    cover the same anatomy in every knee.  Because the pixel spacing differs
    between acquisition batches (and is not recorded), the crops are
    resampled to ``size x size`` (bilinear, anti-aliased when shrinking) so
    that one pixel is always the same fraction of W -- texture distances
    (GLCM offsets, LBP radii, box sizes) then mean the same anatomical
    length in every image.  ``size=None`` returns the native pixels
    unchanged.  The default 256 follows the project's convention;
    :func:`knee_features` uses ``TEXTURE_ROI_SIZE`` (128), which is close to
    the native ROI side of every batch, so that little detail is invented by
    upsampling.  Inverted images (``detection.inverted``) are flipped back so
    that bone is bright.  Returns float32 arrays.
    """
    from skimage.transform import resize

    img = _polarity(image, detection)
    out = {}
    for name, box in (("femur_trabecular", detection.femur_roi), ("tibia_trabecular", detection.tibia_roi)):
        y0, x0, y1, x1 = box
        if not _box_inside(box, img.shape):
            raise ValueError(f"{name} box {box} lies outside the image {img.shape}")
        crop = img[y0:y1, x0:x1]
        if size is not None and crop.shape != (size, size):
            crop = resize(
                crop, (size, size), order=1, mode="reflect", preserve_range=True,
                anti_aliasing=bool(min(crop.shape) > size),
            )
        out[name] = np.asarray(crop, dtype=np.float32)
    return out


# --------------------------------------------------------------------------
# Texture
# --------------------------------------------------------------------------
GLCM_DISTANCES = (1, 2, 4)
GLCM_LEVELS = 32
LBP_CONFIGS = ((8, 1), (16, 2))
LACUNARITY_BOXES = (4, 8, 16, 32)


def _normalise_roi(roi: np.ndarray, detrend_sigma: float | None) -> np.ndarray:
    """Per-ROI normalisation -> values in [0, 1].

    Optional high-pass (subtract a Gaussian blur, removes the soft-tissue /
    bone-thickness trend), then a percentile stretch (1st..99th percentile
    -> 0..1, clipped).  Both are equivariant to ``a * roi + b`` (a > 0), so
    everything computed from the result is invariant to linear intensity
    changes between acquisition batches."""
    x = np.asarray(roi, dtype=np.float64)
    if detrend_sigma:
        x = x - ndi.gaussian_filter(x, detrend_sigma, mode="reflect")
    lo, hi = np.percentile(x, [1.0, 99.0])
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.zeros_like(x)
    return np.clip((x - lo) / (hi - lo), 0.0, 1.0)


def _quantise(z: np.ndarray, levels: int) -> np.ndarray:
    # rounding before floor removes float noise (~1e-16) so that an
    # affine-transformed ROI quantises identically
    q = np.floor(np.round(z * levels, 6))
    return np.clip(q, 0, levels - 1).astype(np.uint8 if levels <= 256 else np.uint16)


def box_counting_dimension(mask: np.ndarray, sizes: Iterable[int] | None = None) -> float:
    """Box-counting (Minkowski-Bouligand) dimension of a binary pattern.

    Counts N(s) = number of s x s boxes (grid anchored at the origin, image
    zero-padded to a multiple of s) holding at least one foreground pixel for
    s = 1, 2, 4, ... up to a quarter of the shorter side, and returns the
    least-squares slope of log N(s) against log(1/s).  A filled square gives
    2, a straight line 1.  NaN for an empty mask."""
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2 or not m.any():
        return float("nan")
    n = min(m.shape)
    if sizes is None:
        sizes = [2**k for k in range(0, int(np.log2(max(n // 4, 1))) + 1)]
    sizes = [int(s) for s in sizes if s >= 1]
    counts = []
    for s in sizes:
        H = int(math.ceil(m.shape[0] / s)) * s
        W = int(math.ceil(m.shape[1] / s)) * s
        pad = np.zeros((H, W), dtype=bool)
        pad[: m.shape[0], : m.shape[1]] = m
        counts.append(pad.reshape(H // s, s, W // s, s).any(axis=(1, 3)).sum())
    if len(sizes) < 2:
        return float("nan")
    slope = np.polyfit(np.log(1.0 / np.asarray(sizes, float)), np.log(np.asarray(counts, float)), 1)[0]
    return float(slope)


def lacunarity(mask: np.ndarray, box: int) -> float:
    """Gliding-box lacunarity of a binary pattern for box side ``box``:
    Lambda = E[M^2] / E[M]^2 over all box positions, M the foreground count
    in the box.  1 for a homogeneous pattern, larger for gappy ones; NaN if
    the box does not fit or the mask is empty."""
    m = np.asarray(mask, dtype=np.float64)
    r = int(box)
    if r < 1 or r > min(m.shape):
        return float("nan")
    ii = np.zeros((m.shape[0] + 1, m.shape[1] + 1))
    ii[1:, 1:] = m.cumsum(0).cumsum(1)
    S = ii[r:, r:] - ii[:-r, r:] - ii[r:, :-r] + ii[:-r, :-r]
    mean = S.mean()
    if mean <= 0:
        return float("nan")
    return float((S**2).mean() / mean**2)


def texture_features(roi: np.ndarray, detrend_sigma: float | str | None = "auto") -> dict[str, float]:
    """Trabecular texture descriptors of one ROI (bone bright).

    Normalisation (see :func:`_normalise_roi`): high-pass with a Gaussian of
    sigma = side / 8 (``detrend_sigma="auto"``; None disables), percentile
    stretch to [0, 1]; invariant to ``a * roi + b`` with a > 0.

    * GLCM on 32 grey levels, symmetric, normalised, offsets 1, 2, 4 px at
      0, 45, 90, 135 degrees; contrast, homogeneity, energy and correlation
      averaged over the angles: ``glcm_<prop>_d<k>``.
    * Uniform rotation-invariant LBP on 256 levels, (P, R) = (8, 1) and
      (16, 2): histogram entropy (bits) and the fractions of dark-spot
      (code 0), edge (P/2), bright-spot/flat (P) and non-uniform (P+1)
      patterns: ``lbp_r<R>_<name>``.
    * The trabecular pattern binarised by Otsu's threshold on the
      normalised ROI: bone area fraction, box-counting fractal dimension of
      the binary pattern (``fd_binary``) and of its skeleton
      (``fd_skeleton``, the trabecular network), gliding-box lacunarity at
      boxes 4, 8, 16, 32 px (``lac_b<k>``) and the log-log slope of
      lacunarity against box size (``lac_slope``).
    """
    from skimage.feature import graycomatrix, graycoprops, local_binary_pattern
    from skimage.filters import threshold_otsu
    from skimage.morphology import skeletonize

    x = np.asarray(roi, dtype=np.float64)
    if x.ndim != 2 or min(x.shape) < 16:
        raise ValueError(f"ROI must be a 2-D array of at least 16x16 px, got {x.shape}")
    if isinstance(detrend_sigma, str):
        detrend_sigma = min(x.shape) / 8.0
    z = _normalise_roi(x, detrend_sigma)
    feats: dict[str, float] = {}

    q = _quantise(z, GLCM_LEVELS)
    angles = [0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4]
    P = graycomatrix(q, distances=list(GLCM_DISTANCES), angles=angles, levels=GLCM_LEVELS,
                     symmetric=True, normed=True)
    for prop in ("contrast", "homogeneity", "energy", "correlation"):
        with np.errstate(invalid="ignore", divide="ignore"):
            v = graycoprops(P, prop)
        for i, d in enumerate(GLCM_DISTANCES):
            feats[f"glcm_{prop}_d{d}"] = float(np.nanmean(v[i])) if np.any(np.isfinite(v[i])) else float("nan")

    q256 = _quantise(z, 256)
    for npts, rad in LBP_CONFIGS:
        codes = local_binary_pattern(q256, npts, rad, method="uniform")
        hist = np.bincount(codes.astype(np.int64).ravel(), minlength=npts + 2)[: npts + 2].astype(float)
        hist /= hist.sum()
        nz = hist[hist > 0]
        feats[f"lbp_r{rad}_entropy"] = float(-(nz * np.log2(nz)).sum())
        feats[f"lbp_r{rad}_dark_spot"] = float(hist[0])
        feats[f"lbp_r{rad}_edge"] = float(hist[npts // 2])
        feats[f"lbp_r{rad}_flat"] = float(hist[npts])
        feats[f"lbp_r{rad}_nonuniform"] = float(hist[npts + 1])

    if q256.min() == q256.max():
        binary = np.zeros(q256.shape, bool)
    else:
        binary = q256 > threshold_otsu(q256)
    feats["bone_fraction"] = float(binary.mean())
    feats["fd_binary"] = box_counting_dimension(binary)
    feats["fd_skeleton"] = box_counting_dimension(skeletonize(binary)) if binary.any() else float("nan")
    lacs = []
    for b in LACUNARITY_BOXES:
        lv = lacunarity(binary, b)
        feats[f"lac_b{b}"] = lv
        lacs.append(lv)
    lacs_a = np.asarray(lacs, float)
    ok = np.isfinite(lacs_a) & (lacs_a > 0)
    feats["lac_slope"] = (
        float(np.polyfit(np.log(np.asarray(LACUNARITY_BOXES, float)[ok]), np.log(lacs_a[ok]), 1)[0])
        if ok.sum() >= 2 else float("nan")
    )
    return feats


# --------------------------------------------------------------------------
# Joint space, knee and image level features
# --------------------------------------------------------------------------
def joint_space_widths(image: np.ndarray, detection: KneeDetection) -> tuple[float, float]:
    """Minimum-gap joint-space width (px) of the two compartments (image
    left, image right of the knee centre); see :func:`_refine_joint_native`.
    NaN where the gap could not be measured."""
    img = _polarity(image, detection)
    ref = _refine_joint_native(img, detection.centre_x, float(detection.joint_line_y), detection.plateau_width)
    return ref["jsw"]


def joint_space_width(image: np.ndarray, detection: KneeDetection) -> float:
    """Mean joint-space width of the two tibiofemoral compartments, in
    native px (divide by ``detection.plateau_width`` for a scale-free value,
    as :func:`knee_features` does).  In each compartment, in vertical strips
    of 0.05 W at 0.15-0.35 W from the knee centre, the gap is the darkest row
    near the joint line and its width the distance between the steepest
    descent above (femoral condyle) and steepest ascent below (tibial
    plateau); the median over strips is taken.  An osteoarthritis covariate,
    not a bone-density biomarker.  NaN when not measurable."""
    a, b = joint_space_widths(image, detection)
    vals = [v for v in (a, b) if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def knee_features(image: np.ndarray, detection: KneeDetection, roi_size: int = TEXTURE_ROI_SIZE) -> dict[str, float]:
    """All biomarkers of one knee, scale-free (lengths divided by the plateau
    width W) and without identifiers.

    Keys: ``femur_<texture>`` / ``tibia_<texture>`` (:func:`texture_features`
    on ROIs resampled to ``roi_size``), ``<femur|tibia>_cort_thickness``,
    ``_cort_D``, ``_cort_d`` (all / W), ``_cort_index`` (DXR at the shaft
    rows; NaN when the row is outside the field of view or the measurement
    failed its checks), ``jsw_mean``, ``jsw_min``, ``jsw_left``, ``jsw_right``
    (/ W), ``condyle_plateau_ratio``, and quality fields prefixed ``qa_``
    (plateau width in px, native ROI side, detection score, polarity). The
    ``qa_`` pixel sizes differ between batches; do not use them as
    predictors.
    """
    img = _polarity(image, detection)
    W = float(detection.plateau_width)
    feats: dict[str, float] = {}
    rois = extract_rois(image, detection, size=roi_size)
    for name, roi in rois.items():
        prefix = name.split("_")[0]
        for k, v in texture_features(roi).items():
            feats[f"{prefix}_{k}"] = v
    for prefix, row, xs in (
        ("femur", detection.femur_shaft_row, detection.femur_shaft_x),
        ("tibia", detection.tibia_shaft_row, detection.tibia_shaft_x),
    ):
        res = None
        if row is not None and xs is not None:
            res = _measure_shaft(img, row, xs, W, "femoral" if prefix == "femur" else "tibial")
        ok = bool(res and res["ok"])
        feats[f"{prefix}_cort_thickness"] = res["cortical_thickness"] / W if ok else float("nan")
        feats[f"{prefix}_cort_D"] = res["D"] / W if ok else float("nan")
        feats[f"{prefix}_cort_d"] = res["d"] / W if ok else float("nan")
        feats[f"{prefix}_cort_index"] = res["cortical_index"] if ok else float("nan")
    ref = _refine_joint_native(img, detection.centre_x, float(detection.joint_line_y), W)
    jl, jr = ref["jsw"]
    vals = [v for v in (jl, jr) if np.isfinite(v)]
    feats["jsw_left"] = jl / W
    feats["jsw_right"] = jr / W
    feats["jsw_mean"] = float(np.mean(vals)) / W if vals else float("nan")
    feats["jsw_min"] = float(np.min(vals)) / W if vals else float("nan")
    feats["condyle_plateau_ratio"] = float(detection.condyle_width / W)
    feats["qa_plateau_width_px"] = W
    feats["qa_roi_native_px"] = float(detection.tibia_roi[2] - detection.tibia_roi[0])
    feats["qa_score"] = float(detection.score)
    feats["qa_inverted"] = float(detection.inverted)
    return feats


def image_features(path: str | os.PathLike, patient_id: str) -> tuple["pd.DataFrame", list[str]]:
    """Load one radiograph, localise its knees and compute
    :func:`knee_features` for each.  Returns a DataFrame with one row per
    knee (columns ``patient_id``, ``image``, ``knee`` = side in image
    coordinates, ``n_knees``, then the features) and a list of failure
    reasons (``"<image>: <reason>"``) for the image or for rejected knees;
    never raises for a bad image."""
    import pandas as pd

    name = os.path.basename(os.fspath(path))
    try:
        img = load_grayscale(path)
    except ImageLoadError as exc:
        return pd.DataFrame(), [f"{name}: {exc}"]
    res = detect_knees(img)
    failures = [f"{name}: {r}" for r in res.failures]
    rows = []
    for det in res.detections:
        try:
            feats = knee_features(img, det)
        except Exception as exc:  # a feature failure must not lose the other knee
            failures.append(f"{name}: {det.side} knee: feature extraction failed: {exc}")
            continue
        rows.append({"patient_id": patient_id, "image": name, "knee": det.side,
                     "n_knees": len(res.detections), **feats})
    return pd.DataFrame(rows), failures


# --------------------------------------------------------------------------
# QA drawing
# --------------------------------------------------------------------------
def draw_detections(ax, image: np.ndarray, detections: Sequence[KneeDetection], title: str | None = None):
    """Draw the image and, per knee, its horizontal extent (yellow), plateau
    width (cyan), joint line (red) with the per-compartment gap rows (red
    dots), trabecular ROIs (green = femur, blue = tibia) and the shaft rows
    where cortices are measured (magenta).  Returns the axis."""
    from matplotlib.patches import Rectangle

    img = _prepare(image)
    ax.imshow(img, cmap="gray", vmin=0, vmax=1, interpolation="antialiased")
    for d in detections:
        W = d.plateau_width
        ax.plot([d.x0, d.x0], [d.joint_line_y - 0.6 * W, d.joint_line_y + 0.6 * W], "y-", lw=0.8)
        ax.plot([d.x1, d.x1], [d.joint_line_y - 0.6 * W, d.joint_line_y + 0.6 * W], "y-", lw=0.8)
        ax.plot([d.x0, d.x1], [d.joint_line_y] * 2, "r-", lw=0.8)
        yp = d.joint_line_y + 0.06 * W
        ax.plot([d.plateau_x0, d.plateau_x1], [yp, yp], "c-", lw=1.0)
        for sign, r in zip((-1, 1), d.joint_rows):
            if np.isfinite(r):
                ax.plot([d.centre_x + sign * 0.25 * W], [r], "r.", ms=4)
        for box, col in ((d.femur_roi, "lime"), (d.tibia_roi, "deepskyblue")):
            y0, x0, y1, x1 = box
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec=col, lw=1.0))
        for row, xs in ((d.femur_shaft_row, d.femur_shaft_x), (d.tibia_shaft_row, d.tibia_shaft_x)):
            if row is not None and xs is not None:
                ax.plot([xs[0], xs[1]], [row, row], "m-", lw=1.2)
        ax.text(d.x0, d.joint_line_y - 0.65 * W, f"{d.side} s={d.score:.2f}", color="y", fontsize=6)
    if title:
        ax.set_title(title, fontsize=7)
    ax.set_axis_off()
    return ax


# --------------------------------------------------------------------------
# Cortical thickness (digital X-ray radiogrammetry on a 1-D profile)
# --------------------------------------------------------------------------
def _subpixel_peak(g: np.ndarray, i: int) -> float:
    """Parabolic interpolation of an extremum of g at index i."""
    if 0 < i < len(g) - 1:
        a, b, c = g[i - 1], g[i], g[i + 1]
        den = a - 2 * b + c
        if den != 0:
            off = 0.5 * (a - c) / den
            if abs(off) <= 1:
                return i + off
    return float(i)


def cortical_thickness(profile: np.ndarray, smooth: float = 1.0, min_edge_ratio: float = 0.1) -> dict:
    """Measure a tubular bone from a 1-D intensity profile across its shaft
    (bone bright, profile roughly centred on the shaft, perpendicular to its
    axis).

    In a projection radiograph of a cortical tube the path length through
    bone rises steeply at the periosteal (outer) edge, peaks at the
    endosteal (inner) edge and drops into the medullary canal, so -- as in
    digital X-ray radiogrammetry -- the outer edges are the strongest rising
    / falling gradients bounding the bone and the inner edges the strongest
    opposite gradients between each outer edge and the shaft centre.

    Steps: Gaussian smoothing (``smooth`` px), gradient; the bone extent is
    from the first to the last sample above the mid level (between the 5th
    and 95th percentiles) -- so the profile should hold one bone with a
    little soft tissue on each side (see :func:`knee_features`, which
    crops it so); outer-left edge = max gradient within
    the left half of the bone extent widened by 25 %, outer-right = min
    gradient in the right half; inner-left = min gradient between outer-left
    and the centre, inner-right = max gradient between the centre and
    outer-right; sub-pixel positions by parabolic interpolation.

    Returns a dict with ``ok`` (bool), ``reason`` (str, empty when ok),
    ``outer_left``, ``inner_left``, ``inner_right``, ``outer_right`` (px),
    ``D`` (outer diameter), ``d`` (medullary diameter),
    ``thickness_left``, ``thickness_right``, ``cortical_thickness`` (mean of
    the two cortices, px), ``cortical_index`` ((D - d) / D) and
    ``edge_ratio`` (weakest inner-edge gradient / weakest outer-edge
    gradient) and ``outer_balance`` (weaker / stronger periosteal edge).
    The measurements (D, d, thicknesses, index) are NaN when ``ok`` is
    False; edge positions found before the failure are kept for QA.

    The outer edges sit ~1-3 px inside the true periosteal surface on a
    blurred profile (the gradient of the square-root-shaped rise peaks just
    inside it), so D and d are biased low by about the same amount and the
    thickness much less.
    """
    keys = (
        "outer_left", "inner_left", "inner_right", "outer_right", "D", "d",
        "thickness_left", "thickness_right", "cortical_thickness", "cortical_index", "edge_ratio",
        "outer_balance",
    )
    out: dict[str, Any] = {k: float("nan") for k in keys}
    out.update(ok=False, reason="")
    p = np.asarray(profile, dtype=np.float64).ravel()
    if p.size < 12 or not np.all(np.isfinite(p)):
        out["reason"] = "profile too short or not finite"
        return out
    ps = ndi.gaussian_filter1d(p, smooth) if smooth > 0 else p
    lo, hi = np.percentile(ps, [5, 95])
    if hi - lo <= 1e-9:
        out["reason"] = "flat profile (no bone)"
        return out
    above = np.flatnonzero(ps > lo + 0.5 * (hi - lo))
    if above.size == 0:
        out["reason"] = "no bone in profile"
        return out
    # outermost extent above mid level: the canal may dip below it
    a, b = int(above[0]), int(above[-1]) + 1
    c = 0.5 * (a + b - 1)
    n = ps.size
    g = np.gradient(ps)
    widen = 0.25 * (b - a)
    la = int(max(0, math.floor(a - widen)))
    rb = int(min(n, math.ceil(b + widen)))
    ci = int(round(c))
    if ci - la < 2 or rb - ci < 2:
        out["reason"] = "bone touches the profile end"
        return out
    ol = la + int(np.argmax(g[la:ci]))  # < ci
    orr = ci + 1 + int(np.argmin(g[ci + 1 : rb]))  # > ci
    if orr - ol < 6:
        out["reason"] = "bone too narrow"
        return out
    il = ol + 1 + int(np.argmin(g[ol + 1 : ci + 1]))  # in (ol, ci]
    ir = ci + int(np.argmax(g[ci:orr]))  # in [ci, orr)
    if not (ol < il <= ir < orr):
        out["reason"] = "edges out of order"
        return out
    outer_strength = min(g[ol], -g[orr])
    inner_strength = min(-g[il], g[ir])
    out["outer_balance"] = float(outer_strength / max(g[ol], -g[orr], 1e-12))
    if outer_strength <= 0:
        out["reason"] = "no outer edges"
        return out
    ratio = float(inner_strength / outer_strength)
    OL, IL, IR, OR = (_subpixel_peak(g, i) for i in (ol, il, ir, orr))
    D = OR - OL
    d = IR - IL
    tl = IL - OL
    tr = OR - IR
    out.update(
        outer_left=OL, inner_left=IL, inner_right=IR, outer_right=OR, D=D, d=d,
        thickness_left=tl, thickness_right=tr, cortical_thickness=0.5 * (tl + tr),
        cortical_index=(D - d) / D if D > 0 else float("nan"), edge_ratio=ratio,
    )
    if ratio < min_edge_ratio or inner_strength <= 0:
        out["reason"] = f"no medullary canal (inner/outer edge ratio {ratio:.2f})"
    elif not (tl > 0 and tr > 0 and d > 0):
        out["reason"] = "non-positive cortical thickness"
    else:
        out["ok"] = True
    if not out["ok"]:  # keep the edge positions for QA, blank the measurements
        for k in ("D", "d", "thickness_left", "thickness_right", "cortical_thickness", "cortical_index"):
            out[k] = float("nan")
    return out


def shaft_profile(image: np.ndarray, row: int, x0: int, x1: int, half_rows: int = 3) -> np.ndarray:
    """Mean intensity over rows ``row +- half_rows`` and columns [x0, x1)."""
    arr = np.asarray(image)
    H, W = arr.shape[:2]
    a = int(max(0, row - half_rows))
    b = int(min(H, row + half_rows + 1))
    x0 = int(max(0, x0))
    x1 = int(min(W, x1))
    if b <= a or x1 <= x0:
        return np.zeros(0)
    return _prepare(arr[a:b, x0:x1]).mean(axis=0)


# --------------------------------------------------------------------------
# Cohort level: cached extraction, ROI tiles, patient aggregation, QA sheets
# --------------------------------------------------------------------------
#: bump when anything that changes a cached result changes (detection,
#: features, ROI normalisation, thumbnails): old cache entries are then ignored
BIOMARKER_CACHE_VERSION = 2
#: long side of the QA thumbnails (block-mean downsampled, for fast drawing)
QA_THUMB_LONG_SIDE = 320
#: ROI tiles: intensities mapped linearly from these percentiles of the knee
#: region (see :func:`_roi_tile`) to 0..255
ROI_PERCENTILES = (1.0, 99.0)
#: columns of the per-knee table that are identifiers, not features
ID_COLUMNS = ("patient_id", "side", "n_knees")
STATUS_LOCALISED, STATUS_FAILED, STATUS_SKIPPED = "localised", "failed", "skipped"


@dataclass
class ImageQA:
    """What the QA gallery needs for one image: a small thumbnail, the factor
    that maps native pixels to it, the accepted detections (native
    coordinates) and the reasons for rejected knees / a failed image."""

    patient_id: str
    status: str
    thumbnail: np.ndarray | None
    factor: int
    detections: list[KneeDetection]
    reasons: list[str]


@dataclass
class BiomarkerData:
    """Biomarkers of a cohort.

    ``knees``: one row per localised knee (``patient_id``, ``side``,
    ``n_knees``, then the :func:`knee_features` columns; ``qa_*`` columns
    track the acquisition and must never be predictors).  ``rois``: uint8
    array ``(len(knees), 2 * roi_size, roi_size)`` aligned with ``knees``:
    femoral ROI on the left, tibial ROI on the right.  ``status``: one row per
    cohort image (``patient_id``, ``image_path``, ``batch``, ``n_knees``,
    ``status`` in localised / failed / skipped, ``reason``; for a localised
    image the reason lists knees that were rejected next to the accepted
    ones, if any).  ``qa``: per image, in cohort order.
    """

    knees: "pd.DataFrame"
    status: "pd.DataFrame"
    rois: np.ndarray
    qa: list[ImageQA]
    roi_size: int

    @property
    def feature_columns(self) -> list[str]:
        return feature_columns(self.knees)

    @property
    def localised_ids(self) -> set[str]:
        """Patients with at least one localised knee (the only ones the image arms can score)."""
        return set(self.status.loc[self.status["status"] == STATUS_LOCALISED, "patient_id"])

    def patients(self) -> "pd.DataFrame":
        """Patient-level features: the mean over the patient's knees (see :func:`patient_features`)."""
        return patient_features(self.knees)


def feature_columns(table: "pd.DataFrame") -> list[str]:
    """Numeric biomarker columns of a knee / patient table: identifiers and
    the ``qa_*`` acquisition-tracking columns are excluded."""
    return [c for c in table.columns
            if c not in ID_COLUMNS and not str(c).startswith("qa_") and c not in ("image", "knee")
            and np.issubdtype(table[c].dtype, np.number)]


def patient_features(knees: "pd.DataFrame") -> "pd.DataFrame":
    """One row per patient: every numeric column averaged over the patient's
    knees (NaN-aware: a measurement missing on one knee is taken from the
    other), plus ``n_knees``.  One patient, one prediction."""
    import pandas as pd

    if knees.empty:
        return pd.DataFrame(columns=["patient_id", "n_knees"])
    cols = [c for c in knees.columns
            if c not in ID_COLUMNS and c not in ("image", "knee") and np.issubdtype(knees[c].dtype, np.number)]
    grouped = knees.groupby("patient_id", sort=False)
    out = grouped[cols].mean()
    out.insert(0, "n_knees", grouped.size())
    return out.reset_index()


def _roi_tile(img: np.ndarray, det: KneeDetection, rois: dict[str, np.ndarray]) -> np.ndarray:
    """Femoral ROI above the tibial ROI (their anatomical order) as uint8.

    Stacked vertically so that a horizontal flip (training augmentation) mirrors medial and
    lateral, as between a left and a right knee, instead of swapping femur and tibia.

    Percentile normalisation within the image: the 1st and 99th percentiles
    of the knee region (rows from the top of the femoral ROI to the bottom of
    the tibial ROI, columns across the knee's extent; bone, joint space and a
    little soft tissue) are mapped to 0 and 255 -- the same mapping for both
    ROIs, so their brightness relative to the rest of the knee is kept, while
    exposure and detector differences between images are removed."""
    y0, y1 = det.femur_roi[0], det.tibia_roi[2]
    x0, x1 = max(0, det.x0), min(img.shape[1], det.x1)
    region = img[y0:y1, x0:x1]
    step = max(1, int(min(region.shape) // 256))
    lo, hi = np.percentile(region[::step, ::step], ROI_PERCENTILES)
    scale = 255.0 / max(float(hi - lo), 1e-6)
    parts = [np.clip((rois[k] - lo) * scale, 0, 255) for k in ("femur_trabecular", "tibia_trabecular")]
    return np.round(np.concatenate(parts, axis=0)).astype(np.uint8)


def _thumbnail(img: np.ndarray, long_side: int = QA_THUMB_LONG_SIDE) -> tuple[np.ndarray, int]:
    small, f = _downsample(img, long_side)
    return np.round(np.clip(small, 0, 1) * 255).astype(np.uint8), f


def process_image(path: str | os.PathLike, roi_size: int) -> dict[str, Any]:
    """Everything the cohort needs from one radiograph; never raises for a
    bad image.  Returns a dict with ``features`` (list of per-knee dicts),
    ``sides``, ``rois`` (uint8 ``(k, 2 roi_size, roi_size)``), ``detections``
    (list of :class:`KneeDetection`), ``reasons`` (rejected knees / failed
    image), ``thumbnail`` (uint8 or None) and ``factor`` (native px per
    thumbnail px)."""
    out: dict[str, Any] = {"features": [], "sides": [], "rois": np.zeros((0, 2 * roi_size, roi_size), np.uint8),
                           "detections": [], "reasons": [], "thumbnail": None, "factor": 1}
    try:
        img = load_grayscale(path)
    except ImageLoadError as exc:
        out["reasons"] = [str(exc)]
        return out
    out["thumbnail"], out["factor"] = _thumbnail(img)
    res = detect_knees(img)
    reasons = list(res.failures)
    tiles = []
    for det in res.detections:
        try:
            feats = knee_features(img, det)
            rois = extract_rois(img, det, size=roi_size)
            tile = _roi_tile(_polarity(img, det), det, rois)
        except Exception as exc:  # a failure on one knee must not lose the other
            reasons.append(f"{det.side} knee: feature extraction failed: {type(exc).__name__}: {exc}")
            continue
        out["features"].append(feats)
        out["sides"].append(det.side)
        out["detections"].append(det)
        tiles.append(tile)
    if tiles:
        out["rois"] = np.stack(tiles)
    if not out["detections"] and not reasons:
        reasons = ["no knee found"]
    out["reasons"] = reasons
    return out


def _detection_from_dict(d: dict[str, Any]) -> KneeDetection:
    d = dict(d)
    for k in ("femur_roi", "tibia_roi", "joint_rows"):
        d[k] = tuple(d[k])
    for k in ("femur_shaft_x", "tibia_shaft_x"):
        d[k] = None if d[k] is None else tuple(d[k])
    return KneeDetection(**d)


def _cache_path(cache: "os.PathLike", sha256: str, roi_size: int):
    from pathlib import Path

    folder = Path(cache) / f"biomarkers-v{BIOMARKER_CACHE_VERSION}-roi{roi_size}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{sha256}.npz"


def _save_cached(path, rec: dict[str, Any]) -> None:
    import json

    meta = {"features": rec["features"], "sides": rec["sides"], "reasons": rec["reasons"],
            "factor": int(rec["factor"]), "detections": [d.as_dict() for d in rec["detections"]]}
    thumb = rec["thumbnail"] if rec["thumbnail"] is not None else np.zeros((0, 0), np.uint8)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        np.savez_compressed(fh, meta=np.array(json.dumps(meta)), rois=rec["rois"], thumbnail=thumb)
    os.replace(tmp, path)


def _load_cached(path, roi_size: int) -> dict[str, Any] | None:
    import json

    try:
        with np.load(path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            rois, thumb = z["rois"], z["thumbnail"]
    except Exception:  # unreadable / truncated entry: recompute
        return None
    if rois.shape[1:] != (2 * roi_size, roi_size) or len(rois) != len(meta["features"]):
        return None
    return {"features": meta["features"], "sides": meta["sides"], "reasons": meta["reasons"],
            "factor": meta["factor"], "rois": rois, "thumbnail": thumb if thumb.size else None,
            "detections": [_detection_from_dict(d) for d in meta["detections"]]}


def cohort_biomarkers(cohort: "pd.DataFrame", data_dir: str | os.PathLike, roi_size: int,
                      cache: str | os.PathLike | None = None, limit: int | None = None,
                      progress: bool = True) -> BiomarkerData:
    """Localise, measure and cut ROIs for every image of a cohort (rows with
    ``patient_id``, ``image_path`` relative to ``data_dir`` and
    ``image_sha256``), with an on-disk cache.

    Cache: one ``.npz`` per image under ``cache`` (default
    :func:`osteo_helpers.config.cache_dir`), keyed by the image's SHA-256, the
    ROI size and :data:`BIOMARKER_CACHE_VERSION`, written atomically; it may
    never lie inside the data folder (raises ValueError).  A missing or
    unreadable entry is recomputed (~0.2-0.3 s per image).

    ``limit`` processes only the first ``limit`` images (debugging); the
    others get status ``skipped``.  Every cohort image has one row in
    ``status``; images with no accepted knee have status ``failed`` and the
    reason(s).  Returns a :class:`BiomarkerData`.
    """
    import pandas as pd
    from pathlib import Path
    from tqdm.auto import tqdm

    from .config import cache_dir, show_progress

    data_dir = Path(data_dir).resolve()
    cache = Path(cache).resolve() if cache is not None else cache_dir()
    if cache == data_dir or data_dir in cache.parents:
        raise ValueError(f"the biomarker cache {cache} lies inside the data folder {data_dir}; "
                         "the data folder is read-only")
    cohort = cohort.reset_index(drop=True)
    rows, statuses, tiles, qa = [], [], [], []
    batches = cohort["batch"] if "batch" in cohort else pd.Series([None] * len(cohort))
    items = list(zip(cohort["patient_id"], cohort["image_path"], cohort["image_sha256"], batches))
    for i, (pid, rel, sha, batch) in enumerate(tqdm(items, desc=f"biomarkers (ROI {roi_size} px)",
                                                    disable=not show_progress(progress))):
        base = {"patient_id": pid, "image_path": rel, "batch": batch}
        if limit is not None and i >= limit:
            statuses.append({**base, "n_knees": 0, "status": STATUS_SKIPPED,
                             "reason": f"not processed (biomarker_limit={limit})"})
            qa.append(ImageQA(pid, STATUS_SKIPPED, None, 1, [], [statuses[-1]["reason"]]))
            continue
        path = _cache_path(cache, str(sha), roi_size)
        rec = _load_cached(path, roi_size) if path.is_file() else None
        if rec is None:
            rec = process_image(data_dir / rel, roi_size)
            _save_cached(path, rec)
        k = len(rec["features"])
        status = STATUS_LOCALISED if k else STATUS_FAILED
        statuses.append({**base, "n_knees": k, "status": status, "reason": "; ".join(rec["reasons"])})
        for side, feats in zip(rec["sides"], rec["features"]):
            rows.append({"patient_id": pid, "side": side, "n_knees": k, **feats})
        if k:
            tiles.append(rec["rois"])
        qa.append(ImageQA(pid, status, rec["thumbnail"], rec["factor"], rec["detections"], rec["reasons"]))
    knees = pd.DataFrame(rows)
    if knees.empty:
        knees = pd.DataFrame(columns=list(ID_COLUMNS))
    rois = np.concatenate(tiles) if tiles else np.zeros((0, 2 * roi_size, roi_size), np.uint8)
    return BiomarkerData(knees, pd.DataFrame(statuses), rois, qa, roi_size)


def _scaled(det: KneeDetection, f: int) -> KneeDetection:
    """A copy of a detection in the coordinates of a thumbnail made by
    f x f block means (native pixel centre v -> (v + 0.5) / f - 0.5)."""
    t = lambda v: (v + 0.5) / f - 0.5  # noqa: E731
    box = lambda b: (t(b[0] - 0.5), t(b[1] - 0.5), t(b[2] - 0.5), t(b[3] - 0.5))  # noqa: E731 - edges
    d = det.as_dict()
    d.update(x0=t(det.x0), x1=t(det.x1), joint_line_y=t(det.joint_line_y), plateau_width=det.plateau_width / f,
             plateau_x0=t(det.plateau_x0), plateau_x1=t(det.plateau_x1), femur_roi=box(det.femur_roi),
             tibia_roi=box(det.tibia_roi), condyle_width=det.condyle_width / f,
             femur_shaft_row=None if det.femur_shaft_row is None else t(det.femur_shaft_row),
             tibia_shaft_row=None if det.tibia_shaft_row is None else t(det.tibia_shaft_row),
             femur_shaft_x=None if det.femur_shaft_x is None else tuple(t(v) for v in det.femur_shaft_x),
             tibia_shaft_x=None if det.tibia_shaft_x is None else tuple(t(v) for v in det.tibia_shaft_x),
             joint_rows=tuple(t(v) for v in det.joint_rows), notes=list(det.notes))
    return KneeDetection(**d)


def qa_sheets(data: BiomarkerData, per_page: int = 30, ncols: int = 6, panel: float = 2.1,
              titles: dict[str, str] | None = None) -> list:
    """The localisation QA gallery: one Figure per ``per_page`` images, in
    cohort order.  Each panel is the image's thumbnail with its detected
    knees drawn by :func:`draw_detections` (extent, joint line, plateau
    width, femoral / tibial ROIs, shaft rows) scaled to the thumbnail, or --
    for an image without a localised knee -- its failure reason in red.
    Rejected knees of a localised image are noted in orange.  ``titles``
    maps patient_id to a panel title (default: patient id, batch, status)."""
    import textwrap

    import matplotlib.pyplot as plt

    status = data.status.set_index("patient_id")
    figs = []
    n_pages = max(1, int(math.ceil(len(data.qa) / per_page)))
    for page in range(n_pages):
        chunk = data.qa[page * per_page : (page + 1) * per_page]
        nrows = max(1, int(math.ceil(len(chunk) / ncols)))
        fig, axes = plt.subplots(nrows, ncols, figsize=(panel * ncols, panel * nrows * 1.1), squeeze=False)
        for ax in axes.ravel():
            ax.set_axis_off()
        for ax, q in zip(axes.ravel(), chunk):
            title = (titles or {}).get(q.patient_id)
            if title is None:
                batch = status.at[q.patient_id, "batch"] if "batch" in status else None
                title = f"{q.patient_id}" + (f" [{batch}]" if batch is not None and batch == batch else "")
                title += f" {len(q.detections)} knee(s)" if q.status == STATUS_LOCALISED else f" {q.status.upper()}"
            if q.thumbnail is not None:
                draw_detections(ax, q.thumbnail, [_scaled(d, q.factor) for d in q.detections], title)
            else:
                ax.set_title(title, fontsize=7)
            if q.status != STATUS_LOCALISED:
                ax.text(0.5, 0.5, textwrap.fill("; ".join(q.reasons) or q.status, 34), transform=ax.transAxes,
                        ha="center", va="center", color="red", fontsize=6.5,
                        bbox=dict(facecolor="white", alpha=0.8, edgecolor="red"))
                ax.title.set_color("red")
            elif q.reasons:
                ax.text(0.02, 0.02, textwrap.fill("; ".join(q.reasons), 48), transform=ax.transAxes, ha="left",
                        va="bottom", color="orange", fontsize=5)
        fig.suptitle(f"Knee localisation QA, page {page + 1} of {n_pages} (red line: joint line; green: femoral ROI; "
                     "blue: tibial ROI; cyan: plateau width; magenta: cortical rows)", fontsize=9)
        fig.tight_layout(rect=(0, 0, 1, 0.97))
        figs.append(fig)
    return figs
