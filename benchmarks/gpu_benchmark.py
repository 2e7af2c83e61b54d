"""The full profile on a GPU: a fit's anatomy against a minimal reference loop, fits side by side,
and the binary full ablation, from a carried cache (the GPU machine does not see the dataset).

Parts (``--parts``, default all three; each prints its table and writes a JSON file):

- ``anatomy``: one fit of the image arm (DenseNet-121 at 448 px, ``weights=none``) on the first
  outer fold, a fixed number of epochs, timed in pieces: the first fit of the process (CUDA
  context, cuDNN autotuning), the project's fit (augmentation and all), the same without
  augmentation, the prediction of the fold's test patients; against the minimal reference loop
  of `bench_training_loop.py` with the same network, batch size and epochs on the same training
  images already on the GPU (bf16 autocast, channels-last, fused AdamW, nothing else). Goal:
  project fit <= 1.3x reference.
- ``throughput``: 1, 4 and 8 fits side by side on one GPU (local workers), each fit the same
  image-arm fit; fits per minute and the speed-up over one at a time.
- ``ablation``: the binary full ablation as `osteo ablation` runs it (every declared arm, 3
  repeats, 5 threshold folds, ``weights=none``) with ``--workers`` (default: the best count of
  the throughput part, else 4); its wall time (goal <= 10 min) and each arm's AUROC. Progress
  lines show how far it got if the command is cut short; the fold cache (``--cache``) lets a
  rerun on the same machine resume.

``--smoke`` runs every part at toy sizes (small CNN at 64 px, 2 epochs, 1 and 2 fits side by
side, 1 repeat) so the script is checked on a CPU.

GPU: PYTHONUNBUFFERED=1 PYTHONPATH=. python3 benchmarks/gpu_benchmark.py --carried .device --out $OUT
CPU: PYTHONPATH=. python benchmarks/gpu_benchmark.py --smoke
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from _common import load_cohort, write_result
from bench_training_loop import plain_loop
from osteo_helpers import ablation, arms, evaluation, executor, progress, splits
from osteo_helpers.arms.driver import Fit, run_fit
from osteo_helpers.config import Profile, get_profile
from osteo_helpers.models import build_model
from osteo_helpers.models.inputs import normalisation
from osteo_helpers.threads import fit_threads
from osteo_helpers.training import NetInputs, pick_device

PARTS = ("anatomy", "throughput", "ablation")


def settings(smoke: bool) -> tuple[Profile, dict[str, Any]]:
    """The profile (full, weights none) and the sizes of each part; toy sizes with ``smoke``."""
    if smoke:
        profile = get_profile("smoke", n_repeats=1, num_threads=None)
        return profile, {"anatomy_epochs": 2, "side_by_side": (1, 2), "fits_each": 2, "throughput_epochs": 1}
    profile = get_profile("full", weights=None)  # no ImageNet download on the GPU machine; a step costs the same
    return profile, {"anatomy_epochs": 10, "side_by_side": (1, 4, 8), "fits_each": 8, "throughput_epochs": 5}


def synchronise() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def timed(fn) -> tuple[Any, float]:
    synchronise()
    start = time.perf_counter()
    out = fn()
    synchronise()
    return out, time.perf_counter() - start


def image_fit(profile: Profile, rows: pd.DataFrame, train: np.ndarray, epochs: int, seed: int,
              augment: bool = True) -> Fit:
    """The image arm trained for exactly ``epochs`` epochs on ``train`` (no early stopping, no threshold)."""
    arm = arms.make_arm("image", "binary", profile=profile.with_overrides(augment=augment), random_state=seed,
                        progress=False, fixed_epochs=epochs)
    y = rows["label_binary"].to_numpy()[train]
    return Fit(arm, train, y, np.arange(0), {"arm": "image", "task": "binary", "seed": seed, "fold": 0})


def reference_loop(profile: Profile, rows: pd.DataFrame, train: np.ndarray, epochs: int) -> float:
    """The minimal loop (`bench_training_loop.plain_loop`): same network, batch and epochs, the training
    images already on the device, no augmentation, no validation."""
    torch.manual_seed(0)
    model = build_model("image", 2, profile.encoder, weights=None, width=profile.cnn_width)
    images = torch.from_numpy(np.stack(rows["image"].to_numpy()[train])).unsqueeze(1)
    data = NetInputs(images, None, torch.as_tensor(rows["label_binary"].to_numpy()[train]))
    mean, std = normalisation(profile.weights, profile.encoder)
    return plain_loop(model, data, epochs, profile.batch_size, profile.lr, mean, std, pick_device())


def anatomy(profile: Profile, rows: pd.DataFrame, train: np.ndarray, test: np.ndarray, epochs: int) -> dict:
    torch.set_num_threads(fit_threads(profile.num_threads))
    _, first = timed(lambda: run_fit(image_fit(profile, rows, train, 1, 0), rows))
    result, project = timed(lambda: run_fit(image_fit(profile, rows, train, epochs, 0), rows))
    _, plain = timed(lambda: run_fit(image_fit(profile, rows, train, epochs, 0, augment=False), rows))
    proba, predict = timed(lambda: result.arm.predict_proba(rows.iloc[test]))
    reference_loop(profile, rows, train, 1)  # the reference's own warm-up (cuDNN autotuning of its shapes)
    reference = reference_loop(profile, rows, train, epochs)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()  # the workers of the next parts share the GPU's memory
    out = {"epochs": epochs, "train_images": len(train), "test_patients": len(test),
           "first_fit_of_process_1_epoch_s": round(first, 2), "project_fit_s": round(project, 2),
           "project_fit_without_augmentation_s": round(plain, 2), "predict_test_fold_s": round(predict, 3),
           "reference_loop_s": round(reference, 2), "project_over_reference": round(project / reference, 2),
           "project_without_augmentation_over_reference": round(plain / reference, 2),
           "reference_train_images_per_s": round(epochs * len(train) / reference, 1)}
    assert proba.shape == (len(test), 2)
    print_table("fit anatomy (image arm, first outer fold)", out)
    return out


def throughput(profile: Profile, rows: pd.DataFrame, train: np.ndarray, counts: tuple[int, ...], fits: int,
               epochs: int) -> dict:
    """``fits`` identical image-arm fits through k local workers sharing the GPU, for every k."""
    out: dict[str, Any] = {"fits": fits, "epochs_per_fit": epochs, "train_images": len(train), "settings": {}}
    for k in counts:
        workers = executor.LocalWorkers(k)
        try:
            tasks = [image_fit(profile, rows, train, 1, seed) for seed in range(k)]
            list(workers.map(run_fit, tasks, rows))  # start the workers: imports, CUDA context, cuDNN autotuning
            tasks = [image_fit(profile, rows, train, epochs, seed) for seed in range(fits)]
            start = time.perf_counter()
            list(workers.map(run_fit, tasks, rows))
            seconds = time.perf_counter() - start
        finally:
            workers.close()
        out["settings"][str(k)] = {"seconds": round(seconds, 2), "fits_per_min": round(60 * fits / seconds, 2),
                                   "train_images_per_s": round(fits * epochs * len(train) / seconds, 1)}
    one = out["settings"][str(counts[0])]["seconds"]
    for row in out["settings"].values():
        row["speedup"] = round(one / row["seconds"], 2)
    out["best"] = int(max(out["settings"], key=lambda k: out["settings"][k]["fits_per_min"]))
    print_table("fits side by side on one device", {f"{k} at once": v for k, v in out["settings"].items()})
    return out


def full_ablation(profile: Profile, rows: pd.DataFrame, folds: pd.DataFrame, workers: int, cache: Path) -> dict:
    """Every declared arm, binary task, as `osteo ablation` runs them; progress lines as the run goes."""
    from osteo_helpers.pipeline import Follower

    ex = executor.LocalWorkers(workers) if workers > 1 else executor.InProcess()
    printer = progress.Printer(write=lambda text, **_: print(text, flush=True))
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, Follower(Path(tmp) / "progress.jsonl", printer, interval=5.0):
        executor.configure(ex)
        try:
            oofs = ablation.run_arms(rows, folds, "binary", ablation.DECLARED_ORDER, profile, cache,
                                     progress_bar=False)
        finally:
            if isinstance(ex, executor.LocalWorkers):
                ex.close()
    seconds = time.perf_counter() - start
    fits = sum(1 for _ in cache.rglob("done.json"))
    auroc = {name: round(float(evaluation.binary_point_metrics(avg["y_true"], avg[evaluation.prob_columns(avg)[1]])
                               ["auroc"]), 3)
             for name, oof in oofs.items() for avg in [evaluation.average_over_repeats(oof)]}
    out = {"executor": ex.describe(), "seconds": round(seconds, 1), "minutes": round(seconds / 60, 2),
           "arms": len(oofs), "repeats": profile.n_repeats, "threshold_folds": profile.network_threshold_folds,
           "folds_saved": fits, "auroc": auroc}
    print_table("binary ablation, every declared arm", {k: v for k, v in out.items() if k != "auroc"})
    print_table("AUROC (out-of-fold, averaged over repeats)", auroc)
    return out


def print_table(title: str, values: dict) -> None:
    print(f"\n{title}")
    for key, value in values.items():
        print(f"  {key:<45} {json.dumps(value) if isinstance(value, dict) else value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--carried", type=Path, default=None,
                        help="folder with cohort.csv and images_<size>.npz (make_carried_cache.py); default: the "
                             "dataset on this machine")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}")
    parser.add_argument("--workers", type=int, default=None, help="the ablation's local workers (default: the best "
                                                                  "count of the throughput part, else 4)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "osteo-benchmark-folds",
                        help="the ablation's fold cache (a rerun resumes from it)")
    parser.add_argument("--smoke", action="store_true", help="toy sizes: checks the script on a CPU")
    parser.add_argument("--out", type=Path, default=None, help="where the JSON results go (default benchmarks/results)")
    args = parser.parse_args()
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts: unknown {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    profile, sizes = settings(args.smoke)
    started = time.perf_counter()
    cohort, images = load_cohort(profile.image_size, args.carried)
    rows = cohort.assign(image=list(images))
    folds = splits.make_folds(rows, "label_3class", profile.n_folds, profile.n_repeats, profile.seed)
    first = folds[(folds["seed"] == folds["seed"].min()) & (folds["fold"] == 0)]
    test = np.flatnonzero(rows["patient_id"].isin(first["patient_id"]).to_numpy())
    train = np.setdiff1d(np.arange(len(rows)), test)
    device = pick_device()
    result: dict[str, Any] = {"profile": profile.name, "encoder": profile.encoder, "image_size": profile.image_size,
                              "batch_size": profile.batch_size, "weights": "none (offline)", "device": str(device),
                              "patients": len(rows), "smoke": args.smoke}
    print_table("setting", result)
    if "anatomy" in parts:
        result["anatomy"] = anatomy(profile, rows, train, test, sizes["anatomy_epochs"])
    if "throughput" in parts:
        result["throughput"] = throughput(profile, rows, train, sizes["side_by_side"], sizes["fits_each"],
                                          sizes["throughput_epochs"])
    if "ablation" in parts:
        workers = args.workers or result.get("throughput", {}).get("best") or (2 if args.smoke else 4)
        result["ablation"] = full_ablation(profile, rows, folds, workers, args.cache)
    result["total_seconds"] = round(time.perf_counter() - started, 1)
    name = "gpu_benchmark_smoke" if args.smoke else f"gpu_benchmark_{device.type}"
    write_result(name, result, args.out)


if __name__ == "__main__":
    main()
