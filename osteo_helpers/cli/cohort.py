"""`osteo cohort check|export|schema`: a cohort described by a spec."""

from __future__ import annotations

import argparse
import json
import sys

from .options import check_cohort


def _check(args: argparse.Namespace) -> int:
    return check_cohort(args.spec, args.data_dir, args.json)


def _export(args: argparse.Namespace) -> int:
    from ..data.export import export_cohort  # deferred: imports scipy, pandas and numpy

    spec = export_cohort(args.to, args.format, args.cohort, args.data_dir)
    print(f"cohort written to {spec.parent}; its spec: {spec}")
    return 0


def _schema(args: argparse.Namespace) -> int:
    from ..data.spec_schema import reference_markdown, spec_schema  # deferred: imports numpy

    sys.stdout.write(reference_markdown() if args.markdown else json.dumps(spec_schema(), indent=2) + "\n")
    return 0


def add(sub: argparse._SubParsersAction) -> None:
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
    ccheck.set_defaults(func=_check)
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
    cexport.set_defaults(func=_export)
    cschema = cohort.add_parser(
        "schema", help="print the cohort spec's JSON Schema, for editors",
        description="Print every key of a cohort spec as a JSON Schema (draft 2020-12): save it and put "
                    "`#:schema ./cohort-spec.schema.json` on a spec's first line, and Even Better TOML (taplo) "
                    "checks the spec as you type. --markdown prints the book's reference page instead.")
    cschema.add_argument("--markdown", action="store_true",
                         help="print the reference page (book/cohort_spec.md) instead of the JSON Schema")
    cschema.set_defaults(func=_schema)
