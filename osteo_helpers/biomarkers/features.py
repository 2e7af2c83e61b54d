"""The biomarker table: all measurements of one knee, of one radiograph, and per patient.

Lengths are divided by the plateau width, so features compare between acquisition batches
whose pixel spacing differs; ``qa_*`` columns track the acquisition and are never predictors.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ..data import ImageReadError
from ..images import load_grayscale
from .localise import KneeDetection, bone_bright, detect_knees
from .radiogrammetry import measure_shaft, refine_joint_native
from .rois import TEXTURE_ROI_SIZE, extract_rois
from .texture import texture_features

#: columns of the per-knee table that are identifiers, not features
ID_COLUMNS = ("patient_id", "side", "n_knees")


def joint_space_widths(image: np.ndarray, detection: KneeDetection) -> tuple[float, float]:
    """Minimum-gap joint-space width (px) of the two compartments (image
    left, image right of the knee centre); see :func:`refine_joint_native`.
    NaN where the gap could not be measured."""
    img = bone_bright(image, detection)
    ref = refine_joint_native(img, detection.centre_x, float(detection.joint_line_y), detection.plateau_width)
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
    img = bone_bright(image, detection)
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
            res = measure_shaft(img, row, xs, W, "femoral" if prefix == "femur" else "tibial")
        ok = bool(res and res["ok"])
        feats[f"{prefix}_cort_thickness"] = res["cortical_thickness"] / W if ok else float("nan")
        feats[f"{prefix}_cort_D"] = res["D"] / W if ok else float("nan")
        feats[f"{prefix}_cort_d"] = res["d"] / W if ok else float("nan")
        feats[f"{prefix}_cort_index"] = res["cortical_index"] if ok else float("nan")
    ref = refine_joint_native(img, detection.centre_x, float(detection.joint_line_y), W)
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


def image_features(path: str | os.PathLike, patient_id: str) -> tuple[pd.DataFrame, list[str]]:
    """Load one radiograph, localise its knees and compute
    :func:`knee_features` for each.  Returns a DataFrame with one row per
    knee (columns ``patient_id``, ``image``, ``knee`` = side in image
    coordinates, ``n_knees``, then the features) and a list of failure
    reasons (``"<image>: <reason>"``) for the image or for rejected knees;
    never raises for a bad image."""
    name = os.path.basename(os.fspath(path))
    try:
        img = load_grayscale(path)
    except ImageReadError as exc:
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


def _measurement_columns(table: pd.DataFrame) -> list[str]:
    """Numeric columns that are not identifiers (``image`` and ``knee`` come from :func:`image_features`)."""
    return [c for c in table.columns
            if c not in ID_COLUMNS and c not in ("image", "knee") and np.issubdtype(table[c].dtype, np.number)]


def feature_columns(table: pd.DataFrame) -> list[str]:
    """Numeric biomarker columns of a knee / patient table: identifiers and
    the ``qa_*`` acquisition-tracking columns are excluded."""
    return [c for c in _measurement_columns(table) if not str(c).startswith("qa_")]


def patient_features(knees: pd.DataFrame) -> pd.DataFrame:
    """One row per patient: every numeric column averaged over the patient's
    knees (NaN-aware: a measurement missing on one knee is taken from the
    other), plus ``n_knees``.  One patient, one prediction."""
    if knees.empty:
        return pd.DataFrame(columns=["patient_id", "n_knees"])
    cols = _measurement_columns(knees)
    grouped = knees.groupby("patient_id", sort=False)
    out = grouped[cols].mean()
    out.insert(0, "n_knees", grouped.size())
    return out.reset_index()
