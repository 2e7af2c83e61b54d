"""Command line (`osteo`, the same as `python -m osteo_helpers`): `data check|import`, `cohort check|export|schema`,
`run`, `answer`, `ablation`, `train-final`, `predict`, `validate`, `profiles`.

Exit status, the same for the same input whatever the command (README: Exit status):
  0    done (`cohort check`, `data check`: nothing stops a run; the findings are listed all the same)
  1    the work started and failed: a notebook or a fit, or `data import` files that fail the registry
  2    the input cannot be used: an option or `--set` value, a spec, a table or image that cannot be
       read, a cohort problem that stops a run, a folder; said before any work, nothing written
  130  interrupted (Ctrl-C)
Errors are `error: ...` lines on stderr: one line; a `predict` batch, one per bad input; a cohort's problems,
one per kind after a line saying how many.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import __version__, library_warnings, progress
from .config import PROFILES, DataNotFoundError, UsageError, get_profile
from .signing import add_key_option, read_key

#: what Ctrl-C prints (exit status 130): finished folds and cached images are kept, half-written files are not
INTERRUPTED = "interrupted; run the same command again to resume"


def _parse_overrides(items: list[str]) -> dict[str, str]:
    """`--set KEY=VALUE` pairs as text; the profile parses and checks each value (config.Profile)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


def _checked_overrides(args: argparse.Namespace) -> dict[str, str]:
    """The `--set` values, after the profile accepted them, and the executor of `--workers` / `--ray`
    (UsageError otherwise, before any work); the executor then runs every fit of the command."""
    overrides = _parse_overrides(args.set)
    profile = get_profile(args.profile, **overrides)
    from .models import require_weights

    require_weights(profile.encoder, profile.weights, profile.cnn_width)
    from . import executor

    executor.configure(executor.from_options(args.workers, args.ray, args.fits_per_gpu))
    return overrides


def _check(spec: str | None, data_dir: str | None, as_json: bool) -> int:
    """Every finding of a cohort (`data check` is the published dataset's), all in one pass; exit 2 when
    one of them stops `run` (a bad table value, an unreadable image, no image at all)."""
    from . import data
    from .data.problems import CohortProblemsError, count_text

    cohort = data.Cohort.open(spec, data_dir)
    findings = cohort.findings()
    print(json.dumps(findings) if as_json else data.format_findings(findings))
    fatal, lines = findings["fatal_problems"], findings["fatal_problem_lines"]
    if len(lines) == 1:
        raise CohortProblemsError(cohort.spec.name, cohort.spec.source, fatal)  # one line, as `run` says it
    if fatal:
        raise UsageError(f"{count_text(fatal)} stop run, ablation and train-final on this cohort (listed "
                         + ("in fatal_problem_lines)" if as_json else "above)"))
    return 0


def _data_check(args: argparse.Namespace) -> int:
    return _check(None, args.data_dir, args.json)


def _cohort_check(args: argparse.Namespace) -> int:
    return _check(args.spec, args.data_dir, args.json)


def _cohort_export(args: argparse.Namespace) -> int:
    from .data.export import export_cohort

    spec = export_cohort(args.to, args.format, args.cohort, args.data_dir)
    print(f"cohort written to {spec.parent}; its spec: {spec}")
    return 0


def _cohort_schema(args: argparse.Namespace) -> int:
    from .data.spec_schema import reference_markdown, spec_schema

    sys.stdout.write(reference_markdown() if args.markdown else json.dumps(spec_schema(), indent=2) + "\n")
    return 0


def _data_import(args: argparse.Namespace) -> int:
    from .data import import_dataset

    dest = import_dataset(Path(args.source), Path(args.dest) if args.dest else None)
    print(f"verified every file against the registry and installed the dataset in {dest}")
    return 0


def _run(args: argparse.Namespace) -> int:
    overrides = _checked_overrides(args)
    from .pipeline import run  # checks the data and run folders, then holds the folder's writer lock

    html = run(args.profile, args.out, args.data_dir, overrides,
               tuple(args.notebook) if args.notebook else None, build=not args.no_book, cohort=args.cohort)
    print(f"report: {html / 'index.html' if (html / 'index.html').exists() else html}")
    return 0


