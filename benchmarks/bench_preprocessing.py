"""Image preprocessing: first run (decode every image into an empty cache) against the cached run, and
the decode alone (`decode_letterbox` of every image, best of ``--repeats``) at each of ``--sizes``.

Run from benchmarks/: python bench_preprocessing.py [--size 96] [--sizes 64 96 448] [--repeats 3]
To compare two commits, run it with each commit's package first on PYTHONPATH
(``git archive COMMIT osteo_helpers | tar -x -C /tmp/before; PYTHONPATH=/tmp/before python ...``).
"""

from __future__ import annotations

import argparse
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--sizes", type=int, nargs="*", default=[64, 96, 448])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
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
