"""External validation of a saved model, and validation across sites.

What lives where:

- ``inputs``: which cohort rows a bundle scores, which it refuses, which inputs it never saw, which images
  it was trained on (the rule).
- ``metrics``: per model, recalibration and site: discrimination, calibration, scaled Brier, the
  saved operating point; cross-fitted logistic recalibration; several images of a patient pooled.
- ``report``: the figures and the self-contained HTML page.
- ``validate``: `evaluate` (rows + bundle -> numbers), `validate` (-> one folder, written atomically);
  `images.cohort_rows` gives the rows of any cohort, the published dataset included.
- ``sites``: leave-one-site-out cross-validation, its per-site and pooled AUROCs and calibration (with
  prediction intervals), what a site is called (`site_unit`: sites, or acquisition batches), and the sentences
  about sites whose class sizes limit what they can show.
"""

from .inputs import check_rows, flag_counts, training_overlap
from .result import Validation
from .sites import (
    leave_one_site_out,
    site_counts,
    site_folds,
    site_intro,
    site_notes,
    site_results,
    site_table,
    site_text,
    site_unit,
)
from .validate import evaluate, validate

__all__ = ["Validation", "check_rows", "evaluate", "flag_counts", "leave_one_site_out", "site_counts", "site_folds",
           "site_intro", "site_notes", "site_results", "site_table", "site_text", "site_unit", "training_overlap",
           "validate"]
