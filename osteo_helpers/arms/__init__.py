"""Every model of the study as one kind of object, and the one driver that cross-validates them.

- `base`: the protocol (`Arm`: configured in ``__init__``, ``fit(rows, y)``, ``predict_proba``)
  and the registry (`make_arm`, `known_arms`); ``<arm>_tscore`` fits the T-score instead.
- `classical`: age, OST, the clinical models, gradient boosting, the acquisition probe,
  1-NN on pixels and the image-biomarker regressions.
- `features`: the image arm, a penalised linear head on frozen pretrained features.
- `networks`: the from-scratch image network, the concatenation fusion and the residual arms.
- `roi`: the ROI networks on per-knee tiles.
- `driver`: cross-validation over the shared folds (plan the fits, execute them, assemble the
  tables), the OOF format.
- `foldcache`: a fitted fold on disk, its fingerprint, read back only when every file is verified.
- `state`: a fitted arm as files without pickle (JSON, safetensors, skops), for the fold cache and the bundle.

Adding an arm is one class with ``@register("name")`` in one of these modules.
"""

from . import classical, features, networks, roi  # noqa: F401  (registers the arms)
from .base import ARM_REGISTRY, Arm, known_arms, make_arm, register, split_arm_name, why_not_fittable
from .classical import logistic_equation, overlap_range
from .driver import cross_validate, fittable, run_arm, run_arms_together, task_view
from .foldcache import load_fold_arms, load_histories

__all__ = ["ARM_REGISTRY", "Arm", "cross_validate", "fittable", "known_arms", "load_fold_arms", "load_histories",
           "logistic_equation", "make_arm", "overlap_range", "register", "run_arm", "run_arms_together",
           "split_arm_name", "task_view", "why_not_fittable"]
