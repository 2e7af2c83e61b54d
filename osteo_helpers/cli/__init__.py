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
import importlib
import signal
import sys
from pathlib import Path

from .. import __version__, library_warnings, progress
from ..errors import INTERRUPTED_STATUS, exit_status, interrupted_line, stop

#: the commands, one module each (in the order `--help` lists them): each builds its sub-parser (`add`) and
#: imports what it needs only when it runs
COMMANDS = ("data", "cohort", "run", "answer", "ablation", "train_final", "predict", "validate", "profiles")


def _prog() -> str:
    return "osteo" if Path(sys.argv[0]).name == "osteo" else "python -m osteo_helpers"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=_prog(), description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"osteo_helpers {__version__}",
                        help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f".{name}", __name__).add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a subcommand; errors a user can act on become `error: ...` on stderr and an exit status. Ctrl-C is
    the one line and exit 130 at any moment: `stop` while nothing needs cleaning up (parsing, reporting), a
    KeyboardInterrupt the command's work cleans up after; the caller's handler is restored at the end."""
    previous = signal.signal(signal.SIGINT, stop)
    args = build_parser().parse_args(argv)
    try:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # the work below cleans up after Ctrl-C
        with library_warnings.routed(), progress.interruptible():  # stderr holds the command's own lines
            return args.func(args)
    except KeyboardInterrupt:
        signal.signal(signal.SIGINT, stop)
        print(interrupted_line(args.command), file=sys.stderr)
        return INTERRUPTED_STATUS
    except Exception as exc:
        signal.signal(signal.SIGINT, stop)
        if _caused_by_interrupt(exc):
            print(interrupted_line(args.command), file=sys.stderr)
            return INTERRUPTED_STATUS
        status = exit_status(exc)
        if status is None:
            raise
        for line in getattr(exc, "problems", None) or [str(exc)]:  # a batch's bad rows: one line each
            print(f"error: {line}", file=sys.stderr)
        return status
    finally:
        signal.signal(signal.SIGINT, previous)


def _caused_by_interrupt(exc: BaseException) -> bool:
    """Whether Ctrl-C started this exception: a compiled module interrupted while it initialises turns the
    KeyboardInterrupt into an ImportError ("initialization failed") caused by it."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False
