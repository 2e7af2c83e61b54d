"""Command line: `python -m osteo_helpers data check|import`, `run`, `ablation`."""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path

from .config import PROFILES, DataNotFoundError


def _parse_overrides(items: list[str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in items:
        if "=" not in item:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            out[key] = value
    return out


def _data_check(args: argparse.Namespace) -> int:
    from . import data
    from .config import SPREADSHEET_NAME, resolve_data_dir

    root = resolve_data_dir(args.data_dir)
    clinical = data.load_clinical(root / SPREADSHEET_NAME)
    manifest = data.build_manifest(root, clinical)
    findings = data.validate(manifest, clinical, root)
    if args.json:
        print(json.dumps(findings))
    else:
        print(f"dataset: {root}")
        print(data.format_findings(findings))
    return 0


def _data_import(args: argparse.Namespace) -> int:
    from .data import import_dataset

    dest = import_dataset(Path(args.source), Path(args.dest) if args.dest else None)
    print(f"verified every file against the registry and installed the dataset in {dest}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from .pipeline import run

    html = run(args.profile, args.out, args.data_dir, _parse_overrides(args.set),
               tuple(args.notebook) if args.notebook else None, build=not args.no_book)
    print(f"report: {html / 'index.html' if (html / 'index.html').exists() else html}")
    return 0


def _ablation(args: argparse.Namespace) -> int:
    from .ablation import run_ablation

    path = run_ablation(args.profile, args.task, Path(args.out), data_dir=args.data_dir,
                        permute_labels=args.permute_labels, overrides=_parse_overrides(args.set))
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
    abl.add_argument("--permute-labels", action="store_true", help="shuffle labels: every arm should land near chance")
    abl.add_argument("--out", required=True)
    abl.add_argument("--data-dir", default=None)
    abl.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    abl.set_defaults(func=_ablation)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except DataNotFoundError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:
        from .data import DataValidationError
        from .pipeline import PipelineError

        if isinstance(exc, (DataValidationError, PipelineError, FileNotFoundError, FileExistsError)):
            print(f"error: {exc}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