def _ablation(args: argparse.Namespace) -> int:
    from .data import Cohort
    from .runfolder import check_output_folder, exclusive

    overrides = _checked_overrides(args)
    if args.permute_labels < 0:
        raise UsageError(f"--permute-labels: {args.permute_labels} is not allowed (must be >= 0)")
    dataset = Cohort.open(args.cohort, args.data_dir)  # spec, folder and layout: checked before any work
    out = check_output_folder(args.out, "--out", dataset.root)
    dataset.require_usable()  # every table value and image, decoded: all problems at once, nothing written
    from .study import check_profile_on_data

    profile = get_profile(args.profile, **overrides)
    check_profile_on_data(profile, dataset)
    with exclusive(out):
        from .ablation import run_ablation
        from .runfolder import claim_for_run, run_identity, why_moved

        settings = {**profile.to_dict(), "task": args.task, "permute_labels": args.permute_labels,
                    "biomarkers": args.biomarkers}
        moved = claim_for_run(out, run_identity("ablation", settings, dataset))
        if moved is not None:
            print(why_moved(out, moved))
        path = run_ablation(args.profile, args.task, out, data_dir=str(dataset.root),
                            permute_labels=args.permute_labels, overrides=overrides, biomarkers=args.biomarkers,
                            cohort=dataset.spec.source)
    print(f"results: {path}")
    return 0


def _train_final(args: argparse.Namespace) -> int:
    key = read_key(args.sign_key)
    overrides = _checked_overrides(args)
    from .bundle import train_final  # checks data, folders and the run before training

    bundle = train_final(args.profile, args.out, args.data_dir, overrides, args.run, cohort=args.cohort, sign_key=key)
    print(f"model bundle: {bundle.path} (model card: {bundle.path / 'MODEL_CARD.md'})")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from .bundle import Bundle
    from .config import ensure_outside_data
    from .fileio import atomic_to_csv
    from .patients import FIELDS, BadInputError, batch_patients, single_patient
    from .runfolder import check_output_folder

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


def _answer(args: argparse.Namespace) -> int:
    from .headline import headline

    print("\n".join(headline(args.run)))
    return 0


def _validation_rows(dataset, bundle):
    """The cohort rows `validate` scores (every table row), their site and person columns, the cohort's name
    (its spec's) and where it lies."""
    from .data import cohort_rows

    rows = cohort_rows(dataset.spec, bundle.image_size, dataset.root)
    if rows["person_id"].duplicated().any():  # several images of one person: one patient, scored once
        rows = rows.assign(image_id=rows["patient_id"], patient_id=rows["person_id"])
    site = next((c for c in ("site", "batch") if c in rows.columns and rows[c].notna().any()), None)
    where = f"{dataset.spec.source}, folder {dataset.root}" + (f"; sites: {site}" if site else "")
    return rows, site, "split_group", dataset.spec.name, where


def _validate(args: argparse.Namespace) -> int:
    from .bundle import Bundle
    from .external import validate
    from .external.validate import check_target

    key = read_key(args.sign_key)
    if args.n_boot is not None and args.n_boot < 1:
        raise UsageError(f"--n-boot: {args.n_boot} is not allowed (must be >= 1)")
    from .data import Cohort

    dataset = Cohort.open(args.cohort, args.data_dir)  # the spec and its folder, checked before any work
    target = check_target(args.out, dataset.root)
    bundle = Bundle.load(args.model, key)
    rows, site, person, cohort, where = _validation_rows(dataset, bundle)
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


def text_table(rows: list[dict[str, str]]) -> str:
    """Rows as left-aligned columns, the header first: a table a person reads in a terminal."""
    columns = list(rows[0])
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    lines = ["  ".join(c.ljust(widths[c]) for c in columns).rstrip(), "  ".join("-" * widths[c] for c in columns)]
    lines += ["  ".join(str(r[c]).ljust(widths[c]) for c in columns).rstrip() for r in rows]
    return "\n".join(lines)


