"""`osteo data check|import`: the published dataset's findings, and installing a downloaded copy."""

from __future__ import annotations

import argparse
from pathlib import Path

from .options import check_cohort


def _check(args: argparse.Namespace) -> int:
    return check_cohort(None, args.data_dir, args.json)


def _import(args: argparse.Namespace) -> int:
    from ..data import import_dataset  # deferred: imports pandas, numpy and PIL

    dest = import_dataset(Path(args.source), Path(args.dest) if args.dest else None)
    print(f"verified every file against the registry and installed the dataset in {dest}")
    return 0


def add(sub: argparse._SubParsersAction) -> None:
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
    check.set_defaults(func=_check)
    imp = data.add_parser("import", help="verify a downloaded copy (folder or zip) and install it under data/raw",
                          description="Check every file of a downloaded copy against the SHA-256 registry shipped "
                                      "with the package and install it; nothing is left half-copied.")
    imp.add_argument("source", help="the zip downloaded from Mendeley Data (DOI 10.17632/fxjm8fb6mw.2), or an "
                                    "unpacked folder")
    imp.add_argument("--dest", default=None, metavar="DIR", help="where to install it (default: data/raw)")
    imp.set_defaults(func=_import)
