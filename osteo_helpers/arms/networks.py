"""Network arms: the from-scratch image network, the concatenation fusion, and the residual arms.

The arms that read the image take the frozen pretrained encoder's cached features
(`osteo_helpers.features`), transformed per fold as the ``image`` arm's are (`features.feature_transform`):
training then takes seconds per fold. A profile with ``finetune_blocks`` > 0 (the GPU profile) trains
them on the pixels instead, through the pretrained encoder with its last stages unfrozen.

* ``image_cnn``: the seed's baseline, a small CNN trained from scratch on the pixels (the profile's
  ``encoder``, ``weights`` and ``image_size``; class-weighted cross-entropy, as designed).
* ``fusion_concat``: the study's original design, image embedding concatenated with an MLP
  embedding of the whole clinical allow-list (class-weighted cross-entropy, as designed).
* ``fusion``: the residual fusion. Its output is the logit of the declared clinical model
  (``clinical``, fitted on the training fold) plus an image term whose last layer starts at
  zero, through a narrow (8-wide) image embedding, its squared size penalised. At
  initialisation it *is* the clinical model, and early stopping compares every epoch with that
  state on the inner validation split, so it cannot lose to its clinical half by construction
  unless the validation split misleads it.
* ``tabular``: the same construction with an MLP over the whole allow-list as the correction
  (a wide-and-deep network whose wide part is the clinical model).

Every network arm models a continuous target too (task ``tscore`` or ``age``): two outputs,
the mean and log standard deviation of a Gaussian, trained by its likelihood on the
standardised target.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.compose import ColumnTransformer
from tqdm.auto import tqdm

from .. import progress
from ..config import Profile
from ..models import FeatureInput, FusionNet, ResidualNet, build_encoder
from ..models.inputs import normalisation
from ..splits import inner_split
from ..tabular import CLINICAL_FEATURES, available_inputs, preprocessor_for, spline_inputs, to_model_frame
from ..threads import fit_threads
from ..training import FoldTrainer, NetInputs, balanced_class_weights, pick_device, seed_everything
from .base import Arm, inner_strata, register
from .classical import LinearGaussian, clinical_logistic
from .features import feature_stack, feature_transform, n_components

#: width of the residual fusion's image embedding: narrow, so ~190 images cannot drown the clinical model
RESIDUAL_EMBED_DIM = 8


class NetworkArm(Arm):
    """Wraps the trainer: fits the clinical transforms on the training rows, trains with early
    stopping on a grouped inner split, predicts. The fitted network is ``model_``, the epoch early
    stopping kept ``best_epoch_``.

    ``fixed_epochs`` trains exactly that many epochs on every row, with no validation split: the
    screening threshold's inner fits repeat the fold's early-stopping choice that way. ``from_scratch``
    makes the image branch the from-scratch CNN on pixels (the ROI arms' tiles) whatever the profile.
    """

    supports_regression = True
    heavy = True
    #: which network: "image" (the from-scratch CNN), "fusion_concat", "tabular" or "fusion"
    net = "image"

    def __init__(self, task: str = "binary", *, profile: Profile | None = None,
                 target_sensitivity: float | None = None, random_state: int = 0, progress: bool = True,
                 fixed_epochs: int | None = None, from_scratch: bool = False) -> None:
        self.task = task
        self.profile = profile
        self.target_sensitivity = target_sensitivity
        self.random_state = random_state
        self.progress = progress
        self.fixed_epochs = fixed_epochs
        self.from_scratch = from_scratch

    # -- inputs ------------------------------------------------------------------------------
    @property
    def uses_image(self) -> bool:
        return self.net in ("image", "fusion_concat", "fusion")

    @property
    def residual(self) -> bool:
        return self.net in ("tabular", "fusion")

    @property
    def image_input(self) -> str | None:
        """How the image reaches the network: None (it does not), "features" (the frozen encoder's cached
        features), "cnn" (pixels through the profile's from-scratch encoder: ``image_cnn`` and the ROI arms)
        or "finetune" (pixels through the pretrained encoder, its last ``finetune_blocks`` stages trained)."""
        if not self.uses_image:
            return None
        if self.net == "image" or self.from_scratch:
            return "cnn"
        return "finetune" if self.profile.finetune_blocks else "features"

    @property
    def on_features(self) -> bool:
        return self.image_input == "features"

    def _normalisation(self) -> tuple[float, float]:
        p = self.profile
        if self.image_input == "finetune":
            return normalisation("imagenet", p.feature_encoder)
        return normalisation(p.weights, p.encoder)

    def _encoder(self, width: int) -> torch.nn.Module:
        p = self.profile
        if self.on_features:
            return FeatureInput(width)
        if self.image_input == "cnn":
            return build_encoder(p.encoder, weights=p.weights, width=p.cnn_width)
        return build_encoder(p.feature_encoder, weights="imagenet", trainable_blocks=p.finetune_blocks,
                             image_size=p.image_size)

    def _clinical_blocks(self) -> list[tuple[str, tuple[str, ...]]]:
        blocks = []
        if self.residual:
            blocks.append(("clinical", CLINICAL_FEATURES))
        if self.net in ("tabular", "fusion_concat"):
            blocks.append(("allow_list", self.inputs_))
        return blocks

    def _make_preprocessor(self) -> ColumnTransformer | None:
        """One transform of the clinical inputs: the clinical model's block (residual arms) first,
        then the whole allow-list (arms with an MLP); columns may feed both blocks. For the T-score the
        clinical block is the T-score model's (age through a spline), so the untrained network is it."""
        blocks = [(name, preprocessor_for(feats, spline=spline_inputs(self.task) if name == "clinical" else ()),
                   list(feats)) for name, feats in self._clinical_blocks()]
        return ColumnTransformer(blocks, remainder="drop") if blocks else None

    def _tabular(self, rows: pd.DataFrame) -> np.ndarray | None:
        if self.preprocessor_ is None:
            return None
        return self.preprocessor_.transform(to_model_frame(rows, self.inputs_)).astype(np.float32)

    def _inputs(self, rows: pd.DataFrame, targets: np.ndarray | None = None) -> NetInputs:
        images = None
        if self.on_features:
            images = torch.from_numpy(self.features_.transform(feature_stack(rows)).astype(np.float32))
        elif self.uses_image:
            images = torch.from_numpy(np.ascontiguousarray(np.stack(rows["image"].to_numpy()))).unsqueeze(1)
        tab = self._tabular(rows)
        y = np.zeros(len(rows)) if targets is None else targets
        return NetInputs(images, None if tab is None else torch.from_numpy(np.array(tab)), torch.tensor(np.asarray(y)))

    # -- the network -------------------------------------------------------------------------
    @property
    def n_outputs(self) -> int:
        return 2 if self.task_.is_regression else len(self.task_.classes)

    def _base_model(self, X: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The clinical model fitted on the training rows, as the weight and bias of a linear layer.

        The same model (and the same inputs) as the ``clinical`` arm, so the untrained residual
        network reproduces that arm's predictions.
        """
        k = self.n_outputs
        if self.task_.is_regression:
            lin = LinearGaussian().fit(X, t)
            return np.vstack([lin.coef_, lin.log_sd_coef_]), np.array([lin.intercept_, lin.log_sd_intercept_])
        lr = clinical_logistic().fit(X, t)
        if list(lr.classes_) != list(range(k)):
            raise ValueError(f"a training fold lacks a class: {list(lr.classes_)}")
        if k == 2:
            return np.vstack([np.zeros(X.shape[1]), lr.coef_[0]]), np.array([0.0, lr.intercept_[0]])
        return lr.coef_, lr.intercept_

    def _build(self, X: np.ndarray | None, t: np.ndarray, image_width: int) -> torch.nn.Module:
        seed_everything(self.random_state)  # weight initialisation is part of the fold's experiment
        if not self.residual:
            mode = "image" if self.net == "image" else "fusion"
            return FusionNet(mode, self.n_outputs, self._encoder(image_width), 0 if X is None else X.shape[1])
        base_dim = len(self.preprocessor_.named_transformers_["clinical"].get_feature_names_out())
        encoder = self._encoder(image_width) if self.net == "fusion" else None
        net = ResidualNet(base_dim, self.n_outputs, encoder=encoder,
                          extra_dim=0 if encoder is not None else X.shape[1] - base_dim,
                          embed_dim=RESIDUAL_EMBED_DIM)
        weight, bias = self._base_model(X[:, :base_dim].astype(float), t)
        net.set_base(torch.as_tensor(weight), torch.as_tensor(bias))
        return net

    def _trainer(self, t_fit: np.ndarray, desc: str) -> tuple[FoldTrainer, tqdm]:
        p = self.profile
        epochs = p.epochs if self.fixed_epochs is None else self.fixed_epochs
        weight = None
        if not self.task_.is_regression and not self.residual:
            weight = balanced_class_weights(t_fit.astype(int), self.n_outputs)
        bar = tqdm(total=epochs, desc=desc, leave=False, disable=not progress.show_progress(self.progress))

        def on_epoch(epoch: int, epochs: int, train: float, val: float) -> None:
            bar.update(1)
            bar.set_postfix(train=f"{train:.3f}", val=f"{val:.3f}")
            if self.fixed_epochs is None:  # the threshold's inner fits stay quiet
                progress.report("epoch", arm=self.arm_name, task=self.task, epoch=epoch, epochs=epochs,
                                val_loss=val)

        return FoldTrainer(epochs=epochs, patience=p.patience, batch_size=p.batch_size, lr=p.lr,
                           weight_decay=p.weight_decay, augment=p.augment,
                           loss="gaussian" if self.task_.is_regression else "cross_entropy",
                           class_weight=weight, penalty=p.correction_penalty if self.residual else 0.0,
                           normalisation=self._normalisation(), on_epoch=on_epoch), bar

    # -- fit / predict -----------------------------------------------------------------------
    def _fit(self, rows: pd.DataFrame, y: np.ndarray) -> None:
        p = self.profile
        if p is None:
            raise ValueError("a network arm needs a profile")
        torch.set_num_threads(fit_threads(p.num_threads))
        self.inputs_ = available_inputs(rows)  # the allow-listed inputs this cohort has
        self.preprocessor_ = self._make_preprocessor()
        if self.on_features:
            self.features_ = feature_transform(n_components(p, len(rows))).fit(feature_stack(rows))
        if self.preprocessor_ is not None:
            self.preprocessor_.fit(to_model_frame(rows, self.inputs_))
        if self.task_.is_regression:
            self.target_mean_, self.target_sd_ = float(np.mean(y)), float(np.std(y) or 1.0)
            t = (y - self.target_mean_) / self.target_sd_
        else:
            t = y
        strat = inner_strata(rows, y, self.task_)
        if self.fixed_epochs is None:
            fit_idx, val_idx = inner_split(rows.assign(_strat=strat), "_strat", p.inner_val_fraction,
                                           self.random_state)
        else:
            fit_idx, val_idx = np.arange(len(rows)), None
        data = self._inputs(rows, t)
        model = self._build(None if data.tabular is None else data.tabular.numpy(), t,
                            0 if data.images is None else data.images.shape[-1])
        trainer, bar = self._trainer(t[fit_idx], f"{self.arm_name} ({self.task})")
        try:
            self.model_, self.history_ = trainer.fit(model, data.subset(fit_idx),
                                                     None if val_idx is None else data.subset(val_idx),
                                                     seed=self.random_state)
        finally:
            bar.close()
        self.model_ = self.model_.cpu().eval()
        self.best_epoch_ = int(self.history_.loc[self.history_["best"], "epoch"].iloc[0])
        self.normalisation_ = self._normalisation()

    def _predict_raw(self, rows: pd.DataFrame) -> np.ndarray:
        """Predictions on the accelerator when there is one (the fitted network stays on the CPU)."""
        p = self.profile
        trainer = FoldTrainer(epochs=1, patience=1, batch_size=max(p.batch_size, 64), lr=p.lr, weight_decay=0,
                              augment=False, normalisation=self.normalisation_, device=pick_device())
        out = trainer.predict(self.model_, self._inputs(rows))
        if self.task_.is_regression:
            mean = self.target_mean_ + self.target_sd_ * out[:, 0]
            sd = self.target_sd_ * np.exp(np.clip(out[:, 1], -7, 7))
            return np.column_stack([mean, sd])
        return torch.softmax(torch.from_numpy(out), dim=1).numpy()

    def _threshold_folds(self) -> int:
        return self.profile.network_threshold_folds

    def _inner_fit_params(self) -> dict:
        """The epochs this fold's early stopping chose, on each inner fold's every row."""
        return {"fixed_epochs": self.best_epoch_, "progress": False}


@register("image_cnn")
class ImageCnnArm(NetworkArm):
    """The image alone, through a small CNN trained from scratch: the seed's baseline."""

    net = "image"


@register("fusion_concat")
class FusionConcatArm(NetworkArm):
    """The study's original concatenation fusion."""

    net = "fusion_concat"


@register("tabular")
class TabularArm(NetworkArm):
    """The clinical model plus a zero-initialised MLP over the whole allow-list."""

    net = "tabular"


@register("fusion")
class FusionArm(NetworkArm):
    """The clinical model plus a zero-initialised, penalised image term."""

    net = "fusion"
