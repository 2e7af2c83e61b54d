"""Explanations: where the image branch looks (Grad-CAM) and which clinical inputs drive predictions (SHAP).

What lives where (everything public is re-exported here, so ``explain.X`` works):

- ``cam``: Grad-CAM maps of the fusion model's image branch (``compute_cams``).
- ``cam_audit``: bone and border masks and the share of CAM energy on each, to spot shortcuts.
- ``tabular``: SHAP values grouped per clinical feature, permutation importance, rank comparison.
- ``oof``: the cross-validated fold models, explained out of fold, and the notebook's summary text.
- ``figures``: the explanations drawn (``overlay``, ``cam_gallery``, ``shap_*_figure``).
"""

from __future__ import annotations

from .cam import CAM_METHODS, ImageBranchWrapper, compute_cams, target_layer
from .cam_audit import (
    BONE_SHARE_THRESHOLD,
    BORDER_MARGIN_FRACTION,
    BORDER_SHARE_THRESHOLD,
    SHARE_COLUMNS,
    bone_mask,
    border_mask,
    cam_energy,
    summarise_where,
    where_it_looks,
    where_table,
    where_text,
)
from .figures import cam_gallery, overlay, shap_bar_figure, shap_summary_figure, shap_waterfall_figure
from .oof import (
    FoldModel,
    fold_models,
    gallery_picks,
    model_inputs,
    oof_cams,
    oof_permutation_importance,
    oof_shap,
    reliance_text,
    row_scores,
)
from .tabular import (
    feature_groups,
    group_shap,
    permutation_importance_grouped,
    rank_comparison,
    rank_spearman,
    shap_importance,
    shap_values_tabular,
    tabular_predict_fn,
)

__all__ = [
    "BONE_SHARE_THRESHOLD",
    "BORDER_MARGIN_FRACTION",
    "BORDER_SHARE_THRESHOLD",
    "CAM_METHODS",
    "SHARE_COLUMNS",
    "FoldModel",
    "ImageBranchWrapper",
    "bone_mask",
    "border_mask",
    "cam_energy",
    "cam_gallery",
    "compute_cams",
    "feature_groups",
    "fold_models",
    "gallery_picks",
    "group_shap",
    "model_inputs",
    "oof_cams",
    "oof_permutation_importance",
    "oof_shap",
    "overlay",
    "permutation_importance_grouped",
    "rank_comparison",
    "rank_spearman",
    "reliance_text",
    "row_scores",
    "shap_bar_figure",
    "shap_importance",
    "shap_summary_figure",
    "shap_values_tabular",
    "shap_waterfall_figure",
    "summarise_where",
    "where_table",
    "tabular_predict_fn",
    "target_layer",
    "where_it_looks",
    "where_text",
]
