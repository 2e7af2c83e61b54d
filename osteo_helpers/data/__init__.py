"""Dataset location and import, the clinical table, the manifest and its validation.

Raw files are only ever read. Everything here returns plain DataFrames so that the notebooks,
the tests and the command line call the same code. Where things live:

* :mod:`.registry` -- checksums, the shipped registry, importing a downloaded copy;
* :mod:`.layout` -- the dataset folder: class folders and image files;
* :mod:`.clinical` -- the spreadsheet as a tidy clinical table, the free-text rules, the data dictionary;
* :mod:`.manifest` -- image headers, the manifest, person (split) groups, the modelling table;
* :mod:`.plausibility` -- the hard limits (impossible) and plausible ranges (unusual) of values and images;
* :mod:`.validation` -- the findings of ``data check`` and their text;
* :mod:`.errors` -- the errors about raw data (``ImageReadError`` is the project's one image-read error).

Class names and the WHO thresholds live in :mod:`osteo_helpers.tasks`.
"""

from ..tasks import CLASSES_3, CLASSES_BINARY
from .clinical import (
    BOOLEAN_COLUMNS,
    COLUMN_SPECS,
    DIAGNOSIS,
    DIAGNOSIS_MENTION,
    DIET_FLAGS,
    FRACTURE_SITES,
    MEDICAL_FLAGS,
    NUMERIC_COLUMNS,
    OCCUPATION_GROUPS,
    RAW_COLUMNS,
    REQUIRED_COLUMNS,
    SEX,
    TARGET_COLUMNS,
    WEIGHT_CATEGORY,
    YES_NO,
    ColumnSpec,
    data_dictionary,
    load_clinical,
    parse_fracture_history,
)
from .errors import DatasetLayoutError, DataValidationError, ImageReadError
from .layout import IMAGE_EXTENSIONS, check_layout, find_images
from .manifest import (
    CLINICAL_RECORD_COLUMNS,
    build_manifest,
    clinical_duplicate_groups,
    image_batch,
    image_header,
    load_manifest,
    modelling_table,
    person_groups,
)
from .registry import (
    IMPORT_PREFIX,
    REGISTRY_NAME,
    import_dataset,
    read_registry,
    registry_path,
    sha256_file,
    verify_files,
    write_registry,
)
from .validation import PLAUSIBLE_RANGES, format_findings, image_error, implausible_values, validate, who_diagnosis

__all__ = [
    "BOOLEAN_COLUMNS",
    "CLASSES_3",
    "CLASSES_BINARY",
    "CLINICAL_RECORD_COLUMNS",
    "COLUMN_SPECS",
    "DIAGNOSIS",
    "DIAGNOSIS_MENTION",
    "DIET_FLAGS",
    "FRACTURE_SITES",
    "IMAGE_EXTENSIONS",
    "IMPORT_PREFIX",
    "MEDICAL_FLAGS",
    "NUMERIC_COLUMNS",
    "OCCUPATION_GROUPS",
    "PLAUSIBLE_RANGES",
    "RAW_COLUMNS",
    "REGISTRY_NAME",
    "REQUIRED_COLUMNS",
    "SEX",
    "TARGET_COLUMNS",
    "WEIGHT_CATEGORY",
    "YES_NO",
    "ColumnSpec",
    "DataValidationError",
    "DatasetLayoutError",
    "ImageReadError",
    "build_manifest",
    "check_layout",
    "clinical_duplicate_groups",
    "data_dictionary",
    "find_images",
    "format_findings",
    "image_batch",
    "image_error",
    "image_header",
    "implausible_values",
    "import_dataset",
    "load_clinical",
    "load_manifest",
    "modelling_table",
    "parse_fracture_history",
    "person_groups",
    "read_registry",
    "registry_path",
    "sha256_file",
    "validate",
    "verify_files",
    "who_diagnosis",
    "write_registry",
]
