"""One fold's fit (early stopping on an inner split) and repeated cross-validation with resume.

Each finished fold writes its predictions, history and checkpoint atomically together with
a fingerprint of everything that determined it; a rerun with the same fingerprint reads
them back instead of retraining, so an interrupted run loses nothing that finished.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, WeightedRandomSampler
from tqdm.auto import tqdm

from .config import Profile, show_progress
from .data import CLASSES_3, CLASSES_BINARY
from .evaluation import PROB_PREFIX, threshold_for_sensitivity
from .images import BatchAugment, XrayDataset, make_transforms
from .models import build_model
from .splits import inner_split, iter_folds
from .tabular import INPUT_FEATURES, preprocessor_for, to_model_frame


@dataclass(frozen=True)
class Task:
    """A prediction target: its column in the cohort table and its class names (empty = regression)."""

    name: str
    target: str
    classes: tuple[str, ...]

    @property
    def n_outputs(self) -> int:
        return len(self.classes) if self.classes else 1

    @property
    def is_regression(self) -> bool:
        return not self.classes

    @property
    def stratify(self) -> str:
        return "label_3class" if self.is_regression else self.target


TASKS: dict[str, Task] = {
    "binary": Task("binary", "label_binary", CLASSES_BINARY),
    "3class": Task("3class", "label_3class", CLASSES_3),
    "tscore": Task("tscore", "t_score", ()),
}


def pick_device(prefer: str | None = None) -> torch.device:
    """CUDA when available (or asked for), else CPU."""
    if prefer:
        return torch.device(prefer)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _atomic_to_csv(df: pd.DataFrame, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    df.to_csv(tmp, index=False)
    tmp.replace(path)


def fingerprint(payload: dict) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def class_weights(y: np.ndarray, n_classes: int) -> torch.Tensor:
    """Inverse-frequency weights (n / (k * count)), so each class contributes equally to the loss."""
    counts = np.bincount(y, minlength=n_classes).astype(float)
    counts[counts == 0] = 1.0
    return torch.as_tensor(len(y) / (n_classes * counts), dtype=torch.float32)


class FoldTrainer:
    """Fits one model with AdamW, class-weighted loss and early stopping on a validation set."""

    def __init__(self, profile: Profile, task: Task, device: torch.device | None = None, progress: bool = True) -> None:
        self.profile = profile
        self.task = task
        self.device = device or pick_device()
        self.progress = progress
        self.amp = self.device.type == "cuda"
        self.augment = BatchAugment() if profile.augment else None

    def _loader(self, ds: XrayDataset, shuffle: bool, seed: int, y: np.ndarray | None = None) -> DataLoader:
        gen = torch.Generator().manual_seed(seed)
        sampler = None
        if shuffle and self.profile.balanced_sampling and y is not None and not self.task.is_regression:
            w = class_weights(y, self.task.n_outputs).numpy()[y]
            sampler = WeightedRandomSampler(torch.as_tensor(w, dtype=torch.double), len(y), generator=gen)
        return DataLoader(ds, batch_size=self.profile.batch_size, shuffle=shuffle and sampler is None,
                          sampler=sampler, generator=gen, num_workers=0,
                          pin_memory=self.device.type == "cuda")

    def _loss(self, y_fit: np.ndarray) -> nn.Module:
        if self.task.is_regression:
            return nn.MSELoss()
        weights = None if self.profile.balanced_sampling else class_weights(y_fit, self.task.n_outputs)
        return nn.CrossEntropyLoss(weight=None if weights is None else weights.to(self.device))

    def _step(self, model: nn.Module, batch, loss_fn: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
        image, tab, y = (t.to(self.device, non_blocking=True) for t in batch)
        if model.training and self.augment is not None and model.image_encoder is not None:
            image = self.augment(image)
        with torch.autocast(device_type=self.device.type, dtype=torch.bfloat16, enabled=self.amp):
            out = model(image if model.image_encoder is not None else None,
                        tab if model.tabular_encoder is not None else None)
        out = out.float()
        if self.task.is_regression:
            return loss_fn(out.squeeze(1), y.float()), out
        return loss_fn(out, y.long()), out

    def fit(self, model: nn.Module, fit_ds: XrayDataset, val_ds: XrayDataset, y_fit: np.ndarray, seed: int,
            desc: str = "") -> tuple[nn.Module, pd.DataFrame]:
        """Train until the validation loss stops improving; return the best model and the history."""
        seed_everything(seed)
        model = model.to(self.device)
        opt = torch.optim.AdamW(model.parameters(), lr=self.profile.lr, weight_decay=self.profile.weight_decay)
        loss_fn = self._loss(y_fit)
        fit_loader = self._loader(fit_ds, True, seed, y_fit)
        val_loader = self._loader(val_ds, False, seed)
        best_loss, best_state, bad_epochs, history = float("inf"), None, 0, []
        bar = tqdm(range(self.profile.epochs), desc=desc or "epochs", leave=False, disable=not show_progress(self.progress))
        for epoch in bar:
            model.train()
            total, n = 0.0, 0
            for batch in fit_loader:
                opt.zero_grad(set_to_none=True)
                loss, _ = self._step(model, batch, loss_fn)
                loss.backward()
                opt.step()
                total += loss.item() * len(batch[2])
                n += len(batch[2])
            val_loss = self.evaluate_loss(model, val_loader, loss_fn)
            history.append({"epoch": epoch + 1, "train_loss": total / max(n, 1), "val_loss": val_loss})
            bar.set_postfix(train=f"{total / max(n, 1):.3f}", val=f"{val_loss:.3f}")
            if val_loss < best_loss - 1e-4:
                best_loss, best_state, bad_epochs = val_loss, copy.deepcopy(model.state_dict()), 0
            else:
                bad_epochs += 1
                if bad_epochs >= self.profile.patience:
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
        hist = pd.DataFrame(history)
        hist["best"] = hist["val_loss"] == hist["val_loss"].min()
        return model, hist

    @torch.no_grad()
    def evaluate_loss(self, model: nn.Module, loader: DataLoader, loss_fn: nn.Module) -> float:
        model.eval()
        total, n = 0.0, 0
        for batch in loader:
            loss, _ = self._step(model, batch, loss_fn)
            total += loss.item() * len(batch[2])
            n += len(batch[2])
        return total / max(n, 1)

    @torch.no_grad()
    def predict(self, model: nn.Module, ds: XrayDataset) -> np.ndarray:
        """Class probabilities (n, k), or predicted values (n,) for regression."""
        model.eval()
        outs = []
        for batch in self._loader(ds, False, 0):
            _, out = self._step(model, batch, nn.MSELoss() if self.task.is_regression else nn.CrossEntropyLoss())
            outs.append(out.squeeze(1) if self.task.is_regression else torch.softmax(out, dim=1))
        return torch.cat(outs).cpu().numpy()


def prediction_columns(task: Task) -> list[str]:
    return ["pred_t_score"] if task.is_regression else [f"{PROB_PREFIX}{c}" for c in task.classes]


def cross_validate(cohort: pd.DataFrame, folds: pd.DataFrame, task: str | Task, mode: str, profile: Profile,
                   out_dir: Path, images: np.ndarray | None = None, arm: str | None = None,
                   features: tuple[str, ...] = INPUT_FEATURES, device: torch.device | None = None,
                   progress: bool = True, permute_labels: bool = False) -> pd.DataFrame:
    """Repeated outer CV of one network; returns (and saves) the out-of-fold predictions.

    `cohort` is the modelling table (one row per patient with an image), `images` the
    cached array aligned with its rows. Early stopping uses an inner split of the training
    folds only; the test fold is touched once, for prediction.
    """
    task = TASKS[task] if isinstance(task, str) else task
    torch.set_num_threads(profile.num_threads)
    arm = arm or f"{mode}_{task.name}"
    arm_dir = Path(out_dir) / arm
    arm_dir.mkdir(parents=True, exist_ok=True)
    cohort = cohort.reset_index(drop=True)
    y_all = cohort[task.target].to_numpy()
    if permute_labels:
        y_all = np.random.default_rng(profile.seed).permutation(y_all)
    strat = cohort[task.stratify].to_numpy() if not permute_labels or task.is_regression else y_all
    X_tab = to_model_frame(cohort, features) if mode != "image" else None
    trainer = FoldTrainer(profile, task, device, progress)
    params = {k: v for k, v in profile.to_dict().items()
              if k in ("image_size", "encoder", "weights", "epochs", "patience", "batch_size", "lr", "weight_decay",
                       "inner_val_fraction", "balanced_sampling", "augment")}
    parts = []
    fold_list = list(iter_folds(folds))
    for seed, fold, test_ids in tqdm(fold_list, desc=f"{arm} folds", disable=not show_progress(progress)):
        fold_dir = arm_dir / f"seed{seed}_fold{fold}"
        test_mask = cohort["patient_id"].isin(test_ids).to_numpy()
        key = fingerprint({"params": params, "task": task.name, "mode": mode, "features": features,
                           "permute": permute_labels, "test": sorted(test_ids), "n": len(cohort), "seed": seed})
        done = fold_dir / "done.json"
        if done.is_file() and json.loads(done.read_text()).get("fingerprint") == key:
            parts.append(pd.read_csv(fold_dir / "predictions.csv", dtype={"patient_id": str}))
            continue
        fold_dir.mkdir(parents=True, exist_ok=True)
        train_idx = np.flatnonzero(~test_mask)
        test_idx = np.flatnonzero(test_mask)
        train_view = cohort.iloc[train_idx].assign(_strat=strat[train_idx])
        fit_rel, val_rel = inner_split(train_view, "_strat", profile.inner_val_fraction, seed * 100 + fold)
        fit_idx, val_idx = train_idx[fit_rel], train_idx[val_rel]
        tab = None
        if X_tab is not None:
            pre = preprocessor_for(features).fit(X_tab.iloc[train_idx])
            tab = pre.transform(X_tab).astype(np.float32)
        y_fit = y_all[fit_idx]
        seed_everything(seed * 1000 + fold)  # weight initialisation is part of the fold's experiment
        model = build_model(mode, task.n_outputs, profile.encoder, profile.weights,
                            tabular_dim=0 if tab is None else tab.shape[1])

        def ds(idx: np.ndarray, train: bool) -> XrayDataset:
            tf = make_transforms(profile.weights, train and profile.augment) if images is not None else None
            return XrayDataset(None if images is None or mode == "tabular" else images[idx],
                               None if tab is None else tab[idx], y_all[idx], tf)

        model, history = trainer.fit(model, ds(fit_idx, True), ds(val_idx, False),
                                     y_fit.astype(int) if not task.is_regression else y_fit,
                                     seed=seed * 1000 + fold, desc=f"{arm} s{seed} f{fold}")
        pred = trainer.predict(model, ds(test_idx, False))
        out = pd.DataFrame({"patient_id": cohort["patient_id"].to_numpy()[test_idx], "fold": fold, "seed": seed,
                            "y_true": y_all[test_idx]})
        for j, col in enumerate(prediction_columns(task)):
            out[col] = pred if task.is_regression else pred[:, j]
        if task.name == "binary":
            val_prob = trainer.predict(model, ds(val_idx, False))[:, 1]
            out["threshold"] = threshold_for_sensitivity(y_all[val_idx], val_prob, profile.target_sensitivity)
        torch.save(model.state_dict(), fold_dir / "model.pt.tmp")
        os.replace(fold_dir / "model.pt.tmp", fold_dir / "model.pt")
        _atomic_to_csv(history, fold_dir / "history.csv")
        _atomic_to_csv(out, fold_dir / "predictions.csv")
        _atomic_write_text(done, json.dumps({"fingerprint": key, "arm": arm, "seed": seed, "fold": fold,
                                             "epochs_run": int(len(history))}))
        parts.append(out)
    oof = pd.concat(parts, ignore_index=True)
    _atomic_to_csv(oof, arm_dir / "oof.csv")
    return oof


def load_histories(arm_dir: Path) -> pd.DataFrame:
    """All per-fold training histories of an arm, with seed and fold columns."""
    frames = []
    for done in sorted(Path(arm_dir).glob("seed*_fold*/done.json")):
        info = json.loads(done.read_text())
        h = pd.read_csv(done.parent / "history.csv")
        frames.append(h.assign(seed=info["seed"], fold=info["fold"]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@dataclass
class FoldModel:
    """A trained fold: its network, its clinical transform (refitted, deterministic) and its test patients."""

    seed: int
    fold: int
    model: nn.Module
    preprocessor: object | None
    test_ids: list[str]


def load_fold_models(arm_dir: Path, cohort: pd.DataFrame, profile: Profile, task: str | Task, mode: str,
                     features: tuple[str, ...] = INPUT_FEATURES, seed: int | None = None) -> list[FoldModel]:
    """Reload the checkpoints of an arm (one repeat by default) for explanation on out-of-fold patients.

    The clinical transform is refitted on the fold's training patients: it is deterministic, so it
    equals the one used in training, and no pickled objects need to be stored.
    """
    task = TASKS[task] if isinstance(task, str) else task
    X_tab = to_model_frame(cohort, features) if mode != "image" else None
    out = []
    for done in sorted(Path(arm_dir).glob("seed*_fold*/done.json")):
        info = json.loads(done.read_text())
        if seed is not None and info["seed"] != seed:
            continue
        test_ids = pd.read_csv(done.parent / "predictions.csv", dtype={"patient_id": str})["patient_id"].tolist()
        train = ~cohort["patient_id"].isin(test_ids).to_numpy()
        pre = None if X_tab is None else preprocessor_for(features).fit(X_tab[train])
        tab_dim = 0 if pre is None else len(pre.get_feature_names_out())
        model = build_model(mode, task.n_outputs, profile.encoder, None, tabular_dim=tab_dim)
        model.load_state_dict(torch.load(done.parent / "model.pt", map_location="cpu", weights_only=True))
        out.append(FoldModel(info["seed"], info["fold"], model.eval(), pre, test_ids))
    if not out:
        raise FileNotFoundError(f"{arm_dir}: no finished folds; train the arm first")
    return out
