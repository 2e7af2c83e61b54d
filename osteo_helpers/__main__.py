"""Command line: `python -m osteo_helpers data check|import`, `run`, `ablation`.

Errors a user can act on are one line on stderr: exit 2 when the command cannot start with
the input given (UsageError: an option, a `--set` value, a folder; a missing dataset), before
any work; exit 1 when the data or a run turned out bad (findings, checksums, a failed notebook).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .config import PROFILES, DataNotFoundError, UsageError, get_profile, resolve_data_dir


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
    """The `--set` values, after the profile accepted them (UsageError otherwise, before any work)."""
    overrides = _parse_overrides(args.set)
    get_profile(args.profile, **overrides)
    return overrides


def _data_check(args: argparse.Namespace) -> int:
    from . import data
    from .config import SPREADSHEET_NAME

    root = resolve_data_dir(args.data_dir)
    data.check_layout(root)
    clinical = data.load_clinical(root / SPREADSHEET_NAME)
    manifest = data.build_manifest(root, clinical, strict=False)
    findings = data.validate(manifest, clinical, root)
    if args.json:
        print(json.dumps(findings))
    else:
        print(f"dataset: {root}")
        print(data.format_findings(findings))
    unreadable = findings["unreadable_images"]
    if unreadable:
        print(f"error: {len(unreadable)} image(s) cannot be decoded: {', '.join(u['path'] for u in unreadable)}",
              file=sys.stderr)
        return 1
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
               tuple(args.notebook) if args.notebook else None, build=not args.no_book)
    print(f"report: {html / 'index.html' if (html / 'index.html').exists() else html}")
    return 0


def _ablation(args: argparse.Namespace) -> int:
    from .data import check_layout
    from .runfolder import check_output_folder, exclusive

    overrides = _checked_overrides(args)
    if args.permute_labels < 0:
        raise UsageError(f"--permute-labels: {args.permute_labels} is not allowed (must be >= 0)")
    data_root = resolve_data_dir(args.data_dir)
    check_layout(data_root)
    out = check_output_folder(args.out, "--out", data_root)
    with exclusive(out):
        from .ablation import run_ablation

        path = run_ablation(args.profile, args.task, out, data_dir=str(data_root),
                            permute_labels=args.permute_labels, overrides=overrides, biomarkers=args.biomarkers)
    print(f"results: {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m osteo_helpers", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="check or import the dataset").add_subparsers(dest="data_command", required=True)
    check = data.add_parser("check", help="validate the raw data and report every problem found")
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument("--data-dir", default=None)
    check.set_defaults(func=_data_check)
    imp = data.add_parser("import", help="verify a downloaded copy (folder or zip) and install it under data/raw")
    imp.add_argument("source")
    imp.add_argument("--dest", default=None)
    imp.set_defaults(func=_data_import)

    profiles = sorted(PROFILES)
    run = sub.add_parser("run", help="execute the notebooks and build the report")
    run.add_argument("--profile", choices=profiles, default="fast")
    run.add_argument("--out", default=None, help="run folder (default outputs/<profile>)")
    run.add_argument("--data-dir", default=None)
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a profile field")
    run.add_argument("--notebook", action="append", default=[], help="run only these notebooks (repeatable)")
    run.add_argument("--no-book", action="store_true", help="execute notebooks without building the book")
    run.set_defaults(func=_run)

    abl = sub.add_parser("ablation", help="run the ablation arms on shared folds and write results.csv")
    abl.add_argument("--profile", choices=profiles, default="fast")
    abl.add_argument("--task", choices=["binary", "3class"], default="binary")
    abl.add_argument("--permute-labels", type=int, default=0, metavar="N",
                     help="1: rerun every arm once on shuffled labels (each should land near chance); "
                          "N > 1: add the permutation null of N shuffles (classical arms; networks per profile)")
    abl.add_argument("--biomarkers", action="store_true", help="add the image-biomarker and ROI-network arms")
    abl.add_argument("--out", required=True)
    abl.add_argument("--data-dir", default=None)
    abl.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    abl.set_defaults(func=_ablation)
    return parser


def exit_status(exc: BaseException) -> int | None:
    """2: the command cannot start with this input; 1: the data or a run failed; None: a bug (traceback)."""
    from .data import DataValidationError
    from .pipeline import PipelineError

    if isinstance(exc, (UsageError, DataNotFoundError)):
        return 2
    if isinstance(exc, (DataValidationError, PipelineError, FileNotFoundError, FileExistsError)):
        return 1
    return None


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; errors a user can act on become `error: ...` on stderr and an exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:
        status = exit_status(exc)
        if status is None:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return status


if __name__ == "__main__":
    sys.exit(main())
