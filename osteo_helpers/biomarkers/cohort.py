"""Biomarkers of a whole cohort, with one on-disk cache entry per image.

Localising and measuring takes ~0.2-0.3 s per image, so results are cached by the image's
checksum; every cohort image gets a status row, so a failed image is reported, not dropped.
"""

from __future__ import annotations

import io
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import progress as progress_lines
from ..data import ImageReadError
from ..fileio import atomic_write_bytes
from ..folders import cache_dir, ensure_outside_data
from ..images import load_grayscale
from .coarse import downsample
from .features import ID_COLUMNS, feature_columns, knee_features, patient_features
from .localise import KneeDetection, bone_bright, detect_knees
from .rois import extract_rois, roi_tile

#: bump when anything that changes a cached result changes (detection,
#: features, ROI normalisation, thumbnails): old cache entries are then ignored
BIOMARKER_CACHE_VERSION = 2
#: long side of the QA thumbnails (block-mean downsampled, for fast drawing)
QA_THUMB_LONG_SIDE = 320
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

    knees: pd.DataFrame
    status: pd.DataFrame
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

    def patients(self) -> pd.DataFrame:
        """Patient-level features: the mean over the patient's knees (see :func:`patient_features`)."""
        return patient_features(self.knees)


def _thumbnail(img: np.ndarray, long_side: int = QA_THUMB_LONG_SIDE) -> tuple[np.ndarray, int]:
    """Small uint8 copy for the QA gallery, and the native px per thumbnail px."""
    small, f = downsample(img, long_side)
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
    except ImageReadError as exc:
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
            tile = roi_tile(bone_bright(img, det), det, rois)
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


def _cache_path(cache: Path, sha256: str, roi_size: int) -> Path:
    folder = Path(cache) / f"biomarkers-v{BIOMARKER_CACHE_VERSION}-roi{roi_size}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{sha256}.npz"


def _save_cached(path: Path, rec: dict[str, Any]) -> None:
    meta = {"features": rec["features"], "sides": rec["sides"], "reasons": rec["reasons"],
            "factor": int(rec["factor"]), "detections": [d.as_dict() for d in rec["detections"]]}
    thumb = rec["thumbnail"] if rec["thumbnail"] is not None else np.zeros((0, 0), np.uint8)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, meta=np.array(json.dumps(meta)), rois=rec["rois"], thumbnail=thumb)
    atomic_write_bytes(path, buffer.getvalue())


def _load_cached(path: Path, roi_size: int) -> dict[str, Any] | None:
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


def _evenly_spaced(cohort: pd.DataFrame, limit: int | None) -> set[int]:
    """Row positions of ``limit`` images spread evenly through the cohort sorted by
    diagnosis: a class-stratified subsample, so a small smoke run still has every class."""
    if limit is None or limit >= len(cohort):
        return set(range(len(cohort)))
    order = (cohort.sort_values("diagnosis", kind="stable").index.to_numpy() if "diagnosis" in cohort
             else np.arange(len(cohort)))
    picks = np.linspace(0, len(order) - 1, limit).round().astype(int)
    return set(order[picks].tolist())


def cohort_biomarkers(cohort: pd.DataFrame, data_dir: str | os.PathLike, roi_size: int,
                      cache: str | os.PathLike | None = None, limit: int | None = None,
                      progress: bool = True) -> BiomarkerData:
    """Localise, measure and cut ROIs for every image of a cohort (rows with
    ``patient_id``, ``image_path`` relative to ``data_dir`` and
    ``image_sha256``), with an on-disk cache.

    Cache: one ``.npz`` per image under ``cache`` (default
    :func:`osteo_helpers.folders.cache_dir`), keyed by the image's SHA-256, the
    ROI size and :data:`BIOMARKER_CACHE_VERSION`, written atomically; it may
    never lie inside the data folder (:func:`osteo_helpers.folders.ensure_outside_data` raises
    UsageError, a ValueError).  A missing or
    unreadable entry is recomputed (~0.2-0.3 s per image).

    ``limit`` processes only ``limit`` images, evenly spaced through the cohort
    ordered by ``diagnosis`` (so each class keeps its share); the others get
    status ``skipped``.  Every cohort image has one row in
    ``status``; images with no accepted knee have status ``failed`` and the
    reason(s).  Returns a :class:`BiomarkerData`.
    """
    data_dir = Path(data_dir).resolve()
    cache = ensure_outside_data(cache_dir(data_dir=data_dir) if cache is None else cache, "biomarker cache", data_dir)
    cohort = cohort.reset_index(drop=True)
    rows, statuses, tiles, qa = [], [], [], []
    batches = cohort["batch"] if "batch" in cohort else pd.Series([None] * len(cohort))
    items = list(zip(cohort["patient_id"], cohort["image_path"], cohort["image_sha256"], batches, strict=False))
    chosen = _evenly_spaced(cohort, limit)

    def record(i: int, rel: str, sha: str) -> dict[str, Any] | None:
        """The image's cached record, or a new one (written to the cache); None when it is skipped."""
        if i not in chosen:
            return None
        path = _cache_path(cache, str(sha), roi_size)
        rec = _load_cached(path, roi_size) if path.is_file() else None
        if rec is None:
            rec = process_image(data_dir / rel, roi_size)
            _save_cached(path, rec)
        return rec

    # two threads: decoding and the localiser's numpy work release the GIL (1.8x on two cores)
    with ThreadPoolExecutor(max_workers=2) as pool:
        records = pool.map(record, range(len(items)), [it[1] for it in items], [it[2] for it in items])
        tracked = progress_lines.track(records, f"biomarkers (ROI {roi_size} px)", total=len(items)) \
            if progress else records
        done = list(tracked)
    for (pid, rel, _, batch), rec in zip(items, done, strict=True):
        base = {"patient_id": pid, "image_path": rel, "batch": batch}
        if rec is None:
            statuses.append({**base, "n_knees": 0, "status": STATUS_SKIPPED,
                             "reason": f"not processed (biomarker_limit={limit})"})
            qa.append(ImageQA(pid, STATUS_SKIPPED, None, 1, [], [statuses[-1]["reason"]]))
            continue
        k = len(rec["features"])
        status = STATUS_LOCALISED if k else STATUS_FAILED
        statuses.append({**base, "n_knees": k, "status": status, "reason": "; ".join(rec["reasons"])})
        for side, feats in zip(rec["sides"], rec["features"], strict=False):
            rows.append({"patient_id": pid, "side": side, "n_knees": k, **feats})
        if k:
            tiles.append(rec["rois"])
        qa.append(ImageQA(pid, status, rec["thumbnail"], rec["factor"], rec["detections"], rec["reasons"]))
    knees = pd.DataFrame(rows)
    if knees.empty:
        knees = pd.DataFrame(columns=list(ID_COLUMNS))
    rois = np.concatenate(tiles) if tiles else np.zeros((0, 2 * roi_size, roi_size), np.uint8)
    return BiomarkerData(knees, pd.DataFrame(statuses), rois, qa, roi_size)
