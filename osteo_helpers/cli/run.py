"""`osteo run`: execute the notebooks and build the report."""

from __future__ import annotations

import argparse

from .options import add_profile_options, checked_overrides


def _run(args: argparse.Namespace) -> int:
    overrides = checked_overrides(args)
    from ..data import Cohort  # deferred: imports pandas, numpy and PIL

    dataset = Cohort.open(args.cohort, args.data_dir)  # the run's cohort, opened once: spec, folder and layout
    from ..pipeline import run  # deferred: imports pandas, numpy and PIL

    html = run(args.profile, args.out, overrides=overrides, notebooks=tuple(args.notebook) if args.notebook else None,
               build=not args.no_book, cohort=dataset)
    print(f"report: {html / 'index.html' if (html / 'index.html').exists() else html}")
    return 0


def add(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="execute the notebooks and build the report",
                         description="Execute the notebooks with papermill and build the HTML book. Without --out, "
                                     "a profile as defined writes outputs/<profile>; with --set overrides the run "
                                     "goes to outputs/<profile>-<hash of the changed settings> (said in one line), "
                                     "so it never overwrites the last full report.")
    add_profile_options(run)
    run.add_argument("--out", default=None, metavar="DIR",
                     help="run folder (default outputs/<profile>, or outputs/<profile>-<hash> with --set)")
    run.add_argument("--notebook", action="append", default=[], metavar="PATH",
                     help="run only this notebook, e.g. notebooks/03_binary_fusion.ipynb (repeatable); the "
                          "book is then built from the run folder's other executed notebooks, the summary pages run "
                          "again (a folder without a run of the same settings, data and code: use --no-book)")
    run.add_argument("--no-book", action="store_true", help="execute the notebooks without building the book")
    run.set_defaults(func=_run)
