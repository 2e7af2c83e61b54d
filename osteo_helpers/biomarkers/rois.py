"""Trabecular regions of interest: the metaphyseal crops of one knee, and their uint8 tiles for the ROI networks."""

from __future__ import annotations

import numpy as np
from skimage.transform import resize

from .localise import KneeDetection, bone_bright, box_inside

#: texture is computed on ROIs resampled to this many pixels per side (see
#: :func:`extract_rois` and :func:`knee_features`)
TEXTURE_ROI_SIZE = 128


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
    img = bone_bright(image, detection)
    out = {}
    for name, box in (("femur_trabecular", detection.femur_roi), ("tibia_trabecular", detection.tibia_roi)):
        y0, x0, y1, x1 = box
        if not box_inside(box, img.shape):
            raise ValueError(f"{name} box {box} lies outside the image {img.shape}")
        crop = img[y0:y1, x0:x1]
        if size is not None and crop.shape != (size, size):
            crop = resize(
                crop, (size, size), order=1, mode="reflect", preserve_range=True,
                anti_aliasing=bool(min(crop.shape) > size),
            )
        out[name] = np.asarray(crop, dtype=np.float32)
    return out


#: ROI tiles: intensities mapped linearly from these percentiles of the knee
#: region (see :func:`roi_tile`) to 0..255
ROI_PERCENTILES = (1.0, 99.0)


def roi_tile(img: np.ndarray, det: KneeDetection, rois: dict[str, np.ndarray]) -> np.ndarray:
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
