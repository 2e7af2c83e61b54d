"""Write a size-reduced cache (cohort table + letterboxed images, no raw files) for the GPU machine.

The GPU machine does not see the dataset; this folder (ignored by git) travels instead, named in the
device call's ``carry``. Everything that travels must stay under 64 MiB, the checkout included, so the
script refuses to leave a cache over ``--limit-mib``.
Run: PYTHONPATH=. python benchmarks/make_carried_cache.py --out .device --sizes 448
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from osteo_helpers.study import Study

KEEP = ["patient_id", "image_sha256", "diagnosis", "label_binary", "label_3class", "t_score", "split_group", "batch",
        "mode", "width", "height"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path(".device"))
    parser.add_argument("--sizes", type=int, nargs="+", default=[448])
    parser.add_argument("--limit-mib", type=float, default=56.0,
                        help="largest cache allowed (the checkout travels too)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    study = Study.open("full")
    from osteo_helpers.tabular import INPUT_FEATURES

    study.cohort[KEEP + list(INPUT_FEATURES)].to_csv(args.out / "cohort.csv", index=False)
    for size in args.sizes:
        np.savez_compressed(args.out / f"images_{size}.npz", images=study.images(size, progress=False))
    total = sum(p.stat().st_size for p in args.out.iterdir()) / 2**20
    if total > args.limit_mib:
        raise SystemExit(f"{args.out}: {total:.1f} MiB, over --limit-mib {args.limit_mib}; "
                         "carry fewer or smaller sizes")
    print(f"wrote {args.out} ({total:.1f} MiB)")


if __name__ == "__main__":
    main()
