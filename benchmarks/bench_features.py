"""The frozen encoder's feature cache on a large cohort: time, disk and memory (issue 29).

Builds the N-image cohort of `bench_cohort.build` (default 5,000 distinct files made from the published
images) in a temporary folder, then in fresh processes computes the fast profile's features of every
image from an empty cache (cold: decoding, the encoder's forward passes, writing) and again from the
filled cache (warm: verified reads only). Reports wall seconds, each process's peak resident memory, the
cache's size on disk and the feature matrix's size in memory. Nothing is kept.
Run: python benchmarks/bench_features.py [--images 5000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from _common import write_result
from bench_cohort import build, measure

#: computes the fast profile's feature matrix of a cohort spec, in the cache named by $OSTEO_CACHE_DIR
FEATURES = ("import sys; from osteo_helpers import data; from osteo_helpers.config import get_profile; "
            "from osteo_helpers.features import FeatureRecipe, feature_matrix; "
            "c = data.Cohort.open(sys.argv[1]); rows = data.modelling_table(c.manifest(), c.clinical); "
            "p = get_profile('fast'); m = feature_matrix(rows, FeatureRecipe.of(p), c.root, threads=p.num_threads); "
            "print(m.shape, m.nbytes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=5000)
    args = parser.parse_args()
    import os

    from osteo_helpers.config import get_profile
    from osteo_helpers.features import FeatureRecipe, feature_width
    from osteo_helpers.folders import CACHE_ENV_VAR

    recipe = FeatureRecipe.of(get_profile("fast"))
    with tempfile.TemporaryDirectory() as tmp:
        os.environ[CACHE_ENV_VAR] = str(Path(tmp) / "cache")
        t0 = time.perf_counter()
        spec = build(Path(tmp) / "cohort", args.images)
        built = time.perf_counter() - t0
        cold = measure([sys.executable, "-c", FEATURES, str(spec)])
        warm = measure([sys.executable, "-c", FEATURES, str(spec)])
        features = Path(tmp) / "cache" / "features"
        disk = sum(p.stat().st_size for p in features.rglob("*") if p.is_file()) / 2**20
    width = feature_width(recipe)
    write_result("features", {
        "images": args.images, "recipe": recipe.describe(), "build_seconds": round(built, 1),
        "cold": cold, "warm": warm, "cache_mib_on_disk": round(disk, 1),
        "matrix_mib_in_memory": round(args.images * width * 4 / 2**20, 1), "width": width})


if __name__ == "__main__":
    sys.exit(main())
