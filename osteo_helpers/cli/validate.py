"""`osteo validate`: a saved bundle scored and measured on a cohort."""

from __future__ import annotations

import argparse

from ..errors import UsageError
from ..signing import read_key
from .options import add_key_option, text_table


def _rows(dataset, bundle):
    """The cohort rows `validate` scores (every table row), their site and person columns, the cohort's name
    (its spec's) and where it lies."""
    from ..images import cohort_rows  # deferred: imports scipy, pandas and numpy

    rows = cohort_rows(dataset, bundle.image_size)
    if rows["person_id"].duplicated().any():  # several images of one person: one patient, scored once
        rows = rows.assign(image_id=rows["patient_id"], patient_id=rows["person_id"])
    site = next((c for c in ("site", "batch") if c in rows.columns and rows[c].notna().any()), None)
    where = f"{dataset.spec.source}, folder {dataset.root}" + (f"; sites: {site}" if site else "")
    return rows, site, "split_group", dataset.spec.name, where


def _validate(args: argparse.Namespace) -> int:
    key = read_key(args.sign_key)
    if args.n_boot is not None and args.n_boot < 1:
        raise UsageError(f"--n-boot: {args.n_boot} is not allowed (must be >= 1)")
    from ..data.spec import load_spec  # deferred: imports numpy

    spec = load_spec(args.cohort)  # a spec error is one line now, before the table and image libraries load
    from ..data import Cohort  # deferred: imports pandas, numpy and PIL

    dataset = Cohort.open(spec, args.data_dir)  # the spec's folder, checked before any work
    from ..bundle import Bundle  # deferred: imports pandas, numpy and PIL
    from ..external import validate  # deferred: imports torch, sklearn and scipy
    from ..external.validate import check_target  # deferred: imports torch, sklearn and scipy

    target = check_target(args.out, dataset.root)
    bundle = Bundle.load(args.model, key)
    rows, site, person, cohort, where = _rows(dataset, bundle)
    result = validate(rows, bundle, target, site=site, person=person, recalibrate=args.recalibrate,
                      n_boot=args.n_boot, cohort=cohort, cohort_source=where)
    headline = result.metrics[(result.metrics["site"] == "all") & (result.metrics["subset"] == "all")]
    shown = headline.pivot_table(index=["model", "recalibration"], columns="metric", values="value", sort=False)
    columns = ["auroc", "brier", "calibration_intercept", "calibration_slope", "sensitivity", "specificity"]
    print(text_table([{"model": m, "recalibration": r, **{c: f"{row[c]:.3f}" for c in columns}}
                      for (m, r), row in shown.iterrows()]))
    summary = result.summary
    print(f"{summary['training_overlap']['statement']}")
    print(f"scored {summary['patients']} patients, refused {summary['refused_rows']} of {summary['rows']} rows; "
          f"report: {target / 'report.html'}")
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    val = sub.add_parser(
        "validate", help="validate a saved model bundle on a cohort (external validation)",
        description="Score every patient of a cohort with a bundle made by train-final and measure its fusion "
                    "(p_low_bmd) and clinical model (p_low_bmd_clinical): AUROC and AUPRC, Brier and scaled Brier, "
                    "calibration intercept and slope, sensitivity and specificity at the saved thresholds, with "
                    "group-bootstrap CIs, on all patients and per site. Rows the bundle cannot score (missing image, "
                    "missing age or sex, impossible values, no outcome) are refused and listed; inputs outside the "
                    "training range or never seen in training are scored, flagged and counted. Writes --out "
                    "atomically: metrics.csv, predictions.csv, refused.csv, unseen_inputs.csv, input_flags.csv, "
                    "reliability.csv, decision_curve.csv, recalibration.csv, figures/, report.html, validation.json.")
    val.add_argument("--model", required=True, metavar="DIR", help="a bundle folder made by `osteo train-final`")
    val.add_argument("--cohort", default=None, metavar="SPEC.toml",
                     help="a cohort spec (TOML); sites are its site (or batch) column (default: the published dataset, "
                          "whose sites are its acquisition batches)")
    val.add_argument("--data-dir", default=None, metavar="DIR",
                     help="the cohort's folder when the spec names none; for the published dataset the default is "
                          "$OSTEO_DATA_DIR, then data/raw, then ../shared/data/knee-osteoporosis")
    val.add_argument("--out", required=True, metavar="DIR",
                     help="folder for the tables, figures and report.html (new, empty, or an earlier validation)")
    val.add_argument("--recalibrate", action="store_true",
                     help="also refit each model's intercept, and its intercept and slope, on this cohort (logistic "
                          "recalibration, cross-fitted) and report both beside the original")
    val.add_argument("--n-boot", type=int, default=None, metavar="N",
                     help="bootstrap resamples of the CIs (default: the bundle's profile)")
    add_key_option(val, "refuse a bundle not signed")
    val.set_defaults(func=_validate)
