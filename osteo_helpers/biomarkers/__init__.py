"""Classical image biomarkers of bone quality from knee radiographs: plain image processing, no labels.

Where things live:

* :mod:`.localise` -- knee localisation (:func:`detect_knees`, :class:`KneeDetection`), on the
  bands, joint line and plateau width found by :mod:`.coarse` on a small copy of the image;
* :mod:`.rois` -- the femoral / tibial trabecular ROIs and their uint8 tiles;
* :mod:`.texture` -- GLCM, LBP, fractal dimension and lacunarity of one ROI;
* :mod:`.radiogrammetry` -- cortical thickness across a shaft, joint-space width;
* :mod:`.features` -- per-knee, per-image and per-patient feature tables;
* :mod:`.cohort` -- a whole cohort with its on-disk cache (:func:`cohort_biomarkers`);
* :mod:`.qa` -- drawing the detections and the QA gallery.

Images are read by :func:`osteo_helpers.images.load_grayscale`.
"""

from ..images import load_grayscale
from .cohort import BIOMARKER_CACHE_VERSION, BiomarkerData, ImageQA, cohort_biomarkers, process_image
from .features import (
    feature_columns,
    image_features,
    joint_space_width,
    joint_space_widths,
    knee_features,
    patient_features,
)
from .localise import (
    ROI_SIDE_FRAC,
    KneeDetection,
    KneeLocalisationError,
    LocalisationResult,
    detect_knees,
    localise_knees,
)
from .qa import draw_detections, qa_sheets
from .radiogrammetry import cortical_thickness, shaft_profile
from .rois import extract_rois
from .texture import box_counting_dimension, lacunarity, texture_features

__all__ = [
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
    "ROI_SIDE_FRAC",
]
