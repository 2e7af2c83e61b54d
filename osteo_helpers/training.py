"""Fitting one network: in-memory batches, batch-level augmentation, early stopping on an inner split.

The images of a fold are a few megabytes of uint8, so batches are cut from tensors held in
memory instead of going through a DataLoader with per-sample transforms (which cost more than
the convolutions on a CPU). The inner validation loss is measured before the first epoch too:
a residual network starts as its clinical model and keeps that state unless training improves
on it.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from .images import BatchAugment

LOSSES = ("cross_entropy", "gaussian")


def pick_device(prefer: str | None = None) -> torch.device:
    """CUDA when available (or asked for), else CPU."""
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def balanced_class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """scikit-learn's 'balanced' weights (n / (k * count)); a class absent from y gets weight 1."""
    y = np.asarray(y, dtype=int)
    present = np.unique(y)
    weights = np.ones(n_classes)
    weights[present] = compute_class_weight("balanced", classes=present, y=y) * len(present) / n_classes
    return torch.as_tensor(weights, dtype=torch.float32)


def gaussian_nll(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Negative log likelihood of y under N(out[:, 0], exp(out[:, 1])^2), averaged."""
    mean, log_sd = out[:, 0], out[:, 1].clamp(-7.0, 7.0)
    return (log_sd + 0.5 * ((y - mean) / log_sd.exp()) ** 2).mean() + 0.5 * math.log(2 * math.pi)


@dataclass
class NetInputs:
    """What a network sees for a set of patients: uint8 images (N, 1, S, S), clinical matrix, targets."""

    images: torch.Tensor | None
    tabular: torch.Tensor | None
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, idx: np.ndarray | torch.Tensor) -> NetInputs:
        idx = torch.as_tensor(idx, dtype=torch.long)
        return NetInputs(None if self.images is None else self.images[idx],
                         None if self.tabular is None else self.tabular[idx], self.targets[idx])


EpochCallback = Callable[[int, int, float, float], None]


class FoldTrainer:
    """AdamW with early stopping on the inner validation loss; configuration in the constructor."""

    def __init__(self, *, epochs: int, patience: int, batch_size: int, lr: float, weight_decay: float,
                 augment: bool, loss: str = "cross_entropy", class_weight: torch.Tensor | None = None,
                 penalty: float = 0.0, normalisation: tuple[float, float] = (0.5, 0.25),
                 device: torch.device | None = None, on_epoch: EpochCallback | None = None) -> None:
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
        self.epochs, self.patience, self.batch_size = epochs, patience, batch_size
        self.lr, self.weight_decay, self.penalty = lr, weight_decay, penalty
        self.loss, self.class_weight = loss, class_weight
        self.mean, self.std = normalisation
        self.device = device or pick_device()
        self.augment = BatchAugment() if augment else None
        self.on_epoch = on_epoch
        self.amp = self.device.type == "cuda"

    def _images(self, model: nn.Module, data: NetInputs, idx: torch.Tensor, train: bool,
                gen: torch.Generator | None) -> torch.Tensor | None:
        if getattr(model, "image_encoder", None) is None or data.images is None:
            return None
        x = data.images[idx].to(self.device, non_blocking=True).float().div_(255).sub_(self.mean).div_(self.std)
        if train and self.augment is not None:
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1).to(x.device), x.flip(-1), x)
            x = self.augment(x)
        return x

    def _forward(self, model: nn.Module, data: NetInputs, idx: torch.Tensor, train: bool,
                 gen: torch.Generator | None = None) -> torch.Tensor:
        image = self._images(model, data, idx, train, gen)
        tab = None if data.tabular is None else data.tabular[idx].to(self.device, non_blocking=True)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = model(image, tab)
        return out.float()

    def _data_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.loss == "gaussian":
            return gaussian_nll(out, y.float())
        weight = None if self.class_weight is None else self.class_weight.to(out.device)
        return nn.functional.cross_entropy(out, y.long(), weight=weight)

    def _batches(self, n: int, gen: torch.Generator | None, shuffle: bool) -> list[torch.Tensor]:
        order = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
        cuts = list(range(0, n, self.batch_size))
        if shuffle and len(cuts) > 1 and n - cuts[-1] < 2:  # BatchNorm cannot train on a batch of one
            cuts.pop()
        return [order[c:c + self.batch_size] for c in cuts]

    @torch.no_grad()
    def evaluate_loss(self, model: nn.Module, data: NetInputs) -> float:
        model.eval()
        total = 0.0
        for idx in self._batches(len(data), None, shuffle=False):
            out = self._forward(model, data, idx, train=False)
            total += self._data_loss(out, data.targets[idx].to(self.device)).item() * len(idx)
        return total / max(len(data), 1)

    def fit(self, model: nn.Module, fit: NetInputs, val: NetInputs | None,
            seed: int) -> tuple[nn.Module, pd.DataFrame]:
        """Train until the validation loss stops improving; return the best state (epoch 0 included)
        and the history. Without ``val``, train exactly ``epochs`` epochs and keep the last state."""
        seed_everything(seed)
        gen = torch.Generator().manual_seed(seed)
        model = model.to(self.device)
        opt = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        best_loss = np.nan if val is None else self.evaluate_loss(model, val)
        best_state, best_epoch, bad_epochs = copy.deepcopy(model.state_dict()), 0, 0
        history = [{"epoch": 0, "train_loss": np.nan, "val_loss": best_loss}]
        for epoch in range(1, self.epochs + 1):
            model.train()
            total, n = 0.0, 0
            for idx in self._batches(len(fit), gen, shuffle=True):
                opt.zero_grad(set_to_none=True)
                out = self._forward(model, fit, idx, train=True, gen=gen)
                loss = self._data_loss(out, fit.targets[idx].to(self.device))
                if self.penalty and hasattr(model, "penalty"):
                    loss = loss + self.penalty * model.penalty()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
                n += len(idx)
            val_loss = np.nan if val is None else self.evaluate_loss(model, val)
            history.append({"epoch": epoch, "train_loss": total / max(n, 1), "val_loss": val_loss})
            if self.on_epoch is not None:
                self.on_epoch(epoch, self.epochs, total / max(n, 1), val_loss)
            if val is None:
                best_state, best_epoch = model.state_dict(), epoch
            elif val_loss < best_loss - 1e-4:
                best_loss, best_state, best_epoch, bad_epochs = val_loss, copy.deepcopy(model.state_dict()), epoch, 0
            else:
                bad_epochs += 1
                if bad_epochs >= self.patience:
                    break
        model.load_state_dict(best_state)
        hist = pd.DataFrame(history)
        hist["best"] = hist["epoch"] == best_epoch
        return model, hist

    @torch.no_grad()
    def predict(self, model: nn.Module, data: NetInputs) -> np.ndarray:
        """Raw outputs: class logits (n, k), or Gaussian (mean, log sd) (n, 2)."""
        model = model.to(self.device).eval()
        outs = [self._forward(model, data, idx, train=False) for idx in self._batches(len(data), None, False)]
        return torch.cat(outs).cpu().numpy()
