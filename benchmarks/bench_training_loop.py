"""Training throughput: the project's FoldTrainer against a minimal plain-PyTorch loop, side by side.

Same model, same data, same batch size, same number of epochs (early stopping disabled).
The project loop additionally runs batch augmentation, a validation pass per epoch and keeps the
best weights; the difference is its overhead. Run: python benchmarks/bench_training_loop.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from _common import load_cohort, write_result
from osteo_helpers.config import get_profile
from osteo_helpers.images import XrayDataset, make_transforms
from osteo_helpers.models import build_model
from osteo_helpers.tabular import make_preprocessor, to_model_frame
from osteo_helpers.training import TASKS, FoldTrainer, pick_device


def plain_loop(model: nn.Module, ds: XrayDataset, epochs: int, batch_size: int, lr: float,
               device: torch.device) -> float:
    loader = DataLoader(ds, batch_size=batch_size, shuffle=True, generator=torch.Generator().manual_seed(0))
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    loss_fn = nn.CrossEntropyLoss()
    model.to(device).train()
    amp = device.type == "cuda"
    start = time.perf_counter()
    for _ in range(epochs):
        for image, tab, y in loader:
            image, tab, y = image.to(device), tab.to(device), y.to(device)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                out = model(image, tab)
            loss_fn(out.float(), y).backward()
            opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="fast")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--carried", type=Path, default=None, help="folder with cohort.csv and images_<size>.npz")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    overrides = {k: type(getattr(get_profile(args.profile), k))(v) for k, v in (s.split("=", 1) for s in args.set)}
    profile = get_profile(args.profile, epochs=args.epochs, patience=10**6, **overrides)
    torch.set_num_threads(profile.num_threads if not torch.cuda.is_available() else torch.get_num_threads())
    device = pick_device()
    cohort, images = load_cohort(profile.image_size, args.carried)
    y = cohort["label_binary"].to_numpy()
    tab = make_preprocessor().fit_transform(to_model_frame(cohort)).astype(np.float32)
    n_fit = int(0.8 * len(y))
    fit_ds = XrayDataset(images[:n_fit], tab[:n_fit], y[:n_fit], make_transforms(profile.weights, True))
    val_ds = XrayDataset(images[n_fit:], tab[n_fit:], y[n_fit:], make_transforms(profile.weights, False))

    def fresh() -> nn.Module:
        torch.manual_seed(0)
        return build_model("fusion", 2, profile.encoder, None, tab.shape[1])

    results = {}
    for name in ("plain", "project", "plain", "project"):  # interleaved, second round reported (warm caches)
        model = fresh()
        if name == "plain":
            seconds = plain_loop(model, fit_ds, profile.epochs, profile.batch_size, profile.lr, device)
        else:
            start = time.perf_counter()
            FoldTrainer(profile, TASKS["binary"], device, progress=False).fit(model, fit_ds, val_ds, y[:n_fit], seed=0)
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
        results[name] = {"seconds": round(seconds, 2), "train_images_per_s": round(profile.epochs * n_fit / seconds, 1)}
    overhead = results["project"]["seconds"] / results["plain"]["seconds"] - 1
    write_result(f"training_loop_{args.profile}_{device.type}", {
        "profile": args.profile, "encoder": profile.encoder, "image_size": profile.image_size,
        "batch_size": profile.batch_size, "epochs": profile.epochs, "device": str(device), "n_fit": n_fit,
        "n_val": len(y) - n_fit, **results, "project_overhead_pct": round(100 * overhead, 1)}, args.out)


if __name__ == "__main__":
    main()
