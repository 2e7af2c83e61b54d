"""What a network is fed: the intensity normalisation its weights expect, and the batch augmentation of
training. The decoded images themselves are `images`'; this is the model's side of the pixels."""

from __future__ import annotations

import torch

from ..config import LITE_ENCODERS
from .weights import resolve_weights

IMAGENET_MEAN_GRAY = 0.449  # mean of torchvision's ImageNet channel means; the gray image is repeated to RGB
IMAGENET_STD_GRAY = 0.226
SCRATCH_MEAN, SCRATCH_STD = 0.5, 0.25
#: EfficientNet-Lite's input: (x - 127) / 128 for x in 0..255 (models.lite_input)
LITE_INPUT_SHIFT, LITE_INPUT_SCALE = 127.0, 128.0


def normalisation(weights: str | None, encoder: str | None = None) -> tuple[float, float]:
    """Mean and std of the gray image for the encoder's weights.

    Torchvision weights carry their own normalisation (the mean of their channel statistics, since
    the gray image is repeated to three channels); a local checkpoint is assumed to be ImageNet
    pretrained; no weights: statistics for training from scratch.
    """
    if not weights:
        return SCRATCH_MEAN, SCRATCH_STD
    if encoder in LITE_ENCODERS:  # EfficientNet-Lite was trained on (x - 127) / 128, x in 0..255
        return LITE_INPUT_SHIFT / 255, LITE_INPUT_SCALE / 255
    if encoder is not None and encoder != "smallcnn":
        resolved = resolve_weights(encoder, weights)
        transforms = getattr(resolved, "transforms", None)
        if transforms is not None:
            preset = transforms()
            return float(sum(preset.mean) / len(preset.mean)), float(sum(preset.std) / len(preset.std))
    return IMAGENET_MEAN_GRAY, IMAGENET_STD_GRAY


class BatchAugment(torch.nn.Module):
    """Per-sample random rotation, shift, scale, brightness and contrast on a whole batch at once."""

    def __init__(self, rotation: float = 7.0, translate: float = 0.03, scale: float = 0.05,
                 brightness: float = 0.15, contrast: float = 0.15) -> None:
        super().__init__()
        self.rotation, self.translate, self.scale = rotation, translate, scale
        self.brightness, self.contrast = brightness, contrast

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        u = lambda: torch.rand(n, device=x.device) * 2 - 1  # noqa: E731 - uniform(-1, 1) per sample
        angle = u() * self.rotation * torch.pi / 180
        s = 1 + u() * self.scale
        cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
        theta = torch.stack([torch.stack([cos, -sin, u() * self.translate * 2], 1),
                             torch.stack([sin, cos, u() * self.translate * 2], 1)], 1)
        grid = torch.nn.functional.affine_grid(theta, list(x.shape), align_corners=False)
        low = x.amin(dim=(1, 2, 3), keepdim=True)
        out = torch.nn.functional.grid_sample(x - low, grid, align_corners=False, padding_mode="zeros") + low
        mean = out.mean(dim=(1, 2, 3), keepdim=True)
        c = (1 + u() * self.contrast).view(n, 1, 1, 1)
        b = (u() * self.brightness).view(n, 1, 1, 1)
        return (out - mean) * c + mean + b
