"""Coarse knee localisation on a block-averaged copy of the radiograph (long side ~512 px).

Working small keeps detection fast and indifferent to the pixel spacing, which differs between
acquisition batches; :mod:`.localise` maps the results back to native pixels and refines them.
Per image: polarity check (border darker than centre, else the image is a negative); percentile
stretch; the column intensity profile gives one or two knee bands (two peaks with a valley below
60 % of the lower peak); per band the joint line is the row with the strongest dark horizontal
band flanked by brighter rows above and below (:func:`_valley_score`) across the central 60 % of
the knee; the plateau (condylar) width is the extent of the knee at 50 % between air and bone in
the rows 0.03-0.10 W below (above) the joint line, the notch being bridged.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage as ndi
from scipy.signal import find_peaks
from skimage.filters import threshold_otsu

#: long side of the detection image (block-mean downsampled)
DETECT_LONG_SIDE = 512
#: minimum dark-band contrast of the joint line (stretched intensity units;
#: the 382 knee bands of the study data range 0.029-0.25, a leg without bone
#: gives ~0.005)
MIN_JOINT_CONTRAST = 0.02
#: level (fraction of the way from air/soft tissue to bone) that delimits the
#: knee in the rows just above / below the joint line
WIDTH_LEVEL = 0.5


def downsample(img: np.ndarray, target: int = DETECT_LONG_SIDE) -> tuple[np.ndarray, int]:
    """Block-mean downsampling by an integer factor f (long side <= ~target).

    Small pixel (r, c) covers native rows r*f .. r*f+f-1; its centre maps to
    native ``r*f + (f-1)/2``.
    """
    f = max(1, int(math.ceil(max(img.shape) / float(target))))
    h, w = img.shape[0] // f * f, img.shape[1] // f * f
    small = img[:h, :w].astype(np.float64).reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    return small, f


def is_inverted(small: np.ndarray) -> bool:
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


def stretch(small: np.ndarray) -> np.ndarray:
    """Percentile stretch (1st..99.5th -> 0..1): detection thresholds then mean the same in every exposure."""
    lo, hi = np.percentile(small, [1.0, 99.5])
    if hi - lo < 1e-6:
        return np.zeros_like(small)
    return np.clip((small - lo) / (hi - lo), 0.0, 1.0)


def knee_bands(s: np.ndarray) -> tuple[list[tuple[int, int, int]], str | None]:
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
    return list(zip(starts.tolist(), ends.tolist(), strict=False))


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


def localise_band(
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
    t_bone = float(threshold_otsu(region[breg]))
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
