"""`osteo ablation`: every arm on the shared folds, without the notebooks."""

from __future__ import annotations

import argparse

from ..config import get_profile
from ..errors import UsageError
from ..folders import check_output_folder, exclusive
from ..runfolder import claim_for_run, run_identity, why_moved
from .options import add_profile_options, checked_overrides


def _ablation(args: argparse.Namespace) -> int:
    overrides = checked_overrides(args)
    if args.permute_labels < 0:
        raise UsageError(f"--permute-labels: {args.permute_labels} is not allowed (must be >= 0)")
    from ..data import Cohort  # deferred: imports pandas, numpy and PIL

    dataset = Cohort.open(args.cohort, args.data_dir)  # spec, folder and layout: checked before any work
    out = check_output_folder(args.out, "--out", dataset.root)
    dataset.require_usable()  # every table value and image, decoded: all problems at once, nothing written
    from ..study import check_profile_on_data  # deferred: imports sklearn, scipy and pandas

    profile = get_profile(args.profile, **overrides)
    check_profile_on_data(profile, dataset)
    with exclusive(out):
        from ..ablation_run import run_ablation  # deferred: imports torch, sklearn and scipy

        settings = {**profile.to_dict(), "task": args.task, "permute_labels": args.permute_labels,
                    "biomarkers": args.biomarkers}
        moved = claim_for_run(out, run_identity("ablation", settings, dataset))
        if moved is not None:
            print(why_moved(out, moved))
        path = run_ablation(args.profile, args.task, out, permute_labels=args.permute_labels, overrides=overrides,
                            biomarkers=args.biomarkers, cohort=dataset)
    print(f"results: {path}")
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    abl = sub.add_parser("ablation", help="run the ablation arms on shared folds and write results.csv",
                         description="Every arm on the same folds: results.csv, comparisons.csv and the out-of-fold "
                                     "predictions of every arm (oof/<arm>.csv) in --out.")
    add_profile_options(abl)
    abl.add_argument("--task", choices=["binary", "3class"], default="binary",
                     help="normal vs low BMD (binary) or the three WHO classes (default binary)")
    abl.add_argument("--permute-labels", type=int, default=0, metavar="N",
                     help="1: rerun every arm once on shuffled labels (each should land near chance); "
                          "N > 1: add the permutation null of N shuffles (classical arms; networks per profile)")
    abl.add_argument("--biomarkers", action="store_true", help="add the image-biomarker and ROI-network arms")
    abl.add_argument("--out", required=True, metavar="DIR", help="folder for the tables (required)")
    abl.set_defaults(func=_ablation)
