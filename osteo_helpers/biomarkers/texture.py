"""Trabecular texture of one ROI: GLCM, LBP, fractal dimension and lacunarity.

Every descriptor is computed after a per-ROI normalisation that makes it invariant to linear
intensity changes, which differ between acquisition batches.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern
from skimage.filters import threshold_otsu
from skimage.morphology import skeletonize

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
