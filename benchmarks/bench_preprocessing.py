"""Image preprocessing: first run (decode every JPEG) against the cached run, side by side.

Run: python benchmarks/bench_preprocessing.py [--size 96]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from _common import write_result
from osteo_helpers.images import ImageCache
from osteo_helpers.study import Study


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=96)
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
    write_result(f"preprocessing_{args.size}", {
        "images": len(cohort), "size": args.size, "first_run_s": round(first, 2), "cached_run_s": round(cached, 3),
        "speedup": round(first / cached, 1), "first_ms_per_image": round(1000 * first / len(cohort), 1)})


if __name__ == "__main__":
    main()