def _profiles(args: argparse.Namespace) -> int:
    from .config import PROFILE_PURPOSES, profile_table

    for name in PROFILES:
        print(f"{name}: {PROFILE_PURPOSES.get(name, '')}")
    print()
    print(text_table(profile_table()))
    print("\nOverride any field with --set FIELD=VALUE (run, ablation, train-final).")
    return 0


def _add_profile_options(parser: argparse.ArgumentParser, default: str | None = "fast") -> None:
    profiles = sorted(PROFILES)
    parser.add_argument("--profile", choices=profiles, default=default, required=default is None,
                        help="named settings (" + ", ".join(profiles) + "; `osteo profiles` lists every field)"
                             + (f"; default {default}" if default else ""))
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="the dataset folder (default: $OSTEO_DATA_DIR, then data/raw, then "
                             "../shared/data/knee-osteoporosis); with --cohort, the cohort's folder when its spec "
                             "names none")
    parser.add_argument("--cohort", default=None, metavar="SPEC.toml",
                        help="a cohort spec (README: bring your own cohort); default: the published dataset")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override one profile field (repeatable), e.g. --set epochs=10; checked before any work")
    where = parser.add_argument_group("where the fits run (the results are the same; default: one after another, "
                                      "in this process)")
    where.add_argument("--workers", type=int, default=None, metavar="N",
                       help="N local worker processes train fits side by side, sharing the machine's GPUs (several "
                            "fits on one GPU, each with its share of its memory) and CPU cores")
    where.add_argument("--ray", default=None, metavar="ADDRESS",
                       help="each fit a task on a Ray cluster: auto (the cluster of $RAY_ADDRESS, else a Ray instance "
                            "started on this machine) or the head's HOST:PORT; needs the extra: "
                            "pip install -e \".[ray]\"")
    where.add_argument("--fits-per-gpu", type=int, default=None, metavar="K",
                       help="with --ray: each fit takes 1/K of a GPU (default 4)")


def _clinical_help(name: str, unit: str | None = None) -> str:
    """What an option says: the input's meaning, and its unit (``unit``: one of its other units)."""
    from .data import COLUMN_SPECS
    from .patients import CATEGORY_SPELLINGS, NUMBER_FIELDS
    from .tabular import UNIT_NAMES

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
    from .patients import CATEGORY_SPELLINGS, NUMBER_FIELDS

    return "N" if name in NUMBER_FIELDS else "TEXT" if name in CATEGORY_SPELLINGS else "yes|no"


def _add_predict(sub: argparse._SubParsersAction) -> None:
    from .patients import spellings
    from .tabular import INPUT_FEATURES

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


def _add_answer(sub: argparse._SubParsersAction) -> None:
    ans = sub.add_parser(
        "answer", help="print the answer and headline numbers of a finished run",
        description="Print what a finished `osteo run` found, read from its folder: the run (profile, status, "
                    "commit), the answer in words (as the report's first page states it), the primary comparison "
                    "(binary AUROC of the residual fusion minus the clinical model) with its 95% CI, the clinical "
                    "and fusion AUROCs with CIs and the positive control (sex and age from the image). A folder "
                    "that is not a finished run is one line, exit status 2.")
    ans.add_argument("run", metavar="RUN", help="a run folder made by `osteo run` (e.g. outputs/fast)")
    ans.set_defaults(func=_answer)


def _add_validate(sub: argparse._SubParsersAction) -> None:
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


