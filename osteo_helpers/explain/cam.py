"""Grad-CAM for the image branch: which pixels drive the fusion model's prediction for a patient.

The maps come from pytorch_grad_cam; this module supplies what it cannot know: the fusion model
seen as a one-argument image model (`ImageBranchWrapper`), the layer to explain per encoder
(`target_layer`), and batching with each patient's own clinical row (`compute_cams`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from pytorch_grad_cam import EigenCAM, GradCAM, GradCAMPlusPlus, HiResCAM, LayerCAM, XGradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import nn
from torchvision.models import DenseNet, ResNet

from ..models import FrozenFeatures, FusionNet, GrayToRGB, SmallCNN
from ..models.efficientnet import head_layer

CAM_METHODS: dict[str, type] = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "xgradcam": XGradCAM,
    "layercam": LayerCAM,
    "eigencam": EigenCAM,
}


class ImageBranchWrapper(nn.Module):
    """A trained FusionNet seen as `forward(image) -> logits`, with the clinical input held fixed.

    Grad-CAM libraries call `model(input_tensor)` with one argument; the wrapper supplies the
    patient's own clinical vector so the map explains the prediction the fusion model actually
    makes for that patient. `tabular` is one row (broadcast to every image) or one row per image;
    it is ignored for mode 'image'.
    """

    def __init__(self, model: FusionNet, tabular: torch.Tensor | np.ndarray | None = None) -> None:
        super().__init__()
        if model.mode == "tabular":
            raise ValueError("mode 'tabular' has no image branch to explain")
        self.model = model
        tab: torch.Tensor | None = None
        if model.mode == "fusion":
            if tabular is None:
                raise ValueError("mode 'fusion' needs the clinical input (tabular) of the patient(s)")
            tab = torch.as_tensor(tabular, dtype=torch.float32)
            tab = tab.unsqueeze(0) if tab.ndim == 1 else tab
            if tab.ndim != 2:
                raise ValueError(f"tabular must be (p,) or (n, p), got shape {tuple(tab.shape)}")
            device = next(model.parameters()).device
            tab = tab.to(device)
        self.register_buffer("tabular", tab, persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        tab = self.tabular
        if tab is not None:
            if tab.shape[0] == 1 and image.shape[0] != 1:
                tab = tab.expand(image.shape[0], -1)
            elif tab.shape[0] != image.shape[0]:
                raise ValueError(f"{tab.shape[0]} clinical rows for {image.shape[0]} images")
        return self.model(image, tab)


def _unwrap(model: FusionNet | ImageBranchWrapper) -> FusionNet:
    return model.model if isinstance(model, ImageBranchWrapper) else model


def target_layer(model: FusionNet | ImageBranchWrapper) -> nn.Module:
    """The layer whose activations Grad-CAM weights: the last spatial feature map of the encoder.

    SmallCNN: the activation (ReLU) of its last conv block, before the final max-pool, which keeps
    twice the resolution of the pooled map. ResNet: `layer4[-1]`. DenseNet: `features.norm5`. The frozen
    EfficientNet-Lite of the feature arms (`FrozenFeatures`): its head convolution's batch norm (`head_layer`).
    Detected by type so a renamed or new encoder fails loudly instead of explaining the wrong layer.
    """
    net = _unwrap(model)
    encoder = getattr(net, "image_encoder", None)
    if encoder is None:
        raise ValueError(f"model (mode {getattr(net, 'mode', '?')!r}) has no image encoder to explain")
    if isinstance(encoder, SmallCNN):
        layers = list(encoder.features)
        convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
        if not convs:
            raise TypeError("SmallCNN.features holds no Conv2d layer")
        chosen = convs[-1]
        for j in range(chosen + 1, len(layers)):
            if not isinstance(layers[j], (nn.BatchNorm2d, nn.ReLU)):
                break
            chosen = j
        return layers[chosen]
    if isinstance(encoder, FrozenFeatures):  # EfficientNet-Lite: its head convolution's activations
        return head_layer(encoder.trunk)
    if isinstance(encoder, GrayToRGB):
        backbone = encoder.backbone
        if isinstance(backbone, ResNet):
            return backbone.layer4[-1]
        if isinstance(backbone, DenseNet):
            return backbone.features.norm5
        raise TypeError(f"no Grad-CAM target layer known for backbone {type(backbone).__name__}")
    raise TypeError(f"no Grad-CAM target layer known for encoder {type(encoder).__name__}; "
                    "expected SmallCNN or GrayToRGB(ResNet|DenseNet)")


def compute_cams(model: FusionNet, images: torch.Tensor, tabular: torch.Tensor | np.ndarray | None = None,
                 target_class: int | Sequence[int] = 1, method: str = "gradcam", batch_size: int = 16,
                 layer: nn.Module | None = None) -> np.ndarray:
    """Class activation maps (N, S, S) in [0, 1], one per image, each min-max scaled by pytorch_grad_cam.

    `images` is (N, 1, S, S) as fed to the model; `tabular` is None (mode 'image'), one row for all
    images, or (N, p) with each patient's own clinical row. `target_class` is the logit explained
    (one for all, or one per image; use 0 for a single-output regression model). Images are
    processed in chunks with the matching clinical rows; samples do not interact in eval mode, so
    chunking gives the same maps as one image at a time. Hooks are released, parameter gradients
    cleared and the model's train/eval state restored, whatever happens.
    """
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {tuple(CAM_METHODS)}")
    net = _unwrap(model)
    images = images.unsqueeze(1) if images.ndim == 3 else images
    if images.ndim != 4:
        raise ValueError(f"images must be (N, 1, S, S), got shape {tuple(images.shape)}")
    n = images.shape[0]
    targets = [int(target_class)] * n if np.ndim(target_class) == 0 else [int(c) for c in target_class]
    if len(targets) != n:
        raise ValueError(f"{len(targets)} target classes for {n} images")
    tab = None
    if net.mode == "fusion":
        if tabular is None:
            raise ValueError("mode 'fusion' needs tabular inputs")
        tab = torch.as_tensor(tabular, dtype=torch.float32)
        tab = tab.unsqueeze(0) if tab.ndim == 1 else tab
        if tab.shape[0] not in (1, n):
            raise ValueError(f"{tab.shape[0]} clinical rows for {n} images")
    layer = target_layer(net) if layer is None else layer
    device = next(net.parameters()).device
    cam_class = CAM_METHODS[method]
    was_training = net.training
    out: list[np.ndarray] = []
    try:
        net.eval()
        with torch.enable_grad():
            for start in range(0, n, batch_size):
                stop = min(start + batch_size, n)
                rows = None if tab is None else (tab if tab.shape[0] == 1 else tab[start:stop])
                wrapper = ImageBranchWrapper(net, rows)
                x = images[start:stop].detach().to(device, torch.float32).clone().requires_grad_(True)
                chunk_targets = [ClassifierOutputTarget(c) for c in targets[start:stop]]
                with cam_class(model=wrapper, target_layers=[layer]) as cam:
                    out.append(np.asarray(cam(input_tensor=x, targets=chunk_targets), dtype=np.float32))
    finally:
        net.zero_grad(set_to_none=True)
        net.train(was_training)
    cams = np.concatenate(out, axis=0) if out else np.empty((0, *images.shape[-2:]), np.float32)
    return np.clip(np.nan_to_num(cams, nan=0.0), 0.0, 1.0)
