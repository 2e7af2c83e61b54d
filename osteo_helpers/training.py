"""Fitting one network: in-memory batches, batch-level augmentation, early stopping on an inner split.

The images of a fold are a few megabytes of uint8, so batches are cut from tensors held in
memory instead of going through a DataLoader with per-sample transforms (which cost more than
the convolutions on a CPU). The inner validation loss is measured before the first epoch too:
a residual network starts as its clinical model and keeps that state unless training improves
on it.

On a GPU the loop stays close to the hardware: the fold's images are uploaded once per fit,
steps run under bf16 autocast in channels-last memory format with cuDNN's autotuner, losses
are summed on the device (one host synchronisation per epoch, not per step), evaluation uses
large batches and the best state stays on the device. On the CPU every operation, and so every
number, is what it was before those changes (the losses are summed in float64 exactly as the
Python floats were).
"""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from .models.inputs import BatchAugment

LOSSES = ("cross_entropy", "gaussian")
#: set to ``cpu`` (or ``cuda:1``) to choose the device of every network step; default: CUDA when available
DEVICE_ENV = "OSTEO_DEVICE"
#: evaluation batch on a GPU (validation loss, predictions): memory allows far more than a training batch
GPU_EVAL_BATCH = 128

_forced_device: ContextVar[str | None] = ContextVar("osteo_forced_device", default=None)


@contextmanager
def use_device(name: str) -> Iterator[None]:
    """Run every network step inside the block on device ``name`` (the bundle's self-check uses the CPU)."""
    token = _forced_device.set(name)
    try:
        yield
    finally:
        _forced_device.reset(token)


def pick_device(prefer: str | None = None) -> torch.device:
    """The device asked for (argument, `use_device`, ``$OSTEO_DEVICE``), else CUDA when available, else CPU."""
    name = prefer or _forced_device.get() or os.environ.get(DEVICE_ENV)
    if name:
        return torch.device(name)
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
    """What a network sees for a set of patients: uint8 images (N, 1, S, S) or float features of a frozen
    encoder (N, D), clinical matrix, targets."""

    images: torch.Tensor | None
    tabular: torch.Tensor | None
    targets: torch.Tensor

    def __len__(self) -> int:
        return len(self.targets)

    def subset(self, idx: np.ndarray | torch.Tensor) -> NetInputs:
        idx = torch.as_tensor(idx, dtype=torch.long, device=self.targets.device)
        return NetInputs(None if self.images is None else self.images[idx],
                         None if self.tabular is None else self.tabular[idx], self.targets[idx])

    def to(self, device: torch.device) -> NetInputs:
        """The same inputs on ``device`` (uint8 images stay uint8: a fold of 448 px images is ~40 MB)."""
        return NetInputs(None if self.images is None else self.images.to(device, non_blocking=True),
                         None if self.tabular is None else self.tabular.to(device, non_blocking=True),
                         self.targets.to(device, non_blocking=True))


EpochCallback = Callable[[int, int, float, float], None]


