"""Radiogrammetry on native pixels: cortical thickness across a shaft, joint-space width at the joint.

Digital X-ray radiogrammetry measures a tubular bone from a 1-D intensity profile across its
shaft; the joint-space width is measured in vertical strips over both compartments. Lengths are
in native pixels here; :mod:`.features` divides them by the plateau width.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy import ndimage as ndi

from ..images import as_grayscale

#: Gaussian smoothing of shaft profiles, as a fraction of W (~0.3 mm)
SHAFT_SMOOTH_FRAC = 0.004
#: plausible outer diameter of the shaft at the measurement row, in W
SHAFT_D_RANGE = {"femoral": (0.30, 0.90), "tibial": (0.25, 0.65)}


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


def cortical_thickness(profile: np.ndarray, smooth: float = 1.0, min_edge_ratio: float = 0.1) -> dict[str, Any]:
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
    return as_grayscale(arr[a:b, x0:x1]).mean(axis=0)


def measure_shaft(img: np.ndarray, row: int, xs: tuple[int, int], W: float, kind: str = "tibial") -> dict[str, Any]:
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


def refine_joint_native(img: np.ndarray, cx: float, jy: float, W: float) -> dict[str, Any]:
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
