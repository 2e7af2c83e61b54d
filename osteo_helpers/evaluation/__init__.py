"""Evaluation of out-of-fold predictions: metrics, bootstrap CIs, calibration, comparisons.

What lives where (everything public is re-exported here, so ``evaluation.X`` works):

- ``metrics``: input checks, batched metric kernels, point metrics, confusion, screening
  thresholds and the OOF table helpers (``prob_columns``, ``average_over_repeats``).
- ``resampling``: the stratified bootstrap of patients or of whole split groups
  (``bootstrap_indices``) and percentile intervals.
- ``bootstrap``: metric tables with CIs (``bootstrap_metrics``, ``bootstrap_confusion``,
  ``regression_metrics``) and their OOF-table front ends (``oof_metrics``, ``operating_point``).
- ``calibration``: Brier score (and scaled Brier), calibration intercept/slope, logistic
  recalibration, reliability and decision curves.
- ``comparisons``: paired bootstrap difference, DeLong, Holm, p-value formatting, the
  verdict sentence and the likelihood-ratio test of "does a score add to age".
- ``power``: the smallest AUROC gain the cohort can detect.
- ``predictive``: is a predictive distribution (the T-score models') calibrated: coverage in bins of
  the predicted mean and per measured class against what the model expects there, and the PIT.
- ``pooling``: random-effects pooling of per-site AUROCs and calibration, with prediction intervals
  (leave-one-site-out validation).
- ``permutation``: p-values against a label-permutation null.
- ``folds``: fold-level AUROCs (each fitted model on its own test fold), per-repeat pooled
  AUROCs and paired fold-level differences.
- ``usefulness``: the decision curve in one sentence over a declared threshold range, and
  calibration within subgroups (sex, age band).
- ``tables``: many arms at once: the results table, paired comparisons with Holm's
  adjustment over a declared family, T-score regression metrics.

Every CI function takes ``groups`` (one split group per patient) to resample whole groups.

Every name is imported from its module on first use (`lazy_loader`), so a command that needs one
metric does not import every statistical module.
"""

import lazy_loader

__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submodules=[],
    submod_attrs={
        "bootstrap": [
            "bootstrap_confusion",
            "bootstrap_metrics",
            "oof_metrics",
            "operating_point",
            "regression_metrics",
        ],
        "calibration": [
            "DCA_THRESHOLDS",
            "brier_score",
            "calibration_estimates",
            "calibration_intercept",
            "calibration_metrics",
            "calibration_slope",
            "decision_curve",
            "decision_curve_figure",
            "net_benefit",
            "recalibrate",
            "recalibration",
            "reliability_curve",
            "reliability_figure",
        ],
        "comparisons": [
            "TIE_TOLERANCE",
            "bootstrap_p_value",
            "chi_square_p",
            "delong_test",
            "direction",
            "format_p",
            "holm",
            "likelihood_ratio_test",
            "paired_bootstrap_difference",
            "paired_mae_difference",
            "verdict",
        ],
        "folds": ["discrimination_metric", "fold_aurocs", "fold_summary", "paired_fold_differences"],
        "metrics": [
            "PROB_PREFIX",
            "apply_threshold",
            "average_over_repeats",
            "binary_point_metrics",
            "class_names_from",
            "confusion",
            "multiclass_point_metrics",
            "prob_columns",
            "threshold_for_sensitivity",
        ],
        "permutation": ["permutation_p_value", "permutation_summary"],
        "pooling": ["POOLED_METRICS", "pooled_auroc", "pooled_sites", "random_effects"],
        "power": [
            "auroc_difference_sd",
            "auroc_power",
            "detectable_auroc_gain",
            "detectable_gain_summary",
            "riley_sample_size",
            "within_class_correlation",
        ],
        "predictive": ["conditional_coverage", "pit_figure", "pit_values"],
        "resampling": ["bootstrap_indices", "percentile_ci"],
        "tables": [
            "RESULT_COLUMNS",
            "aligned",
            "paired_comparisons",
            "paired_mae",
            "score_arms",
            "too_few",
            "tscore_regression",
            "with_holm",
        ],
        "usefulness": ["DECISION_RANGE", "decision_sentence", "decision_summary", "subgroup_calibration"],
    },
)
