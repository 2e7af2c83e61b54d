"""`osteo predict`: new patients scored with a saved bundle. The options come from the clinical inputs'
vocabulary (`vocabulary`): plain constants, so `--help` imports nothing heavy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import UsageError
from ..folders import check_output_folder, ensure_outside_data
from ..signing import read_key
from ..vocabulary import CATEGORY_SPELLINGS, COLUMN_SPECS, FIELDS, INPUT_FEATURES, NUMBER_FIELDS, UNIT_NAMES, spellings
from .options import add_key_option, text_table


def _predict(args: argparse.Namespace) -> int:

    key = read_key(args.sign_key)
    values = {name: getattr(args, name) for name in FIELDS}
    given = [f"--{name.replace('_', '-')}" for name, v in values.items() if v is not None]
    if args.clinical or args.images:
        if not (args.clinical and args.images):
            raise UsageError("the batch form needs both --clinical ROWS.csv and --images FOLDER")
        if args.image or args.patient_id or given:
            raise UsageError(f"give either the batch form (--clinical, --images) or one patient (--image and "
                             f"options), not both: {' '.join([*(['--image'] if args.image else []), *given])}")
    out = None
    if args.out:
        out = ensure_outside_data(args.out, "--out")
        if out.is_dir():
            raise UsageError(f"--out {out}: is a folder; give a file name such as predictions.csv")
        check_output_folder(out.parent, "--out folder")
    from ..bundle import Bundle  # deferred: imports pandas, numpy and PIL, once the options are good
    from ..fileio import atomic_to_csv  # deferred: imports pandas and numpy
    from ..patients import BadInputError, batch_patients, single_patient  # deferred: imports pandas, numpy and PIL

    bundle = Bundle.load(args.model, key)
    if args.clinical:
        patients = batch_patients(Path(args.clinical), Path(args.images), bundle.required, bundle.image_size)
    else:
        patients = single_patient(values, args.image, args.patient_id, bundle.required, bundle.image_size)
    problems = [line for p in patients for line in p.problems]
    good = [p for p in patients if not p.problems]
    if problems and (not args.skip_bad or not good):
        raise BadInputError(problems)
    for line in problems:
        print(f"skipped: {line}", file=sys.stderr)
    table = bundle.score(good)
    shown = table.astype(object).map(lambda v: f"{v:.3f}" if isinstance(v, float) else str(v))
    print(text_table(shown.to_dict("records")))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_to_csv(table, out)
        print(f"predictions: {out}")
    return 0


def _clinical_help(name: str, unit: str | None = None) -> str:
    """What an option says: the input's meaning, and its unit (``unit``: one of its other units)."""
    spec = COLUMN_SPECS.get(name)
    text = spec.meaning if spec else name
    if unit is not None:
        return f"{text} in {UNIT_NAMES[unit]} ({unit}): a number, instead of --{name.replace('_', '-')}"
    if name in NUMBER_FIELDS:
        return f"{text}" + (f" ({spec.unit})" if spec and spec.unit else "") + ": a number"
    if name in CATEGORY_SPELLINGS:
        return f"{text.split(':')[0]}: one of {', '.join(sorted(CATEGORY_SPELLINGS[name]))}"
    return f"{text}: yes or no"


def _clinical_metavar(name: str) -> str:
    return "N" if name in NUMBER_FIELDS else "TEXT" if name in CATEGORY_SPELLINGS else "yes|no"


def add(sub: argparse._SubParsersAction) -> None:
    pred = sub.add_parser(
        "predict", help="score new patients with a saved model bundle",
        description="Score one patient (--image and clinical options) or a batch (--clinical ROWS.csv --images "
                    "FOLDER) with a bundle made by train-final. Images: JPEG, PNG, TIFF, BMP or DICOM (read as "
                    "cohorts and training read them). Numbers may be given in any unit a cohort spec accepts "
                    "(--height-m, --height-cm or --height-in; --weight-kg or --weight-lb; in a CSV, columns "
                    "height_cm, weight_lb, ...). Prints a table; --out writes it as CSV: patient_id, "
                    "p_low_bmd (fusion), p_low_bmd_clinical, p_normal, p_osteopenia, p_osteoporosis (T-score "
                    "model), t_score_mean, t_score_low, t_score_high (95% predictive interval), screen_positive "
                    "(p_low_bmd >= the saved threshold) and warnings (inputs outside the training range, "
                    "categories never seen, an image not recognised as a knee radiograph: no knee joint found, or "
                    "random noise). Bad input (an unreadable or missing image, an image that cannot be a knee "
                    "radiograph: too small, a colour picture, blank; a missing age or sex, an unknown category, a "
                    "non-number, a value outside its possible range, which says when another unit would make it "
                    "plausible) is one line per problem naming the patient and the field, exit status 2, nothing "
                    "written. The saved arms use age, sex and the image; other inputs are checked and compared "
                    "with the training range but do not change the scores. Research use only: not a medical "
                    "device.")
    pred.add_argument("--model", required=True, metavar="DIR", help="a bundle folder made by `osteo train-final`")
    pred.add_argument("--out", default=None, metavar="FILE.csv",
                      help="also write the table here (atomically; refused inside the dataset folder)")
    add_key_option(pred, "refuse a bundle not signed")
    one = pred.add_argument_group("one patient")
    one.add_argument("--image", default=None, metavar="KNEE",
                     help="the knee radiograph: JPEG, PNG, TIFF, BMP or DICOM (.dcm, .dicom or no extension)")
    one.add_argument("--patient-id", default=None, metavar="ID", help="the ID printed (default: the image's file stem)")
    batch = pred.add_argument_group("a batch")
    batch.add_argument("--clinical", default=None, metavar="ROWS.csv",
                       help="one row per patient: patient_id and clinical inputs by their tidy names (the options "
                            "below without the leading dashes, with _ for -: age_years, sex, weight_kg or "
                            "weight_lb, height_m or height_cm, ...; one column per input)")
    batch.add_argument("--images", default=None, metavar="FOLDER",
                       help="the knee images, matched by patient ID = file stem (any image extension, or a DICOM "
                            "file without one), at any depth")
    batch.add_argument("--skip-bad", action="store_true",
                       help="score the good rows and list the bad ones (default: list every bad row, score none)")
    clinical = pred.add_argument_group("clinical inputs of one patient (age and sex required; a number in one of "
                                       "its units)")
    for name in INPUT_FEATURES:
        flags = ["--age", "--age-years"] if name == "age_years" else [f"--{name.replace('_', '-')}"]
        clinical.add_argument(*flags, dest=name, default=None, metavar=_clinical_metavar(name),
                              help=_clinical_help(name))
        for field, unit in spellings(name)[1:]:
            clinical.add_argument(f"--{field.replace('_', '-')}", dest=field, default=None, metavar="N",
                                  help=_clinical_help(name, unit))
    pred.set_defaults(func=_predict)
