"""The networks the arms train: the tabular MLP, the concatenation fusion, the residual network; the image branch
of a network trained on cached features (`FeatureInput`); a fitted logistic head seen as a network
(`LinearHead`, for Grad-CAM). Every network records its ``architecture`` (plain JSON: the constructor's
arguments), so a saved network is rebuilt by `from_architecture` and given its tensors: no code is stored.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..config import ENCODER_NAMES as ENCODERS
from .encoders import build_encoder

MODES = ("image", "tabular", "fusion")


class FeatureInput(nn.Module):
    """The image branch of a network trained on cached features of a frozen encoder: they pass as they are
    (computed once per image, transformed per fold, `features`)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.out_dim = width
        self.architecture = {"name": "features", "width": width}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


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
                                trainable_blocks=enc.get("trainable_blocks"), image_size=enc.get("image_size"))
    if spec["net"] == "FusionNet":
        return FusionNet(args.pop("mode"), args.pop("n_outputs"), encoder, **args)
    return ResidualNet(args.pop("base_dim"), args.pop("n_outputs"), encoder=encoder, **args)
