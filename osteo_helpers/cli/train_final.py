"""`osteo train-final`: the primary arms fitted on every patient, saved as a bundle."""

from __future__ import annotations

import argparse

from ..signing import read_key
from .options import add_key_option, add_profile_options, checked_overrides


def _train_final(args: argparse.Namespace) -> int:
    key = read_key(args.sign_key)
    overrides = checked_overrides(args)
    from ..data import Cohort  # deferred: imports pandas, numpy and PIL

    dataset = Cohort.open(args.cohort, args.data_dir)  # the cohort, opened once: spec, folder and layout
    from ..train_final import train_final  # deferred: imports torch, sklearn and scipy

    bundle = train_final(args.profile, args.out, overrides=overrides, run_dir=args.run, cohort=dataset, sign_key=key)
    print(f"model bundle: {bundle.path} (model card: {bundle.path / 'MODEL_CARD.md'})")
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    final = sub.add_parser(
        "train-final", help="fit the primary arms on ALL patients and save a model bundle",
        description="Fit fusion and clinical (normal vs low BMD) and fusion_tscore (the T-score) on ALL patients "
                    "(a refit on every patient: the cross-validated report estimates how this procedure performs; "
                    "no patient is held out), each with its screening threshold at the profile's "
                    "target_sensitivity, and write a self-contained bundle: arms/* (JSON, safetensors, skops: no "
                    "pickle), bundle.json (settings, threshold, calibration, training ranges, data checksums, "
                    "versions, commit, the SHA-256 of every arm file) and MODEL_CARD.md. "
                    "The folder is replaced atomically; it is refused inside the dataset folder.")
    add_profile_options(final)
    final.add_argument("--out", required=True, metavar="DIR", help="the bundle folder (new, empty, or a bundle to "
                                                                   "replace)")
    final.add_argument("--run", default=None, metavar="RUN_DIR",
                       help="a finished `osteo run` folder of the same settings: its tables give the model card's "
                            "metrics, calibration and subgroups (without it: 'not measured')")
    add_key_option(final, "sign the bundle")
    final.set_defaults(func=_train_final)
