"""Peak memory of one process of the fast profile: one fold of the residual fusion with its settings.

Reports the process's peak resident set size (the whole Python process: interpreter, torch, data).
Run: python benchmarks/bench_memory.py
"""

from __future__ import annotations

import resource
import tempfile
import time
from pathlib import Path

from _common import write_result
from osteo_helpers import arms
from osteo_helpers.study import Study


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    study = Study.open("fast")
    before = peak_rss_mib()
    rows = study.rows()
    after_images = peak_rss_mib()
    folds = study.folds()
    one = folds[(folds["seed"] == folds["seed"].min()) & (folds["fold"] == 0)]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        arms.run_arm("fusion", rows, one, "binary", profile=study.profile, cache=Path(tmp), progress_bar=False)
    seconds = time.perf_counter() - t0
    write_result("memory_fast", {
        "profile": "fast", "image_size": study.profile.image_size, "encoder": study.profile.encoder,
        "peak_rss_mib_after_imports": round(before, 1), "peak_rss_mib_after_images": round(after_images, 1),
        "peak_rss_mib_after_one_fold": round(peak_rss_mib(), 1), "one_fold_seconds": round(seconds, 1)})


if __name__ == "__main__":
    main()
