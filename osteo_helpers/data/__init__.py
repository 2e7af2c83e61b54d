"""Cohorts: the spec, location and import, the clinical table, the manifest and its validation.

Raw files are only ever read. Everything here returns plain DataFrames so that the notebooks,
the tests and the command line call the same code. A cohort is a value passed down (spec ->
table -> manifest -> rows); the published dataset is one shipped spec. Where things live:

* :mod:`.spec` -- the cohort spec (TOML): reading and checking it, the shipped spec;
* :mod:`.spec_schema` -- the spec's keys declared once: the reader's, the JSON Schema, the book's reference page;
* :mod:`.problems` -- problems that stop a run, collected over every row and image and grouped for a person;
* :mod:`.cohort` -- `Cohort` (a spec and its folder; `images.cohort_rows` gives what a model scores);
* :mod:`.location` -- where the published dataset is looked for, and what a wrong folder holds instead;
* :mod:`.registry` -- checksums, the shipped registry, importing a downloaded copy;
* :mod:`.image_readers` -- one reader per image format (Pillow; DICOM through pydicom) behind one function;
* :mod:`.layout` -- where the images are: folder patterns, the layout check;
* :mod:`.clinical` -- a cohort's table as the tidy clinical table, the data dictionary;
* :mod:`.manifest` -- image headers, the manifest, person (split) groups, the modelling table;
* :mod:`.validation` -- units, the findings of ``cohort check`` (and ``data check``) and their text;
* :mod:`.export` -- writing a cohort (table, images, spec) in another form;
* :mod:`.linkage` -- identical images whose records disagree, near-duplicate images (perceptual hash);
* :mod:`.plausibility` -- the hard limits (impossible) and plausible ranges (unusual) of values and images;
* :mod:`.errors` -- the errors about raw data (``ImageReadError`` is the project's one image-read error).

Class names and the WHO thresholds live in :mod:`osteo_helpers.tasks`. The names below are imported
from their modules on first use (PEP 562), so that reading a spec (`load_spec`) needs no table or image
library: the command line reports a spec error at once.
"""

import lazy_loader

from ..tasks import CLASSES_3, CLASSES_BINARY  # noqa: F401  (light: imported at once)
from ..vocabulary import COLUMN_SPECS, IMAGE_FILE, MENTION_COLUMN, TARGET_COLUMNS, ColumnSpec  # noqa: F401  (light: imported at once)

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submodules=["linkage"],
    submod_attrs={
        "clinical": ["data_dictionary", "load_clinical"],
        "cohort": ["Cohort"],
        "errors": ["DatasetLayoutError", "DataValidationError", "ImageReadError", "TableColumnError"],
        "location": ["cohort_root"],
        "layout": ["IMAGE_EXTENSIONS", "check_layout", "find_images", "locate_images"],
        "manifest": [
            "CLINICAL_RECORD_COLUMNS",
            "build_manifest",
            "clinical_duplicate_groups",
            "image_batch",
            "load_manifest",
            "modelling_table",
            "person_groups",
        ],
        "registry": [
            "IMPORT_PREFIX",
            "REGISTRY_NAME",
            "import_dataset",
            "read_registry",
            "registry_path",
            "verify_files",
            "write_registry",
        ],
        "spec": ["PUBLISHED", "CohortSpec", "SpecError", "load_spec", "published_spec_path"],
        "validation": [
            "PLAUSIBLE_RANGES",
            "format_findings",
            "implausible_values",
            "unit_problems",
            "validate",
            "who_diagnosis",
        ],
    },
)
__all__ += [
    "CLASSES_3",
    "CLASSES_BINARY",
    "COLUMN_SPECS",
    "IMAGE_FILE",
    "MENTION_COLUMN",
    "TARGET_COLUMNS",
    "ColumnSpec",
]
