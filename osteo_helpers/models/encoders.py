"""The image encoders of the networks trained on pixels, one factory (`build_encoder`): the small CNN trained from
scratch, torchvision backbones (for users who bring their own weights) and EfficientNet-Lite (the GPU
profile's fine-tuning). Every encoder records its ``architecture``, so a saved network is rebuilt from it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..config import ENCODER_NAMES as ENCODERS
from ..config import LITE_ENCODERS
from ..errors import WeightsUnavailableError
from .efficientnet import LiteEncoder, efficientnet_lite
from .weights import checkpoint_state_dict, resolve_weights, torchvision_models, torchvision_state_dict


class SmallCNN(nn.Module):
    """A compact CNN suited to training from scratch on a few hundred images on a CPU.

    A strided stem then one conv-BN-ReLU-pool block per width: about 0.3 M parameters.
    """

    def __init__(self, widths: tuple[int, ...] = (32, 64, 128, 128), in_channels: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 16, 5, stride=2, padding=2, bias=False),
                                   nn.BatchNorm2d(16), nn.ReLU(inplace=True)]
        c = 16
        for w in widths:
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            c = w
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.out_dim = c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.features(x)), 1)


class GrayToRGB(nn.Module):
    """Repeat a one-channel radiograph to the three channels torchvision backbones expect."""

    def __init__(self, backbone: nn.Module, out_dim: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)


def build_encoder(name: str, *, weights: str | Path | None = None, width: int = 32,
                  trainable_blocks: int | None = None, image_size: int | None = None) -> nn.Module:
    """Image encoder returning a flat embedding; `encoder.out_dim` is its width.

    ``width`` is the small CNN's first layer width (the others double, to 4x); torchvision
    backbones ignore it. EfficientNet-Lite trains only its last ``trainable_blocks`` stages (None: all), its
    "same" padding computed for inputs of ``image_size`` px (None: its native size).
    """
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {ENCODERS}")
    if name in LITE_ENCODERS:
        model = LiteEncoder(efficientnet_lite(name, weights=weights, image_size=image_size), trainable_blocks)
        model.architecture = {"name": name, "width": width, "trainable_blocks": trainable_blocks,
                              "image_size": image_size}
        return model
    resolved = resolve_weights(name, weights)
    if name == "smallcnn":
        model: nn.Module = SmallCNN((width, 2 * width, 4 * width, 4 * width))
        if resolved is not None:
            state = checkpoint_state_dict(resolved)  # a file that is no checkpoint says so, not "do not fit"
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                raise WeightsUnavailableError(f"weights {weights!s} do not fit smallcnn of width {width}: "
                                              f"{str(exc).splitlines()[0]}") from exc
    else:
        backbone = torchvision_models().get_model(name, weights=None)
        if resolved is not None:
            state = (checkpoint_state_dict(resolved) if isinstance(resolved, Path)
                     else torchvision_state_dict(resolved))
            state = {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
            missing, unexpected = backbone.load_state_dict(state, strict=False)
            missing = [k for k in missing if not k.startswith(("fc.", "classifier."))]
            if missing or unexpected:
                raise WeightsUnavailableError(
                    f"weights {weights!s} do not fit {name}: missing {missing[:5]}, unexpected {unexpected[:5]}")
        if name.startswith("resnet"):
            out_dim = backbone.fc.in_features
            backbone.fc = nn.Identity()
        else:
            out_dim = backbone.classifier.in_features
            backbone.classifier = nn.Identity()
        model = GrayToRGB(backbone, out_dim)
    model.architecture = {"name": name, "width": width}
    return model


def require_weights(name: str, weights: str | Path | None, width: int = 32) -> None:
    """Fail before any work when the weights a profile names cannot be loaded here (offline and not
    cached, a missing checkpoint, a file that is not a checkpoint of this encoder); training from
    scratch must be asked for (weights=none). A checkpoint is loaded into the encoder (tensors only)."""
    resolved = resolve_weights(name, weights)
    if isinstance(resolved, Path):
        if not resolved.is_file():
            raise WeightsUnavailableError(f"{resolved}: checkpoint file not found")
        build_encoder(name, weights=resolved, width=width)
    elif resolved is not None:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / resolved.url.rsplit("/", 1)[-1]
        if not cached.is_file():
            raise WeightsUnavailableError(
                f"{type(resolved).__name__}.{resolved.name} are not in the torch cache ({cached}): download "
                f"{resolved.url} into that folder, pass --set weights=/path/to/checkpoint.pth, or train from "
                "scratch with --set weights=none")