class FoldTrainer:
    """AdamW with early stopping on the inner validation loss; configuration in the constructor.

    ``eval_batch_size``: the batch of the validation loss and of predictions; none: the training
    batch on the CPU (as it always was), `GPU_EVAL_BATCH` on a GPU.
    """

    def __init__(self, *, epochs: int, patience: int, batch_size: int, lr: float, weight_decay: float,
                 augment: bool, loss: str = "cross_entropy", class_weight: torch.Tensor | None = None,
                 penalty: float = 0.0, normalisation: tuple[float, float] = (0.5, 0.25),
                 device: torch.device | None = None, on_epoch: EpochCallback | None = None,
                 eval_batch_size: int | None = None) -> None:
        if loss not in LOSSES:
            raise ValueError(f"unknown loss {loss!r}; choose one of {LOSSES}")
        self.epochs, self.patience, self.batch_size = epochs, patience, batch_size
        self.lr, self.weight_decay, self.penalty = lr, weight_decay, penalty
        self.loss = loss
        self.mean, self.std = normalisation
        self.device = device or pick_device()
        self.class_weight = None if class_weight is None else class_weight.to(self.device)
        self.augment = BatchAugment() if augment else None
        self.on_epoch = on_epoch
        self.cuda = self.device.type == "cuda"
        self.eval_batch_size = eval_batch_size or (max(GPU_EVAL_BATCH, batch_size) if self.cuda else batch_size)

    def _prepare(self, model: nn.Module) -> nn.Module:
        """The model on the trainer's device; on a GPU in channels-last format with cuDNN's autotuner on."""
        model = model.to(self.device)
        if self.cuda:
            torch.backends.cudnn.benchmark = True
            model = model.to(memory_format=torch.channels_last)
        return model

    def _images(self, model: nn.Module, data: NetInputs, idx: torch.Tensor, train: bool,
                gen: torch.Generator | None) -> torch.Tensor | None:
        if getattr(model, "image_encoder", None) is None or data.images is None:
            return None
        if data.images.dtype.is_floating_point:  # cached features of a frozen encoder: used as they are
            return data.images[idx]
        x = data.images[idx].float().div_(255).sub_(self.mean).div_(self.std)
        if train and self.augment is not None:
            flip = torch.rand(len(idx), generator=gen, device=gen.device) < 0.5
            x = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
            x = self.augment(x)
        return x.contiguous(memory_format=torch.channels_last) if self.cuda else x

    def _forward(self, model: nn.Module, data: NetInputs, idx: torch.Tensor, train: bool,
                 gen: torch.Generator | None = None) -> torch.Tensor:
        """One batch forward; ``data`` is already on the trainer's device (uploaded once per fit)."""
        image = self._images(model, data, idx, train, gen)
        tab = None if data.tabular is None else data.tabular[idx]
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.cuda):
            out = model(image, tab)
        return out.float()

    def _data_loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.loss == "gaussian":
            return gaussian_nll(out, y.float())
        return nn.functional.cross_entropy(out, y.long(), weight=self.class_weight)

    def _batches(self, n: int, gen: torch.Generator | None, shuffle: bool, size: int | None = None
                 ) -> list[torch.Tensor]:
        """Index batches on the trainer's device: the order is drawn on the CPU (the seeded generator)
        and uploaded once, so a GPU step never waits for an index."""
        size = size or self.batch_size
        order = torch.randperm(n, generator=gen).to(self.device) if shuffle else torch.arange(n, device=self.device)
        cuts = list(range(0, n, size))
        if shuffle and len(cuts) > 1 and n - cuts[-1] < 2:  # BatchNorm cannot train on a batch of one
            cuts.pop()
        return [order[c:c + size] for c in cuts]

    def _total_loss(self, model: nn.Module, data: NetInputs) -> torch.Tensor:
        """Sum over the rows of the data loss, in float64 on the device (no synchronisation per batch)."""
        model.eval()
        total = torch.zeros((), dtype=torch.float64, device=self.device)
        for idx in self._batches(len(data), None, shuffle=False, size=self.eval_batch_size):
            out = self._forward(model, data, idx, train=False)
            total += self._data_loss(out, data.targets[idx]).detach().double() * len(idx)
        return total

    @torch.no_grad()
    def evaluate_loss(self, model: nn.Module, data: NetInputs) -> float:
        data = data.to(self.device)
        return self._total_loss(model, data).item() / max(len(data), 1)

    def fit(self, model: nn.Module, fit: NetInputs, val: NetInputs | None,
            seed: int) -> tuple[nn.Module, pd.DataFrame]:
        """Train until the validation loss stops improving; return the best state (epoch 0 included)
        and the history. Without ``val``, train exactly ``epochs`` epochs and keep the last state."""
        seed_everything(seed)
        gen = torch.Generator().manual_seed(seed)  # the batch order: drawn on the CPU, uploaded once an epoch
        # the flips: on the CPU the same generator (so CPU numbers never change); on a GPU drawn there,
        # so a step never waits for a host-to-device copy
        flips = torch.Generator(self.device).manual_seed(seed) if self.cuda else gen
        model = self._prepare(model)
        fit = fit.to(self.device)
        val = None if val is None else val.to(self.device)
        opt = torch.optim.AdamW(model.parameters(), lr=self.lr, weight_decay=self.weight_decay,
                                **({"fused": True} if self.cuda else {}))
        best_loss = np.nan if val is None else self.evaluate_loss(model, val)
        best_state, best_epoch, bad_epochs = _on_device_copy(model), 0, 0
        history = [{"epoch": 0, "train_loss": np.nan, "val_loss": best_loss}]
        for epoch in range(1, self.epochs + 1):
            model.train()
            total, n = torch.zeros((), dtype=torch.float64, device=self.device), 0
            for idx in self._batches(len(fit), gen, shuffle=True):
                opt.zero_grad(set_to_none=True)
                out = self._forward(model, fit, idx, train=True, gen=flips)
                loss = self._data_loss(out, fit.targets[idx])
                if self.penalty and hasattr(model, "penalty"):
                    loss = loss + self.penalty * model.penalty()
                loss.backward()
                opt.step()
                total += loss.detach().double() * len(idx)
                n += len(idx)
            train_loss = total.item() / max(n, 1)  # the epoch's one synchronisation (with the validation loss)
            val_loss = np.nan if val is None else self.evaluate_loss(model, val)
            history.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss})
            if self.on_epoch is not None:
                self.on_epoch(epoch, self.epochs, train_loss, val_loss)
            if val is None:
                best_state, best_epoch = model.state_dict(), epoch
            elif val_loss < best_loss - 1e-4:
                best_loss, best_state, best_epoch, bad_epochs = val_loss, _on_device_copy(model), epoch, 0
            else:
                bad_epochs += 1
                if bad_epochs >= self.patience:
                    break
        model.load_state_dict(best_state)
        if self.cuda:
            model = model.to(memory_format=torch.contiguous_format)
        hist = pd.DataFrame(history)
        hist["best"] = hist["epoch"] == best_epoch
        return model, hist

    @torch.no_grad()
    def predict(self, model: nn.Module, data: NetInputs) -> np.ndarray:
        """Raw outputs: class logits (n, k), or Gaussian (mean, log sd) (n, 2). A model held on another
        device is copied to the trainer's, so the caller's model is never moved or changed."""
        if any(p.device != self.device for p in model.parameters()):
            model = copy.deepcopy(model)
        model = self._prepare(model).eval()
        data = data.to(self.device)
        outs = [self._forward(model, data, idx, train=False)
                for idx in self._batches(len(data), None, False, size=self.eval_batch_size)]
        return torch.cat(outs).cpu().numpy()


def _on_device_copy(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state, copied where it lies (the best epoch's weights never travel to the host)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}
