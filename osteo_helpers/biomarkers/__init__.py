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

Every name is imported from its module on first use (`lazy_loader`): `predict`'s knee check reads the
localiser without the QA gallery's matplotlib.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submodules=[],
    submod_attrs={
        "cohort": ["BIOMARKER_CACHE_VERSION", "BiomarkerData", "ImageQA", "cohort_biomarkers", "process_image"],
        "features": [
            "feature_columns",
            "image_features",
            "joint_space_width",
            "joint_space_widths",
            "knee_features",
            "patient_features",
        ],
        "localise": [
            "ROI_SIDE_FRAC",
            "KneeDetection",
            "KneeLocalisationError",
            "LocalisationResult",
            "detect_knees",
            "localise_knees",
        ],
        "qa": ["draw_detections", "qa_sheets"],
        "radiogrammetry": ["cortical_thickness", "shaft_profile"],
        "rois": ["extract_rois"],
        "texture": ["box_counting_dimension", "lacunarity", "texture_features"],
    },
)
