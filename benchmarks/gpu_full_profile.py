"""The full profile's training on a GPU: one fold (or all), timed, from a carried cache.

ImageNet weights cannot be downloaded on the lent GPU machine, so the timing run uses weights=None;
the cost of a training step does not depend on the initial weights.
Run: PYTHONPATH=. python benchmarks/gpu_full_profile.py --carried .device [--folds 1]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from _common import load_cohort, write_result
from osteo_helpers import arms, evaluation, splits
from osteo_helpers.config import get_profile
from osteo_helpers.training import pick_device


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--carried", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=1, help="how many outer folds of the first repeat to train")
    parser.add_argument("--arm", default="fusion", help="the network arm to train (e.g. fusion, image, fusion_concat)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override (for dry runs)")
    args = parser.parse_args()
    overrides = dict(s.split("=", 1) for s in args.set)
    profile = get_profile("full", **{"weights": None, "n_repeats": 1, "num_threads": torch.get_num_threads(),
                                     **overrides})
    cohort, images = load_cohort(profile.image_size, args.carried)
    folds = splits.make_folds(cohort, "label_3class", profile.n_folds, 1, profile.seed)
    folds = folds[folds["fold"] < args.folds]
    device = pick_device()
    rows = cohort.assign(image=list(images))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        oof = arms.run_arm(args.arm, rows, folds, "binary", profile=profile, cache=Path(tmp), progress_bar=False)
        seconds = time.perf_counter() - t0
        hist = arms.load_histories(Path(tmp), args.arm, "tscore" if args.arm.endswith("_tscore") else "binary")
    epochs = int(hist.groupby(["seed", "fold"]).size().sum())
    n_fit = int(0.8 * 0.8 * len(cohort))
    result = {"profile": "full", "arm": args.arm, "encoder": profile.encoder, "image_size": profile.image_size,
              "weights": "none (offline)", "device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
              "folds_trained": args.folds, "epochs_run": epochs, "seconds": round(seconds, 1),
              "seconds_per_epoch": round(seconds / max(epochs, 1), 2),
              "approx_train_images_per_s": round(epochs * n_fit / seconds, 1)}
    if args.folds == profile.n_folds:
        result["auroc_oof"] = float(evaluation.oof_metrics(oof, 200, 0).set_index("metric").at["auroc", "value"])
    write_result(f"gpu_full_profile_{args.arm}_{args.folds}fold", result, args.out)


if __name__ == "__main__":
    main()
