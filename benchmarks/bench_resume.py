"""What verified cache files cost on a resume: the fast profile's network arms from a warm fold cache.

The first call fills a fold cache and an image cache in WORK (the fast profile with ``epochs=1``:
the folds' files have the fast profile's sizes and count, only their training is shorter); every
call then times, three times each, a warm resume as a notebook makes it: the images from the image
cache (`Study.rows`) and `cross_validate` of the network arms of notebooks 3 and 4 (binary and
three classes) with every fold reused. To compare two commits, run the script with each one's
package first on PYTHONPATH and a WORK folder of its own.

Run: python benchmarks/bench_resume.py --work /tmp/resume-work [--name resume]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from _common import write_result

ARMS = {"binary": ("tabular", "image", "fusion_concat", "fusion"), "3class": ("tabular", "image", "fusion_concat",
                                                                             "fusion"), "tscore": ("fusion_tscore",)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, required=True, help="fold and image caches (filled on the first call)")
    parser.add_argument("--name", default="resume")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ["OSTEO_CACHE_DIR"] = str(args.work / "images")
    os.environ["TQDM_DISABLE"] = "1"
    import osteo_helpers
    from osteo_helpers.arms import cross_validate
    from osteo_helpers.study import Study

    def resume() -> tuple[float, float, int]:
        t0 = time.perf_counter()
        study = Study.open("fast", args.work / "run", epochs=1)
        rows, folds = study.rows(), study.shared_folds
        t1 = time.perf_counter()
        n = 0
        for task, names in ARMS.items():
            for name in names:
                n += len(cross_validate(name, rows, folds, task, profile=study.profile, cache=study.paths.models,
                                        progress_bar=False).groupby(["seed", "fold"]))
        return t1 - t0, time.perf_counter() - t1, n

    t0 = time.perf_counter()
    resume()  # fills the caches on the first call; reads them otherwise
    fill = time.perf_counter() - t0
    times = [resume() for _ in range(args.repeats)]
    images, folds = min(t[0] for t in times), min(t[1] for t in times)
    n = times[0][2]
    write_result(args.name, {"package": osteo_helpers.__file__, "fill_or_warm_s": round(fill, 1), "folds_reused": n,
                             "images_warm_s": round(images, 2), "cross_validate_warm_s": round(folds, 2),
                             "ms_per_fold": round(1000 * folds / n, 1),
                             "all_runs": [[round(a, 2), round(b, 2)] for a, b, _ in times]})


if __name__ == "__main__":
    main()