def _prog() -> str:
    return "osteo" if Path(sys.argv[0]).name == "osteo" else "python -m osteo_helpers"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=_prog(), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"osteo_helpers {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="check or import the dataset").add_subparsers(
        dest="data_command", required=True, metavar="SUBCOMMAND")
    check = data.add_parser("check", help="validate the raw data and report every problem found",
                            description="Validate the raw data (read only): every problem found, for a person or "
                                        "as one JSON object. Exit 2 when a problem stops a run (a table value, an "
                                        "image that cannot be decoded).")
    check.add_argument("--json", action="store_true", help="print one JSON object (for scripts) instead of text")
    check.add_argument("--data-dir", default=None, metavar="DIR",
                       help="the dataset folder (default: $OSTEO_DATA_DIR, then data/raw, then "
                            "../shared/data/knee-osteoporosis)")
    check.set_defaults(func=_data_check)
    imp = data.add_parser("import", help="verify a downloaded copy (folder or zip) and install it under data/raw",
                          description="Check every file of a downloaded copy against the SHA-256 registry shipped "
                                      "with the package and install it; nothing is left half-copied.")
    imp.add_argument("source", help="the zip downloaded from Mendeley Data (DOI 10.17632/fxjm8fb6mw.2), or an "
                                    "unpacked folder")
    imp.add_argument("--dest", default=None, metavar="DIR", help="where to install it (default: data/raw)")
    imp.set_defaults(func=_data_import)

    cohort = sub.add_parser("cohort", help="check or export a cohort described by a spec, or print its schema")
    cohort = cohort.add_subparsers(dest="cohort_command", required=True, metavar="SUBCOMMAND")
    ccheck = cohort.add_parser("check", help="validate a cohort and report every problem found",
                               description="Read a cohort spec (TOML) and every row, column and image (read only) "
                                           "and report every problem found, as text or one JSON object (the keys of "
                                           "`data check`). Exit 2 for a spec that cannot be used, or when a problem "
                                           "stops a run (a table value, an image that cannot be decoded, no image).")
    ccheck.add_argument("spec", metavar="SPEC", help="the cohort spec (.toml), or knee-osteoporosis-v2 for the "
                                                     "published dataset")
    ccheck.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    ccheck.add_argument("--data-dir", default=None, metavar="DIR", help="the cohort's folder when the spec names none")
    ccheck.set_defaults(func=_cohort_check)
    cexport = cohort.add_parser(
        "export", help="write a cohort (table, images and spec) in another form",
        description="Write a cohort as a hospital export would hold it: a CSV table with its own column names, "
                    "weight in pounds and height in centimetres, a site column (the acquisition batch), one image "
                    "per row (DICOM: the original JPEG bitstream encapsulated, or PNG) and its .toml spec. "
                    "The folder must be new or empty; nothing is half-written.")
    cexport.add_argument("--to", required=True, metavar="DIR", help="the folder to write (new or empty)")
    cexport.add_argument("--format", choices=["dicom", "png"], default="dicom", help="image format (default dicom)")
    cexport.add_argument("--cohort", default=None, metavar="SPEC.toml", help="the cohort to export (default: the "
                                                                             "published dataset)")
    cexport.add_argument("--data-dir", default=None, metavar="DIR", help="its folder when the spec names none")
    cexport.set_defaults(func=_cohort_export)
    cschema = cohort.add_parser(
        "schema", help="print the cohort spec's JSON Schema, for editors",
        description="Print every key of a cohort spec as a JSON Schema (draft 2020-12): save it and put "
                    "`#:schema ./cohort-spec.schema.json` on a spec's first line, and Even Better TOML (taplo) "
                    "checks the spec as you type. --markdown prints the book's reference page instead.")
    cschema.add_argument("--markdown", action="store_true",
                         help="print the reference page (book/cohort_spec.md) instead of the JSON Schema")
    cschema.set_defaults(func=_cohort_schema)

    run = sub.add_parser("run", help="execute the notebooks and build the report",
                         description="Execute the notebooks with papermill and build the HTML book. Without --out, "
                                     "a profile as defined writes outputs/<profile>; with --set overrides the run "
                                     "goes to outputs/<profile>-<hash of the changed settings> (said in one line), "
                                     "so it never overwrites the last full report.")
    _add_profile_options(run)
    run.add_argument("--out", default=None, metavar="DIR",
                     help="run folder (default outputs/<profile>, or outputs/<profile>-<hash> with --set)")
    run.add_argument("--notebook", action="append", default=[], metavar="PATH",
                     help="run only this notebook, e.g. notebooks/03_binary_fusion.ipynb (repeatable); the "
                          "book is then built from the run folder's other executed notebooks, the summary pages run "
                          "again (a folder without a run of the same settings, data and code: use --no-book)")
    run.add_argument("--no-book", action="store_true", help="execute the notebooks without building the book")
    run.set_defaults(func=_run)

    _add_answer(sub)

    abl = sub.add_parser("ablation", help="run the ablation arms on shared folds and write results.csv",
                         description="Every arm on the same folds: results.csv, comparisons.csv and the out-of-fold "
                                     "predictions of every arm (oof/<arm>.csv) in --out.")
    _add_profile_options(abl)
    abl.add_argument("--task", choices=["binary", "3class"], default="binary",
                     help="normal vs low BMD (binary) or the three WHO classes (default binary)")
    abl.add_argument("--permute-labels", type=int, default=0, metavar="N",
                     help="1: rerun every arm once on shuffled labels (each should land near chance); "
                          "N > 1: add the permutation null of N shuffles (classical arms; networks per profile)")
    abl.add_argument("--biomarkers", action="store_true", help="add the image-biomarker and ROI-network arms")
    abl.add_argument("--out", required=True, metavar="DIR", help="folder for the tables (required)")
    abl.set_defaults(func=_ablation)

    final = sub.add_parser(
        "train-final", help="fit the primary arms on ALL patients and save a model bundle",
        description="Fit fusion and clinical (normal vs low BMD) and fusion_tscore (the T-score) on ALL patients "
                    "(a refit on every patient: the cross-validated report estimates how this procedure performs; "
                    "no patient is held out), each with its screening threshold at the profile's "
                    "target_sensitivity, and write a self-contained bundle: arms/* (JSON, safetensors, skops: no "
                    "pickle), bundle.json (settings, threshold, calibration, training ranges, data checksums, "
                    "versions, commit, the SHA-256 of every arm file) and MODEL_CARD.md. "
                    "The folder is replaced atomically; it is refused inside the dataset folder.")
    _add_profile_options(final)
    final.add_argument("--out", required=True, metavar="DIR", help="the bundle folder (new, empty, or a bundle to "
                                                                   "replace)")
    final.add_argument("--run", default=None, metavar="RUN_DIR",
                       help="a finished `osteo run` folder of the same settings: its tables give the model card's "
                            "metrics, calibration and subgroups (without it: 'not measured')")
    add_key_option(final, "sign the bundle")
    final.set_defaults(func=_train_final)

    _add_predict(sub)

    _add_validate(sub)

    profiles = sub.add_parser("profiles", help="list the profiles and their fields",
                              description="Every profile field, its value in each profile and what it accepts.")
    profiles.set_defaults(func=_profiles)
    return parser


def exit_status(exc: BaseException) -> int | None:
    """2: the command cannot start with this input; 1: the data or a run failed; None: a bug (traceback)."""
    from .data import DataValidationError, ImageReadError
    from .executor import ExecutorError
    from .models import WeightsUnavailableError
    from .pipeline import PipelineError

    if isinstance(exc, (UsageError, DataNotFoundError, WeightsUnavailableError, ImageReadError)):
        return 2  # an unreadable image is input a command cannot start with, as a bad option is
    if isinstance(exc, (DataValidationError, PipelineError, ExecutorError, FileNotFoundError, FileExistsError)):
        return 1
    return None


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; errors a user can act on become `error: ...` on stderr and an exit status."""
    args = build_parser().parse_args(argv)
    try:
        with library_warnings.routed(), progress.interruptible():  # stderr holds the command's own lines
            return args.func(args)
    except KeyboardInterrupt:
        print(f"\n{INTERRUPTED}", file=sys.stderr)
        return 130
    except Exception as exc:
        status = exit_status(exc)
        if status is None:
            raise
        for line in getattr(exc, "problems", None) or [str(exc)]:  # a batch's bad rows: one line each
            print(f"error: {line}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
