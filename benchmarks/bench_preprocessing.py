"""Image preprocessing: first run (decode every image into an empty cache) against the cached run, the decode
alone (`decode_letterbox` of every image, best of ``--repeats``) at each of ``--sizes``, and a study's first
images: the fast profile's cohort (pixel checksums) and its images at the network's, the encoder's and the
figures' sizes, from an empty cache (``--study-only`` for that alone).

Run from benchmarks/: python bench_preprocessing.py [--size 96] [--sizes 64 96 448] [--repeats 3]
To compare two commits, run it with each commit's package first on PYTHONPATH
(``git archive COMMIT osteo_helpers | tar -x -C /tmp/before; PYTHONPATH=/tmp/before python ...``).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from _common import write_result
from osteo_helpers.images import ImageCache, decode_letterbox, decoder_id
from osteo_helpers.study import Study


def decode_seconds(paths: list[Path], size: int, repeats: int) -> float:
    """The best of ``repeats`` passes decoding every image at ``size`` px (no cache)."""
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for path in paths:
            decode_letterbox(path, size)
        best = min(best, time.perf_counter() - t0)
    return best


def study_first_images(figure_size: int = 256) -> dict[str, float]:
    """Seconds from an empty cache to a fast-profile study's checksums and its images at every size it shows."""
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["OSTEO_CACHE_DIR"] = tmp
        study = Study.open("fast", Path(tmp) / "run")
        t0 = time.perf_counter()
        cohort = study.cohort
        checksums = time.perf_counter() - t0
        for size in (study.profile.image_size, study.recipe.size, figure_size):
            study.images(size, progress=False)
        total = time.perf_counter() - t0
        del os.environ["OSTEO_CACHE_DIR"]
    return {"images": len(cohort), "checksums_s": round(checksums, 2), "all_sizes_s": round(total, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--sizes", type=int, nargs="*", default=[64, 96, 448])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--study-only", action="store_true")
    parser.add_argument("--name", default=None)
    args = parser.parse_args()
    if args.study_only:
        write_result(args.name or f"study_first_images_{decoder_id()}", study_first_images())
        return
    study = Study.open("fast")
    cohort = study.cohort
    with tempfile.TemporaryDirectory() as tmp:
        cache = ImageCache(Path(tmp), args.size)
        t0 = time.perf_counter()
        cache.load_all(cohort, study.data_dir, progress=False)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        cache.load_all(cohort, study.data_dir, progress=False)
        cached = time.perf_counter() - t0
    paths = [Path(study.data_dir) / rel for rel in cohort["image_path"]]
    decode = {size: decode_seconds(paths, size, args.repeats) for size in args.sizes}
    write_result(f"preprocessing_{args.size}_{decoder_id()}", {
        "decoder": decoder_id(), "images": len(cohort), "size": args.size, "first_run_s": round(first, 2),
        "cached_run_s": round(cached, 3), "speedup": round(first / cached, 1),
        "first_ms_per_image": round(1000 * first / len(cohort), 1),
        "decode_s": {str(s): round(t, 2) for s, t in decode.items()},
        "decode_ms_per_image": {str(s): round(1000 * t / len(paths), 1) for s, t in decode.items()},
        "repeats": args.repeats})


if __name__ == "__main__":
    main()
