"""Training throughput: the project's FoldTrainer against a minimal plain-PyTorch loop, side by side.

Same network (the concatenation fusion of the profile), same in-memory images and clinical matrix,
same batch size and number of epochs (early stopping disabled). The plain loop only shuffles,
normalises, steps and back-propagates. The project loop also measures the inner validation loss
every epoch (and before the first), keeps the best weights, and, in the second variant, applies the
batch augmentation: the difference is its overhead. Rounds are interleaved (plain, project, ...)
and the second round is reported. Run: python benchmarks/bench_training_loop.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from _common import load_cohort, write_result
from osteo_helpers.config import get_profile
from osteo_helpers.models import build_model
from osteo_helpers.models.inputs import normalisation
from osteo_helpers.tabular import make_preprocessor, to_model_frame
from osteo_helpers.training import FoldTrainer, NetInputs, pick_device


def plain_loop(model: nn.Module, data: NetInputs, epochs: int, batch_size: int, lr: float, mean: float, std: float,
               device: torch.device) -> float:
    """The minimal loop, timed: the data uploaded once, then shuffle, normalise, step; on a GPU in bf16
    autocast with channels-last memory and fused AdamW (what a hand-written fast loop does)."""
    cuda = device.type == "cuda"
    model = model.to(device).train()
    if cuda:
        model = model.to(memory_format=torch.channels_last)
    data = data.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, **({"fused": True} if cuda else {}))
    gen = torch.Generator().manual_seed(0)
    if cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(epochs):
        for idx in torch.randperm(len(data), generator=gen).to(device).split(batch_size):
            if len(idx) < 2:
                continue
            image = (data.images[idx].float() / 255 - mean) / std
            if cuda:
                image = image.contiguous(memory_format=torch.channels_last)
            opt.zero_grad(set_to_none=True)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cuda):
                out = model(image, None if data.tabular is None else data.tabular[idx])
            nn.functional.cross_entropy(out.float(), data.targets[idx]).backward()
            opt.step()
    if cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="fast")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--carried", type=Path, default=None, help="folder with cohort.csv and images_<size>.npz")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args()
    overrides = dict(s.split("=", 1) for s in args.set)
    profile = get_profile(args.profile, epochs=args.epochs, patience=10**6, **overrides)
    torch.set_num_threads(profile.num_threads if not torch.cuda.is_available() else torch.get_num_threads())
    device = pick_device()
    cohort, images = load_cohort(profile.image_size, args.carried)
    y = torch.as_tensor(cohort["label_binary"].to_numpy())
    tab = torch.from_numpy(make_preprocessor().fit_transform(to_model_frame(cohort)).astype(np.float32))
    data = NetInputs(torch.from_numpy(np.ascontiguousarray(images)).unsqueeze(1), tab, y)
    n_fit = int(0.8 * len(y))
    fit, val = data.subset(np.arange(n_fit)), data.subset(np.arange(n_fit, len(y)))
    mean, std = normalisation(profile.weights)

    def fresh() -> nn.Module:
        torch.manual_seed(0)
        return build_model("fusion", 2, profile.encoder, weights=None, width=profile.cnn_width,
                           tabular_dim=tab.shape[1])

    def project(augment: bool) -> float:
        trainer = FoldTrainer(epochs=profile.epochs, patience=profile.patience, batch_size=profile.batch_size,
                              lr=profile.lr, weight_decay=profile.weight_decay, augment=augment,
                              normalisation=(mean, std), device=device)
        start = time.perf_counter()
        trainer.fit(fresh(), fit, val, seed=0)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return time.perf_counter() - start

    runs = {"plain": lambda: plain_loop(fresh(), fit, profile.epochs, profile.batch_size, profile.lr, mean, std,
                                        device),
            "project": lambda: project(False), "project_augmented": lambda: project(True)}
    results: dict[str, dict[str, float]] = {}
    for _ in range(2):  # interleaved; the second round is reported (warm caches)
        for name, run in runs.items():
            seconds = run()
            results[name] = {"seconds": round(seconds, 2),
                             "train_images_per_s": round(profile.epochs * n_fit / seconds, 1)}
    plain = results["plain"]["seconds"]
    write_result(f"training_loop_{args.profile}_{device.type}", {
        "profile": args.profile, "encoder": profile.encoder, "cnn_width": profile.cnn_width,
        "image_size": profile.image_size, "batch_size": profile.batch_size, "epochs": profile.epochs,
        "device": str(device), "n_fit": n_fit, "n_val": len(y) - n_fit, **results,
        "project_overhead_pct": round(100 * (results["project"]["seconds"] / plain - 1), 1),
        "project_augmented_overhead_pct": round(100 * (results["project_augmented"]["seconds"] / plain - 1), 1)},
        args.out)


if __name__ == "__main__":
    main()
